"""Resource awareness: what the machine is doing, and what that means for dispatch.

Owns the sampler thread (:class:`~taskmill.resource.ResourceMonitor`), the
pressure sources (disk, memory, battery, network with a bandwidth limit, and
host-set external values), the throttle policy, and the recent durations per
task type used to extrapolate progress. The gate reads a consistent view of
all this once per claim; the ``pressure`` event is emitted when the aggregate
moves by more than 0.05, at most once a second.

It also owns the IO pacer that executors' own IO goes through (``ctx.io``)
and, with monitoring on and a latency target set, the steering thread that
sets the pacer's rate (:class:`~taskmill.resource.IoSteering`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model import Progress
from ..resource import (
    BatteryPressure,
    CompositePressure,
    DiskLatencySampler,
    DiskPressure,
    DurationStats,
    IoPacer,
    IoSteering,
    LatencyTarget,
    MemoryPressure,
    NetworkPressure,
    PsutilSampler,
    ResourceMonitor,
    ResourceSnapshot,
    Sampler,
    ThrottlePolicy,
    estimate_progress,
)
from ..resource.latency import Steering
from .config import IoSettings
from .taskio import IoPacing

__all__ = ["Awareness", "ResourceView"]

log = logging.getLogger(__name__)

PRESSURE_EVENT_DELTA = 0.05
PRESSURE_EVENT_MIN_INTERVAL_MS = 1000


@dataclass(frozen=True, slots=True)
class ResourceView:
    """What the gate needs, read once per claim."""

    pressure: float
    throttle: ThrottlePolicy
    #: The smoothed resources, or None when monitoring is off (no IO gate).
    #: Under a latency target the disk rates read 0 (no disk budget).
    resources: ResourceSnapshot | None
    #: Disk-heavy tasks started since the last sample (for pacing under pressure).
    io_starts_since_sample: int = 0


class Awareness:
    """Resource monitoring, pressure and progress estimates for one scheduler."""

    def __init__(
        self,
        *,
        monitoring: bool,
        sampler: Sampler | None,
        interval_ms: int,
        alpha: float,
        bandwidth_limit_bps: float | None,
        memory_threshold: float,
        throttle: ThrottlePolicy,
        now_ms: Callable[[], int],
        emit: Callable[..., Any],
        wake: Callable[[], None],
        io: IoSettings | None = None,
    ) -> None:
        self.throttle = throttle
        self._now_ms = now_ms
        self._emit = emit
        self._wake = wake
        self.durations = DurationStats(window=20)
        self._seeded: set[str] = set()
        self.pressure = CompositePressure()
        self.monitor: ResourceMonitor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_pressure = 0.0
        self._last_event_ms = 0
        #: Disk-heavy tasks started since the last sample was taken.
        self.io_starts_since_sample = 0
        settings = io if io is not None else IoSettings()
        limit = settings.rate_limit_bps
        #: The pacer executors' IO goes through (``ctx.io``), and how.
        self.io = IoPacing(IoPacer(read_bps=limit, write_bps=limit), settings)
        #: Steers the pacer to the latency target: with real monitoring only
        #: (a sampler handed in is a test's or an embedder's, and so is the disk).
        self.steering: IoSteering | None = None
        if monitoring and sampler is None and settings.latency_target_ms > 0:
            pacer = self.io.pacer
            self.steering = IoSteering(
                pacer,
                LatencyTarget(
                    target_ms=settings.latency_target_ms,
                    floor_bps=min(settings.rate_floor_bps, limit or settings.rate_floor_bps),
                    ceiling_bps=limit,
                    interval_s=settings.sample_interval_ms / 1000,
                ),
                DiskLatencySampler(own_bytes=lambda: _paced_bytes(pacer)),
            )
        if monitoring or sampler is not None or bandwidth_limit_bps is not None:
            self.monitor = ResourceMonitor(
                sampler or PsutilSampler(),
                interval_s=interval_ms / 1000,
                alpha=alpha,
                on_sample=self._sampled_on_thread,
            )
            # Under a latency target our own IO is paced byte by byte: disk
            # pressure (which holds whole tasks back) is other processes' only.
            self.pressure.add(DiskPressure(others_only=self.steering is not None))
            self.pressure.add(MemoryPressure(threshold=memory_threshold))
            self.pressure.add(BatteryPressure())
            if bandwidth_limit_bps is not None:
                self.pressure.add(NetworkPressure(bandwidth_limit_bps))

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.monitor is not None:
            self.monitor.start()
        if self.steering is not None:
            self.steering.start()

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self.steering is not None:
            self.steering.stop()

    # -- reading ---------------------------------------------------------------

    def resources(self) -> ResourceSnapshot:
        return self.monitor.latest() if self.monitor is not None else ResourceSnapshot()

    def read(self) -> tuple[float, list[tuple[str, float]]]:
        return self.pressure.read(self.resources())

    def view(self) -> ResourceView:
        resources = self.resources()
        gated = resources
        if self.steering is not None:
            # Under the latency target the pacer rations our bytes: a disk
            # budget would only hold whole tasks back against our own
            # throughput (the net budget still applies).
            gated = dataclasses.replace(resources, disk_read_bps=0.0, disk_write_bps=0.0)
        return ResourceView(
            pressure=self.pressure.pressure(resources),
            throttle=self.throttle,
            resources=gated if self.monitor is not None else None,
            io_starts_since_sample=self.io_starts_since_sample,
        )

    def snapshot_fields(self) -> dict[str, Any]:
        resources = self.resources()
        pressure, breakdown = self.pressure.read(resources)
        return {
            "pressure": round(pressure, 4),
            "pressure_breakdown": [{"source": n, "value": round(v, 4)} for n, v in breakdown],
            "resources": resources.to_dict(),
            "monitoring": self.monitor is not None,
            "io_pacing": self.io_pacing_fields(),
        }

    def io_pacing_fields(self) -> dict[str, Any]:
        """The snapshot's ``io_pacing`` (protocol section 7)."""
        pacer = self.io.pacer
        totals = pacer.totals()
        if self.steering is not None:
            fields = self.steering.state.to_dict(self.steering.target)
        else:
            rate = pacer.write_bps
            fields = Steering(rate_bps=rate, reason="off").to_dict(None)
        fields.update(
            read_bytes=totals.read_bytes,
            write_bytes=totals.write_bytes,
            waited_s=round(totals.waited_s, 3),
        )
        return fields

    # -- changes ---------------------------------------------------------------

    def set_external(self, source: str, value: float | None) -> None:
        """A host-set pressure source ("the user is in a call"); None removes it."""
        self.pressure.set_external(source, value)
        self._pressure_changed()

    def _sampled_on_thread(self, _snapshot: ResourceSnapshot) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._sampled)
        except RuntimeError:  # the loop closed
            pass

    def _sampled(self) -> None:
        self.io_starts_since_sample = 0
        self._pressure_changed()

    def _pressure_changed(self) -> None:
        pressure, breakdown = self.read()
        now = self._now_ms()
        if (
            abs(pressure - self._last_pressure) > PRESSURE_EVENT_DELTA
            and now - self._last_event_ms >= PRESSURE_EVENT_MIN_INTERVAL_MS
        ):
            self._last_pressure = pressure
            self._last_event_ms = now
            self._emit(
                "pressure",
                pressure=round(pressure, 4),
                breakdown=[{"source": n, "value": round(v, 4)} for n, v in breakdown],
            )
        # Lower pressure or more headroom may let held work run.
        self._wake()

    # -- progress ----------------------------------------------------------------

    def record_duration(self, task_type: str, duration_ms: int) -> None:
        self.durations.record(task_type, duration_ms)

    def needs_seed(self, task_type: str) -> bool:
        return task_type not in self._seeded

    def seed(self, task_type: str, durations_ms: list[int]) -> None:
        self._seeded.add(task_type)
        # History is newest first; the window keeps the most recent.
        self.durations.seed(task_type, list(reversed(durations_ms)))

    def progress(
        self,
        task_type: str,
        now: int,
        started_at: int | None,
        reported: float | None,
        reported_at: int | None,
        message: str | None,
    ) -> Progress:
        return estimate_progress(
            now, started_at, self.durations.average(task_type), reported, reported_at, message
        )


def _paced_bytes(pacer: IoPacer) -> int:
    totals = pacer.totals()
    return totals.read_bytes + totals.write_bytes
