"""Sampling, smoothing and the monitor thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from taskmill.resource import (
    BatteryState,
    FakeSampler,
    PsutilSampler,
    ResourceMonitor,
    ResourceSnapshot,
    ewma,
    smooth,
)

MB = 1_000_000


# --------------------------------------------------------------------------- ewma / smooth


def test_ewma_weights_new_value_by_alpha() -> None:
    assert ewma(100.0, 200.0, 0.3) == pytest.approx(130.0)
    assert ewma(200.0, 0.0, 0.3) == pytest.approx(140.0)
    assert ewma(50.0, 50.0, 0.3) == pytest.approx(50.0)


def test_ewma_takes_new_value_when_old_is_zero() -> None:
    assert ewma(0.0, 200.0, 0.3) == 200.0
    assert ewma(0.0, 0.0, 0.3) == 0.0


def test_ewma_alpha_one_is_latest_value() -> None:
    assert ewma(10.0, 3.0, 1.0) == 3.0


def test_smooth_applies_ewma_per_field_and_takes_battery_as_is() -> None:
    old = ResourceSnapshot(cpu=0.5, memory=0.4, disk_read_bps=100.0, disk_write_bps=0.0)
    raw = ResourceSnapshot(
        cpu=1.0,
        memory=0.4,
        disk_read_bps=200.0,
        disk_write_bps=50.0,
        net_rx_bps=10.0,
        net_tx_bps=0.0,
        battery=BatteryState(percent=42.0, plugged=False),
    )
    out = smooth(old, raw, 0.3)
    assert out.cpu == pytest.approx(0.65)
    assert out.memory == pytest.approx(0.4)
    assert out.disk_read_bps == pytest.approx(130.0)
    assert out.disk_write_bps == 50.0  # old was 0: taken directly
    assert out.net_rx_bps == 10.0
    assert out.net_tx_bps == 0.0
    assert out.battery == BatteryState(percent=42.0, plugged=False)


def test_smooth_snaps_decayed_rates_to_zero() -> None:
    snapshot = ResourceSnapshot(disk_write_bps=10.0)
    for _ in range(20):
        snapshot = smooth(snapshot, ResourceSnapshot(), 0.3)
    assert snapshot.disk_write_bps == 0.0


def test_snapshot_to_dict() -> None:
    snap = ResourceSnapshot(
        cpu=0.25,
        memory=0.5,
        disk_read_bps=1.0,
        disk_write_bps=2.0,
        net_rx_bps=3.0,
        net_tx_bps=4.0,
        battery=BatteryState(percent=80.0, plugged=True),
    )
    assert snap.to_dict() == {
        "cpu": 0.25,
        "disk_read_bps": 1.0,
        "disk_write_bps": 2.0,
        "net_rx_bps": 3.0,
        "net_tx_bps": 4.0,
        "memory": 0.5,
        "battery": {"percent": 80.0, "plugged": True},
        "disk_own_bps": 0.0,
    }
    assert ResourceSnapshot().to_dict()["battery"] is None


# ------------------------------------------------------------------ PsutilSampler (fake psutil)


class FakePsutil:
    """Just enough of psutil, with counters moved by hand."""

    def __init__(self) -> None:
        self.disk: Any = SimpleNamespace(read_bytes=0, write_bytes=0)
        self.nics: Any = {
            "eth0": SimpleNamespace(bytes_recv=0, bytes_sent=0),
            "lo": SimpleNamespace(bytes_recv=0, bytes_sent=0),
        }
        self.cpu = 25.0
        self.mem = 60.0
        self.battery: Any = None

    def disk_io_counters(self, perdisk: bool = False) -> Any:
        if isinstance(self.disk, Exception):
            raise self.disk
        return self.disk

    def net_io_counters(self, pernic: bool = False) -> Any:
        return self.nics

    def cpu_percent(self, interval: float | None = None) -> float:
        return self.cpu

    def virtual_memory(self) -> Any:
        return SimpleNamespace(percent=self.mem)

    def sensors_battery(self) -> Any:
        if isinstance(self.battery, Exception):
            raise self.battery
        return self.battery


class ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_psutil_sampler_derives_rates_from_counter_deltas() -> None:
    ps, clock = FakePsutil(), ManualClock()
    sampler = PsutilSampler(ps=ps, clock=clock)
    first = sampler.sample()
    assert (first.disk_read_bps, first.disk_write_bps, first.net_rx_bps, first.net_tx_bps) == (
        0.0,
        0.0,
        0.0,
        0.0,
    )
    assert first.cpu == pytest.approx(0.25)
    assert first.memory == pytest.approx(0.6)

    clock.t += 2.0
    ps.disk = SimpleNamespace(read_bytes=4 * MB, write_bytes=10 * MB)
    ps.nics["eth0"] = SimpleNamespace(bytes_recv=2 * MB, bytes_sent=MB)
    ps.nics["lo"] = SimpleNamespace(bytes_recv=500 * MB, bytes_sent=500 * MB)  # ignored
    second = sampler.sample()
    assert second.disk_read_bps == pytest.approx(2 * MB)
    assert second.disk_write_bps == pytest.approx(5 * MB)
    assert second.net_rx_bps == pytest.approx(MB)
    assert second.net_tx_bps == pytest.approx(MB / 2)


def test_psutil_sampler_treats_missing_or_reset_counters_as_zero() -> None:
    ps, clock = FakePsutil(), ManualClock()
    ps.disk = None
    ps.nics = {}
    sampler = PsutilSampler(ps=ps, clock=clock)
    sampler.sample()
    clock.t += 1.0
    out = sampler.sample()
    assert (out.disk_read_bps, out.disk_write_bps, out.net_rx_bps, out.net_tx_bps) == (0, 0, 0, 0)

    # Counters appear: the first reading is only a baseline.
    ps.disk = SimpleNamespace(read_bytes=10 * MB, write_bytes=10 * MB)
    clock.t += 1.0
    assert sampler.sample().disk_read_bps == 0.0
    # A counter going backwards (reset) reads as 0, not negative.
    ps.disk = SimpleNamespace(read_bytes=MB, write_bytes=11 * MB)
    clock.t += 1.0
    out = sampler.sample()
    assert out.disk_read_bps == 0.0
    assert out.disk_write_bps == pytest.approx(MB)
    # Raising counters count as missing.
    ps.disk = RuntimeError("couldn't find any physical disk")
    clock.t += 1.0
    assert sampler.sample().disk_write_bps == 0.0


def test_psutil_sampler_battery_variants() -> None:
    ps = FakePsutil()
    sampler = PsutilSampler(ps=ps, clock=ManualClock())
    assert sampler.sample().battery is None
    ps.battery = SimpleNamespace(percent=33.3, power_plugged=False, secsleft=100)
    assert sampler.sample().battery == BatteryState(percent=33.3, plugged=False)
    ps.battery = SimpleNamespace(percent=90, power_plugged=None, secsleft=100)
    assert sampler.sample().battery == BatteryState(percent=90.0, plugged=True)
    ps.battery = NotImplementedError("no sensors here")
    assert sampler.sample().battery is None
    ps.battery = SimpleNamespace(percent=50, power_plugged=False, secsleft=1)
    assert sampler.sample().battery is None  # disabled after raising


def test_psutil_sampler_without_sensors_battery() -> None:
    full = FakePsutil()
    ps = SimpleNamespace(
        disk_io_counters=full.disk_io_counters,
        net_io_counters=full.net_io_counters,
        cpu_percent=full.cpu_percent,
        virtual_memory=full.virtual_memory,
    )
    assert PsutilSampler(ps=ps, clock=ManualClock()).sample().battery is None


# --------------------------------------------------------------------------- PsutilSampler (real)


def test_real_psutil_sampler_first_sample_zero_then_sane() -> None:
    sampler = PsutilSampler()
    first = sampler.sample()
    assert (first.disk_read_bps, first.disk_write_bps, first.net_rx_bps, first.net_tx_bps) == (
        0.0,
        0.0,
        0.0,
        0.0,
    )
    second = sampler.sample()
    for snap in (first, second):
        assert 0.0 <= snap.cpu <= 1.0
        assert 0.0 < snap.memory <= 1.0
        assert snap.disk_read_bps >= 0 and snap.disk_write_bps >= 0
        assert snap.net_rx_bps >= 0 and snap.net_tx_bps >= 0
        if snap.battery is not None:
            assert 0.0 <= snap.battery.percent <= 100.0


def _is_memory_backed(path: Path) -> bool:
    best = ""
    fstype = ""
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if str(path).startswith(mount) and len(mount) > len(best):
            best, fstype = mount, part.fstype
    return fstype in {"tmpfs", "ramfs"}


def test_real_disk_writes_show_up_in_disk_write_bps(tmp_path: Path) -> None:
    if psutil.disk_io_counters() is None:
        pytest.skip("psutil.disk_io_counters() returns None in this environment")
    if _is_memory_backed(tmp_path):
        pytest.skip(f"{tmp_path} is on a memory-backed filesystem: writes never reach a disk")
    sampler = PsutilSampler()
    sampler.sample()
    chunk = os.urandom(MB)
    with open(tmp_path / "blob", "wb") as f:
        for _ in range(8):
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    after = sampler.sample()
    assert after.disk_write_bps > 0


# --------------------------------------------------------------------------- ResourceMonitor


def test_monitor_starts_at_zero_and_tick_smooths() -> None:
    fake = FakeSampler(ResourceSnapshot(disk_write_bps=10 * MB, cpu=0.5))
    monitor = ResourceMonitor(fake, alpha=0.5)
    assert monitor.latest() == ResourceSnapshot()
    assert monitor.tick().disk_write_bps == 10 * MB  # old was 0
    fake.set(disk_write_bps=20 * MB)
    snap = monitor.tick()
    assert snap.disk_write_bps == pytest.approx(15 * MB)
    assert monitor.latest() is snap
    assert fake.calls == 2


def test_monitor_set_sample_overrides_and_notifies() -> None:
    seen: list[ResourceSnapshot] = []
    monitor = ResourceMonitor(
        FakeSampler(ResourceSnapshot(net_rx_bps=100.0)), on_sample=seen.append
    )
    injected = ResourceSnapshot(net_rx_bps=1000.0)
    monitor.set_sample(injected)
    assert monitor.latest() is injected
    snap = monitor.tick()
    assert snap.net_rx_bps == pytest.approx(0.3 * 100 + 0.7 * 1000)
    assert seen == [injected, snap]


def test_monitor_tick_propagates_sampler_errors_and_keeps_snapshot() -> None:
    fake = FakeSampler(ResourceSnapshot(cpu=0.5))
    monitor = ResourceMonitor(fake)
    monitor.tick()
    fake.error = OSError("boom")
    with pytest.raises(OSError):
        monitor.tick()
    assert monitor.latest().cpu == 0.5


@pytest.mark.parametrize(("interval", "alpha"), [(0.0, 0.3), (-1.0, 0.3), (1.0, 0.0), (1.0, 1.5)])
def test_monitor_validates_config(interval: float, alpha: float) -> None:
    with pytest.raises(ValueError):
        ResourceMonitor(FakeSampler(), interval_s=interval, alpha=alpha)


class FailsFirst(FakeSampler):
    def sample(self) -> ResourceSnapshot:
        if self.calls == 0:
            self.calls += 1
            raise RuntimeError("first sample fails")
        return super().sample()


def test_monitor_thread_survives_errors_samples_and_stops_promptly() -> None:
    fake = FailsFirst(ResourceSnapshot(disk_read_bps=5 * MB))
    sampled = threading.Event()
    seen: list[tuple[str, ResourceSnapshot]] = []

    def on_sample(snapshot: ResourceSnapshot) -> None:
        seen.append((threading.current_thread().name, snapshot))
        sampled.set()

    monitor = ResourceMonitor(fake, interval_s=0.01, on_sample=on_sample)
    monitor.start()
    try:
        assert sampled.wait(timeout=5.0), "no sample within 5 s"
        assert monitor.running
        # A long interval: stop() must wake the thread rather than wait it out.
        monitor.interval_s = 60.0
    finally:
        started = time.monotonic()
        monitor.stop()
        elapsed = time.monotonic() - started
    assert not monitor.running
    assert elapsed < 1.0
    assert fake.calls >= 2
    assert seen[0][0] == "taskmill-resource-monitor"
    assert monitor.latest().disk_read_bps == 5 * MB
    monitor.stop()  # idempotent


def test_monitor_stop_before_start_and_restart() -> None:
    monitor = ResourceMonitor(FakeSampler(), interval_s=60.0)
    monitor.stop()
    sampled = threading.Event()
    monitor.on_sample = lambda _snap: sampled.set()
    monitor.start()
    monitor.start()  # no second thread
    assert sampled.wait(timeout=5.0)
    monitor.stop()
    sampled.clear()
    monitor.start()
    assert sampled.wait(timeout=5.0)
    monitor.stop()
    assert not monitor.running


def test_monitor_stop_from_callback_does_not_deadlock() -> None:
    done = threading.Event()
    monitor = ResourceMonitor(FakeSampler(), interval_s=60.0)

    def on_sample(_snap: ResourceSnapshot) -> None:
        monitor.stop()
        done.set()

    monitor.on_sample = on_sample
    monitor.start()
    assert done.wait(timeout=5.0)
    monitor.stop()
    assert not monitor.running
