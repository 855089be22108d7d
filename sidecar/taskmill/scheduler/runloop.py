"""The run loop: each turn records what finished and claims what may start.

A turn is one store operation (finishes recorded, retention applied, the next
tasks claimed under the gate the dispatch policy builds), then the reactions
to what it did, then the launches. The loop sleeps until woken (a submit, a
finish, a change of limits) or until the next delayed task, timed resume or
sweep is due, at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from ..clock import Clock
from ..errors import DatabaseGone, StorageError
from ..store.rows import ClaimPlan
from ..store.store import Store
from .awareness import Awareness
from .config import SchedulerConfig
from .dispatch import DispatchPolicy, Gate
from .domain import TypeRegistry
from .executions import Executions
from .policy import next_wake_ms
from .reactions import Reactions

__all__ = ["RunLoop"]

log = logging.getLogger(__name__)


class RunLoop:
    """Turns, wake-ups, and the dispatch switches (paused, concurrency)."""

    def __init__(
        self,
        *,
        store: Callable[[], Store],
        executions: Executions,
        reactions: Reactions,
        policy: DispatchPolicy,
        registry: TypeRegistry,
        awareness: Awareness,
        config: SchedulerConfig,
        clock: Clock,
        metrics: Counter[str],
        housekeeping: Callable[[int], Awaitable[None]],
    ) -> None:
        self._store = store
        self._executions = executions
        self._reactions = reactions
        self._policy = policy
        self._registry = registry
        self._awareness = awareness
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._housekeeping = housekeeping
        self._wake_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Whether new tasks are claimed at all (off once shutdown begins).
        self.dispatching = False
        #: The global pause.
        self.paused = False
        self.max_concurrency = config.max_concurrency
        #: Shutdown: the loop ends once nothing is left to record.
        self.stopping = False
        #: The loop ends even with runs left (they were stopped).
        self.closing = False
        #: Epoch ms of the earliest delayed task, from the last claim.
        self.next_due: int | None = None
        #: Epoch ms of the next timed job (TTL sweep) housekeeping wants.
        self.next_sweep = 0
        #: Outcomes were recorded since housekeeping last looked (preempted
        #: tasks may resume).
        self.recheck_preempted = False
        self._completions = 0
        self.turns_started = 0
        self.turns_done = 0
        self._tick_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def start(self) -> None:
        self.dispatching = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="taskmill-loop")

    def wake(self) -> None:
        """Make the loop take a turn now."""
        self._wake_event.set()

    def free_slots(self) -> int:
        """Slots the concurrency limit leaves: running executions and threads
        still held by stopped ones count."""
        return max(0, self.max_concurrency - self._executions.busy_slots())

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake_event.clear()
            self.turns_started += 1
            try:
                await self.turn()
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
                self.turns_done += 1
                self._resolve_tick_waiters()
            if (
                not self.dispatching
                and self.stopping
                and not self._executions.has_finished
                and (not self._executions.running or self.closing)
            ):
                return
            if self._wake_event.is_set() and not backoff:
                await asyncio.sleep(0)
                continue
            await self._sleep(backoff)

    async def _sleep(self, backoff: float) -> None:
        now = self._clock.now_ms()
        # Delayed work that is due only matters with a free slot; when all
        # are busy, a finishing task wakes the loop.
        free = self.dispatching and not self.paused and self.free_slots() > 0
        due = self.next_due if free else None
        for t in (self._policy.next_group_resume(), self.next_sweep or None):
            if t is not None:
                due = t if due is None else min(due, t)
        delay_ms = next_wake_ms(now, due, self._config.poll_interval_ms)
        if backoff:
            delay_ms = int(backoff * 1000)
        if not self._clock.is_real:
            # Fake time moves only by advance(), which wakes us.
            delay_ms = self._config.poll_interval_ms
        if delay_ms > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_ms / 1000):
                    await self._wake_event.wait()
        else:
            await asyncio.sleep(0)  # never spin without letting the loop run

    def _resolve_tick_waiters(self) -> None:
        if not self._tick_waiters:
            return
        keep = []
        for target, fut in self._tick_waiters:
            if self.turns_done >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._tick_waiters = keep

    async def tick(self, timeout: float = 10.0) -> None:
        """Wake the loop and wait until one whole turn has run after this call."""
        if self._task is None or self._task.done():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tick_waiters.append((self.turns_started + 1, fut))
        self.wake()
        async with asyncio.timeout(timeout):
            await fut

    async def stop(self) -> None:
        """Let the loop end (after recording what finished) and wait for it."""
        self.closing = True
        self.wake()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            if self._executions.has_finished:
                with contextlib.suppress(Exception):
                    await self.turn()
        for _, fut in self._tick_waiters:
            if not fut.done():
                fut.set_result(None)
        self._tick_waiters.clear()

    def claim_plan(self, now: int, limit: int) -> tuple[ClaimPlan, Gate]:
        domain_caps = {
            name: d.max_concurrency
            for name, d in self._registry.domains.items()
            if d.max_concurrency is not None
        }
        return self._policy.plan(
            now=now,
            limit=limit,
            running=[ex.record for ex in self._executions.running.values()],
            domain_caps=domain_caps,
            type_caps=self._registry.type_caps,
            worker_slots=self._worker_slots,
            resources=self._awareness.view(),
        )

    def _worker_slots(self, task_type: str) -> int | None:
        """Free remote slots of a type with no Python executor (None: one runs it
        here, or the type is unknown and its run fails at once)."""
        tt = self._registry.find(task_type)
        if tt is None or tt.executor is not None:
            return None
        remote = self._executions.remote
        return 0 if remote is None else remote.free_slots_of(task_type)

    async def turn(self) -> None:
        now = self._clock.now_ms()
        await self._housekeeping(now)
        executions = self._executions
        finished = executions.take_finished()
        limit = self.free_slots() if self.dispatching and not self.paused else 0
        due = self.next_due is not None and self.next_due <= now
        if not finished and limit == 0 and not due:
            return
        if finished:
            self.recheck_preempted = True
        finishes = [f for f, _ in finished]
        completions = sum(1 for f in finishes if f.kind != "retry")
        retention = self._config.retention
        prune = None
        if completions and (retention.max_count is not None or retention.max_age_ms is not None):
            before = self._completions
            self._completions += completions
            interval = max(1, retention.prune_interval)
            if before == 0 or before // interval != self._completions // interval:
                prune = (retention.max_count, retention.max_age_ms)
        plan = self.claim_plan(now, limit)[0] if limit else None
        try:
            turn = await self._store().turn(finishes, now, plan=plan, prune=prune)
        except BaseException:
            # Nothing was written: keep the outcomes for the next turn.
            executions.put_back(finished)
            raise
        claim = turn.claim
        self.next_due = claim.next_due
        self._policy.counted(claim.ready_counts)
        self._metrics["gate_denials"] += claim.denied + claim.deferred
        self._metrics["rate_limited"] += claim.deferred
        for (f, ex), res in zip(finished, turn.results, strict=True):
            self._reactions.finished(f, ex, res, now)
        self._reactions.effects(turn.effects)
        self._reactions.effects(claim.effects)
        for c in claim.claimed:
            if c.record.expected_io.disk_read or c.record.expected_io.disk_write:
                self._awareness.io_starts_since_sample += 1
            executions.launch(c)
        if not executions.running:
            executions.idle.set()
