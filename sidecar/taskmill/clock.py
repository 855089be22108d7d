"""Time, injected.

The scheduler never reads the system clock directly: it asks a :class:`Clock`.
Tests pass a :class:`taskmill.testing.FakeClock` and move time by hand; the
run loop re-reads the clock whenever the fake clock is advanced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of wall-clock milliseconds that can wake a sleeper early."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever time jumps (fake clocks); real clocks ignore it."""
        ...

    @property
    def is_real(self) -> bool:
        """True when time passes by itself, so sleeping until a deadline works."""
        ...


class SystemClock:
    """The real clock."""

    is_real = True

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def on_change(self, callback: Callable[[], None]) -> None:
        return None
