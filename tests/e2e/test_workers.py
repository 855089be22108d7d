"""Remote workers over WebSocket (protocol section 8)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.conftest import WsConnect
from tests.e2e.harness import SidecarProcess, WsClient, error_field, error_of

RW = {"task_type": "rw::echo", "config": {}}


async def register(ws: WsClient, *types: Any, concurrency: int | None = None) -> str:
    params: dict[str, Any] = {"task_types": list(types or [RW])}
    if concurrency is not None:
        params["concurrency"] = concurrency
    return str((await ws.result("worker.register", params))["worker"])


async def executor_of(sc: SidecarProcess, task_type: str) -> str:
    info = await sc.result("sidecar.info")
    return str({t["task_type"]: t for t in info["task_types"]}[task_type]["executor"])


async def test_worker_executes_reports_progress_and_io_and_completes(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc, encoding=encoding)
    wid = await register(worker, concurrency=2)
    assert wid
    assert await executor_of(sc, "rw::echo") == "worker"
    await sc.subscribe(task_types=["rw::echo"], progress_interval_ms=0)
    tid = await sc.submit("rw::echo", {"file": "a.txt"}, label="upload a", tags={"k": "v"})
    taken: set[Any] = set()
    req = await worker.next_request(taken=taken)
    assert isinstance(req["id"], str) and req["id"].startswith("s-")
    p = req["params"]
    assert p["worker"] == wid and p["attempt"] == 1
    task = p["task"]
    assert task["id"] == tid and task["task_type"] == "rw::echo" and task["domain"] == "rw"
    assert task["payload"] == {"file": "a.txt"} and task["label"] == "upload a"
    assert task["tags"] == {"k": "v"}
    dispatched = await sc.wait_task_event(tid, "dispatched")
    assert dispatched["attempt"] == 1
    assert (await sc.result("task.get", {"id": tid}))["status"] == "running"

    await worker.notify("worker.progress", {"task_id": tid, "percent": 0.5, "message": "half"})
    ev = await sc.wait_task_event(tid, "progress")
    assert ev["percent"] == 0.5 and ev["message"] == "half" and ev["reported"] is True
    snap = await sc.result("scheduler.snapshot")
    assert [(g["task_id"], g["percent"]) for g in snap["progress"]] == [(tid, 0.5)]
    await worker.notify(
        "worker.io", {"task_id": tid, "disk_read": 1000, "disk_write": 10, "net_tx": 2000}
    )
    await worker.notify("worker.progress", {"task_id": tid, "percent": 1.0})
    await sc.wait_event(lambda e: e.get("task_id") == tid and e.get("percent") == 1.0)
    await worker.respond(req["id"], {"result": {"etag": "abc", "n": [1, 2]}})
    done = await sc.wait_done(tid)
    assert done["kind"] == "completed" and done["result"] == {"etag": "abc", "n": [1, 2]}
    rec = await sc.result("task.get", {"id": tid})
    assert rec["status"] == "completed" and rec["result"] == {"etag": "abc", "n": [1, 2]}
    assert rec["actual_io"] == {"disk_read": 1000, "disk_write": 10, "net_rx": 0, "net_tx": 2000}
    assert set(worker.frame_types) == {"binary" if encoding == "msgpack" else "text"}


async def test_worker_concurrency_limits_outstanding_requests(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc)
    submitter = await ws_connect(sc, encoding="json")
    await register(worker, concurrency=2)
    await submitter.subscribe(kinds=["dispatched", "completed"])
    ids = [await submitter.submit("rw::echo", i) for i in range(3)]
    taken: set[Any] = set()
    first = await worker.next_request(taken=taken)
    second = await worker.next_request(taken=taken)
    got = {first["params"]["task"]["id"], second["params"]["task"]["id"]}
    assert got <= set(ids) and len(got) == 2
    snap = await sc.result("scheduler.snapshot")
    assert len(snap["running"]) == 2 and snap["pending_count"] == 1
    (third_id,) = set(ids) - got
    assert (await sc.result("task.get", {"id": third_id}))["status"] == "pending"
    await worker.respond(first["id"], {"result": "one"})
    third = await worker.next_request(taken=taken)
    assert third["params"]["task"]["id"] == third_id
    await worker.respond(second["id"], {"result": "two"})
    await worker.respond(third["id"], {"result": "three"})
    results = {}
    for t in ids:
        results[t] = (await submitter.wait_done(t))["result"]
    assert sorted(results.values()) == ["one", "three", "two"]


async def test_worker_error_answers_fail_the_task(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc)
    await register(worker)
    await sc.subscribe(task_types=["rw::echo"])
    taken: set[Any] = set()
    # Not retryable: failed at once.
    tid = await sc.submit("rw::echo", "permanent")
    req = await worker.next_request(taken=taken)
    await worker.respond_error(req["id"], -32010, "x", {"retryable": False})
    ev = await sc.wait_done(tid)
    assert ev["kind"] == "failed"
    assert ev["error"] == "x" and ev["retryable"] is False and ev["will_retry"] is False
    rec = await sc.result("task.get", {"id": tid})
    assert rec["status"] == "failed" and rec["last_error"] == "x"
    # Retryable: the worker gets attempt 2, then completes it.
    tid2 = await sc.submit("rw::echo", "flaky", retry={"max_retries": 2, "base_ms": 0})
    req = await worker.next_request(taken=taken)
    assert req["params"]["attempt"] == 1
    await worker.respond_error(req["id"], -32010, "try again", {"retryable": True})
    failed = await sc.wait_task_event(tid2, "failed")
    assert failed["will_retry"] is True and failed["error"] == "try again"
    req = await worker.next_request(taken=taken)
    assert req["params"]["attempt"] == 2 and req["params"]["task"]["id"] == tid2
    await worker.respond(req["id"], {"result": "ok"})
    assert (await sc.wait_done(tid2))["result"] == "ok"
    assert (await sc.result("task.get", {"id": tid2}))["retry_count"] == 1


async def test_a_worker_that_disconnects_gives_its_task_to_another_worker(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    sc = ws_sidecar
    first = await ws_connect(sc, encoding=encoding)
    await register(first)
    await sc.subscribe(task_types=["rw::echo"])
    tid = await sc.submit("rw::echo", "survivor")
    req = await first.next_request(taken=set())
    assert req["params"]["task"]["id"] == tid
    await first.close()
    rec = await sc.wait_status(tid, "pending")
    assert rec["retry_count"] == 0
    assert await executor_of(sc, "rw::echo") == "none"
    second = await ws_connect(sc, encoding=encoding)
    await register(second, "rw::echo")
    req = await second.next_request(taken=set())
    assert req["params"]["task"]["id"] == tid
    assert req["params"]["attempt"] == 1
    await second.respond(req["id"], {"result": "second worker"})
    done = await sc.wait_done(tid)
    assert done["kind"] == "completed" and done["result"] == "second worker"
    assert (await sc.result("task.get", {"id": tid}))["retry_count"] == 0
    assert not [e for e in sc.events if e.get("task_id") == tid and e["kind"] == "failed"]


async def test_tasks_without_a_live_worker_wait_in_pending(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc)
    wid = await register(worker)
    await sc.result("scheduler.pause")
    await sc.subscribe(task_types=["rw::echo"])
    tid = await sc.submit("rw::echo", "waits")
    assert await worker.result("worker.unregister", {"worker": wid}) == {}
    # A task of it is queued: the inline type stays declared, with no executor.
    assert await executor_of(sc, "rw::echo") == "none"
    await sc.result("scheduler.resume")
    # Other work still runs meanwhile, and the remote task is still pending afterwards.
    echo = await sc.submit("demo::echo", "meanwhile")
    await sc.wait_status(echo, "completed")
    assert (await sc.result("task.get", {"id": tid}))["status"] == "pending"
    assert worker.inbox.requests == []
    await register(worker, "rw::echo")
    req = await worker.next_request(taken=set())
    assert req["params"]["task"]["id"] == tid
    await worker.respond(req["id"], {"result": None})
    assert (await sc.wait_done(tid))["kind"] == "completed"


async def test_an_inline_type_leaves_with_its_last_worker_when_nothing_is_queued(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    sc = ws_sidecar
    a, b = await ws_connect(sc), await ws_connect(sc)
    gone = {"task_type": "rw::gone", "config": {}}
    await register(a, gone)
    await register(b, gone)
    await a.close()
    assert await executor_of(sc, "rw::gone") == "worker", "b still serves it"
    await b.close()

    async def declared() -> bool:
        info = await sc.result("sidecar.info")
        return any(t["task_type"] == "rw::gone" for t in info["task_types"])

    deadline = asyncio.get_running_loop().time() + 10
    while await declared():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    resp = await sc.error("task.submit", {"task_type": "rw::gone"})
    assert error_of(resp) == (-32003, "unknown_task_type")


async def test_cancelling_a_running_remote_task_sends_worker_cancel(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc, encoding=encoding)
    await register(worker)
    await sc.subscribe(task_types=["rw::echo"])
    tid = await sc.submit("rw::echo", "long")
    req = await worker.next_request(taken=set())
    assert await sc.result("task.cancel", {"id": tid}) == {"cancelled": True}
    note = await worker.wait_notification("worker.cancel")
    assert note["params"] == {"task_id": tid, "reason": "cancelled"}
    assert "id" not in note
    await worker.respond_error(req["id"], -32010, "cancelled by request")
    await sc.wait_task_event(tid, "cancelled")
    rec = await sc.result("task.get", {"id": tid})
    assert rec["status"] == "cancelled"
    # The slot is free again.
    t2 = await sc.submit("rw::echo", "next")
    req2 = await worker.next_request(taken={req["id"]})
    assert req2["params"]["task"]["id"] == t2


async def test_worker_spawn_child(ws_sidecar: SidecarProcess, ws_connect: WsConnect) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc)
    await register(worker)
    await sc.subscribe()
    parent = await sc.submit("rw::echo", "parent")
    req = await worker.next_request(taken=set())
    child = await worker.result(
        "worker.spawn_child",
        {
            "task_id": parent,
            "task_type": "demo::sleep",
            "payload": {"ms": 200, "steps": 2},
            "label": "child",
        },
    )
    assert child["outcome"] == "inserted"
    crec = await sc.result("task.get", {"id": child["id"]})
    assert crec["parent_id"] == parent and crec["label"] == "child"
    # parent_id is implied and may not be given.
    resp = await worker.error(
        "worker.spawn_child",
        {"task_id": parent, "task_type": "demo::echo", "payload": 1, "parent_id": parent},
    )
    assert error_of(resp)[0] == -32602 and error_field(resp) == "parent_id"
    # Only for a task running on this connection's worker.
    other = await ws_connect(sc)
    resp = await other.error(
        "worker.spawn_child", {"task_id": parent, "task_type": "demo::echo", "payload": 2}
    )
    assert error_of(resp)[0] == -32602 and error_field(resp) == "task_id"
    await worker.respond(req["id"], {"result": "parent done"})
    await sc.wait_task_event(parent, "waiting")
    done = await sc.wait_done(parent)
    assert done["kind"] == "completed"
    child_done = await sc.wait_done(child["id"])
    assert child_done["kind"] == "completed" and child_done["seq"] < done["seq"]


async def test_register_errors(ws_sidecar: SidecarProcess, ws_connect: WsConnect) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc)
    # An undeclared type is the contract's unknown_task_type, as task.submit says.
    resp = await worker.error("worker.register", {"task_types": ["rw::undeclared"]})
    assert error_of(resp) == (-32003, "unknown_task_type"), resp
    assert error_field(resp) == "task_types[0]", resp
    cases: list[tuple[dict[str, Any], str]] = [
        ({"task_types": ["demo::echo"]}, "task_types"),
        ({"task_types": []}, "task_types"),
        ({"task_types": [RW, RW]}, "task_types"),
        ({"task_types": [RW], "concurrency": 0}, "concurrency"),
        ({"task_types": [{"task_type": "rw::x", "config": {"priority": "asap"}}]}, "task_types"),
        ({"task_types": [RW], "concurency": 2}, "concurency"),
    ]
    for params, field in cases:
        resp = await worker.error("worker.register", params)
        assert error_of(resp)[0] == -32602, (params, resp)
        assert (error_field(resp) or "").startswith(field), (params, resp)
    # Another connection cannot unregister this one's worker.
    wid = await register(worker)
    thief = await ws_connect(sc)
    resp = await thief.error("worker.unregister", {"worker": wid})
    assert error_of(resp)[0] == -32002
    assert await executor_of(sc, "rw::echo") == "worker"


async def test_inline_declaration_with_config_applies_defaults(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    sc = ws_sidecar
    worker = await ws_connect(sc)
    await register(
        worker,
        {
            "task_type": "uploads::put",
            "config": {"priority": "high", "group": "s3://b", "expected_io": {"net_tx": 10}},
        },
    )
    info = {t["task_type"]: t for t in (await sc.result("sidecar.info"))["task_types"]}
    assert info["uploads::put"]["executor"] == "worker"
    assert info["uploads::put"]["config"]["priority"] == 64
    tid = await sc.submit("uploads::put", {"f": 1})
    req = await worker.next_request(taken=set())
    task = req["params"]["task"]
    assert task["id"] == tid and task["priority"] == 64 and task["group"] == "s3://b"
    assert task["expected_io"]["net_tx"] == 10
    await worker.respond(req["id"], {"result": 1})
    await sc.wait_status(tid, "completed")
