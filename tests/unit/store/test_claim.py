"""claim: priority then FIFO, the plan's limits and gate, delays, pauses, expiry,
aging, fairness."""

from __future__ import annotations

import sqlite3

from taskmill.model import Status
from taskmill.store import claim, pauses
from taskmill.store.rows import Admission, Candidate, ClaimPlan, GroupKey
from tests.unit.store.helpers import NOW, active_row, add, claim_ids, history_statuses, start


def test_priority_order_with_zero_most_urgent_then_fifo(conn: sqlite3.Connection) -> None:
    spec = [("mid1", 128), ("urgent1", 0), ("mid2", 128), ("idle", 255), ("urgent2", 0)]
    ids = {key: add(conn, key, priority=p) for key, p in spec}
    order = ["urgent1", "urgent2", "mid1", "mid2", "idle"]
    assert claim_ids(conn, 10) == [ids[k] for k in order]


def test_a_claim_takes_at_most_its_limit_and_marks_the_runs(conn: sqlite3.Connection) -> None:
    ids = [add(conn, f"k{i}") for i in range(5)]
    assert claim_ids(conn, 0) == []
    result = claim.claim(conn, NOW + 7, ClaimPlan(limit=2))
    assert [c.record.id for c in result.claimed] == ids[:2]
    for c in result.claimed:
        assert (c.record.status, c.record.started_at, c.dispatch_count, c.phase) == (
            Status.RUNNING,
            NOW + 7,
            1,
            "execute",
        )
        row = active_row(conn, c.record.id)
        assert row is not None and (row["status"], row["started_at"]) == ("running", NOW + 7)
    assert claim_ids(conn, 10) == ids[2:]
    assert claim_ids(conn, 10) == []  # running tasks are not candidates
    # A TTL counted from the first attempt starts at the claim.
    ttl = add(conn, "ttl", ttl_ms=5000, ttl_from="first_attempt")
    row = active_row(conn, ttl)
    assert row is not None and row["expires_at"] is None
    assert start(conn, ttl, NOW + 100).record.expires_at == NOW + 5100


def test_delayed_tasks_wait_until_due_and_say_when(conn: sqlite3.Connection) -> None:
    later = add(conn, "later", run_after=NOW + 1000)
    sooner = add(conn, "sooner", run_after=NOW + 500, priority=255)
    result = claim.claim(conn, NOW, 10)
    assert result.claimed == [] and result.next_due == NOW + 500
    result = claim.claim(conn, NOW + 999, 10)
    assert [c.record.id for c in result.claimed] == [sooner]
    assert result.next_due == NOW + 1000
    result = claim.claim(conn, NOW + 1000, 10)
    assert [c.record.id for c in result.claimed] == [later] and result.next_due is None
    assert claim.next_due(conn) is None


def test_paused_and_blocked_tasks_are_not_claimed(conn: sqlite3.Connection) -> None:
    dep = add(conn, "dep", priority=200)
    add(conn, "blocked", priority=0, depends_on=[dep])
    add(conn, "held", priority=0, group="g")
    pauses.pause_group(conn, "g", NOW, None)
    free = add(conn, "free", priority=100)
    assert claim_ids(conn, 10) == [free, dep]


def test_the_gate_skips_a_candidate_or_stops_the_claim(conn: sqlite3.Connection) -> None:
    a1 = add(conn, "a1", group="a", priority=0)
    b1 = add(conn, "b1", group="b", priority=1)
    a2 = add(conn, "a2", group="a", priority=2)
    b2 = add(conn, "b2", group="b", priority=3)

    def no_a(c: Candidate) -> int:
        return Admission.SKIP if c.group == "a" else Admission.ADMIT

    result = claim.claim(conn, NOW, ClaimPlan(limit=10, gate=no_a))
    assert [c.record.id for c in result.claimed] == [b1, b2] and result.denied == 2

    def stop(c: Candidate) -> int:
        return Admission.STOP

    result = claim.claim(conn, NOW, ClaimPlan(limit=10, gate=stop))
    assert result.claimed == [] and result.denied == 1  # nothing past the first refusal
    assert claim_ids(conn, 10) == [a1, a2]


def test_a_rate_limit_defers_the_candidate_until_the_given_time(
    conn: sqlite3.Connection,
) -> None:
    limited = add(conn, "limited", group="api", priority=0)
    other = add(conn, "other", priority=1)

    def bucket(c: Candidate) -> int:
        return NOW + 250 if c.group == "api" else Admission.ADMIT

    result = claim.claim(conn, NOW, ClaimPlan(limit=10, gate=bucket))
    assert [c.record.id for c in result.claimed] == [other]
    assert (result.deferred, result.denied, result.next_due) == (1, 0, NOW + 250)
    row = active_row(conn, limited)
    assert row is not None and (row["status"], row["delayed"], row["run_after"]) == (
        "pending",
        1,
        NOW + 250,
    )
    assert claim_ids(conn, 10, NOW + 249) == []
    assert claim_ids(conn, 10, NOW + 250) == [limited]


def test_the_scan_is_bounded(conn: sqlite3.Connection) -> None:
    for i in range(10):
        add(conn, f"k{i}")
    seen: list[int] = []

    def never(c: Candidate) -> int:
        seen.append(c.id)
        return Admission.SKIP

    result = claim.claim(conn, NOW, ClaimPlan(limit=2, gate=never, scan_limit=3))
    assert result.claimed == [] and result.denied == 3 and len(seen) == 3


def test_an_expired_candidate_goes_to_history_instead(conn: sqlite3.Connection) -> None:
    stale = add(conn, "stale", priority=0, expires_at=NOW)
    fresh = add(conn, "fresh", priority=1, expires_at=NOW + 1)
    result = claim.claim(conn, NOW, 10)
    assert [c.record.id for c in result.claimed] == [fresh]
    assert [r.id for r in result.effects.expired] == [stale]
    assert result.effects.expired[0].status is Status.EXPIRED
    assert history_statuses(conn, stale) == ["expired"] and active_row(conn, stale) is None


def test_aging_lets_an_old_task_overtake_a_more_urgent_new_one(
    conn: sqlite3.Connection,
) -> None:
    old = add(conn, "old", priority=100, now=NOW - 100_000)
    new = add(conn, "new", priority=50)

    def aged(priority: int, created_at: int, paused_ms: int) -> int:
        # One level more urgent per second waited (time paused does not count).
        return max(0, priority - (NOW - created_at - paused_ms) // 1000)

    result = claim.claim(conn, NOW, ClaimPlan(limit=2, effective=aged))
    assert [(c.record.id, c.record.effective_priority) for c in result.claimed] == [
        (old, 0),
        (new, 50),
    ]
    assert result.claimed[0].record.priority == 100


def test_fairness_gives_each_group_its_share_before_priority(conn: sqlite3.Connection) -> None:
    a = [add(conn, f"a{i}", group="a", priority=0) for i in range(3)]
    b = [add(conn, f"b{i}", group="b", priority=200) for i in range(3)]
    asked: list[dict[GroupKey, tuple[int, int]]] = []

    def one_each(demand: dict[GroupKey, tuple[int, int]]) -> dict[GroupKey, int]:
        asked.append(dict(demand))
        return {g: running + 1 for g, (running, _) in demand.items()}

    plan = ClaimPlan(limit=3, fair=one_each, running_by_group={"a": 1})
    result = claim.claim(conn, NOW, plan)
    assert asked == [{"a": (1, 3), "b": (0, 3)}]
    assert result.allocation == {"a": 2, "b": 1}
    assert result.ready_counts == {"a": 3, "b": 3}
    # A fair slot each, then the greedy pass fills the last slot by priority.
    assert sorted(c.record.id for c in result.claimed) == sorted([a[0], b[0], a[1]])
