"""The latency target: how fast background IO may go while someone else uses the disk.

Pure. :func:`steer` takes the controller's state, one :class:`DiskSample`
(what the disks did since the previous sample: their average request
latency, everyone's bytes and this process's) and the :class:`LatencyTarget`,
and returns the next state. Its ``rate_bps`` is what the pacer lets through
(reads and writes alike, None: unlimited), ``paused`` whether it lets nothing
through, and :meth:`Steering.wait_s` when the next sample is due.

**Is anyone else using the disk?** Everyone's bytes minus ours cannot tell
while we write fast: the kernel counts a process's written bytes when they
enter the page cache, the disks when they reach the device, and the two drift
apart by whatever is in flight, megabytes a tenth of a second when we write at
full speed, against the few kilobytes a foreground app's save moves. So the
controller *listens*: every ``listen_every_s`` (``listen_every_busy_s`` while
others are busy) it pauses the pacer, lets our IO in flight settle
(``settle_s``), and counts what the disks move in the next ``listen_s``, less
what this process moved: other processes' IO, nothing else. Heard once, the
disk is busy; quiet ``quiet_listens`` times in a row, it is ours.

- **Busy**: AIMD on the latency, smoothed over the ``interval_s`` samples
  (an EWMA, ``smoothing`` the weight of a new one): a fixed rate just under
  the knee protects the foreground's tail better than a sawtooth over it, so
  the steps near the target are small. Over the target the rate is cut by
  ``target / latency`` (latency grows with the queue we keep, so the cut aims
  at the target in one step), by ``decrease`` at least and down to
  ``deepest`` of the rate at most; at most once per ``cooldown_s``, so a cut
  is seen before the next. Below the knee the device's latency is mostly our
  own short requests' and hardly moves with the rate, so a latency that
  hovers at the target must cost a few percent, not a fixed large cut. A
  single sample over ``spike`` times the target (someone else's burst, or a
  busy spell that just began) counts at once, without waiting for the
  smoothed latency. Under the target, the rate climbs back toward the rate
  it was cut from (``recover`` of the way per sample), then beyond it by
  ``increase`` of itself per second (times ``target / latency``, up to 4,
  far under the target), unless our own IO does not use half of it (no
  growth for an allowance nobody uses). Until the first cut of a busy spell
  it grows by ``ramp`` per second at least: the spell starts from a moderate
  rate and finds the knee within a second or two. Never below
  ``floor_bps``. A busy spell starts from the last rate that met the target,
  else from ``start_bps`` (or what we were doing, when that was less).
- **Ours alone**: the limit is lifted (``ceiling_bps``; None: full speed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = ["DiskSample", "LatencyTarget", "Phase", "Reason", "Steering", "steer"]

MIB = 1024 * 1024

#: Why the rate is what it is: ``alone`` (no one else uses the disk: full
#: speed, or the ceiling), ``over_target`` (cut), ``under_target`` (growing
#: or holding), ``off`` (no latency target), ``starting`` (no sample yet).
Reason: TypeAlias = Literal["alone", "over_target", "under_target", "off", "starting"]

#: ``run`` (pacing, sampling latency), ``settle`` (paused, our IO in flight
#: ends), ``listen`` (paused, counting others' IO).
Phase: TypeAlias = Literal["run", "settle", "listen"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyTarget:
    """The controller's settings (times in seconds, rates in bytes/s).

    Raises:
        ValueError: for a target, floor or time that is not positive, a
            ceiling under the floor, or a factor out of range.
    """

    #: Average device latency (ms) to stay under while others use the disk.
    target_ms: float
    #: The lowest rate: background work never stops altogether.
    floor_bps: float = 2 * MIB
    #: The highest rate; None: unlimited (full speed when alone).
    ceiling_bps: float | None = None
    #: Weight of a new latency sample in the smoothed latency (0 < w <= 1).
    smoothing: float = 0.3
    #: The least cut: the factor applied when the latency is just over the
    #: target (0 < decrease < 1); further over, the cut is ``target / latency``.
    decrease: float = 0.95
    #: A sample this many times over the target cuts by target / latency, down
    #: to ``deepest`` of the rate.
    spike: float = 2.0
    deepest: float = 0.25
    #: Share of the way back to the rate before the last cut, per sample.
    recover: float = 0.3
    #: Growth per second past that rate, as a fraction of the rate.
    increase: float = 0.3
    #: Growth per second before the first cut of a busy spell (a slow start:
    #: from a moderate rate, find the knee quickly, then creep).
    ramp: float = 1.0
    #: Seconds between two latency samples.
    interval_s: float = 0.1
    #: Least time between two cuts.
    cooldown_s: float = 0.2
    #: Listening: how often when the disk is ours, how often when others use it,
    #: how long our IO settles first, how long to count others' bytes.
    listen_every_s: float = 1.0
    listen_every_busy_s: float = 1.0
    settle_s: float = 0.02
    listen_s: float = 0.04
    #: Others' bytes/s, while we listen, above which the disk is busy.
    others_bps: float = 512 * 1024
    #: Where a busy spell starts when no rate met the target yet (or what we
    #: were doing, when that was less).
    start_bps: float = 32 * MIB
    #: Quiet listens in a row before the disk counts as ours again.
    quiet_listens: int = 1

    def __post_init__(self) -> None:
        for name in ("target_ms", "floor_bps", "increase", "ramp", "interval_s", "cooldown_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("listen_every_s", "listen_every_busy_s", "settle_s", "listen_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.ceiling_bps is not None and self.ceiling_bps < self.floor_bps:
            raise ValueError("ceiling_bps must be at least floor_bps")
        for name in ("decrease", "deepest", "recover"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be within (0, 1), got {getattr(self, name)}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must be within (0, 1], got {self.smoothing}")
        if not self.spike >= 1:
            raise ValueError(f"spike must be >= 1, got {self.spike}")
        if self.quiet_listens < 1:
            raise ValueError(f"quiet_listens must be >= 1, got {self.quiet_listens}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskSample:
    """What the disks did over one interval (from :class:`~.sampler.DiskLatencySampler`)."""

    #: When the interval ended (monotonic seconds).
    at: float
    #: Its length in seconds.
    interval_s: float
    #: Average time a request took (ms), or None when none completed.
    latency_ms: float | None
    #: Bytes/s the devices moved (read + write), everyone's.
    system_bps: float
    #: Bytes/s this process moved (read + write).
    own_bps: float

    @property
    def others_bps(self) -> float:
        """Bytes/s moved by everyone but this process."""
        return max(0.0, self.system_bps - self.own_bps)


@dataclass(frozen=True, slots=True, kw_only=True)
class Steering:
    """The controller's state: the rate to apply, why, and what comes next."""

    #: Bytes/s for reads and for writes; None: unlimited.
    rate_bps: float | None = None
    #: Nothing goes while the controller listens.
    paused: bool = False
    reason: Reason = "starting"
    phase: Phase = "run"
    #: When the last sample ended (monotonic seconds).
    at: float | None = None
    #: The last latency sample (ms), our bytes/s then, others' at the last listen.
    latency_ms: float | None = None
    #: The latency smoothed over the samples of this busy spell.
    smoothed_ms: float | None = None
    own_bps: float = 0.0
    others_bps: float = 0.0
    #: Whether someone else uses the disk.
    others_busy: bool = False
    #: Quiet listens in a row.
    quiet: int = 0
    #: When the next listen starts.
    listen_at: float | None = None
    #: When the rate was last cut.
    cut_at: float | None = None
    #: The last rate that met the target while others used the disk.
    safe_bps: float | None = None
    #: The rate before the last cut: climbed back to quickly.
    peak_bps: float | None = None

    def wait_s(self, target: LatencyTarget) -> float:
        """Seconds from the last sample to the next one."""
        if self.phase == "settle":
            return target.settle_s
        if self.phase == "listen":
            return target.listen_s
        if self.at is None or self.listen_at is None:
            return target.interval_s
        return max(0.0, min(target.interval_s, self.listen_at - self.at))

    def to_dict(self, target: LatencyTarget | None) -> dict[str, Any]:
        """The wire form (the snapshot's ``io_pacing``, protocol section 7)."""
        return {
            "rate_bps": None if self.rate_bps is None else round(self.rate_bps),
            "reason": self.reason,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "target_ms": None if target is None else target.target_ms,
            "others_bps": round(self.others_bps),
            "own_bps": round(self.own_bps),
            "others_busy": self.others_busy,
        }


def steer(state: Steering, sample: DiskSample, target: LatencyTarget) -> Steering:
    """The next state after ``sample``. Pure."""
    now = sample.at
    if state.phase == "settle":
        # The settle window only lets our IO in flight end: listen next.
        return dataclasses.replace(state, at=now, phase="listen")
    if state.phase == "listen":
        return _heard(state, sample, target)
    state = dataclasses.replace(state, at=now, latency_ms=sample.latency_ms, own_bps=sample.own_bps)
    if state.others_busy:
        state = _aimd(state, sample, target)
    elif state.reason != "starting":
        state = dataclasses.replace(state, rate_bps=target.ceiling_bps, reason="alone")
    if state.listen_at is None or now >= state.listen_at:
        state = dataclasses.replace(state, phase="settle", paused=True)
    return state


def _heard(state: Steering, sample: DiskSample, target: LatencyTarget) -> Steering:
    """The end of a listen: is anyone else using the disk?"""
    now = sample.at
    others = sample.others_bps
    if others > target.others_bps:
        busy, quiet = True, 0
    else:
        quiet = state.quiet + 1
        busy = state.others_busy and quiet < target.quiet_listens
    every = target.listen_every_busy_s if busy else target.listen_every_s
    out = dataclasses.replace(
        state,
        at=now,
        phase="run",
        paused=False,
        others_bps=others,
        others_busy=busy,
        quiet=quiet,
        listen_at=now + every,
    )
    if not busy:
        return dataclasses.replace(out, rate_bps=target.ceiling_bps, reason="alone")
    if not state.others_busy:
        # A busy spell begins: from the last rate that met the target, else
        # from what we were doing.
        start = state.safe_bps
        if start is None:
            start = min(state.own_bps, target.start_bps) or target.start_bps
        return dataclasses.replace(
            out,
            rate_bps=_clamp(start, target),
            reason="under_target",
            cut_at=None,
            smoothed_ms=None,
        )
    return out


def _aimd(state: Steering, sample: DiskSample, target: LatencyTarget) -> Steering:
    rate = state.rate_bps if state.rate_bps is not None else _clamp(sample.own_bps, target)
    raw = sample.latency_ms
    smoothed = state.smoothed_ms
    if raw is not None:
        smoothed = raw if smoothed is None else smoothed + target.smoothing * (raw - smoothed)
        state = dataclasses.replace(state, smoothed_ms=smoothed)
    spike = raw is not None and raw > target.spike * target.target_ms
    if spike or (smoothed is not None and smoothed > target.target_ms):
        if state.cut_at is not None and sample.at - state.cut_at < target.cooldown_s:
            return dataclasses.replace(state, rate_bps=rate, reason="over_target")
        # By ``decrease``, or by as much as the latency is over the target
        # (down to ``deepest``): latency grows with the queue we keep, so
        # such a cut aims at the target in one step. What the excess left in
        # the smoothed latency must not cut again: smoothing starts afresh.
        over = raw if spike and raw is not None else smoothed
        factor = target.decrease
        if over is not None and target.target_ms / over < factor:
            factor = max(target.deepest, target.target_ms / over)
            smoothed = None
        return dataclasses.replace(
            state,
            rate_bps=_clamp(rate * factor, target),
            reason="over_target",
            cut_at=sample.at,
            peak_bps=rate,
            smoothed_ms=smoothed,
        )
    grown = rate
    if sample.own_bps >= 0.5 * rate:  # we use the allowance: it may grow
        peak = state.peak_bps
        if peak is not None and rate < 0.95 * peak:
            grown = rate + (peak - rate) * target.recover
        else:
            # Faster the further under the target (up to 4x): below the knee
            # latency hardly moves, so creeping would waste the disk.
            room = 4.0 if not smoothed else min(4.0, max(1.0, target.target_ms / smoothed))
            per_s = target.increase * room
            if state.cut_at is None:  # no cut yet this busy spell: still looking for the knee
                per_s = max(per_s, target.ramp)
            grown = rate * (1.0 + per_s * sample.interval_s)
        grown = _clamp(grown, target)
    return dataclasses.replace(state, rate_bps=grown, reason="under_target", safe_bps=rate)


def _clamp(rate: float, target: LatencyTarget) -> float:
    rate = max(rate, target.floor_bps)
    if target.ceiling_bps is not None:
        rate = min(rate, target.ceiling_bps)
    return rate
