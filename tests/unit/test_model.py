"""Model helpers: priorities, type names, retry policy parsing, records."""

from __future__ import annotations

import pytest

from taskmill import IoBudget, RetryPolicy
from taskmill.errors import InvalidParams
from taskmill.model import parse_priority, split_task_type


def test_parse_priority() -> None:
    assert [parse_priority(n) for n in ("realtime", "high", "normal", "background", "idle")] == [
        0,
        64,
        128,
        192,
        255,
    ]
    assert parse_priority(7) == 7
    for bad in (-1, 256, True, "HIGH", 1.5, None):
        with pytest.raises(InvalidParams):
            parse_priority(bad)


def test_split_task_type() -> None:
    assert split_task_type("files::hash") == ("files", "hash")
    for bad in ("files", "Files::hash", "files::", "::hash", "a::b::c", "a b::c"):
        with pytest.raises(InvalidParams):
            split_task_type(bad)


def test_retry_policy_from_mapping_names_bad_fields() -> None:
    p = RetryPolicy.from_mapping({"max_retries": 5, "backoff": "exponential", "base_ms": 10})
    assert (p.max_retries, p.backoff, p.base_ms) == (5, "exponential", 10)
    with pytest.raises(InvalidParams) as err:
        RetryPolicy.from_mapping({"max_retry": 1})
    assert err.value.field == "retry.max_retry"
    with pytest.raises(InvalidParams) as err:
        RetryPolicy.from_mapping({"base_ms": -1})
    assert err.value.field == "retry.base_ms"


def test_io_budget() -> None:
    io = IoBudget.from_mapping({"disk_read": 1, "net_tx": 2})
    assert (io + io).to_dict() == {"disk_read": 2, "disk_write": 0, "net_rx": 0, "net_tx": 4}
    with pytest.raises(InvalidParams) as err:
        IoBudget.from_mapping({"disk": 1})
    assert err.value.field == "expected_io.disk"
