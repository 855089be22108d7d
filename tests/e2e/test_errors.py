"""Every error code of protocol section 2 that a client can trigger from outside.

(-32603 internal_error and -32007 storage_error need fault injection and are
not exercised here; -32001 is covered with the WebSocket tests.)
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import Spawn
from tests.e2e.harness import Pred, SidecarProcess, error_field, error_of


def _is_error(code: int) -> Pred:
    return lambda m: (m.get("error") or {}).get("code") == code


async def test_parse_error_on_a_bad_json_line_and_the_sidecar_keeps_reading(
    sidecar: SidecarProcess,
) -> None:
    await sidecar.send_raw(b"{this is not json\n")
    resp = await sidecar.wait_other(_is_error(-32700))
    assert resp["id"] is None
    assert error_of(resp) == (-32700, "parse_error")
    # Invalid UTF-8 is a parse error too.
    n = len(sidecar.inbox.other)
    await sidecar.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}\n')
    await sidecar.inbox.wait_for(lambda: len(sidecar.inbox.other) > n, 10, "a second error")
    assert error_of(sidecar.inbox.other[n]) == (-32700, "parse_error")
    assert (await sidecar.result("sidecar.info"))["protocol"] == 1


INVALID_REQUESTS = [
    {"jsonrpc": "2.0"},
    {"jsonrpc": "1.0", "id": 5, "method": "sidecar.info"},
    {"id": 5, "method": "sidecar.info"},
    {"jsonrpc": "2.0", "id": 5, "method": 42},
    {"jsonrpc": "2.0", "id": 5, "method": "sidecar.info", "parms": {}},
    [{"jsonrpc": "2.0", "id": 5, "method": "sidecar.info"}],
    "just a string",
]


async def test_invalid_request(sidecar: SidecarProcess) -> None:
    for message in INVALID_REQUESTS:
        n = len(sidecar.inbox.other)
        await sidecar.send_raw(json.dumps(message).encode() + b"\n")
        resp = await sidecar.inbox.next_other(n, 10, "an error")
        assert error_of(resp) == (-32600, "invalid_request"), (message, resp)
        assert (await sidecar.result("sidecar.info"))["protocol"] == 1


async def test_over_the_size_limit_is_invalid_request_and_the_sidecar_keeps_serving(
    spawn: Spawn,
) -> None:
    sc = await spawn("--max-message-bytes", "4096")
    big = {
        "jsonrpc": "2.0",
        "id": 99,
        "method": "task.submit",
        "params": {"task_type": "demo::echo", "payload": "x" * 6000},
    }
    await sc.send_raw(json.dumps(big).encode() + b"\n")
    resp = await sc.wait_other(_is_error(-32600))
    assert error_of(resp) == (-32600, "invalid_request")
    # Dropped: nothing was submitted, and the next request is served.
    listed = await sc.result("task.list", {})
    assert listed["total"] == 0
    res = await sc.result("task.submit", {"task_type": "demo::echo", "payload": "x" * 100})
    assert res["outcome"] == "inserted"


async def test_method_not_found(sidecar: SidecarProcess) -> None:
    resp = await sidecar.error("no.such_method", {})
    assert error_of(resp) == (-32601, "method_not_found")
    assert resp["id"] is not None


SUBMIT_INVALID_PARAMS: list[tuple[dict[str, object], str]] = [
    ({"task_type": "demo::echo", "payload": {}, "priorty": 3}, "priorty"),
    ({"task_type": "demo::echo", "priority": True}, "priority"),
    ({"task_type": "demo::echo", "priority": "urgent"}, "priority"),
    ({"task_type": "demo::echo", "priority": 256}, "priority"),
    ({"task_type": "demo::echo", "priority": -1}, "priority"),
    ({"task_type": "demo::echo", "ttl_ms": -5}, "ttl_ms"),
    ({"task_type": "demo::echo", "tags": {"a": 1}}, "tags"),
    ({"task_type": "demo::echo", "run_after_ms": "soon"}, "run_after_ms"),
    ({"task_type": "demo::echo", "run_after_ms": 10, "run_at": 10}, "run_at"),
    ({"task_type": "demo::echo", "on_duplicate": "replace"}, "on_duplicate"),
    ({"task_type": "demo::echo", "retry": {"max_retries": 1, "bakoff": "x"}}, "retry"),
    ({"task_type": "demo::echo", "expected_io": {"disk_read": -1}}, "expected_io"),
    ({"task_type": "demo::echo", "fail_fast": "yes"}, "fail_fast"),
    ({"task_type": "demo::echo", "depends_on": [999999]}, "depends_on"),
    ({"task_type": "demo::echo", "parent_id": 999999}, "parent_id"),
    ({"task_type": "Not A Type"}, "task_type"),
    ({"payload": 1}, "task_type"),
]


async def test_invalid_params_names_the_field(sidecar: SidecarProcess) -> None:
    for params, field in SUBMIT_INVALID_PARAMS:
        resp = await sidecar.error("task.submit", params)
        assert error_of(resp) == (-32602, "invalid_params"), (params, resp)
        got = error_field(resp) or ""
        assert got.startswith(field), (params, got, resp)
        if field == "priorty":
            # The message names the unknown member too.
            assert "priorty" in resp["error"]["message"]
    assert (await sidecar.result("task.list", {}))["total"] == 0


async def test_invalid_params_on_other_methods(sidecar: SidecarProcess) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("task.get", {"id": "seven"}, "id"),
        ("task.get", {}, "id"),
        ("task.list", {"limit": 5000}, "limit"),
        ("task.list", {"status": "completed"}, "status"),
        ("history.list", {"status": "pending"}, "status"),
        ("scheduler.set_max_concurrency", {"value": -1}, "value"),
        ("events.subscribe", {"kinds": ["completed"]}, "kinds"),
        ("events.subscribe", {"filter": {"kinds": ["finished"]}}, "filter.kinds"),
        ("sidecar.info", {"verbose": True}, "verbose"),
        ("sidecar.shutdown", {"mode": "soft"}, "mode"),
        ("task.set_priority", {"id": 1, "priority": 300}, "priority"),
    ]
    for method, params, field in cases:
        resp = await sidecar.error(method, params)
        assert error_of(resp) == (-32602, "invalid_params"), (method, resp)
        assert (error_field(resp) or "").startswith(field), (method, resp)
    # params given by position are refused too.
    await sidecar.send_raw(b'{"jsonrpc":"2.0","id":"pos","method":"task.get","params":[1]}\n')
    resp = await sidecar.inbox.wait_for(
        lambda: next((m for m in sidecar.inbox.all if m.get("id") == "pos"), None), 10, "answer"
    )
    assert error_of(resp)[0] == -32602


async def test_not_found(sidecar: SidecarProcess) -> None:
    resp = await sidecar.error("task.get", {"id": 424242})
    assert error_of(resp) == (-32002, "not_found")
    resp = await sidecar.error("events.unsubscribe", {"subscription": 4242})
    assert error_of(resp) == (-32002, "not_found")
    resp = await sidecar.error("dependencies.get", {"id": 424242})
    assert error_of(resp) == (-32002, "not_found")
    resp = await sidecar.error("worker.unregister", {"worker": "w404"})
    assert error_of(resp) == (-32002, "not_found")
    resp = await sidecar.error("domain.set_max_concurrency", {"domain": "nope", "value": 1})
    assert error_of(resp) == (-32002, "not_found")


async def test_unknown_task_type(sidecar: SidecarProcess) -> None:
    resp = await sidecar.error("task.submit", {"task_type": "nope::x", "payload": 1})
    assert error_of(resp) == (-32003, "unknown_task_type")
    resp = await sidecar.error("task.submit", {"task_type": "demo::nope"})
    assert error_of(resp) == (-32003, "unknown_task_type")


async def test_invalid_state_retrying_a_completed_task(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::echo", "done")
    assert (await sidecar.wait_done(tid))["kind"] == "completed"
    resp = await sidecar.error("task.retry_dead_letter", {"id": tid})
    assert error_of(resp) == (-32004, "invalid_state")
    # An active task is not dead-lettered either.
    pending = await sidecar.submit("demo::echo", "later", run_after_ms=60_000)
    resp = await sidecar.error("task.retry_dead_letter", {"id": pending})
    assert error_of(resp) == (-32004, "invalid_state")


async def test_payload_too_large(sidecar: SidecarProcess) -> None:
    resp = await sidecar.error(
        "task.submit", {"task_type": "demo::echo", "payload": "x" * (1024 * 1024 + 10)}
    )
    assert error_of(resp) == (-32005, "payload_too_large")
    assert error_field(resp) == "payload"
    # Just under the limit is fine.
    res = await sidecar.result(
        "task.submit", {"task_type": "demo::echo", "payload": "y" * (1024 * 1024 - 100)}
    )
    assert res["outcome"] == "inserted"


async def test_a_result_over_256_kib_fails_the_task(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe(kinds=["completed", "failed"])
    tid = await sidecar.submit("demo::echo", "r" * (300 * 1024))
    ev = await sidecar.wait_done(tid)
    assert ev["kind"] == "failed" and ev["will_retry"] is False
    assert "256 KiB" in ev["error"] or "262144" in ev["error"], ev["error"]
    rec = await sidecar.result("task.get", {"id": tid})
    assert rec["status"] == "failed" and rec["result"] is None
    # Just under the limit completes.
    ok = await sidecar.submit("demo::echo", "r" * (200 * 1024))
    assert (await sidecar.wait_done(ok))["kind"] == "completed"


async def test_shutting_down_while_draining(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::sleep", {"ms": 1500, "steps": 15})
    await sidecar.wait_task_event(tid, "dispatched")
    assert await sidecar.result("sidecar.shutdown", {"mode": "graceful"}) == {}
    await sidecar.wait_event(lambda e: e["kind"] == "shutdown")
    resp = await sidecar.error("task.submit", {"task_type": "demo::echo", "payload": 1})
    assert error_of(resp) == (-32006, "shutting_down")
    resp = await sidecar.error("task.list", {})
    assert error_of(resp) == (-32006, "shutting_down")
    # The running task drains to completion, then the process exits (the exit
    # code is checked in test_lifecycle).
    done = await sidecar.wait_done(tid)
    assert done["kind"] == "completed"
    await sidecar.wait_exit()
