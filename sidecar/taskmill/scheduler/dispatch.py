"""Dispatch policy state: group limits and weights, paused groups and domains,
rate limits, aging, and the gate built from them for each claim.

The state lives in memory (paused groups and domains are also persisted by
the store); :meth:`DispatchPolicy.plan` turns it, with the running tasks and
``now``, into a :class:`~taskmill.store.rows.ClaimPlan` whose callbacks are
pure checks of one candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParams
from ..model import IoBudget, TaskRecord
from ..resource import ResourceSnapshot, ThrottlePolicy, io_gate
from ..store.rows import Admission, Candidate, ClaimPlan
from .aging import AgingConfig, effective_priority
from .awareness import ResourceView
from .fairness import GroupDemand, allocate
from .ratelimit import TokenBucket, check_and_take

__all__ = ["DispatchPolicy", "Gate"]

GroupKey = str | None


@dataclass(slots=True)
class Gate:
    """Checks one candidate against every limit, cheapest first.

    Counts are updated as candidates are admitted, so one scan never admits
    more than a limit allows. Order: executor availability, pressure (a hook
    for resource awareness), paused group or domain, group limit, domain cap,
    type cap, worker slots, then rate limits (type and group buckets both
    checked before either token is taken), so a denial never wastes a token.
    """

    now: int
    running_by_domain: dict[str, int]
    running_by_type: dict[str, int]
    running_by_group: dict[GroupKey, int]
    domain_caps: Mapping[str, int]
    type_caps: Mapping[str, int]
    group_limits: Mapping[str, int]
    default_group_limit: int
    paused_groups: frozenset[str]
    paused_domains: frozenset[str]
    #: Free worker slots of a type no Python executor runs (None: one runs it
    #: here). Asked once per type and claim, so the cost of a claim does not
    #: grow with the number of declared types.
    worker_slots: Callable[[str], int | None] = lambda _t: None
    #: Slots left per type in this claim (None: no worker limit).
    type_budget: dict[str, int | None] = field(default_factory=dict)
    type_buckets: Mapping[str, TokenBucket] = field(default_factory=dict)
    group_buckets: Mapping[str, TokenBucket] = field(default_factory=dict)
    #: Resource pressure (0..1) and the policy that holds less urgent work above it.
    pressure: float = 0.0
    throttle: ThrottlePolicy | None = None
    #: Observed IO rates (None: monitoring off, no IO budget check).
    resources: ResourceSnapshot | None = None
    #: Expected IO of what runs (and was admitted so far), and how many run.
    io_total: IoBudget = field(default_factory=IoBudget)
    io_count: int = 0
    #: Disk-heavy tasks started since the last resource sample.
    io_starts: int = 0
    denials: dict[str, int] = field(default_factory=dict)

    def _deny(self, reason: str, verdict: int = Admission.SKIP) -> int:
        self.denials[reason] = self.denials.get(reason, 0) + 1
        return verdict

    def group_limit(self, group: str) -> int | None:
        limit = self.group_limits.get(group)
        if limit is None and self.default_group_limit > 0:
            return self.default_group_limit
        return limit

    def admit(self, cand: Candidate) -> int:
        return self._check(cand, True)

    def admit_within_share(self, cand: Candidate) -> int:
        """The fair pass: group limits are already part of the allocation."""
        return self._check(cand, False)

    def _check(self, cand: Candidate, group_cap: bool) -> int:
        if cand.task_type in self.type_budget:
            budget = self.type_budget[cand.task_type]
        else:
            budget = self.type_budget[cand.task_type] = self.worker_slots(cand.task_type)
        if budget is not None and budget <= 0:
            return self._deny("no_worker")
        disk_heavy = bool(cand.expected_read or cand.expected_write)
        if disk_heavy or cand.expected_net_rx or cand.expected_net_tx:
            expected = IoBudget(
                disk_read=cand.expected_read,
                disk_write=cand.expected_write,
                net_rx=cand.expected_net_rx,
                net_tx=cand.expected_net_tx,
            )
        else:
            expected = _NO_IO  # most tasks declare no IO: no budget to build or add
        # Limits are 0..1 and throttling needs pressure above one: none at 0.
        if (
            self.pressure > 0.0
            and self.throttle is not None
            and self.throttle.is_throttled(cand.priority, self.pressure)
        ):
            return self._deny("pressure")
        if self.resources is not None:
            axis = io_gate(expected, self.io_total, self.io_count, self.resources)
            if axis is not None:
                return self._deny("io_budget")
            if disk_heavy and self.throttle is not None and self.io_starts:
                # Under some pressure, start one disk-heavy task per sample, so
                # each start's effect is observed before the next: no bursts
                # that stall the user's own IO.
                limit = self.throttle.limit_for(cand.priority)
                if limit is not None and self.pressure >= limit / 2:
                    return self._deny("io_pacing")
        group = cand.group
        if group is not None and group in self.paused_groups:
            return self._deny("group_paused")
        if cand.domain in self.paused_domains:
            return self._deny("domain_paused")
        if group_cap and group is not None:
            limit = self.group_limit(group)
            if limit is not None and self.running_by_group.get(group, 0) >= limit:
                return self._deny("group_limit")
        cap = self.domain_caps.get(cand.domain)
        if cap is not None and self.running_by_domain.get(cand.domain, 0) >= cap:
            return self._deny("domain_limit")
        cap = self.type_caps.get(cand.task_type)
        if cap is not None and self.running_by_type.get(cand.task_type, 0) >= cap:
            return self._deny("type_limit")
        buckets = []
        b = self.type_buckets.get(cand.task_type)
        if b is not None:
            buckets.append(b)
        if group is not None:
            b = self.group_buckets.get(group)
            if b is not None:
                buckets.append(b)
        if buckets:
            due = check_and_take(buckets, self.now)
            if due is not None:
                return self._deny("rate_limited", max(due, Admission.STOP + 1))
        if budget is not None:
            self.type_budget[cand.task_type] = budget - 1
        if expected is not _NO_IO:
            self.io_total = self.io_total + expected
        self.io_count += 1
        if disk_heavy:
            self.io_starts += 1
        self.running_by_domain[cand.domain] = self.running_by_domain.get(cand.domain, 0) + 1
        self.running_by_type[cand.task_type] = self.running_by_type.get(cand.task_type, 0) + 1
        self.running_by_group[group] = self.running_by_group.get(group, 0) + 1
        return Admission.ADMIT


_NO_IO = IoBudget()


@dataclass(slots=True, kw_only=True)
class DispatchPolicy:
    """Everything beyond plain priority order that decides what runs next."""

    group_limits: dict[str, int] = field(default_factory=dict)
    default_group_limit: int = 0
    group_weights: dict[str, float] = field(default_factory=dict)
    group_min_slots: dict[str, int] = field(default_factory=dict)
    default_group_weight: float = 1.0
    #: Paused groups and when they resume by themselves (None: never).
    paused_groups: dict[str, int | None] = field(default_factory=dict)
    paused_domains: set[str] = field(default_factory=set)
    type_buckets: dict[str, TokenBucket] = field(default_factory=dict)
    group_buckets: dict[str, TokenBucket] = field(default_factory=dict)
    aging: AgingConfig | None = None
    #: The last fair allocation (for snapshots).
    allocation: dict[GroupKey, int] = field(default_factory=dict)
    #: Ready tasks per group as last counted, and when (monotonic ms); reused for
    #: a short while so a busy fair scheduler does not recount every group each turn.
    ready_counts: dict[GroupKey, int] | None = None
    ready_counted_at: float = 0.0
    ready_counts_ttl_ms: float = 100.0

    @property
    def fair(self) -> bool:
        return bool(self.group_weights or self.group_min_slots)

    def weight(self, group: GroupKey) -> float:
        if group is None:
            return self.default_group_weight
        return self.group_weights.get(group, self.default_group_weight)

    def effective(self, rec: TaskRecord, pause_duration_ms: int, now: int) -> int:
        return effective_priority(rec.priority, rec.created_at, pause_duration_ms, now, self.aging)

    def next_group_resume(self) -> int | None:
        due = [t for t in self.paused_groups.values() if t is not None]
        return min(due) if due else None

    # -- runtime settings ----------------------------------------------------

    def set_rate_limit(
        self, scope: str, key: str, per_second: float, burst: int | None, now: int
    ) -> None:
        buckets = self.type_buckets if scope == "type" else self.group_buckets
        existing = buckets.get(key)
        if existing is None:
            buckets[key] = TokenBucket.new(per_second, burst, now)
        else:
            existing.reconfigure(per_second, burst, now)

    def remove_rate_limit(self, scope: str, key: str) -> bool:
        buckets = self.type_buckets if scope == "type" else self.group_buckets
        return buckets.pop(key, None) is not None

    @staticmethod
    def check_weight(weight: float) -> float:
        if not weight > 0:
            raise InvalidParams("weight must be > 0", field="weight")
        return float(weight)

    # -- per claim -------------------------------------------------------------

    def plan(
        self,
        *,
        now: int,
        limit: int,
        running: list[TaskRecord],
        domain_caps: Mapping[str, int],
        type_caps: Mapping[str, int],
        worker_slots: Callable[[str], int | None] = lambda _t: None,
        resources: ResourceView | None = None,
    ) -> tuple[ClaimPlan, Gate]:
        by_domain: dict[str, int] = {}
        by_type: dict[str, int] = {}
        by_group: dict[GroupKey, int] = {}
        io_total = IoBudget()
        for r in running:
            io_total = io_total + r.expected_io
            by_domain[r.domain] = by_domain.get(r.domain, 0) + 1
            by_type[r.task_type] = by_type.get(r.task_type, 0) + 1
            by_group[r.group] = by_group.get(r.group, 0) + 1
        gate = Gate(
            now=now,
            running_by_domain=by_domain,
            running_by_type=by_type,
            running_by_group=dict(by_group),
            domain_caps=domain_caps,
            type_caps=type_caps,
            group_limits=self.group_limits,
            default_group_limit=self.default_group_limit,
            paused_groups=frozenset(self.paused_groups),
            paused_domains=frozenset(self.paused_domains),
            worker_slots=worker_slots,
            type_buckets=self.type_buckets,
            group_buckets=self.group_buckets,
            pressure=0.0 if resources is None else resources.pressure,
            throttle=None if resources is None else resources.throttle,
            resources=None if resources is None else resources.resources,
            io_total=io_total,
            io_count=len(running),
            io_starts=0 if resources is None else resources.io_starts_since_sample,
        )
        aging = self.aging
        effective = None
        if aging is not None:

            def effective(priority: int, created_at: int, paused_ms: int) -> int:
                return effective_priority(priority, created_at, paused_ms, now, aging)

        fair = None
        if self.fair:
            capacity = limit + len(running)

            def fair(demand: dict[GroupKey, tuple[int, int]]) -> dict[GroupKey, int]:
                groups = {
                    g: GroupDemand(
                        running=r,
                        ready=n,
                        weight=self.weight(g),
                        min_slots=0 if g is None else self.group_min_slots.get(g, 0),
                        limit=None if g is None else gate.group_limit(g),
                    )
                    for g, (r, n) in demand.items()
                    if g is None or g not in self.paused_groups
                }
                self.allocation = allocate(capacity, groups)
                return self.allocation

        ready_counts = None
        fresh = time.monotonic() * 1000 - self.ready_counted_at < self.ready_counts_ttl_ms
        if self.fair and self.ready_counts is not None and fresh:
            ready_counts = dict(self.ready_counts)
        plan = ClaimPlan(
            limit=limit,
            ready_counts=ready_counts,
            gate=gate.admit,
            effective=effective,
            fair=fair,
            running_by_group=by_group,
            urgent_threshold=None if aging is None else aging.urgent_threshold,
            fair_gate=gate.admit_within_share,
        )
        return plan, gate

    def counted(self, ready_counts: dict[GroupKey, int] | None) -> None:
        """Remember fresh ready counts from a claim."""
        if ready_counts is not None:
            self.ready_counts = ready_counts
            self.ready_counted_at = time.monotonic() * 1000

    def invalidate_counts(self) -> None:
        """New work arrived or groups changed: count again at the next claim."""
        self.ready_counts = None

    # -- snapshot ----------------------------------------------------------

    def groups_snapshot(
        self, counts: Mapping[str, Mapping[str, int]], running: Mapping[GroupKey, int]
    ) -> list[dict[str, Any]]:
        names = sorted(
            set(counts)
            | set(self.group_limits)
            | set(self.group_weights)
            | set(self.group_min_slots)
            | set(self.paused_groups)
            | {g for g in running if g is not None}
        )
        out = []
        for g in names:
            c = counts.get(g, {})
            limit = self.group_limits.get(g) or (self.default_group_limit or None)
            out.append(
                {
                    "group": g,
                    "running": running.get(g, 0),
                    "pending": c.get("pending", 0),
                    "paused_count": c.get("paused", 0),
                    "limit": limit,
                    "weight": self.weight(g),
                    "min_slots": self.group_min_slots.get(g, 0),
                    "allocated_slots": self.allocation.get(g, 0),
                    "paused": g in self.paused_groups,
                    "paused_until": self.paused_groups.get(g),
                }
            )
        return out

    def rate_limits_snapshot(self, now: int) -> list[dict[str, Any]]:
        out = [b.to_dict(k, "type", now) for k, b in sorted(self.type_buckets.items())]
        out += [b.to_dict(k, "group", now) for k, b in sorted(self.group_buckets.items())]
        return out
