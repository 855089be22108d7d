"""Load and soak against one sidecar: many WebSocket clients, every event watched.

:func:`run_load`: ``clients`` WebSocket clients (MessagePack) each subscribe to
every event and submit their share of ``demo::echo`` tasks (batches and single
submits, pipelined). One of them can be made slow (it stops reading for a
while), so its subscription overflows into ``lagged``. When every task is
final, each client must account for every completed task: seen as a
``completed`` event, or covered by the ``missed`` counts of its ``lagged``
notices. Nothing may be seen twice, and ``seq`` must increase. The sidecar's
RSS and open fds are sampled throughout.

:func:`run_soak`: steady submissions for a while (plus clients connecting and
leaving), sampling RSS and fds every few seconds, and the growth between the
first and the last part of the run.

Used by ``tests/reliability/test_load.py`` (small) and ``bench/reliability.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import SidecarProcess, WsClient, child_env
from tests.reliability.common import MIB, ProcSampler


async def start_sidecar(db: Path, *extra: str) -> SidecarProcess:
    return await SidecarProcess.start(
        "--stdio",
        "--ws",
        "--demo",
        "--no-resource-monitoring",
        "--db",
        str(db),
        *extra,
        env=child_env(),
        ready_timeout=60,
    )


@dataclass
class ClientStats:
    name: str
    submitted: set[int] = field(default_factory=set)
    completed_seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    lagged: int = 0
    missed: int = 0
    events: int = 0
    seq_regressions: int = 0
    last_seq: int = -1


@dataclass
class LoadResult:
    clients: int
    tasks: int
    seconds: float
    events: int
    lagged_notices: int
    missed: int
    peak_rss: int
    base_rss: int
    peak_fds: int
    problems: list[str]

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"load: {self.clients} ws clients, {self.tasks} tasks in {self.seconds:.1f}s "
            f"({self.tasks_per_s:.0f} tasks/s), {self.events} events delivered, "
            f"{self.lagged_notices} lagged notices ({self.missed} missed), sidecar RSS "
            f"{self.base_rss / MIB:.0f} -> peak {self.peak_rss / MIB:.0f} MiB, "
            f"peak {self.peak_fds} fds, {len(self.problems)} problems"
        )


async def _client(
    url: str,
    token: str | None,
    stats: ClientStats,
    n: int,
    *,
    batch: int,
    slow_for: float,
    pad: str,
    done: asyncio.Event,
    all_final_seq: asyncio.Future[int],
) -> None:
    ws = await WsClient.connect(url, encoding="msgpack", rcvbuf=16384 if slow_for else None)
    try:
        await ws.hello(token, client=stats.name)
        await ws.subscribe()
        prev_seq = -1

        def drain() -> None:
            nonlocal prev_seq
            for ev in ws.inbox.events:
                stats.events += 1
                seq = int(ev.get("seq", -1))
                # lagged carries the seq of the last event emitted (not its own).
                stats.last_seq = max(stats.last_seq, seq)
                if ev["kind"] == "lagged":
                    stats.lagged += 1
                    stats.missed += int(ev.get("missed", 0))
                    continue
                if seq <= prev_seq:
                    stats.seq_regressions += 1
                prev_seq = seq
                if ev["kind"] == "completed":
                    tid = ev["task_id"]
                    if tid in stats.completed_seen:
                        stats.duplicates += 1
                    stats.completed_seen.add(tid)
            ws.inbox.events.clear()

        i = 0
        in_flight: list[asyncio.Future[Any]] = []
        slow_started = None
        while i < n:
            if slow_for and slow_started is None and i >= batch:
                ws.pause_reading()
                slow_started = time.monotonic()
            if slow_started is not None and time.monotonic() - slow_started > slow_for:
                ws.resume_reading()
                slow_started = -1.0
            if slow_started is not None and slow_started > 0:
                # While not reading, answers do not arrive either: submit
                # over the stdio-free path would block; just wait it out.
                await asyncio.sleep(0.05)
                continue
            size = min(batch, n - i)
            if size > 1 and i % (batch * 4) != 0:
                tasks = [
                    {"task_type": "demo::echo", "payload": {"c": stats.name, "i": i + k, "p": pad}}
                    for k in range(size)
                ]
                fut = asyncio.ensure_future(
                    ws.result("task.submit_batch", {"tasks": tasks}, timeout=120)
                )
            else:
                size = 1
                fut = asyncio.ensure_future(
                    ws.result(
                        "task.submit",
                        {"task_type": "demo::echo", "payload": {"c": stats.name, "i": i, "p": pad}},
                        timeout=120,
                    )
                )
            in_flight.append(fut)
            i += size
            if len(in_flight) >= 4:
                res = await in_flight.pop(0)
                _record(stats, res)
            drain()
        if slow_started is not None and slow_started > 0:
            ws.resume_reading()
        for pending in in_flight:
            _record(stats, await pending)
        # Keep reading until the scheduler's last event (after all are final)
        # has reached us, or was dropped with a lagged notice.
        final_seq = await all_final_seq
        while stats.last_seq < final_seq:
            drain()
            if stats.last_seq >= final_seq:
                break
            await ws.inbox.wait_for(lambda: ws.inbox.events, 120, "more events")
        drain()
        done.set()
    finally:
        await ws.close()


def _record(stats: ClientStats, res: dict[str, Any]) -> None:
    outs = res.get("outcomes", [res])
    for o in outs:
        assert o["outcome"] == "inserted", o
        stats.submitted.add(int(o["id"]))


async def run_load(
    workdir: Path,
    *,
    clients: int,
    tasks: int,
    batch: int = 50,
    slow_clients: int = 1,
    slow_for: float = 2.0,
    pad: int = 0,
    max_concurrency: int = 8,
    timeout: float = 600,
) -> LoadResult:
    """Run the load; returns figures and the problems found (empty = good)."""
    sc = await start_sidecar(workdir / "load.db", "--max-concurrency", str(max_concurrency))
    sampler = ProcSampler(sc.pid, interval=0.1)
    sampler.sample()
    base = sampler.samples[0].rss
    sampler.start()
    stats = [ClientStats(f"c{k}") for k in range(clients)]
    final_seq: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    per = [tasks // clients + (1 if k < tasks % clients else 0) for k in range(clients)]
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            runners = [
                asyncio.ensure_future(
                    _client(
                        sc.ws_url,
                        sc.ws_token,
                        s,
                        per[k],
                        batch=batch,
                        slow_for=slow_for if k < slow_clients else 0.0,
                        pad="p" * pad,
                        done=asyncio.Event(),
                        all_final_seq=final_seq,
                    )
                )
                for k, s in enumerate(stats)
            ]
            # All submitted and final, then the seq of the last event.
            while True:
                submitted = sum(len(s.submitted) for s in stats)
                if submitted == tasks:
                    left = (await sc.result("task.list", {"limit": 0}))["total"]
                    if left == 0:
                        break
                for r in runners:
                    if r.done():
                        r.result()  # a client that failed fails the run
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            snap = await sc.result("scheduler.snapshot", {})
            final_seq.set_result(int(snap["seq"]))
            await asyncio.gather(*runners)
        await sampler.stop()
        assert await sc.shutdown(60) == 0
    finally:
        if not final_seq.done():
            final_seq.cancel()
        await sampler.stop()
        await sc.kill()

    everyone = set().union(*(s.submitted for s in stats))
    problems: list[str] = []
    if len(everyone) != tasks:
        problems.append(f"{len(everyone)} distinct ids for {tasks} submissions")
    for s in stats:
        unseen = everyone - s.completed_seen
        if len(unseen) > s.missed:
            problems.append(
                f"{s.name}: {len(unseen)} completed tasks never seen, but lagged notices "
                f"account for only {s.missed} missed events"
            )
        if s.completed_seen - everyone:
            problems.append(f"{s.name}: completed events for unknown ids")
        if s.duplicates:
            problems.append(f"{s.name}: {s.duplicates} completed events seen twice")
        if s.seq_regressions:
            problems.append(f"{s.name}: seq went backwards {s.seq_regressions} times")
    return LoadResult(
        clients=clients,
        tasks=tasks,
        seconds=elapsed,
        events=sum(s.events for s in stats),
        lagged_notices=sum(s.lagged for s in stats),
        missed=sum(s.missed for s in stats),
        peak_rss=sampler.peak_rss,
        base_rss=base,
        peak_fds=sampler.peak_fds,
        problems=problems,
    )


# --------------------------------------------------------------------------
# Soak


@dataclass
class SoakResult:
    seconds: float
    tasks: int
    samples: int
    rss_start: float  # MiB, median of the first fifth (after warm-up)
    rss_end: float  # MiB, median of the last fifth
    rss_peak: float
    fds_start: float
    fds_end: float
    connections: int

    @property
    def rss_growth(self) -> float:
        return self.rss_end - self.rss_start

    @property
    def fd_growth(self) -> float:
        return self.fds_end - self.fds_start

    def line(self) -> str:
        return (
            f"soak: {self.seconds:.0f}s, {self.tasks} tasks, {self.connections} client "
            f"connections, {self.samples} samples; RSS {self.rss_start:.1f} -> "
            f"{self.rss_end:.1f} MiB (growth {self.rss_growth:+.1f} MiB, peak "
            f"{self.rss_peak:.1f}), fds {self.fds_start:.0f} -> {self.fds_end:.0f} "
            f"(growth {self.fd_growth:+.0f})"
        )


async def run_soak(
    workdir: Path, *, seconds: float, rate: float = 200.0, sample_every: float = 5.0
) -> SoakResult:
    """Submit ``rate`` tasks/s for ``seconds`` while clients come and go."""
    sc = await start_sidecar(workdir / "soak.db", "--max-concurrency", "4")
    sampler = ProcSampler(sc.pid, interval=sample_every)
    tasks = 0
    connections = 0
    try:
        ws = await WsClient.connect(sc.ws_url)
        await ws.hello(sc.ws_token)
        await ws.subscribe(kinds=["completed", "failed", "lagged"])
        sampler.start()
        started = time.monotonic()
        next_churn = started
        tick = 0.1
        per_tick = max(1, round(rate * tick))
        while time.monotonic() - started < seconds:
            t0 = time.monotonic()
            kinds = ["demo::echo", "demo::sleep", "demo::fail"]
            batch = []
            for k in range(per_tick):
                kind = kinds[(tasks + k) % 10 % 3] if (tasks + k) % 10 < 3 else "demo::echo"
                if kind == "demo::sleep":
                    payload: Any = {"ms": 5, "steps": 1}
                elif kind == "demo::fail":
                    payload = {"times": 1}
                else:
                    payload = {"n": tasks + k, "pad": "x" * 200}
                batch.append({"task_type": kind, "payload": payload, "tags": {"soak": "1"}})
            await ws.result("task.submit_batch", {"tasks": batch}, timeout=60)
            tasks += len(batch)
            ws.inbox.events.clear()
            if time.monotonic() >= next_churn:
                # A client that connects, subscribes, lists and leaves.
                other = await WsClient.connect(sc.ws_url, encoding="json")
                await other.hello(sc.ws_token)
                await other.subscribe()
                await other.result("task.list", {"limit": 10})
                await other.close()
                connections += 1
                next_churn += 2.0
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - t0)))
        elapsed = time.monotonic() - started
        await ws.close()
        await sampler.stop()
        assert await sc.shutdown(60) == 0
    finally:
        await sampler.stop()
        await sc.kill()
    samples = sampler.samples
    # Skip the warm-up (first 10%), then compare the first and last fifths.
    body = samples[max(1, len(samples) // 10) :] or samples
    fifth = max(1, len(body) // 5)
    head, tail = body[:fifth], body[-fifth:]
    return SoakResult(
        seconds=elapsed,
        tasks=tasks,
        samples=len(samples),
        rss_start=statistics.median(s.rss for s in head) / MIB,
        rss_end=statistics.median(s.rss for s in tail) / MIB,
        rss_peak=max(s.rss for s in samples) / MIB,
        fds_start=statistics.median(s.fds for s in head),
        fds_end=statistics.median(s.fds for s in tail),
        connections=connections,
    )


__all__ = ["ClientStats", "LoadResult", "SoakResult", "run_load", "run_soak"]
