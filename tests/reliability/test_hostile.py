"""Hostile clients (issue 10, part 4).

What a web page, another local user or a malicious client can try against a
loopback sidecar, and that each attempt fails: cross-site WebSocket handshakes,
tokens smuggled anywhere but ``session.hello``, wide binds, oversized frames
and lines, nesting bombs (JSON and MessagePack, 100k levels) with the
sidecar's memory measured, paths out of the ``fs`` roots, shell
metacharacters in file names, and SQL/LIKE metacharacters in filters.
(tests/e2e/test_ws.py and tests/e2e/test_fs.py cover the basic cases; these
add the rest.)
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from tests.e2e.conftest import Spawn
from tests.e2e.harness import SidecarProcess, WsClient, child_env, error_of, write_file
from tests.reliability.common import MIB, ROOT, rss_of

pytestmark = [pytest.mark.e2e]

UNAUTHORIZED = -32001
CLOSE_UNAUTHORIZED = 4401


async def ws_sidecar(
    spawn: Spawn, *extra: str, env: dict[str, str] | None = None, db: Path | None = None
) -> SidecarProcess:
    """A sidecar serving WebSocket (on ``db``: one database admits one sidecar)."""
    return await spawn("--ws", *extra, env=env, db=db)


async def refused_request(ws: WsClient) -> None:
    """The connection is not authenticated: a request gets -32001 and 4401."""
    resp = await ws.call("sidecar.info", {})
    assert error_of(resp)[0] == UNAUTHORIZED, resp
    assert await ws.wait_closed() == CLOSE_UNAUTHORIZED


# --------------------------------------------------------------------------
# Cross-site handshakes and tokens


FOREIGN_ORIGINS = [
    "null",
    "https://evil.example",
    "http://127.0.0.1",
    "http://localhost",
    "TAURI://LOCALHOST",
    "tauri://localhost.evil.example",
    "http://tauri.localhost.evil.example",
    "https://tauri.localhost:8443",
    "file:///home/user/evil.html",
    "file://evil",
    "chrome-extension://abcdefghijklmnop",
    "",
]


async def test_foreign_origins_are_refused_at_the_upgrade_even_with_the_token(
    spawn: Spawn,
) -> None:
    sc = await ws_sidecar(spawn)
    for origin in FOREIGN_ORIGINS:
        with pytest.raises(InvalidStatus) as info:
            await connect(
                f"{sc.ws_url}/?token={sc.ws_token}",
                origin=Origin(origin),
                additional_headers={"Authorization": f"Bearer {sc.ws_token}"},
                open_timeout=10,
            )
        assert info.value.response.status_code == 403, origin
    # Two Origin headers (one allowed, one not) do not pass either.
    with pytest.raises(InvalidHandshake):
        await connect(
            sc.ws_url,
            origin=Origin("tauri://localhost"),
            additional_headers=[("Origin", "https://evil.example")],
            open_timeout=10,
        )
    assert (await sc.result("sidecar.info"))["protocol"] == 1


@pytest.mark.parametrize(
    "where", ["query", "subprotocol", "authorization", "cookie", "path", "notification"]
)
async def test_a_token_anywhere_but_session_hello_does_not_authenticate(
    spawn: Spawn, where: str
) -> None:
    sc = await ws_sidecar(spawn)
    token = sc.ws_token
    assert token
    url = sc.ws_url
    kwargs: dict[str, Any] = {"max_size": None, "open_timeout": 10}
    if where == "query":
        url = f"{url}/?token={token}"
    elif where == "path":
        url = f"{url}/{token}"
    elif where == "subprotocol":
        kwargs["subprotocols"] = [token]
    elif where == "authorization":
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    elif where == "cookie":
        kwargs["additional_headers"] = {"Cookie": f"token={token}; taskmill_token={token}"}
    try:
        raw = await connect(url, **kwargs)
    except InvalidHandshake:
        return  # refused at the upgrade: fine too
    ws = WsClient(raw, "json")
    try:
        if where == "notification":
            await ws.notify("session.hello", {"token": token, "protocol": 1})
        await refused_request(ws)
    finally:
        await ws.close()


WRONG_TOKENS = ["", "x", "TOKEN", None, 123, ["t"], {"t": 1}]


async def test_wrong_tokens_are_refused_and_close_the_connection(spawn: Spawn) -> None:
    sc = await ws_sidecar(spawn)
    token = sc.ws_token
    assert token
    candidates: list[Any] = [
        *WRONG_TOKENS,
        token[:-1],
        token + "x",
        token.upper() if token.upper() != token else token.lower(),
        " " + token,
        token + "\x00",
    ]
    for i, candidate in enumerate(candidates):
        ws = await WsClient.connect(sc.ws_url, encoding="json" if i % 2 else "msgpack")
        try:
            resp = await ws.call("session.hello", {"token": candidate, "protocol": 1})
            assert "error" in resp, (candidate, resp)
            assert await ws.wait_closed() == CLOSE_UNAUTHORIZED, candidate
        finally:
            await ws.close()
    # After all that, the real token still works.
    ok = await WsClient.connect(sc.ws_url)
    try:
        await ok.hello(token)
        assert (await ok.result("sidecar.info"))["protocol"] == 1
    finally:
        await ok.close()


async def test_no_origin_and_no_token_gets_nothing(spawn: Spawn) -> None:
    # A non-browser client (no Origin header) is accepted at the upgrade, so
    # the token is all that guards it: no request passes before hello.
    sc = await ws_sidecar(spawn)
    requests: list[tuple[str, dict[str, Any]]] = [
        ("task.submit", {"task_type": "demo::echo", "payload": 1}),
        ("events.subscribe", {}),
        ("sidecar.shutdown", {"mode": "hard"}),
        ("worker.register", {"task_types": ["demo::echo"]}),
    ]
    for method, params in requests:
        ws = await WsClient.connect(sc.ws_url)
        try:
            resp = await ws.call(method, params)
            assert error_of(resp)[0] == UNAUTHORIZED, (method, resp)
            assert await ws.wait_closed() == CLOSE_UNAUTHORIZED
        finally:
            await ws.close()
    assert (await sc.result("task.list", {"limit": 0}))["total"] == 0
    assert sc.proc.returncode is None


async def test_the_token_is_random_per_launch_and_never_in_argv(
    spawn: Spawn, tmp_path: Path
) -> None:
    a = await ws_sidecar(spawn, db=tmp_path / "a.db")
    b = await ws_sidecar(spawn, db=tmp_path / "b.db")
    ta, tb = a.ws_token, b.ws_token
    assert ta and tb and ta != tb
    assert len(ta) >= 43, "at least 256 bits, urlsafe base64"
    for sc, token in ((a, ta), (b, tb)):
        assert token.encode() not in proc_file(sc.pid, "cmdline")
    # A launcher-chosen token travels in the environment only (0400 environ).
    secret = "launcher-secret-" + "q" * 40
    c = await ws_sidecar(spawn, env=child_env({"TASKMILL_TOKEN": secret}), db=tmp_path / "c.db")
    assert c.ready["transports"]["ws"]["token"] is None
    assert secret.encode() not in proc_file(c.pid, "cmdline")
    assert secret not in json.dumps(await c.result("sidecar.info"))
    assert proc_mode(c.pid, "environ") == 0o400


# --------------------------------------------------------------------------
# Bind address


def listening(pid: int) -> list[tuple[str, int]]:
    conns = psutil.Process(pid).net_connections(kind="inet")
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]


async def test_the_websocket_listens_on_loopback_only_unless_told(
    spawn: Spawn, tmp_path: Path
) -> None:
    sc = await ws_sidecar(spawn, db=tmp_path / "a.db")
    socks = listening(sc.pid)
    assert socks, "no listening socket"
    assert {ip for ip, _ in socks} == {"127.0.0.1"}, socks
    port = socks[0][1]
    assert sc.ws_url == f"ws://127.0.0.1:{port}"
    # Not reachable on another local address of this host, if it has one.
    others = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    for addr in others[:2]:
        with pytest.raises(OSError), socket.create_connection((addr, port), timeout=2):
            pass
    # Only --ws-host widens it.
    wide = await ws_sidecar(spawn, "--ws-host", "0.0.0.0", db=tmp_path / "b.db")
    assert {ip for ip, _ in listening(wide.pid)} == {"0.0.0.0"}
    # Without --ws there is no listening socket at all.
    plain = await spawn(db=tmp_path / "c.db")
    assert listening(plain.pid) == []


# --------------------------------------------------------------------------
# Size and nesting bombs, with the sidecar's memory watched

LIMIT = 4 * MIB  # the default --max-message-bytes


async def _settled_rss(pid: int) -> int:
    return rss_of(pid)


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def proc_mode(pid: int, name: str) -> int:
    return Path(f"/proc/{pid}/{name}").stat().st_mode & 0o777


async def test_oversized_frames_are_refused_without_memory_growth(spawn: Spawn) -> None:
    sc = await ws_sidecar(spawn)
    token = sc.ws_token
    over = LIMIT + 1
    bombs = {
        "json": json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "task.submit",
                "params": {"task_type": "demo::echo", "payload": "z" * over},
            }
        ),
        "msgpack": msgpack.packb(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "task.submit",
                "params": {"task_type": "demo::echo", "payload": b"z" * over},
            },
            use_bin_type=True,
        ),
    }
    # Warm up once (first-use allocations), then measure many more.
    ws = await WsClient.connect(sc.ws_url)
    await ws.hello(token)
    await ws.send_frame(bombs["msgpack"])
    await ws.inbox.wait_for(lambda: any("error" in m for m in ws.inbox.other), 20, "-32600")
    base = await _settled_rss(sc.pid)
    peak = base
    for round_ in range(6):
        for encoding, frame in bombs.items():
            client = await WsClient.connect(sc.ws_url, encoding=encoding)
            try:
                await client.hello(token)
                for _ in range(2):
                    n = len(client.inbox.other)
                    await client.send_frame(frame)
                    resp = await client.inbox.next_other(n, 20, "an error")
                    assert error_of(resp) == (-32600, "invalid_request"), resp
                # Still open and serving.
                assert (await client.result("sidecar.info"))["protocol"] == 1
                peak = max(peak, rss_of(sc.pid))
            finally:
                await client.close()
        # Over twice the limit: the WebSocket layer closes with 1009 at once.
        huge = WsClient(
            await connect(sc.ws_url, max_size=None, open_timeout=10, compression=None), "msgpack"
        )
        try:
            await huge.hello(token)
            with contextlib.suppress(ConnectionClosed):
                await huge.send_frame(b"\x00" * (2 * LIMIT + 1 + round_))
            assert await huge.wait_closed(timeout=20) == 1009
        finally:
            await huge.close()
        peak = max(peak, rss_of(sc.pid))
    end = await _settled_rss(sc.pid)
    sent = 6 * (4 * over + 2 * LIMIT)
    print(
        f"oversized frames: {sent // MIB} MiB sent in 36 frames, RSS {base // MIB} -> peak "
        f"{peak // MIB} -> {end // MIB} MiB"
    )
    assert peak - base < 48 * MIB, (base, peak)
    assert end - base < 24 * MIB, (base, end)
    assert (await sc.result("task.list", {"limit": 0}))["total"] == 0


async def test_an_endless_stdio_line_is_refused_in_bounded_memory(spawn: Spawn) -> None:
    sc = await spawn()
    base = await _settled_rss(sc.pid)
    chunk = b"A" * MIB
    peak = base
    for i in range(64):  # one 64 MiB line
        await sc.send_raw(chunk)
        if i % 8 == 0:
            peak = max(peak, rss_of(sc.pid))
    await sc.send_raw(b"\n")
    resp = await sc.wait_other(lambda m: "error" in m)
    assert error_of(resp) == (-32600, "invalid_request")
    assert (await sc.result("sidecar.info"))["protocol"] == 1
    peak = max(peak, rss_of(sc.pid))
    print(f"64 MiB stdio line: RSS {base // MIB} -> peak {peak // MIB} MiB")
    assert peak - base < 32 * MIB, (base, peak)


NEST = 100_000

NESTED = {
    "json-list": "[" * NEST + "]" * NEST,
    "json-object": '{"a":' * NEST + "null" + "}" * NEST,
    "json-in-params": '{"jsonrpc":"2.0","id":5,"method":"task.submit","params":{"task_type":'
    '"demo::echo","payload":' + "[" * NEST + "]" * NEST + "}}",
}


def _msgpack_params_bomb() -> bytes:
    """A request map whose ``params`` is 100k nested arrays."""
    packed_head: bytes = msgpack.packb(
        {"jsonrpc": "2.0", "id": 5, "method": "task.submit"}, use_bin_type=True
    )
    assert packed_head[0] == 0x83  # a 3-entry map: make it 4 and append params
    params_key: bytes = msgpack.packb("params")
    return b"\x84" + packed_head[1:] + params_key + b"\x91" * NEST + b"\xc0"


NESTED_MSGPACK = {
    "msgpack-array": b"\x91" * NEST + b"\xc0",
    "msgpack-map": b"\x81\xa1a" * NEST + b"\xc0",
    "msgpack-in-params": _msgpack_params_bomb(),
}


async def test_nesting_bombs_are_parse_errors_in_bounded_memory(spawn: Spawn) -> None:
    sc = await ws_sidecar(spawn)
    base = await _settled_rss(sc.pid)
    peak = base

    async def over_ws(encoding: str, name: str, frame: str | bytes) -> None:
        ws = await WsClient.connect(sc.ws_url, encoding=encoding)
        try:
            await ws.hello(sc.ws_token)
            await ws.send_frame(frame)
            await ws.inbox.wait_for(lambda: ws.inbox.other, 20, name)
            assert error_of(ws.inbox.other[0])[0] == -32700, (name, ws.inbox.other[0])
            assert (await ws.result("sidecar.info"))["protocol"] == 1
        finally:
            await ws.close()

    for _ in range(3):
        for name, text in NESTED.items():
            # Over stdio ...
            n = len(sc.inbox.other)
            await sc.send_raw(text.encode() + b"\n")
            resp = await sc.inbox.next_other(n, 20, name)
            assert error_of(resp)[0] == -32700, (name, resp)
            # ... and as a WebSocket text frame.
            await over_ws("json", name, text)
            peak = max(peak, rss_of(sc.pid))
        for name, frame in NESTED_MSGPACK.items():
            await over_ws("msgpack", name, frame)
            peak = max(peak, rss_of(sc.pid))
    assert sc.proc.returncode is None
    assert "RecursionError" not in sc.stderr_text()
    assert (await sc.result("task.list", {"limit": 0}))["total"] == 0
    print(f"nesting bombs ({NEST} levels x 6 kinds x 3): RSS {base // MIB} -> {peak // MIB} MiB")
    assert peak - base < 48 * MIB, (base, peak)


# --------------------------------------------------------------------------
# fs roots


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """root/ (allowed), a sibling root2/ sharing its name as a prefix, outside/."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    write_file(root / "inside.txt", b"inside")
    write_file(tmp_path / "root2" / "secret.txt", b"root2 secret")
    write_file(tmp_path / "outside" / "secret.txt", b"outside secret")
    write_file(tmp_path / "outside" / "deep" / "also.txt", b"also secret")
    (root / "linkdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "sub" / "up").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    (root / "dangling").symlink_to(tmp_path / "outside" / "new.txt")
    return {"tmp": tmp_path, "root": root, "outside": tmp_path / "outside"}


async def _final(sc: SidecarProcess, tid: int) -> dict[str, Any]:
    return await sc.wait_status(tid, "completed", "failed", "dead_letter", timeout=20)


async def test_fs_paths_that_leave_the_root_are_refused(
    spawn: Spawn, layout: dict[str, Path]
) -> None:
    root, tmp = layout["root"], layout["tmp"]
    sc = await spawn("--fs-root", str(root))
    escapes = [
        str(tmp / "root2" / "secret.txt"),  # shares the root's name as a string prefix
        str(root) + "2/secret.txt",
        "linkdir/secret.txt",  # a symlinked folder inside the root, pointing out
        str(root / "linkdir" / "deep" / "also.txt"),
        "sub/up",  # a relative symlink climbing out
        "sub/../../outside/secret.txt",
        "./../outside/secret.txt",
        "/etc/passwd",
        "/proc/self/environ",
        "//" + str(tmp / "outside" / "secret.txt"),
        str(root / ".." / "outside" / "secret.txt"),
        "inside.txt\x00/../../outside/secret.txt",
    ]
    for path in escapes:
        tid = await sc.submit("fs::hash", {"path": path})
        rec = await _final(sc, tid)
        assert rec["status"] == "failed", (path, rec)
        assert rec["retry_count"] == 0, path
        assert rec["result"] is None
    # Copies in or out through links are refused, and nothing is written outside.
    for src, dst in [
        ("inside.txt", "linkdir/stolen.txt"),
        ("inside.txt", "dangling"),
        ("linkdir/secret.txt", "copied.txt"),
        ("inside.txt", str(tmp / "root2" / "x.txt")),
    ]:
        tid = await sc.submit("fs::copy", {"src": src, "dst": dst, "overwrite": True})
        assert (await _final(sc, tid))["status"] == "failed", (src, dst)
    assert not (layout["outside"] / "stolen.txt").exists()
    assert not (layout["outside"] / "new.txt").exists()
    assert not (root / "copied.txt").exists()
    assert (layout["outside"] / "secret.txt").read_bytes() == b"outside secret"
    # Scanning the root does not follow the link out.
    tid = await sc.submit("fs::scan", {"root": str(root), "pattern": "*", "hash": True})
    rec = await _final(sc, tid)
    assert rec["status"] == "completed", rec
    listed = json.dumps(rec["result"])
    assert "secret" not in listed and "also.txt" not in listed, rec["result"]
    tid = await sc.submit("fs::scan", {"root": str(layout["outside"])})
    assert (await _final(sc, tid))["status"] == "failed"
    # Inside the root, work is still done.
    tid = await sc.submit("fs::hash", {"path": "inside.txt"})
    rec = await _final(sc, tid)
    assert rec["result"]["digest"] == hashlib.sha256(b"inside").hexdigest()


async def test_a_root_given_through_a_symlinked_parent_is_confined_to_its_target(
    spawn: Spawn, tmp_path: Path
) -> None:
    real = tmp_path / "real" / "data"
    write_file(real / "ok.txt", b"ok")
    write_file(tmp_path / "real" / "sibling.txt", b"sibling secret")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    sc = await spawn("--fs-root", str(tmp_path / "alias" / "data"))
    ok = await sc.submit("fs::hash", {"path": str(tmp_path / "alias" / "data" / "ok.txt")})
    assert (await _final(sc, ok))["status"] == "completed"
    ok2 = await sc.submit("fs::hash", {"path": str(real / "ok.txt")})
    assert (await _final(sc, ok2))["status"] == "completed"
    for path in [
        str(tmp_path / "alias" / "sibling.txt"),
        str(tmp_path / "alias" / "data" / ".." / "sibling.txt"),
        "../sibling.txt",
    ]:
        tid = await sc.submit("fs::hash", {"path": path})
        assert (await _final(sc, tid))["status"] == "failed", path


async def test_fs_file_names_are_never_given_to_a_shell(spawn: Spawn, tmp_path: Path) -> None:
    root = tmp_path / "root"
    names = [
        "a; touch PWNED1 #.txt",
        "$(touch PWNED2).txt",
        "`touch PWNED3`.txt",
        "x' || touch PWNED4 || '.txt",
        "-rf",
        "| touch PWNED5",
    ]
    for name in names:
        write_file(root / name, name.encode())
    sc = await spawn("--fs-root", str(root))
    for name in names:
        tid = await sc.submit("fs::hash", {"path": name})
        rec = await _final(sc, tid)
        assert rec["status"] == "completed", (name, rec)
        assert rec["result"]["digest"] == hashlib.sha256(name.encode()).hexdigest()
        cp = await sc.submit("fs::copy", {"src": name, "dst": name + ".copy"})
        assert (await _final(sc, cp))["status"] == "completed", name
        assert (root / (name + ".copy")).read_bytes() == name.encode()
    assert pwned(tmp_path) == []


def pwned(folder: Path) -> list[str]:
    """Marker files a shell would have created (in the folder or our cwd)."""
    return [p.name for p in folder.rglob("PWNED*")] + [
        p for p in os.listdir(".") if p.startswith("PWNED")
    ]


def test_the_sidecar_source_never_spawns_a_shell() -> None:
    """No os.system/os.popen, no shell=True, no subprocess in the package."""
    offenders = []
    for path in (ROOT / "sidecar" / "taskmill").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("system", "popen", "spawnl")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                offenders.append(f"{path.name}:{node.lineno} os.{node.attr}")
            if isinstance(node, ast.keyword) and node.arg == "shell":
                offenders.append(f"{path.name}:{node.lineno} shell=")
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                if any(m.split(".")[0] in ("subprocess", "pty") for m in mods):
                    offenders.append(f"{path.name}:{node.lineno} import {mods}")
    assert offenders == []


# --------------------------------------------------------------------------
# SQL and LIKE metacharacters in filters

EVIL = '"; DROP TABLE tasks; --'
META_KEYS = ["%", "_", "\\", "'", EVIL, "a%b", "a_b", "axb", "a\\b", "a\\%", "100%"]


async def test_tag_filters_match_metacharacters_literally(spawn: Spawn) -> None:
    sc = await spawn()
    await sc.result("domain.pause", {"domain": "demo"})
    ids: dict[str, int] = {}
    for key in META_KEYS:
        ids[key] = await sc.submit("demo::echo", {"k": key}, tags={key: key}, group=key)
    plain = await sc.submit("demo::echo", {"k": "plain"}, tags={"plain": "v"})

    async def listed(**flt: Any) -> set[int]:
        res = await sc.result("task.list", {**flt, "limit": 1000})
        return {t["id"] for t in res["tasks"]}

    for key in META_KEYS:
        assert await listed(tags={key: key}) == {ids[key]}, key
        assert await listed(group=key) == {ids[key]}, key
        expected = {ids[k] for k in META_KEYS if k.startswith(key)}
        assert await listed(tag_prefix=key) == expected, key
        keys = (await sc.result("tags.keys", {"prefix": key}))["keys"]
        assert sorted(keys) == sorted(k for k in META_KEYS if k.startswith(key)), key
        values = (await sc.result("tags.values", {"key": key}))["values"]
        assert values == [{"value": key, "count": 1}], key
    # Wildcards and injections match nothing beyond their literal selves.
    assert await listed(tag_prefix="a_") == {ids["a_b"]}
    assert await listed(tag_prefix="a%") == {ids["a%b"]}
    assert await listed(tags={"%": "_"}) == set()
    for flt in ({"domain": EVIL}, {"task_type": "demo::echo' OR '1'='1"}):
        resp = await sc.call("task.list", flt)
        # Refused by validation, or matching nothing: never everything.
        assert error_of(resp)[0] == -32602 or resp["result"]["total"] == 0, resp
    hist = await sc.result("history.list", {"key": EVIL, "task_type": "demo::echo"})
    assert hist["total"] == 0
    # cancel_where by a wildcard-looking prefix cancels only the literal match.
    cancelled = (await sc.result("task.cancel_where", {"tag_prefix": "a_"}))["cancelled"]
    assert cancelled == [ids["a_b"]]
    cancelled = (await sc.result("task.cancel_where", {"tags": {"%": "%"}}))["cancelled"]
    assert cancelled == [ids["%"]]
    cancelled = (await sc.result("task.cancel_where", {"group": EVIL}))["cancelled"]
    assert cancelled == [ids[EVIL]]
    # The tables are all there and intact.
    remaining = await listed()
    assert remaining == {*ids.values(), plain} - {ids["a_b"], ids["%"], ids[EVIL]}
    assert (await sc.result("history.list", {"status": "cancelled"}))["total"] == 3
    await sc.result("domain.resume", {"domain": "demo"})
    await sc.wait_status(plain, "completed")


async def test_tag_prefixes_are_case_sensitive(spawn: Spawn) -> None:
    """A regression test: prefixes went through SQLite LIKE, which ignores ASCII case."""
    sc = await spawn()
    await sc.result("domain.pause", {"domain": "demo"})
    lower = await sc.submit("demo::echo", 1, tags={"album": "x"})
    upper = await sc.submit("demo::echo", 2, tags={"Album": "x"})
    listed = await sc.result("task.list", {"tag_prefix": "album"})
    keys = (await sc.result("tags.keys", {"prefix": "ALB"}))["keys"]
    cancelled = (await sc.result("task.cancel_where", {"tag_prefix": "alb"}))["cancelled"]
    assert [t["id"] for t in listed["tasks"]] == [lower]
    assert keys == []
    assert cancelled == [lower], f"cancelled {cancelled}, {upper} is tagged 'Album'"
