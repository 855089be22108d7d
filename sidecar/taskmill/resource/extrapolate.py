"""Progress extrapolated from past durations (semantics 1.18). Pure, apart from
the in-memory :class:`DurationStats`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ..model import Progress

__all__ = ["MAX_EXTRAPOLATED", "DurationStats", "estimate_progress", "extrapolate"]

#: An extrapolated percent never reaches 1: only completion does.
MAX_EXTRAPOLATED = 0.99


def extrapolate(
    now_ms: int,
    started_at_ms: int | None,
    avg_duration_ms: float | None,
    reported: float | None = None,
    reported_at_ms: int | None = None,
) -> float | None:
    """Estimate a running task's progress, 0..1.

    With ``hist_rate = 1 / avg_duration_ms``:

    * nothing reported: ``min(0.99, (now - started) * hist_rate)``;
    * ``reported`` at ``reported_at_ms``: ``cur_rate = reported / max(1,
      reported_at - started)``, ``blended = (hist_rate + cur_rate) / 2``, and
      ``min(0.99, reported + blended * (now - reported_at))``, never less than
      the reported value itself.

    When the average duration is unknown (``None`` or not positive) or the task
    has no start time, nothing can be extrapolated: the result is the reported
    value (clamped to 0..1), or None when nothing was reported. A missing
    ``reported_at_ms`` means "just now". Negative elapsed times count as 0.
    """
    rp = None if reported is None else min(1.0, max(0.0, reported))
    if avg_duration_ms is None or not avg_duration_ms > 0 or started_at_ms is None:
        return rp
    hist_rate = 1.0 / avg_duration_ms
    if rp is None:
        elapsed = max(0, now_ms - started_at_ms)
        return min(MAX_EXTRAPOLATED, elapsed * hist_rate)
    rat = now_ms if reported_at_ms is None else reported_at_ms
    cur_rate = rp / max(1, rat - started_at_ms)
    blended = (hist_rate + cur_rate) / 2.0
    value = min(MAX_EXTRAPOLATED, rp + blended * max(0, now_ms - rat))
    return max(rp, value)


def estimate_progress(
    now_ms: int,
    started_at_ms: int | None,
    avg_duration_ms: float | None,
    reported: float | None = None,
    reported_at_ms: int | None = None,
    message: str | None = None,
) -> Progress:
    """A :class:`~taskmill.model.Progress` for a running task.

    ``percent`` is :func:`extrapolate`'s value (0 when None); ``reported`` says
    whether the executor reported a value, ``extrapolated`` whether past
    durations were used to move it forward.
    """
    percent = extrapolate(now_ms, started_at_ms, avg_duration_ms, reported, reported_at_ms)
    can_extrapolate = (
        avg_duration_ms is not None and avg_duration_ms > 0 and started_at_ms is not None
    )
    return Progress(
        percent=0.0 if percent is None else percent,
        message=message,
        reported=reported is not None,
        extrapolated=can_extrapolate,
    )


class DurationStats:
    """The last ``window`` completion durations per task type, in memory.

    Seed it from history at startup (:meth:`seed`), then :meth:`record` each
    successful completion.

    Raises:
        ValueError: for a window smaller than 1.
    """

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._durations: dict[str, deque[int]] = {}

    def record(self, task_type: str, duration_ms: int) -> None:
        """Add one completion; negative durations (clock steps) count as 0."""
        samples = self._durations.get(task_type)
        if samples is None:
            samples = self._durations[task_type] = deque(maxlen=self.window)
        samples.append(max(0, duration_ms))

    def seed(self, task_type: str, durations_ms: Iterable[int]) -> None:
        """Record several durations, oldest first (only the last ``window`` are kept)."""
        for duration in durations_ms:
            self.record(task_type, duration)

    def average(self, task_type: str) -> float | None:
        """The mean recorded duration, or None when nothing was recorded."""
        samples = self._durations.get(task_type)
        if not samples:
            return None
        return sum(samples) / len(samples)

    def forget(self, task_type: str) -> None:
        self._durations.pop(task_type, None)

    def task_types(self) -> list[str]:
        return list(self._durations)
