"""The scheduler: a façade over its parts.

A task's path: :meth:`Scheduler.submit` resolves defaults (pure policy) and
inserts it (one store operation); the :class:`~taskmill.scheduler.runloop.RunLoop`
wakes, and in one store operation records every execution that finished since
the last turn and claims the next tasks the gate admits;
:class:`~taskmill.scheduler.executions.Executions` runs each claimed task as
an asyncio task with a :class:`TaskContext`; when it ends, its outcome waits
for the next turn. :class:`~taskmill.scheduler.reactions.Reactions` turns what
the store did into events, after the commit, so a client that sees
``completed`` can read the completed record. The control API lives in
``control.py``, the read API in ``queries.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..clock import Clock, SystemClock
from ..errors import InvalidParams, InvalidState, ShuttingDown, StorageError, TaskmillError
from ..memory import no_cyclic_gc
from ..model import JSONValue, Outcome, Status, Submission, SubmitResult, TaskRecord
from ..resource import Sampler
from ..store.lock import DatabaseLock
from ..store.rows import NewTask, SubmitEffect
from ..store.store import Store
from .awareness import Awareness
from .config import SchedulerConfig
from .control import Control
from .dispatch import DispatchPolicy
from .domain import Domain, TypeRegistry
from .events import EventBus
from .executions import Executions, RemoteExecutors
from .policy import resolve_submission
from .queries import Queries
from .reactions import Reactions
from .runloop import RunLoop

__all__ = ["BATCH_CHUNK", "RemoteExecutors", "Scheduler"]

log = logging.getLogger(__name__)

ShutdownMode = Literal["graceful", "hard"]

#: Tasks a batch stores per transaction (a larger batch is several; see submit_many).
BATCH_CHUNK = 1000
#: Submissions resolved between two yields to the event loop.
RESOLVE_CHUNK = 500


class Scheduler(Control, Queries):
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
        self.config = cfg = config or SchedulerConfig()
        self.clock = clock or SystemClock()
        self.registry = TypeRegistry(list(domains))
        #: Global shared state, seen by executors after their domain's state.
        self.state: dict[Any, Any] = dict(state or {})
        self.events = EventBus(self.clock.now_ms)
        self.metrics: Counter[str] = Counter()
        self.policy = DispatchPolicy(
            default_group_limit=cfg.default_group_concurrency,
            default_group_weight=cfg.default_group_weight,
            aging=cfg.aging,
        )
        self.awareness = Awareness(
            monitoring=cfg.resource_monitoring,
            sampler=sampler,
            interval_ms=cfg.sample_interval_ms,
            alpha=cfg.ewma_alpha,
            bandwidth_limit_bps=cfg.bandwidth_limit_bps,
            memory_threshold=cfg.memory_threshold,
            io=cfg.io,
            throttle=cfg.throttle,
            now_ms=self.clock.now_ms,
            emit=self.events.emit,
            wake=self.wake,
        )
        self.executions = Executions(
            registry=self.registry,
            config=cfg,
            clock=self.clock,
            events=self.events,
            metrics=self.metrics,
            awareness=self.awareness,
            state=self.state,
            spawner=self,
            wake=self.wake,
            recent_durations=lambda task_type, n: self.store.recent_durations(task_type, n),
            rng=rng or random.Random(),
        )
        self.reactions = Reactions(
            events=self.events,
            metrics=self.metrics,
            executions=self.executions,
            awareness=self.awareness,
            policy=self.policy,
            now_ms=self.clock.now_ms,
            wake=self.wake,
        )
        self.loop = RunLoop(
            store=lambda: self.store,
            executions=self.executions,
            reactions=self.reactions,
            policy=self.policy,
            registry=self.registry,
            awareness=self.awareness,
            config=cfg,
            clock=self.clock,
            metrics=self.metrics,
            housekeeping=self._housekeeping,
        )
        self._store: Store | None = None
        self._accepting = False
        self._closed = asyncio.Event()
        self._shutdown_started = False
        self._ticker: asyncio.Task[None] | None = None
        self._preempted = False
        #: The database's exclusive lock while started (None for in-memory databases).
        self.lock: DatabaseLock | None = None
        self.clock.on_change(self.wake)

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
        self.awareness.start()
        self.loop.start()
        self._ticker = asyncio.get_running_loop().create_task(
            self.executions.progress_ticker(), name="taskmill-progress"
        )
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
        self.loop.wake()

    def add_domain(self, domain: Domain) -> None:
        """Register a domain (and its types) at runtime."""
        self.registry.add_domain(domain)
        self.wake()

    async def submit(
        self, task_type: str, payload: JSONValue = None, **options: Any
    ) -> SubmitResult:
        """Submit one task. ``options`` are the fields of :class:`Submission`.

        Returns the outcome: ``inserted``, ``duplicate``, ``upgraded``,
        ``requeued`` or ``superseded``, with the task's id.

        Each call is a transaction of its own, committed before it returns.
        For many tasks at once, :meth:`submit_batch` stores them 1,000 to a
        transaction, several times faster (``docs/benchmarks.md``). A loop
        of single submits yields to the event loop every few dozen calls, so
        tasks start and events go out while it runs.

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
            limit = self.loop.idle_claim()
            if not limit:
                effects = await self.store.submit(items, now)
                return await self._after_submit(items, effects, now)
            async with self.loop.claiming:
                plan = self.loop.claim_plan(now, limit)[0]
                effects, claim = await self.store.submit_and_claim(items, now, plan)
                submitted = await self._after_submit(items, effects, now)
                self.loop.adopt(claim, limit)
                return submitted
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
                ex = self.executions.running.get(item.parent_id)
                if ex is not None:
                    ex.ctx.spawned += 1
        results = self.reactions.submitted(effects)
        least = self.executions.ahead.least_urgent()
        if least is not None:
            # More urgent than what waits ahead: the next turn claims it anyway,
            # and it starts before them.
            self.loop.urgent += sum(
                1
                for e in effects
                if e.outcome is not Outcome.DUPLICATE
                and (e.new_priority is None or e.new_priority < least)
                and e.record is not None
                and e.record.status is Status.PENDING
                and e.record.effective_priority < least
            )
        preempt = self.config.preempt_priority
        urgent = [
            e.record
            for e in effects
            if e.outcome is not Outcome.DUPLICATE
            and (e.new_priority is None or e.new_priority <= preempt)  # before building a record
            and e.record is not None
            and e.record.priority <= preempt
            and e.record.status is Status.PENDING
            and (e.record.run_after is None or e.record.run_after <= now)
        ]
        if urgent:
            await self._preempt(urgent)
        return results

    async def _parent_record(self, parent_id: int) -> TaskRecord:
        ex = self.executions.running.get(parent_id)
        if ex is not None:
            return ex.record
        rec = await self.store.get_active(parent_id)
        if rec is None:
            raise InvalidParams(f"parent task {parent_id} is not active", field="parent_id")
        return rec

    def _check_accepting(self) -> None:
        if not self._accepting:
            if self._store is None and not self._shutdown_started:
                raise ShuttingDown("the scheduler is not started")
            raise ShuttingDown("the scheduler is shutting down")

    def rescue_running(self) -> int:
        """Put running tasks back to pending through a fresh connection, from any
        thread, for a process about to end while task code blocks the loop
        (:mod:`taskmill.server.lifeline`). Returns how many.

        Raises:
            sqlite3.Error: the database could not be written within a second.
        """
        return Store.rescue_running(self.path, self.clock.now_ms())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def spawn_children(
        self, parent: TaskRecord, subs: Sequence[Submission]
    ) -> list[SubmitResult]:
        """Submit children of a running task (for :class:`TaskContext`)."""
        fixed = [dataclasses.replace(s, parent_id=parent.id) for s in subs]
        return await self.submit_many(fixed, parent=parent)

    async def spawn_sibling(
        self, rec: TaskRecord, task_type: str, payload: JSONValue, options: dict[str, Any]
    ) -> SubmitResult:
        """Submit a task under ``rec``'s parent (for :class:`TaskContext`)."""
        if rec.parent_id is None:
            raise InvalidState(f"task {rec.id} has no parent, so it cannot spawn a sibling")
        options["parent_id"] = rec.parent_id
        return await self.submit(task_type, payload, **options)

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
        self.loop.dispatching = False
        self.loop.stopping = True
        if self._store is None:
            self._closed.set()
            return
        self.events.emit("shutdown", mode=mode)
        executions = self.executions
        if mode == "graceful" and executions.running:
            timeout = (self.config.drain_timeout_ms if timeout_ms is None else timeout_ms) / 1000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await executions.idle.wait()
        remaining = list(executions.running.values())
        # Claimed ahead and never started: back to pending as well.
        never_started = [*executions.ahead.release(), *self.loop.releasing]
        self.loop.releasing = []
        if remaining or never_started:
            pairs = [(ex.record.id, ex.dispatch_count) for ex in remaining]
            pairs += [(c.record.id, c.dispatch_count) for c in never_started]
            try:
                await self.store.return_to_pending(pairs)
            except StorageError as exc:
                log.error("could not return running tasks to pending: %s", exc)
            for ex in remaining:
                executions.stop(ex.record.id, "shutdown")
        # Give stopped executions a moment to unwind, then end the loop.
        await executions.unwind(1.0)
        await self.loop.stop()
        executions.close()
        if self._ticker is not None:
            self._ticker.cancel()
        self.awareness.stop()
        self.events.close_all()
        try:
            await self._store.close()
        finally:
            if self.lock is not None:
                self.lock.release()
            self._closed.set()

    async def tick(self, timeout: float = 10.0) -> None:
        """Wake the run loop and wait until one whole turn has run after this call.

        Tests use it to observe the scheduler deterministically (e.g. after
        advancing a fake clock) instead of sleeping.
        """
        await self.loop.tick(timeout)

    @property
    def remote(self) -> RemoteExecutors | None:
        """Executors outside this process (the sidecar's remote workers)."""
        return self.executions.remote

    @remote.setter
    def remote(self, value: RemoteExecutors | None) -> None:
        self.executions.remote = value

    @property
    def _turns_done(self) -> int:  # tests read it
        return self.loop.turns_done
