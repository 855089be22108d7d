"""The latency target's controller: pure, driven by samples on a fake clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from taskmill.resource import DiskSample, LatencyTarget, Steering, steer

MB = 1_000_000
TARGET = LatencyTarget(target_ms=1.0, floor_bps=1 * MB)


class Disk:
    """Feeds the controller samples on a fake clock, with the waits it asks for."""

    def __init__(self, target: LatencyTarget = TARGET) -> None:
        self.target = target
        self.now = 0.0
        self.state = Steering()
        #: What the foreground moves (bytes/s) and the latency our rate causes.
        self.others_bps = 0.0
        self.latency: dict[str, float] = {}

    def latency_at(self, rate: float | None) -> float:
        """A disk whose latency grows with our rate while others use it."""
        if self.others_bps == 0:
            return 0.2
        return 0.2 + (rate if rate is not None else 500 * MB) / (20 * MB)

    def step(self) -> Steering:
        wait = self.state.wait_s(self.target)
        self.now += wait
        s = self.state
        own = 0.0 if s.paused else (s.rate_bps if s.rate_bps is not None else 500 * MB)
        sample = DiskSample(
            at=self.now,
            interval_s=wait,
            latency_ms=self.latency_at(s.rate_bps),
            system_bps=own + self.others_bps,
            own_bps=own,
        )
        self.state = steer(s, sample, self.target)
        return self.state

    def run(self, seconds: float) -> list[Steering]:
        end = self.now + seconds
        out = []
        while self.now < end:
            out.append(self.step())
        return out


def sample(
    at: float, latency: float | None = 0.5, system: float = 0.0, own: float = 0.0
) -> DiskSample:
    return DiskSample(at=at, interval_s=0.1, latency_ms=latency, system_bps=system, own_bps=own)


def test_it_listens_first_then_runs_at_full_speed_when_alone() -> None:
    s = steer(Steering(), sample(0.1, own=300 * MB, system=300 * MB), TARGET)
    assert (s.phase, s.paused) == ("settle", True)
    assert s.wait_s(TARGET) == TARGET.settle_s
    s = steer(s, sample(0.13, system=40 * MB), TARGET)  # what was in flight: ignored
    assert (s.phase, s.paused) == ("listen", True)
    assert s.wait_s(TARGET) == TARGET.listen_s
    s = steer(s, sample(0.18, system=0.0), TARGET)
    assert (s.phase, s.paused, s.others_busy, s.reason) == ("run", False, False, "alone")
    assert s.rate_bps is None
    assert s.listen_at == pytest.approx(0.18 + TARGET.listen_every_s)


def test_others_heard_while_listening_start_a_busy_spell_at_a_moderate_rate() -> None:
    s = Steering(phase="listen", paused=True, own_bps=80 * MB, at=1.0)
    s = steer(s, sample(1.05, system=2 * MB, own=0.0), TARGET)
    assert s.others_busy and s.reason == "under_target" and not s.paused
    assert s.rate_bps == TARGET.start_bps  # not the 80 MB/s we were doing
    assert s.others_bps == 2 * MB
    assert s.listen_at == pytest.approx(1.05 + TARGET.listen_every_busy_s)
    s = Steering(phase="listen", paused=True, own_bps=5 * MB, at=1.0)
    assert steer(s, sample(1.05, system=2 * MB), TARGET).rate_bps == 5 * MB


def test_a_busy_spell_starts_from_the_last_rate_that_met_the_target() -> None:
    s = Steering(phase="listen", paused=True, own_bps=800 * MB, safe_bps=30 * MB, at=1.0)
    s = steer(s, sample(1.05, system=2 * MB), TARGET)
    assert s.rate_bps == 30 * MB


def test_own_bytes_while_listening_are_not_others() -> None:
    s = Steering(phase="listen", paused=True, at=1.0)
    s = steer(s, sample(1.05, system=5 * MB, own=5 * MB), TARGET)
    assert not s.others_busy and s.reason == "alone"


def busy(rate: float, at: float = 10.0, **changes: Any) -> Steering:
    """A busy spell past its first cut (``cut_at`` long ago), unless changed."""
    return dataclasses.replace(
        Steering(
            rate_bps=rate,
            others_busy=True,
            reason="under_target",
            at=at,
            listen_at=at + 5,
            cut_at=at - 5,
        ),
        **changes,
    )


def test_just_over_the_target_the_rate_is_cut_a_little_then_held_for_the_cooldown() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=1.02, own=40 * MB), TARGET)
    assert (s.rate_bps, s.reason, s.cut_at) == (38 * MB, "over_target", 10.1)  # by 0.95
    s = steer(s, sample(10.2, latency=1.02, own=38 * MB), TARGET)  # 0.1 s later: held
    assert s.rate_bps == 38 * MB
    s = steer(s, sample(10.3, latency=1.02, own=38 * MB), TARGET)
    assert s.rate_bps == pytest.approx(38 * MB * 0.95)


def test_over_the_target_the_cut_is_as_deep_as_the_excess() -> None:
    # A noisy latency hovering at the target costs a few percent, not 15%:
    # a fixed rate just under the knee, not a sawtooth.
    s = steer(busy(40 * MB), sample(10.1, latency=1.1, own=40 * MB), TARGET)
    assert s.rate_bps == pytest.approx(40 * MB / 1.1)


def test_well_over_the_smoothed_target_the_cut_aims_at_it() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=1.6, own=40 * MB), TARGET)
    assert s.rate_bps == pytest.approx(25 * MB)  # 40 / 1.6
    assert s.smoothed_ms is None


def test_the_latency_is_smoothed_over_samples() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=0.5, own=40 * MB), TARGET)
    assert s.smoothed_ms == 0.5
    s = steer(s, sample(10.2, latency=1.9, own=40 * MB), TARGET)  # one high sample
    assert s.smoothed_ms == pytest.approx(0.5 + 0.3 * 1.4)
    assert s.reason == "under_target"  # smoothed 0.92: not over yet


def test_far_over_the_target_the_cut_aims_at_it_but_keeps_a_quarter() -> None:
    s = steer(busy(30 * MB), sample(10.1, latency=3.0, own=30 * MB), TARGET)
    assert s.rate_bps == pytest.approx(10 * MB)  # 30 MB/s * 1 ms / 3 ms
    assert s.smoothed_ms is None  # the spike does not cut again
    s = steer(busy(40 * MB), sample(10.1, latency=100.0, own=40 * MB), TARGET)
    assert s.rate_bps == 10 * MB  # not 0.4 MB/s: one burst of others' IO is not the knee


def test_the_rate_never_goes_under_the_floor() -> None:
    s = steer(busy(1.5 * MB), sample(10.1, latency=9.0, own=1.5 * MB), TARGET)
    assert s.rate_bps == TARGET.floor_bps


def test_until_the_first_cut_of_a_busy_spell_the_rate_ramps_up() -> None:
    # From a moderate start, the knee is found within a second or two...
    s = steer(busy(40 * MB, cut_at=None), sample(10.1, latency=0.9, own=40 * MB), TARGET)
    assert s.rate_bps == pytest.approx(40 * MB * (1 + TARGET.ramp * 0.1))
    s = steer(s, sample(10.2, latency=1.5, own=44 * MB), TARGET)
    assert s.reason == "over_target" and s.cut_at == 10.2
    # ...then the rate creeps.
    s = steer(s, sample(10.5, latency=0.9, own=s.rate_bps or 0), TARGET)
    s = dataclasses.replace(s, peak_bps=None)
    grown = steer(s, sample(10.6, latency=0.9, own=s.rate_bps or 0), TARGET)
    room = 1.0 / 0.9  # the smoothed latency's distance under the target
    assert grown.rate_bps == pytest.approx((s.rate_bps or 0) * (1 + TARGET.increase * room * 0.1))
    assert TARGET.increase * room < TARGET.ramp


def test_under_the_target_the_rate_grows_faster_the_further_under() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=1.0, own=40 * MB), TARGET)
    assert s.rate_bps == pytest.approx(40 * MB * (1 + TARGET.increase * 0.1))
    assert s.safe_bps == 40 * MB and s.reason == "under_target"
    s = steer(busy(40 * MB), sample(10.1, latency=0.5, own=40 * MB), TARGET)
    assert s.rate_bps == pytest.approx(40 * MB * (1 + TARGET.increase * 2 * 0.1))
    s = steer(busy(40 * MB), sample(10.1, latency=0.01, own=40 * MB), TARGET)
    assert s.rate_bps == pytest.approx(40 * MB * (1 + TARGET.increase * 4 * 0.1))


def test_after_a_cut_the_rate_climbs_back_toward_where_it_was() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=4.0, own=40 * MB), TARGET)
    assert (s.rate_bps, s.peak_bps) == (10 * MB, 40 * MB)
    s = steer(s, sample(10.2, latency=0.9, own=10 * MB), TARGET)
    assert s.rate_bps == pytest.approx(10 * MB + 30 * MB * TARGET.recover)
    for i in range(12):
        s = steer(s, sample(10.3 + i / 10, latency=0.9, own=s.rate_bps or 0), TARGET)
    assert s.rate_bps is not None and s.rate_bps > 40 * MB  # then past it, slowly


def test_no_growth_for_an_allowance_we_do_not_use() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=0.5, own=5 * MB), TARGET)
    assert s.rate_bps == 40 * MB


def test_no_request_completed_counts_as_under_the_target() -> None:
    s = steer(busy(40 * MB), sample(10.1, latency=None, own=40 * MB), TARGET)
    assert s.reason == "under_target" and s.rate_bps is not None and s.rate_bps > 40 * MB


def test_the_ceiling_bounds_the_rate_and_is_the_rate_when_alone() -> None:
    target = LatencyTarget(target_ms=1.0, floor_bps=1 * MB, ceiling_bps=50 * MB)
    s = steer(busy(49 * MB), sample(10.1, latency=0.1, own=49 * MB), target)
    assert s.rate_bps == 50 * MB
    s = Steering(phase="listen", paused=True, at=1.0)
    assert steer(s, sample(1.05), target).rate_bps == 50 * MB


def test_a_quiet_listen_releases_the_limit() -> None:
    s = steer(busy(10 * MB, phase="listen", paused=True), sample(10.05), TARGET)
    assert not s.others_busy and s.reason == "alone" and s.rate_bps is None
    assert s.listen_at == pytest.approx(10.05 + TARGET.listen_every_s)


def test_quiet_listens_in_a_row_release_the_limit() -> None:
    target = dataclasses.replace(TARGET, quiet_listens=2)
    s = busy(10 * MB, phase="listen", paused=True)
    s = steer(s, sample(10.05), target)
    assert s.others_busy and s.quiet == 1 and s.rate_bps == 10 * MB  # one is not enough
    s = dataclasses.replace(s, phase="listen", paused=True)
    s = steer(s, sample(10.6), target)
    assert not s.others_busy and s.reason == "alone" and s.rate_bps is None
    s = dataclasses.replace(s, phase="listen", paused=True)
    s = steer(s, sample(11.6, system=1 * MB), target)  # heard again
    assert s.others_busy and s.quiet == 0


def test_a_run_sample_at_the_listen_time_pauses() -> None:
    s = busy(10 * MB, listen_at=10.1)
    s = steer(s, sample(10.1, latency=0.5, own=10 * MB), TARGET)
    assert (s.phase, s.paused) == ("settle", True)
    assert s.rate_bps == pytest.approx(10.6 * MB)  # the sample still counted


def test_wait_is_the_interval_or_less_before_a_listen() -> None:
    assert busy(1.0, at=10.0, listen_at=10.04).wait_s(TARGET) == pytest.approx(0.04)
    assert busy(1.0, at=10.0, listen_at=12.0).wait_s(TARGET) == TARGET.interval_s


def test_wire_form() -> None:
    s = busy(12_345_678.9, latency_ms=1.23456, others_bps=2e6, own_bps=3e6)
    assert s.to_dict(TARGET) == {
        "rate_bps": 12_345_679,
        "reason": "under_target",
        "latency_ms": 1.235,
        "target_ms": 1.0,
        "others_bps": 2_000_000,
        "own_bps": 3_000_000,
        "others_busy": True,
    }
    assert Steering(reason="off").to_dict(None)["target_ms"] is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_ms": 0}, "target_ms"),
        ({"floor_bps": -1}, "floor_bps"),
        ({"ceiling_bps": 1.0}, "ceiling_bps"),
        ({"decrease": 1.0}, "decrease"),
        ({"listen_s": 0}, "listen_s"),
        ({"quiet_listens": 0}, "quiet_listens"),
    ],
)
def test_bad_settings_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TARGET, **changes)


# --------------------------------------------------------------------------- closed loop


def test_closed_loop_drops_within_a_second_holds_the_target_and_releases() -> None:
    disk = Disk()
    disk.run(2.0)
    assert disk.state.reason == "alone" and disk.state.rate_bps is None

    disk.others_bps = 2 * MB  # a foreground app starts saving
    start = disk.now
    while not (disk.state.rate_bps is not None and disk.latency_at(disk.state.rate_bps) < 1.0):
        disk.step()
        assert disk.now - start < 1.5, "the rate did not come down in time"
    # Held at the target: this disk's latency reaches 1 ms at 16 MB/s.
    states = disk.run(10.0)
    rates = [s.rate_bps for s in states if s.phase == "run" and s.rate_bps is not None]
    latencies = [disk.latency_at(rate) for rate in rates]
    assert sum(latencies) / len(latencies) <= 1.05
    assert max(latencies) <= 1.25
    assert 13 * MB <= sum(rates) / len(rates) <= 16.5 * MB

    disk.others_bps = 0.0  # the foreground stops
    start = disk.now
    while disk.state.reason != "alone":
        disk.step()
        assert disk.now - start < 1.5, "the limit was not lifted in time"
    assert disk.state.rate_bps is None
