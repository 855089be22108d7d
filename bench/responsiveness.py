"""Does IO awareness keep the machine responsive?

A foreground probe, in its own process the way the user's editor would be,
writes 4 KiB at offset 0 of its file and fsyncs, every 10 ms; each latency is
a sample. Against it, background tasks (priority ``background``, 8 at a time)
each write an 8 MB file (24 MB with ``--full``), fsync it and delete it. Each
row below is measured over a steady window (5 s, about 500 probe samples, and
at least 320; 8 s with ``--full``) after a warm-up (2 s) in which the
scheduler starts and any controller settles; the probe runs from before the
scheduler starts to the end.

- **idle**: the probe alone.
- **awareness off**: no resource monitoring; the tasks write 1 MiB at a time
  with plain ``write`` (what an executor did before ``ctx.io``).
- **awareness on**: the same tasks, with monitoring and the gating of whole
  task starts (IO budget, throttle policy) but no latency target.
- **latency target**: the tasks write through ``ctx.io`` (paced, a bounded
  dirty backlog) and delete their files through it (``ctx.io.remove_sync``:
  the blocks given back a step at a time) with the sidecar's defaults:
  monitoring on and the latency target (``io_latency_target_ms``) steering
  the pacer; with the probe (foreground busy) and without it (foreground
  idle).
- **fixed rate R MB/s**: the ``ctx.io`` tasks at a fixed pacer rate (no target),
  with the probe: the static sweep the latency target is compared with.

Rows: the probe's p50/p99 per run, the batch's MB/s (bytes the tasks wrote in
the window), the best fixed rate whose p99 stays within 3x idle (the tail
target: the sweep's rates in order up to the first over it), and, as before,
the total time of a 100-task batch (awareness off, on) with the probe
running.

Goals (issue 20): ``probe fsync p99, latency target`` at most 3x idle;
``batch MB/s, latency target, foreground idle`` at least 0.8x awareness off;
``batch MB/s, latency target, foreground busy`` at least the best fixed rate.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import Case, Config, Measurement
from taskmill import Domain, IoBudget, Scheduler, SchedulerConfig, Submission

GROUP = "responsiveness (IO awareness)"

PROBE_IDLE_P50 = "probe fsync p50, idle"
PROBE_IDLE_P99 = "probe fsync p99, idle"
PROBE_OFF_P50 = "probe fsync p50, awareness off"
PROBE_OFF_P99 = "probe fsync p99, awareness off"
PROBE_ON_P50 = "probe fsync p50, awareness on"
PROBE_ON_P99 = "probe fsync p99, awareness on"
PROBE_TARGET_P50 = "probe fsync p50, latency target"
PROBE_TARGET_P99 = "probe fsync p99, latency target"
MBS_OFF = "batch MB/s, awareness off"
MBS_TARGET_BUSY = "batch MB/s, latency target, foreground busy"
MBS_TARGET_IDLE = "batch MB/s, latency target, foreground idle"
MBS_BEST_FIXED = "batch MB/s, best fixed rate within 3x idle p99"
TOTAL_OFF = "batch total time, awareness off"
TOTAL_ON = "batch total time, awareness on"

#: The static sweep, MB/s.
FIXED_RATES = (10, 20, 40, 60, 80, 120, 160)
MB = 1_000_000
CONCURRENCY = 8

PROBE = r"""
import os, sys, threading, time
path = sys.argv[1]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
block = os.urandom(4096)
print("ready", flush=True)
due = time.monotonic()
while not stop.is_set():
    t0 = time.perf_counter()
    os.pwrite(fd, block, 0)
    os.fsync(fd)
    print(f"{time.monotonic():.6f} {(time.perf_counter() - t0) * 1000:.4f}", flush=True)
    due += 0.01
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    else:
        due = time.monotonic()
"""
#: Probe samples wanted in every window (the window grows until there are).
MIN_SAMPLES = 320


def fixed_p99(rate: int) -> str:
    return f"probe fsync p99, fixed {rate} MB/s"


def fixed_mbs(rate: int) -> str:
    return f"batch MB/s, fixed {rate} MB/s"


class Probe:
    """The foreground: a process writing and fsyncing 4 KiB every 10 ms.

    Samples (monotonic time, ms) are read as they come, so a run can wait
    until its window holds enough of them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline() != "ready\n":
            raise RuntimeError("the probe did not start")
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,))
        self._reader.start()
        return self

    def _read(self, stream: Any) -> None:
        for line in stream:
            t, ms = line.split()
            self.samples.append((float(t), float(ms)))

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None and self._reader is not None
        self._proc.communicate("", timeout=60)
        self._reader.join(60)

    def count_since(self, start: float) -> int:
        return sum(1 for t, _ in self.samples[-2 * MIN_SAMPLES :] if t >= start)

    def within(self, start: float, end: float) -> list[float]:
        return [ms for t, ms in self.samples if start <= t <= end]


def percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 300:
        raise RuntimeError(f"only {len(latencies)} probe samples (at least 300 wanted)")
    lat = sorted(latencies)
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


class Written:
    """Bytes the tasks wrote, counted as they go (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n


def heavy_domain(folder: Path, size_mb: int, written: Written) -> Domain:
    """``heavy::raw`` writes 1 MiB at a time with plain writes and unlinks;
    ``heavy::paced`` goes through ``ctx.io`` (256 KiB per call, and
    ``ctx.io.remove_sync``)."""
    d = Domain("heavy")
    mib = os.urandom(1 << 20)
    quarter = memoryview(mib)[: 1 << 18]

    def raw(payload: Any, ctx: Any) -> Any:
        path = folder / f"heavy-{ctx.task_id}.bin"
        try:
            with open(path, "wb") as f:
                for _ in range(size_mb):
                    ctx.check_cancelled()
                    f.write(mib)
                    ctx.record_write_bytes(len(mib))
                    written.add(len(mib))
                f.flush()
                os.fsync(f.fileno())
        finally:
            path.unlink(missing_ok=True)

    def paced(payload: Any, ctx: Any) -> Any:
        path = folder / f"heavy-{ctx.task_id}.bin"
        try:
            with open(path, "wb") as f:
                for _ in range(size_mb * 4):
                    ctx.io.write_sync(f, quarter)
                    written.add(len(quarter))
                f.flush()
                os.fsync(f.fileno())
        finally:
            ctx.io.remove_sync(path, missing_ok=True)

    budget = IoBudget(disk_write=size_mb << 20)
    d.register("raw", raw, expected_io=budget)
    d.register("paced", paced, expected_io=budget)
    return d


def settings(mode: str, rate_mbs: int | None = None) -> SchedulerConfig:
    base = SchedulerConfig(max_concurrency=CONCURRENCY, sample_interval_ms=100)
    if mode == "off":
        return base.evolve(resource_monitoring=False)
    if mode == "on":  # the gating of task starts alone, as before the latency target
        return base.evolve(resource_monitoring=True, io_latency_target_ms=0)
    if mode == "target":  # the sidecar's defaults
        return base.evolve(resource_monitoring=True)
    if mode == "fixed":
        assert rate_mbs is not None
        return base.evolve(resource_monitoring=False, io_rate_limit_bps=rate_mbs * MB)
    raise ValueError(mode)


def steady(
    cfg: Config,
    folder: Path,
    *,
    task: str,
    config: SchedulerConfig,
    probe: bool,
    size_mb: int,
    warmup: float,
    window: float,
) -> tuple[float, list[float]]:
    """One steady run: (batch MB/s in the window, probe latencies in the window).

    With the probe, the window lasts until it holds :data:`MIN_SAMPLES`
    samples (slow fsyncs make fewer), at most 10x ``window``.
    """
    written = Written()
    domain = heavy_domain(folder, size_mb, written)

    async def run(p: Probe | None) -> tuple[float, float, int, int]:
        with cfg.fresh_db("resp") as db:
            sched = Scheduler(str(db), domains=[domain], config=config)
            await sched.start()
            try:
                await sched.submit_batch(
                    [
                        Submission(task_type=task, payload=i, priority="background")
                        for i in range(5000)
                    ]
                )
                await asyncio.sleep(warmup)
                t0, b0 = time.monotonic(), written.bytes
                await asyncio.sleep(window)
                while p is not None and p.count_since(t0) < MIN_SAMPLES:
                    if time.monotonic() - t0 > 10 * window:
                        break
                    await asyncio.sleep(0.05)
                return t0, time.monotonic(), b0, written.bytes
            finally:
                await sched.shutdown("hard")

    if probe:
        with Probe(folder / "probe.bin") as p:
            t0, t1, b0, b1 = asyncio.run(run(p))
        latencies = p.within(t0, t1)
    else:
        t0, t1, b0, b1 = asyncio.run(run(None))
        latencies = []
    return (b1 - b0) / (t1 - t0) / MB, latencies


def idle(folder: Path, window: float) -> list[float]:
    with Probe(folder / "probe.bin") as p:
        start = time.monotonic()
        time.sleep(window)
        while p.count_since(start) < MIN_SAMPLES and time.monotonic() - start < 10 * window:
            time.sleep(0.05)
    return [ms for _, ms in p.samples]


def experiment(cfg: Config, size_mb: int, window: float, warmup: float) -> dict[str, float]:
    folder = cfg.workdir / "responsiveness"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    run = dict(size_mb=size_mb, warmup=warmup, window=window)
    out[PROBE_IDLE_P50], out[PROBE_IDLE_P99] = percentiles(idle(folder, window))

    mbs, lat = steady(cfg, folder, task="heavy::raw", config=settings("off"), probe=True, **run)
    out[MBS_OFF] = mbs
    out[PROBE_OFF_P50], out[PROBE_OFF_P99] = percentiles(lat)
    _, lat = steady(cfg, folder, task="heavy::raw", config=settings("on"), probe=True, **run)
    out[PROBE_ON_P50], out[PROBE_ON_P99] = percentiles(lat)
    mbs, lat = steady(
        cfg, folder, task="heavy::paced", config=settings("target"), probe=True, **run
    )
    out[MBS_TARGET_BUSY] = mbs
    out[PROBE_TARGET_P50], out[PROBE_TARGET_P99] = percentiles(lat)
    out[MBS_TARGET_IDLE], _ = steady(
        cfg, folder, task="heavy::paced", config=settings("target"), probe=False, **run
    )
    best, passing = 0.0, True
    for rate in FIXED_RATES:
        mbs, lat = steady(
            cfg, folder, task="heavy::paced", config=settings("fixed", rate), probe=True, **run
        )
        out[fixed_mbs(rate)] = mbs
        out[fixed_p99(rate)] = percentiles(lat)[1]
        # The best rate that meets the tail target: the sweep's rates in order,
        # up to the first over it (a faster one that gets lucky afterwards
        # does not count: the tail grows with the rate).
        passing = passing and out[fixed_p99(rate)] <= 3 * out[PROBE_IDLE_P99]
        if passing:
            best = mbs
    out[MBS_BEST_FIXED] = best
    return out


async def run_batch(
    folder: Path, db: Path, tasks: int, size_mb: int, config: SchedulerConfig
) -> float:
    sched = Scheduler(str(db), domains=[heavy_domain(folder, size_mb, Written())], config=config)
    await sched.start()
    try:
        sub = sched.subscribe(kinds=["completed"], maxsize=tasks + 10)
        t0 = time.perf_counter()
        await sched.submit_batch(
            [
                Submission(task_type="heavy::raw", payload=i, priority="background")
                for i in range(tasks)
            ]
        )
        done = 0
        while done < tasks:
            ev = await sub.get(timeout=600)
            done += ev.kind == "completed"
        return time.perf_counter() - t0
    finally:
        await sched.shutdown("hard")


def batches(cfg: Config, tasks: int, size_mb: int) -> dict[str, float]:
    folder = cfg.workdir / "responsiveness"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    for mode, total in (("off", TOTAL_OFF), ("on", TOTAL_ON)):
        with cfg.fresh_db(f"resp-{mode}") as db, Probe(folder / "probe.bin"):
            out[total] = asyncio.run(run_batch(folder, db, tasks, size_mb, settings(mode)))
    return out


def cases(cfg: Config) -> Sequence[Case]:
    size_mb, window = (24, 8.0) if cfg.full else (8, 5.0)
    tasks = 200 if cfg.full else 100
    ms, s, mbs = "ms", "s", "MB/s"
    rows = [
        Measurement(PROBE_IDLE_P50, ms, False, GROUP),
        Measurement(PROBE_IDLE_P99, ms, False, GROUP),
        Measurement(PROBE_OFF_P50, ms, False, GROUP),
        Measurement(PROBE_OFF_P99, ms, False, GROUP),
        Measurement(PROBE_ON_P50, ms, False, GROUP),
        Measurement(PROBE_ON_P99, ms, False, GROUP),
        Measurement(PROBE_TARGET_P50, ms, False, GROUP),
        Measurement(PROBE_TARGET_P99, ms, False, GROUP, note="goal: at most 3x idle p99"),
        Measurement(MBS_OFF, mbs, True, GROUP),
        Measurement(MBS_TARGET_BUSY, mbs, True, GROUP, note="goal: at least the best fixed rate"),
        Measurement(MBS_TARGET_IDLE, mbs, True, GROUP, note="goal: at least 0.8x awareness off"),
    ]
    for rate in FIXED_RATES:
        rows.append(Measurement(fixed_p99(rate), ms, False, GROUP))
        rows.append(Measurement(fixed_mbs(rate), mbs, True, GROUP))
    rows.append(Measurement(MBS_BEST_FIXED, mbs, True, GROUP))
    totals = (Measurement(TOTAL_OFF, s, False, GROUP), Measurement(TOTAL_ON, s, False, GROUP))
    return [
        Case(tuple(rows), lambda: experiment(cfg, size_mb, window, warmup=2.0)),
        Case(totals, lambda: batches(cfg, tasks, size_mb)),
    ]
