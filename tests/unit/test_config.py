"""The config file's schema and the settings it feeds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from taskmill.config import _SCHEDULER
from taskmill.errors import InvalidParams
from taskmill.scheduler.config import SchedulerConfig


def test_every_scheduler_key_is_a_scheduler_setting() -> None:
    """cli passes [scheduler] on by name: no key may be validated, then ignored."""
    fields = {f.name for f in dataclasses.fields(SchedulerConfig)}
    assert set(_SCHEDULER) <= fields, set(_SCHEDULER) - fields


def test_io_settings_are_checked_and_named() -> None:
    for field, value in (
        ("io_latency_target_ms", -1.0),
        ("io_sample_interval_ms", 0),
        ("io_rate_floor_bps", 0.0),
        ("io_rate_limit_bps", -5.0),
        ("io_chunk_bytes", 0),
        ("io_writeback_bytes", -1),
    ):
        changes: dict[str, Any] = {field: value}
        with pytest.raises(InvalidParams, match=field) as err:
            SchedulerConfig(**changes)
        assert err.value.field == field
    io = SchedulerConfig(io_rate_limit_bps=1e6, io_writeback_bytes=0).io
    assert (io.rate_limit_bps, io.writeback_bytes, io.latency_target_ms) == (1e6, 0, 0.22)
