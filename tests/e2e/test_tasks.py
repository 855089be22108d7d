"""Task methods (protocol section 5): submit and every submit param, batches, queries, control."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.harness import SidecarProcess, error_field, error_of

RECORD_FIELDS = {
    "id",
    "task_type",
    "domain",
    "key",
    "label",
    "priority",
    "effective_priority",
    "status",
    "payload",
    "group",
    "tags",
    "parent_id",
    "retry_count",
    "max_retries",
    "last_error",
    "created_at",
    "started_at",
    "run_after",
    "expires_at",
    "depends_on",
    "progress",
    "expected_io",
}
HISTORY_FIELDS = {"history_id", "finished_at", "duration_ms", "result", "actual_io"}
EVENT_HEADER = {
    "subscription",
    "seq",
    "at",
    "kind",
    "task_id",
    "task_type",
    "domain",
    "key",
    "label",
    "tags",
    "base_priority",
    "effective_priority",
    "parent_id",
}
LATER = 60_000  # run_after_ms that keeps a task pending for the whole test


def kinds_of(sc: SidecarProcess, task_id: int) -> list[str]:
    return [e["kind"] for e in sc.events if e.get("task_id") == task_id]


# -- task.submit ---------------------------------------------------------------


async def test_submit_with_every_plain_param_shows_in_the_record(sidecar: SidecarProcess) -> None:
    res = await sidecar.result(
        "task.submit",
        {
            "task_type": "demo::echo",
            "payload": {"n": 1, "s": "x"},
            "key": "photo-1",
            "label": "Photo one",
            "priority": "high",
            "group": "s3://bucket",
            "tags": {"album": "summer", "kind": "photo"},
            "ttl_ms": 600_000,
            "run_after_ms": LATER,
            "expected_io": {"disk_read": 100, "net_tx": 200},
            "retry": {"max_retries": 5, "backoff": "exponential", "base_ms": 10, "max_ms": 100},
            "fail_fast": True,
            "on_duplicate": "skip",
        },
    )
    assert res["outcome"] == "inserted" and isinstance(res["id"], int)
    rec = await sidecar.result("task.get", {"id": res["id"]})
    assert set(rec) >= RECORD_FIELDS, RECORD_FIELDS - set(rec)
    assert not HISTORY_FIELDS & set(rec), "an active record has no history fields"
    assert rec["id"] == res["id"]
    assert rec["task_type"] == "demo::echo" and rec["domain"] == "demo"
    assert rec["label"] == "Photo one"
    assert rec["priority"] == 64 and rec["effective_priority"] == 64
    assert rec["status"] == "pending"
    assert rec["payload"] == {"n": 1, "s": "x"}
    assert rec["group"] == "s3://bucket"
    assert rec["tags"] == {"album": "summer", "kind": "photo"}
    assert rec["parent_id"] is None
    assert rec["retry_count"] == 0 and rec["max_retries"] == 5
    assert rec["last_error"] is None
    assert rec["started_at"] is None
    assert rec["run_after"] == rec["created_at"] + LATER
    assert rec["expires_at"] == rec["created_at"] + 600_000
    assert rec["depends_on"] == []
    assert set(rec["progress"]) >= {"percent", "message", "reported", "extrapolated"}
    assert rec["expected_io"] == {"disk_read": 100, "disk_write": 0, "net_rx": 0, "net_tx": 200}
    assert abs(rec["created_at"] - time.time() * 1000) < 60_000
    found = await sidecar.result("task.lookup", {"task_type": "demo::echo", "key": "photo-1"})
    assert found["where"] == "active" and found["record"]["id"] == res["id"]


async def test_record_key_is_the_explicit_key(sidecar: SidecarProcess) -> None:
    tid = await sidecar.submit("demo::echo", 1, key="photo-1", run_after_ms=LATER)
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["key"] == "photo-1"


async def test_default_key_is_sha256_of_type_and_canonical_payload(
    sidecar: SidecarProcess,
) -> None:
    a = await sidecar.result(
        "task.submit",
        {"task_type": "demo::echo", "payload": {"a": 1, "b": 2}, "run_after_ms": LATER},
    )
    # Same payload with members in another order: the same canonical payload.
    b = await sidecar.result(
        "task.submit",
        {"task_type": "demo::echo", "payload": {"b": 2, "a": 1}, "run_after_ms": LATER},
    )
    c = await sidecar.result(
        "task.submit",
        {"task_type": "demo::echo", "payload": {"a": 1, "b": 3}, "run_after_ms": LATER},
    )
    assert a["outcome"] == "inserted"
    assert b == {"outcome": "duplicate", "id": a["id"]}
    assert c["outcome"] == "inserted" and c["id"] != a["id"]
    rec = await sidecar.result("task.get", {"id": a["id"]})
    assert len(rec["key"]) == 64 and all(ch in "0123456789abcdef" for ch in rec["key"])
    assert rec["label"] == "demo::echo"


PRIORITIES: list[tuple[Any, int]] = [
    ("realtime", 0),
    ("high", 64),
    ("normal", 128),
    ("background", 192),
    ("idle", 255),
    (0, 0),
    (7, 7),
    (255, 255),
]


async def test_priority_names_and_integers(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe(kinds=["submitted"])
    for i, (priority, expected) in enumerate(PRIORITIES):
        tid = await sidecar.submit("demo::echo", i, priority=priority, run_after_ms=LATER)
        rec = await sidecar.result("task.get", {"id": tid})
        assert rec["priority"] == expected and rec["effective_priority"] == expected, priority
        ev = await sidecar.wait_task_event(tid, "submitted")
        assert ev["base_priority"] == expected and ev["outcome"] == "inserted"
    listed = await sidecar.result("task.list", {})
    assert all(isinstance(t["priority"], int) for t in listed["tasks"])
    # Without a priority (and no type or domain default): normal.
    tid = await sidecar.submit("demo::echo", "default", run_after_ms=LATER)
    assert (await sidecar.result("task.get", {"id": tid}))["priority"] == 128


async def test_duplicate_and_upgraded_outcomes(sidecar: SidecarProcess) -> None:
    base = {"task_type": "demo::echo", "payload": 1, "key": "k", "run_after_ms": LATER}
    first = await sidecar.result("task.submit", {**base, "priority": "normal"})
    assert first["outcome"] == "inserted"
    lower = await sidecar.result("task.submit", {**base, "priority": "idle"})
    assert lower == {"outcome": "duplicate", "id": first["id"]}
    higher = await sidecar.result("task.submit", {**base, "priority": "high"})
    assert higher == {"outcome": "upgraded", "id": first["id"]}
    assert (await sidecar.result("task.get", {"id": first["id"]}))["priority"] == 64
    # The same key on another type is another task.
    other = await sidecar.result("task.submit", {**base, "task_type": "demo::sleep"})
    assert other["outcome"] == "inserted" and other["id"] != first["id"]


async def test_requeued_runs_again_under_the_same_id(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe(kinds=["dispatched", "completed"])
    tid = await sidecar.submit("demo::sleep", {"ms": 400, "steps": 4}, key="sync")
    await sidecar.wait_task_event(tid, "dispatched")
    res = await sidecar.result(
        "task.submit",
        {"task_type": "demo::sleep", "payload": {"ms": 10, "result": "second"}, "key": "sync"},
    )
    assert res == {"outcome": "requeued", "id": tid}
    done = await sidecar.wait_count(
        lambda e: e.get("task_id") == tid and e["kind"] == "completed", 2
    )
    assert [e["result"] for e in done] == [{"slept_ms": 400}, "second"]
    hist = await sidecar.result("history.list", {"task_type": "demo::sleep", "key": "sync"})
    assert hist["total"] == 2
    assert {t["id"] for t in hist["tasks"]} == {tid}
    assert len({t["history_id"] for t in hist["tasks"]}) == 2
    latest = await sidecar.result("task.get", {"id": tid})
    assert latest["status"] == "completed" and latest["result"] == "second"


async def test_supersede_a_running_task(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    old = await sidecar.submit("demo::sleep", {"ms": 5000, "steps": 50}, key="doc")
    await sidecar.wait_task_event(old, "dispatched")
    res = await sidecar.result(
        "task.submit",
        {
            "task_type": "demo::sleep",
            "payload": {"ms": 20, "steps": 1},
            "key": "doc",
            "on_duplicate": "supersede",
        },
    )
    assert res["outcome"] == "superseded" and res["id"] != old
    ev = await sidecar.wait_task_event(old, "superseded")
    assert ev["new_task_id"] == res["id"]
    assert (await sidecar.wait_done(res["id"]))["kind"] == "completed"
    rec = await sidecar.result("task.get", {"id": old})
    assert rec["status"] == "superseded"


async def test_supersede_a_pending_task_gives_a_new_id(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    old = await sidecar.submit("demo::echo", "v1", key="doc", run_after_ms=LATER)
    res = await sidecar.result(
        "task.submit",
        {
            "task_type": "demo::echo",
            "payload": "v2",
            "key": "doc",
            "run_after_ms": LATER,
            "on_duplicate": "supersede",
        },
    )
    assert res["outcome"] == "superseded"
    ev = await sidecar.wait_task_event(old, "superseded")
    assert res["id"] != old
    assert ev["new_task_id"] == res["id"]


async def test_supersede_a_pending_task_replaces_its_payload(sidecar: SidecarProcess) -> None:
    old = await sidecar.submit("demo::echo", "v1", key="doc", run_after_ms=LATER)
    res = await sidecar.result(
        "task.submit",
        {
            "task_type": "demo::echo",
            "payload": "v2",
            "key": "doc",
            "run_after_ms": LATER,
            "on_duplicate": "supersede",
        },
    )
    assert res["outcome"] == "superseded"
    active = await sidecar.result("task.list", {"task_type": "demo::echo"})
    assert active["total"] == 1 and active["tasks"][0]["payload"] == "v2"
    hist = await sidecar.result("history.list", {"status": "superseded"})
    assert hist["total"] == 1 and hist["tasks"][0]["payload"] == "v1"
    assert hist["tasks"][0]["id"] == old


async def test_run_after_ms_delays_dispatch(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe(kinds=["dispatched", "completed"])
    tid = await sidecar.submit("demo::echo", "later", run_after_ms=300)
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["run_after"] == rec["created_at"] + 300
    ev = await sidecar.wait_task_event(tid, "dispatched")
    assert ev["at"] >= rec["run_after"]
    assert (await sidecar.wait_done(tid))["result"] == "later"


async def test_run_at_delays_dispatch_until_the_timestamp(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe(kinds=["dispatched", "completed"])
    at = int(time.time() * 1000) + 400
    tid = await sidecar.submit("demo::echo", "at", run_at=at)
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["run_after"] == at
    assert rec["status"] == "pending"
    ev = await sidecar.wait_task_event(tid, "dispatched")
    assert ev["at"] >= at
    await sidecar.wait_done(tid)


async def test_ttl_expires_a_task_that_did_not_start_in_time(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::echo", "stale", ttl_ms=100, run_after_ms=300)
    ev = await sidecar.wait_done(tid)
    assert ev["kind"] == "expired"
    assert ev["age_ms"] >= 100
    assert "dispatched" not in kinds_of(sidecar, tid)
    assert (await sidecar.result("task.get", {"id": tid}))["status"] == "expired"


async def test_depends_on_blocks_and_is_reported(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    a = await sidecar.submit("demo::echo", "a", run_after_ms=LATER)
    b = await sidecar.submit("demo::echo", "b", depends_on=[a])
    rec = await sidecar.result("task.get", {"id": b})
    assert rec["status"] == "blocked" and rec["depends_on"] == [a]
    assert await sidecar.result("dependencies.get", {"id": b}) == {
        "depends_on": [a],
        "dependents": [],
    }
    assert await sidecar.result("dependencies.get", {"id": a}) == {
        "depends_on": [],
        "dependents": [b],
    }
    snap = await sidecar.result("scheduler.snapshot")
    assert snap["blocked_count"] == 1
    # A dependency that already completed is satisfied at once.
    c = await sidecar.submit("demo::echo", "c")
    await sidecar.wait_done(c)
    d = await sidecar.submit("demo::echo", "d", depends_on=[c])
    assert (await sidecar.wait_done(d))["kind"] == "completed"


async def test_depends_on_runs_after_the_dependency_completes(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    a = await sidecar.submit("demo::sleep", {"ms": 200, "steps": 2})
    b = await sidecar.submit("demo::echo", "b", depends_on=[a])
    assert (await sidecar.result("task.get", {"id": b}))["status"] == "blocked"
    await sidecar.wait_done(a)
    await sidecar.wait_task_event(b, "unblocked")
    done = await sidecar.wait_done(b)
    assert done["kind"] == "completed"


async def test_dependency_failure_ends_the_dependent(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    a = await sidecar.submit("demo::fail", {"times": -1, "retryable": False}, run_after_ms=200)
    b = await sidecar.submit("demo::echo", "b", depends_on=[a])
    await sidecar.wait_done(a)
    ev = await sidecar.wait_done(b)
    assert ev["kind"] == "dependency_failed"
    assert ev["failed_dependency"] == a


async def test_depends_on_a_failed_task_is_refused(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    a = await sidecar.submit("demo::fail", {"times": -1, "retryable": False})
    await sidecar.wait_done(a)
    resp = await sidecar.error(
        "task.submit", {"task_type": "demo::echo", "payload": 1, "depends_on": [a]}
    )
    assert error_of(resp)[0] == -32602 and error_field(resp) == "depends_on"
    ok = await sidecar.result(
        "task.submit",
        {
            "task_type": "demo::echo",
            "payload": 2,
            "depends_on": [a],
            "on_dependency_failure": "ignore",
        },
    )
    assert ok["outcome"] == "inserted"


async def test_retry_policy_retries_with_backoff_then_completes(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit(
        "demo::fail",
        {"times": 2, "message": "flaky"},
        retry={"max_retries": 3, "backoff": "exponential", "base_ms": 20, "max_ms": 1000},
    )
    done = await sidecar.wait_done(tid)
    assert done["kind"] == "completed" and done["result"] == {"attempts": 3}
    failed = [e for e in sidecar.events if e.get("task_id") == tid and e["kind"] == "failed"]
    assert [e["attempt"] for e in failed] == [1, 2]
    assert all(e["will_retry"] and e["retryable"] and e["error"] == "flaky" for e in failed)
    assert [e["retry_after_ms"] for e in failed] == [20, 40]
    dispatched = [
        e for e in sidecar.events if e.get("task_id") == tid and e["kind"] == "dispatched"
    ]
    assert [e["attempt"] for e in dispatched] == [1, 2, 3]
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["status"] == "completed" and rec["retry_count"] == 2


async def test_non_retryable_failure_fails_at_once(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::fail", {"times": -1, "retryable": False, "message": "no"})
    ev = await sidecar.wait_done(tid)
    assert ev["kind"] == "failed"
    assert ev["retryable"] is False and ev["will_retry"] is False and ev["error"] == "no"
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["status"] == "failed" and rec["last_error"] == "no" and rec["retry_count"] == 0


async def test_dead_letter_and_retry_dead_letter(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit(
        "demo::fail", {"times": -1}, retry={"max_retries": 1, "base_ms": 0}, tags={"t": "1"}
    )
    ev = await sidecar.wait_done(tid)
    assert ev["kind"] == "dead_lettered" and ev["retry_count"] == 1
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["status"] == "dead_letter"
    res = await sidecar.result("task.retry_dead_letter", {"id": tid})
    assert res["outcome"] == "inserted" and res["id"] != tid
    again = await sidecar.result("task.get", {"id": res["id"]})
    assert again["payload"] == {"times": -1} and again["tags"] == {"t": "1"}
    # A fresh task: its first run is attempt 1 (it fails again, as before).
    first = await sidecar.wait_task_event(res["id"], "dispatched")
    assert first["attempt"] == 1
    await sidecar.wait_done(res["id"])
    assert (await sidecar.result("task.get", {"id": tid}))["status"] == "dead_letter"
    resp = await sidecar.error("task.retry_dead_letter", {"id": 999_999})
    assert error_of(resp)[0] == -32002


async def test_parent_id_makes_the_parent_wait_for_its_child(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    parent = await sidecar.submit("demo::sleep", {"ms": 300, "steps": 3})
    await sidecar.wait_task_event(parent, "dispatched")
    child = await sidecar.submit("demo::sleep", {"ms": 800, "steps": 4}, parent_id=parent)
    crec = await sidecar.result("task.get", {"id": child})
    assert crec["parent_id"] == parent
    waiting = await sidecar.wait_task_event(parent, "waiting")
    assert waiting["children_count"] == 1
    assert (await sidecar.result("task.get", {"id": parent}))["status"] == "waiting"
    done = await sidecar.wait_done(parent)
    assert done["kind"] == "completed"
    child_done = await sidecar.wait_done(child)
    assert child_done["seq"] < done["seq"], "the parent completes after its child"
    assert child_done["parent_id"] == parent


async def test_fanout_children_and_finalize(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    parent = await sidecar.submit("demo::fanout", {"children": 3, "child_ms": 50})
    done = await sidecar.wait_done(parent)
    assert done["kind"] == "completed" and done["result"] == {"children": 3}
    children = {e["task_id"] for e in sidecar.events if e.get("parent_id") == parent}
    assert len(children) == 3
    for c in children:
        assert (await sidecar.result("task.get", {"id": c}))["status"] == "completed"


async def test_fail_fast_fails_the_parent_and_cancels_siblings(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    parent = await sidecar.submit(
        "demo::fanout", {"children": 3, "child_ms": 5000, "fail_index": 0}, fail_fast=True
    )
    started = time.monotonic()
    done = await sidecar.wait_done(parent)
    assert done["kind"] == "failed", done
    assert time.monotonic() - started < 4, "fail_fast must not wait for the 5 s siblings"
    cancelled = [
        e for e in sidecar.events if e.get("parent_id") == parent and e["kind"] == "cancelled"
    ]
    assert len(cancelled) == 2


async def test_cancel_cascades_to_children(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    parent = await sidecar.submit("demo::fanout", {"children": 2, "child_ms": 5000})
    await sidecar.wait_task_event(parent, "waiting")
    children = {e["task_id"] for e in sidecar.events if e.get("parent_id") == parent}
    assert len(children) == 2
    assert await sidecar.result("task.cancel", {"id": parent}) == {"cancelled": True}
    await sidecar.wait_task_event(parent, "cancelled")
    for c in children:
        await sidecar.wait_task_event(c, "cancelled")
        assert (await sidecar.result("task.get", {"id": c}))["status"] == "cancelled"


# -- task.submit_batch -------------------------------------------------------------


async def test_submit_batch_outcomes_in_order(sidecar: SidecarProcess) -> None:
    existing = await sidecar.submit("demo::echo", "old", key="e", run_after_ms=LATER)
    res = await sidecar.result(
        "task.submit_batch",
        {
            "tasks": [
                {"task_type": "demo::echo", "payload": 1, "run_after_ms": LATER},
                {"task_type": "demo::echo", "payload": "new", "key": "e", "run_after_ms": LATER},
                {
                    "task_type": "demo::sleep",
                    "payload": {"ms": 1},
                    "priority": "idle",
                    "run_after_ms": LATER,
                },
                {
                    "task_type": "demo::echo",
                    "payload": 2,
                    "key": "e",
                    "priority": "high",
                    "run_after_ms": LATER,
                },
            ]
        },
    )
    outs = res["outcomes"]
    assert len(outs) == 4
    assert outs[0]["outcome"] == "inserted"
    assert outs[2]["outcome"] == "inserted"
    # Equal keys within a batch: last wins (it upgrades the existing task).
    assert outs[3] == {"outcome": "upgraded", "id": existing}
    assert outs[1]["id"] == existing
    assert (await sidecar.result("task.list", {}))["total"] == 3
    assert await sidecar.result("task.submit_batch", {"tasks": []}) == {"outcomes": []}


async def test_submit_batch_is_one_transaction(sidecar: SidecarProcess) -> None:
    resp = await sidecar.error(
        "task.submit_batch",
        {
            "tasks": [
                {"task_type": "demo::echo", "payload": 1},
                {"task_type": "demo::echo", "payload": 2, "priority": 999},
            ]
        },
    )
    assert error_of(resp)[0] == -32602
    assert error_field(resp) == "tasks[1].priority"
    resp = await sidecar.error(
        "task.submit_batch",
        {"tasks": [{"task_type": "demo::echo", "payload": 1}, {"task_type": "nope::x"}]},
    )
    assert error_of(resp)[0] == -32003
    assert (await sidecar.result("task.list", {}))["total"] == 0
    assert (await sidecar.result("history.list", {}))["total"] == 0


# -- queries ---------------------------------------------------------------------------


async def test_task_get_active_then_history_record(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::sleep", {"ms": 300, "steps": 3})
    await sidecar.wait_task_event(tid, "progress")
    running = await sidecar.result("task.get", {"id": tid})
    assert running["status"] == "running" and running["started_at"] is not None
    assert running["progress"]["reported"] is True and running["progress"]["percent"] > 0
    await sidecar.wait_done(tid)
    rec = await sidecar.result("task.get", {"id": tid})
    assert set(rec) >= RECORD_FIELDS | HISTORY_FIELDS
    assert rec["id"] == tid and rec["status"] == "completed"
    assert rec["result"] == {"slept_ms": 300}
    assert rec["finished_at"] >= rec["started_at"]
    assert rec["duration_ms"] >= 250
    assert set(rec["actual_io"]) == {"disk_read", "disk_write", "net_rx", "net_tx"}


async def test_task_lookup(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    pending = await sidecar.submit("demo::echo", 1, key="p", run_after_ms=LATER)
    done = await sidecar.submit("demo::echo", 2, key="d")
    await sidecar.wait_done(done)
    a = await sidecar.result("task.lookup", {"task_type": "demo::echo", "key": "p"})
    assert a["where"] == "active" and a["record"]["id"] == pending
    h = await sidecar.result("task.lookup", {"task_type": "demo::echo", "key": "d"})
    assert h["where"] == "history" and h["record"]["id"] == done
    assert h["record"]["status"] == "completed"
    n = await sidecar.result("task.lookup", {"task_type": "demo::echo", "key": "zzz"})
    assert n == {"where": "not_found"}


async def test_task_list_filters_paging_and_total(sidecar: SidecarProcess) -> None:
    ids = []
    for i in range(7):
        ids.append(
            await sidecar.submit(
                "demo::echo" if i % 2 == 0 else "demo::sleep",
                {"i": i, "ms": 1},
                run_after_ms=LATER,
                group="g1" if i < 3 else "g2",
                tags={"album": f"a{i % 3}", "owner": "me"},
            )
        )
    everything = await sidecar.result("task.list", {})
    assert everything["total"] == 7
    assert [t["id"] for t in everything["tasks"]] == sorted(ids)
    page = await sidecar.result("task.list", {"limit": 3, "offset": 2})
    assert page["total"] == 7 and [t["id"] for t in page["tasks"]] == sorted(ids)[2:5]
    assert (await sidecar.result("task.list", {"limit": 0}))["tasks"] == []
    echo = await sidecar.result("task.list", {"task_type": "demo::echo"})
    assert echo["total"] == 4
    assert (await sidecar.result("task.list", {"domain": "demo"}))["total"] == 7
    assert (await sidecar.result("task.list", {"domain": "other"}))["total"] == 0
    assert (await sidecar.result("task.list", {"group": "g1"}))["total"] == 3
    assert (await sidecar.result("task.list", {"tags": {"album": "a0"}}))["total"] == 3
    both = await sidecar.result(
        "task.list", {"tags": {"album": "a0", "owner": "me"}, "group": "g2"}
    )
    assert {t["id"] for t in both["tasks"]} == {ids[3], ids[6]}
    assert (await sidecar.result("task.list", {"tag_prefix": "alb"}))["total"] == 7
    assert (await sidecar.result("task.list", {"status": "pending"}))["total"] == 7
    assert (await sidecar.result("task.list", {"status": ["running", "blocked"]}))["total"] == 0


async def test_task_cancel_pending_running_and_finished(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    pending = await sidecar.submit("demo::echo", 1, run_after_ms=LATER)
    assert await sidecar.result("task.cancel", {"id": pending}) == {"cancelled": True}
    ev = await sidecar.wait_task_event(pending, "cancelled")
    assert ev["reason"] == "cancelled"
    running = await sidecar.submit("demo::sleep", {"ms": 10_000, "steps": 100})
    await sidecar.wait_task_event(running, "dispatched")
    started = time.monotonic()
    assert await sidecar.result("task.cancel", {"id": running}) == {"cancelled": True}
    await sidecar.wait_task_event(running, "cancelled")
    assert (await sidecar.result("task.get", {"id": running}))["status"] == "cancelled"
    # The slot frees within a slice: another task runs promptly.
    nxt = await sidecar.submit("demo::echo", "next")
    await sidecar.wait_done(nxt)
    assert time.monotonic() - started < 3
    assert await sidecar.result("task.cancel", {"id": nxt}) == {"cancelled": False}
    assert await sidecar.result("task.cancel", {"id": pending}) == {"cancelled": False}
    resp = await sidecar.call("task.cancel", {"id": 999_999})
    assert resp.get("result") == {"cancelled": False} or error_of(resp)[0] == -32002


async def test_task_cancel_where(sidecar: SidecarProcess) -> None:
    a = await sidecar.submit("demo::echo", 1, run_after_ms=LATER, tags={"album": "x"})
    b = await sidecar.submit("demo::echo", 2, run_after_ms=LATER, tags={"album": "y"})
    c = await sidecar.submit(
        "demo::sleep", {"ms": 1}, run_after_ms=LATER, group="g", tags={"zone": "1"}
    )
    d = await sidecar.submit("demo::echo", 3, run_after_ms=LATER, tags={"album": "x"})
    res = await sidecar.result("task.cancel_where", {"tags": {"album": "x"}})
    assert sorted(res["cancelled"]) == sorted([a, d])
    res = await sidecar.result("task.cancel_where", {"group": "g"})
    assert res["cancelled"] == [c]
    res = await sidecar.result("task.cancel_where", {"tag_prefix": "zzz"})
    assert res["cancelled"] == []
    res = await sidecar.result(
        "task.cancel_where", {"task_type": "demo::echo", "status": ["pending"]}
    )
    assert res["cancelled"] == [b]
    e = await sidecar.submit("demo::echo", 4, run_after_ms=LATER)
    res = await sidecar.result("task.cancel_where", {"domain": "demo"})
    assert res["cancelled"] == [e]
    resp = await sidecar.error("task.cancel_where", {})
    assert error_of(resp)[0] == -32602
    assert (await sidecar.result("history.list", {"status": "cancelled"}))["total"] == 5


async def test_task_set_priority(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::echo", 1, run_after_ms=LATER)
    assert await sidecar.result("task.set_priority", {"id": tid, "priority": 3}) == {
        "updated": True
    }
    assert (await sidecar.result("task.get", {"id": tid}))["priority"] == 3
    assert await sidecar.result("task.set_priority", {"id": tid, "priority": "idle"}) == {
        "updated": True
    }
    assert (await sidecar.result("task.get", {"id": tid}))["priority"] == 255
    running = await sidecar.submit("demo::sleep", {"ms": 3000, "steps": 30})
    await sidecar.wait_task_event(running, "dispatched")
    assert await sidecar.result("task.set_priority", {"id": running, "priority": 0}) == {
        "updated": False
    }
    resp = await sidecar.error("task.set_priority", {"id": 999_999, "priority": 0})
    assert error_of(resp)[0] == -32002


async def test_history_list_filters_and_paging(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    ok = [await sidecar.submit("demo::echo", i) for i in range(4)]
    bad = await sidecar.submit("demo::fail", {"times": -1, "retryable": False}, key="bad")
    cancelled = await sidecar.submit("demo::echo", "c", run_after_ms=LATER)
    await sidecar.result("task.cancel", {"id": cancelled})
    for t in [*ok, bad]:
        await sidecar.wait_done(t)
    everything = await sidecar.result("history.list", {})
    assert everything["total"] == 6
    finished = [t["finished_at"] for t in everything["tasks"]]
    assert finished == sorted(finished, reverse=True), "newest first"
    assert all(set(t) >= HISTORY_FIELDS for t in everything["tasks"])
    completed = await sidecar.result("history.list", {"status": "completed"})
    assert completed["total"] == 4 and {t["id"] for t in completed["tasks"]} == set(ok)
    two = await sidecar.result("history.list", {"status": ["failed", "cancelled"]})
    assert {t["id"] for t in two["tasks"]} == {bad, cancelled}
    by_type = await sidecar.result("history.list", {"task_type": "demo::fail"})
    assert [t["id"] for t in by_type["tasks"]] == [bad]
    by_key = await sidecar.result("history.list", {"task_type": "demo::fail", "key": "bad"})
    assert [t["id"] for t in by_key["tasks"]] == [bad]
    page = await sidecar.result("history.list", {"limit": 2, "offset": 1})
    assert page["total"] == 6
    assert [t["history_id"] for t in page["tasks"]] == [
        t["history_id"] for t in everything["tasks"][1:3]
    ]


async def test_history_stats(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    ids = [
        await sidecar.submit("demo::io", {"read_bytes": 4096 * (i + 1), "write_bytes": 8192})
        for i in range(2)
    ]
    bad = await sidecar.submit("demo::io", {"read_bytes": -1})
    for t in [*ids, bad]:
        await sidecar.wait_done(t)
    stats = await sidecar.result("history.stats", {"task_type": "demo::io"})
    assert stats["count"] == 3
    assert stats["failure_rate"] == pytest.approx(1 / 3)
    assert stats["avg_read_bytes"] > 0 and stats["avg_write_bytes"] > 0
    assert stats["avg_duration_ms"] >= 0
    rec = await sidecar.result("task.get", {"id": ids[1]})
    assert rec["actual_io"]["disk_read"] == 8192 and rec["actual_io"]["disk_write"] == 8192
    empty = await sidecar.result("history.stats", {"task_type": "demo::sleep"})
    assert empty["count"] == 0


async def test_tags_values_and_keys(sidecar: SidecarProcess) -> None:
    for i in range(5):
        await sidecar.submit(
            "demo::echo",
            i,
            run_after_ms=LATER,
            tags={"album": "summer" if i < 3 else "winter", "owner": "me", "alpha": str(i)},
        )
    values = await sidecar.result("tags.values", {"key": "album"})
    assert values["values"] == [{"value": "summer", "count": 3}, {"value": "winter", "count": 2}]
    assert (await sidecar.result("tags.values", {"key": "album", "domain": "demo"}))[
        "values"
    ] == values["values"]
    assert (await sidecar.result("tags.values", {"key": "album", "domain": "other"}))[
        "values"
    ] == []
    assert (await sidecar.result("tags.values", {"key": "nope"}))["values"] == []
    keys = await sidecar.result("tags.keys", {"prefix": "al"})
    assert sorted(keys["keys"]) == ["album", "alpha"]
    assert sorted((await sidecar.result("tags.keys", {"prefix": ""}))["keys"]) == [
        "album",
        "alpha",
        "owner",
    ]
    assert (await sidecar.result("tags.keys", {"prefix": "al", "domain": "other"}))["keys"] == []
    assert (await sidecar.result("tags.keys", {"prefix": "%"}))["keys"] == []


async def test_task_events_carry_the_header(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe(progress_interval_ms=0)
    tid = await sidecar.submit(
        "demo::sleep", {"ms": 40, "steps": 2}, label="L", tags={"a": "b"}, priority=100
    )
    await sidecar.wait_done(tid)
    evs = [e for e in sidecar.events if e.get("task_id") == tid]
    assert [e["kind"] for e in evs] == [
        "submitted",
        "dispatched",
        "progress",
        "progress",
        "completed",
    ]
    for e in evs:
        assert set(e) >= EVENT_HEADER, EVENT_HEADER - set(e)
        assert e["task_type"] == "demo::sleep" and e["domain"] == "demo"
        assert e["label"] == "L" and e["tags"] == {"a": "b"}
        assert e["base_priority"] == 100 and e["effective_priority"] == 100
        assert e["parent_id"] is None
    assert evs[0]["outcome"] == "inserted"
    assert evs[1]["attempt"] == 1
    assert [e["percent"] for e in evs[2:4]] == [0.5, 1.0]
    assert all(e["reported"] is True and isinstance(e["message"], str) for e in evs[2:4])
    assert evs[4]["duration_ms"] >= 30 and evs[4]["result"] == {"slept_ms": 40}
