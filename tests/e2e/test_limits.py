"""Documented per-connection limits and the bounds that protect other clients
(issue 15; the table is in docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path

import psutil

from tests.e2e.conftest import Spawn, WsConnect
from tests.e2e.harness import SidecarProcess, error_field, error_of

APPS = Path(__file__).with_name("apps")
UNRULY = ("--app", "unruly:dom", "--app-path", str(APPS))
LIMIT = (-32008, "limit_exceeded")


async def test_requests_in_flight_beyond_the_limit_are_refused_not_dropped(
    sidecar: SidecarProcess,
) -> None:
    n = 3000
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": 10_000 + i, "method": "sidecar.info"}).encode() + b"\n"
        for i in range(n)
    )
    futs = [sidecar.inbox.expect(10_000 + i) for i in range(n)]
    await sidecar.send_raw(lines)
    answers = await asyncio.wait_for(asyncio.gather(*futs), 30)
    refused = [a for a in answers if "error" in a]
    assert refused, "3,000 requests in one read: some must exceed 1,024 in flight"
    for a in refused:
        assert error_of(a) == LIMIT, a
        assert a["error"]["data"]["limit"] == "requests_in_flight"
        assert a["error"]["data"]["max"] == 1024
    assert len(answers) == n, "every request got an answer"
    assert (await sidecar.result("sidecar.info"))["protocol"] == 1


async def test_a_batch_over_100k_tasks_is_a_limit_a_long_list_is_invalid(
    sidecar: SidecarProcess,
) -> None:
    resp = await sidecar.error(
        "task.submit_batch", {"tasks": [{"task_type": "demo::echo"}] * 100_001}, timeout=60
    )
    assert error_of(resp) == LIMIT and resp["error"]["data"] == {
        "kind": "limit_exceeded",
        "field": "tasks",
        "limit": "batch_length",
        "max": 100_000,
    }
    resp = await sidecar.error("task.list", {"status": ["pending"] * 300_000}, timeout=60)
    assert error_of(resp) == (-32602, "invalid_params") and error_field(resp) == "status"
    tags = {f"k{i}": "v" for i in range(200_000)}
    resp = await sidecar.error("task.cancel_where", {"tags": tags}, timeout=60)
    assert error_of(resp) == (-32602, "invalid_params") and error_field(resp) == "tags"


async def test_subscriptions_and_worker_types_have_limits(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    ws = await ws_connect(ws_sidecar)
    for _ in range(1000):
        await ws.result("events.subscribe", {"filter": {"kinds": ["completed"]}})
    resp = await ws.error("events.subscribe", {})
    assert error_of(resp) == LIMIT and resp["error"]["data"]["limit"] == "subscriptions"
    # Another connection has its own budget.
    other = await ws_connect(ws_sidecar)
    await other.result("events.subscribe", {})
    types = [{"task_type": f"many::t{i}", "config": {}} for i in range(1001)]
    resp = await other.error("worker.register", {"task_types": types})
    assert error_of(resp) == LIMIT and resp["error"]["data"]["max"] == 1000
    await other.result("worker.register", {"task_types": types[:1000]})


async def test_a_worker_answer_not_shaped_result_is_a_failure(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    worker = await ws_connect(ws_sidecar)
    decl = {"task_type": "rw::empty", "config": {"retry": {"max_retries": 0}}}
    await worker.result("worker.register", {"task_types": [decl]})
    tid = await ws_sidecar.submit("rw::empty", "x")
    req = await worker.next_request(taken=set())
    await worker.respond(req["id"], {})
    rec = await ws_sidecar.wait_status(tid, "completed", "dead_letter", "failed")
    assert rec["status"] == "dead_letter" and "malformed" in rec["last_error"], rec


async def test_a_remote_run_past_its_timeout_fails_and_the_worker_is_told(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    worker = await ws_connect(ws_sidecar)
    decl = {"task_type": "rw::slow", "config": {"timeout_ms": 300, "retry": {"max_retries": 0}}}
    await worker.result("worker.register", {"task_types": [decl]})
    await ws_sidecar.subscribe(task_types=["rw::slow"])
    tid = await ws_sidecar.submit("rw::slow", "frozen worker")
    req = await worker.next_request(taken=set())
    cancel = await worker.wait_notification(
        "worker.cancel", lambda params: params["task_id"] == tid
    )
    assert cancel["params"]["reason"] == "cancelled"
    rec = await ws_sidecar.wait_status(tid, "dead_letter")
    assert "timed out after 300 ms" in rec["last_error"]
    await worker.respond(req["id"], {"result": "too late"})  # ignored
    assert (await ws_sidecar.result("task.get", {"id": tid}))["status"] == "dead_letter"
    # The worker's slot is free again.
    tid2 = await ws_sidecar.submit("rw::slow", "quick")
    req2 = await worker.next_request(taken={req["id"]})
    await worker.respond(req2["id"], {"result": "done"})
    assert (await ws_sidecar.wait_done(tid2))["kind"] == "completed"


async def test_stdin_pushes_back_while_the_loop_is_blocked(spawn: Spawn) -> None:
    sc = await spawn(*UNRULY, "--drain-timeout-ms", "100")
    await sc.subscribe(kinds=["dispatched"])
    tid = await sc.submit("unruly::spin", {"s": 4})
    await sc.wait_task_event(tid, "dispatched")
    rss0 = psutil.Process(sc.pid).memory_info().rss
    assert sc.proc.stdin is not None
    fd = sc.proc.stdin.get_extra_info("pipe").fileno()
    os.set_blocking(fd, False)
    written = 0
    chunk = b"x" * (1 << 20)
    done = threading.Event()

    def push() -> None:  # a 200 MB line, written as far as the pipe takes it
        nonlocal written
        while written < 200 * (1 << 20) and not done.is_set():
            try:
                written += os.write(fd, chunk)
            except BlockingIOError:
                done.wait(0.01)

    writer = threading.Thread(target=push)
    writer.start()
    await asyncio.sleep(2.0)  # the spin holds the loop for 4 s: see how far the writer got
    taken, rss = written, psutil.Process(sc.pid).memory_info().rss
    done.set()
    writer.join()
    os.set_blocking(fd, True)
    grew = (rss - rss0) >> 20
    print(f"\nwhile the loop was blocked: {taken >> 20} MiB from the pipe, RSS +{grew} MiB")
    assert taken < 8 * (1 << 20), "the reader stops at 16 chunks of 64 KiB"
    assert rss - rss0 < 32 * (1 << 20)
    sc.send_signal(signal.SIGKILL)
    await sc.wait_exit()


async def test_a_full_disk_at_start_says_so(tmp_path: Path) -> None:
    from tests.e2e.harness import run_to_exit
    from tests.reliability.test_storage import fill, small_tmpfs

    with small_tmpfs(tmp_path / "small", "1m") as mnt:
        ballast = fill(mnt)
        try:
            done = await run_to_exit("--stdio", "--db", str(mnt / "tasks.db"))
        finally:
            ballast.unlink()
    assert done.code == 2, done
    assert "disk is full" in done.stderr, done.stderr
