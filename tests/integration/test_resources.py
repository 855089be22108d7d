"""IO awareness and backpressure through the scheduler, with injected and real samplers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from taskmill import Domain, InvalidParams, IoBudget, Scheduler, SchedulerConfig, Status
from taskmill.resource import FakeSampler, ResourceMonitor, ResourceSnapshot
from tests.helpers import MakeScheduler, until

MB = 1_000_000


class Hold:
    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.release = asyncio.Event()

    async def __call__(self, payload: Any, ctx: Any) -> Any:
        self.starts.append(payload)
        await self.release.wait()
        return payload


def domain(**executors: Any) -> Domain:
    d = Domain("r")
    for name, fn in executors.items():
        d.register(name, fn)
    return d


def monitor(sched: Scheduler) -> ResourceMonitor:
    """The scheduler's resource monitor (there is one when a sampler is given)."""
    assert sched.awareness.monitor is not None
    return sched.awareness.monitor


async def test_saturated_disk_holds_background_work_but_not_high(
    make_scheduler: MakeScheduler,
) -> None:
    hold = Hold()
    sampler = FakeSampler(ResourceSnapshot(disk_write_bps=500 * MB))
    sched = await make_scheduler(domain(h=hold), sampler=sampler, max_concurrency=4)
    monitor(sched).tick()
    pressure, breakdown = sched.awareness.read()
    assert pressure == 1.0 and dict(breakdown)["disk"] == 1.0
    bg = await sched.submit("r::h", "background", priority="background")
    normal = await sched.submit("r::h", "normal", priority="normal")
    await sched.submit("r::h", "high", priority="high")
    await until(lambda: hold.starts == ["high"])
    await sched.tick()
    assert hold.starts == ["high"]
    assert (await sched.get(bg.id)).status is Status.PENDING
    assert (await sched.get(normal.id)).status is Status.PENDING
    assert sched.metrics["gate_denials"] > 0
    # The disk calms down: the held work runs.
    sampler.set(ResourceSnapshot())
    monitor(sched).set_sample(ResourceSnapshot())
    await until(lambda: len(hold.starts) == 3)
    hold.release.set()
    snap = await sched.snapshot()
    assert snap["pressure"] == 0.0 and {b["source"] for b in snap["pressure_breakdown"]} >= {
        "disk",
        "memory",
        "battery",
    }


async def test_io_gate_admits_exactly_what_the_budget_allows(
    make_scheduler: MakeScheduler,
) -> None:
    hold = Hold()
    d = Domain("r")
    d.register("w", hold, expected_io=IoBudget(disk_write=5 * MB))
    sampler = FakeSampler(ResourceSnapshot(disk_write_bps=10 * MB))  # 2 s window: 20 MB
    sched = await make_scheduler(d, sampler=sampler, max_concurrency=10)
    monitor(sched).set_sample(ResourceSnapshot(disk_write_bps=10 * MB))
    for i in range(6):
        await sched.submit("r::w", i, priority="high")
    # 80% of 20 MB is 16 MB: 5 + 5 + 5 fit, a fourth would make 20.
    await until(lambda: len(hold.starts) == 3)
    await sched.tick()
    assert len(hold.starts) == 3
    hold.release.set()
    await until(lambda: len(hold.starts) == 6)


async def test_one_huge_task_still_runs_when_nothing_else_does(
    make_scheduler: MakeScheduler,
) -> None:
    d = Domain("r")

    async def big(payload: Any, ctx: Any) -> Any:
        return "ok"

    d.register("big", big, expected_io=IoBudget(disk_write=10**12))
    sched = await make_scheduler(d, sampler=FakeSampler(ResourceSnapshot(disk_write_bps=MB)))
    monitor(sched).set_sample(ResourceSnapshot(disk_write_bps=MB))
    res = await sched.submit("r::big", 1, priority="high")
    assert (await sched.wait_for(res.id, timeout=5)).status is Status.COMPLETED


async def test_external_pressure_throttles_and_emits_events(
    make_scheduler: MakeScheduler,
) -> None:
    hold = Hold()
    sched = await make_scheduler(domain(h=hold), max_concurrency=4)
    sub = sched.subscribe(kinds=["pressure"])
    sched.set_pressure("call", 0.9)  # the user is in a video call
    ev = await sub.get(timeout=5)
    assert ev["pressure"] == 0.9 and ev["breakdown"] == [{"source": "call", "value": 0.9}]
    bg = await sched.submit("r::h", "bg", priority="background")
    hi = await sched.submit("r::h", "hi", priority="high")
    await until(lambda: hold.starts == ["hi"])
    await sched.tick()
    assert (await sched.get(bg.id)).status is Status.PENDING
    sched.set_pressure("call", None)
    await until(lambda: hold.starts == ["hi", "bg"])
    hold.release.set()
    await sched.wait_for(hi.id, timeout=5)
    with pytest.raises(InvalidParams):
        sched.set_pressure("call", 1.5)


async def test_custom_throttle_policy(make_scheduler: MakeScheduler) -> None:
    from taskmill.resource import ThrottlePolicy

    hold = Hold()
    sched = await make_scheduler(
        domain(h=hold), throttle=ThrottlePolicy([(0, 0.1)]), max_concurrency=2
    )
    sched.set_pressure("x", 0.2)  # even realtime work is held above 0.1
    await sched.submit("r::h", "rt", priority="realtime")
    await sched.tick()
    assert hold.starts == []
    sched.set_pressure("x", 0.0)
    await until(lambda: hold.starts == ["rt"])
    hold.release.set()


async def test_extrapolated_progress_from_past_durations(make_scheduler: MakeScheduler) -> None:
    release = asyncio.Event()

    async def work(payload: Any, ctx: Any) -> Any:
        if payload == "slow":
            await release.wait()
        else:
            await asyncio.sleep(0.2)
        return None

    sched = await make_scheduler(domain(w=work), progress_extrapolation_ms=100)
    for i in range(3):
        await sched.wait_for((await sched.submit("r::w", i)).id, timeout=5)
    sub = sched.subscribe(kinds=["progress"], progress_interval_ms=0)
    res = await sched.submit("r::w", "slow")
    ev = await sub.get(timeout=5)
    assert ev.task_id == res.id and ev["reported"] is False and 0 < ev["percent"] <= 0.99
    snap = await sched.snapshot()
    (p,) = snap["progress"]
    assert p["extrapolated"] is True and p["reported"] is False and p["percent"] > 0
    release.set()
    await sched.wait_for(res.id, timeout=5)


async def test_real_psutil_sampler_sees_real_writes_and_gates(tmp_path: Path, db_path: str) -> None:
    counters = psutil.disk_io_counters()
    if counters is None:
        pytest.skip("psutil.disk_io_counters() is unavailable on this machine")
    stop = asyncio.Event()
    wrote = {"bytes": 0}

    def writer(payload: Any, ctx: Any) -> Any:
        chunk = os.urandom(1 << 20)
        path = tmp_path / "load.bin"
        with open(path, "wb") as f:
            while not stop.is_set() and not ctx.cancelled.is_set():
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
                ctx.record_write_bytes(len(chunk))
                wrote["bytes"] += len(chunk)
        return wrote["bytes"]

    async def big(payload: Any, ctx: Any) -> Any:
        return "ran"

    d = Domain("r")
    d.register("writer", writer, expected_io=IoBudget(disk_write=1 << 20))
    d.register("big", big, expected_io=IoBudget(disk_write=10**13))
    # No latency target: under one the disk budget is the pacer's (test_io_pacing.py).
    cfg = SchedulerConfig(
        resource_monitoring=True, sample_interval_ms=100, max_concurrency=4, io_latency_target_ms=0
    )
    sched = Scheduler(db_path, domains=[d], config=cfg)
    await sched.start()
    try:
        w = await sched.submit("r::writer", None, priority="high")
        await until(
            lambda: sched.awareness.resources().disk_write_bps > 0 and wrote["bytes"] > 0,
            timeout=20,
        )
        b = await sched.submit("r::big", None, priority="high")
        await sched.tick()
        await sched.tick()
        # Its IO budget cannot fit beside the observed writes.
        assert (await sched.get(b.id)).status is Status.PENDING
        assert sched.metrics["gate_denials"] > 0
        snap = await sched.snapshot()
        assert snap["resources"]["disk_write_bps"] > 0
        stop.set()
        assert (await sched.wait_for(w.id, timeout=10)).status is Status.COMPLETED
        # With nothing running, even a huge task is admitted.
        assert (await sched.wait_for(b.id, timeout=10)).status is Status.COMPLETED
        hist = await sched.get(w.id)
        assert hist.actual_io is not None and hist.actual_io.disk_write == wrote["bytes"]
        assert (await sched.history_stats("r::writer"))["avg_write_bytes"] > 0
        assert (await sched.avg_throughput("r::writer"))["write_bps"] > 0
    finally:
        stop.set()
        await sched.shutdown("hard")
