"""Pure scheduling decisions, with plain values and a fake ``now``."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from taskmill import Domain, IoBudget, RetryPolicy, SchedulerConfig, Submission, TaskError
from taskmill.errors import InvalidParams, PayloadTooLarge, UnknownTaskType
from taskmill.scheduler.domain import TypeRegistry
from taskmill.scheduler.policy import (
    decide_failure,
    dedup_key,
    encode_payload,
    next_wake_ms,
    resolve_submission,
)

NOW = 1_700_000_000_000


def registry() -> TypeRegistry:
    d = Domain("d", default_priority="background", default_ttl_ms=5000)
    d.register("a", lambda p, c: None, priority="high", ttl_ms=1000)
    d.register("b", lambda p, c: None)
    return TypeRegistry([d])


def test_backoff_strategies() -> None:
    assert [RetryPolicy(base_ms=100).delay_ms(n) for n in range(3)] == [100, 100, 100]
    lin = RetryPolicy(backoff="linear", base_ms=100, max_ms=250)
    assert [lin.delay_ms(n) for n in range(4)] == [100, 200, 250, 250]
    exp = RetryPolicy(backoff="exponential", base_ms=100, max_ms=1000)
    assert [exp.delay_ms(n) for n in range(6)] == [100, 200, 400, 800, 1000, 1000]
    assert RetryPolicy(backoff="exponential", base_ms=1).delay_ms(10_000) > 0


@given(st.integers(0, 50), st.integers(0, 10_000), st.integers(0, 2**31))
def test_jitter_stays_within_the_base_delay(n: int, base: int, seed: int) -> None:
    pol = RetryPolicy(backoff="exponential", base_ms=base, max_ms=60_000, jitter=True)
    plain = RetryPolicy(backoff="exponential", base_ms=base, max_ms=60_000)
    assert 0 <= pol.delay_ms(n, random.Random(seed)) <= plain.delay_ms(n)


def test_decide_failure() -> None:
    pol = RetryPolicy(max_retries=2, base_ms=50)
    d = decide_failure(TaskError("x"), 0, 2, pol)
    assert (d.kind, d.delay_ms, d.will_retry) == ("retry", 50, True)
    assert decide_failure(TaskError("x"), 2, 2, pol).kind == "dead_letter"
    assert decide_failure(TaskError.permanent("x"), 0, 2, pol).kind == "failed"
    d = decide_failure(ValueError("bad"), 0, 2, pol)
    assert d.kind == "retry" and d.message == "ValueError: bad"
    d = decide_failure(TaskError.transient("x", retry_after_ms=7), 1, 2, pol)
    assert d.delay_ms == 7


def test_next_wake() -> None:
    assert next_wake_ms(NOW, None, 500) == 500
    assert next_wake_ms(NOW, NOW + 120, 500) == 120
    assert next_wake_ms(NOW, NOW - 5, 500) == 0
    assert next_wake_ms(NOW, NOW + 10_000, 500) == 500


def test_dedup_key_is_canonical_and_qualified() -> None:
    _, c1 = encode_payload({"a": 1, "b": [1, 2]})
    _, c2 = encode_payload({"b": [1, 2], "a": 1})
    assert dedup_key("d::a", None, c1) == dedup_key("d::a", None, c2)
    assert dedup_key("d::a", None, c1) != dedup_key("e::a", None, c1)
    assert len(dedup_key("d::a", None, c1)) == 64
    # An explicit key is the key (unique per task type in the store).
    assert dedup_key("d::a", "k", c1) == "k"


def test_payload_limits() -> None:
    with pytest.raises(PayloadTooLarge):
        encode_payload("é" * (600 * 1024))  # 1.2 MB of UTF-8
    with pytest.raises(InvalidParams):
        encode_payload(float("nan"))
    with pytest.raises(InvalidParams):
        encode_payload(object())


def test_resolve_layers_defaults() -> None:
    reg = registry()
    cfg = SchedulerConfig(default_ttl_ms=99_000)
    a = resolve_submission(Submission(task_type="d::a"), reg, cfg, NOW)
    assert (a.priority, a.ttl_ms, a.expires_at) == (64, 1000, NOW + 1000)
    b = resolve_submission(Submission(task_type="d::b"), reg, cfg, NOW)
    assert (b.priority, b.ttl_ms) == (192, 5000)
    c = resolve_submission(
        Submission(task_type="d::b", priority=1, ttl_ms=7, ttl_from="first_attempt"),
        reg,
        cfg,
        NOW,
    )
    assert (c.priority, c.ttl_ms, c.expires_at) == (1, 7, None)
    assert c.label == "d::b"
    e = resolve_submission(
        Submission(task_type="d::b", key="k", run_after_ms=50, expected_io=IoBudget(net_tx=5)),
        reg,
        cfg,
        NOW,
    )
    assert (e.label, e.run_after, e.expected_io.net_tx) == ("k", NOW + 50, 5)
    with pytest.raises(InvalidParams) as err:
        resolve_submission(Submission(task_type="d::b", run_after_ms=1, run_at=NOW), reg, cfg, NOW)
    assert err.value.field == "run_at"
    with pytest.raises(UnknownTaskType):
        resolve_submission(Submission(task_type="d::zzz"), reg, cfg, NOW)


def test_integers_messagepack_cannot_carry_are_refused() -> None:
    from taskmill.scheduler.policy import encode_result

    assert encode_payload({"n": 2**64 - 1, "m": -(2**63)})[0]
    for bad in ({"n": 2**64}, [1, [-(2**63) - 1]]):
        with pytest.raises(InvalidParams) as err:
            encode_payload(bad)
        assert err.value.field == "payload"
    with pytest.raises(InvalidParams):
        encode_result({"big": 10**30})
    assert encode_payload({"f": 0.1234567890123456789})  # long digits, but a float


def test_type_caps_name_only_the_types_that_have_one() -> None:
    d = Domain("caps")
    d.register("capped", lambda p, c: None, max_concurrency=2)
    d.register("free", lambda p, c: None)
    caps = TypeRegistry([d]).type_caps
    assert caps.get("caps::capped") == 2 and caps["caps::capped"] == 2
    assert caps.get("caps::free") is None and caps.get("caps::free", 7) == 7
    assert caps.get("nope::x") is None
    with pytest.raises(KeyError):
        caps["caps::free"]
    assert dict(caps) == {"caps::capped": 2}
