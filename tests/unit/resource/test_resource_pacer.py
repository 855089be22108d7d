"""The byte pacer: a pure bucket (time passed in) and the shared pacer on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from taskmill.resource import SLICE_S, ByteBucket, IoPacer

KIB = 1024
MB = 1_000_000


class FakeTime:
    """A monotonic clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def pacer(t: FakeTime, rate: float | None, burst: int = 64 * KIB) -> IoPacer:
    return IoPacer(
        read_bps=rate,
        write_bps=rate,
        burst=burst,
        clock=t.clock,
        sleep=t.sleep,
        async_sleep=t.async_sleep,
    )


# --------------------------------------------------------------------------- ByteBucket


def test_bucket_starts_full_then_makes_callers_wait_for_the_rate() -> None:
    b = ByteBucket(1 * MB, 100_000, now=0.0)
    ticket = b.reserve(100_000, now=0.0)  # the burst: at once
    assert b.wait_s(ticket, now=0.0) == 0.0
    ticket = b.reserve(500_000, now=0.0)  # on credit: due when refilled
    assert b.wait_s(ticket, now=0.0) == pytest.approx(0.5)
    assert b.wait_s(ticket, now=0.4) == pytest.approx(0.1)
    assert b.wait_s(ticket, now=0.5) == 0.0


def test_bucket_serves_tickets_in_order() -> None:
    b = ByteBucket(1 * MB, 1, now=0.0)
    first = b.reserve(200_000, now=0.0)
    second = b.reserve(200_000, now=0.0)
    assert b.wait_s(first, now=0.0) == pytest.approx(0.2, abs=1e-5)
    assert b.wait_s(second, now=0.0) == pytest.approx(0.4, abs=1e-5)


def test_bucket_refill_is_capped_at_the_burst() -> None:
    b = ByteBucket(1 * MB, 50_000, now=0.0)
    assert b.available(now=10.0) == 50_000  # idle for long: still one burst
    ticket = b.reserve(150_000, now=10.0)
    assert b.wait_s(ticket, now=10.0) == pytest.approx(0.1)


def test_a_rate_change_applies_to_tickets_already_waiting() -> None:
    b = ByteBucket(1 * MB, 1, now=0.0)
    ticket = b.reserve(1 * MB, now=0.0)
    assert b.wait_s(ticket, now=0.0) == pytest.approx(1.0, abs=1e-5)
    b.set_rate(4 * MB, now=0.5)  # half refilled at the old rate
    assert b.wait_s(ticket, now=0.5) == pytest.approx(0.125, abs=1e-5)
    b.set_rate(None, now=0.6)
    assert b.wait_s(ticket, now=0.6) == 0.0


def test_unlimited_bucket_never_waits() -> None:
    b = ByteBucket(None, 1, now=0.0)
    for _ in range(10):
        assert b.wait_s(b.reserve(10 * MB, now=0.0), now=0.0) == 0.0


@pytest.mark.parametrize("rate", [0, -1.0, float("inf"), True])
def test_bucket_refuses_a_rate_that_is_not_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be a positive number"):
        ByteBucket(rate, 1, now=0.0)


def test_bucket_refuses_an_empty_burst() -> None:
    with pytest.raises(ValueError, match="burst"):
        ByteBucket(1.0, 0, now=0.0)


# --------------------------------------------------------------------------- IoPacer


def test_pace_sync_holds_the_write_rate_on_a_fake_clock() -> None:
    t = FakeTime()
    p = pacer(t, rate=1 * MB, burst=64 * KIB)
    start = t.now
    for _ in range(16):
        assert p.pace_sync(write=64 * KIB)
    # 16 chunks of 64 KiB at 1 MB/s, the first one free (the burst).
    assert t.now - start == pytest.approx(15 * 64 * KIB / MB, rel=1e-3)
    assert all(s <= SLICE_S + 1e-9 for s in t.sleeps)
    totals = p.totals()
    assert totals.write_bytes == 16 * 64 * KIB and totals.read_bytes == 0
    assert totals.waited_s == pytest.approx(t.now - start, rel=1e-3)


def test_reads_and_writes_have_their_own_buckets() -> None:
    t = FakeTime()
    p = pacer(t, rate=1 * MB, burst=100_000)
    p.pace_sync(write=100_000)
    start = t.now
    p.pace_sync(read=100_000)  # the read bucket is still full
    assert t.now == start
    p.pace_sync(read=100_000, write=100_000)  # waits for both
    assert t.now - start == pytest.approx(0.1, rel=1e-3)


def test_unlimited_pacer_never_sleeps() -> None:
    t = FakeTime()
    p = pacer(t, rate=None)
    for _ in range(100):
        p.pace_sync(read=1 * MB, write=1 * MB)
    assert t.sleeps == []
    assert p.read_bps is None and p.write_bps is None


def test_a_raised_rate_reaches_a_waiting_caller_within_a_slice() -> None:
    t = FakeTime()
    p = pacer(t, rate=1 * MB, burst=1)
    p.pace_sync(write=1)

    def sleep_then_lift(seconds: float) -> None:
        FakeTime.sleep(t, seconds)
        if len(t.sleeps) == 3:
            p.set_rates(None, None)

    p._sleep = sleep_then_lift
    start = t.now
    p.pace_sync(write=10 * MB)  # 10 s at the old rate
    assert t.now - start == pytest.approx(3 * SLICE_S)


def test_pause_holds_callers_until_resume() -> None:
    t = FakeTime()
    p = pacer(t, rate=None)
    p.pause()
    assert p.paused

    def sleep_then_resume(seconds: float) -> None:
        FakeTime.sleep(t, seconds)
        if len(t.sleeps) == 5:
            p.resume()

    p._sleep = sleep_then_resume
    start = t.now
    p.pace_sync(write=1)
    assert t.now - start == pytest.approx(5 * SLICE_S)
    assert not p.paused


def test_a_pause_adds_no_allowance() -> None:
    t = FakeTime()
    p = pacer(t, rate=1 * MB, burst=1)
    p.pace_sync(write=1)
    p.pause()
    t.now += 10.0  # ten seconds paused: no 10 MB of credit
    p.resume()
    start = t.now
    p.pace_sync(write=100_000)
    assert t.now - start == pytest.approx(0.1, rel=1e-3)


def test_stop_ends_the_wait_early() -> None:
    t = FakeTime()
    p = pacer(t, rate=1 * MB, burst=1)
    stops = iter([False, False, True])
    assert p.pace_sync(write=10 * MB, stop=lambda: next(stops)) is False
    assert len(t.sleeps) == 2


def test_async_pace_waits_on_the_async_sleep() -> None:
    t = FakeTime()
    p = pacer(t, rate=2 * MB, burst=1)

    async def go() -> bool:
        return await p.pace(read=1 * MB)

    assert asyncio.run(go()) is True
    assert t.now - 100.0 == pytest.approx(0.5, rel=1e-3)
    assert p.totals().read_bytes == 1 * MB


def test_async_pace_stops_early() -> None:
    t = FakeTime()
    p = pacer(t, rate=1 * MB, burst=1)
    assert asyncio.run(p.pace(write=10 * MB, stop=lambda: True)) is False


def test_negative_counts_are_refused() -> None:
    p = IoPacer()
    with pytest.raises(ValueError, match="non-negative"):
        p.pace_sync(write=-1)
