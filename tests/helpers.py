"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from taskmill import Scheduler

MakeScheduler = Callable[..., Awaitable[Scheduler]]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, re-checking as the event loop runs.

    Raises:
        TimeoutError: it did not hold within ``timeout`` seconds.
    """
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
