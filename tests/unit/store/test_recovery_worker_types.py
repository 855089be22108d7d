"""recovery (crash repair, history retention) and remembered worker types."""

from __future__ import annotations

import sqlite3

from taskmill.store import pauses, recovery, runs, worker_types
from taskmill.store.rows import PAUSE_GLOBAL, PAUSE_GROUP, PAUSE_PREEMPTION
from tests.unit.store.helpers import NOW, active_row, add, finish, start, status

# -- recover ---------------------------------------------------------------------------


def test_recover_puts_running_work_back_without_counting_a_retry(
    conn: sqlite3.Connection,
) -> None:
    fresh, retried = add(conn, "fresh"), add(conn, "retried")
    start(conn, fresh)
    finish(conn, start(conn, retried), "retry", error="flaky")
    start(conn, retried, NOW + 1)
    idle = add(conn, "idle")
    rec = recovery.recover(conn, NOW + 100)
    assert (rec.requeued, rec.stale_edges, rec.parents_ready) == (2, 0, [])
    for task_id, retries, dispatches in ((fresh, 0, 1), (retried, 1, 2), (idle, 0, 0)):
        row = active_row(conn, task_id)
        assert row is not None
        assert (row["status"], row["retry_count"], row["dispatch_count"], row["started_at"]) == (
            "pending",
            retries,
            dispatches,
            None,
        )


def test_requeue_running_keeps_a_future_start_delayed(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k", run_after=NOW)
    start(conn, task_id, NOW)
    # The clock went back across the restart: the task is not due yet.
    assert recovery.requeue_running(conn, NOW - 50) == 1
    row = active_row(conn, task_id)
    assert row is not None and (row["status"], row["delayed"]) == ("pending", 1)


def test_recover_ends_memory_only_pauses_and_repairs_pause_clocks(
    conn: sqlite3.Connection,
) -> None:
    held = add(conn, "held", group="g")
    pauses.pause_group(conn, "g", NOW, None)
    by_scheduler, preempted = add(conn, "by_scheduler"), add(conn, "preempted")
    for task_id, bit in ((by_scheduler, PAUSE_GLOBAL), (preempted, PAUSE_PREEMPTION)):
        run = start(conn, task_id)
        runs.pause_running(conn, [(task_id, run.dispatch_count)], bit, NOW)
    recovery.recover(conn, NOW + 700)
    assert status(conn, by_scheduler) == "pending" and status(conn, preempted) == "pending"
    row = active_row(conn, held)
    assert row is not None
    # The group pause is persisted: it holds, and the time paused so far is counted.
    assert (row["status"], row["pause_reasons"], row["pause_duration_ms"], row["paused_at"]) == (
        "paused",
        PAUSE_GROUP,
        700,
        NOW + 700,
    )


def test_recover_drops_edges_to_vanished_tasks_and_readies_what_can_run(
    conn: sqlite3.Connection,
) -> None:
    gone, kept = add(conn, "gone"), add(conn, "kept")
    free = add(conn, "free", depends_on=[gone])
    waiting = add(conn, "waiting", depends_on=[gone, kept])
    parent = add(conn, "parent")
    run = start(conn, parent)
    child = add(conn, "child", parent_id=parent)
    assert finish(conn, run).kind == "waiting"
    # Rows vanished without their cascade (a crash mid-way, a hand edit).
    conn.execute("DELETE FROM tasks WHERE id IN (?, ?)", (gone, child))
    rec = recovery.recover(conn, NOW)
    assert (rec.stale_edges, rec.parents_ready) == (2, [parent])
    assert (status(conn, free), status(conn, waiting), status(conn, parent)) == (
        "pending",
        "blocked",
        "pending",
    )


def test_recover_releases_a_blocked_task_of_a_paused_group_as_paused(
    conn: sqlite3.Connection,
) -> None:
    gone = add(conn, "gone")
    blocked = add(conn, "blocked", group="g", depends_on=[gone])
    pauses.pause_group(conn, "g", NOW, None)
    conn.execute("DELETE FROM tasks WHERE id = ?", (gone,))
    recovery.recover(conn, NOW + 1)
    row = active_row(conn, blocked)
    assert row is not None and (row["status"], row["pause_reasons"]) == ("paused", PAUSE_GROUP)


# -- prune_history ---------------------------------------------------------------------


def _history(conn: sqlite3.Connection, n: int) -> list[int]:
    """n completed tasks, finished at NOW, NOW + 1000, ...; their ids."""
    ids = []
    for i in range(n):
        task_id = add(conn, f"h{i}", tags={"i": str(i)})
        finish(conn, start(conn, task_id, NOW), now=NOW + 1000 * i)
        ids.append(task_id)
    return ids


def _kept(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM history ORDER BY history_id")]


def test_prune_history_keeps_the_newest_max_count(conn: sqlite3.Connection) -> None:
    ids = _history(conn, 5)
    assert recovery.prune_history(conn, NOW, None, None) == 0
    assert recovery.prune_history(conn, NOW, 2, None) == 3
    assert _kept(conn) == ids[3:]
    assert {r[0] for r in conn.execute("SELECT value FROM history_tags")} == {"3", "4"}
    assert recovery.prune_history(conn, NOW, 2, None) == 0


def test_prune_history_drops_records_older_than_max_age(conn: sqlite3.Connection) -> None:
    ids = _history(conn, 5)
    # Cut-off NOW + 2000: finished strictly before it goes.
    assert recovery.prune_history(conn, NOW + 5000, None, 3000) == 2
    assert _kept(conn) == ids[2:]
    assert recovery.prune_history(conn, NOW + 5000, 1, 3000) == 2  # both rules apply
    assert _kept(conn) == ids[4:]
    assert conn.execute("SELECT count(*) FROM history_tags").fetchone()[0] == 1


# -- worker_types ----------------------------------------------------------------------


def test_worker_types_are_saved_updated_listed_and_forgotten(conn: sqlite3.Connection) -> None:
    assert worker_types.worker_types(conn) == []
    worker_types.save_worker_type(conn, "w::a", '{"priority":1}', NOW)
    worker_types.save_worker_type(conn, "w::b", "{}", NOW)
    worker_types.save_worker_type(conn, "w::a", '{"priority":2}', NOW + 1)
    assert sorted(worker_types.worker_types(conn)) == [("w::a", '{"priority":2}'), ("w::b", "{}")]
    declared = conn.execute("SELECT declared_at FROM worker_types WHERE task_type = 'w::a'")
    assert declared.fetchone()[0] == NOW + 1
    assert worker_types.forget_worker_type(conn, "w::b") is True
    assert worker_types.forget_worker_type(conn, "w::unknown") is True
    assert worker_types.worker_types(conn) == [("w::a", '{"priority":2}')]


def test_a_worker_type_with_active_tasks_is_not_forgotten(conn: sqlite3.Connection) -> None:
    worker_types.save_worker_type(conn, "w::a", "{}", NOW)
    task_id = add(conn, "k", task_type="w::a")
    assert worker_types.forget_worker_type(conn, "w::a") is False
    assert worker_types.worker_types(conn) == [("w::a", "{}")]
    finish(conn, start(conn, task_id))
    assert worker_types.forget_worker_type(conn, "w::a") is True
    assert worker_types.worker_types(conn) == []
