"""The IO pacing parts that touch the OS: the disk latency sampler (fake psutil),
the steering loop, the writeback backlog (the calls it makes, and a real file),
and the OS IO priority (the calls it makes)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from taskmill.resource import (
    DarwinIoPriority,
    DiskLatencySampler,
    DiskPressure,
    DiskSample,
    FsyncSyncer,
    IoPacer,
    IoSteering,
    LatencyTarget,
    LinuxIoPriority,
    PsutilSampler,
    RangeSyncer,
    ResourceSnapshot,
    Steering,
    WindowsIoPriority,
    Writeback,
    background_io,
    default_syncer,
    ioprio,
    writeback,
)

MB = 1_000_000

# --------------------------------------------------------------------------- DiskLatencySampler


class FakeDisks:
    """psutil's disk and process counters, moved by hand."""

    def __init__(self) -> None:
        self.disk: Any = SimpleNamespace(
            read_count=0, write_count=0, read_time=0, write_time=0, read_bytes=0, write_bytes=0
        )
        self.own: Any = SimpleNamespace(read_bytes=0, write_bytes=0)
        self.process_error: Exception | None = None

    def disk_io_counters(self, perdisk: bool = False) -> Any:
        assert perdisk is False
        return self.disk

    def Process(self) -> Any:
        fake = self

        class P:
            def io_counters(self) -> Any:
                if fake.process_error is not None:
                    raise fake.process_error
                return fake.own

        return P()

    def move(self, ops: int, busy_ms: int, system: int, own: int) -> None:
        d = self.disk
        d.write_count += ops
        d.write_time += busy_ms
        d.write_bytes += system
        self.own.write_bytes += own


def test_disk_sampler_reports_latency_per_request_and_others_bytes() -> None:
    ps, now = FakeDisks(), [10.0]
    sampler = DiskLatencySampler(ps=ps, clock=lambda: now[0])
    assert sampler.sample() is None  # the first reading only primes
    ps.move(ops=50, busy_ms=100, system=30 * MB, own=20 * MB)
    now[0] = 10.5
    s = sampler.sample()
    assert s is not None
    assert (s.at, s.interval_s, s.latency_ms) == (10.5, 0.5, 2.0)
    assert (s.system_bps, s.own_bps, s.others_bps) == (60 * MB, 40 * MB, 20 * MB)
    now[0] = 11.0  # nothing completed
    s = sampler.sample()
    assert s is not None and s.latency_ms is None and s.others_bps == 0


def test_disk_sampler_counts_own_bytes_itself_where_psutil_cannot() -> None:
    ps, now, own = FakeDisks(), [10.0], [0]
    ps.process_error = AttributeError("io_counters")  # macOS
    sampler = DiskLatencySampler(ps=ps, clock=lambda: now[0], own_bytes=lambda: own[0])
    sampler.sample()
    ps.move(ops=1, busy_ms=1, system=10 * MB, own=0)
    own[0] = 4 * MB
    now[0] = 11.0
    s = sampler.sample()
    assert s is not None and s.own_bps == 4 * MB and s.others_bps == 6 * MB


def test_disk_sampler_without_disk_counters_gives_nothing() -> None:
    ps = FakeDisks()
    ps.disk = None
    sampler = DiskLatencySampler(ps=ps)
    assert sampler.sample() is None and sampler.sample() is None


# --------------------------------------------------------------------------- IoSteering


class Samples:
    def __init__(self, *samples: DiskSample | None) -> None:
        self.samples = list(samples)

    def sample(self) -> DiskSample | None:
        return self.samples.pop(0) if self.samples else None


def test_steering_applies_rates_and_pauses_to_the_pacer() -> None:
    pacer = IoPacer()
    target = LatencyTarget(target_ms=1.0, floor_bps=1 * MB)
    changes: list[Steering] = []
    steering = IoSteering(pacer, target, Samples(), on_change=changes.append)
    s = steering.apply(
        DiskSample(at=1.0, interval_s=0.1, latency_ms=0.1, system_bps=0, own_bps=50 * MB)
    )
    assert s.paused and pacer.paused
    steering.apply(DiskSample(at=1.02, interval_s=0.02, latency_ms=None, system_bps=0, own_bps=0))
    s = steering.apply(
        DiskSample(at=1.06, interval_s=0.04, latency_ms=1.0, system_bps=2 * MB, own_bps=0)
    )
    assert s.others_busy and not pacer.paused
    assert pacer.write_bps == pacer.read_bps == target.start_bps
    assert [c.reason for c in changes] == ["under_target"]
    steering.stop()
    assert pacer.write_bps is None and not pacer.paused


def test_steering_thread_starts_and_stops() -> None:
    seen = threading.Event()

    class Counting:
        def sample(self) -> DiskSample | None:
            seen.set()
            return None

    target = LatencyTarget(target_ms=1.0, interval_s=0.01)
    steering = IoSteering(IoPacer(), target, Counting())
    steering.start()
    assert steering.running and seen.wait(5)
    steering.stop()
    assert not steering.running


# --------------------------------------------------------------------------- Writeback


class RecordingSyncer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def step(self, fd: int) -> None:
        self.calls.append(("step", fd))

    def drain(self, fd: int) -> None:
        self.calls.append(("drain", fd))


def test_writeback_steps_every_n_bytes() -> None:
    syncer = RecordingSyncer()
    wb = Writeback(100, syncer)
    due = [wb.wrote(40) for _ in range(5)]
    assert due == [False, False, True, True, True]
    wb.step(7)
    assert not wb.wrote(40) and wb.steps == 1
    wb.drain(7)
    assert syncer.calls == [("step", 7), ("drain", 7)]
    assert not Writeback(0, syncer).wrote(10**9)  # 0: no bound


def test_range_syncer_makes_the_sync_file_range_calls() -> None:
    calls: list[tuple[int, ...]] = []

    def call(*args: int) -> int:
        calls.append(args)
        return 0

    syncer = RangeSyncer(call)
    syncer.step(5)
    syncer.drain(5)
    before, write, after = (
        writeback.SYNC_FILE_RANGE_WAIT_BEFORE,
        writeback.SYNC_FILE_RANGE_WRITE,
        writeback.SYNC_FILE_RANGE_WAIT_AFTER,
    )
    assert calls == [(5, 0, 0, before | write), (5, 0, 0, before | write | after)]


def test_range_syncer_falls_back_to_fdatasync_when_refused(tmp_path: Path) -> None:
    calls: list[Any] = []

    def refuse(*args: int) -> int:
        calls.append(args)
        return -1

    syncer = RangeSyncer(refuse, get_errno=lambda: 22)  # EINVAL
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x")
        f.flush()
        syncer.step(f.fileno())
        syncer.step(f.fileno())
    assert len(calls) == 1  # then never again


def test_default_syncer_on_a_real_file(tmp_path: Path) -> None:
    syncer = default_syncer()
    if sys.platform.startswith("linux"):
        assert isinstance(syncer, RangeSyncer)
    else:
        assert isinstance(syncer, FsyncSyncer)
    wb = Writeback(64 * 1024, syncer)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(8):
            os.write(fd, b"\1" * 32 * 1024)
            if wb.wrote(32 * 1024):
                wb.step(fd)
        wb.drain(fd)
    finally:
        os.close(fd)
    assert wb.steps == 4
    assert (tmp_path / "f").stat().st_size == 256 * 1024


# --------------------------------------------------------------------------- IO priority


class FakeLibc:
    def __init__(self, current: int = 0, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.current = current
        self.fail = fail

    def syscall(self, *args: int) -> int:
        self.calls.append(("syscall", *args))
        return self.current if len(args) == 3 else (-1 if self.fail else 0)

    def getiopolicy_np(self, *args: int) -> int:
        self.calls.append(("getiopolicy_np", *args))
        return self.current

    def setiopolicy_np(self, *args: int) -> int:
        self.calls.append(("setiopolicy_np", *args))
        return 0


def test_linux_sets_best_effort_level_7_on_the_calling_thread_and_restores() -> None:
    libc = FakeLibc(current=0)
    with background_io(LinuxIoPriority(libc, (251, 252))):
        assert libc.calls == [("syscall", 252, 1, 0), ("syscall", 251, 1, 0, (2 << 13) | 7)]
    assert libc.calls[-1] == ("syscall", 251, 1, 0, 0)


def test_linux_already_lowered_is_left_alone() -> None:
    libc = FakeLibc(current=(2 << 13) | 7)
    with background_io(LinuxIoPriority(libc, (251, 252))):
        pass
    assert libc.calls == [("syscall", 252, 1, 0)]


def test_a_failed_call_runs_the_block_anyway(caplog: pytest.LogCaptureFixture) -> None:
    libc = FakeLibc(current=0, fail=True)
    ran = False
    with background_io(LinuxIoPriority(libc, (251, 252))):
        ran = True
    assert ran and len(libc.calls) == 2  # nothing to restore


def test_darwin_throttles_the_thread_and_restores() -> None:
    libc = FakeLibc(current=0)
    with background_io(DarwinIoPriority(libc)):
        assert libc.calls == [("getiopolicy_np", 0, 1), ("setiopolicy_np", 0, 1, 3)]
    assert libc.calls[-1] == ("setiopolicy_np", 0, 1, 0)


def test_windows_begins_and_ends_background_mode() -> None:
    calls: list[tuple[Any, ...]] = []

    def set_thread_priority(handle: int, priority: int) -> int:
        calls.append((handle, priority))
        return 1

    kernel32 = SimpleNamespace(GetCurrentThread=lambda: -2, SetThreadPriority=set_thread_priority)
    with background_io(WindowsIoPriority(kernel32)):
        assert calls == [(-2, 0x00010000)]
    assert calls[-1] == (-2, 0x00020000)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ioprio")
def test_linux_backend_really_changes_the_thread_priority() -> None:
    backend = ioprio.platform_io_priority()
    if backend is None:
        pytest.skip("no ioprio syscall numbers for this machine")
    assert isinstance(backend, LinuxIoPriority)
    get = backend._libc.syscall
    seen: list[int] = []

    def run() -> None:
        before = get(backend._get, 1, 0)
        with background_io(backend):
            seen.append(get(backend._get, 1, 0))
        seen.append(get(backend._get, 1, 0) - before)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [ioprio.IOPRIO_BACKGROUND, 0]


# --------------------------------------------------------------------------- own bytes elsewhere


def test_disk_pressure_can_count_other_processes_only() -> None:
    snap = ResourceSnapshot(disk_write_bps=150 * MB, disk_read_bps=50 * MB, disk_own_bps=180 * MB)
    assert DiskPressure(capacity_bps=200 * MB).pressure(snap) == 1.0
    assert DiskPressure(capacity_bps=200 * MB, others_only=True).pressure(snap) == 0.1


def test_psutil_sampler_reports_this_process_share() -> None:
    ps, now = FakeDisks(), [10.0]
    ps.net_io_counters = lambda pernic=False: {}  # type: ignore[attr-defined]
    ps.cpu_percent = lambda interval=None: 0.0  # type: ignore[attr-defined]
    ps.virtual_memory = lambda: SimpleNamespace(percent=0.0)  # type: ignore[attr-defined]
    sampler = PsutilSampler(ps=ps, clock=lambda: now[0], battery=False)
    sampler.sample()
    ps.move(ops=1, busy_ms=1, system=30 * MB, own=10 * MB)
    now[0] = 11.0
    snap = sampler.sample()
    assert snap.disk_write_bps == 30 * MB and snap.disk_own_bps == 10 * MB
