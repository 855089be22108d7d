"""Abuse of the sidecar by clients with and without the token, measured by a
probe client (issue 15). Shared by ``tests/reliability/test_abuse.py`` and the
reliability section of ``make bench``.

Each scenario starts a real sidecar, runs one abuse while a probe client asks
``task.get`` every 5 ms over its own WebSocket, and reports the probe's
latency percentiles and the sidecar's peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e.harness import SidecarProcess, WsClient, child_env, error_of
from tests.reliability.common import ROOT

MIB = 1024 * 1024
PROBE_EVERY_S = 0.005


@dataclass
class Probe:
    """A client in a process of its own that asks ``task.get`` every 5 ms and
    times each answer (``tests/reliability/probe_main.py``)."""

    url: str
    token: str | None
    task_id: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    _proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.probe_main",
            self.url, self.token or "", str(self.task_id),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=child_env(), cwd=str(ROOT), limit=64 * MIB,
        )  # fmt: skip
        assert self._proc.stdout is not None
        async with asyncio.timeout(20):
            line = await self._proc.stdout.readline()
        assert line.strip() == b"ready", line

    async def stop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
            await proc.wait()
        out = json.loads(line)
        self.latencies_ms = out["latencies_ms"]
        self.errors = out["errors"]

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(q / 100 * len(data)))]

    def summary(self) -> str:
        if not self.latencies_ms:
            return "no probe samples"
        return (
            f"probe task.get p50 {self.pct(50):.2f} ms, p99 {self.pct(99):.2f} ms, "
            f"max {max(self.latencies_ms):.1f} ms over {len(self.latencies_ms)} requests"
        )


class RssWatch:
    """Samples a process's RSS every 20 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.start_rss: int = self.proc.memory_info().rss
        self.peak: int = self.start_rss
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await self._stop.wait()

    async def stop(self) -> int:
        self._stop.set()
        await self._task
        return self.peak


@dataclass
class Outcome:
    name: str
    probe: Probe
    start_rss: int
    peak_rss: int
    seconds: float
    detail: str = ""

    def line(self) -> str:
        return (
            f"{self.name}: {self.probe.summary()}; RSS {self.start_rss / MIB:.0f} -> peak "
            f"{self.peak_rss / MIB:.0f} MiB; {self.seconds:.1f} s; {self.detail}"
        )


async def probed(sc: SidecarProcess, name: str, abuse: Callable[[], Awaitable[str]]) -> Outcome:
    """Run ``abuse`` while a probe measures; returns the figures."""
    target = await sc.submit("demo::echo", "probe target")
    await sc.wait_status(target, "completed")
    probe = Probe(sc.ws_url, sc.ws_token, target)
    await probe.start()
    rss = RssWatch(sc.pid)
    started = time.monotonic()
    try:
        detail = await abuse()
    finally:
        seconds = time.monotonic() - started
        await probe.stop()
        peak = await rss.stop()
    return Outcome(name, probe, rss.start_rss, peak, seconds, detail)


# -- the abuses ----------------------------------------------------------------


async def many_subscriptions(sc: SidecarProcess, n: int = 100_000) -> str:
    """One client asks for ``n`` subscriptions (64 in flight); tasks run meanwhile."""
    ws = await WsClient.connect(sc.ws_url)
    await ws.hello(sc.ws_token)
    other = await WsClient.connect(sc.ws_url)
    await other.hello(sc.ws_token)
    await other.call("events.subscribe", {"filter": {"kinds": ["completed"]}})
    ok = refused = 0
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        nonlocal ok, refused
        async with sem:
            resp = await ws.call("events.subscribe", {"filter": {"task_ids": [i]}}, timeout=60)
        if "error" in resp:
            assert error_of(resp) == (-32008, "limit_exceeded"), resp
            assert resp["error"]["data"]["limit"] == "subscriptions"
            refused += 1
        else:
            ok += 1

    tasks = [asyncio.get_running_loop().create_task(one(i)) for i in range(n)]
    # Meanwhile 50 tasks run; their completions reach the other client.
    ids = [await sc.submit("demo::echo", i) for i in range(50)]
    t0 = time.monotonic()
    for tid in ids:
        await other.wait_task_event(tid, "completed", timeout=30)
    fifty = time.monotonic() - t0
    await asyncio.gather(*tasks)
    await ws.close()
    await other.close()
    return f"{ok} subscriptions, {refused} refused (-32008); 50 tasks end to end in {fifty:.2f} s"


async def many_worker_types(sc: SidecarProcess, connections: int = 10) -> str:
    """Each of ``connections`` clients declares 1,000 inline types (and one more,
    refused); then 500 tasks dispatch."""
    clients = []
    refused = 0
    for c in range(connections):
        ws = await WsClient.connect(sc.ws_url)
        await ws.hello(sc.ws_token)
        clients.append(ws)
        for start in range(0, 1000, 250):
            types = [
                {"task_type": f"abuse{c}::t{i}", "config": {}} for i in range(start, start + 250)
            ]
            await ws.result("worker.register", {"task_types": types}, timeout=60)
        resp = await ws.call(
            "worker.register", {"task_types": [{"task_type": f"abuse{c}::extra", "config": {}}]}
        )
        assert error_of(resp) == (-32008, "limit_exceeded"), resp
        refused += 1
    t0 = time.monotonic()
    batch = [{"task_type": "demo::echo", "payload": i} for i in range(500)]
    out = await sc.result("task.submit_batch", {"tasks": batch})
    for o in out["outcomes"]:
        await sc.wait_status(o["id"], "completed", timeout=60)
    rate = 500 / (time.monotonic() - t0)
    for ws in clients:
        await ws.close()
    return (
        f"{connections * 1000} worker types declared, {refused} refused; "
        f"dispatch {rate:.0f} tasks/s"
    )


async def big_batch(sc: SidecarProcess, n: int = 100_000) -> str:
    """One ``task.submit_batch`` of ``n`` tasks (the scheduler is paused)."""
    await sc.result("scheduler.pause")
    # Distinct payloads (the default key is their hash); MessagePack keeps the
    # 100,000 items under the 4 MiB message limit.
    batch = [{"task_type": "demo::echo", "payload": i} for i in range(n)]
    ws = await WsClient.connect(sc.ws_url)
    await ws.hello(sc.ws_token)
    t0 = time.monotonic()
    out = await ws.result("task.submit_batch", {"tasks": batch}, timeout=300)
    await ws.close()
    took = time.monotonic() - t0
    assert len(out["outcomes"]) == n
    assert all(o["outcome"] == "inserted" for o in out["outcomes"])
    return f"{n} tasks in one batch in {took:.1f} s ({n / took:.0f} tasks/s)"


async def big_cancel(sc: SidecarProcess, n: int = 200_000) -> str:
    """``task.cancel_where`` over ``n`` queued tasks."""
    await sc.result("scheduler.pause")
    ws = await WsClient.connect(sc.ws_url)
    await ws.hello(sc.ws_token)
    for start in range(0, n, 50_000):
        batch = [
            {"task_type": "demo::echo", "payload": i, "tags": {"bulk": "yes"}}
            for i in range(start, min(n, start + 50_000))
        ]
        await ws.result("task.submit_batch", {"tasks": batch}, timeout=300)
    await ws.close()
    t0 = time.monotonic()
    out = await sc.result("task.cancel_where", {"tags": {"bulk": "yes"}}, timeout=600)
    took = time.monotonic() - t0
    assert len(out["cancelled"]) == n
    return f"cancel_where over {n} tasks in {took:.1f} s"


async def silent_flood(
    sc: SidecarProcess, seconds: float = 6.0, openers: int = 300, tries: int = 8
) -> str:
    """A process of ``openers`` loops opens WebSocket connections that never
    say hello, as fast as the sidecar lets them; meanwhile the real client
    connects and says hello ``tries`` times (retrying a dropped connection as
    bridge_js does), and fs::hash tasks run."""
    url = sc.ws_url
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reliability.flood_main", url, str(openers),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=child_env(), cwd=str(ROOT),
    )  # fmt: skip
    assert flood.stdin is not None and flood.stdout is not None
    attempts: list[int] = []
    try:
        async with asyncio.timeout(20):
            assert (await flood.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(1.0)  # the flood is on
        for _ in range(tries):
            for attempt in range(1, 101):
                try:
                    ws = await WsClient.connect(url)
                    await ws.hello(sc.ws_token)
                    attempts.append(attempt)
                    break
                except (OSError, InvalidHandshake, ConnectionClosed, AssertionError):
                    await asyncio.sleep(0.02)
            else:
                raise AssertionError("the app could not get in, 100 attempts")
            assert (await ws.result("sidecar.info"))["protocol"] == 1
            await ws.close()
            await asyncio.sleep(seconds / tries)
    finally:
        flood.stdin.close()
        async with asyncio.timeout(30):
            counts = (await flood.stdout.readline()).split()
            await flood.wait()
    opened = int(counts[0]) if counts else 0
    return (
        f"{opened} silent connections opened by {openers} loops; the app got in "
        f"{len(attempts)}/{tries}, attempts {attempts}"
    )


async def oversized_frames(sc: SidecarProcess, clients: int = 50, size: int = 8 * MIB) -> str:
    """``clients`` connections each send a ``size`` frame before hello, at once."""
    url = sc.ws_url
    frame = os.urandom(size)
    closed = 0

    async def one() -> None:
        nonlocal closed
        try:
            ws = await connect(url, max_size=None, open_timeout=10)
        except (OSError, InvalidHandshake):
            closed += 1
            return
        try:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.send(frame)
                async with asyncio.timeout(10):
                    await ws.wait_closed()
            closed += 1
        finally:
            with contextlib.suppress(Exception):
                ws.transport.abort()

    await asyncio.gather(*(one() for _ in range(clients)))
    return f"{clients} clients sent {size // MIB} MiB frames before hello; {closed} were closed"


def limit_fds(n: int) -> Callable[[], None]:
    """A preexec_fn: soft and hard RLIMIT_NOFILE of ``n`` in the child."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def raise_own_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


__all__ = [
    "Outcome",
    "Probe",
    "RssWatch",
    "big_batch",
    "big_cancel",
    "limit_fds",
    "many_subscriptions",
    "many_worker_types",
    "oversized_frames",
    "probed",
    "raise_own_fd_limit",
    "silent_flood",
]
