"""The queue inspector, ``taskmill-sidecar inspect`` (issue 17): reads beside a
running sidecar, writes through it, refusals, and a database no sidecar holds."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Spawn
from tests.e2e.harness import Exited, child_env, run_to_exit, sidecar_cmd


async def inspect(db: Path, *args: str) -> Exited:
    return await run_to_exit("inspect", "--db", str(db), *args)


async def inspect_json(db: Path, *args: str) -> Any:
    done = await inspect(db, "--json", *args)
    assert done.code == 0, done
    return json.loads(done.stdout)


async def test_reads_beside_a_running_sidecar_and_writes_through_it(
    spawn: Spawn, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    sc = await spawn("--ws", db=db)
    await sc.subscribe()
    done = await sc.submit("demo::echo", "done")
    await sc.wait_status(done, "completed")
    dead = await sc.submit("demo::fail", {"times": -1}, retry={"max_retries": 0})
    await sc.wait_status(dead, "dead_letter")
    held = await sc.submit("demo::sleep", {"ms": 60_000}, run_after_ms=600_000, tags={"a": "b"})

    status = await inspect_json(db, "status")
    assert status["sidecar"]["pid"] == sc.pid and status["sidecar"]["reachable"] is True
    assert status["active"] == {"pending": 1}
    assert status["history"] == {"completed": 1, "dead_letter": 1}
    listed = await inspect_json(db, "list", "--tag", "a=b")
    assert [t["id"] for t in listed["tasks"]] == [held] and listed["total"] == 1
    shown = await inspect_json(db, "show", str(dead))
    assert shown["status"] == "dead_letter"
    letters = await inspect_json(db, "dead-letters")
    assert [t["id"] for t in letters["tasks"]] == [dead]
    table = await inspect(db, "list")
    assert (
        table.code == 0
        and "demo::sleep" in table.stdout.decode()
        and "pending" in (table.stdout.decode())
    )

    # Writes go through the sidecar: its events show them.
    again = await inspect_json(db, "retry", str(dead))
    assert again["outcome"] == "inserted"
    await sc.wait_event(lambda e: e["kind"] == "submitted" and e["task_id"] == again["id"])
    assert (await inspect_json(db, "cancel", str(held))) == {"cancelled": True}
    await sc.wait_task_event(held, "cancelled")
    # Reads never dispatched or recovered anything.
    assert len([e for e in sc.events if e["kind"] == "dispatched"]) == 3
    top = await inspect(db, "top", "--iterations", "2", "--interval", "0.05")
    assert top.code == 0 and top.stdout.decode().count("active:") == 2


async def test_writes_are_refused_without_a_reachable_sidecar(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    sc = await spawn(db=db)  # stdio only: no WebSocket to go through
    tid = await sc.submit("demo::sleep", {"ms": 60_000}, run_after_ms=600_000)
    refused = await inspect(db, "cancel", str(tid))
    assert refused.code == 1 and "serves no WebSocket" in refused.stderr, refused
    assert (await sc.result("task.get", {"id": tid}))["status"] == "pending"
    status = await inspect_json(db, "status")
    assert status["sidecar"]["pid"] == sc.pid and status["sidecar"]["reachable"] is False
    assert await sc.shutdown() == 0
    refused = await inspect(db, "cancel", str(tid))
    assert refused.code == 1 and "no sidecar holds" in refused.stderr, refused


async def test_reads_on_a_database_no_sidecar_holds(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "idle.db"
    sc = await spawn(db=db)
    ids = [await sc.submit("demo::echo", n) for n in range(3)]
    for tid in ids:
        await sc.wait_status(tid, "completed")
    assert await sc.shutdown() == 0
    before = db.read_bytes()
    status = await inspect_json(db, "status")
    assert status["sidecar"] is None and status["history"] == {"completed": 3}
    hist = await inspect_json(db, "history", "--limit", "2")
    assert [t["id"] for t in hist["tasks"]] == ids[:0:-1] and hist["total"] == 3
    missing = await inspect(db, "show", "999")
    assert missing.code == 1 and "no task with id 999" in missing.stderr
    assert db.read_bytes() == before, "reads write nothing"
    # Not a taskmill database: exit 2, one line.
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id)")
    conn.close()
    bad = await inspect(other, "status")
    assert bad.code == 2 and "not a taskmill database" in bad.stderr


async def test_inspect_help_lists_the_commands() -> None:
    proc = await asyncio.create_subprocess_exec(
        *sidecar_cmd("inspect", "--help"), stdout=asyncio.subprocess.PIPE, env=child_env()
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    for cmd in ("status", "list", "show", "history", "dead-letters", "retry", "cancel", "top"):
        assert cmd in out.decode()
