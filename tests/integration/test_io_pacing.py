"""Executors' IO through the pacer (``ctx.io``), with real files and a real scheduler:
the built-in ``fs`` and ``demo`` executors, the async and sync forms,
cancellation while paced, the OS IO priority of background tasks, the
snapshot's ``io_pacing``; and the latency target on the real disk, against a
real foreground process."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskmill import Domain, Scheduler, Status
from taskmill.builtins import demo_domain, fs_domain
from taskmill.resource import (
    DiskLatencySampler,
    IoPacer,
    IoSteering,
    LatencyTarget,
    ResourceSnapshot,
    Syncer,
    Writeback,
    default_syncer,
    ioprio,
)
from tests.helpers import MakeScheduler, until

KIB = 1024
MIB = 1024 * 1024


class CountingSyncer:
    """The platform's syncer, counting the steps taken."""

    def __init__(self, inner: Syncer) -> None:
        self.inner = inner
        self.steps = 0
        self.drains = 0

    def step(self, fd: int) -> None:
        self.steps += 1
        self.inner.step(fd)

    def drain(self, fd: int) -> None:
        self.drains += 1
        self.inner.drain(fd)


def counting(sched: Scheduler) -> CountingSyncer:
    syncer = CountingSyncer(sched.awareness.io.syncer)
    sched.awareness.io.syncer = syncer
    return syncer


async def test_fs_copy_and_hash_go_through_the_pacer(
    make_scheduler: MakeScheduler, tmp_path: Path
) -> None:
    data = os.urandom(MIB + 123)
    (tmp_path / "src.bin").write_bytes(data)
    sched = await make_scheduler(
        fs_domain([tmp_path]), io_rate_limit_bps=8 * MIB, io_writeback_bytes=128 * KIB
    )
    syncer = counting(sched)
    pacer = sched.awareness.io.pacer
    res = await sched.submit("fs::copy", {"src": "src.bin", "dst": "dst.bin"})
    rec = await sched.wait_for(res.id, timeout=30)
    assert rec.status == Status.COMPLETED, rec.last_error
    assert (tmp_path / "dst.bin").read_bytes() == data
    totals = pacer.totals()
    assert totals.read_bytes == totals.write_bytes == len(data)
    assert totals.waited_s > 0  # 1 MiB at 8 MiB/s, past the burst: some waiting
    assert syncer.steps >= len(data) // (128 * KIB) - 1  # the backlog stayed bounded
    assert rec.actual_io is not None
    assert (rec.actual_io.disk_read, rec.actual_io.disk_write) == (len(data), len(data))

    res = await sched.submit("fs::hash", {"path": "dst.bin"})
    rec = await sched.wait_for(res.id, timeout=30)
    assert rec.status == Status.COMPLETED, rec.last_error
    assert pacer.totals().read_bytes == 2 * len(data)
    assert rec.actual_io is not None and rec.actual_io.disk_read == len(data)


async def test_demo_io_goes_through_the_pacer(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(demo_domain(), io_writeback_bytes=64 * KIB)
    syncer = counting(sched)
    res = await sched.submit("demo::io", {"read_bytes": 500_000, "write_bytes": 300_000})
    rec = await sched.wait_for(res.id, timeout=30)
    assert rec.status == Status.COMPLETED, rec.last_error
    totals = sched.awareness.io.pacer.totals()
    assert (totals.read_bytes, totals.write_bytes) == (500_000, 500_000)  # filler paced too
    assert rec.actual_io is not None
    assert (rec.actual_io.disk_read, rec.actual_io.disk_write) == (500_000, 300_000)
    assert syncer.steps >= 3


async def test_writeback_steps_are_smaller_while_the_pacer_may_hold_callers_back(
    make_scheduler: MakeScheduler, tmp_path: Path
) -> None:
    payload = os.urandom(2 * MIB)

    def write(p: Any, ctx: Any) -> Any:
        with open(tmp_path / f"{p}.bin", "wb") as f:
            ctx.io.write_sync(f, payload)

    d = Domain("t")
    d.register("write", write)
    steps = {}
    for name, limit in (("unpaced", None), ("paced", 1024 * MIB)):
        sched = await make_scheduler(d, path=str(tmp_path / f"{name}.db"), io_rate_limit_bps=limit)
        syncer = counting(sched)
        rec = await sched.wait_for((await sched.submit("t::write", name)).id, timeout=30)
        assert rec.status == Status.COMPLETED, rec.last_error
        steps[name] = syncer.steps
    # Every io_writeback_bytes (1 MiB) alone; every 256 KiB while paced (a
    # foreground request queues behind one short request, not a long one).
    assert steps == {"unpaced": 2, "paced": 8}


async def test_async_and_sync_forms(make_scheduler: MakeScheduler, tmp_path: Path) -> None:
    payload = os.urandom(200 * KIB)

    async def writes(p: Any, ctx: Any) -> Any:
        path = tmp_path / "a.bin"
        f = await asyncio.to_thread(open, path, "wb")  # a file object
        try:
            assert await ctx.io.write(f, payload) == len(payload)
        finally:
            f.close()
        fd = os.open(path, os.O_RDONLY)  # a descriptor
        try:
            got = await ctx.io.read(fd, 10 * MIB)
        finally:
            os.close(fd)
        await ctx.io.pace(read=7, write=11)
        return got == payload

    def reads(p: Any, ctx: Any) -> Any:
        fd = os.open(tmp_path / "b.bin", os.O_WRONLY | os.O_CREAT)
        try:
            ctx.io.write_sync(fd, memoryview(payload)[:1000])
        finally:
            os.close(fd)
        with open(tmp_path / "b.bin", "rb") as f:
            first = ctx.io.read_sync(f, 600)
            rest = ctx.io.read_sync(f, 600)
            end = ctx.io.read_sync(f, 600)
        ctx.io.pace_sync(write=5)
        return [len(first), len(rest), len(end)]

    d = Domain("t")
    d.register("writes", writes)
    d.register("reads", reads)
    sched = await make_scheduler(d, io_chunk_bytes=16 * KIB)
    a = await sched.wait_for((await sched.submit("t::writes")).id, timeout=30)
    b = await sched.wait_for((await sched.submit("t::reads")).id, timeout=30)
    assert a.result is True and b.result == [600, 400, 0]
    assert a.actual_io is not None and b.actual_io is not None
    assert (a.actual_io.disk_read, a.actual_io.disk_write) == (len(payload) + 7, len(payload) + 11)
    assert (b.actual_io.disk_read, b.actual_io.disk_write) == (1000, 1005)


async def test_a_task_waiting_for_the_pacer_is_cancelled_at_once(
    make_scheduler: MakeScheduler, tmp_path: Path
) -> None:
    started = asyncio.Event()

    def slow(p: Any, ctx: Any) -> Any:
        ctx.io.pace_sync(write=1)  # within the burst
        loop.call_soon_threadsafe(started.set)
        ctx.io.pace_sync(write=100 * MIB)  # days at 1 KiB/s

    async def paced(p: Any, ctx: Any) -> Any:
        await ctx.io.pace(write=100 * MIB)

    loop = asyncio.get_running_loop()
    d = Domain("t")
    d.register("slow", slow)
    d.register("paced", paced)
    sched = await make_scheduler(d, io_rate_limit_bps=1024)
    for name in ("slow", "paced"):
        started.clear()
        res = await sched.submit(f"t::{name}")
        if name == "slow":
            await asyncio.wait_for(started.wait(), 10)
        else:
            await until(lambda: len(sched.running()) == 1)
        await sched.cancel(res.id)
        await until(lambda: not sched.running() and not sched.executions.busy_slots(), 5)
        assert (await sched.get(res.id)).status == Status.CANCELLED


class Truncations:
    """``os.ftruncate``, recording the sizes files over 256 KiB are cut to (not the store lock)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = os.ftruncate

        def record(fd: int, size: int) -> None:
            if os.fstat(fd).st_size > 256 * KIB:
                self.sizes.append(size)
            real(fd, size)

        monkeypatch.setattr(os, "ftruncate", record)


posix_only = pytest.mark.skipif(os.name != "posix", reason="a plain unlink elsewhere")


@posix_only
async def test_remove_takes_the_name_at_once_and_the_blocks_a_step_at_a_time(
    make_scheduler: MakeScheduler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts = Truncations(monkeypatch)
    size = MIB + 5

    def sync_form(p: Any, ctx: Any) -> Any:
        path = tmp_path / "s.bin"
        path.write_bytes(os.urandom(size))
        ctx.io.remove_sync(path)
        return path.exists()

    async def async_form(p: Any, ctx: Any) -> Any:
        path = tmp_path / "a.bin"
        path.write_bytes(os.urandom(size))
        await ctx.io.remove(str(path))
        return path.exists()

    d = Domain("t")
    d.register("sync", sync_form)
    d.register("async", async_form)
    sched = await make_scheduler(d, io_rate_limit_bps=1024 * MIB)  # limited, not slow
    pacer = sched.awareness.io.pacer
    for name in ("sync", "async"):
        cuts.sizes.clear()
        before = pacer.totals().write_bytes
        rec = await sched.wait_for((await sched.submit(f"t::{name}")).id, timeout=30)
        assert rec.status == Status.COMPLETED and rec.result is False, rec.last_error
        step = 256 * KIB
        assert cuts.sizes == [size - step, size - 2 * step, size - 3 * step, size - 4 * step]
        # Each step waits for the pacer as an eighth of it written would; no
        # byte of it counts as the task's IO.
        assert pacer.totals().write_bytes - before == 4 * step // 8
        assert rec.actual_io is None or rec.actual_io.disk_write == 0


async def test_remove_is_a_plain_unlink_unpaced_or_for_links(
    make_scheduler: MakeScheduler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts = Truncations(monkeypatch)
    data = os.urandom(MIB)

    def remove(p: Any, ctx: Any) -> Any:
        (tmp_path / "plain.bin").write_bytes(data)
        ctx.io.remove_sync(tmp_path / "plain.bin")
        if p["links"]:
            (tmp_path / "target.bin").write_bytes(data)
            (tmp_path / "symlink").symlink_to(tmp_path / "target.bin")
            ctx.io.remove_sync(tmp_path / "symlink")
            os.link(tmp_path / "target.bin", tmp_path / "hardlink")
            ctx.io.remove_sync(tmp_path / "hardlink")
        ctx.io.remove_sync(tmp_path / "never-there", missing_ok=True)
        try:
            ctx.io.remove_sync(tmp_path / "never-there")
        except FileNotFoundError:
            return sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".bin")
        return "no error"

    d = Domain("t")
    d.register("remove", remove)
    unpaced = await make_scheduler(d)
    rec = await unpaced.wait_for((await unpaced.submit("t::remove", {"links": False})).id, 30)
    assert rec.result == [] and cuts.sizes == []  # unpaced: one unlink, nothing to spread
    if os.name == "posix":
        paced = await make_scheduler(d, path=str(tmp_path / "paced.db"), io_rate_limit_bps=MIB)
        rec = await paced.wait_for((await paced.submit("t::remove", {"links": True})).id, 30)
        step = 256 * KIB
        assert rec.result == ["target.bin"] and cuts.sizes == [3 * step, 2 * step, step]
        # The links went as names: the file they named is whole.
        assert (tmp_path / "target.bin").read_bytes() == data


@posix_only
async def test_a_cancelled_task_removes_what_is_left_at_once(
    make_scheduler: MakeScheduler, tmp_path: Path
) -> None:
    started = asyncio.Event()
    path = tmp_path / "big.bin"

    def task(p: Any, ctx: Any) -> Any:
        path.write_bytes(os.urandom(4 * MIB))
        try:
            ctx.io.pace_sync(write=1)  # within the burst
            loop.call_soon_threadsafe(started.set)
            ctx.io.pace_sync(write=100 * MIB)  # days at 1 KiB/s
        finally:
            ctx.io.remove_sync(path)  # would take days too, were it paced

    loop = asyncio.get_running_loop()
    d = Domain("t")
    d.register("task", task)
    sched = await make_scheduler(d, io_rate_limit_bps=1024)
    res = await sched.submit("t::task")
    await asyncio.wait_for(started.wait(), 10)
    await sched.cancel(res.id)
    await until(lambda: not sched.running() and not sched.executions.busy_slots(), 5)
    assert (await sched.get(res.id)).status == Status.CANCELLED
    assert not path.exists()


def _thread_ioprio() -> int:
    backend = ioprio.platform_io_priority()
    assert isinstance(backend, ioprio.LinuxIoPriority)
    return int(backend._libc.syscall(backend._get, 1, 0))


linux_ioprio = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine().lower() not in ioprio.LINUX_SYSCALLS,
    reason="reads the Linux ioprio of the executor thread",
)


@linux_ioprio
@pytest.mark.parametrize("setting", [True, False])
async def test_background_tasks_run_at_the_os_background_io_priority(
    make_scheduler: MakeScheduler, setting: bool
) -> None:
    def plain(p: Any, ctx: Any) -> Any:
        return _thread_ioprio()

    async def coroutine(p: Any, ctx: Any) -> Any:
        return await ctx.io.write(-1, b"") if p else None

    d = Domain("t")
    d.register("plain", plain)
    d.register("co", coroutine)
    sched = await make_scheduler(d, io_background_priority=setting, max_concurrency=1)
    low = await sched.wait_for((await sched.submit("t::plain", 1, priority="background")).id, 30)
    normal = await sched.wait_for((await sched.submit("t::plain", 2, priority="normal")).id, 30)
    lowered = ioprio.IOPRIO_BACKGROUND
    assert low.result == (lowered if setting else normal.result)
    assert normal.result != lowered  # put back after the background task (same thread)


async def test_snapshot_shows_io_pacing(make_scheduler: MakeScheduler, tmp_path: Path) -> None:
    sched = await make_scheduler(io_rate_limit_bps=5 * MIB)
    snap = await sched.snapshot()
    pacing = snap["io_pacing"]
    assert pacing["reason"] == "off" and pacing["rate_bps"] == 5 * MIB
    assert pacing["target_ms"] is None
    assert {"latency_ms", "others_bps", "own_bps", "others_busy", "read_bytes"} <= set(pacing)
    assert {"write_bytes", "waited_s"} <= set(pacing)

    steered = await make_scheduler(
        path=str(tmp_path / "steered.db"), resource_monitoring=True, io_latency_target_ms=2.5
    )
    assert steered.awareness.steering is not None and steered.awareness.steering.running
    await until(
        lambda: (
            steered.awareness.steering is not None
            and steered.awareness.steering.state.reason != "starting"
        ),
        5,
    )
    pacing = (await steered.snapshot())["io_pacing"]
    assert pacing["target_ms"] == 2.5
    assert pacing["reason"] in ("alone", "under_target", "over_target")


async def test_under_the_target_our_own_io_holds_no_task_back(
    make_scheduler: MakeScheduler,
) -> None:
    sched = await make_scheduler(resource_monitoring=True)
    aw = sched.awareness
    assert aw.steering is not None and aw.monitor is not None
    busy = ResourceSnapshot(disk_write_bps=900e6, disk_own_bps=900e6, net_tx_bps=5e6)
    aw.monitor.set_sample(busy)
    view = aw.view()
    # The gate's disk budget reads no throughput (the pacer rations our bytes);
    # the disk pressure counts other processes' only.
    assert view.resources is not None and view.resources.disk_write_bps == 0
    assert view.resources.net_tx_bps == 5e6
    assert dict(aw.read()[1])["disk"] == 0.0
    assert (await sched.snapshot())["resources"]["disk_write_bps"] == 900e6


# --------------------------------------------------------------------------- the real disk

FOREGROUND = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
block = os.urandom(4096)
print("ready", flush=True)
end = time.monotonic() + 20
while time.monotonic() < end:
    os.pwrite(fd, block, 0)
    os.fsync(fd)
    time.sleep(0.005)
"""


class Background:
    """Writes through the pacer on a thread, over and over the same 16 MiB."""

    def __init__(self, pacer: IoPacer, path: Path) -> None:
        self.pacer = pacer
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        chunk = os.urandom(64 * KIB)
        wb = Writeback(MIB, default_syncer())
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            offset = 0
            while not self.stop.is_set():
                if not self.pacer.pace_sync(write=len(chunk), stop=self.stop.is_set):
                    break
                os.pwrite(fd, chunk, offset)
                offset = (offset + len(chunk)) % (16 * MIB)
                if wb.wrote(len(chunk)):
                    wb.step(fd)
        finally:
            os.close(fd)


def wait(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_rate_drops_when_a_foreground_writer_appears_and_recovers_when_it_stops(
    tmp_path: Path,
) -> None:
    pacer = IoPacer()
    # A target no disk meets while we write: the rate must come down, not hover.
    target = LatencyTarget(target_ms=0.01, floor_bps=2 * MIB)
    steering = IoSteering(pacer, target, DiskLatencySampler())
    background = Background(pacer, tmp_path / "background.bin")
    background.thread.start()
    steering.start()
    foreground: subprocess.Popen[str] | None = None
    try:
        if not wait(lambda: steering.state.reason == "alone", 3.0):
            pytest.skip(
                "the disk is busy with other processes' IO "
                f"({steering.state.others_bps / 1e6:.1f} MB/s heard): no quiet baseline"
            )
        assert pacer.write_bps is None
        full = max(steering.state.own_bps, 4 * target.floor_bps)
        foreground = subprocess.Popen(
            [sys.executable, "-c", FOREGROUND, str(tmp_path / "foreground.bin")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert foreground.stdout is not None and foreground.stdout.readline() == "ready\n"
        assert wait(
            lambda: steering.state.others_busy and (pacer.write_bps or float("inf")) <= full / 2,
            3.0,
        ), steering.state
        foreground.kill()
        foreground.wait()
        assert wait(lambda: steering.state.reason == "alone", 3.0), steering.state
        assert pacer.write_bps is None
    finally:
        if foreground is not None and foreground.poll() is None:
            foreground.kill()
            foreground.wait()
        background.stop.set()
        steering.stop()
        background.thread.join(5)
