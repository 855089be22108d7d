"""The config file's schema and the settings it feeds."""

from __future__ import annotations

import dataclasses

from taskmill.config import _SCHEDULER
from taskmill.scheduler.config import SchedulerConfig


def test_every_scheduler_key_is_a_scheduler_setting() -> None:
    """cli passes [scheduler] on by name: no key may be validated, then ignored."""
    fields = {f.name for f in dataclasses.fields(SchedulerConfig)}
    assert set(_SCHEDULER) <= fields, set(_SCHEDULER) - fields
