"""Resource sampling: raw system rates, EWMA smoothing, and the monitor thread.

A :class:`Sampler` returns one *raw* :class:`ResourceSnapshot` (rates in
bytes/s, fractions 0..1) per call. :class:`PsutilSampler` is the platform
sampler; :class:`FakeSampler` returns whatever a test or embedder puts in it.

:class:`ResourceMonitor` calls a sampler every ``interval_s`` on a daemon
thread (sampling may block: ``psutil`` reads ``/proc`` and ``sysfs``), smooths
each field with :func:`ewma` and publishes an immutable snapshot that any
thread can read with :meth:`ResourceMonitor.latest`. Tests drive it
synchronously with :meth:`ResourceMonitor.tick` instead of starting the thread.

:class:`DiskLatencySampler` feeds the latency target (:mod:`.latency`): the
devices' average request latency over an interval, and how many bytes other
processes moved (everyone's minus this process's own).

The reading in this package happens in the samplers' ``sample`` methods;
everything else is pure.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .latency import DiskSample

__all__ = [
    "BatteryState",
    "DiskLatencySampler",
    "FakeSampler",
    "PsutilSampler",
    "ResourceMonitor",
    "ResourceSnapshot",
    "Sampler",
    "ewma",
    "smooth",
]

logger = logging.getLogger(__name__)

#: Smoothed rates below this many bytes/s are reported as 0, so that an idle
#: disk or network reads as idle (the IO gate admits everything on 0 rates)
#: instead of decaying forever towards a tiny positive number.
IDLE_FLOOR_BPS = 1.0

_RATE_FIELDS = ("disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps", "disk_own_bps")
_FRACTION_FIELDS = ("cpu", "memory")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryState:
    """The battery charge, when the platform reports one."""

    #: Charge, 0..100.
    percent: float
    #: True when on mains power (charging or full).
    plugged: bool

    def to_dict(self) -> dict[str, Any]:
        return {"percent": self.percent, "plugged": self.plugged}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSnapshot:
    """System resource usage at one moment: raw from a sampler, or smoothed.

    Rates are bytes per second over the whole machine, not just this process.
    The default value (all zeros, no battery) means "idle / unknown".
    """

    #: CPU utilisation, 0..1 (reported, never used for gating).
    cpu: float = 0.0
    #: Fraction of system memory in use, 0..1.
    memory: float = 0.0
    disk_read_bps: float = 0.0
    disk_write_bps: float = 0.0
    net_rx_bps: float = 0.0
    net_tx_bps: float = 0.0
    #: ``None`` when there is no battery or the platform cannot tell.
    battery: BatteryState | None = None
    #: Of the disk bytes/s (read + write), those of this process (0: unknown).
    disk_own_bps: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The wire form (protocol section 7, ``resources``); ``battery`` is null when unknown."""
        return {
            "cpu": self.cpu,
            "disk_read_bps": self.disk_read_bps,
            "disk_write_bps": self.disk_write_bps,
            "net_rx_bps": self.net_rx_bps,
            "net_tx_bps": self.net_tx_bps,
            "memory": self.memory,
            "battery": None if self.battery is None else self.battery.to_dict(),
            "disk_own_bps": self.disk_own_bps,
        }


class Sampler(Protocol):
    """Produces one raw (unsmoothed) snapshot per call.

    ``sample`` may block briefly; :class:`ResourceMonitor` calls it from its own
    thread, never from the event loop. A sampler that works from cumulative
    counters keeps the previous reading itself and returns rates.
    """

    def sample(self) -> ResourceSnapshot: ...


def ewma(old: float, new: float, alpha: float) -> float:
    """Exponentially weighted moving average: ``alpha*new + (1-alpha)*old``.

    When ``old == 0`` the new value is taken as is (semantics 1.8), so the
    first real reading is not dragged towards zero.
    """
    if old == 0:
        return new
    return alpha * new + (1.0 - alpha) * old


def smooth(
    old: ResourceSnapshot,
    raw: ResourceSnapshot,
    alpha: float,
    *,
    idle_floor_bps: float = IDLE_FLOOR_BPS,
) -> ResourceSnapshot:
    """Apply :func:`ewma` to each numeric field of ``raw`` against ``old``.

    Smoothed rates below ``idle_floor_bps`` become 0. The battery is a level,
    not a rate: the latest reading is taken as is.
    """
    changes: dict[str, Any] = {}
    for name in _FRACTION_FIELDS:
        changes[name] = _clamp01(ewma(getattr(old, name), getattr(raw, name), alpha))
    for name in _RATE_FIELDS:
        value = ewma(getattr(old, name), max(0.0, getattr(raw, name)), alpha)
        changes[name] = value if value >= idle_floor_bps else 0.0
    return ResourceSnapshot(battery=raw.battery, **changes)


def _clamp01(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


# --------------------------------------------------------------------------- samplers


class FakeSampler:
    """A sampler returning a value set by hand, for tests and embedders.

    Attributes:
        value: What the next :meth:`sample` returns.
        error: When set, :meth:`sample` raises it instead.
        calls: How many times :meth:`sample` was called.
    """

    def __init__(self, value: ResourceSnapshot | None = None) -> None:
        self.value = value if value is not None else ResourceSnapshot()
        self.error: Exception | None = None
        self.calls = 0

    def set(self, value: ResourceSnapshot | None = None, **changes: Any) -> None:
        """Replace the value, or change some of its fields (``set(disk_write_bps=1e6)``)."""
        base = value if value is not None else self.value
        self.value = dataclasses.replace(base, **changes) if changes else base

    def sample(self) -> ResourceSnapshot:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


class _Counters(NamedTuple):
    """Cumulative counters at one instant; ``None`` where unavailable."""

    at: float
    disk_read: int | None
    disk_write: int | None
    net_rx: int | None
    net_tx: int | None
    disk_own: int | None = None


def _is_loopback(nic: str) -> bool:
    lowered = nic.lower()
    if lowered == "lo" or "loopback" in lowered:
        return True
    return lowered.startswith("lo") and lowered[2:].isdigit()


def _rate(prev: int | None, cur: int | None, dt: float) -> float:
    if prev is None or cur is None or dt <= 0:
        return 0.0
    delta = cur - prev
    # A counter that went backwards was reset (device removed, driver reload).
    return delta / dt if delta > 0 else 0.0


class PsutilSampler:
    """The platform sampler, built on ``psutil``.

    Disk and network rates are deltas of cumulative counters
    (``disk_io_counters``, ``net_io_counters``) divided by the elapsed
    ``time.monotonic`` time, so the first sample reports 0 rates. Counters that
    are missing (``None`` in some containers) or raise count as 0. Network
    traffic on loopback interfaces is excluded (it includes our own IPC).
    ``disk_own_bps`` is this process's share (``Process.io_counters``; 0 where
    the platform has none).

    The battery comes from ``sensors_battery``; when that is missing, returns
    ``None`` or raises, the battery is unknown. A battery whose plug state
    cannot be determined (``power_plugged is None``) is reported as plugged, so
    battery pressure never throttles on a guess.

    Args:
        ps: The ``psutil`` module, or a stand-in with the same functions (tests).
        clock: Monotonic seconds.
        battery: Whether to read the battery at all.
    """

    def __init__(
        self,
        *,
        ps: Any = None,
        clock: Callable[[], float] = time.monotonic,
        battery: bool = True,
    ) -> None:
        if ps is None:
            import psutil

            ps = psutil
        self._ps: Any = ps
        self._clock = clock
        self._battery = battery and hasattr(ps, "sensors_battery")
        self._process: Any = None
        self._prev: _Counters | None = None
        # cpu_percent(interval=None) compares with the previous call; the first
        # call returns a meaningless 0.0, so prime it here.
        self._call(lambda: ps.cpu_percent(interval=None), "cpu_percent")

    def sample(self) -> ResourceSnapshot:
        cur = self._read_counters()
        prev, self._prev = self._prev, cur
        rates: dict[str, float] = {}
        if prev is not None:
            dt = cur.at - prev.at
            rates = {
                "disk_read_bps": _rate(prev.disk_read, cur.disk_read, dt),
                "disk_write_bps": _rate(prev.disk_write, cur.disk_write, dt),
                "net_rx_bps": _rate(prev.net_rx, cur.net_rx, dt),
                "net_tx_bps": _rate(prev.net_tx, cur.net_tx, dt),
                "disk_own_bps": _rate(prev.disk_own, cur.disk_own, dt),
            }
        cpu = self._call(lambda: self._ps.cpu_percent(interval=None), "cpu_percent")
        mem = self._call(lambda: self._ps.virtual_memory().percent, "virtual_memory")
        return ResourceSnapshot(
            cpu=_clamp01(float(cpu or 0.0) / 100.0),
            memory=_clamp01(float(mem or 0.0) / 100.0),
            battery=self._read_battery(),
            **rates,
        )

    def _read_counters(self) -> _Counters:
        at = self._clock()
        disk = self._call(lambda: self._ps.disk_io_counters(perdisk=False), "disk_io_counters")
        nics = self._call(lambda: self._ps.net_io_counters(pernic=True), "net_io_counters")
        net_rx: int | None = None
        net_tx: int | None = None
        if nics:
            counters = [c for name, c in nics.items() if not _is_loopback(name)]
            net_rx = sum(int(c.bytes_recv) for c in counters)
            net_tx = sum(int(c.bytes_sent) for c in counters)
        own = self._call(lambda: self._own_process().io_counters(), "io_counters")
        return _Counters(
            at=at,
            disk_read=None if disk is None else int(disk.read_bytes),
            disk_write=None if disk is None else int(disk.write_bytes),
            net_rx=net_rx,
            net_tx=net_tx,
            disk_own=None if own is None else int(own.read_bytes) + int(own.write_bytes),
        )

    def _own_process(self) -> Any:
        if self._process is None:
            self._process = self._ps.Process()
        return self._process

    def _read_battery(self) -> BatteryState | None:
        if not self._battery:
            return None
        try:
            info = self._ps.sensors_battery()
        except Exception:
            logger.debug("sensors_battery failed; battery disabled", exc_info=True)
            self._battery = False
            return None
        if info is None or info.percent is None:
            return None
        plugged = True if info.power_plugged is None else bool(info.power_plugged)
        return BatteryState(percent=min(100.0, max(0.0, float(info.percent))), plugged=plugged)

    @staticmethod
    def _call(fn: Callable[[], Any], what: str) -> Any:
        try:
            return fn()
        except Exception:
            logger.debug("psutil %s failed", what, exc_info=True)
            return None


class _DiskCounters(NamedTuple):
    at: float
    ops: int
    busy_ms: int
    system_bytes: int
    own_bytes: int


class DiskLatencySampler:
    """The devices' average request latency and who moved the bytes, from psutil.

    Latency is the growth of ``read_time + write_time`` over the growth of
    ``read_count + write_count`` (``disk_io_counters``, all disks): the
    average time a request spent queued and served. Others' bytes are the
    devices' bytes minus this process's (``Process.io_counters``; where the
    platform has none, macOS, the bytes ``own_bytes`` counts, say the pacer's).
    The first call returns None (rates need two readings), so does a call
    whose disk counters are unavailable.

    Args:
        ps: The ``psutil`` module, or a stand-in with the same functions (tests).
        clock: Monotonic seconds.
        own_bytes: This process's bytes so far, when psutil cannot tell.
    """

    def __init__(
        self,
        *,
        ps: Any = None,
        clock: Callable[[], float] = time.monotonic,
        own_bytes: Callable[[], int] | None = None,
    ) -> None:
        if ps is None:
            import psutil

            ps = psutil
        self._ps: Any = ps
        self._clock = clock
        self._own_fallback = own_bytes
        self._process: Any = None
        self._process_counters = True
        self._prev: _DiskCounters | None = None

    def sample(self) -> DiskSample | None:
        cur = self._read()
        prev, self._prev = self._prev, cur
        if cur is None or prev is None:
            return None
        dt = cur.at - prev.at
        if dt <= 0:
            return None
        ops = cur.ops - prev.ops
        busy = cur.busy_ms - prev.busy_ms
        return DiskSample(
            at=cur.at,
            interval_s=dt,
            latency_ms=busy / ops if ops > 0 and busy >= 0 else None,
            system_bps=max(0, cur.system_bytes - prev.system_bytes) / dt,
            own_bps=max(0, cur.own_bytes - prev.own_bytes) / dt,
        )

    def _read(self) -> _DiskCounters | None:
        at = self._clock()
        try:
            disk = self._ps.disk_io_counters(perdisk=False)
        except Exception:
            logger.debug("disk_io_counters failed", exc_info=True)
            return None
        if disk is None:
            return None
        return _DiskCounters(
            at=at,
            ops=int(disk.read_count) + int(disk.write_count),
            busy_ms=int(disk.read_time) + int(disk.write_time),
            system_bytes=int(disk.read_bytes) + int(disk.write_bytes),
            own_bytes=self._own(),
        )

    def _own(self) -> int:
        if self._process_counters:
            try:
                if self._process is None:
                    self._process = self._ps.Process()
                own = self._process.io_counters()
                return int(own.read_bytes) + int(own.write_bytes)
            except Exception:
                # Not on this platform (macOS) or not allowed: never ask again.
                logger.debug("Process.io_counters failed; counting own bytes", exc_info=True)
                self._process_counters = False
        return self._own_fallback() if self._own_fallback is not None else 0


# --------------------------------------------------------------------------- monitor


class ResourceMonitor:
    """Samples resources on a daemon thread and keeps a smoothed snapshot.

    Args:
        sampler: Where raw readings come from.
        interval_s: Seconds between samples (semantics default 1 s).
        alpha: EWMA weight of a new reading, in (0, 1] (semantics default 0.3).
        on_sample: Called with each new smoothed snapshot, on the sampling
            thread (or the caller's, for :meth:`tick` and :meth:`set_sample`).
            An asyncio consumer should hop with ``loop.call_soon_threadsafe``.

    Raises:
        ValueError: for a non-positive interval or an alpha outside (0, 1].
    """

    def __init__(
        self,
        sampler: Sampler,
        *,
        interval_s: float = 1.0,
        alpha: float = 0.3,
        on_sample: Callable[[ResourceSnapshot], None] | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be within (0, 1], got {alpha}")
        self.sampler = sampler
        self.interval_s = interval_s
        self.alpha = alpha
        self.on_sample = on_sample
        # Replaced, never mutated: reading the reference needs no lock.
        self._latest = ResourceSnapshot()
        # Serialises tick() and set_sample() (thread vs. caller).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def latest(self) -> ResourceSnapshot:
        """The latest smoothed snapshot (all zeros before the first sample)."""
        return self._latest

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> ResourceSnapshot:
        """Take one sample, smooth it, publish it and return it (synchronously).

        Raises:
            Exception: whatever the sampler raises; the snapshot is unchanged.
        """
        with self._lock:
            raw = self.sampler.sample()
            snapshot = smooth(self._latest, raw, self.alpha)
            self._latest = snapshot
        self._notify(snapshot)
        return snapshot

    def set_sample(self, snapshot: ResourceSnapshot) -> None:
        """Publish ``snapshot`` as is; later ticks smooth from it."""
        with self._lock:
            self._latest = snapshot
        self._notify(snapshot)

    def start(self) -> None:
        """Start the sampling thread (no-op when already running).

        The first sample is taken at once, then every ``interval_s``.
        """
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="taskmill-resource-monitor", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the sampling thread and wait up to ``timeout`` seconds for it.

        The thread wakes at once (it waits on an event, not a sleep), so this
        returns as soon as any sample in progress finishes. Safe to call from
        ``on_sample`` (it then does not wait for itself) and when not started.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                # Keep sampling; log the first failure of a run of failures only.
                if not self._failing:
                    logger.warning("resource sampling failed", exc_info=True)
                self._failing = True
            else:
                self._failing = False
            if stop.wait(self.interval_s):
                break

    def _notify(self, snapshot: ResourceSnapshot) -> None:
        callback = self.on_sample
        if callback is not None:
            callback(snapshot)
