"""Pressure sources and the composite."""

from __future__ import annotations

import logging

import pytest

from taskmill.resource import (
    BatteryPressure,
    BatteryState,
    CompositePressure,
    DiskPressure,
    ExternalPressure,
    MemoryPressure,
    NetworkPressure,
    PressureSource,
    ResourceSnapshot,
)

MB = 1_000_000
IDLE = ResourceSnapshot()


def on_battery(percent: float, plugged: bool = False) -> ResourceSnapshot:
    return ResourceSnapshot(battery=BatteryState(percent=percent, plugged=plugged))


class Fixed:
    def __init__(self, name: str, value: float) -> None:
        self.name = name
        self.value = value

    def pressure(self, resources: ResourceSnapshot) -> float:
        return self.value


class Broken:
    name = "broken"

    def pressure(self, resources: ResourceSnapshot) -> float:
        raise RuntimeError("sensor gone")


def test_network_pressure() -> None:
    source = NetworkPressure(10 * MB)
    assert source.name == "network"
    assert source.pressure(IDLE) == 0.0
    assert source.pressure(ResourceSnapshot(net_rx_bps=3 * MB, net_tx_bps=2 * MB)) == 0.5
    assert source.pressure(ResourceSnapshot(net_rx_bps=30 * MB)) == 1.0


@pytest.mark.parametrize("limit", [0, -1.0])
def test_network_pressure_needs_positive_limit(limit: float) -> None:
    with pytest.raises(ValueError):
        NetworkPressure(limit)


def test_disk_pressure_fixed_capacity() -> None:
    source = DiskPressure(100 * MB)
    assert source.pressure(IDLE) == 0.0
    assert source.pressure(ResourceSnapshot(disk_read_bps=25 * MB, disk_write_bps=25 * MB)) == 0.5
    assert source.pressure(ResourceSnapshot(disk_write_bps=500 * MB)) == 1.0
    assert source.capacity_bps == 100 * MB  # fixed: never learned
    with pytest.raises(ValueError):
        DiskPressure(0)


def test_disk_pressure_learns_capacity_with_a_floor() -> None:
    source = DiskPressure(min_capacity_bps=100 * MB)
    assert source.pressure(IDLE) == 0.0
    # Below the floor: relative to the floor, so a small burst is not full pressure.
    assert source.pressure(ResourceSnapshot(disk_write_bps=10 * MB)) == pytest.approx(0.1)
    # Faster than anything seen: capacity grows to it.
    assert source.pressure(ResourceSnapshot(disk_write_bps=400 * MB)) == 1.0
    assert source.capacity_bps == 400 * MB
    assert source.pressure(ResourceSnapshot(disk_read_bps=100 * MB)) == pytest.approx(0.25)
    assert source.pressure(IDLE) == 0.0


def test_memory_pressure() -> None:
    source = MemoryPressure(0.8)
    assert source.pressure(ResourceSnapshot(memory=0.5)) == 0.0
    assert source.pressure(ResourceSnapshot(memory=0.8)) == 0.0
    assert source.pressure(ResourceSnapshot(memory=0.9)) == pytest.approx(0.5)
    assert source.pressure(ResourceSnapshot(memory=1.0)) == pytest.approx(1.0)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError):
            MemoryPressure(bad)


def test_battery_pressure() -> None:
    source = BatteryPressure(low_percent=20)
    assert source.pressure(IDLE) == 0.0  # unknown
    assert source.pressure(on_battery(5, plugged=True)) == 0.0
    assert source.pressure(on_battery(80)) == 0.0
    assert source.pressure(on_battery(50)) == 0.0
    assert source.pressure(on_battery(35)) == pytest.approx(0.5)
    assert source.pressure(on_battery(20)) == 1.0
    assert source.pressure(on_battery(3)) == 1.0
    with pytest.raises(ValueError):
        BatteryPressure(low_percent=60)


def test_external_pressure_set_clamp_remove() -> None:
    ext = ExternalPressure()
    ext.set("video_call", 1.0)
    ext.set("render", 2.5)
    ext.set("sync", -1)
    assert ext.items() == [("video_call", 1.0), ("render", 1.0), ("sync", 0.0)]
    ext.set("video_call", 0.4)  # keeps its place
    ext.set("render", None)
    ext.set("absent", None)  # removing an unknown name is fine
    assert ext.items() == [("video_call", 0.4), ("sync", 0.0)]
    assert ext.get("video_call") == 0.4 and ext.get("render") is None
    assert len(ext) == 2 and "sync" in ext
    with pytest.raises(ValueError):
        ext.set("", 0.5)
    with pytest.raises(ValueError):
        ext.set("x", float("nan"))


def test_composite_is_max_and_zero_when_empty() -> None:
    composite = CompositePressure()
    assert composite.pressure(IDLE) == 0.0
    assert composite.breakdown(IDLE) == []
    composite.add(Fixed("a", 0.2))
    composite.add(Fixed("b", 0.7))
    composite.add(Fixed("c", 0.1))
    assert composite.pressure(IDLE) == 0.7


def test_composite_breakdown_in_registration_order_with_external() -> None:
    sources: list[PressureSource] = [NetworkPressure(10 * MB), MemoryPressure(0.8)]
    composite = CompositePressure(sources)
    composite.set_external("video_call", 0.9)
    composite.add(Fixed("z", 0.05))
    composite.set_external("backup_window", 0.0)
    resources = ResourceSnapshot(net_rx_bps=5 * MB, memory=0.9)
    assert composite.breakdown(resources) == [
        ("network", 0.5),
        ("memory", pytest.approx(0.5)),
        ("z", 0.05),
        ("video_call", 0.9),
        ("backup_window", 0.0),
    ]
    aggregate, breakdown = composite.read(resources)
    assert aggregate == 0.9
    assert breakdown == composite.breakdown(resources)
    composite.set_external("video_call", None)
    assert composite.pressure(resources) == pytest.approx(0.5)


def test_composite_names_are_unique_and_remove() -> None:
    composite = CompositePressure([Fixed("a", 0.3)])
    with pytest.raises(ValueError):
        composite.add(Fixed("a", 0.1))
    with pytest.raises(ValueError):
        composite.set_external("a", 0.1)
    composite.set_external("ext", 0.6)
    with pytest.raises(ValueError):
        composite.add(Fixed("ext", 0.1))
    assert composite.names() == ["a", "ext"]
    assert composite.remove("ext") is True
    assert composite.remove("a") is True
    assert composite.remove("nope") is False
    assert composite.pressure(IDLE) == 0.0


def test_composite_clamps_and_survives_broken_sources(caplog: pytest.LogCaptureFixture) -> None:
    composite = CompositePressure([Fixed("hot", 3.0), Broken()])
    with caplog.at_level(logging.ERROR, logger="taskmill.resource.pressure"):
        assert composite.breakdown(IDLE) == [("hot", 1.0), ("broken", 0.0)]
        composite.breakdown(IDLE)
    assert sum("broken" in r.getMessage() for r in caplog.records) == 1  # logged once
