"""Does IO awareness keep the machine responsive?

Runs a batch of disk-heavy background tasks (each writes several MB to its own
file and fsyncs) three ways while a foreground probe writes and fsyncs 4 KB
every 100 ms, the way an app saving a document would:

- idle: the probe alone (the baseline);
- awareness off: the scheduler runs the batch at full concurrency;
- awareness on: resource monitoring, the IO budget gate and the throttle policy.

It reports the probe's p50/p99 latency in each run and the batch's total time.
Goal: with awareness on, probe p99 within 2x of idle, at no more than 1.5x the
total time of the awareness-off run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
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
TOTAL_OFF = "batch total time, awareness off"
TOTAL_ON = "batch total time, awareness on"


class Probe:
    """Writes and fsyncs 4 KB every 100 ms on a thread; records each latency."""

    def __init__(self, path: Path, period_s: float = 0.1) -> None:
        self.path = path
        self.period_s = period_s
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        block = os.urandom(4096)
        with open(self.path, "wb") as f:
            while not self._stop.wait(self.period_s):
                t0 = time.perf_counter()
                f.seek(0)
                f.write(block)
                f.flush()
                os.fsync(f.fileno())
                self.latencies_ms.append((time.perf_counter() - t0) * 1000)

    def percentiles(self) -> tuple[float, float]:
        lat = sorted(self.latencies_ms)
        return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def heavy_domain(folder: Path, size_mb: int) -> Domain:
    d = Domain("heavy")
    chunk = os.urandom(1 << 20)

    def write(payload: Any, ctx: Any) -> Any:
        path = folder / f"heavy-{payload}.bin"
        with open(path, "wb") as f:
            for _ in range(size_mb):
                ctx.check_cancelled()
                f.write(chunk)
                ctx.record_write_bytes(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        return None

    d.register("write", write, expected_io=IoBudget(disk_write=size_mb << 20))
    return d


async def run_batch(
    folder: Path, db: Path, tasks: int, size_mb: int, aware: bool, concurrency: int
) -> float:
    cfg = SchedulerConfig(
        max_concurrency=concurrency,
        resource_monitoring=aware,
        sample_interval_ms=100,
    )
    sched = Scheduler(str(db), domains=[heavy_domain(folder, size_mb)], config=cfg)
    await sched.start()
    try:
        sub = sched.subscribe(kinds=["completed"], maxsize=tasks + 10)
        t0 = time.perf_counter()
        await sched.submit_batch(
            [
                Submission(task_type="heavy::write", payload=i, priority="background")
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


def experiment(cfg: Config, tasks: int, size_mb: int, concurrency: int = 8) -> dict[str, float]:
    folder = cfg.workdir / "responsiveness"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    with Probe(folder / "probe-idle.bin") as probe:
        time.sleep(3.0)
    out[PROBE_IDLE_P50], out[PROBE_IDLE_P99] = probe.percentiles()
    for aware, p50, p99, total in (
        (False, PROBE_OFF_P50, PROBE_OFF_P99, TOTAL_OFF),
        (True, PROBE_ON_P50, PROBE_ON_P99, TOTAL_ON),
    ):
        with cfg.fresh_db(f"resp-{aware}") as db, Probe(folder / f"probe-{aware}.bin") as probe:
            out[total] = asyncio.run(run_batch(folder, db, tasks, size_mb, aware, concurrency))
        out[p50], out[p99] = probe.percentiles()
    return out


def cases(cfg: Config) -> Sequence[Case]:
    tasks, size_mb = (200, 24) if cfg.full else (100, 8)
    ms, s = "ms", "s"
    ms_rows = (
        Measurement(PROBE_IDLE_P50, ms, False, GROUP),
        Measurement(PROBE_IDLE_P99, ms, False, GROUP),
        Measurement(PROBE_OFF_P50, ms, False, GROUP),
        Measurement(PROBE_OFF_P99, ms, False, GROUP),
        Measurement(PROBE_ON_P50, ms, False, GROUP),
        Measurement(PROBE_ON_P99, ms, False, GROUP, note="goal: within 2x of idle p99"),
        Measurement(TOTAL_OFF, s, False, GROUP),
        Measurement(TOTAL_ON, s, False, GROUP, note="goal: at most 1.5x awareness off"),
    )
    return [Case(ms_rows, lambda: experiment(cfg, tasks, size_mb))]
