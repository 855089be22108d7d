"""Throttle policy: which priorities are held back at which pressure (semantics 1.8).

Pure data and pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..model import Priority

__all__ = ["ThrottlePolicy"]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """An ordered list of ``(priority_floor, pressure_limit)`` tiers.

    A task is throttled when, for any tier, ``priority >= priority_floor`` and
    ``pressure > pressure_limit`` (strictly greater). Priorities are 0..255,
    0 most urgent, so a tier applies to its floor and everything less urgent.

    Raises:
        ValueError: for a floor outside 0..255 or a limit outside 0..1.
    """

    entries: tuple[tuple[int, float], ...] = ()

    def __init__(self, entries: Iterable[tuple[int, float]] = ()) -> None:
        checked: list[tuple[int, float]] = []
        for floor, limit in entries:
            if isinstance(floor, bool) or not isinstance(floor, int) or not 0 <= floor <= 255:
                raise ValueError(f"priority floor must be an integer 0..255, got {floor!r}")
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit <= 1:
                raise ValueError(f"pressure limit must be a number within 0..1, got {limit!r}")
            checked.append((floor, float(limit)))
        object.__setattr__(self, "entries", tuple(checked))

    @classmethod
    def default(cls) -> ThrottlePolicy:
        """Three tiers: BACKGROUND (192..255) held above 0.50, NORMAL (128..191)
        above 0.75, anything more urgent never."""
        return cls([(Priority.BACKGROUND, 0.50), (Priority.NORMAL, 0.75)])

    @classmethod
    def never(cls) -> ThrottlePolicy:
        """No tiers: nothing is ever throttled."""
        return cls()

    def limit_for(self, priority: int) -> float | None:
        """The pressure above which ``priority`` is held, or None when never."""
        limits = [limit for floor, limit in self.entries if priority >= floor]
        return min(limits) if limits else None

    def is_throttled(self, priority: int, pressure: float) -> bool:
        """True when some tier covers ``priority`` and ``pressure`` exceeds its limit."""
        return any(priority >= floor and pressure > limit for floor, limit in self.entries)

    def to_list(self) -> list[list[float]]:
        """The tiers as ``[[floor, limit], ...]`` (wire and config form)."""
        return [[floor, limit] for floor, limit in self.entries]
