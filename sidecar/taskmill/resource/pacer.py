"""Byte pacing: token buckets on bytes, reads and writes apart, shared by every executor.

:class:`ByteBucket` is pure: every method takes ``now`` (monotonic seconds).
A caller *reserves* its bytes and gets a ticket; the ticket is due once the
bucket has refilled past it. Tickets are served in order (first reserved,
first due), a rate change applies to tickets already handed out (the wait is
read against the refill so far, not fixed when reserving), and ``None`` as
the rate means unlimited (every ticket is due at once).

:class:`IoPacer` holds one bucket for reads and one for writes behind a lock,
so the event loop and executor threads share them, and waits for a ticket in
slices of at most :data:`SLICE_S`: a rate raised (or lifted) while a caller
waits reaches it within a slice. It can also be paused (no bytes go until it
resumes; the latency controller pauses it for a few tens of milliseconds to
listen for other processes' IO). It is the scheduler's one pacer; the rate is
set by the latency controller (:mod:`.latency`) or by configuration.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_BURST", "SLICE_S", "ByteBucket", "IoPacer", "PacerTotals"]

#: Bytes a bucket holds when full: a short burst, so pacing stays smooth.
DEFAULT_BURST = 256 * 1024
#: Longest sleep of a waiting caller before it reads the bucket again.
SLICE_S = 0.02
_DUE_S = 1e-6


class ByteBucket:
    """A token bucket on bytes with first-come tickets. Pure: ``now`` is passed in.

    Args:
        rate: Bytes per second, or None for unlimited.
        burst: Bytes the bucket holds when full (it starts full).
        now: The current time, monotonic seconds.

    Raises:
        ValueError: for a rate that is not a positive number, or a burst < 1.
    """

    __slots__ = ("_at", "_credit", "_refilled", "burst", "rate")

    def __init__(self, rate: float | None, burst: int, now: float) -> None:
        if burst < 1:
            raise ValueError(f"burst must be >= 1 byte, got {burst}")
        self.rate = _check_rate(rate)
        self.burst = burst
        #: Bytes available now; negative while reservations wait (a debt).
        self._credit = float(burst)
        #: Bytes refilled since the start: tickets are positions on this scale.
        self._refilled = 0.0
        self._at = now

    def _refill(self, now: float) -> None:
        if self.rate is None:
            self._credit = float(self.burst)
            self._at = now
            return
        dt = now - self._at
        if dt > 0:
            add = dt * self.rate
            self._refilled += add
            self._credit = min(float(self.burst), self._credit + add)
            self._at = now

    def skip(self, now: float) -> None:
        """Let the time since the last refill pass without refilling (a pause)."""
        self._at = max(self._at, now)

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate from ``now`` on (what refilled before counts at the old one)."""
        checked = _check_rate(rate)
        self._refill(now)
        self.rate = checked

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` bytes (possibly on credit) and return the ticket to wait for."""
        self._refill(now)
        self._credit -= n
        return self._refilled + max(0.0, -self._credit)

    def wait_s(self, ticket: float, now: float) -> float:
        """Seconds until ``ticket`` is due at the current rate (0.0 when it is)."""
        self._refill(now)
        if self.rate is None:
            return 0.0
        wait = (ticket - self._refilled) / self.rate
        # Under a microsecond is due: rounding must not leave a caller
        # sleeping for nothing (a sleep too short to move the clock).
        return wait if wait > _DUE_S else 0.0

    def available(self, now: float) -> float:
        """Bytes that could be taken now without waiting (negative: the debt)."""
        self._refill(now)
        return self._credit


def _check_rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive number of bytes/s or None, got {rate!r}")
    return float(rate)


@dataclass(frozen=True, slots=True)
class PacerTotals:
    """What went through a pacer since it was made."""

    read_bytes: int
    write_bytes: int
    #: Seconds callers spent waiting for their bytes, summed over callers.
    waited_s: float


class IoPacer:
    """Read and write byte buckets, shared by threads and the event loop.

    Args:
        read_bps: Read rate in bytes/s (None: unlimited).
        write_bps: Write rate in bytes/s (None: unlimited).
        burst: Bytes each bucket holds when full.
        clock: Monotonic seconds.
        sleep: Blocking sleep, for :meth:`pace_sync` (on executor threads).
        async_sleep: Awaitable sleep, for :meth:`pace` (on the event loop).
    """

    def __init__(
        self,
        *,
        read_bps: float | None = None,
        write_bps: float | None = None,
        burst: int = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        now = clock()
        self._read = ByteBucket(read_bps, burst, now)
        self._write = ByteBucket(write_bps, burst, now)
        self._lock = threading.Lock()
        self._paused = False
        self._read_total = 0
        self._write_total = 0
        self._waited = 0.0

    @property
    def read_bps(self) -> float | None:
        return self._read.rate

    @property
    def write_bps(self) -> float | None:
        return self._write.rate

    def set_rates(self, read_bps: float | None, write_bps: float | None) -> None:
        """Change both rates (None: unlimited); callers already waiting see it within a slice.

        Raises:
            ValueError: for a rate that is not a positive number or None.
        """
        with self._lock:
            now = self._clock()
            self._read.set_rate(read_bps, now)
            self._write.set_rate(write_bps, now)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def limited(self) -> bool:
        """Whether a caller may have to wait (a rate is set, or it is paused)."""
        return self._paused or self._read.rate is not None or self._write.rate is not None

    def pause(self) -> None:
        """Hold every caller until :meth:`resume` (bytes already going still go)."""
        with self._lock:
            if not self._paused:
                now = self._clock()
                self._read.available(now)  # refilled up to the pause
                self._write.available(now)
                self._paused = True

    def resume(self) -> None:
        """Let callers go again; the paused time adds no allowance (no burst after)."""
        with self._lock:
            if self._paused:
                now = self._clock()
                self._read.skip(now)
                self._write.skip(now)
                self._paused = False

    def totals(self) -> PacerTotals:
        with self._lock:
            return PacerTotals(self._read_total, self._write_total, self._waited)

    def _reserve(self, read: int, write: int) -> tuple[float, float]:
        if read < 0 or write < 0:
            raise ValueError("byte counts are non-negative")
        with self._lock:
            now = self._clock()
            self._read_total += read
            self._write_total += write
            r = self._read.reserve(read, now) if read else 0.0
            w = self._write.reserve(write, now) if write else 0.0
            return r, w

    def _due_in(self, tickets: tuple[float, float], read: int, write: int) -> float:
        if self._paused and (read or write):
            return SLICE_S
        with self._lock:
            now = self._clock()
            r = self._read.wait_s(tickets[0], now) if read else 0.0
            w = self._write.wait_s(tickets[1], now) if write else 0.0
        return max(r, w)

    def _waited_for(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._waited += seconds

    def pace_sync(
        self, read: int = 0, write: int = 0, *, stop: Callable[[], bool] | None = None
    ) -> bool:
        """Block until ``read`` and ``write`` bytes may go (on a thread, never the loop).

        Args:
            stop: Polled between slices; when it returns True the wait ends early.

        Returns:
            True when the bytes may go, False when ``stop`` ended the wait.
        """
        tickets = self._reserve(read, write)
        start = self._clock()
        try:
            while (wait := self._due_in(tickets, read, write)) > 0:
                if stop is not None and stop():
                    return False
                self._sleep(min(wait, SLICE_S))
            return True
        finally:
            self._waited_for(self._clock() - start)

    async def pace(
        self, read: int = 0, write: int = 0, *, stop: Callable[[], bool] | None = None
    ) -> bool:
        """Wait (asynchronously) until ``read`` and ``write`` bytes may go.

        Returns:
            True when the bytes may go, False when ``stop`` ended the wait.
        """
        tickets = self._reserve(read, write)
        start = self._clock()
        try:
            while (wait := self._due_in(tickets, read, write)) > 0:
                if stop is not None and stop():
                    return False
                await self._async_sleep(min(wait, SLICE_S))
            return True
        finally:
            self._waited_for(self._clock() - start)
