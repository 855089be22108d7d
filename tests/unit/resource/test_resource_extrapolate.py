"""Progress extrapolation (semantics 1.18) and duration statistics."""

from __future__ import annotations

import pytest

from taskmill.model import Progress
from taskmill.resource import DurationStats, estimate_progress, extrapolate


def test_unknown_average_and_no_report_is_none() -> None:
    assert extrapolate(5_000, 0, None) is None
    assert extrapolate(5_000, 0, 0.0) is None
    assert extrapolate(5_000, None, 10_000) is None


def test_unknown_average_returns_the_report() -> None:
    assert extrapolate(5_000, 0, None, reported=0.3, reported_at_ms=4_000) == 0.3
    assert extrapolate(5_000, 0, 0, reported=1.7, reported_at_ms=4_000) == 1.0


def test_no_report_uses_history_rate() -> None:
    # avg 10 s, 2.5 s elapsed -> 25 %.
    assert extrapolate(2_500, 0, 10_000) == pytest.approx(0.25)
    assert extrapolate(1_002_500, 1_000_000, 10_000) == pytest.approx(0.25)
    # Overdue: capped at 99 %.
    assert extrapolate(20_000, 0, 10_000) == 0.99
    # Clock stepped back: 0, not negative.
    assert extrapolate(0, 1_000, 10_000) == 0.0


def test_report_blends_history_and_current_rate() -> None:
    # hist_rate = 1/10000 = 1e-4 per ms; reported 0.5 after 2 s: cur_rate = 2.5e-4;
    # blended = 1.75e-4; 2 s later: 0.5 + 1.75e-4 * 2000 = 0.85.
    assert extrapolate(4_000, 0, 10_000, reported=0.5, reported_at_ms=2_000) == pytest.approx(0.85)
    # Right at the report: the report itself.
    assert extrapolate(2_000, 0, 10_000, reported=0.5, reported_at_ms=2_000) == 0.5
    # Long after: capped at 99 %.
    assert extrapolate(60_000, 0, 10_000, reported=0.5, reported_at_ms=2_000) == 0.99


def test_report_at_start_uses_one_ms_floor() -> None:
    # rat - started = 0 -> max(1, 0) = 1: cur_rate = 0.001; blended = (1e-4 + 1e-3)/2 = 5.5e-4.
    value = extrapolate(100, 0, 10_000, reported=0.001, reported_at_ms=0)
    assert value == pytest.approx(0.001 + 5.5e-4 * 100)


def test_never_below_report() -> None:
    assert extrapolate(5_000, 0, 10_000, reported=1.0, reported_at_ms=4_000) == 1.0
    assert extrapolate(5_000, 0, 10_000, reported=0.995, reported_at_ms=4_000) == 0.995
    # Report in the future (clock skew): no negative progress.
    assert extrapolate(1_000, 0, 10_000, reported=0.4, reported_at_ms=3_000) == 0.4
    # Missing reported_at: "just now".
    assert extrapolate(1_000, 0, 10_000, reported=0.4) == 0.4


def test_estimate_progress_flags() -> None:
    assert estimate_progress(2_500, 0, 10_000) == Progress(percent=0.25, extrapolated=True)
    assert estimate_progress(2_500, 0, None) == Progress()
    assert estimate_progress(2_500, 0, None, 0.3, 2_000, "copying") == Progress(
        percent=0.3, message="copying", reported=True
    )
    p = estimate_progress(4_000, 0, 10_000, 0.5, 2_000)
    assert p.reported and p.extrapolated and p.percent == pytest.approx(0.85)


def test_duration_stats_keeps_last_twenty() -> None:
    stats = DurationStats()
    assert stats.average("a::b") is None
    stats.seed("a::b", range(1, 31))  # 1..30: last 20 are 11..30
    assert stats.average("a::b") == pytest.approx(sum(range(11, 31)) / 20)
    stats.record("a::b", 1_000)
    assert stats.average("a::b") == pytest.approx((sum(range(12, 31)) + 1_000) / 20)
    stats.record("c::d", -5)
    assert stats.average("c::d") == 0.0
    assert stats.task_types() == ["a::b", "c::d"]
    stats.forget("a::b")
    assert stats.average("a::b") is None


def test_duration_stats_window() -> None:
    stats = DurationStats(window=2)
    stats.seed("t::x", [100, 200, 300])
    assert stats.average("t::x") == 250.0
    with pytest.raises(ValueError):
        DurationStats(window=0)
