"""Executors normalised (scheduler/domain.py): each kind runs where it should."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from taskmill.scheduler.domain import BoundExecutor


class AsyncCallable:
    """An object whose __call__ is a coroutine function (a common executor shape)."""

    async def __call__(self, payload: Any, ctx: Any) -> Any:
        await asyncio.sleep(0)
        return (payload, threading.current_thread() is threading.main_thread())


class WithExecute:
    async def execute(self, payload: Any, ctx: Any) -> Any:
        return (payload, threading.current_thread() is threading.main_thread())


def plain(payload: Any, ctx: Any) -> Any:
    return (payload, threading.current_thread() is threading.main_thread())


async def coroutine_function(payload: Any, ctx: Any) -> Any:
    return (payload, threading.current_thread() is threading.main_thread())


async def test_async_code_runs_on_the_loop_and_plain_code_on_a_thread() -> None:
    runs = {
        "async __call__": BoundExecutor.of(AsyncCallable()),
        "async execute": BoundExecutor.of(WithExecute()),
        "coroutine function": BoundExecutor.of(coroutine_function),
        "plain function": BoundExecutor.of(plain),
    }
    ctx: Any = None  # these executors never look at it
    on_loop = {name: (await b.execute(1, ctx))[1] for name, b in runs.items()}
    assert on_loop == {
        "async __call__": True,
        "async execute": True,
        "coroutine function": True,
        "plain function": False,
    }
    # A coroutine function is called as it is, without a wrapper per run.
    assert runs["coroutine function"].execute is coroutine_function
