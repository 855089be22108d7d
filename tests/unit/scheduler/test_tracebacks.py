"""task_traceback keeps the task's own frames, bounded."""

from __future__ import annotations

import asyncio

from taskmill.scheduler.tracebacks import MAX_CHARS, MAX_FRAMES, task_traceback


def _deep(n: int) -> None:
    if n == 0:
        raise ValueError("bottom")
    _deep(n - 1)


def test_it_keeps_the_innermost_frames_and_the_error() -> None:
    try:
        _deep(50)
    except ValueError as exc:
        tb = task_traceback(exc)
    assert tb is not None
    assert tb.startswith("Traceback (most recent call last):")
    assert tb.endswith("ValueError: bottom")
    assert 0 < tb.count(", in _deep") <= MAX_FRAMES  # repeated lines are folded
    assert len(tb) <= MAX_CHARS


def test_it_is_bounded_in_size() -> None:
    try:
        raise RuntimeError("x" * 10 * MAX_CHARS)
    except RuntimeError as exc:
        tb = task_traceback(exc)
    assert tb is not None and len(tb) <= MAX_CHARS and tb.startswith("...")


def test_no_frames_of_the_task_means_no_traceback() -> None:
    assert task_traceback(ValueError("made up, never raised")) is None


async def test_runtime_frames_are_left_out() -> None:
    async def task_code() -> None:
        raise KeyError("path")

    try:
        await asyncio.get_running_loop().create_task(task_code())
    except KeyError as exc:
        tb = task_traceback(exc)
    assert tb is not None and "asyncio/" not in tb and "in task_code" in tb
