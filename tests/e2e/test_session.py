"""Session basics over stdio: the ready line, session.hello, sidecar.info, sidecar.shutdown."""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import Spawn
from tests.e2e.harness import SidecarProcess, error_field, error_of, run_to_exit

DEMO_TYPES = {"demo::sleep", "demo::fail", "demo::io", "demo::fanout", "demo::echo"}


async def test_ready_line_is_first_and_describes_the_sidecar(sidecar: SidecarProcess) -> None:
    r = sidecar.ready
    assert r["protocol"] == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", r["version"]), r
    assert r["pid"] == sidecar.pid
    assert r["transports"] == {"stdio": True, "ws": None}
    assert r["db_path"].endswith("x.db")
    assert set(r["task_types"]) >= DEMO_TYPES


async def test_ready_line_with_ws_carries_url_and_token(ws_sidecar: SidecarProcess) -> None:
    ws = ws_sidecar.ready["transports"]["ws"]
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", ws["url"]), ws
    assert isinstance(ws["token"], str) and len(ws["token"]) >= 16
    assert ws_sidecar.ready["transports"]["stdio"] is True


async def test_hello_over_stdio_answers_without_checking_the_token(
    sidecar: SidecarProcess,
) -> None:
    res = await sidecar.result(
        "session.hello", {"token": "not-the-token", "protocol": 1, "client": "e2e/1"}
    )
    assert res["protocol"] == 1
    assert res["version"] == sidecar.ready["version"]
    assert isinstance(res["session"], str) and res["session"]
    # Without a token at all, too.
    assert (await sidecar.result("session.hello", {"protocol": 1}))["protocol"] == 1


async def test_hello_with_an_unsupported_protocol_is_invalid_params(
    sidecar: SidecarProcess,
) -> None:
    resp = await sidecar.error("session.hello", {"protocol": 2, "client": "e2e/1"})
    assert error_of(resp) == (-32602, "invalid_params")
    assert error_field(resp) == "protocol"


async def test_sidecar_info(sidecar: SidecarProcess) -> None:
    info = await sidecar.result("sidecar.info")
    assert info["protocol"] == 1
    assert info["version"] == sidecar.ready["version"]
    assert info["db_path"] == sidecar.ready["db_path"]
    assert info["transports"] == {"stdio": True, "ws": None}
    types = {t["task_type"]: t for t in info["task_types"]}
    assert set(types) >= DEMO_TYPES
    for name in DEMO_TYPES:
        t = types[name]
        assert t["domain"] == "demo"
        assert t["executor"] == "python"
        assert isinstance(t["config"], dict)
    assert isinstance(info["config"], dict)
    assert info["config"]["max_concurrency"] == 4


async def test_sidecar_info_shows_command_line_settings(spawn: Spawn) -> None:
    sc = await spawn("--max-concurrency", "2", "--drain-timeout-ms", "1234")
    cfg = (await sc.result("sidecar.info"))["config"]
    assert cfg["max_concurrency"] == 2
    assert cfg["drain_timeout_ms"] == 1234
    snap = await sc.result("scheduler.snapshot")
    assert snap["max_concurrency"] == 2


async def test_sidecar_shutdown_graceful_answers_then_exits(sidecar: SidecarProcess) -> None:
    # The exit code is checked in test_lifecycle.test_exit_code_0_when_stdin_stays_open.
    await sidecar.subscribe()
    assert await sidecar.result("sidecar.shutdown", {}) == {}
    ev = await sidecar.wait_event(lambda e: e["kind"] == "shutdown")
    assert ev["mode"] == "graceful"
    await sidecar.wait_exit()
    assert not sidecar.bad_lines


async def test_sidecar_shutdown_hard_answers_then_exits_promptly(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::sleep", {"ms": 5000})
    await sidecar.wait_task_event(tid, "dispatched")
    assert await sidecar.result("sidecar.shutdown", {"mode": "hard"}) == {}
    ev = await sidecar.wait_event(lambda e: e["kind"] == "shutdown")
    assert ev["mode"] == "hard"
    await sidecar.wait_exit(timeout=4)


async def test_help_exits_0() -> None:
    done = await run_to_exit("--help")
    assert done.code == 0
    # The sidecar keeps stdout for protocol messages, so help may go to either stream.
    text = done.stdout.decode() + done.stderr
    assert "--db" in text and "--ws" in text and "--demo" in text


async def test_stdout_carries_protocol_messages_only(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    tid = await sidecar.submit("demo::sleep", {"ms": 50, "steps": 5})
    await sidecar.wait_done(tid)
    await sidecar.send_raw(b"garbage\n")
    await sidecar.wait_other(lambda m: m.get("error", {}).get("code") == -32700)
    assert await sidecar.shutdown() == 0
    assert sidecar.bad_lines == []
    for msg in sidecar.inbox.all:
        assert msg["jsonrpc"] == "2.0", msg


async def test_pipelined_requests_are_all_answered_and_correlated_by_id(
    sidecar: SidecarProcess,
) -> None:
    ids: list[object] = []
    lines = []
    for i in range(60):
        rid: object = i + 1000 if i % 2 else f"req-{i}"
        ids.append(rid)
        if i % 3 == 0:
            msg = {"jsonrpc": "2.0", "id": rid, "method": "task.get", "params": {"id": 10**9}}
        else:
            msg = {"jsonrpc": "2.0", "id": rid, "method": "sidecar.info"}
        lines.append(json.dumps(msg))
    # A notification (no id) is never answered, not even an unknown one.
    lines.append(json.dumps({"jsonrpc": "2.0", "method": "sidecar.info"}))
    lines.append(json.dumps({"jsonrpc": "2.0", "method": "no.such.notification", "params": {}}))
    await sidecar.send_raw("\n".join(lines).encode() + b"\n")

    def answered() -> list[dict[str, object]] | None:
        got = [m for m in sidecar.inbox.other if m.get("id") in ids]
        return got if len(got) == len(ids) else None

    got = await sidecar.inbox.wait_for(answered, 10, "60 answers")
    by_id = {m["id"]: m for m in got}
    assert set(by_id) == set(ids)
    for i, rid in enumerate(ids):
        if i % 3 == 0:
            assert error_of(by_id[rid])[0] == -32002
        else:
            assert by_id[rid]["result"]["protocol"] == 1
    await sidecar.result("sidecar.info")
    assert len([m for m in sidecar.inbox.other if m.get("id") not in ids]) == 0
