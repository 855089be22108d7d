"""Resource monitoring, backpressure, throttling, IO budgets and progress estimates.

* :mod:`.sampler`: raw samples (psutil or fake), EWMA smoothing, the monitor thread.
* :mod:`.pressure`: pressure sources and their max-aggregate.
* :mod:`.throttle`: which priorities are held at which pressure.
* :mod:`.io_gate`: the disk and network IO budget checks.
* :mod:`.extrapolate`: progress extrapolated from past durations.

Only :class:`PsutilSampler` and the :class:`ResourceMonitor` thread do I/O.
"""

from __future__ import annotations

from .extrapolate import MAX_EXTRAPOLATED, DurationStats, estimate_progress, extrapolate
from .io_gate import DEFAULT_FRACTION, DEFAULT_WINDOW_S, IoAxis, disk_gate, io_gate, net_gate
from .pressure import (
    BatteryPressure,
    CompositePressure,
    DiskPressure,
    ExternalPressure,
    MemoryPressure,
    NetworkPressure,
    PressureSource,
    clamp01,
)
from .sampler import (
    BatteryState,
    FakeSampler,
    PsutilSampler,
    ResourceMonitor,
    ResourceSnapshot,
    Sampler,
    ewma,
    smooth,
)
from .throttle import ThrottlePolicy

__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_WINDOW_S",
    "MAX_EXTRAPOLATED",
    "BatteryPressure",
    "BatteryState",
    "CompositePressure",
    "DiskPressure",
    "DurationStats",
    "ExternalPressure",
    "FakeSampler",
    "IoAxis",
    "MemoryPressure",
    "NetworkPressure",
    "PressureSource",
    "PsutilSampler",
    "ResourceMonitor",
    "ResourceSnapshot",
    "Sampler",
    "ThrottlePolicy",
    "clamp01",
    "disk_gate",
    "estimate_progress",
    "ewma",
    "extrapolate",
    "io_gate",
    "net_gate",
    "smooth",
]
