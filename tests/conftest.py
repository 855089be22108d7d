"""Shared fixtures: real SQLite files in tmp_path, a fake clock, scheduler factories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from taskmill import Domain, Scheduler, SchedulerConfig
from taskmill.testing import FakeClock
from tests.helpers import MakeScheduler


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "tasks.db")


@pytest.fixture
async def make_scheduler(db_path: str) -> AsyncIterator[MakeScheduler]:
    """Start schedulers on ``db_path`` (by default); all are shut down at teardown."""
    started: list[Scheduler] = []

    async def make(
        *domains: Domain,
        path: str | None = None,
        clock: Any = None,
        state: dict[Any, Any] | None = None,
        sampler: Any = None,
        **config: Any,
    ) -> Scheduler:
        sched = Scheduler(
            path or db_path,
            domains=list(domains),
            config=SchedulerConfig(**config),
            clock=clock,
            state=state,
            sampler=sampler,
        )
        await sched.start()
        started.append(sched)
        return sched

    yield make
    for s in started:
        await s.shutdown("hard")
