"""The loop that holds background IO to the latency target: sample, steer, pace.

:class:`IoSteering` samples the disks (:class:`~.sampler.DiskLatencySampler`)
every ``interval_s`` on a daemon thread, feeds each sample to the pure
controller (:func:`~.latency.steer`), and sets the pacer's read and write
rates to the result. It keeps the latest state for snapshots. Tests drive it
with :meth:`IoSteering.apply` (a sample in hand) or :meth:`IoSteering.tick`
instead of starting the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from .latency import DiskSample, LatencyTarget, Steering, steer
from .pacer import IoPacer

__all__ = ["DiskSampler", "IoSteering"]

log = logging.getLogger(__name__)


class DiskSampler(Protocol):
    """One :class:`DiskSample` per call, or None when there is none yet."""

    def sample(self) -> DiskSample | None: ...


class IoSteering:
    """Steers ``pacer`` to keep the disk's latency under ``target``.

    Args:
        pacer: Whose rates are set.
        target: The controller's settings.
        sampler: Where samples come from.
        on_change: Called with the new state when the rate or the reason
            changes, on the sampling thread.
    """

    def __init__(
        self,
        pacer: IoPacer,
        target: LatencyTarget,
        sampler: DiskSampler,
        *,
        on_change: Callable[[Steering], None] | None = None,
    ) -> None:
        self.pacer = pacer
        self.target = target
        self.sampler = sampler
        self.on_change = on_change
        # Replaced, never mutated: reading it needs no lock.
        self.state = Steering(rate_bps=target.ceiling_bps)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        pacer.set_rates(target.ceiling_bps, target.ceiling_bps)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def apply(self, sample: DiskSample) -> Steering:
        """Steer by one sample: the next state, applied to the pacer."""
        with self._lock:
            old = self.state
            new = steer(old, sample, self.target)
            self.state = new
            if new.rate_bps != old.rate_bps:
                self.pacer.set_rates(new.rate_bps, new.rate_bps)
            if new.paused != old.paused:
                if new.paused:
                    self.pacer.pause()
                else:
                    self.pacer.resume()
        if self.on_change is not None and (
            new.rate_bps != old.rate_bps or new.reason != old.reason
        ):
            self.on_change(new)
        return new

    def tick(self) -> Steering:
        """Take one sample and steer by it (the state as is when there is none)."""
        sample = self.sampler.sample()
        return self.state if sample is None else self.apply(sample)

    def start(self) -> None:
        """Start the sampling thread (no-op when already running)."""
        if self.running:
            return
        self._stop = threading.Event()
        self.sampler.sample()  # the first reading only primes the counters
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="taskmill-io-steering", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and lift the limit to the ceiling (what is left runs unsteered)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.pacer.set_rates(self.target.ceiling_bps, self.target.ceiling_bps)
        self.pacer.resume()

    def _run(self, stop: threading.Event) -> None:
        failing = False
        while not stop.wait(self.state.wait_s(self.target)):
            try:
                self.tick()
            except Exception:
                if not failing:
                    log.warning("IO steering failed", exc_info=True)
                failing = True
            else:
                failing = False
