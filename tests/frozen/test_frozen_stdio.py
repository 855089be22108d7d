"""The frozen sidecar serves the protocol: ready line, info, tasks, WebSocket, apps."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import connect

from tests.frozen.conftest import Sidecar

ROOT = Path(__file__).resolve().parents[2]
DEMO_TYPES = {"demo::echo", "demo::fail", "demo::fanout", "demo::io", "demo::sleep"}


def run_task(sc: Sidecar, task_type: str, payload: Any) -> dict[str, Any]:
    """Submit a task and return its terminal event."""
    sc.call("events.subscribe", filter={"kinds": ["completed", "failed", "dead_lettered"]})
    task_id = sc.call("task.submit", task_type=task_type, payload=payload)["id"]
    event = sc.next(lambda m: m.get("method") == "event" and m["params"]["task_id"] == task_id)
    params: dict[str, Any] = event["params"]
    return params


def test_onedir_ready_info_and_a_task(start: Any, onedir: str) -> None:
    sc = start(onedir, "--demo")
    ready = sc.ready["params"]
    assert ready["pid"] == sc.proc.pid  # onedir is one process (Linux re-execs in place)
    assert set(ready["task_types"]) >= DEMO_TYPES
    info = sc.call("sidecar.info")
    assert {t["task_type"] for t in info["task_types"] if t["executor"] == "python"} >= DEMO_TYPES
    # UTF-8 both ways, whatever the locale: the binary runs with -X utf8.
    payload = {"text": "héllo ✓ 日本語", "n": 3}
    event = run_task(sc, "demo::echo", payload)
    assert event["kind"] == "completed"
    assert event["result"] == payload
    assert sc.close() == 0


def test_onefile_ready_pid_is_the_real_interpreter(start: Any, onefile: str) -> None:
    sc = start(onefile, "--demo")
    real = sc.ready["params"]["pid"]
    assert real != sc.proc.pid  # the bootloader extracts, then runs Python as its child
    assert psutil.Process(real).ppid() == sc.proc.pid
    assert run_task(sc, "demo::sleep", {"ms": 50})["result"] == {"slept_ms": 50}
    assert sc.close() == 0
    assert not psutil.pid_exists(real)


async def test_onedir_serves_websocket(start: Any, onedir: str) -> None:
    """The WebSocket transport works frozen (websockets imports much of itself lazily)."""
    sc = start(onedir, "--demo", "--ws")
    ws = sc.ready["params"]["transports"]["ws"]
    assert ws["url"].startswith("ws://127.0.0.1:")
    async with connect(ws["url"]) as conn:
        hello = {"token": ws["token"], "protocol": 1, "client": "frozen-test/1"}
        await conn.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.hello", "params": hello})
        )
        reply = json.loads(await asyncio.wait_for(conn.recv(), 10))
    assert reply.get("result", {}).get("protocol") == 1, reply
    assert sc.close() == 0


def test_onedir_loads_app_code_from_a_folder(start: Any, onedir: str, tmp_path: Path) -> None:
    """An unbundled app module still loads: --app-path works in the frozen binary too."""
    sc = start(
        onedir, "--app", "myapp.tasks:domain", "--app-path", str(ROOT / "examples" / "python_app")
    )
    assert "photos::hash" in sc.ready["params"]["task_types"]
    photo = tmp_path / "photo.bin"
    photo.write_bytes(os.urandom(300_000))
    event = run_task(sc, "photos::hash", {"path": str(photo)})
    assert event["kind"] == "completed", event
    assert event["result"]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert sc.close() == 0
