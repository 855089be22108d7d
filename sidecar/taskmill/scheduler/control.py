"""Control: what a caller changes while the scheduler runs.

Cancel, priorities, dead letters, the global pause and preemption, domains,
groups, rate limits, concurrency, recurring schedules, worker-declared types,
host pressure, and the housekeeping the run loop does each turn (timed group
resumes, the TTL sweep, resuming preempted work). A mixin of
:class:`~taskmill.scheduler.core.Scheduler` over the parts it owns
(:class:`~taskmill.scheduler.parts.SchedulerParts`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidParams, NotFound
from ..filters import TaskFilter
from ..model import Submission, SubmitResult, TaskRecord, parse_priority
from ..store.rows import PAUSE_DOMAIN, PAUSE_GLOBAL, PAUSE_GROUP, PAUSE_PREEMPTION
from .context import TaskContext
from .domain import Domain
from .executions import Execution
from .parts import SchedulerParts
from .policy import MAX_DURATION_MS, policy_from_json

__all__ = ["CANCEL_CHUNK", "Control"]

#: Tasks cancel_where cancels per transaction (a cancel costs more than an insert).
CANCEL_CHUNK = 500


class Control(SchedulerParts):
    """The scheduler's control API (a mixin of :class:`Scheduler`)."""

    async def _release_ahead(self, which: Callable[[TaskRecord], bool] | None = None) -> None:
        """Tasks claimed ahead that ``which`` selects back to pending now, before
        an operation that acts on pending tasks (pause a group, change a
        priority, cancel what is pending)."""
        out = self.executions.ahead.release(which)
        if out:
            await self.store.return_to_pending([(c.record.id, c.dispatch_count) for c in out])
            self.wake()

    async def cancel(self, task_id: int, *, reason: str = "cancelled") -> bool:
        """Cancel an active task and its children. False if it is not active."""
        now = self.clock.now_ms()
        cancelled, eff = await self.store.cancel([task_id], now, reason)
        self.reactions.cancelled(cancelled, reason)
        self.reactions.effects(eff)
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
        if flt.status is not None and "pending" in flt.status:
            await self._release_ahead()  # they are pending to whoever asks
        out: list[int] = []
        after: int | None = -1
        while after is not None:
            now = self.clock.now_ms()
            cancelled, after, eff = await self.store.cancel_page(flt, after, CANCEL_CHUNK, now)
            self.reactions.cancelled(cancelled, "cancelled")
            self.reactions.effects(eff)
            out.extend(ct.record.id for ct in cancelled)
            if after is not None:
                await asyncio.sleep(0)
        return out

    async def set_priority(self, task_id: int, priority: int | str) -> bool:
        """Change the priority of a pending, paused or blocked task."""
        value = parse_priority(priority)
        if task_id in self.executions.ahead:
            await self._release_ahead(lambda r: r.id == task_id)
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
        if self.loop.paused:
            return
        self.loop.paused = True
        await self._release_ahead()
        await self._pause_running(list(self.executions.running.values()), PAUSE_GLOBAL, "paused")
        self.events.emit("paused")

    async def resume(self) -> None:
        """Undo :meth:`pause`."""
        if not self.loop.paused:
            return
        self.loop.paused = False
        now = self.clock.now_ms()
        await self.store.clear_pause_bit(PAUSE_GLOBAL, now)
        self.events.emit("resumed")
        self.wake()

    @property
    def is_paused(self) -> bool:
        return self.loop.paused

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
                self.reactions.preempted(ex, reason, by_task_id)
        return done

    async def release(self, task_ids: Sequence[int], reason: str = "released") -> list[int]:
        """Put running tasks back to pending without counting a retry.

        Used when the executor is gone (a remote worker disconnected): the
        task runs again when an executor is available, like after a crash.
        """
        execs = [self.executions.running[t] for t in task_ids if t in self.executions.running]
        if not execs:
            return []
        pairs = [(ex.record.id, ex.dispatch_count) for ex in execs]
        done = await self.store.return_to_pending(pairs)
        for task_id in done:
            self.executions.stop(task_id, reason)
        self.wake()
        return done

    def execution_context(self, task_id: int) -> TaskContext | None:
        """The context of a task running now, if any."""
        return self.executions.context(task_id)

    async def _preempt(self, urgent: Sequence[TaskRecord]) -> None:
        """Make room for urgent tasks: pause as few running tasks as they need
        slots, the least urgent first (and, among equals, the latest started,
        which loses the least work). They resume once no urgent task is ahead."""
        waiting = sorted(urgent, key=lambda r: (r.priority, r.id))[self.loop.free_slots() :]
        if not waiting:
            return
        candidates = sorted(
            self.executions.running.values(),
            key=lambda ex: (-ex.record.effective_priority, -(ex.started_at or 0)),
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
        self.reactions.effects(eff)
        return len(eff.expired)

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
        await self._release_ahead(lambda r: r.domain == domain)
        now = self.clock.now_ms()
        queued = await self.store.pause_domain(domain, now)
        running = [ex for ex in self.executions.running.values() if ex.record.domain == domain]
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
        await self._release_ahead(lambda r: r.group == group)
        queued = await self.store.pause_group(group, now, resume_at)
        running = [ex for ex in self.executions.running.values() if ex.record.group == group]
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

    def _rules_changed(self) -> None:
        """A limit, weight or rate changed: what was claimed ahead under the
        old rules goes back, and a turn applies the new ones."""
        self.loop.release()
        self.wake()

    def set_group_limit(self, group: str, value: int | None) -> None:
        """Cap how many tasks of a group run at once (None removes the cap)."""
        if value is None:
            self.policy.group_limits.pop(group, None)
        elif value < 0:
            raise InvalidParams("value must be >= 0", field="value")
        else:
            self.policy.group_limits[group] = value
        self._rules_changed()

    def set_default_group_limit(self, value: int) -> None:
        """The cap of every group without its own (0: none)."""
        if value < 0:
            raise InvalidParams("value must be >= 0", field="value")
        self.policy.default_group_limit = value
        self._rules_changed()

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
        self._rules_changed()

    def set_group_min_slots(self, group: str, value: int | None) -> None:
        """Reserve ``value`` slots for a group when it has work (None removes)."""
        if value is None:
            self.policy.group_min_slots.pop(group, None)
        elif value < 0:
            raise InvalidParams("value must be >= 0", field="value")
        else:
            self.policy.group_min_slots[group] = value
        self._rules_changed()

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
        self._rules_changed()

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
        self.loop.max_concurrency = value
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
        self._rules_changed()

    @property
    def max_concurrency(self) -> int:
        return self.loop.max_concurrency

    def set_pressure(self, source: str, value: float | None) -> None:
        """Set (or, with None, remove) a host pressure source, e.g. "the user is in a call"."""
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidParams("value must be within 0..1 (or null)", field="value")
        self.awareness.set_external(source, value)

    async def _housekeeping(self, now: int) -> None:
        """Timed group resumes, the TTL sweep and the resume of preempted work, when due."""
        sweep = self.config.expiry_sweep_interval_ms
        if sweep is not None and now >= self.loop.next_sweep:
            self.loop.next_sweep = now + sweep
            await self.expire_now()
        for group, resume_at in list(self.policy.paused_groups.items()):
            if resume_at is not None and resume_at <= now:
                await self.resume_group(group)
        if self._preempted and self.loop.recheck_preempted:
            self.loop.recheck_preempted = False
            resumed, remaining = await self.store.resume_preempted(
                now, self.config.preempt_priority
            )
            self._preempted = remaining
            if resumed:
                self.wake()
