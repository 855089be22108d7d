"""The run loop: each turn records what finished and claims what may start.

A turn is one store operation (finishes recorded, retention applied, the next
tasks claimed under the gate the dispatch policy builds), then the reactions
to what it did, then the launches. Short tasks are claimed a window ahead of
the free slots and start as slots free, without waiting for a turn
(:mod:`taskmill.scheduler.ahead`). The loop sleeps until woken (a submit, a
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
from ..model import TaskRecord
from ..store.rows import Claimed, ClaimPlan, ClaimResult
from ..store.store import Store
from .ahead import window
from .awareness import Awareness
from .config import SchedulerConfig
from .dispatch import DispatchPolicy, Gate
from .domain import TypeRegistry
from .executions import Executions
from .policy import next_wake_ms
from .reactions import Reactions

__all__ = ["RunLoop"]

log = logging.getLogger(__name__)


#: The most claims an idle scheduler's turn makes on the loop thread.
INLINE_CLAIM_MAX = 4


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
        #: Claimed ahead, never started, going back to pending at the next turn.
        self.releasing: list[Claimed] = []
        #: Submissions more urgent than the least urgent task waiting ahead
        #: since the last turn: claimed even when the window is full.
        self.urgent = 0
        #: Held by a turn, and by a submit that claims for an idle loop: two
        #: claims planned over the same free slots would start too many.
        self.claiming = asyncio.Lock()
        executions.on_slot_free = self._slot_free

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

    def release(self, which: Callable[[TaskRecord], bool] | None = None) -> None:
        """Tasks claimed ahead that ``which`` selects (all by default) go back to
        pending at the next turn, which then claims in the new order: after a
        pause, a change of limits or weights, a shutdown."""
        out = self._executions.ahead.release(which)
        if out:
            self.releasing.extend(out)
            self.wake()

    def _slot_free(self) -> None:
        if self.dispatching and not self.paused:
            self._start_ahead()

    def _start_ahead(self) -> None:
        """Start tasks claimed ahead while slots are free."""
        executions = self._executions
        ahead = executions.ahead
        free = self.free_slots()
        while free > 0 and len(ahead):
            claimed = ahead.pop()
            if claimed is None:
                break
            rec = claimed.record
            tt = self._registry.find(rec.task_type)
            if tt is not None and tt.executor is None:
                remote = executions.remote
                if remote is None or remote.free_slots_of(rec.task_type) <= 0:
                    # Its worker left (or is full) since the claim.
                    self.releasing.append(claimed)
                    self.wake()
                    continue
            if rec.expected_io.disk_read or rec.expected_io.disk_write:
                self._awareness.io_starts_since_sample += 1
            executions.launch(claimed)
            free -= 1

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
        executions = self._executions
        # Tasks claimed ahead count as running: every limit holds for them too.
        running = [ex.record for ex in executions.running.values()]
        running += [c.record for c in executions.ahead]
        return self._policy.plan(
            now=now,
            limit=limit,
            running=running,
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

    def _claim_limit(self) -> int:
        """How many tasks this turn claims: the free slots not covered by tasks
        waiting ahead, and the window ahead refilled once it is half empty."""
        if not self.dispatching or self.paused:
            return 0
        executions = self._executions
        free = self.free_slots()
        waiting = len(executions.ahead)
        # Weighted fairness shares the slots of each claim: no window then.
        ahead = 0 if self._policy.fair else window(self.max_concurrency, executions.mean_run_s)
        want = free + ahead
        if waiting < free or 2 * waiting <= ahead:
            return max(0, want - waiting) + self.urgent
        return self.urgent

    def idle_claim(self) -> int:
        """How many tasks a submit may claim in its own transaction: some, when
        the loop is asleep with nothing running, waiting ahead or to record
        (then the submitted task starts without a turn: a second transaction
        and a hop were most of its submit-to-start time); else 0."""
        executions = self._executions
        if (
            self.claiming.locked()
            or executions.busy_slots()
            or executions.has_finished
            or len(executions.ahead)
            or self.releasing
            or self._policy.fair
        ):
            return 0
        return min(self._claim_limit(), INLINE_CLAIM_MAX + self.urgent)

    def adopt(self, claim: ClaimResult, limit: int) -> None:
        """Start what a submit claimed for the idle loop (see :meth:`idle_claim`)."""
        self._noted(claim, limit, capped=True)
        self._hold(claim)

    def _noted(self, claim: ClaimResult, limit: int, *, capped: bool) -> None:
        if limit:
            self.urgent = 0
        if capped and len(claim.claimed) >= limit:
            self.wake()  # more may be ready: the next turn, on the thread
        self.next_due = claim.next_due
        self._policy.counted(claim.ready_counts)
        self._metrics["gate_denials"] += claim.denied + claim.deferred
        self._metrics["rate_limited"] += claim.deferred

    def _hold(self, claim: ClaimResult) -> None:
        executions = self._executions
        self._reactions.effects(claim.effects)
        for c in claim.claimed:
            executions.ahead.hold(c)
        if self.dispatching and not self.paused:
            self._start_ahead()
        elif len(executions.ahead):
            self.release()
        if not executions.running:
            executions.idle.set()

    async def turn(self) -> None:
        async with self.claiming:
            await self._turn()

    async def _turn(self) -> None:
        now = self._clock.now_ms()
        await self._housekeeping(now)
        executions = self._executions
        if (not self.dispatching or self.paused) and len(executions.ahead):
            self.release()
        finished = executions.take_finished()
        limit = self._claim_limit()
        due = self.next_due is not None and self.next_due <= now
        releasing, self.releasing = self.releasing, []
        if not finished and limit == 0 and not due and not releasing:
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
        # An idle scheduler starting work claims a few tasks on the loop
        # thread: the hop to the database thread and back was a third of its
        # submit-to-start time. The next turn, busy, claims the rest on the
        # thread, where its SQL overlaps with the executions.
        # (Not with weighted fairness: a capped claim would split the slots
        # by the weights twice.)
        inline = not (finished or executions.running or releasing or self._policy.fair)
        capped = inline and limit > INLINE_CLAIM_MAX + self.urgent
        if capped:
            limit = INLINE_CLAIM_MAX + self.urgent
        plan = self.claim_plan(now, limit)[0] if limit else None
        try:
            turn = await self._store().turn(
                finishes,
                now,
                plan=plan,
                prune=prune,
                release=[(c.record.id, c.dispatch_count) for c in releasing],
                inline=inline,
            )
        except BaseException:
            # Nothing was written: keep the outcomes for the next turn.
            executions.put_back(finished)
            self.releasing[:0] = releasing
            raise
        self._noted(turn.claim, limit, capped=capped)
        for (f, ex), res in zip(finished, turn.results, strict=True):
            self._reactions.finished(f, ex, res, now)
        self._reactions.effects(turn.effects)
        self._hold(turn.claim)
