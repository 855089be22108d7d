"""pauses (groups, domains, preemption, priorities) and recurring schedules."""

from __future__ import annotations

import sqlite3

import pytest

from taskmill.errors import NotFound
from taskmill.store import pauses, recurring, runs
from taskmill.store.rows import (
    PAUSE_DOMAIN,
    PAUSE_GROUP,
    PAUSE_PREEMPTION,
    PAUSE_SCHEDULE,
)
from tests.unit.store.helpers import NOW, active_row, add, claim_ids, finish, start, status

# -- pauses ---------------------------------------------------------------------------


def test_a_group_pause_holds_its_queued_tasks_until_resumed(conn: sqlite3.Connection) -> None:
    queued = [add(conn, f"q{i}", group="g") for i in range(2)]
    running = add(conn, "r", group="g")
    start(conn, running)
    other = add(conn, "other", group="h")
    assert pauses.pause_group(conn, "g", NOW, NOW + 60_000) == 2
    assert pauses.load_pauses(conn) == ({"g": NOW + 60_000}, set())
    for task_id in queued:
        row = active_row(conn, task_id)
        assert row is not None
        assert (row["status"], row["pause_reasons"], row["paused_at"]) == (
            "paused",
            PAUSE_GROUP,
            NOW,
        )
    assert status(conn, running) == "running" and claim_ids(conn, 10) == [other]
    assert pauses.resume_group(conn, "g", NOW + 250) == queued
    assert pauses.load_pauses(conn) == ({}, set())
    for task_id in queued:
        row = active_row(conn, task_id)
        assert row is not None
        assert (row["status"], row["pause_reasons"], row["pause_duration_ms"]) == (
            "pending",
            0,
            250,
        )


def test_a_task_paused_for_two_reasons_waits_for_both(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k", group="g")
    assert pauses.pause_group(conn, "g", NOW, None) == 1
    assert pauses.pause_domain(conn, "d", NOW + 100) == 0  # already paused: not counted
    row = active_row(conn, task_id)
    assert row is not None and row["pause_reasons"] == PAUSE_GROUP | PAUSE_DOMAIN
    assert pauses.resume_group(conn, "g", NOW + 200) == []
    row = active_row(conn, task_id)
    assert row is not None and (row["status"], row["pause_reasons"]) == ("paused", PAUSE_DOMAIN)
    assert pauses.resume_domain(conn, "d", NOW + 300) == [task_id]
    row = active_row(conn, task_id)
    # Paused time runs from the first pause to the last resume.
    assert row is not None and (row["status"], row["pause_duration_ms"]) == ("pending", 300)


def test_load_pauses_round_trips_what_was_persisted(conn: sqlite3.Connection) -> None:
    pauses.pause_group(conn, "a", NOW, None)
    pauses.pause_group(conn, "b", NOW, NOW + 5)
    pauses.pause_group(conn, "b", NOW + 1, NOW + 9)  # paused again: the new resume time
    pauses.pause_domain(conn, "x", NOW)
    pauses.pause_domain(conn, "x", NOW + 1)
    pauses.pause_domain(conn, "y", NOW)
    assert pauses.load_pauses(conn) == ({"a": None, "b": NOW + 9}, {"x", "y"})
    pauses.resume_domain(conn, "x", NOW + 2)
    pauses.resume_group(conn, "a", NOW + 2)
    assert pauses.load_pauses(conn) == ({"b": NOW + 9}, {"y"})


def test_a_delayed_task_resumed_before_its_time_stays_delayed(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k", group="g", run_after=NOW + 1000)
    pauses.pause_group(conn, "g", NOW, None)
    assert pauses.resume_group(conn, "g", NOW + 10) == [task_id]
    row = active_row(conn, task_id)
    assert row is not None and (row["status"], row["delayed"]) == ("pending", 1)
    assert claim_ids(conn, 10, NOW + 999) == []
    assert claim_ids(conn, 10, NOW + 1000) == [task_id]


def test_set_priority_reorders_queued_tasks_only(conn: sqlite3.Connection) -> None:
    a, b = add(conn, "a", priority=10), add(conn, "b", priority=20)
    running = add(conn, "r", priority=0)
    start(conn, running)
    assert pauses.set_priority(conn, b, 5) is True
    assert pauses.set_priority(conn, running, 200) is False
    row = active_row(conn, running)
    assert row is not None and row["priority"] == 0
    assert claim_ids(conn, 10) == [b, a]
    with pytest.raises(NotFound):
        pauses.set_priority(conn, 999, 1)


def test_preempted_tasks_resume_only_when_nothing_more_urgent_is_ahead(
    conn: sqlite3.Connection,
) -> None:
    high, low = add(conn, "high", priority=3), add(conn, "low", priority=100)
    for task_id in (high, low):
        run = start(conn, task_id)
        runs.pause_running(conn, [(task_id, run.dispatch_count)], PAUSE_PREEMPTION, NOW)
    urgent = add(conn, "urgent", priority=5)
    assert pauses.has_preempted(conn)
    assert pauses.resume_preempted(conn, NOW + 1, 20) == [high]
    assert pauses.has_preempted(conn)
    # The resumed task is itself urgent (3 <= 20): low waits for it too.
    finish(conn, start(conn, urgent))
    assert pauses.resume_preempted(conn, NOW + 2, 20) == []
    finish(conn, start(conn, high))
    assert pauses.resume_preempted(conn, NOW + 3, 20) == [low]
    assert not pauses.has_preempted(conn)


# -- recurring -------------------------------------------------------------------------


def test_a_recurring_task_is_listed_as_a_schedule(conn: sqlite3.Connection) -> None:
    first = add(conn, "tick", recurring_interval_ms=1000, recurring_max=5)
    add(conn, "once")
    add(conn, "elsewhere", task_type="e::t", recurring_interval_ms=50)
    assert recurring.schedules(conn, "d") == [
        {
            "id": first,
            "task_id": first,
            "task_type": "d::work",
            "label": "tick",
            "interval_ms": 1000,
            "next_run": None,
            "status": "pending",
            "occurrences": 0,
            "max_occurrences": 5,
            "paused": False,
        }
    ]
    assert len(recurring.schedules(conn)) == 2


def test_completing_an_occurrence_enqueues_the_next_on_cadence(
    conn: sqlite3.Connection,
) -> None:
    first = add(conn, "tick", recurring_interval_ms=1000, tags={"job": "tick"})
    res = finish(conn, start(conn, first), now=NOW + 10)
    assert (res.kind, res.occurrences, res.skipped) == ("completed", 1, 0)
    nxt = res.next_id
    assert nxt is not None and nxt != first
    row = active_row(conn, nxt)
    assert row is not None
    assert (row["status"], row["delayed"], row["run_after"], row["recurring_count"]) == (
        "pending",
        1,
        NOW + 1000,
        1,
    )
    assert (row["schedule_id"], row["tags"]) == (first, '{"job":"tick"}')
    (sched,) = recurring.schedules(conn)
    assert (sched["id"], sched["task_id"], sched["next_run"], sched["occurrences"]) == (
        first,
        nxt,
        NOW + 1000,
        1,
    )
    # The schedule is found by its id (the first occurrence's) or the current task's.
    for key in (first, nxt):
        found = recurring.find_schedule(conn, key)
        assert found is not None and found["id"] == nxt
    assert claim_ids(conn, 10, NOW + 999) == []
    assert claim_ids(conn, 10, NOW + 1000) == [nxt]


def test_overdue_occurrences_are_skipped_not_run(conn: sqlite3.Connection) -> None:
    first = add(conn, "tick", recurring_interval_ms=1000)
    res = finish(conn, start(conn, first), now=NOW + 3500)
    assert res.skipped == 3  # due at +1000, +2000 and +3000
    assert res.next_id is not None
    row = active_row(conn, res.next_id)
    assert row is not None and row["run_after"] == NOW + 4000


def test_a_retried_occurrence_keeps_the_schedules_cadence(conn: sqlite3.Connection) -> None:
    first = add(conn, "tick", recurring_interval_ms=1000)
    finish(conn, start(conn, first), "retry", error="flaky", retry_delay_ms=300)
    res = finish(conn, start(conn, first, NOW + 300), now=NOW + 310)
    assert res.next_id is not None
    row = active_row(conn, res.next_id)
    assert row is not None and row["run_after"] == NOW + 1000  # not NOW + 1300


def test_a_schedule_ends_after_its_last_occurrence_or_a_failure(conn: sqlite3.Connection) -> None:
    first = add(conn, "tick", recurring_interval_ms=1000, recurring_max=2)
    res = finish(conn, start(conn, first), now=NOW + 1)
    assert res.next_id is not None
    last = finish(conn, start(conn, res.next_id, NOW + 1000), now=NOW + 1001)
    assert (last.occurrences, last.next_id) == (2, None)
    assert recurring.schedules(conn) == []
    # A failure ends a schedule too.
    failing = add(conn, "failing", recurring_interval_ms=1000)
    res = finish(conn, start(conn, failing, NOW + 2000), "failed", error="x", now=NOW + 2001)
    assert (res.kind, res.next_id) == ("failed", None)
    assert recurring.schedules(conn) == []


def test_a_paused_schedule_holds_its_occurrences_until_resumed(
    conn: sqlite3.Connection,
) -> None:
    first = add(conn, "tick", recurring_interval_ms=1000)
    run = start(conn, first)
    assert recurring.set_schedule_paused(conn, first, True, NOW + 1) == []
    assert status(conn, first) == "running"  # a running occurrence finishes
    res = finish(conn, run, now=NOW + 2)
    assert res.next_id is not None
    row = active_row(conn, res.next_id)
    assert row is not None
    assert (row["status"], row["pause_reasons"], row["recurring_paused"]) == (
        "paused",
        PAUSE_SCHEDULE,
        1,
    )
    assert recurring.schedules(conn)[0]["paused"] is True
    assert recurring.set_schedule_paused(conn, first, False, NOW + 3) == [res.next_id]
    row = active_row(conn, res.next_id)
    assert row is not None and (row["status"], row["delayed"]) == ("pending", 1)
    assert recurring.schedules(conn)[0]["paused"] is False
    with pytest.raises(NotFound):
        recurring.set_schedule_paused(conn, 999, True, NOW)
