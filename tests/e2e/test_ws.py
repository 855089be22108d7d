"""The WebSocket transport (protocol sections 1 and 4), over MessagePack and JSON frames."""

from __future__ import annotations

import json
import socket
import time

import msgpack
import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import Spawn, WsConnect
from tests.e2e.harness import SidecarProcess, WsClient, child_env, error_of

FRAME = {"msgpack": "binary", "json": "text"}


def other(encoding: str) -> str:
    return "json" if encoding == "msgpack" else "msgpack"


def encode(msg: dict[str, object], encoding: str) -> bytes | str:
    if encoding == "msgpack":
        packed: bytes = msgpack.packb(msg, use_bin_type=True)
        return packed
    return json.dumps(msg)


async def test_hello_then_methods_in_either_encoding(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    ws = await ws_connect(ws_sidecar, encoding=encoding, hello=False)
    hello = await ws.hello(ws_sidecar.ws_token, client="e2e-test/1.0")
    assert hello["protocol"] == 1 and hello["version"] == ws_sidecar.ready["version"]
    assert isinstance(hello["session"], str) and hello["session"]
    info = await ws.result("sidecar.info")
    assert info["transports"]["ws"]["url"] == ws_sidecar.ws_url
    await ws.subscribe()
    tid = await ws.submit("demo::echo", {"unicode": "héllo ✓", "n": [1, 2.5, None, True]})
    done = await ws.wait_done(tid)
    assert done["result"] == {"unicode": "héllo ✓", "n": [1, 2.5, None, True]}
    assert set(ws.frame_types) == {FRAME[encoding]}
    assert ws.undecodable == []


async def test_a_request_before_hello_is_unauthorized_and_closes_4401(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    ws = await ws_connect(ws_sidecar, encoding=encoding, hello=False)
    resp = await ws.call("task.list", {})
    assert error_of(resp) == (-32001, "unauthorized")
    assert await ws.wait_closed() == 4401
    assert set(ws.frame_types) == {FRAME[encoding]}
    # Nothing leaked through: the sidecar is fine and has no task.
    assert (await ws_sidecar.result("task.list", {}))["total"] == 0


async def test_a_wrong_token_is_unauthorized_and_closes(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    right = ws_sidecar.ws_token
    assert right is not None
    for token in ("wrong-token", "", right + "x", None):
        ws = await ws_connect(ws_sidecar, encoding=encoding, hello=False)
        params: dict[str, object] = {"protocol": 1, "client": "e2e"}
        if token is not None:
            params["token"] = token
        resp = await ws.call("session.hello", params)
        assert error_of(resp) == (-32001, "unauthorized"), token
        assert await ws.wait_closed() == 4401
        assert set(ws.frame_types) == {FRAME[encoding]}


async def test_the_connection_answers_in_the_encoding_of_its_first_frame(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    ws = await ws_connect(ws_sidecar, encoding=encoding, hello=False)
    await ws.hello(ws_sidecar.ws_token)
    # A later frame in the other encoding is understood, but answered in the first one.
    fut = ws.inbox.expect("mixed")
    await ws.send_frame(
        encode({"jsonrpc": "2.0", "id": "mixed", "method": "sidecar.info"}, other(encoding))
    )
    resp = await fut
    assert resp["result"]["protocol"] == 1
    assert set(ws.frame_types) == {FRAME[encoding]}


async def test_a_foreign_origin_is_refused_with_403(ws_sidecar: SidecarProcess) -> None:
    for origin in (
        "https://evil.example",
        "http://localhost:3000",
        "http://127.0.0.1:9999",
        "null",
        "tauri://localhost.evil.example",
    ):
        with pytest.raises(InvalidStatus) as info:
            await WsClient.connect(ws_sidecar.ws_url, origin=origin)
        assert info.value.response.status_code == 403, origin


async def test_allowed_origins_and_no_origin_are_accepted(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    for origin in (None, "tauri://localhost", "http://tauri.localhost", "https://tauri.localhost"):
        ws = await ws_connect(ws_sidecar, encoding=encoding, origin=origin)
        assert (await ws.result("sidecar.info"))["protocol"] == 1, origin


async def test_allow_origin_flag_adds_an_origin(
    spawn: Spawn, ws_connect: WsConnect, encoding: str
) -> None:
    sc = await spawn("--ws", "--allow-origin", "http://127.0.0.1:9999")
    ws = await ws_connect(sc, encoding=encoding, origin="http://127.0.0.1:9999")
    assert (await ws.result("sidecar.info"))["protocol"] == 1
    # Still the defaults, and still nothing else.
    await ws_connect(sc, encoding=encoding, origin="tauri://localhost")
    with pytest.raises(InvalidStatus) as info:
        await WsClient.connect(sc.ws_url, origin="http://127.0.0.1:9998")
    assert info.value.response.status_code == 403


async def test_a_silent_client_is_closed_after_5_seconds(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    started = time.monotonic()
    silent = await ws_connect(ws_sidecar, hello=False)
    # A client that did say hello in time stays open.
    talker = await ws_connect(ws_sidecar)
    code = await silent.wait_closed(timeout=9)
    elapsed = time.monotonic() - started
    assert 4.0 <= elapsed < 8.0, elapsed
    assert code == 4401
    assert (await talker.result("sidecar.info"))["protocol"] == 1


async def test_parse_error_frame_keeps_the_connection(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    ws = await ws_connect(ws_sidecar, encoding=encoding)
    bad: bytes | str = b"\xc1\x00\x01" if encoding == "msgpack" else "{not json"
    await ws.send_frame(bad)
    resp = await ws.inbox.wait_for(
        lambda: next((m for m in ws.inbox.other if "error" in m), None), 10, "an error"
    )
    assert resp["id"] is None and error_of(resp) == (-32700, "parse_error")
    if encoding == "msgpack":
        # Valid MessagePack outside the JSON data model (a bin value) is refused too.
        n = len(ws.inbox.other)
        await ws.send_frame(
            msgpack.packb({"jsonrpc": "2.0", "id": 1, "method": b"x"}, use_bin_type=True)
        )
        await ws.inbox.wait_for(lambda: len(ws.inbox.other) > n, 10, "an error")
        assert error_of(ws.inbox.other[n])[0] == -32700
    assert (await ws.result("sidecar.info"))["protocol"] == 1
    assert set(ws.frame_types) == {FRAME[encoding]}


async def test_invalid_request_frame(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    ws = await ws_connect(ws_sidecar, encoding=encoding)
    await ws.send_frame(encode({"jsonrpc": "2.0", "id": 3}, encoding))
    resp = await ws.inbox.wait_for(
        lambda: next((m for m in ws.inbox.all if m.get("id") == 3), None), 10, "an error"
    )
    assert error_of(resp) == (-32600, "invalid_request")
    assert (await ws.result("sidecar.info"))["protocol"] == 1


async def test_a_frame_over_the_limit_is_refused_and_the_connection_stays(
    spawn: Spawn, ws_connect: WsConnect, encoding: str
) -> None:
    sc = await spawn("--ws", "--max-message-bytes", "4096")
    ws = await ws_connect(sc, encoding=encoding)
    big = {
        "jsonrpc": "2.0",
        "id": 77,
        "method": "task.submit",
        "params": {"task_type": "demo::echo", "payload": "z" * 6000},
    }
    await ws.send_frame(encode(big, encoding))
    resp = await ws.inbox.wait_for(
        lambda: next((m for m in ws.inbox.all if "error" in m), None), 10, "an error"
    )
    assert error_of(resp) == (-32600, "invalid_request")
    assert not ws.closed.is_set()
    assert (await ws.result("task.list", {}))["total"] == 0
    small = await ws.result("task.submit", {"task_type": "demo::echo", "payload": "z" * 100})
    assert small["outcome"] == "inserted"


async def test_taskmill_token_env_var(spawn: Spawn, ws_connect: WsConnect, encoding: str) -> None:
    sc = await spawn("--ws", env=child_env({"TASKMILL_TOKEN": "launcher-chosen-secret"}))
    assert sc.ready["transports"]["ws"]["token"] is None
    assert sc.ready["transports"]["ws"]["url"].startswith("ws://127.0.0.1:")
    ok = await ws_connect(sc, encoding=encoding, token="launcher-chosen-secret")
    assert (await ok.result("sidecar.info"))["transports"]["ws"]["token"] is None
    bad = await ws_connect(sc, encoding=encoding, hello=False)
    resp = await bad.call("session.hello", {"token": "other", "protocol": 1})
    assert error_of(resp) == (-32001, "unauthorized")
    assert await bad.wait_closed() == 4401


async def test_connections_have_their_own_subscriptions(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    a = await ws_connect(ws_sidecar, encoding=encoding)
    b = await ws_connect(ws_sidecar, encoding=encoding)
    sub_a = await a.subscribe()
    resp = await b.error("events.unsubscribe", {"subscription": sub_a})
    assert error_of(resp) == (-32002, "not_found")
    tid = await b.submit("demo::echo", 1)
    await a.wait_done(tid)
    assert b.events == []
    # A closed connection's subscriptions go away with it; the sidecar keeps serving.
    await a.close()
    assert (await b.result("sidecar.info"))["protocol"] == 1


async def test_hello_twice_and_hello_over_ws_with_a_bad_protocol(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    ws = await ws_connect(ws_sidecar, encoding=encoding)
    again = await ws.hello(ws_sidecar.ws_token)
    assert again["protocol"] == 1
    resp = await ws.error("session.hello", {"token": ws_sidecar.ws_token, "protocol": 99})
    assert error_of(resp)[0] == -32602
    # An authenticated connection is not closed by an error.
    assert (await ws.result("sidecar.info"))["protocol"] == 1


async def test_ws_port_flag(spawn: Spawn, ws_connect: WsConnect) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sc = await spawn("--ws", "--ws-port", str(port))
    assert sc.ws_url == f"ws://127.0.0.1:{port}"
    ws = await ws_connect(sc)
    assert (await ws.result("sidecar.info"))["protocol"] == 1
