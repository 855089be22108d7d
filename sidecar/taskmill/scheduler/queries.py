"""Queries: what a caller reads (records, lists, counts, a snapshot) and the
event subscriptions. Records of running tasks get what only memory knows
(progress, the aged priority). A mixin of
:class:`~taskmill.scheduler.core.Scheduler`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..errors import NotFound
from ..filters import EventFilter, TaskFilter
from ..model import JSONValue, Status, TaskRecord
from .events import Subscription
from .parts import SchedulerParts
from .policy import dedup_key, encode_payload

__all__ = ["Queries"]


class Queries(SchedulerParts):
    """The scheduler's read API (a mixin of :class:`Scheduler`)."""

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
        ex = self.executions.running.get(rec.id)
        if ex is not None:
            return rec.evolve(
                progress=ex.progress,
                effective_priority=ex.record.effective_priority,
                started_at=ex.started_at,
            )
        if rec.status is Status.RUNNING:
            # Claimed ahead and not started yet (scheduler/ahead.py): pending.
            return rec.evolve(status=Status.PENDING, started_at=None)
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

    def _claimed_ahead(self) -> Counter[str]:
        """Claimed ahead, not started (pending to callers), by domain."""
        ahead = self.executions.ahead.by_domain()
        ahead.update(c.record.domain for c in self.loop.releasing)
        return ahead

    def running(self) -> list[TaskRecord]:
        """Records of the tasks running now, with their (reported or extrapolated) progress."""
        return self.executions.records()

    async def snapshot(self, domain: str | None = None) -> dict[str, Any]:
        """Everything a UI needs in one call (protocol section 7)."""

        tally = await self.store.counts(domain)
        counts, domain_counts, group_counts = tally.status, tally.domains, tally.groups
        ahead = self._claimed_ahead()
        counts["pending"] = counts.get("pending", 0) + sum(
            n for name, n in ahead.items() if domain is None or name == domain
        )
        for name, n in ahead.items():
            per = domain_counts.setdefault(name, {})
            per["pending"] = per.get("pending", 0) + n
        pause_reasons = tally.pause_reasons
        await self.executions.seed_durations()
        now = self.clock.now_ms()
        every = self.executions.records()
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
            "max_concurrency": self.loop.max_concurrency,
            "is_paused": self.loop.paused,
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
        counts["pending"] = counts.get("pending", 0) + sum(self._claimed_ahead().values())
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
                "running": len(self.executions.running),
                "paused": counts.get("paused", 0),
                "blocked": counts.get("blocked", 0),
                "waiting": counts.get("waiting", 0),
                "pressure": round(self.awareness.read()[0], 4),
            },
        }
