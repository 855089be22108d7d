"""taskmill through the sidecar: launch time, round trips, pipelining, events.

Each run starts a real ``python -m taskmill`` process on a fresh database in
the bench directory and speaks the wire protocol to it: JSON lines over
stdio, MessagePack frames over WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import msgpack
from websockets.asyncio.client import ClientConnection, connect

from bench import huey_peer
from bench.harness import Case, Config, Measurement, rate

GROUP = "taskmill sidecar"

READY = "sidecar launch to sidecar.ready (python -m taskmill)"
STDIO_P50 = "stdio task.submit round trip p50"
STDIO_P99 = "stdio task.submit round trip p99"
STDIO_PIPE = "stdio pipelined task.submit"
WS_P50 = "ws (msgpack) task.submit round trip p50"
WS_P99 = "ws (msgpack) task.submit round trip p99"
WS_PIPE = "ws (msgpack) pipelined task.submit"
WS_EVENTS = "events delivered to one ws client"


class Proc:
    """A sidecar process spoken to over stdio."""

    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.ready = ready
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, db: Path, *extra: str) -> tuple[Proc, float]:
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskmill",
            "--stdio",
            "--demo",
            "--db",
            str(db),
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=1 << 24,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        elapsed = time.perf_counter() - t0
        ready = json.loads(line)
        assert ready["method"] == "sidecar.ready", ready
        return cls(proc, ready["params"]), elapsed

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            fut = self._waiting.pop(msg.get("id"), None) if "id" in msg else None
            if fut is not None:
                fut.set_result(msg)

    def send(self, method: str, params: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        assert self.proc.stdin is not None
        line = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        self.proc.stdin.write(line.encode() + b"\n")
        return fut

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()


class Ws:
    """A MessagePack WebSocket client of the sidecar."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events = 0
        self.completed = 0
        self.on_event: asyncio.Event = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, ready: dict[str, Any]) -> Ws:
        ws = ready["transports"]["ws"]
        self = cls(await connect(ws["url"], max_size=None, compression=None))
        await self.call("session.hello", {"token": ws["token"], "protocol": 1, "client": "bench"})
        return self

    async def _read(self) -> None:
        async for frame in self.conn:
            msg = msgpack.unpackb(frame, raw=False)
            if msg.get("method") == "event":
                self.events += 1
                if msg["params"]["kind"] == "completed":
                    self.completed += 1
                    self.on_event.set()
                continue
            fut = self._waiting.pop(msg.get("id"), None)
            if fut is not None:
                fut.set_result(msg)

    def send(self, method: str, params: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        asyncio.get_running_loop().create_task(self.conn.send(msgpack.packb(msg)))
        return fut

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = await asyncio.wait_for(self.send(method, params), 30)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        result: dict[str, Any] = reply["result"]
        return result

    async def close(self) -> None:
        await self.conn.close()
        self._reader.cancel()


def _percentiles(lat_ms: list[float]) -> tuple[float, float]:
    lat_ms.sort()
    return statistics.median(lat_ms), lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))]


def launch_time(cfg: Config) -> float:
    async def run() -> float:
        times = []
        for _ in range(5):
            with cfg.fresh_db("sc-launch") as db:
                proc, elapsed = await Proc.start(db)
                times.append(elapsed * 1000)
                await proc.close()
        return statistics.median(times)

    return asyncio.run(run())


class _Client(Protocol):
    def send(self, method: str, params: dict[str, Any]) -> asyncio.Future[dict[str, Any]]: ...


async def _submit_figures(client: _Client, samples: int, n: int) -> tuple[float, float, float]:
    """task.submit round-trip p50/p99 (ms), then pipelined submits/s."""
    lat = []
    for i in range(samples + 20):
        t0 = time.perf_counter()
        await client.send("task.submit", {"task_type": "demo::echo", "payload": i})
        if i >= 20:  # warm-up
            lat.append((time.perf_counter() - t0) * 1000)
    p50, p99 = _percentiles(lat)
    t0 = time.perf_counter()
    futs = [
        client.send("task.submit", {"task_type": "demo::echo", "payload": -i - 1}) for i in range(n)
    ]
    await asyncio.gather(*futs)
    return p50, p99, rate(n, time.perf_counter() - t0)


def stdio_submit(cfg: Config, samples: int, n: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        with cfg.fresh_db("sc-stdio") as db:
            proc, _ = await Proc.start(db, "--max-concurrency", "0")
            try:
                p50, p99, pipe = await _submit_figures(proc, samples, n)
                return {STDIO_P50: p50, STDIO_P99: p99, STDIO_PIPE: pipe}
            finally:
                await proc.close()

    return asyncio.run(run())


def ws_submit(cfg: Config, samples: int, n: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        with cfg.fresh_db("sc-ws") as db:
            proc, _ = await Proc.start(db, "--ws", "--max-concurrency", "0")
            ws = await Ws.open(proc.ready)
            try:
                p50, p99, pipe = await _submit_figures(ws, samples, n)
                return {WS_P50: p50, WS_P99: p99, WS_PIPE: pipe}
            finally:
                await ws.close()
                await proc.close()

    return asyncio.run(run())


def ws_events(cfg: Config, n: int) -> float:
    """Every event of n demo::echo tasks (submitted, dispatched, completed) to one client."""

    async def run() -> float:
        with cfg.fresh_db("sc-events") as db:
            proc, _ = await Proc.start(db, "--ws", "--max-concurrency", "8")
            ws = await Ws.open(proc.ready)
            try:
                await ws.call("events.subscribe", {"filter": {}})
                await ws.call("scheduler.pause", {})
                for start in range(0, n, 1000):
                    tasks = [
                        {"task_type": "demo::echo", "payload": i}
                        for i in range(start, min(n, start + 1000))
                    ]
                    await ws.call("task.submit_batch", {"tasks": tasks})
                before = ws.events
                t0 = time.perf_counter()
                await ws.call("scheduler.resume", {})
                async with asyncio.timeout(120):
                    while ws.completed < n:
                        await ws.on_event.wait()
                        ws.on_event.clear()
                return rate(ws.events - before, time.perf_counter() - t0)
            finally:
                await ws.close()
                await proc.close()

    return asyncio.run(run())


def cases(cfg: Config) -> Sequence[Case]:
    samples = cfg.latency_samples * 4
    n = cfg.n
    ms = "ms"
    return [
        Case.single(Measurement(READY, ms, False, GROUP), lambda: launch_time(cfg)),
        Case(
            (
                Measurement(STDIO_P50, ms, False, GROUP),
                Measurement(STDIO_P99, ms, False, GROUP),
                Measurement(STDIO_PIPE, "tasks/s", True, GROUP, vs_huey=huey_peer.ENQUEUE_NORMAL),
            ),
            lambda: stdio_submit(cfg, samples, n),
        ),
        Case(
            (
                Measurement(WS_P50, ms, False, GROUP),
                Measurement(WS_P99, ms, False, GROUP),
                Measurement(WS_PIPE, "tasks/s", True, GROUP, vs_huey=huey_peer.ENQUEUE_NORMAL),
            ),
            lambda: ws_submit(cfg, samples, n),
        ),
        Case.single(Measurement(WS_EVENTS, "events/s", True, GROUP), lambda: ws_events(cfg, n)),
    ]
