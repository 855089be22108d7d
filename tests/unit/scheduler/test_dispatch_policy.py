"""Aging, fair allocation, token buckets and the gate, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from taskmill.errors import InvalidParams
from taskmill.scheduler.aging import AgingConfig, effective_priority
from taskmill.scheduler.dispatch import DispatchPolicy, Gate
from taskmill.scheduler.fairness import GroupDemand, allocate
from taskmill.scheduler.ratelimit import TokenBucket, check_and_take
from taskmill.store.rows import Admission, Candidate

NOW = 1_700_000_000_000
MIN = 60_000


def test_aging_formula() -> None:
    aging = AgingConfig()  # grace 5 min, one level per minute, ceiling 64
    created = NOW - 361_000  # 6 min 1 s ago: one promotion
    assert effective_priority(255, created, 0, NOW, aging) == 254
    assert effective_priority(255, NOW, 0, NOW, aging) == 255  # within grace
    assert effective_priority(128, NOW - 5 * MIN - 10 * MIN, 0, NOW, aging) == 118
    # The ceiling clamps promotions; never demotes a more urgent task.
    assert effective_priority(128, NOW - 1000 * MIN, 0, NOW, aging) == 64
    assert effective_priority(0, NOW - 1000 * MIN, 0, NOW, aging) == 0
    assert effective_priority(64, NOW - 1000 * MIN, 0, NOW, aging) == 64
    # Time paused does not count.
    assert effective_priority(255, created, 2000, NOW, aging) == 255
    assert effective_priority(200, 0, 0, NOW, None) == 200
    with pytest.raises(InvalidParams):
        AgingConfig(aging_interval_ms=0)


@given(st.integers(0, 255), st.integers(0, 10**9), st.integers(0, 10**8))
def test_aging_never_demotes_and_respects_ceiling(base: int, age: int, paused: int) -> None:
    aging = AgingConfig(max_effective_priority=64)
    eff = effective_priority(base, NOW - age, paused, NOW, aging)
    assert eff <= base
    assert eff >= min(base, 64)


def d(running: int, ready: int, weight: float = 1, min_slots: int = 0, limit: int | None = None):
    return GroupDemand(running, ready, weight, min_slots, limit)


def test_allocation_examples() -> None:
    assert allocate(8, {"a": d(0, 100, 3), "b": d(0, 100, 1)}) == {"a": 6, "b": 2}
    assert allocate(10, {"a": d(0, 100, 1, limit=2), "b": d(0, 100, 1)}) == {"a": 2, "b": 8}
    assert allocate(10, {"a": d(0, 2), "b": d(0, 100)}) == {"a": 2, "b": 8}
    three = allocate(10, {"a": d(0, 50), "b": d(0, 50), "c": d(0, 50)})
    assert sum(three.values()) == 10 and sorted(three.values()) == [3, 3, 4]
    # Minimum slots come first; ungrouped work is the None group.
    assert allocate(4, {"a": d(0, 10, 1, min_slots=3), None: d(0, 10, 10)}) == {"a": 3, None: 1}
    assert allocate(4, {"a": d(0, 0), "b": d(0, 3)}) == {"b": 3}


@given(
    st.integers(0, 64),
    st.dictionaries(
        st.one_of(st.none(), st.text("abc", min_size=1, max_size=2)),
        st.tuples(
            st.integers(0, 10),
            st.integers(0, 50),
            st.floats(0.1, 10),
            st.integers(0, 5),
            st.one_of(st.none(), st.integers(0, 8)),
        ),
        max_size=6,
    ),
)
def test_allocation_invariants(
    capacity: int, raw: dict[str | None, tuple[int, int, float, int, int | None]]
) -> None:
    demand = {g: d(*v) for g, v in raw.items()}
    out = allocate(capacity, demand)
    assert sum(out.values()) <= capacity
    for g, slots in out.items():
        assert 0 <= slots <= demand[g].need
    # Work-conserving: capacity is only left over when every group got its need.
    if sum(out.values()) < capacity:
        assert all(out.get(g, 0) == dd.need for g, dd in demand.items())


def test_token_bucket() -> None:
    b = TokenBucket.new(10, 2, NOW)  # 10/s, burst 2, starts full
    assert check_and_take([b], NOW) is None
    assert check_and_take([b], NOW) is None
    due = check_and_take([b], NOW)
    assert due == NOW + 100
    assert check_and_take([b], NOW + 100) is None
    b.reconfigure(1, 1, NOW + 100)
    assert b.burst == 1 and b.available(NOW + 100) <= 1
    with pytest.raises(InvalidParams):
        TokenBucket.new(0, None, NOW)


def test_both_buckets_checked_before_either_token_is_taken() -> None:
    a = TokenBucket.new(1, 1, NOW)
    b = TokenBucket.new(1, 1, NOW)
    b.tokens = 0
    assert check_and_take([a, b], NOW) == NOW + 1000
    assert a.tokens == 1.0  # not consumed


def cand(i: int, task_type: str = "d::t", group: str | None = None, prio: int = 128):
    return Candidate(i, task_type, task_type.split("::")[0], group, prio, None, NOW, 0, 0, 0, 0, 0)


def gate(**kw: object) -> Gate:
    base: dict[str, Any] = dict(
        now=NOW,
        running_by_domain={},
        running_by_type={},
        running_by_group={},
        domain_caps={},
        type_caps={},
        group_limits={},
        default_group_limit=0,
        paused_groups=frozenset(),
        paused_domains=frozenset(),
    )
    base.update(kw)
    return Gate(**base)


def test_gate_group_limits_default_and_pauses() -> None:
    g = gate(group_limits={"a": 1}, default_group_limit=2, paused_groups=frozenset({"p"}))
    assert g.admit(cand(1, group="a")) == Admission.ADMIT
    assert g.admit(cand(2, group="a")) == Admission.SKIP  # group a at its limit
    assert g.admit(cand(3, group="b")) == Admission.ADMIT
    assert g.admit(cand(4, group="b")) == Admission.ADMIT
    assert g.admit(cand(5, group="b")) == Admission.SKIP  # the default limit
    assert g.admit(cand(6, group="p")) == Admission.SKIP
    assert g.admit(cand(7)) == Admission.ADMIT  # ungrouped: no group limit
    assert g.admit_within_share(cand(8, group="a")) == Admission.ADMIT
    assert g.denials == {"group_limit": 2, "group_paused": 1}


def test_gate_asks_each_worker_type_once_per_claim() -> None:
    asked: list[str] = []

    def slots(task_type: str) -> int | None:
        asked.append(task_type)
        return {"w::one": 1, "w::none": 0}.get(task_type)

    g = gate(worker_slots=slots)
    assert g.admit(cand(1, task_type="w::one")) == Admission.ADMIT
    assert g.admit(cand(2, task_type="w::one")) == Admission.SKIP  # its one slot is taken
    assert g.admit(cand(3, task_type="w::none")) == Admission.SKIP  # no worker
    assert g.admit(cand(4)) == Admission.ADMIT  # a Python executor runs d::t
    assert g.admit(cand(5)) == Admission.ADMIT
    assert asked == ["w::one", "w::none", "d::t"]
    assert g.denials == {"no_worker": 2}


def test_gate_rate_limit_defers_until_next_token() -> None:
    bucket = TokenBucket.new(50, 1, NOW)
    g = gate(type_buckets={"d::t": bucket})
    assert g.admit(cand(1)) == Admission.ADMIT
    assert g.admit(cand(2)) == NOW + 20  # the next token, 20 ms later
    assert g.admit(cand(3, task_type="e::u")) == Admission.ADMIT  # others go on


def test_policy_plan_fair_callback_uses_weights() -> None:
    pol = DispatchPolicy(group_weights={"a": 3.0, "b": 1.0})
    plan, _ = pol.plan(
        now=NOW,
        limit=8,
        running=[],
        domain_caps={},
        type_caps={},
    )
    assert plan.fair is not None
    assert plan.fair({"a": (0, 100), "b": (0, 100)}) == {"a": 6, "b": 2}
    assert pol.allocation == {"a": 6, "b": 2}
