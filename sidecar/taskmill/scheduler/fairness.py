"""Weighted fair shares of the concurrency among groups.

Used when any group has a weight or minimum slots. Each cycle, the capacity
(``max_concurrency``) is split among the groups that have demand (running or
ready tasks; ungrouped tasks form a group of their own, keyed ``None``, with
the default weight): first each group's minimum slots, then the rest by
weight, each share capped by the group's need and its concurrency limit, the
surplus of capped groups going to the others, rounding by largest remainder.
Paused groups take no part. The result is each group's total slots, running
tasks included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["GroupDemand", "allocate"]

GroupKey = str | None


@dataclass(frozen=True, slots=True)
class GroupDemand:
    running: int
    ready: int
    weight: float
    min_slots: int = 0
    #: The group's concurrency limit, or None.
    limit: int | None = None

    @property
    def need(self) -> int:
        total = self.running + self.ready
        return total if self.limit is None else min(total, self.limit)


def _sort_key(g: GroupKey) -> tuple[int, str]:
    return (0, "") if g is None else (1, g)


def allocate(capacity: int, demand: Mapping[GroupKey, GroupDemand]) -> dict[GroupKey, int]:
    """Slots per group (running included) summing to at most ``capacity``.

    Examples (from the reference semantics): weights 3:1, capacity 8, both
    saturated -> 6/2; a group capped at 2 with 1:1 and capacity 10 -> 2/8.
    """
    groups = sorted((g for g, d in demand.items() if d.need > 0), key=_sort_key)
    slots: dict[GroupKey, int] = dict.fromkeys(groups, 0)
    remaining = max(0, capacity)
    # 1. Minimum slots.
    for g in groups:
        give = min(demand[g].min_slots, demand[g].need, remaining)
        slots[g] += give
        remaining -= give
    # 2. The rest by weight, capped by need; surplus redistributed.
    active = [g for g in groups if slots[g] < demand[g].need]
    for _ in range(16):
        if remaining <= 0 or not active:
            break
        total_w = sum(demand[g].weight for g in active)
        if total_w <= 0:
            break
        shares = {g: remaining * demand[g].weight / total_w for g in active}
        whole = {g: int(shares[g]) for g in active}
        # Largest remainder, ties by group key (None first).
        left = remaining - sum(whole.values())
        by_rem = sorted(active, key=lambda g: (-(shares[g] - whole[g]), _sort_key(g)))
        for g in by_rem[:left]:
            whole[g] += 1
        given = 0
        for g in active:
            give = min(whole[g], demand[g].need - slots[g])
            slots[g] += give
            given += give
        remaining -= given
        active = [g for g in active if slots[g] < demand[g].need]
        if given == 0:
            break
    return slots
