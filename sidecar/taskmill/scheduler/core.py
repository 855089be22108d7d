"""The scheduler: public API, run loop and executions.

A task's path: :meth:`Scheduler.submit` resolves defaults (pure policy) and
inserts it (one store operation); the run loop wakes, and in one store
operation records every execution that finished since the last turn and
claims the next tasks the gate admits; each claimed task runs as an asyncio
task with a :class:`TaskContext`; when it ends, its outcome waits for the next
turn. Events are emitted after the store has committed, so a client that sees
``completed`` can read the completed record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..clock import Clock, SystemClock
from ..errors import (
    DatabaseGone,
    InvalidParams,
    InvalidState,
    NotFound,
    ShuttingDown,
    StorageError,
    TaskError,
    TaskmillError,
)
from ..filters import EventFilter, TaskFilter
from ..memory import no_cyclic_gc
from ..model import (
    JSONValue,
    Outcome,
    Progress,
    RetryPolicy,
    Status,
    Submission,
    SubmitResult,
    TaskRecord,
    parse_priority,
)
from ..resource import Sampler
from ..store.engine import rescue_running
from ..store.lock import DatabaseLock
from ..store.rows import (
    PAUSE_DOMAIN,
    PAUSE_GLOBAL,
    PAUSE_GROUP,
    PAUSE_PREEMPTION,
    CancelledTask,
    Claimed,
    ClaimPlan,
    Effects,
    Finish,
    FinishResult,
    NewTask,
    Phase,
    SubmitEffect,
)
from ..store.store import Store
from .awareness import Awareness
from .config import SchedulerConfig
from .context import TaskContext, state_view
from .dispatch import DispatchPolicy, Gate
from .domain import BoundExecutor, Domain, TypeRegistry
from .events import EventBus, Subscription
from .policy import (
    MAX_DURATION_MS,
    decide_failure,
    dedup_key,
    describe_error,
    encode_payload,
    encode_result,
    next_wake_ms,
    policy_from_json,
    resolve_submission,
)
from .threads import ExecutorThreads, ThreadSlot, bind
from .tracebacks import task_traceback

__all__ = ["RemoteExecutors", "Scheduler"]

log = logging.getLogger(__name__)

ShutdownMode = Literal["graceful", "hard"]

#: Tasks a batch stores per transaction (a larger batch is several; see submit_many).
BATCH_CHUNK = 1000
#: Tasks cancel_where cancels per transaction (a cancel costs more than an insert).
CANCEL_CHUNK = 500
#: Submissions resolved between two yields to the event loop.
RESOLVE_CHUNK = 500


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
    progress: Progress = field(default_factory=Progress)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
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


class Scheduler:
    """A persistent, priority-aware task scheduler over one SQLite file.

    Example::

        media = Domain("media")

        @media.task("thumb")
        async def thumb(payload, ctx):
            ctx.progress.report(0.5)
            return {"ok": True}

        async with Scheduler("tasks.db", domains=[media]) as sched:
            res = await sched.submit("media::thumb", {"path": "a.png"})
            rec = await sched.wait_for(res.id)
    """

    def __init__(
        self,
        path: str,
        *,
        domains: Sequence[Domain] = (),
        config: SchedulerConfig | None = None,
        clock: Clock | None = None,
        state: Mapping[Any, Any] | None = None,
        rng: random.Random | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self.path = path
        self.config = config or SchedulerConfig()
        self.clock: Clock = clock or SystemClock()
        self.registry = TypeRegistry(list(domains))
        #: Global shared state, seen by executors after their domain's state.
        self.state: dict[Any, Any] = dict(state or {})
        self.events = EventBus(self.clock.now_ms)
        self._rng = rng or random.Random()
        self._store: Store | None = None
        self._running: dict[int, Execution] = {}
        self._stopping_execs: set[Execution] = set()
        #: Stopped executions whose plain-def code still holds a thread: each
        #: counts against the concurrency limit until its thread returns.
        self._zombies: set[Execution] = set()
        self._threads = ExecutorThreads()
        self._finished: list[tuple[Finish, Execution]] = []
        self._wake_event = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._max_concurrency = self.config.max_concurrency
        self._paused = False
        self._dispatching = False
        self._accepting = False
        self._closed = asyncio.Event()
        self._shutdown_started = False
        self._closing_loop = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._next_due: int | None = None
        self._completions = 0
        self._turns_started = 0
        self._turns_done = 0
        self._tick_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.metrics: Counter[str] = Counter()
        self.remote: RemoteExecutors | None = None
        self.policy = DispatchPolicy(
            default_group_limit=self.config.default_group_concurrency,
            default_group_weight=self.config.default_group_weight,
            aging=self.config.aging,
        )
        cfg = self.config
        self.awareness = Awareness(
            monitoring=cfg.resource_monitoring,
            sampler=sampler,
            interval_ms=cfg.sample_interval_ms,
            alpha=cfg.ewma_alpha,
            bandwidth_limit_bps=cfg.bandwidth_limit_bps,
            memory_threshold=cfg.memory_threshold,
            throttle=cfg.throttle,
            now_ms=self.clock.now_ms,
            emit=self.events.emit,
            wake=self.wake,
        )
        self._ticker: asyncio.Task[None] | None = None
        self._state_views: dict[str, Mapping[Any, Any]] = {}
        self._preempted = False
        self._recheck_preempted = False
        self._next_sweep = 0
        self._background: set[asyncio.Task[Any]] = set()
        #: The database's exclusive lock while started (None for in-memory databases).
        self.lock: DatabaseLock | None = None
        self.clock.on_change(self.wake)

    # ------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> Scheduler:
        """Open the database, recover from a crash, and start dispatching.

        Raises:
            DatabaseInUse: another scheduler holds the database (nothing was read
                or written).
            StorageError: the database cannot be opened (it is left untouched).
        """
        if self._store is not None:
            return self
        # One scheduler per database, taken before anything is read: a second
        # one would recover (rerun) the first one's running tasks.
        if self.path not in ("", ":memory:") and not self.path.startswith("file:"):
            self.lock = DatabaseLock.acquire(self.path)
        try:
            self._store = await Store.open(
                self.path,
                synchronous=self.config.synchronous.upper(),
                busy_timeout_ms=self.config.busy_timeout_ms,
            )
            now = self.clock.now_ms()
            recovery = await self._store.recover(now)
            groups, domains = await self._store.load_pauses()
        except BaseException:
            if self._store is not None:
                with contextlib.suppress(Exception):
                    await self._store.close()
                self._store = None
            if self.lock is not None:
                self.lock.release()
            raise
        self.policy.paused_groups.update(groups)
        self.policy.paused_domains.update(domains)
        if recovery.parents_ready:
            log.info("%d waiting parent(s) ready to finalize", len(recovery.parents_ready))
        if recovery.requeued:
            log.info("recovered %d interrupted task(s) back to pending", recovery.requeued)
        self._accepting = True
        self._dispatching = True
        self.awareness.start()
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._run(), name="taskmill-loop")
        self._ticker = loop.create_task(self._progress_ticker(), name="taskmill-progress")
        return self

    async def __aenter__(self) -> Scheduler:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown("graceful")

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ShuttingDown("the scheduler is not started")
        return self._store

    def wake(self) -> None:
        """Make the run loop take a turn now."""
        self._wake_event.set()

    def add_domain(self, domain: Domain) -> None:
        """Register a domain (and its types) at runtime."""
        self.registry.add_domain(domain)
        self.wake()

    # ------------------------------------------------------------------
    # Submission

    async def submit(
        self, task_type: str, payload: JSONValue = None, **options: Any
    ) -> SubmitResult:
        """Submit one task. ``options`` are the fields of :class:`Submission`.

        Returns the outcome: ``inserted``, ``duplicate``, ``upgraded``,
        ``requeued`` or ``superseded``, with the task's id.

        Raises:
            UnknownTaskType, InvalidParams, PayloadTooLarge, ShuttingDown, StorageError.
        """
        try:
            sub = Submission(task_type=task_type, payload=payload, **options)
        except TypeError as exc:
            raise InvalidParams(str(exc)) from exc
        return (await self.submit_many([sub]))[0]

    async def submit_batch(self, subs: Sequence[Submission]) -> list[SubmitResult]:
        """Submit many tasks in one transaction; equal keys within it are last-wins."""
        return await self.submit_many(subs)

    async def submit_many(
        self, subs: Sequence[Submission], *, parent: TaskRecord | None = None
    ) -> list[SubmitResult]:
        """Submit many tasks; equal keys within them are last-wins.

        Up to :data:`BATCH_CHUNK` tasks are one transaction. A larger batch is
        checked whole first (an invalid item rejects it with nothing stored),
        then stored in transactions of :data:`BATCH_CHUNK`, yielding to the
        event loop between them so other clients are served meanwhile. If a
        chunk fails (a dependency cycle, a full disk), the chunks before it
        stay stored and the error says how many tasks that is.
        """
        self._check_accepting()
        if len(subs) <= BATCH_CHUNK:
            return await self._submit_many(subs, parent)
        with no_cyclic_gc():
            return await self._submit_many(subs, parent)

    async def _submit_many(
        self, subs: Sequence[Submission], parent: TaskRecord | None
    ) -> list[SubmitResult]:
        now = self.clock.now_ms()
        items: list[NewTask] = []
        parents: dict[int, TaskRecord | None] = {}
        for i, sub in enumerate(subs):
            if i and i % RESOLVE_CHUNK == 0:
                await asyncio.sleep(0)  # a big batch must not hold the loop
            try:
                p = parent
                if p is None and sub.parent_id is not None:
                    if sub.parent_id not in parents:
                        parents[sub.parent_id] = await self._parent_record(sub.parent_id)
                    p = parents[sub.parent_id]
                items.append(resolve_submission(sub, self.registry, self.config, now, parent=p))
            except TaskmillError as exc:
                if len(subs) > 1 and exc.field is not None:
                    exc.field = f"tasks[{i}].{exc.field}"
                raise
        if len(items) <= BATCH_CHUNK:
            effects = await self.store.submit(items, now)
            return await self._after_submit(items, effects, now)
        # Last-wins across the whole batch, so chunking changes no outcome.
        last: dict[tuple[str, str], int] = {}
        for i, it in enumerate(items):
            if i and i % (4 * RESOLVE_CHUNK) == 0:
                await asyncio.sleep(0)
            last[it.task_type, it.key] = i
        winners = sorted(last.values())
        results: dict[int, SubmitResult] = {}
        for start in range(0, len(winners), BATCH_CHUNK):
            chunk = winners[start : start + BATCH_CHUNK]
            part = [items[i] for i in chunk]
            try:
                effects = await self.store.submit(part, now, positions=chunk, inline=False)
            except TaskmillError as exc:
                if start:
                    exc.message += (
                        f" (the batch was stored in chunks of {BATCH_CHUNK}: the tasks before "
                        f"tasks[{chunk[0]}], {start} of them, were stored)"
                    )
                    exc.args = (exc.message,)
                raise
            for i, res in zip(chunk, await self._after_submit(part, effects, now), strict=True):
                results[i] = res
            await asyncio.sleep(0)
        out = []
        for i, it in enumerate(items):
            if i and i % RESOLVE_CHUNK == 0:
                await asyncio.sleep(0)
            won = results[last[it.task_type, it.key]]
            out.append(
                won
                if i in results
                else SubmitResult(outcome=Outcome.DUPLICATE, id=won.id, replaced_id=won.id)
            )
        return out

    async def _after_submit(
        self, items: Sequence[NewTask], effects: list[SubmitEffect], now: int
    ) -> list[SubmitResult]:
        for item, eff in zip(items, effects, strict=True):
            # A running parent must look for children when it finishes.
            if item.parent_id is not None and eff.outcome is not Outcome.DUPLICATE:
                ex = self._running.get(item.parent_id)
                if ex is not None:
                    ex.ctx.spawned += 1
        results = self._apply_submit_effects(effects)
        urgent = [
            e.record
            for e in effects
            if e.outcome is not Outcome.DUPLICATE
            and e.record is not None
            and e.record.priority <= self.config.preempt_priority
            and e.record.status is Status.PENDING
            and (e.record.run_after is None or e.record.run_after <= now)
        ]
        if urgent:
            await self._preempt(urgent)
        return results

    async def _parent_record(self, parent_id: int) -> TaskRecord:
        ex = self._running.get(parent_id)
        if ex is not None:
            return ex.record
        rec = await self.store.get_active(parent_id)
        if rec is None:
            raise InvalidParams(f"parent task {parent_id} is not active", field="parent_id")
        return rec

    def _apply_submit_effects(self, effects: list[SubmitEffect]) -> list[SubmitResult]:
        out: list[SubmitResult] = []
        changed = False
        for eff in effects:
            out.append(SubmitResult(outcome=eff.outcome, id=eff.id, replaced_id=eff.replaced_id))
            if eff.outcome is Outcome.DUPLICATE:
                continue
            changed = True
            self.metrics["submitted"] += eff.outcome in (Outcome.INSERTED, Outcome.SUPERSEDED)
            for ct in eff.cancelled:
                self._stop_execution(ct.record.id, "superseded")
                self.metrics["cancelled"] += 1
                self.events.emit("cancelled", ct.record, reason="superseded")
            if eff.outcome is Outcome.SUPERSEDED and eff.old_record is not None:
                self.metrics["superseded"] += 1
                if eff.stop_running:
                    self._stop_execution(eff.old_record.id, "superseded")
                self.events.emit("superseded", eff.old_record, new_task_id=eff.id)
            assert eff.record is not None
            self.events.emit("submitted", eff.record, outcome=eff.outcome.value)
        if changed:
            self.policy.invalidate_counts()
            self.wake()
        return out

    async def _spawn_children(
        self, parent: TaskRecord, subs: Sequence[Submission]
    ) -> list[SubmitResult]:
        fixed = [dataclasses.replace(s, parent_id=parent.id) for s in subs]
        return await self.submit_many(fixed, parent=parent)

    async def _spawn_sibling(
        self, rec: TaskRecord, task_type: str, payload: JSONValue, options: dict[str, Any]
    ) -> SubmitResult:
        if rec.parent_id is None:
            raise InvalidState(f"task {rec.id} has no parent, so it cannot spawn a sibling")
        options["parent_id"] = rec.parent_id
        return await self.submit(task_type, payload, **options)

    def _check_accepting(self) -> None:
        if not self._accepting:
            if self._store is None and not self._shutdown_started:
                raise ShuttingDown("the scheduler is not started")
            raise ShuttingDown("the scheduler is shutting down")

    # ------------------------------------------------------------------
    # The run loop

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake_event.clear()
            self._turns_started += 1
            try:
                await self._turn()
                backoff = 0.0
            except DatabaseGone:
                backoff = 2.0  # the store said why, once; nothing can be written now
            except StorageError as exc:
                backoff = min(2.0, backoff * 2 or 0.05)
                log.error("dispatch turn failed, retrying in %.2fs: %s", backoff, exc)
            except Exception:  # a bug; keep the scheduler alive
                backoff = min(2.0, backoff * 2 or 0.05)
                log.exception("dispatch turn failed")
            finally:
                self._turns_done += 1
                self._resolve_tick_waiters()
            if (
                not self._dispatching
                and self._shutdown_started
                and not self._finished
                and (not self._running or self._closing_loop)
            ):
                return
            if self._wake_event.is_set() and not backoff:
                await asyncio.sleep(0)
                continue
            now = self.clock.now_ms()
            # Delayed work that is due only matters with a free slot; when all
            # are busy, a finishing task wakes the loop.
            free = self._dispatching and not self._paused and self._free_slots() > 0
            due = self._next_due if free else None
            for t in (self.policy.next_group_resume(), self._next_sweep or None):
                if t is not None:
                    due = t if due is None else min(due, t)
            delay_ms = next_wake_ms(now, due, self.config.poll_interval_ms)
            if backoff:
                delay_ms = int(backoff * 1000)
            if not self.clock.is_real:
                # Fake time moves only by advance(), which wakes us.
                delay_ms = self.config.poll_interval_ms
            if delay_ms > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_ms / 1000):
                        await self._wake_event.wait()
            else:
                await asyncio.sleep(0)  # never spin without letting the loop run

    def _free_slots(self) -> int:
        """Slots the concurrency limit leaves: running executions and threads
        still held by stopped ones count."""
        return max(0, self._max_concurrency - len(self._running) - len(self._zombies))

    def _thread_freed(self, slot: ThreadSlot) -> None:
        for ex in self._zombies:
            if ex.threads is slot:
                self._zombies.discard(ex)
                self.wake()
                return

    def _resolve_tick_waiters(self) -> None:
        if not self._tick_waiters:
            return
        keep = []
        for target, fut in self._tick_waiters:
            if self._turns_done >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._tick_waiters = keep

    async def tick(self, timeout: float = 10.0) -> None:
        """Wake the run loop and wait until one whole turn has run after this call.

        Tests use it to observe the scheduler deterministically (e.g. after
        advancing a fake clock) instead of sleeping.
        """
        if self._loop_task is None or self._loop_task.done():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tick_waiters.append((self._turns_started + 1, fut))
        self.wake()
        async with asyncio.timeout(timeout):
            await fut

    def _claim_plan(self, now: int, limit: int) -> tuple[ClaimPlan, Gate]:
        domain_caps = {
            name: d.max_concurrency
            for name, d in self.registry.domains.items()
            if d.max_concurrency is not None
        }
        return self.policy.plan(
            now=now,
            limit=limit,
            running=[ex.record for ex in self._running.values()],
            domain_caps=domain_caps,
            type_caps=self.registry.type_caps,
            worker_slots=self._worker_slots,
            resources=self.awareness.view(),
        )

    def _worker_slots(self, task_type: str) -> int | None:
        """Free remote slots of a type with no Python executor (None: one runs it
        here, or the type is unknown and its run fails at once)."""
        tt = self.registry.find(task_type)
        if tt is None or tt.executor is not None:
            return None
        return 0 if self.remote is None else self.remote.free_slots_of(task_type)

    async def _housekeeping(self, now: int) -> None:
        """Timed group resumes, the TTL sweep and the resume of preempted work, when due."""
        sweep = self.config.expiry_sweep_interval_ms
        if sweep is not None and now >= self._next_sweep:
            self._next_sweep = now + sweep
            await self.expire_now()
        for group, resume_at in list(self.policy.paused_groups.items()):
            if resume_at is not None and resume_at <= now:
                await self.resume_group(group)
        if self._preempted and self._recheck_preempted:
            self._recheck_preempted = False
            resumed, remaining = await self.store.resume_preempted(
                now, self.config.preempt_priority
            )
            self._preempted = remaining
            if resumed:
                self.wake()

    async def _turn(self) -> None:
        now = self.clock.now_ms()
        await self._housekeeping(now)
        finished, self._finished = self._finished, []
        limit = 0
        if self._dispatching and not self._paused:
            limit = self._free_slots()
        due = self._next_due is not None and self._next_due <= now
        if not finished and limit == 0 and not due:
            return
        if finished:
            self._recheck_preempted = True
        finishes = [f for f, _ in finished]
        completions = sum(1 for f in finishes if f.kind != "retry")
        retention = self.config.retention
        prune = None
        if completions and (retention.max_count is not None or retention.max_age_ms is not None):
            before = self._completions
            self._completions += completions
            interval = max(1, retention.prune_interval)
            if before == 0 or before // interval != self._completions // interval:
                prune = (retention.max_count, retention.max_age_ms)
        plan = self._claim_plan(now, limit)[0] if limit else None
        try:
            turn = await self.store.turn(finishes, now, plan=plan, prune=prune)
        except BaseException:
            # Nothing was written: keep the outcomes for the next turn.
            self._finished[:0] = finished
            raise
        claim = turn.claim
        self._next_due = claim.next_due
        self.policy.counted(claim.ready_counts)
        self.metrics["gate_denials"] += claim.denied + claim.deferred
        self.metrics["rate_limited"] += claim.deferred
        for (f, ex), res in zip(finished, turn.results, strict=True):
            self._after_finish(f, ex, res, now)
        self._apply_effects(turn.effects)
        self._apply_effects(claim.effects)
        for c in claim.claimed:
            if c.record.expected_io.disk_read or c.record.expected_io.disk_write:
                self.awareness.io_starts_since_sample += 1
            self._launch(c)
        if not self._running:
            self._idle.set()

    def _after_finish(self, f: Finish, ex: Execution, res: FinishResult, now: int) -> None:
        rec = ex.record
        kind = res.kind
        if kind == "stale":
            return
        duration = max(0, now - (rec.started_at or now))
        if kind in ("completed", "requeued"):
            self.metrics["completed"] += 1
            self.awareness.record_duration(rec.task_type, duration)
            if res.occurrences is not None:
                if res.skipped:
                    self.metrics["recurring_skipped"] += res.skipped
                    self.events.emit("recurring_skipped", rec, reason="overdue", count=res.skipped)
                self.events.emit(
                    "recurring_completed",
                    rec,
                    occurrences=res.occurrences,
                    next_task_id=res.next_id,
                )
            self.events.emit("completed", rec, duration_ms=duration, result=ex.value)
        elif kind == "waiting":
            self.events.emit("waiting", rec, children_count=res.children)
        elif kind == "finalize":
            self.wake()
        elif kind == "retry":
            self.metrics["retried"] += 1
            self._emit_failed(rec, f.error, f.traceback, retry_after_ms=f.retry_delay_ms)
        elif kind == "dead_letter":
            self.metrics["dead_lettered"] += 1
            self.metrics["failed"] += 1
            extra = {} if f.traceback is None else {"traceback": f.traceback}
            self.events.emit(
                "dead_lettered", rec, error=f.error, retry_count=rec.retry_count, **extra
            )
        else:
            self._emit_failed(rec, f.error, f.traceback)

    def _emit_failed(
        self,
        rec: TaskRecord,
        error: str | None,
        traceback: str | None = None,
        *,
        retry_after_ms: int | None = None,
    ) -> None:
        """Count and emit ``failed``: retried when ``retry_after_ms`` is given."""
        self.metrics["failed"] += 1
        extra = {} if traceback is None else {"traceback": traceback}
        self.events.emit(
            "failed",
            rec,
            error=error,
            retryable=retry_after_ms is not None,
            will_retry=retry_after_ms is not None,
            retry_after_ms=retry_after_ms,
            attempt=rec.retry_count + 1,
            **extra,
        )

    def _state_of(self, domain: Domain | None) -> Mapping[Any, Any]:
        """Shared state seen by a domain's executors (a live view, built once)."""
        key = domain.name if domain is not None else ""
        view = self._state_views.get(key)
        if view is None:
            view = state_view(domain.state if domain is not None else {}, self.state)
            self._state_views[key] = view
        return view

    def _apply_effects(self, eff: Effects) -> None:
        """Emit events and stop executions for tasks an operation touched indirectly."""
        now = self.clock.now_ms()
        for ct in eff.cancelled:
            self._stop_execution(ct.record.id, "cancelled")
            self.metrics["cancelled"] += 1
            self.events.emit("cancelled", ct.record, reason=ct.reason)
        for rec in eff.expired:
            self.metrics["expired"] += 1
            self.events.emit("expired", rec, age_ms=now - rec.created_at)
        for rec, failed_dep in eff.dependency_failed:
            self.metrics["dependency_failures"] += 1
            self.events.emit("dependency_failed", rec, failed_dependency=failed_dep)
        for rec in eff.unblocked:
            self.events.emit("unblocked", rec)
        if eff.unblocked:
            self.policy.invalidate_counts()
            self.wake()
        for rec, error, was in eff.failed_parents:
            if was is Status.RUNNING:
                self._stop_execution(rec.id, "cancelled")
            self._emit_failed(rec, error)
        if eff.parents_ready:
            self.wake()

    def _launch(self, claimed: Claimed) -> None:
        rec = claimed.record
        tt = self.registry.find(rec.task_type)
        executor: BoundExecutor | None = None
        if tt is not None:
            executor = tt.executor
            if executor is None and self.remote is not None:
                executor = self.remote.executor_for(rec.task_type)
        domain = self.registry.domains.get(rec.domain)
        loop = asyncio.get_running_loop()
        ctx = TaskContext(
            self,
            rec,
            rec.retry_count + 1,
            self._state_of(domain),
            loop,
            phase=claimed.phase,
            children=claimed.children,
        )
        ctx._progress_sink = self._on_progress
        ex = Execution(
            record=rec,
            dispatch_count=claimed.dispatch_count,
            ctx=ctx,
            executor=executor,
            started_mono=time.monotonic(),
            phase=claimed.phase,
            policy=policy_from_json(claimed.retry_policy_json, self.config.retry),
            memo=None if claimed.memo_json is None else json.loads(claimed.memo_json),
            threads=ThreadSlot(self._thread_freed),
            timeout_ms=None if tt is None else tt.timeout_ms,
        )
        self._running[rec.id] = ex
        self._idle.clear()
        self.metrics["dispatched"] += 1
        self.events.emit("dispatched", rec, attempt=rec.retry_count + 1)
        ex.task = loop.create_task(
            self._execute(ex),
            name=f"taskmill-task-{rec.id}",
            context=bind(self._threads, ex.threads),
        )
        if executor is not None and executor.release is not None:
            release = executor.release
            ex.task.add_done_callback(lambda _t: release())

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
        deadline = asyncio.timeout(ex.timeout_ms / 1000 if ex.timeout_ms else None)
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
                self._end_execution(ex, None)
                raise
            finish = self._failure(ex, exc)
        except BaseException as exc:  # task code raises anything
            if isinstance(exc, TimeoutError) and deadline.expired():
                # Tell code that still runs (a thread, a worker) to stop.
                ex.ctx.cancelled._set("timeout")
                exc = TaskError.transient(f"the attempt timed out after {ex.timeout_ms} ms")
            finish = self._failure(ex, exc)
        else:
            finish = self._success(ex, value)
        self._end_execution(ex, finish)

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
                kind="failed",
                error=f"the result cannot be stored: {message}",
                actual_io=ex.ctx.actual_io,
                phase=ex.phase,
            )
        ex.value = value
        return Finish(
            task_id=rec.id,
            dispatch_count=ex.dispatch_count,
            kind="completed",
            result_json=result_json,
            actual_io=ex.ctx.actual_io,
            phase=ex.phase,
            may_have_children=ex.ctx.spawned > 0 or ex.dispatch_count > 1,
        )

    def _end_execution(self, ex: Execution, finish: Finish | None) -> None:
        """Bookkeeping when an execution's coroutine ends, with its outcome."""
        rec = ex.record
        stopped = ex.stopped
        if self._running.get(rec.id) is ex:
            del self._running[rec.id]
            if finish is None and not stopped:
                # Never drop a run silently: an execution still counted as
                # running must leave an outcome (the loop is being torn down).
                log.warning("task %s: execution ended without an outcome", rec.id)
        self._stopping_execs.discard(ex)
        if ex.threads.busy:
            self._zombies.add(ex)
        if not self._running:
            self._idle.set()
        if finish is not None and not stopped:
            self._finished.append((finish, ex))
        self.wake()

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
        ex = self._running.get(ctx.record.id)
        if ex is None or ex.ctx is not ctx:
            return
        ex.progress = Progress(percent=fraction, message=message, reported=True)
        ex.reported_at_ms = self.clock.now_ms()
        self.events.emit("progress", ex.record, percent=fraction, message=message, reported=True)

    def _stop_execution(self, task_id: int, reason: str) -> Execution | None:
        """Signal a running execution to stop; its outcome will be ignored."""
        ex = self._running.pop(task_id, None)
        if ex is None:
            return None
        ex.stopped = True
        self._stopping_execs.add(ex)
        ex.ctx.cancelled._set(reason)
        if ex.task is not None and not ex.task.done():
            ex.task.cancel()
        if not self._running:
            self._idle.set()
        hook = ex.executor.on_cancel if ex.executor is not None else None
        if hook is not None and reason in ("cancelled", "superseded"):
            self._fire_cancel_hook(hook, ex)
        self.wake()
        return ex

    def _fire_cancel_hook(self, hook: Any, ex: Execution) -> None:
        timeout = self.config.cancel_hook_timeout_ms / 1000

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

    # ------------------------------------------------------------------
    # Control

    async def cancel(self, task_id: int, *, reason: str = "cancelled") -> bool:
        """Cancel an active task and its children. False if it is not active."""
        now = self.clock.now_ms()
        cancelled, eff = await self.store.cancel([task_id], now, reason)
        self._after_cancel(cancelled, reason)
        self._apply_effects(eff)
        return any(ct.record.id == task_id for ct in cancelled)

    async def cancel_where(self, flt: TaskFilter) -> list[int]:
        """Cancel every active task matching the filter; returns the ids cancelled.

        The matching tasks are cancelled in pages of :data:`CANCEL_CHUNK`, each
        its own transaction, yielding to the event loop in between, so a
        filter over hundreds of thousands of tasks never holds other clients
        up. If the process dies mid-way, the pages done stay cancelled and
        the rest stay active: run the same ``cancel_where`` again.
        """
        if flt.is_empty():
            raise InvalidParams("give at least one filter", field="filter")
        out: list[int] = []
        after: int | None = -1
        while after is not None:
            now = self.clock.now_ms()
            cancelled, after, eff = await self.store.cancel_page(flt, after, CANCEL_CHUNK, now)
            self._after_cancel(cancelled, "cancelled")
            self._apply_effects(eff)
            out.extend(ct.record.id for ct in cancelled)
            if after is not None:
                await asyncio.sleep(0)
        return out

    def _after_cancel(self, cancelled: list[CancelledTask], reason: str) -> None:
        for ct in cancelled:
            self._stop_execution(ct.record.id, reason)
            self.metrics["cancelled"] += 1
            self.events.emit("cancelled", ct.record, reason=reason)
        if cancelled:
            self.wake()

    async def set_priority(self, task_id: int, priority: int | str) -> bool:
        """Change the priority of a pending, paused or blocked task."""
        value = parse_priority(priority)
        updated = await self.store.set_priority(task_id, value)
        if updated:
            self.wake()
        return updated

    async def retry_dead_letter(self, task_id: int) -> SubmitResult:
        """Resubmit a dead-lettered task as a new task (retry count 0)."""
        rec, policy_json = await self.store.retry_source(task_id)
        # The task comes back with its own retry policy and retry budget.
        policy = policy_from_json(policy_json, self.config.retry)
        sub = Submission(
            task_type=rec.task_type,
            payload=rec.payload,
            key=None if rec.label == rec.task_type else rec.label,
            label=rec.label,
            priority=rec.priority,
            group=rec.group,
            tags=dict(rec.tags),
            expected_io=rec.expected_io,
            retry=dataclasses.replace(policy, max_retries=rec.max_retries),
        )
        return (await self.submit_many([sub]))[0]

    async def pause(self) -> None:
        """Pause everything: running tasks stop and go back to paused."""
        if self._paused:
            return
        self._paused = True
        await self._pause_running(list(self._running.values()), PAUSE_GLOBAL, "paused")
        self.events.emit("paused")

    async def resume(self) -> None:
        """Undo :meth:`pause`."""
        if not self._paused:
            return
        self._paused = False
        now = self.clock.now_ms()
        await self.store.clear_pause_bit(PAUSE_GLOBAL, now)
        self.events.emit("resumed")
        self.wake()

    @property
    def is_paused(self) -> bool:
        return self._paused

    async def _pause_running(
        self, execs: list[Execution], bit: int, reason: str, by_task_id: int | None = None
    ) -> list[int]:
        if not execs:
            return []
        now = self.clock.now_ms()
        pairs = [(ex.record.id, ex.dispatch_count) for ex in execs]
        done = await self.store.pause_running(pairs, bit, now)
        done_set = set(done)
        for ex in execs:
            if ex.record.id in done_set:
                self._stop_execution(ex.record.id, reason)
                self.metrics["preempted"] += 1
                self.events.emit("preempted", ex.record, by_task_id=by_task_id)
        return done

    async def release(self, task_ids: Sequence[int], reason: str = "released") -> list[int]:
        """Put running tasks back to pending without counting a retry.

        Used when the executor is gone (a remote worker disconnected): the
        task runs again when an executor is available, like after a crash.
        """
        execs = [self._running[t] for t in task_ids if t in self._running]
        if not execs:
            return []
        pairs = [(ex.record.id, ex.dispatch_count) for ex in execs]
        done = await self.store.return_to_pending(pairs)
        for task_id in done:
            self._stop_execution(task_id, reason)
        self.wake()
        return done

    def execution_context(self, task_id: int) -> TaskContext | None:
        """The context of a task running now, if any."""
        ex = self._running.get(task_id)
        return None if ex is None else ex.ctx

    async def _preempt(self, urgent: Sequence[TaskRecord]) -> None:
        """Make room for urgent tasks: pause as few running tasks as they need
        slots, the least urgent first (and, among equals, the latest started,
        which loses the least work). They resume once no urgent task is ahead."""
        waiting = sorted(urgent, key=lambda r: (r.priority, r.id))[self._free_slots() :]
        if not waiting:
            return
        candidates = sorted(
            self._running.values(),
            key=lambda ex: (-ex.record.effective_priority, -(ex.record.started_at or 0)),
        )
        chosen: dict[int, list[Execution]] = {}
        taken: set[int] = set()
        for rec in waiting:
            for ex in candidates:
                if ex.record.id not in taken and ex.record.effective_priority > rec.priority:
                    taken.add(ex.record.id)
                    chosen.setdefault(rec.id, []).append(ex)
                    break
        for by_task_id, execs in chosen.items():
            done = await self._pause_running(execs, PAUSE_PREEMPTION, "preempted", by_task_id)
            if done:
                self._preempted = True

    async def expire_now(self) -> int:
        """Expire every queued task past its deadline now (the periodic sweep)."""
        now = self.clock.now_ms()
        eff = await self.store.expire_due(now)
        self._apply_effects(eff)
        return len(eff.expired)

    # -- recurring -------------------------------------------------------------

    async def recurring_list(self, domain: str | None = None) -> list[dict[str, Any]]:
        """Every active recurring schedule."""
        return await self.store.schedules(domain)

    async def pause_recurring(self, schedule_id: int) -> None:
        """Pause a schedule: its queued occurrence is held (a running one
        finishes) and so is each next one, until resumed or cancelled.

        Raises:
            NotFound: no active schedule with that (schedule or task) id.
        """
        now = self.clock.now_ms()
        await self.store.set_schedule_paused(schedule_id, True, now)

    async def resume_recurring(self, schedule_id: int) -> None:
        """Undo :meth:`pause_recurring`: the held occurrence runs when due."""
        now = self.clock.now_ms()
        resumed = await self.store.set_schedule_paused(schedule_id, False, now)
        if resumed:
            self.policy.invalidate_counts()
            self.wake()

    async def cancel_recurring(self, schedule_id: int) -> None:
        """End a schedule: its current occurrence is cancelled.

        Raises:
            NotFound: no active schedule with that (schedule or task) id.
        """
        task_id = await self.store.schedule_task(schedule_id)
        if task_id is None:
            raise NotFound(f"no recurring schedule {schedule_id}", field="id")
        now = self.clock.now_ms()
        await self.store.set_schedule_paused(schedule_id, True, now)
        await self.cancel(task_id)

    # -- worker-declared types ---------------------------------------------------

    async def remember_worker_type(self, task_type: str, config: Mapping[str, Any]) -> None:
        """Persist a type a remote worker declared inline (its tasks then wait
        in ``pending`` across restarts until a worker serves it)."""
        now = self.clock.now_ms()
        text = json.dumps(dict(config), sort_keys=True)
        await self.store.save_worker_type(task_type, text, now)

    async def forget_worker_type(self, task_type: str) -> bool:
        """Forget a persisted worker declaration, unless a task of the type is
        still active (then it stays declared, and its tasks wait). Returns
        whether it was forgotten."""
        return await self.store.forget_worker_type(task_type)

    async def remembered_worker_types(self) -> list[tuple[str, dict[str, Any]]]:
        """Every persisted worker declaration: ``(task_type, config)``."""
        rows = await self.store.worker_types()
        return [(t, json.loads(cfg)) for t, cfg in rows]

    # -- domains -------------------------------------------------------------

    def _domain(self, domain: str) -> Domain:
        d = self.registry.domains.get(domain)
        if d is None:
            raise NotFound(f"no domain {domain!r}", field="domain")
        return d

    async def pause_domain(self, domain: str) -> int:
        """Pause a domain: nothing of it dispatches, including tasks submitted later.

        Returns how many tasks were paused (queued and running).
        """
        self._domain(domain)
        self.policy.paused_domains.add(domain)
        now = self.clock.now_ms()
        queued = await self.store.pause_domain(domain, now)
        running = [ex for ex in self._running.values() if ex.record.domain == domain]
        stopped = await self._pause_running(running, PAUSE_DOMAIN, "paused")
        self.events.emit("domain_paused", domain=domain)
        return queued + len(stopped)

    async def resume_domain(self, domain: str) -> int:
        """Undo :meth:`pause_domain` (a global pause still holds). Returns tasks resumed."""
        self._domain(domain)
        self.policy.paused_domains.discard(domain)
        now = self.clock.now_ms()
        resumed = await self.store.resume_domain(domain, now)
        self.events.emit("domain_resumed", domain=domain)
        self.wake()
        return len(resumed)

    # -- groups --------------------------------------------------------------

    async def pause_group(self, group: str, duration_ms: int | None = None) -> dict[str, int]:
        """Pause a group (optionally for ``duration_ms``); survives restarts.

        Tasks submitted to it meanwhile are stored paused; TTLs keep running.
        Returns ``{pending, running}``: how many queued and running tasks it paused.
        """
        if not group:
            raise InvalidParams("group must be a non-empty string", field="group")
        if duration_ms is not None and not 0 <= duration_ms <= MAX_DURATION_MS:
            raise InvalidParams(
                f"duration_ms must be within 0..{MAX_DURATION_MS}", field="duration_ms"
            )
        now = self.clock.now_ms()
        resume_at = None if duration_ms is None else now + duration_ms
        again = group in self.policy.paused_groups
        self.policy.paused_groups[group] = resume_at
        queued = await self.store.pause_group(group, now, resume_at)
        running = [ex for ex in self._running.values() if ex.record.group == group]
        stopped = await self._pause_running(running, PAUSE_GROUP, "paused")
        if not again or queued or stopped:
            self.events.emit("group_paused", group=group, pending=queued, running=len(stopped))
        self.wake()
        return {"pending": queued, "running": len(stopped)}

    async def resume_group(self, group: str) -> int:
        """Resume a paused group; returns how many tasks became pending."""
        if group not in self.policy.paused_groups:
            return 0
        del self.policy.paused_groups[group]
        now = self.clock.now_ms()
        resumed = await self.store.resume_group(group, now)
        self.events.emit("group_resumed", group=group, resumed=len(resumed))
        self.wake()
        return len(resumed)

    def set_group_limit(self, group: str, value: int | None) -> None:
        """Cap how many tasks of a group run at once (None removes the cap)."""
        if value is None:
            self.policy.group_limits.pop(group, None)
        elif value < 0:
            raise InvalidParams("value must be >= 0", field="value")
        else:
            self.policy.group_limits[group] = value
        self.wake()

    def set_default_group_limit(self, value: int) -> None:
        """The cap of every group without its own (0: none)."""
        if value < 0:
            raise InvalidParams("value must be >= 0", field="value")
        self.policy.default_group_limit = value
        self.wake()

    def set_group_weight(self, group: str, weight: float | None) -> None:
        """Set a group's share in weighted fair scheduling (None: the default)."""
        previous = self.policy.weight(group)
        if weight is None:
            self.policy.group_weights.pop(group, None)
        else:
            self.policy.group_weights[group] = self.policy.check_weight(weight)
        self.events.emit(
            "group_weight_changed", group=group, previous=previous, weight=self.policy.weight(group)
        )
        self.wake()

    def set_group_min_slots(self, group: str, value: int | None) -> None:
        """Reserve ``value`` slots for a group when it has work (None removes)."""
        if value is None:
            self.policy.group_min_slots.pop(group, None)
        elif value < 0:
            raise InvalidParams("value must be >= 0", field="value")
        else:
            self.policy.group_min_slots[group] = value
        self.wake()

    # -- rate limits -----------------------------------------------------------

    def set_rate_limit(
        self,
        *,
        task_type: str | None = None,
        group: str | None = None,
        per_second: float,
        burst: int | None = None,
    ) -> None:
        """Limit how fast tasks of a type, or of a group, start (token bucket)."""
        scope, key = self._rate_scope(task_type, group)
        self.policy.set_rate_limit(scope, key, per_second, burst, self.clock.now_ms())
        self.wake()

    def remove_rate_limit(self, *, task_type: str | None = None, group: str | None = None) -> bool:
        scope, key = self._rate_scope(task_type, group)
        removed = self.policy.remove_rate_limit(scope, key)
        self.wake()
        return removed

    @staticmethod
    def _rate_scope(task_type: str | None, group: str | None) -> tuple[str, str]:
        if task_type is not None and group is None:
            return "type", task_type
        if group is not None and task_type is None:
            return "group", group
        raise InvalidParams("give exactly one of task_type and group", field="task_type")

    def set_max_concurrency(self, value: int) -> None:
        """Change how many tasks may run at once (from the next dispatch)."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParams("max_concurrency must be a non-negative integer", field="value")
        self._max_concurrency = value
        self.wake()

    def set_domain_max_concurrency(self, domain: str, value: int | None) -> None:
        """Cap how many tasks of a domain run at once (None removes the cap).

        Raises:
            NotFound: the domain is not declared.
        """
        d = self.registry.domains.get(domain)
        if d is None:
            raise NotFound(f"no domain {domain!r}", field="domain")
        d.max_concurrency = value
        self.wake()

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    async def shutdown(
        self, mode: ShutdownMode = "graceful", timeout_ms: int | None = None
    ) -> None:
        """Stop the scheduler.

        ``graceful``: stop dispatching, let running tasks finish for up to the
        drain timeout, then stop the rest and put them back to pending.
        ``hard``: stop running tasks at once, back to pending (no retry counted).
        """
        if self._shutdown_started:
            await self._closed.wait()
            return
        self._shutdown_started = True
        self._accepting = False
        self._dispatching = False
        if self._store is None:
            self._closed.set()
            return
        self.events.emit("shutdown", mode=mode)
        if mode == "graceful" and self._running:
            timeout = (self.config.drain_timeout_ms if timeout_ms is None else timeout_ms) / 1000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
        remaining = list(self._running.values())
        if remaining:
            pairs = [(ex.record.id, ex.dispatch_count) for ex in remaining]
            try:
                await self.store.return_to_pending(pairs)
            except StorageError as exc:
                log.error("could not return running tasks to pending: %s", exc)
            for ex in remaining:
                self._stop_execution(ex.record.id, "shutdown")
        stopping = [ex.task for ex in self._stopping_execs if ex.task is not None]
        if stopping:
            # Give cancelled executions a moment to unwind.
            await asyncio.wait(stopping, timeout=1.0)
        self._closing_loop = True
        self.wake()
        if self._loop_task is not None:
            with contextlib.suppress(Exception):
                await self._loop_task
            if self._finished:
                with contextlib.suppress(Exception):
                    await self._turn()
        for _, fut in self._tick_waiters:
            if not fut.done():
                fut.set_result(None)
        self._tick_waiters.clear()
        for t in list(self._background):
            t.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
        self.awareness.stop()
        self._threads.shutdown()
        self.events.close_all()
        try:
            await self._store.close()
        finally:
            if self.lock is not None:
                self.lock.release()
            self._closed.set()

    def rescue_running(self) -> int:
        """Put running tasks back to pending through a fresh connection, from any
        thread, for a process about to end while task code blocks the loop
        (:mod:`taskmill.server.lifeline`). Returns how many.

        Raises:
            sqlite3.Error: the database could not be written within a second.
        """
        return rescue_running(self.path, self.clock.now_ms())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # ------------------------------------------------------------------
    # Events

    def subscribe(
        self, flt: EventFilter | None = None, *, maxsize: int | None = None, **filters: Any
    ) -> Subscription:
        """Subscribe to events; iterate the result with ``async for``.

        ``filters`` are the fields of :class:`EventFilter` (kinds, domains,
        task_types, task_ids, tags, progress_interval_ms).
        """
        if flt is None:
            flt = EventFilter.of(**filters)
        return self.events.subscribe(flt, maxsize=maxsize or self.config.event_buffer)

    async def wait_for(self, task_id: int, timeout: float | None = None) -> TaskRecord:
        """Wait until a task reaches a final state and return its record.

        Raises:
            NotFound: no such task.
            TimeoutError: it did not finish in time.
        """
        sub = self.subscribe(task_ids=[task_id])
        try:
            async with asyncio.timeout(timeout):
                rec = await self.get(task_id)
                while rec.status.is_active:
                    ev = await sub.get()
                    if ev.kind == "lagged" or ev.is_terminal:
                        rec = await self.get(task_id)
                return rec
        finally:
            sub.close()

    # ------------------------------------------------------------------
    # Queries

    async def get(self, task_id: int) -> TaskRecord:
        """The active record of a task, else its latest history record.

        Raises:
            NotFound: no task has that id.
        """
        rec = await self.store.get(task_id)
        if rec is None:
            raise NotFound(f"no task with id {task_id}", field="id")
        return self._overlay(rec)

    def _overlay(self, rec: TaskRecord) -> TaskRecord:
        """Add what only memory knows: live progress, the aged priority."""
        if rec.history_id is not None:
            return rec
        ex = self._running.get(rec.id)
        if ex is not None:
            return rec.evolve(progress=ex.progress, effective_priority=ex.record.effective_priority)
        if self.policy.aging is not None and rec.status in (Status.PENDING, Status.PAUSED):
            eff = self.policy.effective(rec, rec.pause_duration_ms, self.clock.now_ms())
            if eff != rec.effective_priority:
                return rec.evolve(effective_priority=eff)
        return rec

    async def lookup(
        self, task_type: str, key: str | None = None, *, payload: JSONValue = None
    ) -> tuple[str, TaskRecord | None]:
        """Find a task by type and dedup key (or payload).

        Returns ``("active" | "history" | "not_found", record or None)``.
        """
        tt = self.registry.find(task_type)
        qualified = tt.qualified if tt is not None else task_type
        canonical = encode_payload(payload)[1]
        dkey = dedup_key(qualified, key, canonical)
        where, rec = await self.store.lookup(qualified, dkey)
        return where, (self._overlay(rec) if rec is not None else None)

    async def list_tasks(
        self, flt: TaskFilter | None = None, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[TaskRecord], int]:
        """Active tasks matching the filter, by id, with the total count."""
        f = flt or TaskFilter()
        recs, total = await self.store.list_active(f, limit, offset)
        return [self._overlay(r) for r in recs], total

    async def history(
        self,
        *,
        status: Sequence[str] | None = None,
        task_type: str | None = None,
        key: str | None = None,
        domain: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[TaskRecord], int]:
        """History records, newest first; ``key`` is the dedup key as records show it."""
        return await self.store.list_history(
            status=status, task_type=task_type, key=key, domain=domain, limit=limit, offset=offset
        )

    async def dependencies(self, task_id: int) -> dict[str, list[int]]:
        """``{depends_on, dependents}`` of a task.

        Raises:
            NotFound: no such task.
        """
        return await self.store.dependencies(task_id)

    async def tag_values(self, key: str, *, domain: str | None = None) -> list[dict[str, Any]]:
        """Values of tag ``key`` on active tasks, with counts, most used first."""
        return await self.store.tag_values(key, domain)

    async def tag_keys(self, prefix: str, *, domain: str | None = None) -> list[str]:
        """Tag keys on active tasks starting with ``prefix`` (taken literally)."""
        return await self.store.tag_keys(prefix, domain)

    async def history_stats(self, task_type: str) -> dict[str, Any]:
        """Count, average duration and IO, and failure rate of a type's history."""
        return await self.store.history_stats(task_type)

    async def avg_throughput(self, task_type: str, n: int = 20) -> dict[str, float]:
        """Mean bytes/s of the type's last ``n`` completed runs."""
        return await self.store.avg_throughput(task_type, n)

    def running(self) -> list[TaskRecord]:
        """Records of the tasks running now, with their (reported or extrapolated) progress."""
        now = self.clock.now_ms()
        return [
            ex.record.evolve(progress=self._progress_of(ex, now)) for ex in self._running.values()
        ]

    def _progress_of(self, ex: Execution, now: int) -> Progress:
        p = ex.progress
        return self.awareness.progress(
            ex.record.task_type,
            now,
            ex.record.started_at,
            p.percent if p.reported else None,
            ex.reported_at_ms,
            p.message,
        )

    async def _seed_durations(self) -> None:
        """Load recent durations of running task types not seen yet (for extrapolation)."""
        for task_type in {ex.record.task_type for ex in self._running.values()}:
            if self.awareness.needs_seed(task_type):
                durations = await self.store.recent_durations(task_type, 20)
                self.awareness.seed(task_type, durations)

    async def _progress_ticker(self) -> None:
        """Publish extrapolated progress (``reported: false``) for quiet running tasks."""
        interval = self.config.progress_extrapolation_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if not self._running:
                continue
            try:
                await self._seed_durations()
            except StorageError:
                continue
            now = self.clock.now_ms()
            quiet_since = now - self.config.progress_extrapolation_ms
            for ex in list(self._running.values()):
                if ex.reported_at_ms is not None and ex.reported_at_ms > quiet_since:
                    continue
                p = self._progress_of(ex, now)
                if p.extrapolated and p.percent > ex.progress.percent:
                    self.events.emit(
                        "progress",
                        ex.record,
                        percent=round(p.percent, 4),
                        message=p.message,
                        reported=False,
                    )

    def set_pressure(self, source: str, value: float | None) -> None:
        """Set (or, with None, remove) a host pressure source, e.g. "the user is in a call"."""
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidParams("value must be within 0..1 (or null)", field="value")
        self.awareness.set_external(source, value)

    async def snapshot(self, domain: str | None = None) -> dict[str, Any]:
        """Everything a UI needs in one call (protocol section 7)."""

        tally = await self.store.counts(domain)
        counts, domain_counts, group_counts = tally.status, tally.domains, tally.groups
        pause_reasons = tally.pause_reasons
        await self._seed_durations()
        now = self.clock.now_ms()
        every = self.running()
        running = [r for r in every if domain is None or r.domain == domain]
        by_domain: dict[str, int] = Counter(r.domain for r in every)
        by_group: dict[str | None, int] = Counter(r.group for r in running)
        domains = []
        for name in sorted(set(self.registry.domains) | set(domain_counts)):
            if domain is not None and name != domain:
                continue
            d = self.registry.domains.get(name)
            c = domain_counts.get(name, {})
            domains.append(
                {
                    "domain": name,
                    "paused": name in self.policy.paused_domains,
                    "running": by_domain.get(name, 0),
                    "pending": c.get("pending", 0),
                    "paused_count": c.get("paused", 0),
                    "max_concurrency": d.max_concurrency if d else None,
                }
            )
        return {
            "running": [r.to_dict() for r in running],
            "pending_count": counts.get("pending", 0),
            "paused_count": counts.get("paused", 0),
            "blocked_count": counts.get("blocked", 0),
            "waiting_count": counts.get("waiting", 0),
            "running_count": len(running),
            "pause_reasons": pause_reasons,
            "progress": [
                {
                    "task_id": r.id,
                    "percent": r.progress.percent,
                    "reported": r.progress.reported,
                    "extrapolated": r.progress.extrapolated,
                    "message": r.progress.message,
                }
                for r in running
            ],
            **self.awareness.snapshot_fields(),
            "throttle": self.awareness.throttle.to_list(),
            "max_concurrency": self._max_concurrency,
            "is_paused": self._paused,
            "domains": domains,
            "groups": self.policy.groups_snapshot(group_counts, by_group),
            "rate_limits": self.policy.rate_limits_snapshot(now),
            "recurring": await self.store.schedules(domain),
            "aging": None if self.policy.aging is None else self.policy.aging.to_dict(),
            "fair": self.policy.fair,
            "seq": self.events.seq,
        }

    async def metrics_snapshot(self) -> dict[str, Any]:
        """Counters since start and current gauges."""
        counts = await self.store.status_counts()
        names = (
            "submitted",
            "dispatched",
            "completed",
            "failed",
            "retried",
            "dead_lettered",
            "superseded",
            "cancelled",
            "expired",
            "preempted",
            "recurring_skipped",
            "gate_denials",
            "rate_limited",
        )
        return {
            "counters": {n: self.metrics.get(n, 0) for n in names},
            "gauges": {
                "pending": counts.get("pending", 0),
                "running": len(self._running),
                "paused": counts.get("paused", 0),
                "blocked": counts.get("blocked", 0),
                "waiting": counts.get("waiting", 0),
                "pressure": round(self.awareness.read()[0], 4),
            },
        }
