"""Process lifecycle (protocol sections 9, 11 and 12): start-up failures, shutdown, recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Spawn, WsConnect
from tests.e2e.harness import SidecarProcess, child_env, run_to_exit, write_file


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    return lines[0]


async def test_stdin_eof_exits_0(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    sidecar.close_stdin()
    assert await sidecar.wait_exit() == 0
    assert sidecar.bad_lines == []


async def test_sigterm_drains_a_running_task(spawn: Spawn, tmp_path: Path) -> None:
    sc = await spawn()
    await sc.subscribe(kinds=["dispatched", "completed", "shutdown"])
    tid = await sc.submit("demo::sleep", {"ms": 1000, "steps": 10})
    await sc.wait_task_event(tid, "dispatched")
    started = time.monotonic()
    sc.send_signal(signal.SIGTERM)
    shutdown = await sc.wait_event(lambda e: e["kind"] == "shutdown")
    assert shutdown["mode"] == "graceful"
    done = await sc.wait_done(tid)
    assert done["kind"] == "completed"
    # Exit code: see test_exit_code_0_when_stdin_stays_open.
    await sc.wait_exit()
    assert time.monotonic() - started < 5
    again = await spawn("--max-concurrency", "0")
    rec = await again.result("task.get", {"id": tid})
    assert rec["status"] == "completed"
    assert rec["result"] == {"slept_ms": 1000}


async def test_drain_timeout_returns_the_task_to_pending(spawn: Spawn) -> None:
    sc = await spawn("--drain-timeout-ms", "100")
    await sc.subscribe(kinds=["dispatched"])
    tid = await sc.submit("demo::sleep", {"ms": 5000, "steps": 50})
    await sc.wait_task_event(tid, "dispatched")
    started = time.monotonic()
    sc.close_stdin()
    assert await sc.wait_exit(timeout=5) == 0
    assert time.monotonic() - started < 3
    again = await spawn("--max-concurrency", "0")
    rec = await again.result("task.get", {"id": tid})
    assert rec["status"] == "pending"
    assert rec["retry_count"] == 0


async def test_sigkill_mid_task_runs_it_again_without_counting_a_retry(spawn: Spawn) -> None:
    sc = await spawn()
    await sc.subscribe(kinds=["dispatched"])
    done_id = await sc.submit("demo::echo", "finished before the crash")
    tid = await sc.submit("demo::sleep", {"ms": 3000, "steps": 30})
    await sc.wait_task_event(tid, "dispatched")
    await sc.wait_status(done_id, "completed")
    sc.send_signal(signal.SIGKILL)
    assert await sc.wait_exit() == -signal.SIGKILL
    again = await spawn("--max-concurrency", "0")
    await again.subscribe(kinds=["dispatched"])
    rec = await again.result("task.get", {"id": tid})
    assert rec["status"] == "pending" and rec["retry_count"] == 0
    await again.result("scheduler.set_max_concurrency", {"value": 4})
    ev = await again.wait_task_event(tid, "dispatched")
    assert ev["attempt"] == 1
    assert [e["task_id"] for e in again.events] == [tid], "only the interrupted task runs again"
    completed = await again.result("history.list", {"status": "completed"})
    assert [t["id"] for t in completed["tasks"]] == [done_id], "a completed task ran again"


@pytest.mark.parametrize("trigger", ["sidecar.shutdown", "sigterm"])
async def test_exit_code_0_when_stdin_stays_open(spawn: Spawn, trigger: str) -> None:
    sc = await spawn()
    if trigger == "sidecar.shutdown":
        await sc.result("sidecar.shutdown", {"mode": "graceful"})
    else:
        sc.send_signal(signal.SIGTERM)
    code = await sc.wait_exit()
    assert code == 0, f"exit code {code}; stderr: {sc.stderr_text()[-300:]}"


@pytest.fixture
async def helper_process() -> AsyncIterator[asyncio.subprocess.Process]:
    """A stand-in for the launching app: a process that sleeps until killed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(120)"
    )
    yield proc
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


async def test_parent_gone_shuts_the_sidecar_down(
    spawn: Spawn, helper_process: asyncio.subprocess.Process
) -> None:
    sc = await spawn("--parent-pid", str(helper_process.pid))
    await sc.subscribe(kinds=["shutdown"])
    assert (await sc.result("sidecar.info"))["protocol"] == 1
    helper_process.kill()
    await helper_process.wait()  # reaped: the pid no longer exists
    gone = time.monotonic()
    await sc.wait_event(lambda e: e["kind"] == "shutdown", timeout=3)
    await sc.wait_exit(timeout=3)
    assert time.monotonic() - gone < 2.5
    # Exit code: see test_exit_code_0_when_stdin_stays_open (same abort at exit).


def _unusable_db(folder: Path, content: str) -> Path:
    folder.mkdir()
    db = folder / "bad.db"
    if content == "random":
        write_file(db, os.urandom(16384))
    elif content == "text":
        write_file(db, "this is not a database\n" * 200)
    else:  # a real SQLite database of another application
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO photos (name) VALUES ('cat.png')")
        conn.commit()
        conn.close()
    return db


UNUSABLE = ("random", "text", "foreign-sqlite")


async def test_a_database_that_cannot_be_used_exits_2_untouched(tmp_path: Path) -> None:
    dbs = [_unusable_db(tmp_path / content, content) for content in UNUSABLE]
    before = [(db.read_bytes(), db.stat().st_mtime_ns) for db in dbs]
    runs = await asyncio.gather(*(run_to_exit("--stdio", "--demo", "--db", str(db)) for db in dbs))
    for content, db, (data, mtime), done in zip(UNUSABLE, dbs, before, runs, strict=True):
        assert done.code == 2, (content, done)
        assert done.stdout == b"", "nothing (not even sidecar.ready) may reach stdout"
        first = done.stderr.splitlines()[0]
        assert first.startswith("taskmill-sidecar: ") and "bad.db" in first, (content, first)
        assert db.read_bytes() == data, content
        assert db.stat().st_mtime_ns == mtime, content
        for suffix in ("-wal", "-shm", "-journal"):
            assert not db.with_name("bad.db" + suffix).exists(), (content, suffix)


async def test_a_database_path_that_cannot_be_opened_exits_2(tmp_path: Path) -> None:
    write_file(tmp_path / "plain.txt", "x")
    (tmp_path / "folder.db").mkdir()
    paths = {
        "missing-dir": tmp_path / "no" / "such" / "dir" / "x.db",
        "under-a-file": tmp_path / "plain.txt" / "x.db",
        "a-directory": tmp_path / "folder.db",
    }
    runs = await asyncio.gather(
        *(run_to_exit("--stdio", "--demo", "--db", str(db)) for db in paths.values())
    )
    for where, done in zip(paths, runs, strict=True):
        assert done.code == 2, (where, done)
        assert done.stdout == b""
        assert done.stderr.startswith("taskmill-sidecar: "), (where, done.stderr)
    assert not (tmp_path / "no").exists()


async def test_an_unusable_database_gives_a_one_line_reason(tmp_path: Path) -> None:
    dbs = []
    for i in range(3):
        dbs += [_unusable_db(tmp_path / f"{content}-{i}", content) for content in UNUSABLE]
        (tmp_path / f"folder-{i}.db").mkdir()
        dbs.append(tmp_path / f"folder-{i}.db")
    # Several at once (each on its own file: one database admits one sidecar):
    # the stray traceback is a race that load makes near-certain.
    runs = await asyncio.gather(*(run_to_exit("--stdio", "--db", str(db)) for db in dbs))
    for done in runs:
        assert done.code == 2
        _one_line(done.stderr)


BAD_CONFIGS = [
    ("[scheduler]\nmax_concurency = 3\n", "scheduler.max_concurency"),
    ('[scheduler]\nmax_concurrency = "four"\n', "scheduler.max_concurrency"),
    ("[schedular]\nmax_concurrency = 3\n", "schedular"),
    ("[domains.up.types.put]\nprioritee = 3\n", "domains.up.types.put.prioritee"),
    ("[domains.up.types.put]\nttl_ms = true\n", "domains.up.types.put.ttl_ms"),
    ("[retention]\nmax_count = -1\n", "retention.max_count"),
    ("[scheduler\nmax_concurrency = 3\n", "taskmill.toml"),
]


async def test_a_bad_config_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    runs = []
    for i, (toml, _) in enumerate(BAD_CONFIGS):
        cfg = write_file(tmp_path / str(i) / "taskmill.toml", toml)
        runs.append(
            run_to_exit("--stdio", "--db", str(tmp_path / str(i) / "x.db"), "--config", str(cfg))
        )
    results = await asyncio.gather(*runs)
    for i, ((toml, key), done) in enumerate(zip(BAD_CONFIGS, results, strict=True)):
        assert done.code == 2, (toml, done)
        assert done.stdout == b""
        assert key in _one_line(done.stderr), (toml, done.stderr)
        assert not (tmp_path / str(i) / "x.db").exists(), "refused before opening the database"


async def test_app_module_loads_a_python_domain(spawn: Spawn, tmp_path: Path) -> None:
    write_file(
        tmp_path / "app" / "e2e_shout_app.py",
        "from taskmill import Domain\n"
        "\n"
        "dom = Domain('shout')\n"
        "\n"
        "@dom.task('upper')\n"
        "async def upper(payload, ctx):\n"
        "    print('app code printing to stdout must not reach the protocol pipe')\n"
        "    ctx.progress.report(0.5, 'half')\n"
        "    return {'text': payload['text'].upper()}\n",
    )
    sc = await spawn("--app", "e2e_shout_app:dom", "--app-path", str(tmp_path / "app"))
    info = await sc.result("sidecar.info")
    types = {t["task_type"]: t for t in info["task_types"]}
    assert types["shout::upper"]["executor"] == "python"
    assert types["shout::upper"]["domain"] == "shout"
    assert "shout::upper" in sc.ready["task_types"]
    await sc.subscribe(domains=["shout"])
    tid = await sc.submit("shout::upper", {"text": "hi"})
    done = await sc.wait_done(tid)
    assert done["kind"] == "completed" and done["result"] == {"text": "HI"}
    assert await sc.shutdown() == 0
    assert sc.bad_lines == []
    assert "must not reach the protocol pipe" in sc.stderr_text()


async def test_bad_app_spec_exits_2(tmp_path: Path) -> None:
    done = await run_to_exit(
        "--stdio", "--db", str(tmp_path / "x.db"), "--app", "no_such_module_e2e:dom"
    )
    assert done.code == 2
    assert "no_such_module_e2e" in _one_line(done.stderr)


CONFIG_WITH_TYPE = """
[scheduler]
max_concurrency = 3

[domains.up]
max_concurrency = 2

[domains.up.types.put]
priority = "high"
expected_io = { net_tx = 5000 }
ttl_ms = 60000
group = "bucket"
retry = { max_retries = 2, backoff = "constant", base_ms = 0 }
"""


async def test_config_declared_type_has_no_executor_until_a_worker_registers(
    spawn: Spawn, tmp_path: Path, ws_connect: WsConnect
) -> None:
    cfg = write_file(tmp_path / "taskmill.toml", CONFIG_WITH_TYPE)
    sc = await spawn("--ws", "--config", str(cfg))
    info = await sc.result("sidecar.info")
    assert info["config"]["max_concurrency"] == 3
    t = {t["task_type"]: t for t in info["task_types"]}["up::put"]
    assert t["executor"] == "none"
    assert t["domain"] == "up"
    assert t["config"]["priority"] == 64
    assert t["config"]["ttl_ms"] == 60000
    assert t["config"]["group"] == "bucket"
    assert t["config"]["expected_io"]["net_tx"] == 5000
    assert t["config"]["retry"]["max_retries"] == 2
    # Submitted before any worker: it waits in pending with the type's defaults.
    await sc.subscribe(domains=["up"])
    tid = await sc.submit("up::put", {"file": "a"})
    rec = await sc.result("task.get", {"id": tid})
    assert rec["priority"] == 64 and rec["group"] == "bucket" and rec["max_retries"] == 2
    assert rec["expected_io"]["net_tx"] == 5000
    assert rec["expires_at"] == rec["created_at"] + 60000
    snap = await sc.result("scheduler.snapshot", {"domain": "up"})
    assert snap["pending_count"] == 1 and snap["running"] == []
    assert (await sc.result("task.get", {"id": tid}))["status"] == "pending"

    worker = await ws_connect(sc)
    reg = await worker.result("worker.register", {"task_types": ["up::put"]})
    info = await sc.result("sidecar.info")
    t = {t["task_type"]: t for t in info["task_types"]}["up::put"]
    assert t["executor"] == "worker"
    req = await worker.next_request(taken=set())
    assert req["params"]["worker"] == reg["worker"]
    assert req["params"]["task"]["id"] == tid
    await worker.respond(req["id"], {"result": "uploaded"})
    done = await sc.wait_done(tid)
    assert done["kind"] == "completed" and done["result"] == "uploaded"


async def test_command_line_wins_over_the_config_file(spawn: Spawn, tmp_path: Path) -> None:
    cfg = write_file(tmp_path / "taskmill.toml", "[scheduler]\nmax_concurrency = 3\n")
    sc = await spawn("--config", str(cfg), "--max-concurrency", "1")
    assert (await sc.result("sidecar.info"))["config"]["max_concurrency"] == 1


async def test_default_transport_is_stdio(tmp_path: Path) -> None:
    # Without --stdio or --ws, stdio is served.
    proc = await SidecarProcess.start("--demo", "--db", str(tmp_path / "x.db"), env=child_env())
    try:
        assert proc.ready["transports"] == {"stdio": True, "ws": None}
        assert (await proc.result("sidecar.info"))["protocol"] == 1
        assert await proc.shutdown() == 0
    finally:
        await proc.kill()
