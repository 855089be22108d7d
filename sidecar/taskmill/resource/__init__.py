"""Resource monitoring, backpressure, throttling, IO budgets and progress estimates.

* :mod:`.sampler`: raw samples (psutil or fake), EWMA smoothing, the monitor thread.
* :mod:`.pressure`: pressure sources and their max-aggregate.
* :mod:`.throttle`: which priorities are held at which pressure.
* :mod:`.io_gate`: the disk and network IO budget checks.
* :mod:`.extrapolate`: progress extrapolated from past durations.
* :mod:`.pacer`: token buckets on bytes that executors' IO waits for.
* :mod:`.latency`: the latency target's controller (pure).
* :mod:`.steering`: the thread that samples the disks and steers the pacer.
* :mod:`.writeback`: a bounded dirty backlog (``sync_file_range``).
* :mod:`.ioprio`: the OS's IO priority for one thread (best-effort).

Only the samplers, the :class:`ResourceMonitor` and :class:`IoSteering`
threads, and the writeback and IO priority calls do I/O.
"""

from __future__ import annotations

from .extrapolate import MAX_EXTRAPOLATED, DurationStats, estimate_progress, extrapolate
from .io_gate import DEFAULT_FRACTION, DEFAULT_WINDOW_S, IoAxis, disk_gate, io_gate, net_gate
from .ioprio import (
    DarwinIoPriority,
    IoPriority,
    LinuxIoPriority,
    WindowsIoPriority,
    background_io,
    platform_io_priority,
)
from .latency import DiskSample, LatencyTarget, Phase, Reason, Steering, steer
from .pacer import DEFAULT_BURST, SLICE_S, ByteBucket, IoPacer, PacerTotals
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
    DiskLatencySampler,
    FakeSampler,
    PsutilSampler,
    ResourceMonitor,
    ResourceSnapshot,
    Sampler,
    ewma,
    smooth,
)
from .steering import DiskSampler, IoSteering
from .throttle import ThrottlePolicy
from .writeback import FsyncSyncer, RangeSyncer, Syncer, Writeback, default_syncer

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_FRACTION",
    "DEFAULT_WINDOW_S",
    "MAX_EXTRAPOLATED",
    "SLICE_S",
    "BatteryPressure",
    "BatteryState",
    "ByteBucket",
    "CompositePressure",
    "DarwinIoPriority",
    "DiskLatencySampler",
    "DiskPressure",
    "DiskSample",
    "DiskSampler",
    "DurationStats",
    "ExternalPressure",
    "FakeSampler",
    "FsyncSyncer",
    "IoAxis",
    "IoPacer",
    "IoPriority",
    "IoSteering",
    "LatencyTarget",
    "LinuxIoPriority",
    "MemoryPressure",
    "NetworkPressure",
    "PacerTotals",
    "Phase",
    "PressureSource",
    "PsutilSampler",
    "RangeSyncer",
    "Reason",
    "ResourceMonitor",
    "ResourceSnapshot",
    "Sampler",
    "Steering",
    "Syncer",
    "ThrottlePolicy",
    "WindowsIoPriority",
    "Writeback",
    "background_io",
    "clamp01",
    "default_syncer",
    "disk_gate",
    "estimate_progress",
    "ewma",
    "extrapolate",
    "io_gate",
    "net_gate",
    "platform_io_priority",
    "smooth",
    "steer",
]
