"""Backpressure sources (semantics 1.9) and their max-aggregate.

A :class:`PressureSource` turns the latest :class:`ResourceSnapshot` into a
pressure in 0..1. :class:`CompositePressure` holds any number of them plus the
host-set values of an :class:`ExternalPressure` registry, and reports the
maximum (0.0 when there is nothing) and a per-source breakdown. Everything
here is pure apart from :class:`DiskPressure` learning its capacity.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from typing import Protocol

from .sampler import ResourceSnapshot

__all__ = [
    "BatteryPressure",
    "CompositePressure",
    "DiskPressure",
    "ExternalPressure",
    "MemoryPressure",
    "NetworkPressure",
    "PressureSource",
    "clamp01",
]

logger = logging.getLogger(__name__)


def clamp01(value: float) -> float:
    """Clamp to 0..1; NaN counts as 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


class PressureSource(Protocol):
    """A named source of backpressure."""

    @property
    def name(self) -> str: ...

    def pressure(self, resources: ResourceSnapshot) -> float:
        """The pressure, 0..1, given the latest smoothed resources."""
        ...


class DiskPressure:
    """Disk throughput (read + write) relative to a capacity in bytes/s.

    With ``capacity_bps`` the capacity is fixed. Without it the capacity is
    learned: the largest smoothed read+write rate seen so far, but never less
    than ``min_capacity_bps`` (default 100 MB/s, a slow disk), so one burst on
    an idle machine does not read as full pressure. An idle disk is always 0.
    With ``others_only`` the bytes of this process (``disk_own_bps``) do not
    count: its own IO is paced by the latency target instead.

    Raises:
        ValueError: for a non-positive capacity.
    """

    DEFAULT_MIN_CAPACITY_BPS = 100_000_000.0

    def __init__(
        self,
        capacity_bps: float | None = None,
        *,
        min_capacity_bps: float = DEFAULT_MIN_CAPACITY_BPS,
        name: str = "disk",
        others_only: bool = False,
    ) -> None:
        if capacity_bps is not None and not capacity_bps > 0:
            raise ValueError(f"capacity_bps must be positive, got {capacity_bps}")
        if not min_capacity_bps > 0:
            raise ValueError(f"min_capacity_bps must be positive, got {min_capacity_bps}")
        self.name = name
        self.others_only = others_only
        self.fixed = capacity_bps is not None
        self._capacity = float(capacity_bps) if capacity_bps is not None else min_capacity_bps

    @property
    def capacity_bps(self) -> float:
        """The capacity in use (fixed, or learned so far)."""
        return self._capacity

    def pressure(self, resources: ResourceSnapshot) -> float:
        total = max(0.0, resources.disk_read_bps) + max(0.0, resources.disk_write_bps)
        if self.others_only:
            total = max(0.0, total - resources.disk_own_bps)
        if not self.fixed and total > self._capacity:
            self._capacity = total
        return clamp01(total / self._capacity)


class NetworkPressure:
    """``min(1, (rx + tx) / bandwidth_limit_bps)`` (semantics 1.8, named ``"network"``).

    Raises:
        ValueError: when the limit is not positive.
    """

    def __init__(self, bandwidth_limit_bps: float, *, name: str = "network") -> None:
        if not bandwidth_limit_bps > 0:
            raise ValueError(f"bandwidth_limit_bps must be positive, got {bandwidth_limit_bps}")
        self.name = name
        self.bandwidth_limit_bps = float(bandwidth_limit_bps)

    def pressure(self, resources: ResourceSnapshot) -> float:
        total = max(0.0, resources.net_rx_bps) + max(0.0, resources.net_tx_bps)
        return clamp01(total / self.bandwidth_limit_bps)


class MemoryPressure:
    """0 while memory in use is at or below ``threshold``, rising linearly to 1 at 100 %.

    Raises:
        ValueError: unless ``0 <= threshold < 1``.
    """

    def __init__(self, threshold: float = 0.8, *, name: str = "memory") -> None:
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be within [0, 1), got {threshold}")
        self.name = name
        self.threshold = threshold

    def pressure(self, resources: ResourceSnapshot) -> float:
        return clamp01((resources.memory - self.threshold) / (1.0 - self.threshold))


class BatteryPressure:
    """Pressure from a discharging battery.

    0 when the battery is unknown or plugged in, and while the charge is at or
    above ``high_percent`` (default 50). Below that it rises linearly to 1.0 at
    ``low_percent`` (default 20) and stays 1.0 below it. With the default
    throttle policy, background work stops at about 35 % charge and normal work
    at about 27.5 %.

    Raises:
        ValueError: unless ``0 <= low_percent < high_percent <= 100``.
    """

    def __init__(
        self, low_percent: float = 20.0, *, high_percent: float = 50.0, name: str = "battery"
    ) -> None:
        if not 0 <= low_percent < high_percent <= 100:
            raise ValueError(
                "need 0 <= low_percent < high_percent <= 100, "
                f"got low_percent={low_percent}, high_percent={high_percent}"
            )
        self.name = name
        self.low_percent = low_percent
        self.high_percent = high_percent

    def pressure(self, resources: ResourceSnapshot) -> float:
        battery = resources.battery
        if battery is None or battery.plugged:
            return 0.0
        span = self.high_percent - self.low_percent
        return clamp01((self.high_percent - battery.percent) / span)


class ExternalPressure:
    """Named pressure values set by the host (wire ``pressure.set {source, value}``).

    For example ``set("video_call", 1.0)`` while the user is in a call, and
    ``set("video_call", None)`` afterwards. Values are clamped to 0..1 and kept
    in the order their names were first set.
    """

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    def set(self, source: str, value: float | None) -> None:
        """Set (clamped to 0..1) or, with ``None``, remove the value of ``source``.

        Raises:
            ValueError: for an empty name or a NaN value.
        """
        if not source:
            raise ValueError("a pressure source needs a non-empty name")
        if value is None:
            self._values.pop(source, None)
            return
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"pressure for {source!r} must be a number, got NaN")
        self._values[source] = clamp01(value)

    def get(self, source: str) -> float | None:
        return self._values.get(source)

    def items(self) -> list[tuple[str, float]]:
        return list(self._values.items())

    def __contains__(self, source: object) -> bool:
        return source in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)


class CompositePressure:
    """The aggregate of all sources: their maximum (semantics 1.9).

    Registered sources come first in :meth:`breakdown`, in registration order,
    then the external values in the order they were first set. Names are
    unique across both. A source that raises is logged and counts as 0, so a
    faulty source cannot stop dispatch.

    Args:
        sources: Sources to register, in order.
        external: The host-set registry to include (a new empty one by default).
    """

    def __init__(
        self,
        sources: Iterable[PressureSource] = (),
        *,
        external: ExternalPressure | None = None,
    ) -> None:
        self._sources: list[PressureSource] = []
        # Names of sources whose last evaluation raised (logged once per run).
        self._failing: set[str] = set()
        self.external = external if external is not None else ExternalPressure()
        for source in sources:
            self.add(source)

    @property
    def sources(self) -> tuple[PressureSource, ...]:
        return tuple(self._sources)

    def names(self) -> list[str]:
        return [s.name for s in self._sources] + list(self.external)

    def add(self, source: PressureSource) -> None:
        """Register a source after the existing ones.

        Raises:
            ValueError: when a source or external value already has its name.
        """
        if source.name in self.names():
            raise ValueError(f"a pressure source named {source.name!r} is already registered")
        self._sources.append(source)

    def remove(self, name: str) -> bool:
        """Remove the source or external value called ``name``; False when there is none."""
        for i, source in enumerate(self._sources):
            if source.name == name:
                del self._sources[i]
                return True
        if name in self.external:
            self.external.set(name, None)
            return True
        return False

    def set_external(self, source: str, value: float | None) -> None:
        """Set or remove (``None``) a host-set value (wire ``pressure.set``).

        Raises:
            ValueError: for an empty name, a NaN value, or the name of a
                registered (non-external) source.
        """
        if any(s.name == source for s in self._sources):
            raise ValueError(f"{source!r} is a built-in pressure source and cannot be set")
        self.external.set(source, value)

    def breakdown(self, resources: ResourceSnapshot) -> list[tuple[str, float]]:
        """``(name, pressure)`` per source: registered ones, then external ones."""
        out = [(s.name, self._evaluate(s, resources)) for s in self._sources]
        out.extend(self.external.items())
        return out

    def pressure(self, resources: ResourceSnapshot) -> float:
        """The maximum over all sources, 0.0 when there are none."""
        return self.read(resources)[0]

    def read(self, resources: ResourceSnapshot) -> tuple[float, list[tuple[str, float]]]:
        """The aggregate and the breakdown from a single evaluation of each source."""
        breakdown = self.breakdown(resources)
        return max((v for _, v in breakdown), default=0.0), breakdown

    def _evaluate(self, source: PressureSource, resources: ResourceSnapshot) -> float:
        try:
            value = clamp01(float(source.pressure(resources)))
        except Exception:
            if source.name not in self._failing:
                logger.exception("pressure source %r failed; counting it as 0", source.name)
                self._failing.add(source.name)
            return 0.0
        self._failing.discard(source.name)
        return value
