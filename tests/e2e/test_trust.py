"""Trust (issue 14): one database, one scheduler; task code cannot wedge the
sidecar; nothing acknowledged is lost. Real sidecar processes throughout.

The misbehaving executors live in ``tests/e2e/apps/unruly.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import Spawn, WsConnect
from tests.e2e.harness import (
    SidecarProcess,
    child_env,
    error_of,
    run_to_exit,
    sidecar_cmd,
    write_file,
)

APPS = Path(__file__).with_name("apps")
UNRULY = ("--app", "unruly:dom", "--app-path", str(APPS))
STORAGE_ERROR = (-32007, "storage_error")


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    return lines[0]


def gone(pid: int) -> bool:
    """Exited (a zombie counts: whoever adopted it may not reap it at once)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pid: int, timeout: float) -> float:
    """Seconds until ``pid`` exits (fails after ``timeout``)."""
    started = time.monotonic()
    while not gone(pid):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"process {pid} still running after {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# --------------------------------------------------------------------------
# 1. The app launched twice


async def test_a_second_sidecar_on_a_database_in_use_exits_3_and_touches_nothing(
    spawn: Spawn, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    first = await spawn("--ws", db=db)
    await first.subscribe(kinds=["dispatched", "completed"])
    tid = await first.submit("demo::sleep", {"ms": 1500, "steps": 15})
    await first.wait_task_event(tid, "dispatched")

    second = await run_to_exit("--stdio", "--demo", "--db", str(db))
    assert second.code == 3, second
    assert second.stdout == b"", "a second instance never prints sidecar.ready"
    line = one_line(second.stderr)
    assert str(db) in line and f"pid {first.pid}" in line, line
    assert first.ws_url in line, "the holder's WebSocket URL says how to reach it"

    # The first one's task was not put back to pending nor run twice.
    done = await first.wait_done(tid)
    assert done["kind"] == "completed"
    assert len([e for e in first.events if e["kind"] == "dispatched"]) == 1
    assert await first.shutdown() == 0
    # The lock goes with its holder: the next start takes the database.
    again = await spawn(db=db)
    assert (await again.result("task.get", {"id": tid}))["status"] == "completed"


async def first_line(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stdout is not None
    return await proc.stdout.readline()


async def test_of_simultaneous_starts_exactly_one_wins(tmp_path: Path) -> None:
    for round_ in range(4):
        db = tmp_path / f"race-{round_}.db"
        procs = [
            await asyncio.create_subprocess_exec(
                *sidecar_cmd("--stdio", "--demo", "--no-resource-monitoring", "--db", str(db)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(),
            )
            for _ in range(4)
        ]
        try:
            firsts = await asyncio.gather(*(first_line(p) for p in procs))
            winners = [p for p, line in zip(procs, firsts, strict=True) if line]
            assert len(winners) == 1, f"round {round_}: {len(winners)} sidecars started"
            assert json.loads(firsts[procs.index(winners[0])])["method"] == "sidecar.ready"
            for p in procs:
                if p is winners[0]:
                    continue
                assert p.stderr is not None
                err = await p.stderr.read()
                assert await p.wait() == 3, err
                assert "in use by another taskmill scheduler" in one_line(err.decode())
            stdin = winners[0].stdin
            assert stdin is not None
            stdin.close()
            async with asyncio.timeout(20):
                assert await winners[0].wait() == 0
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()


# --------------------------------------------------------------------------
# 2. Task code that raises anything, or returns what cannot be stored

BAD = {
    "exit_async": ("failed", "SystemExit: 3"),
    "exit_sync": ("failed", "SystemExit: 3"),
    "interrupt_async": ("failed", "KeyboardInterrupt"),
    "interrupt_sync": ("failed", "KeyboardInterrupt"),
    "base_async": ("dead_letter", "Custom: custom base exception"),
    "base_sync": ("dead_letter", "Custom: custom base exception"),
    "genexit_async": ("dead_letter", "GeneratorExit"),
    "genexit_sync": ("dead_letter", "GeneratorExit"),
    "cancelled_async": ("dead_letter", "CancelledError"),
    "cancelled_sync": ("dead_letter", "CancelledError"),
    "deep_result": ("failed", "nested too deeply"),
    "surrogate_result": ("failed", "lone surrogate"),
    "object_result": ("failed", "not a JSON value"),
}


async def test_task_code_cannot_end_or_wedge_the_sidecar(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    marks = tmp_path / "marks"
    marks.mkdir()
    sc = await spawn(*UNRULY, db=db)
    await sc.subscribe()
    ids: dict[str, int] = {}
    for name in BAD:
        ids[name] = await sc.submit(
            f"unruly::{name}",
            {"marker": str(marks / name)},
            retry={"max_retries": 0, "backoff": "constant", "base_ms": 0},
        )
        # A sibling submitted after each bad task still completes.
        sibling = await sc.submit("unruly::ok", {"after": name})
        assert (await sc.wait_done(sibling))["kind"] == "completed", name
    for name, (status, message) in BAD.items():
        await sc.wait_done(ids[name])
        rec = await sc.result("task.get", {"id": ids[name]})
        assert rec["status"] == status, (name, rec)
        assert message in (rec["last_error"] or ""), (name, rec["last_error"])
        event = next(
            e
            for e in sc.events
            if e.get("task_id") == ids[name] and e["kind"] in ("failed", "dead_lettered")
        )
        assert message in event["error"], (name, event)
    # The sidecar is alive and well, and exits cleanly.
    assert (await sc.result("sidecar.info"))["version"]
    assert sc.proc.returncode is None
    assert await sc.shutdown() == 0
    # A restart does not run any of them again (their outcomes were recorded).
    again = await spawn(*UNRULY, db=db)
    ok = await again.submit("unruly::ok", {"after": "restart"})
    await again.wait_status(ok, "completed")
    for name in BAD:
        assert (marks / name).read_text().count("run") == 1, name
        assert (await again.result("task.get", {"id": ids[name]}))["status"] == BAD[name][0]


# --------------------------------------------------------------------------
# 3. Worker-declared types survive a restart


async def test_tasks_of_a_worker_declared_type_wait_across_a_restart(
    spawn: Spawn, ws_connect: WsConnect, tmp_path: Path
) -> None:
    db = tmp_path / "w.db"
    sc = await spawn("--ws", db=db)
    worker = await ws_connect(sc)
    decl = {"task_type": "uploads::put", "config": {"priority": "high"}}
    await worker.result("worker.register", {"task_types": [decl]})
    await sc.result("scheduler.pause")
    ids = [await sc.submit("uploads::put", {"n": n}) for n in range(5)]
    await worker.close()  # its type stays declared: tasks of it are queued
    await sc.wait_status(ids[0], "pending")
    assert await sc.shutdown() == 0

    again = await spawn("--ws", db=db)
    await again.subscribe()
    # Dispatch turns run (an echo completes), and the uploads still wait.
    echo = await again.submit("demo::echo", "turns run")
    await again.wait_status(echo, "completed")
    for tid in ids:
        rec = await again.result("task.get", {"id": tid})
        assert rec["status"] == "pending" and rec["retry_count"] == 0, rec
    info = {t["task_type"]: t for t in (await again.result("sidecar.info"))["task_types"]}
    assert info["uploads::put"]["executor"] == "none"
    assert info["uploads::put"]["config"]["priority"] == 64
    # A worker serving the type (declared by the restart, so no config needed).
    worker = await ws_connect(again)
    await worker.result("worker.register", {"task_types": ["uploads::put"], "concurrency": 5})
    taken: set[Any] = set()
    for _ in ids:
        req = await worker.next_request(taken=taken)
        await worker.respond(req["id"], {"result": {"put": req["params"]["task"]["id"]}})
    for tid in ids:
        assert (await again.wait_done(tid))["kind"] == "completed"


# --------------------------------------------------------------------------
# 4. Clocks that task code cannot stop

HOST = """
import json, os, subprocess, sys, time
cmd, stdin_r, stdin_w = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cmd += ["--parent-pid", str(os.getpid())]
proc = subprocess.Popen(cmd, stdin=stdin_r, stdout=subprocess.PIPE, pass_fds=(stdin_r,))
os.close(stdin_r)
ready = json.loads(proc.stdout.readline())
for msg in (
    {"id": 1, "method": "events.subscribe", "params": {"filter": {"kinds": ["dispatched"]}}},
    {"id": 2, "method": "task.submit", "params": {"task_type": "unruly::spin",
                                                   "payload": {"s": 120}}},
):
    os.write(stdin_w, json.dumps({"jsonrpc": "2.0", **msg}).encode() + b"\\n")
while json.loads(proc.stdout.readline()).get("method") != "event":
    pass
print(json.dumps({"pid": ready["params"]["pid"]}), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("how", ["watchdog", "stdin_eof"])
async def test_a_blocked_loop_cannot_outlive_the_parent(
    how: str, spawn: Spawn, tmp_path: Path
) -> None:
    """The executor spins the event loop; the parent dies: the sidecar exits within 2 s.

    ``watchdog``: this test holds the sidecar's stdin open too, so only the
    parent-pid watchdog can notice. ``stdin_eof``: the parent's death closes it.
    """
    db = tmp_path / "spin.db"
    script = write_file(tmp_path / "host.py", textwrap.dedent(HOST))
    cmd = sidecar_cmd("--stdio", "--no-resource-monitoring", *UNRULY, "--db", str(db))
    r, w = os.pipe()
    host = subprocess.Popen(
        [sys.executable, str(script), json.dumps(cmd), str(r), str(w)],
        stdout=subprocess.PIPE,
        pass_fds=(r, w),
        env=child_env(),
    )
    os.close(r)
    if how == "stdin_eof":
        os.close(w)
    pid = 0
    try:
        assert host.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(host.stdout.readline), 20)
        pid = json.loads(line)["pid"]
        host.kill()
        host.wait()
        took = await wait_gone(pid, 10)
        print(f"\n{how}: a sidecar with a blocked loop exited {took:.2f} s after its parent")
        assert took < 2.0
    finally:
        if how == "watchdog":
            os.close(w)
        if pid and not gone(pid):
            os.kill(pid, signal.SIGKILL)
        if host.poll() is None:
            host.kill()
    # It left the task as a clean shutdown would: pending, no retry counted.
    again = await spawn("--max-concurrency", "0", *UNRULY, db=db, demo=False)
    (rec,) = (await again.result("task.list", {}))["tasks"]
    assert rec["status"] == "pending" and rec["retry_count"] == 0, rec


async def test_uncooperative_executors_cannot_stretch_a_shutdown(
    spawn: Spawn, tmp_path: Path
) -> None:
    db = tmp_path / "deaf.db"
    sc = await spawn("--drain-timeout-ms", "500", *UNRULY, db=db)
    await sc.subscribe(kinds=["dispatched"])
    ids = [
        await sc.submit("unruly::deaf_async", {"s": 60}),
        await sc.submit("unruly::deaf_sync", {"s": 60}),
    ]
    for tid in ids:
        await sc.wait_task_event(tid, "dispatched")
    started = time.monotonic()
    sc.send_signal(signal.SIGTERM)
    assert await sc.wait_exit(timeout=10) == 0
    took = time.monotonic() - started
    print(f"\nshutdown with executors ignoring cancellation took {took:.2f} s (drain 0.5 s)")
    assert took < 0.5 + 3.0 + 1.0, "drain timeout plus the documented 3 s grace"
    again = await spawn("--max-concurrency", "0", *UNRULY, db=db)
    for tid in ids:
        rec = await again.result("task.get", {"id": tid})
        assert rec["status"] == "pending" and rec["retry_count"] == 0, rec


async def test_cpu_bound_thread_tasks_share_the_gil_with_the_loop(
    spawn: Spawn, tmp_path: Path
) -> None:
    """The sidecar shortens the GIL switch interval (5 ms by default) so that
    plain ``def`` tasks computing in Python hold the event loop off for at most
    1 ms at a time: the clients are answered while they run."""
    sc = await spawn(*UNRULY, db=tmp_path / "gil.db")
    await sc.subscribe(kinds=["dispatched", "completed"])
    ids = [await sc.submit("unruly::greedy_sync", {"s": 0.5, "n": n}) for n in range(2)]
    for tid in ids:
        await sc.wait_task_event(tid, "dispatched")
    took = []
    for _ in range(20):
        t0 = time.monotonic()
        assert (await sc.result("sidecar.info"))["protocol"] == 1
        took.append(time.monotonic() - t0)
    for tid in ids:
        done = await sc.wait_done(tid)
        assert done["kind"] == "completed", done
        assert done["result"] == {"switch_interval_s": 0.001}
    took.sort()
    print(f"\nsidecar.info beside two CPU-bound thread tasks: p50 {took[10] * 1000:.1f} ms")


async def test_a_signal_ends_a_sidecar_whose_loop_is_blocked(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "spin.db"
    sc = await spawn(*UNRULY, db=db)
    await sc.subscribe(kinds=["dispatched"])
    tid = await sc.submit("unruly::spin", {"s": 120})
    await sc.wait_task_event(tid, "dispatched")
    started = time.monotonic()
    sc.send_signal(signal.SIGTERM)
    assert await sc.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 2.5
    assert "blocks the event loop" in sc.stderr_text()
    again = await spawn("--max-concurrency", "0", *UNRULY, db=db)
    rec = await again.result("task.get", {"id": tid})
    assert rec["status"] == "pending" and rec["retry_count"] == 0, rec


@pytest.mark.parametrize("zombies", [2, 6])
async def test_cancelled_threads_hold_their_slots_and_starve_no_one(
    zombies: int, spawn: Spawn, tmp_path: Path
) -> None:
    """Plain-def tasks that ignore cancellation keep their threads; each holds a
    slot until it returns, and every other task still gets a thread."""
    limit = zombies + 1
    sc = await spawn("--max-concurrency", str(limit), "--fs-root", str(tmp_path), *UNRULY)
    await sc.subscribe(kinds=["dispatched", "completed", "cancelled"])
    deaf = [await sc.submit("unruly::deaf_sync", {"s": 30, "n": n}) for n in range(zombies)]
    for tid in deaf:
        await sc.wait_task_event(tid, "dispatched")
    for tid in deaf:
        assert (await sc.result("task.cancel", {"id": tid}))["cancelled"] is True
    quick = [await sc.submit("unruly::quick_sync", {"n": n}) for n in range(5)]
    write_file(tmp_path / "f.bin", os.urandom(4096))
    quick.append(await sc.submit("fs::hash", {"path": str(tmp_path / "f.bin")}))
    for tid in quick:
        assert (await sc.wait_done(tid, timeout=15))["kind"] == "completed"
    # One slot was left: the quick tasks ran one at a time, never beside a zombie's
    # slot. (Measured from when each ran: a completed event follows its commit,
    # which may come after the next task started.)
    spans = []
    for tid in quick[:5]:
        result = (await sc.result("task.get", {"id": tid}))["result"]
        spans.append((result["start"], result["end"]))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


# --------------------------------------------------------------------------
# 5. The database deleted or replaced under a running sidecar


async def test_a_deleted_database_refuses_every_later_write(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "data" / "app.db"
    db.parent.mkdir()
    sc = await spawn(db=db)
    acked = [await sc.submit("demo::echo", n) for n in range(5)]
    shutil.rmtree(db.parent)  # "clear app data"
    for n in range(5):
        resp = await sc.error("task.submit", {"task_type": "demo::echo", "payload": 100 + n})
        assert error_of(resp) == STORAGE_ERROR, resp
        assert "deleted" in resp["error"]["message"], resp
    assert (await sc.result("sidecar.info"))["version"], "still serving"
    said = [ln for ln in sc.stderr_lines if "was deleted" in ln]
    assert len(said) == 1, sc.stderr_text()
    assert len(acked) == 5


async def test_a_replaced_database_refuses_every_later_write(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    sc = await spawn(db=db, demo=True)
    older = [await sc.submit("demo::echo", n) for n in range(3)]
    await sc.wait_status(older[-1], "completed")
    copy = tmp_path / "older.db"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    newer = [await sc.submit("demo::echo", n) for n in range(3, 6)]
    os.replace(copy, db)  # a restore tool puts an older copy in place
    refused = 0
    for n in range(6, 12):
        resp = await sc.error("task.submit", {"task_type": "demo::echo", "payload": n})
        assert error_of(resp) == STORAGE_ERROR and "replaced" in resp["error"]["message"]
        refused += 1
    await sc.kill()
    # What is at the path is the older copy: nothing acknowledged after the
    # replacement claims to be in it (every later write was refused).
    conn = sqlite3.connect(db)
    in_file = {r[0] for r in conn.execute("SELECT id FROM tasks UNION SELECT id FROM history")}
    conn.close()
    assert set(older) <= in_file
    assert refused == 6 and len(newer) == 3


async def test_a_deleted_wal_loses_nothing_acknowledged(spawn: Spawn, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    sc = await spawn("--max-concurrency", "0", db=db)
    acked = [await sc.submit("demo::echo", n) for n in range(20)]
    os.unlink(str(db) + "-wal")  # raises if there is none
    resp = await sc.error("task.submit", {"task_type": "demo::echo", "payload": "late"})
    assert error_of(resp) == STORAGE_ERROR and "write-ahead log" in resp["error"]["message"]
    sc.send_signal(signal.SIGKILL)
    await sc.wait_exit()
    again = await spawn("--max-concurrency", "0", db=db)
    for tid in acked:
        assert (await again.result("task.get", {"id": tid}))["status"] == "pending"


# --------------------------------------------------------------------------
# 6. Configuration and semantics


async def test_scheduler_keys_of_the_config_file_take_effect(spawn: Spawn, tmp_path: Path) -> None:
    cfg = write_file(
        tmp_path / "taskmill.toml",
        "[scheduler]\nmax_concurrency = 4\ndefault_group_concurrency = 1\n"
        "default_group_weight = 2\nresource_monitoring = false\n",
    )
    sc = await spawn("--config", str(cfg))
    info = await sc.result("sidecar.info")
    assert info["config"]["resource_monitoring"] is False
    snap = await sc.result("scheduler.snapshot")
    assert snap["monitoring"] is False
    await sc.subscribe(kinds=["dispatched", "completed"])
    ids = [
        await sc.submit("demo::sleep", {"ms": 150, "steps": 1, "result": n}, group="g")
        for n in range(3)
    ]
    groups = {g["group"]: g for g in (await sc.result("scheduler.snapshot"))["groups"]}
    assert groups["g"]["weight"] == 2 and groups["g"]["limit"] == 1
    for tid in ids:
        await sc.wait_done(tid)
    running = peak = 0
    for e in sc.events:
        running += {"dispatched": 1, "completed": -1}.get(e["kind"], 0)
        peak = max(peak, running)
    assert peak == 1, "default_group_concurrency = 1 runs one task of a group at a time"


async def test_a_retried_dead_letter_keeps_its_retry_policy(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    retry = {"max_retries": 0, "backoff": "constant", "base_ms": 0}
    tid = await sidecar.submit("demo::fail", {"times": -1}, retry=retry)
    await sidecar.wait_status(tid, "dead_letter")
    again = await sidecar.result("task.retry_dead_letter", {"id": tid})
    rec = await sidecar.result("task.get", {"id": again["id"]})
    assert rec["max_retries"] == 0
    done = await sidecar.wait_status(again["id"], "dead_letter")
    assert done["retry_count"] == 0, "no retry: max_retries 0 came back with the task"


async def test_a_paused_schedule_is_kept_until_resumed(sidecar: SidecarProcess) -> None:
    await sidecar.subscribe()
    first = await sidecar.submit("demo::echo", "tick", recurring={"interval_ms": 300})
    await sidecar.wait_task_event(first, "completed")
    (sched,) = (await sidecar.result("recurring.list"))["schedules"]
    assert await sidecar.result("recurring.pause", {"id": sched["id"]}) == {}

    async def held() -> dict[str, Any] | None:
        (s,) = (await sidecar.result("recurring.list"))["schedules"]
        return s if s["status"] == "paused" else None

    deadline = time.monotonic() + 10
    while (info := await held()) is None:
        assert time.monotonic() < deadline, "the next occurrence was not held"
        await asyncio.sleep(0.02)
    assert info["paused"] is True and info["id"] == sched["id"]
    rec = await sidecar.result("task.get", {"id": info["task_id"]})
    assert rec["status"] == "paused" and rec["pause_reasons"] == ["schedule"]
    assert await sidecar.result("recurring.resume", {"id": sched["id"]}) == {}
    await sidecar.wait_task_event(info["task_id"], "completed")


async def test_an_urgent_task_preempts_only_what_it_needs(spawn: Spawn) -> None:
    sc = await spawn("--max-concurrency", "2")
    await sc.subscribe()
    slow = [
        await sc.submit(
            "demo::sleep", {"ms": 5000, "steps": 50, "result": n}, priority="background"
        )
        for n in range(2)
    ]
    for tid in slow:
        await sc.wait_task_event(tid, "dispatched")
    urgent = await sc.submit("demo::sleep", {"ms": 600, "steps": 6}, priority="realtime")
    preempted = await sc.wait_event(lambda e: e["kind"] == "preempted")
    assert preempted["by_task_id"] == urgent
    await sc.wait_task_event(urgent, "dispatched")
    snap = await sc.result("scheduler.snapshot")
    assert snap["pause_reasons"] == {"preempted": 1}
    paused = await sc.result("task.get", {"id": preempted["task_id"]})
    assert paused["pause_reasons"] == ["preempted"]
    assert sorted(r["id"] for r in snap["running"]) == sorted(
        [urgent, *(t for t in slow if t != preempted["task_id"])]
    )
    await sc.wait_done(urgent)
    assert len([e for e in sc.events if e["kind"] == "preempted"]) == 1


async def test_a_websocket_only_sidecar_exits_on_stdin_eof(tmp_path: Path) -> None:
    sc = await SidecarProcess.start(
        "--ws", "--demo", "--no-resource-monitoring", "--db", str(tmp_path / "ws.db")
    )
    try:
        assert sc.ready["transports"]["stdio"] is False
        sc.close_stdin()
        assert await sc.wait_exit(timeout=10) == 0
    finally:
        await sc.kill()


async def test_sighup_shuts_down_gracefully(spawn: Spawn) -> None:
    sc = await spawn()
    await sc.subscribe()
    tid = await sc.submit("demo::sleep", {"ms": 400, "steps": 4})
    await sc.wait_task_event(tid, "dispatched")
    sc.send_signal(signal.SIGHUP)
    shutdown = await sc.wait_event(lambda e: e["kind"] == "shutdown")
    assert shutdown["mode"] == "graceful"
    assert (await sc.wait_done(tid))["kind"] == "completed"
    assert await sc.wait_exit() == 0
