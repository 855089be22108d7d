"""Helpers for testing code that uses taskmill: a fake clock."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to.

    The scheduler's run loop sleeps on real time only as a fallback; every
    :meth:`advance` wakes it so it re-reads ``now`` and dispatches whatever
    became due.
    """

    is_real = False

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._callbacks: list[Callable[[], None]] = []

    def now_ms(self) -> int:
        return self._now

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def advance(self, ms: int) -> None:
        """Move time forward by ``ms`` milliseconds and wake every listener."""
        if ms < 0:
            raise ValueError("time only moves forward")
        self._now += ms
        for cb in list(self._callbacks):
            cb()

    def set(self, now_ms: int) -> None:
        """Jump to an absolute time (forward only)."""
        self.advance(now_ms - self._now)
