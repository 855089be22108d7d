"""submit: insert, dedup by key (duplicate, upgrade, requeue, supersede), checks at the door."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from taskmill import Domain, SchedulerConfig, Submission
from taskmill.errors import InvalidParams
from taskmill.model import Outcome, Status
from taskmill.scheduler.domain import TypeRegistry
from taskmill.scheduler.policy import resolve_submission
from taskmill.store import pauses, queries, submit as submit_mod
from taskmill.store.rows import PAUSE_GROUP, NewTask
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


def test_insert_stores_the_task_and_returns_its_record(conn: sqlite3.Connection) -> None:
    (eff,) = submit(conn, new_task("k", payload={"n": 1}, tags={"user": "ada"}, group="g"))
    assert eff.outcome is Outcome.INSERTED and eff.replaced_id is None
    rec = eff.record
    assert rec is not None
    assert (rec.id, rec.key, rec.status, rec.payload, rec.group) == (
        eff.id,
        "k",
        Status.PENDING,
        {"n": 1},
        "g",
    )
    assert rec.created_at == NOW and rec.retry_count == 0
    row = active_row(conn, eff.id)
    assert row is not None
    assert (row["status"], row["delayed"], row["payload"], row["tags"]) == (
        "pending",
        0,
        '{"n":1}',
        '{"user":"ada"}',
    )
    tags = conn.execute("SELECT key, value FROM task_tags WHERE task_id = ?", (eff.id,))
    assert [tuple(r) for r in tags] == [("user", "ada")]
    # What the store reads back is what submit answered.
    assert queries.get(conn, eff.id) == rec


def test_the_same_key_again_is_a_duplicate(conn: sqlite3.Connection) -> None:
    first = add(conn, "k", priority=100, payload=1)
    for again in (new_task("k", priority=100, payload=2), new_task("k", priority=200)):
        (eff,) = submit(conn, again, now=NOW + 5)
        assert (eff.outcome, eff.id, eff.replaced_id, eff.record) == (
            Outcome.DUPLICATE,
            first,
            first,
            None,
        )
    row = active_row(conn, first)
    assert row is not None and (row["priority"], row["payload"]) == (100, "1")
    # The same key under another type is another task.
    (other,) = submit(conn, new_task("k", task_type="d::other"))
    assert other.outcome is Outcome.INSERTED and other.id != first


@pytest.mark.parametrize("blocked", [False, True])
def test_a_more_urgent_duplicate_upgrades_the_queued_task(
    conn: sqlite3.Connection, blocked: bool
) -> None:
    deps = [add(conn, "dep")] if blocked else []
    first = add(conn, "k", priority=200, depends_on=deps)
    (eff,) = submit(conn, new_task("k", priority=10, depends_on=deps))
    assert (eff.outcome, eff.id, eff.replaced_id) == (Outcome.UPGRADED, first, first)
    assert eff.record is not None
    assert (eff.record.priority, eff.record.effective_priority) == (10, 10)
    assert eff.record.status is (Status.BLOCKED if blocked else Status.PENDING)
    row = active_row(conn, first)
    assert row is not None and row["priority"] == 10


def test_a_new_payload_for_a_running_task_requeues_it_after_it_completes(
    conn: sqlite3.Connection,
) -> None:
    task_id = add(conn, "k", priority=100, payload="v1")
    run = start(conn, task_id)
    (same,) = submit(conn, new_task("k", payload="v1"))
    assert same.outcome is Outcome.DUPLICATE
    (eff,) = submit(conn, new_task("k", priority=150, payload="v2"))
    (eff2,) = submit(conn, new_task("k", priority=50, payload="v3"))
    assert (eff.outcome, eff2.outcome) == (Outcome.REQUEUED, Outcome.REQUEUED)
    assert eff.id == task_id and eff.record is not None and eff.record.status is Status.RUNNING
    res = finish(conn, run, result_json='"done"', now=NOW + 10)
    assert res.kind == "requeued" and res.history_id is not None
    assert history_statuses(conn, task_id) == ["completed"]
    row = active_row(conn, task_id)
    assert row is not None
    # The latest payload, the most urgent priority asked for, a fresh run.
    assert (row["status"], row["payload"], row["priority"], row["requeue"]) == (
        "pending",
        '"v3"',
        50,
        0,
    )
    assert start(conn, task_id, NOW + 20).dispatch_count == 2


@pytest.mark.parametrize("running", [False, True])
def test_supersede_replaces_the_task_with_a_new_id(conn: sqlite3.Connection, running: bool) -> None:
    old = add(conn, "k", payload=1)
    if running:
        start(conn, old)
    (eff,) = submit(conn, new_task("k", payload=2, on_duplicate="supersede"), now=NOW + 1)
    assert eff.outcome is Outcome.SUPERSEDED and eff.replaced_id == old and eff.id != old
    assert eff.stop_running is running
    assert eff.old_record is not None and eff.old_record.id == old
    assert eff.record is not None and eff.record.payload == 2
    assert history_statuses(conn, old) == ["superseded"]
    assert active_row(conn, old) is None
    assert status(conn, eff.id) == "pending"


def test_supersede_cancels_the_old_tasks_children_and_moves_its_dependents(
    conn: sqlite3.Connection,
) -> None:
    old = add(conn, "parent")
    child = add(conn, "child", parent_id=old)
    waiter = add(conn, "waiter", depends_on=[old])
    (eff,) = submit(conn, new_task("parent", payload=2, on_duplicate="supersede"))
    assert [(c.record.id, c.reason, c.was) for c in eff.cancelled] == [
        (child, "superseded", Status.PENDING)
    ]
    assert history_statuses(conn, child) == ["cancelled"]
    # The waiter now waits for the new task.
    assert queries.dependencies(conn, eff.id)["dependents"] == [waiter]
    assert status(conn, waiter) == "blocked"


def test_supersede_fails_the_dependents_of_the_cancelled_children(
    conn: sqlite3.Connection,
) -> None:
    old = add(conn, "parent")
    child = add(conn, "child", parent_id=old)
    waiter = add(conn, "waiter", depends_on=[child])
    (eff,) = submit(conn, new_task("parent", payload=2, on_duplicate="supersede"))
    assert history_statuses(conn, child) == ["cancelled"]
    assert status(conn, waiter) == "dependency_failed"
    assert eff.cascade is not None
    assert [(r.id, dep) for r, dep in eff.cascade.dependency_failed] == [(waiter, child)]


def test_supersede_refuses_a_dependency_cycle(conn: sqlite3.Connection) -> None:
    old = add(conn, "a")
    b = add(conn, "b", depends_on=[old])
    with pytest.raises(InvalidParams) as err:
        # The new "a" would wait for b, which waits for "a".
        submit(conn, new_task("a", payload=2, depends_on=[b], on_duplicate="supersede"))
    assert err.value.field == "depends_on" and "cycle" in err.value.message


def test_a_batch_is_last_wins_on_equal_keys(conn: sqlite3.Connection) -> None:
    effs = submit(
        conn,
        new_task("k", payload="first"),
        new_task("other"),
        new_task("k", payload="last"),
    )
    assert [e.outcome for e in effs] == [Outcome.DUPLICATE, Outcome.INSERTED, Outcome.INSERTED]
    assert effs[0].id == effs[2].id
    assert effs[2].record is not None and effs[2].record.payload == "last"
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2


def test_a_bulk_batch_inserts_in_order_and_dedups_taken_keys(conn: sqlite3.Connection) -> None:
    taken = add(conn, "k3", priority=200)
    items = [new_task(f"k{i}", priority=100, payload=i) for i in range(10)]
    effs = submit(conn, *items)
    outcomes = [e.outcome for e in effs]
    assert outcomes[3] is Outcome.UPGRADED and effs[3].id == taken
    assert outcomes[:3] + outcomes[4:] == [Outcome.INSERTED] * 9
    ids = [e.id for e in effs]
    assert ids[:3] + ids[4:] == sorted(ids[:3] + ids[4:]) and taken < ids[0]
    for i, eff in enumerate(effs):
        rec = queries.get(conn, eff.id)
        assert rec is not None and rec.key == f"k{i}" and rec.priority == 100
        if i != 3:
            assert eff.record is not None and eff.record.payload == i
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 10


@pytest.mark.parametrize("batch", [1, 10], ids=["one-by-one", "bulk"])
def test_keys_whose_hashes_collide_are_still_told_apart(
    conn: sqlite3.Connection, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys are found by a 64-bit hash; make every key collide.
    for module in (submit_mod, queries):
        monkeypatch.setattr(module, "key_hash", lambda task_type, key: 42)
    first = add(conn, "k0")
    items = [new_task(f"k{i}") for i in range(batch)]
    items += [new_task("k0", task_type="d::other")]  # same key, another type
    effs = submit(conn, *items)
    assert effs[0].outcome is Outcome.DUPLICATE and effs[0].id == first
    assert [e.outcome for e in effs[1:]] == [Outcome.INSERTED] * batch
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == batch + 1
    for i in range(batch):
        where, rec = queries.lookup(conn, "d::work", f"k{i}")
        assert where == "active" and rec is not None and rec.key == f"k{i}"
    assert queries.lookup(conn, "d::work", "nope") == ("not_found", None)


@pytest.mark.parametrize("batch", [1, 10], ids=["one-by-one", "bulk"])
def test_delayed_and_paused_tasks_are_stored_as_such(conn: sqlite3.Connection, batch: int) -> None:
    pauses.pause_group(conn, "slow", NOW - 1, None)
    extra = [new_task(f"x{i}") for i in range(batch - 1)]
    effs = submit(
        conn,
        new_task("later", run_after=NOW + 1000),
        new_task("now", run_after=NOW),
        new_task("held", group="slow"),
        *extra,
    )
    rows = [active_row(conn, e.id) for e in effs[:3]]
    got = [(r["status"], r["delayed"], r["pause_reasons"]) for r in rows if r is not None]
    assert got == [("pending", 1, 0), ("pending", 0, 0), ("paused", 0, PAUSE_GROUP)]
    assert [e.record.status for e in effs[:3] if e.record is not None] == [
        Status.PENDING,
        Status.PENDING,
        Status.PAUSED,
    ]


def test_dependencies_are_checked_at_the_door_naming_the_item_at_fault(
    conn: sqlite3.Connection,
) -> None:
    active = add(conn, "active")
    done = add(conn, "done")
    failed = add(conn, "failed")
    finish(conn, start(conn, done))
    finish(conn, start(conn, failed), "failed", error="boom")

    (eff,) = submit(conn, new_task("w1", depends_on=[active, done]))
    assert status(conn, eff.id) == "blocked"
    assert queries.dependencies(conn, active)["dependents"] == [eff.id]
    (eff,) = submit(conn, new_task("w2", depends_on=[done]))
    assert status(conn, eff.id) == "pending"  # completed: satisfied
    (eff,) = submit(conn, new_task("w3", depends_on=[failed], on_dep_failure="ignore"))
    assert status(conn, eff.id) == "pending"

    with pytest.raises(InvalidParams, match="already ended as failed") as err:
        submit(conn, new_task("w4", depends_on=[failed]))
    assert err.value.field == "depends_on"
    # In a batch, the error names the item.
    with pytest.raises(InvalidParams, match="no task with id 999") as err:
        submit(conn, new_task("a"), new_task("b", depends_on=[999]))
    assert err.value.field == "tasks[1].depends_on"
    with pytest.raises(InvalidParams) as err:
        submit_mod.submit(conn, [new_task("c", depends_on=[999])], NOW, positions=[7])
    assert err.value.field == "tasks[7].depends_on"


def test_what_resolve_submission_builds_is_accepted_and_deduped_by_payload(
    conn: sqlite3.Connection,
) -> None:
    def noop(payload: Any, ctx: Any) -> None:
        return None

    d = Domain("files")
    d.register("hash", noop, tags={"kind": "hash"})
    reg = TypeRegistry([d])
    cfg = SchedulerConfig()

    def resolved(payload: Any, priority: str | None = None) -> NewTask:
        sub = Submission(task_type="files::hash", payload=payload, priority=priority)
        return resolve_submission(sub, reg, cfg, NOW)

    (a,) = submit(conn, resolved({"path": "/x", "n": 1}))
    (b,) = submit(conn, resolved({"n": 1, "path": "/x"}))  # the same canonical payload
    (c,) = submit(conn, resolved({"path": "/y"}))
    (d_,) = submit(conn, resolved({"path": "/y"}, priority="realtime"))
    assert (a.outcome, b.outcome, c.outcome, d_.outcome) == (
        Outcome.INSERTED,
        Outcome.DUPLICATE,
        Outcome.INSERTED,
        Outcome.UPGRADED,
    )
    assert b.id == a.id and d_.id == c.id
    rec = queries.get(conn, a.id)
    assert rec is not None and rec.domain == "files" and dict(rec.tags) == {"kind": "hash"}
