"""runs: how a run ends (completed, retry, failed, dead letter), put back or paused."""

from __future__ import annotations

import sqlite3

import pytest

from taskmill.model import IoBudget, Status
from taskmill.store import claim, pauses, queries, runs
from taskmill.store.rows import PAUSE_PREEMPTION, Effects, Finish, FinishKind
from tests.unit.store.helpers import (
    NOW,
    active_row,
    add,
    claim_ids,
    finish,
    history_statuses,
    start,
    status,
)


def test_completed_moves_the_task_to_history_with_its_result(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k", tags={"user": "ada"}, payload={"x": 1})
    run = start(conn, task_id, NOW + 10)
    io = IoBudget(disk_read=1, disk_write=2, net_rx=3, net_tx=4)
    res = finish(conn, run, result_json='{"ok":true}', actual_io=io, now=NOW + 60)
    assert res.kind == "completed" and res.history_id is not None
    assert active_row(conn, task_id) is None
    rec = queries.get(conn, task_id)
    assert rec is not None and rec.history_id == res.history_id
    assert (rec.status, rec.result, rec.payload, dict(rec.tags)) == (
        Status.COMPLETED,
        {"ok": True},
        {"x": 1},
        {"user": "ada"},
    )
    assert (rec.started_at, rec.finished_at, rec.duration_ms, rec.actual_io) == (
        NOW + 10,
        NOW + 60,
        50,
        io,
    )
    hist_tags = conn.execute(
        "SELECT key, value FROM history_tags WHERE history_id = ?", (res.history_id,)
    )
    assert [tuple(r) for r in hist_tags] == [("user", "ada")]
    assert conn.execute("SELECT count(*) FROM task_tags").fetchone()[0] == 0


def test_a_run_that_waited_ahead_counts_from_when_it_started(conn: sqlite3.Connection) -> None:
    # Claimed at +10, started at +40 (it waited ahead for a slot), done at +60.
    run = start(conn, add(conn, "ok"), NOW + 10)
    finish(conn, run, result_json="null", now=NOW + 60, started_at=NOW + 40)
    done = queries.get(conn, run.record.id)
    assert done is not None and (done.started_at, done.duration_ms) == (NOW + 40, 20)
    # A batch that records it later keeps when it ended.
    late = start(conn, add(conn, "late"), NOW + 10)
    finish(conn, late, result_json="null", now=NOW + 90, started_at=NOW + 40, ended_at=NOW + 55)
    rec = queries.get(conn, late.record.id)
    assert rec is not None and (rec.finished_at, rec.duration_ms) == (NOW + 55, 15)
    # So does a failure.
    bad = start(conn, add(conn, "bad"), NOW + 10)
    finish(conn, bad, "failed", error="x", now=NOW + 70, started_at=NOW + 50)
    failed = queries.get(conn, bad.record.id)
    assert failed is not None and (failed.started_at, failed.duration_ms) == (NOW + 50, 20)


def test_a_stale_finish_writes_nothing(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k")
    run = start(conn, task_id)
    late = Finish(task_id=task_id, dispatch_count=run.dispatch_count + 1, kind="completed")
    ghost = Finish(task_id=999, dispatch_count=1, kind="failed", error="x")
    results = runs.finish(conn, [late, ghost], NOW)
    assert [(r.kind, r.task_id) for r in results] == [("stale", task_id), ("stale", 999)]
    assert status(conn, task_id) == "running"
    # Put back and run again: the first run's result no longer counts.
    assert runs.return_to_pending(conn, [(task_id, run.dispatch_count)]) == [task_id]
    rerun = start(conn, task_id)
    assert finish(conn, run).kind == "stale"
    assert finish(conn, rerun).kind == "completed"


def test_retry_puts_the_task_back_with_a_backoff(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k")
    run = start(conn, task_id)
    res = finish(conn, run, "retry", error="flaky", traceback="tb", retry_delay_ms=300, now=NOW + 5)
    assert (res.kind, res.retry_count, res.run_after) == ("retry", 1, NOW + 305)
    row = active_row(conn, task_id)
    assert row is not None
    assert (row["status"], row["delayed"], row["retry_count"], row["last_error"]) == (
        "pending",
        1,
        1,
        "flaky",
    )
    assert (row["traceback"], row["started_at"]) == ("tb", None)
    result = claim.claim(conn, NOW + 304, 10)
    assert result.claimed == [] and result.next_due == NOW + 305
    again = start(conn, task_id, NOW + 305)
    assert (again.dispatch_count, again.record.retry_count) == (2, 1)
    # Without a delay, it is ready at once.
    finish(conn, again, "retry", error="x", now=NOW + 306)
    assert claim_ids(conn, 10, NOW + 306) == [task_id]


@pytest.mark.parametrize("kind", ["failed", "dead_letter"])
def test_a_failure_goes_to_history_with_its_error(
    conn: sqlite3.Connection, kind: FinishKind
) -> None:
    task_id = add(conn, "k")
    finish(conn, start(conn, task_id), "retry", error="first")
    run = start(conn, task_id, NOW + 1)
    res = finish(conn, run, kind, error="second", traceback="tb", now=NOW + 2)
    assert (res.kind, res.retry_count) == (kind, 1)
    rec = queries.latest_history(conn, task_id)
    assert rec is not None
    assert (rec.status.value, rec.last_error, rec.traceback, rec.retry_count) == (
        kind,
        "second",
        "tb",
        1,
    )
    assert active_row(conn, task_id) is None


def test_return_to_pending_counts_no_retry(conn: sqlite3.Connection) -> None:
    a, b = add(conn, "a"), add(conn, "b")
    run_a, run_b = start(conn, a), start(conn, b)
    done = runs.return_to_pending(conn, [(a, run_a.dispatch_count), (b, run_b.dispatch_count + 5)])
    assert done == [a]  # b's pair is stale: left running
    row = active_row(conn, a)
    assert row is not None
    assert (row["status"], row["retry_count"], row["started_at"]) == ("pending", 0, None)
    assert status(conn, b) == "running"


def test_pause_running_holds_the_task_until_its_reason_clears(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k")
    run = start(conn, task_id)
    assert runs.pause_running(conn, [(task_id, run.dispatch_count + 1)], 1, NOW) == []
    assert runs.pause_running(conn, [(task_id, run.dispatch_count)], PAUSE_PREEMPTION, NOW) == [
        task_id
    ]
    rec = queries.get(conn, task_id)
    assert rec is not None
    assert (rec.status, rec.pause_reasons, rec.retry_count) == (Status.PAUSED, ("preempted",), 0)
    assert claim_ids(conn, 10) == []
    assert pauses.clear_pause_bit(conn, PAUSE_PREEMPTION, NOW + 400) == [task_id]
    row = active_row(conn, task_id)
    assert row is not None
    assert (row["status"], row["pause_duration_ms"], row["paused_at"]) == ("pending", 400, None)


def test_a_parent_waits_for_its_children_and_fails_with_one(conn: sqlite3.Connection) -> None:
    parent = add(conn, "parent")
    run = start(conn, parent)
    c1 = add(conn, "c1", parent_id=parent)
    c2 = add(conn, "c2", parent_id=parent)
    res = finish(conn, run, result_json='"memo"')
    assert (res.kind, res.children) == ("waiting", 2)
    row = active_row(conn, parent)
    assert row is not None and (row["status"], row["phase"], row["memo"]) == (
        "waiting",
        "finalize",
        '"memo"',
    )
    eff = Effects()
    finish(conn, start(conn, c1), result_json="1", eff=eff)
    assert eff.parents_ready == [] and status(conn, parent) == "waiting"
    finish(conn, start(conn, c2), "failed", error="bad", eff=eff)
    # A fail-fast parent (the default) fails with its child.
    assert history_statuses(conn, parent) == ["failed"] and eff.parents_ready == []
    assert [(p.id, msg, was) for p, msg, was in eff.failed_parents] == [
        (parent, f"child task {c2} failed: bad", Status.WAITING)
    ]


def test_a_lenient_parent_finalizes_with_its_childrens_outcomes(
    conn: sqlite3.Connection,
) -> None:
    parent = add(conn, "parent", fail_fast=False)
    run = start(conn, parent)
    c1 = add(conn, "c1", parent_id=parent)
    c2 = add(conn, "c2", parent_id=parent)
    assert finish(conn, run, result_json='"memo"').kind == "waiting"
    eff = Effects()
    finish(conn, start(conn, c1), result_json="1", eff=eff)
    finish(conn, start(conn, c2), "failed", error="bad", eff=eff)
    assert eff.parents_ready == [parent]
    final = start(conn, parent)
    assert (final.phase, final.memo_json, final.dispatch_count) == ("finalize", '"memo"', 2)
    assert final.children == [
        {"id": c1, "task_type": "d::work", "status": "completed", "result": 1, "error": None},
        {"id": c2, "task_type": "d::work", "status": "failed", "result": None, "error": "bad"},
    ]
    res = finish(conn, final, result_json='"all"')
    assert res.kind == "completed"
    rec = queries.get(conn, parent)
    assert rec is not None and (rec.status, rec.result) == (Status.COMPLETED, "all")


def test_a_parent_whose_children_are_already_done_is_queued_to_finalize(
    conn: sqlite3.Connection,
) -> None:
    parent = add(conn, "parent")
    run = start(conn, parent)
    child = add(conn, "child", parent_id=parent)
    finish(conn, start(conn, child))
    res = finish(conn, run)
    assert (res.kind, res.children) == ("finalize", 0)
    assert start(conn, parent).phase == "finalize"
