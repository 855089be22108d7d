"""cascade: dependents released or failed, expiry, cancel, parents settled after children."""

from __future__ import annotations

import sqlite3

from taskmill.filters import TaskFilter
from taskmill.model import Status
from taskmill.store import cascade, pauses
from taskmill.store.rows import PAUSE_DOMAIN, Effects
from tests.unit.store.helpers import (
    NOW,
    active_row,
    add,
    finish,
    history_statuses,
    new_task,
    start,
    status,
    submit,
)


def test_dependents_are_released_once_their_last_dependency_completes(
    conn: sqlite3.Connection,
) -> None:
    a, b = add(conn, "a"), add(conn, "b")
    waiter = add(conn, "waiter", depends_on=[a, b])
    eff = Effects()
    finish(conn, start(conn, a), eff=eff)
    assert eff.unblocked == [] and status(conn, waiter) == "blocked"
    finish(conn, start(conn, b), eff=eff)
    assert [(r.id, r.status) for r in eff.unblocked] == [(waiter, Status.PENDING)]
    assert status(conn, waiter) == "pending"
    assert conn.execute("SELECT count(*) FROM task_deps").fetchone()[0] == 0


def test_a_released_task_respects_pauses_and_its_delay(conn: sqlite3.Connection) -> None:
    dep = add(conn, "dep", task_type="other::x")
    held = add(conn, "held", depends_on=[dep])
    later = add(conn, "later", task_type="other::y", depends_on=[dep], run_after=NOW + 500)
    pauses.pause_domain(conn, "d", NOW)
    eff = Effects()
    cascade.dependency_done(conn, NOW + 1, eff, dep)
    assert {r.id: r.status for r in eff.unblocked} == {held: Status.PAUSED, later: Status.PENDING}
    row = active_row(conn, held)
    assert row is not None and (row["status"], row["pause_reasons"]) == ("paused", PAUSE_DOMAIN)
    row = active_row(conn, later)
    assert row is not None and (row["status"], row["delayed"]) == ("pending", 1)


def test_a_failed_dependency_cascades_by_each_dependents_policy(
    conn: sqlite3.Connection,
) -> None:
    root = add(conn, "root")
    cancel_ = add(conn, "cancel", depends_on=[root])  # default policy: cancel
    under_cancel = add(conn, "under_cancel", depends_on=[cancel_], on_dep_failure="ignore")
    fail = add(conn, "fail", depends_on=[root], on_dep_failure="fail")
    under_fail = add(conn, "under_fail", depends_on=[fail], on_dep_failure="ignore")
    ignore = add(conn, "ignore", depends_on=[root], on_dep_failure="ignore")
    eff = Effects()
    finish(conn, start(conn, root), "failed", error="boom", eff=eff)
    assert {rec.id: by for rec, by in eff.dependency_failed} == {
        cancel_: root,
        under_cancel: cancel_,  # "cancel" ends everything downstream, whatever its policy
        fail: root,
    }
    for task_id in (cancel_, under_cancel, fail):
        assert history_statuses(conn, task_id) == ["dependency_failed"]
    # "fail" leaves its dependents to their own policy; "ignore" drops the edge.
    assert {r.id for r in eff.unblocked} == {under_fail, ignore}
    assert status(conn, under_fail) == "pending" and status(conn, ignore) == "pending"


def test_expire_due_ends_queued_tasks_past_their_deadline(conn: sqlite3.Connection) -> None:
    running = add(conn, "running", expires_at=NOW)
    start(conn, running, NOW - 1)
    parent = add(conn, "parent", expires_at=NOW)
    child = add(conn, "child", parent_id=parent)  # no deadline of its own
    blocked = add(conn, "blocked", depends_on=[parent], on_dep_failure="ignore", expires_at=NOW)
    paused = add(conn, "paused", group="g", expires_at=NOW - 5)
    pauses.pause_group(conn, "g", NOW, None)
    fresh = add(conn, "fresh", expires_at=NOW + 1)
    waiter = add(conn, "waiter", depends_on=[fresh])
    eff = Effects()
    cascade.expire_due(conn, NOW, eff)
    assert {r.id for r in eff.expired} == {parent, child, blocked, paused}
    assert eff.expired[0].id == paused  # the oldest deadline first
    for task_id in (parent, child, blocked, paused):
        assert history_statuses(conn, task_id) == ["expired"]
    assert status(conn, running) == "running" and status(conn, fresh) == "pending"
    eff = Effects()
    cascade.expire_due(conn, NOW + 1, eff)
    assert [r.id for r in eff.expired] == [fresh]
    assert [(r.id, by) for r, by in eff.dependency_failed] == [(waiter, fresh)]
    # At most ``limit`` per call, the oldest deadline first.
    ids = [add(conn, f"k{i}", expires_at=NOW - 10 + i) for i in range(5)]
    eff = Effects()
    cascade.expire_due(conn, NOW + 1, eff, limit=2)
    assert [r.id for r in eff.expired] == ids[:2]


def test_cancel_moves_independent_tasks_to_history_in_bulk(conn: sqlite3.Connection) -> None:
    a = add(conn, "a", tags={"t": "1"})
    b = add(conn, "b")
    start(conn, b)
    keep = add(conn, "keep")
    done = cascade.cancel(conn, [a, b, 999], NOW + 1, "cancelled")
    assert [(c.record.id, c.was, c.reason) for c in done] == [
        (a, Status.PENDING, "cancelled"),
        (b, Status.RUNNING, "cancelled"),
    ]
    assert history_statuses(conn, a) == ["cancelled"] and history_statuses(conn, b) == ["cancelled"]
    tags = conn.execute(
        "SELECT g.key, g.value FROM history_tags g JOIN history h USING (history_id) "
        "WHERE h.id = ?",
        (a,),
    )
    assert [tuple(r) for r in tags] == [("t", "1")]
    assert conn.execute("SELECT count(*) FROM task_tags").fetchone()[0] == 0
    assert status(conn, keep) == "pending"


def test_cancel_takes_the_tree_and_fails_the_dependents(conn: sqlite3.Connection) -> None:
    root = add(conn, "root")
    child = add(conn, "child", parent_id=root)
    grandchild = add(conn, "grandchild", parent_id=child)
    waiter = add(conn, "waiter", depends_on=[root])
    eff = Effects()
    done = cascade.cancel(conn, [root], NOW, "cancelled", eff)
    assert [c.record.id for c in done] == [grandchild, child, root]  # deepest first
    for task_id in (root, child, grandchild):
        assert history_statuses(conn, task_id) == ["cancelled"]
    assert [(r.id, by) for r, by in eff.dependency_failed] == [(waiter, root)]
    assert history_statuses(conn, waiter) == ["dependency_failed"]


def test_cancelling_the_last_child_makes_a_waiting_parent_ready(
    conn: sqlite3.Connection,
) -> None:
    parent = add(conn, "parent")
    run = start(conn, parent)
    child = add(conn, "child", parent_id=parent)
    assert finish(conn, run).kind == "waiting"
    eff = Effects()
    cascade.cancel(conn, [child], NOW, "cancelled", eff)
    assert eff.parents_ready == [parent]
    assert status(conn, parent) == "pending"


def test_cancel_page_walks_the_matching_tasks_a_page_at_a_time(
    conn: sqlite3.Connection,
) -> None:
    ours = [add(conn, f"k{i}", task_type="mine::t") for i in range(5)]
    other = add(conn, "other")
    flt = TaskFilter(domain="mine")
    eff = Effects()
    done, last = cascade.cancel_page(conn, flt, -1, 2, NOW, eff)
    assert ([c.record.id for c in done], last) == (ours[:2], ours[1])
    done, last = cascade.cancel_page(conn, flt, ours[1], 2, NOW, eff)
    assert ([c.record.id for c in done], last) == (ours[2:4], ours[3])
    done, last = cascade.cancel_page(conn, flt, ours[3], 2, NOW, eff)
    assert ([c.record.id for c in done], last) == (ours[4:], None)
    assert status(conn, other) == "pending"


def test_settle_parents_fails_only_a_fail_fast_parent(conn: sqlite3.Connection) -> None:
    strict = add(conn, "strict")
    lenient = add(conn, "lenient", fail_fast=False)
    start(conn, strict)
    start(conn, lenient)
    sibling = add(conn, "sibling", parent_id=strict)
    eff = Effects()
    cascade.settle_parents(conn, NOW, eff, {strict: (123, "oops"), lenient: (456, "oops")})
    assert [(p.id, msg) for p, msg, _ in eff.failed_parents] == [
        (strict, "child task 123 failed: oops")
    ]
    assert [(c.record.id, c.reason) for c in eff.cancelled] == [(sibling, "fail_fast")]
    assert history_statuses(conn, strict) == ["failed"]
    assert status(conn, lenient) == "running"


def test_child_outcomes_are_each_childs_latest_record(conn: sqlite3.Connection) -> None:
    parent = add(conn, "parent")
    start(conn, parent)
    first = add(conn, "first", parent_id=parent, payload=1)
    second = add(conn, "second", parent_id=parent)
    run = start(conn, first)
    submit(conn, new_task("first", parent_id=parent, payload=2))  # requeued: runs again
    finish(conn, run, result_json='"old"')
    finish(conn, start(conn, first), result_json='"new"')
    finish(conn, start(conn, second), "dead_letter", error="gave up")
    assert cascade.child_outcomes(conn, parent) == [
        {
            "id": first,
            "task_type": "d::work",
            "status": "completed",
            "result": "new",
            "error": None,
        },
        {
            "id": second,
            "task_type": "d::work",
            "status": "dead_letter",
            "result": None,
            "error": "gave up",
        },
    ]
    assert history_statuses(conn, first) == ["completed", "completed"]
