"""Executions: the runs of task code in this process, from claim to outcome.

:class:`Executions` launches each claimed task as an asyncio task with its
:class:`~taskmill.scheduler.context.TaskContext`, turns however it ends into a
:class:`~taskmill.store.rows.Finish` for the run loop to record (task code
raises anything, returns what cannot be stored, ignores cancellation), stops
runs the scheduler decides to stop, and knows what runs now: records,
progress, and the threads stopped runs still hold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clock import Clock
from ..errors import StorageError, TaskError, TaskmillError
from ..model import Progress, RetryPolicy, TaskRecord
from ..store.rows import Claimed, Finish, Phase
from .ahead import Ahead
from .awareness import Awareness
from .config import SchedulerConfig
from .context import Spawner, TaskContext, state_view
from .domain import BoundExecutor, Domain, TypeRegistry
from .events import EventBus
from .policy import decide_failure, describe_error, encode_result, policy_from_json
from .threads import ExecutorThreads, ThreadSlot, bind
from .tracebacks import task_traceback

__all__ = ["Execution", "Executions", "RemoteExecutors"]

log = logging.getLogger(__name__)


class _NoDeadline:
    """``async with`` that does nothing: most types have no attempt timeout."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None

    def expired(self) -> bool:
        return False


_NO_DEADLINE = _NoDeadline()

# Immutable defaults shared by every execution (built once, not per run).
_NO_PROGRESS = Progress()
_DEFAULT_POLICY = RetryPolicy()


class RemoteExecutors(Protocol):
    """Executors that live outside this process (remote workers)."""

    def free_slots_of(self, task_type: str) -> int:
        """Free execution slots of one task type, across its live workers."""
        ...

    def executor_for(self, task_type: str) -> BoundExecutor | None:
        """Reserve a slot and return an executor for one run, or None if none is free."""
        ...


@dataclass(slots=True, eq=False)
class Execution:
    """One run of one task in this process."""

    record: TaskRecord
    dispatch_count: int
    ctx: TaskContext
    executor: BoundExecutor | None
    started_mono: float
    phase: Phase = "execute"
    task: asyncio.Task[None] | None = None
    progress: Progress = _NO_PROGRESS
    policy: RetryPolicy = _DEFAULT_POLICY
    #: What execute returned, for a parent's finalize.
    memo: Any = None
    #: When progress was last reported (epoch ms), for extrapolation.
    reported_at_ms: int | None = None
    #: The Python value returned, kept for the ``completed`` event.
    value: Any = None
    #: Executor threads this run has busy (see :mod:`taskmill.scheduler.threads`).
    threads: ThreadSlot = field(default_factory=ThreadSlot)
    #: The type's bound on one attempt (None: none).
    timeout_ms: int | None = None
    #: Stopped by the scheduler (cancel, pause, preemption, shutdown): whoever
    #: stopped it wrote its row, and its outcome is not recorded.
    stopped: bool = False
    #: When the run started (epoch ms): later than the claim if it waited ahead.
    started_at: int | None = None
    #: How long the run took (ms, monotonic), once it ended.
    run_ms: int | None = None


class Executions:
    """The runs in this process and what happens to each."""

    def __init__(
        self,
        *,
        registry: TypeRegistry,
        config: SchedulerConfig,
        clock: Clock,
        events: EventBus,
        metrics: Counter[str],
        awareness: Awareness,
        state: Mapping[Any, Any],
        spawner: Spawner,
        wake: Callable[[], None],
        recent_durations: Callable[[str, int], Awaitable[list[int]]],
        rng: random.Random,
    ) -> None:
        self._registry = registry
        self._config = config
        self._clock = clock
        self._events = events
        self._metrics = metrics
        self._awareness = awareness
        self._state = state
        self._spawner = spawner
        self._wake = wake
        self._recent_durations = recent_durations
        self._rng = rng
        #: Executors outside this process (set by the sidecar: remote workers).
        self.remote: RemoteExecutors | None = None
        #: Runs by task id.
        self.running: dict[int, Execution] = {}
        self._stopping: set[Execution] = set()
        #: Stopped executions whose plain-def code still holds a thread: each
        #: counts against the concurrency limit until its thread returns.
        self._zombies: set[Execution] = set()
        self._threads = ExecutorThreads()
        self._finished: list[tuple[Finish, Execution]] = []
        #: Claimed tasks waiting for a slot (see :mod:`taskmill.scheduler.ahead`).
        self.ahead = Ahead()
        #: Recent mean run time in seconds (None before a run ended), for the
        #: size of the window claimed ahead.
        self.mean_run_s: float | None = None
        #: Called when a run ends and frees a slot (the run loop starts the
        #: next task claimed ahead).
        self.on_slot_free: Callable[[], None] | None = None
        #: Set while nothing runs.
        self.idle = asyncio.Event()
        self.idle.set()
        self._background: set[asyncio.Task[Any]] = set()
        self._state_views: dict[str, Mapping[Any, Any]] = {}

    # -- what the run loop asks -------------------------------------------------------

    def busy_slots(self) -> int:
        """Slots taken: running executions, stopped ones whose coroutine has not
        ended yet, and threads still held by stopped ones."""
        return len(self.running) + len(self._stopping) + len(self._zombies)

    def take_finished(self) -> list[tuple[Finish, Execution]]:
        """The outcomes waiting to be recorded (and forget them)."""
        finished, self._finished = self._finished, []
        return finished

    def put_back(self, finished: list[tuple[Finish, Execution]]) -> None:
        """Outcomes a failed turn could not record: recorded at the next one."""
        self._finished[:0] = finished

    @property
    def has_finished(self) -> bool:
        return bool(self._finished)

    def context(self, task_id: int) -> TaskContext | None:
        """The context of a task running now, if any."""
        ex = self.running.get(task_id)
        return None if ex is None else ex.ctx

    # -- launching ------------------------------------------------------------------

    def launch(self, claimed: Claimed) -> None:
        rec = claimed.record
        # When it starts (its record keeps the claim's time: it may have waited ahead).
        now = self._clock.now_ms()
        tt = self._registry.find(rec.task_type)
        executor: BoundExecutor | None = None
        if tt is not None:
            executor = tt.executor
            if executor is None and self.remote is not None:
                executor = self.remote.executor_for(rec.task_type)
        domain = self._registry.domains.get(rec.domain)
        loop = asyncio.get_running_loop()
        ctx = TaskContext(
            self._spawner,
            rec,
            rec.retry_count + 1,
            self._state_of(domain),
            loop,
            phase=claimed.phase,
            children=claimed.children,
            progress_sink=self._on_progress,
        )
        ex = Execution(
            record=rec,
            dispatch_count=claimed.dispatch_count,
            ctx=ctx,
            executor=executor,
            started_mono=time.monotonic(),
            phase=claimed.phase,
            policy=policy_from_json(claimed.retry_policy_json, self._config.retry),
            memo=None if claimed.memo_json is None else json.loads(claimed.memo_json),
            threads=ThreadSlot(self._thread_freed),
            timeout_ms=None if tt is None else tt.timeout_ms,
            started_at=now,
        )
        self.running[rec.id] = ex
        self.idle.clear()
        self._metrics["dispatched"] += 1
        self._events.emit("dispatched", rec, attempt=rec.retry_count + 1)
        ex.task = loop.create_task(
            self._execute(ex),
            name=f"taskmill-task-{rec.id}",
            context=bind(self._threads, ex.threads),
        )
        # A task cancelled before its first step never enters _execute: end it here.
        ex.task.add_done_callback(lambda _t: self._ended(ex))
        if executor is not None and executor.release is not None:
            release = executor.release
            ex.task.add_done_callback(lambda _t: release())

    def _ended(self, ex: Execution) -> None:
        if ex in self._stopping or self.running.get(ex.record.id) is ex:
            self._end(ex, None)

    def _state_of(self, domain: Domain | None) -> Mapping[Any, Any]:
        """Shared state seen by a domain's executors (a live view, built once)."""
        key = domain.name if domain is not None else ""
        view = self._state_views.get(key)
        if view is None:
            view = state_view(domain.state if domain is not None else {}, self._state)
            self._state_views[key] = view
        return view

    def _thread_freed(self, slot: ThreadSlot) -> None:
        for ex in self._zombies:
            if ex.threads is slot:
                self._zombies.discard(ex)
                self._wake()
                return

    # -- running --------------------------------------------------------------------

    async def _execute(self, ex: Execution) -> None:
        """Run one execution; every way it can end becomes a recorded outcome.

        Task code is the app's and misbehaves: anything it raises
        (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``, a
        ``CancelledError`` of its own) ends the attempt as a failure, and so
        does a result that cannot be stored. The only run left without an
        outcome here is one the scheduler stopped itself (cancel, pause,
        preemption, shutdown): whoever stopped it has written its row.
        """
        rec = ex.record
        finish: Finish | None = None
        deadline = asyncio.timeout(ex.timeout_ms / 1000) if ex.timeout_ms else _NO_DEADLINE
        try:
            async with deadline:
                if ex.executor is None:
                    raise TaskError.permanent(f"no executor registered for type {rec.task_type!r}")
                if ex.phase == "finalize":
                    value = await self._finalize(ex)
                else:
                    value = await ex.executor.execute(rec.payload, ex.ctx)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if ex.stopped or (task is not None and task.cancelling()):
                # Stopped by us (the row is handled), or the loop is being torn
                # down (the row is recovered at the next start).
                self._end(ex, None)
                raise
            finish = self._failure(ex, exc)
        except BaseException as exc:  # task code raises anything
            if isinstance(exc, TimeoutError) and deadline.expired():
                # Tell code that still runs (a thread, a worker) to stop.
                ex.ctx.cancelled.fire("timeout")
                exc = TaskError.transient(f"the attempt timed out after {ex.timeout_ms} ms")
            finish = self._failure(ex, exc)
        else:
            finish = self._success(ex, value)
        self._end(ex, finish)

    def _failure(self, ex: Execution, exc: BaseException) -> Finish:
        rec = ex.record
        decision = decide_failure(exc, rec.retry_count, rec.max_retries, ex.policy, self._rng)
        where = task_traceback(exc)
        if where is not None:
            log.warning(
                "task %s (%s) attempt %d failed: %s\n%s",
                rec.id,
                rec.task_type,
                rec.retry_count + 1,
                decision.message,
                where,
                extra={"repeat_key": (rec.task_type, decision.message)},
            )
        return Finish(
            task_id=rec.id,
            dispatch_count=ex.dispatch_count,
            started_at=ex.started_at,
            ended_at=self._clock.now_ms(),
            kind=decision.kind,
            error=decision.message,
            retry_delay_ms=decision.delay_ms,
            actual_io=ex.ctx.actual_io,
            phase=ex.phase,
            traceback=where,
        )

    def _success(self, ex: Execution, value: Any) -> Finish:
        rec = ex.record
        try:
            result_json = encode_result(value)
        except Exception as exc:  # every way a value cannot be stored
            message = exc.message if isinstance(exc, TaskmillError) else describe_error(exc)
            return Finish(
                task_id=rec.id,
                dispatch_count=ex.dispatch_count,
                started_at=ex.started_at,
                ended_at=self._clock.now_ms(),
                kind="failed",
                error=f"the result cannot be stored: {message}",
                actual_io=ex.ctx.actual_io,
                phase=ex.phase,
            )
        ex.value = value
        return Finish(
            task_id=rec.id,
            dispatch_count=ex.dispatch_count,
            started_at=ex.started_at,
            ended_at=self._clock.now_ms(),
            kind="completed",
            result_json=result_json,
            actual_io=ex.ctx.actual_io,
            phase=ex.phase,
            may_have_children=ex.ctx.spawned > 0 or ex.dispatch_count > 1,
        )

    def _end(self, ex: Execution, finish: Finish | None) -> None:
        """Bookkeeping when an execution's coroutine ends, with its outcome."""
        rec = ex.record
        if self.running.get(rec.id) is ex:
            del self.running[rec.id]
            if finish is None and not ex.stopped:
                # Never drop a run silently: an execution still counted as
                # running must leave an outcome (the loop is being torn down).
                log.warning("task %s: execution ended without an outcome", rec.id)
        self._stopping.discard(ex)
        if ex.threads.busy:
            self._zombies.add(ex)
        if not self.running:
            self.idle.set()
        if finish is not None and not ex.stopped:
            self._finished.append((finish, ex))
            took = time.monotonic() - ex.started_mono
            ex.run_ms = int(took * 1000)
            mean = self.mean_run_s
            self.mean_run_s = took if mean is None else mean + (took - mean) / 8
        if self.on_slot_free is not None:
            self.on_slot_free()
        self._wake()

    async def _finalize(self, ex: Execution) -> Any:
        """Run a parent's finalize once its children are done (or take execute's result)."""
        assert ex.executor is not None
        if ex.executor.finalize is not None:
            return await ex.executor.finalize(ex.record.payload, ex.memo, ex.ctx)
        failed = [c for c in ex.ctx.children if c["status"] in ("failed", "dead_letter")]
        if failed:
            raise TaskError.permanent(f"{len(failed)} child task(s) failed")
        return ex.memo

    def _on_progress(self, ctx: TaskContext, fraction: float, message: str | None) -> None:
        ex = self.running.get(ctx.record.id)
        if ex is None or ex.ctx is not ctx:
            return
        ex.progress = Progress(percent=fraction, message=message, reported=True)
        ex.reported_at_ms = self._clock.now_ms()
        self._events.emit("progress", ex.record, percent=fraction, message=message, reported=True)

    # -- stopping -------------------------------------------------------------------

    def stop(self, task_id: int, reason: str) -> Execution | None:
        """Signal a running execution to stop; its outcome will be ignored.

        A task still waiting ahead is only forgotten (None)."""
        if self.ahead.discard(task_id) is not None:
            return None
        ex = self.running.pop(task_id, None)
        if ex is None:
            return None
        ex.stopped = True
        self._stopping.add(ex)
        ex.ctx.cancelled.fire(reason)
        if ex.task is not None and not ex.task.done():
            ex.task.cancel()
        if not self.running:
            self.idle.set()
        hook = ex.executor.on_cancel if ex.executor is not None else None
        if hook is not None and reason in ("cancelled", "superseded"):
            self._fire_cancel_hook(hook, ex)
        self._wake()
        return ex

    def _fire_cancel_hook(self, hook: Any, ex: Execution) -> None:
        timeout = self._config.cancel_hook_timeout_ms / 1000

        async def run() -> None:
            try:
                async with asyncio.timeout(timeout):
                    await hook(ex.record.payload, ex.ctx)
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise  # the scheduler is shutting down
                log.warning("on_cancel hook of task %s raised CancelledError", ex.record.id)
            except BaseException:  # task code raises anything
                log.warning("on_cancel hook of task %s failed", ex.record.id, exc_info=True)

        t = asyncio.get_running_loop().create_task(run())
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def unwind(self, timeout_s: float = 1.0) -> None:
        """Give stopped executions a moment to end (at shutdown)."""
        stopping = [ex.task for ex in self._stopping if ex.task is not None]
        if stopping:
            await asyncio.wait(stopping, timeout=timeout_s)

    def close(self) -> None:
        """Cancel background work (cancel hooks) and let the threads go."""
        for t in list(self._background):
            t.cancel()
        self._threads.shutdown()

    # -- what runs now ----------------------------------------------------------------

    def records(self) -> list[TaskRecord]:
        """Records of the tasks running now, with their (reported or extrapolated) progress."""
        now = self._clock.now_ms()
        return [
            ex.record.evolve(progress=self._progress_of(ex, now), started_at=ex.started_at)
            for ex in self.running.values()
        ]

    def _progress_of(self, ex: Execution, now: int) -> Progress:
        p = ex.progress
        return self._awareness.progress(
            ex.record.task_type,
            now,
            ex.started_at,
            p.percent if p.reported else None,
            ex.reported_at_ms,
            p.message,
        )

    async def seed_durations(self) -> None:
        """Load recent durations of running task types not seen yet (for extrapolation)."""
        for task_type in {ex.record.task_type for ex in self.running.values()}:
            if self._awareness.needs_seed(task_type):
                durations = await self._recent_durations(task_type, 20)
                self._awareness.seed(task_type, durations)

    async def progress_ticker(self) -> None:
        """Publish extrapolated progress (``reported: false``) for quiet running tasks."""
        interval = self._config.progress_extrapolation_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if not self.running:
                continue
            try:
                await self.seed_durations()
            except StorageError:
                continue
            now = self._clock.now_ms()
            quiet_since = now - self._config.progress_extrapolation_ms
            for ex in list(self.running.values()):
                if ex.reported_at_ms is not None and ex.reported_at_ms > quiet_since:
                    continue
                p = self._progress_of(ex, now)
                if p.extrapolated and p.percent > ex.progress.percent:
                    self._events.emit(
                        "progress",
                        ex.record,
                        percent=round(p.percent, 4),
                        message=p.message,
                        reported=False,
                    )
