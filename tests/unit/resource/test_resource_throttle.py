"""Throttle tiers."""

from __future__ import annotations

import pytest

from taskmill.model import Priority
from taskmill.resource import ThrottlePolicy


def test_default_tiers() -> None:
    policy = ThrottlePolicy.default()
    assert policy.entries == ((192, 0.5), (128, 0.75))
    # BACKGROUND and below: held strictly above 0.5.
    for priority in (Priority.BACKGROUND, 200, Priority.IDLE):
        assert not policy.is_throttled(priority, 0.5)
        assert policy.is_throttled(priority, 0.5001)
    # NORMAL..191: held strictly above 0.75.
    for priority in (Priority.NORMAL, 191):
        assert not policy.is_throttled(priority, 0.6)
        assert not policy.is_throttled(priority, 0.75)
        assert policy.is_throttled(priority, 0.76)
    # HIGH and more urgent: never.
    for priority in (Priority.REALTIME, Priority.HIGH, 127):
        assert not policy.is_throttled(priority, 1.0)


def test_limit_for() -> None:
    policy = ThrottlePolicy.default()
    assert policy.limit_for(Priority.IDLE) == 0.5
    assert policy.limit_for(Priority.NORMAL) == 0.75
    assert policy.limit_for(Priority.HIGH) is None


def test_never() -> None:
    policy = ThrottlePolicy.never()
    assert policy.entries == ()
    assert not policy.is_throttled(Priority.IDLE, 1.0)


def test_custom_policy_and_to_list() -> None:
    policy = ThrottlePolicy([(255, 0.0), (64, 0.9)])
    assert policy.is_throttled(255, 0.01)
    assert not policy.is_throttled(254, 0.5)
    assert policy.is_throttled(64, 0.95)
    assert policy.to_list() == [[255, 0.0], [64, 0.9]]
    assert ThrottlePolicy([(1, 1)]).entries == ((1, 1.0),)


@pytest.mark.parametrize(
    "entry", [(-1, 0.5), (256, 0.5), (True, 0.5), (1.5, 0.5), (10, -0.1), (10, 1.1), (10, "x")]
)
def test_rejects_bad_entries(entry: tuple[object, object]) -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy([entry])  # type: ignore[list-item]  # bad entries, on purpose


def test_is_frozen_and_comparable() -> None:
    assert ThrottlePolicy.default() == ThrottlePolicy([(192, 0.5), (128, 0.75)])
    with pytest.raises(AttributeError):
        ThrottlePolicy.default().entries = ()  # type: ignore[misc]  # frozen: must raise
