"""Task code that misbehaves in every way users have seen (``--app unruly:dom``).

Each type does one bad thing; ``unruly::ok`` completes, as a sibling that must
not be affected. ``payload.marker`` (a file path), when given, is appended to
each time the executor starts, so a test can count runs across restarts.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from taskmill import Domain

dom = Domain("unruly")


class Custom(BaseException):
    """A BaseException that is neither Exception nor one of Python's own."""


def _mark(payload: Any) -> None:
    if isinstance(payload, dict) and payload.get("marker"):
        with open(payload["marker"], "a") as f:
            f.write("run\n")


def _deep(n: int) -> Any:
    value: Any = 0
    for _ in range(n):
        value = [value]
    return value


RAISES: dict[str, BaseException] = {
    "exit": SystemExit(3),
    "interrupt": KeyboardInterrupt(),
    "base": Custom("custom base exception"),
    "genexit": GeneratorExit(),
    "cancelled": asyncio.CancelledError(),
}


def _register_raisers() -> None:
    for name, exc in RAISES.items():

        async def raise_async(payload: Any, ctx: Any, exc: BaseException = exc) -> Any:
            _mark(payload)
            raise exc

        def raise_sync(payload: Any, ctx: Any, exc: BaseException = exc) -> Any:
            _mark(payload)
            raise exc

        dom.register(f"{name}_async", raise_async)
        dom.register(f"{name}_sync", raise_sync)


_register_raisers()


@dom.task("deep_result")
async def deep_result(payload: Any, ctx: Any) -> Any:
    _mark(payload)
    return _deep(100_000)


@dom.task("surrogate_result")
def surrogate_result(payload: Any, ctx: Any) -> Any:
    _mark(payload)
    return {"name": "\ud800"}


@dom.task("object_result")
async def object_result(payload: Any, ctx: Any) -> Any:
    _mark(payload)
    return object()


@dom.task("ok")
async def ok(payload: Any, ctx: Any) -> Any:
    return {"ok": True}


@dom.task("spin")
async def spin(payload: Any, ctx: Any) -> Any:
    """Blocks the event loop (a CPU loop in a coroutine) for ``payload.s`` seconds."""
    _mark(payload)
    end = time.monotonic() + float(payload.get("s", 60))
    while time.monotonic() < end:
        pass
    return None


@dom.task("deaf_async")
async def deaf_async(payload: Any, ctx: Any) -> Any:
    """Ignores cancellation: swallows CancelledError and keeps sleeping."""
    _mark(payload)
    end = time.monotonic() + float(payload.get("s", 60))
    while time.monotonic() < end:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass
    return None


@dom.task("deaf_sync")
def deaf_sync(payload: Any, ctx: Any) -> Any:
    """A plain def that never looks at ctx.cancelled."""
    _mark(payload)
    time.sleep(float(payload.get("s", 60)))
    return None


@dom.task("greedy_sync")
def greedy_sync(payload: Any, ctx: Any) -> Any:
    """A plain def that computes in Python for ``payload.s`` seconds, holding
    the GIL as long as the interpreter lets it; returns that interval."""
    end = time.monotonic() + float(payload.get("s", 0.05))
    while time.monotonic() < end:
        pass
    return {"switch_interval_s": sys.getswitchinterval()}


@dom.task("quick_sync")
def quick_sync(payload: Any, ctx: Any) -> Any:
    """A short plain def that says when it ran (monotonic seconds)."""
    start = time.monotonic()
    time.sleep(0.02)
    return {"thread": True, "start": start, "end": time.monotonic()}


def _lookup(payload: Any) -> Any:
    return payload["path"]  # KeyError: 'path' (the line a developer must see)


@dom.task("keyerror", retry=None)
async def keyerror(payload: Any, ctx: Any) -> Any:
    return _lookup(payload)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("an app module for --app, not a program")
