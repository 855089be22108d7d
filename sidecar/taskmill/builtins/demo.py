"""The ``demo`` domain (``--demo``): deterministic executors for every feature.

Any client can exercise the scheduler with these without writing Python.

- ``demo::sleep {ms, steps?: 10, result?}``: sleeps ``ms`` in ``steps`` slices,
  reporting progress after each; stops within one slice when cancelled; result
  ``result`` or ``{"slept_ms": ms}``.
- ``demo::fail {times, retryable?: true, message?}``: fails while attempt <=
  ``times`` (``-1``: always), then completes with ``{"attempts": n}``.
- ``demo::io {read_bytes, write_bytes}``: really writes then reads that many
  bytes in a temp file (fsynced, then removed) through ``ctx.io`` (paced, see
  :mod:`taskmill.scheduler.taskio`) and records the IO.
- ``demo::fanout {children, child_ms, fail_index?}``: spawns ``children``
  ``demo::sleep`` children (the one at ``fail_index`` is a ``demo::fail`` that
  always fails); finalize returns ``{"children": n}``.
- ``demo::echo``: completes with the payload as result.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from ..errors import TaskError
from ..model import IoBudget
from ..scheduler.context import TaskContext
from ..scheduler.domain import Domain

__all__ = ["demo_domain"]

_MAX_SLEEP_MS = 24 * 3600 * 1000
_MAX_IO_BYTES = 1 << 30


def _obj(payload: Any, type_name: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise TaskError.permanent(f"{type_name}: the payload must be an object")
    return payload


def _int(p: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = p.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise TaskError.permanent(f"payload.{name} must be an integer within {lo}..{hi}")
    return value


async def _sleep(payload: Any, ctx: TaskContext) -> Any:
    p = _obj(payload, "demo::sleep")
    ms = _int(p, "ms", None, 0, _MAX_SLEEP_MS)
    steps = _int(p, "steps", 10, 1, 10_000)
    for i in range(steps):
        try:
            await asyncio.wait_for(ctx.cancelled.wait(), ms / steps / 1000)
        except TimeoutError:
            pass
        ctx.check_cancelled()
        ctx.progress.report((i + 1) / steps, f"step {i + 1}/{steps}")
    return p.get("result", {"slept_ms": ms})


async def _fail(payload: Any, ctx: TaskContext) -> Any:
    p = _obj(payload, "demo::fail")
    times = _int(p, "times", None, -1, 1_000_000)
    retryable = p.get("retryable", True)
    if not isinstance(retryable, bool):
        raise TaskError.permanent("payload.retryable must be a boolean")
    message = p.get("message") or f"demo failure on attempt {ctx.attempt}"
    if times == -1 or ctx.attempt <= times:
        raise TaskError(str(message), retryable=retryable)
    return {"attempts": ctx.attempt}


def _io(payload: Any, ctx: TaskContext) -> Any:
    p = _obj(payload, "demo::io")
    read_bytes = _int(p, "read_bytes", 0, 0, _MAX_IO_BYTES)
    write_bytes = _int(p, "write_bytes", 0, 0, _MAX_IO_BYTES)
    chunk = b"\0" * (1 << 20)
    total = write_bytes + read_bytes or 1
    done = 0
    fd, path = tempfile.mkstemp(prefix="taskmill-demo-io-")
    try:
        with os.fdopen(fd, "wb") as f:
            while done < write_bytes:
                n = min(write_bytes - done, len(chunk))
                ctx.io.write_sync(f, chunk[:n])
                done += n
                ctx.progress.report_fraction(done, total, "writing")
            # Bytes to read back beyond those written: paced, not counted as written.
            left = read_bytes - write_bytes
            while left > 0:
                ctx.check_cancelled()
                n = min(left, len(chunk))
                ctx.io.pacer.pace_sync(write=n)
                f.write(chunk[:n])
                left -= n
            f.flush()
            os.fsync(f.fileno())
        read = 0
        with open(path, "rb") as f:
            while read < read_bytes:
                data = ctx.io.read_sync(f, min(len(chunk), read_bytes - read))
                if not data:
                    break
                read += len(data)
                ctx.progress.report_fraction(write_bytes + read, total, "reading")
    finally:
        ctx.io.remove_sync(path)
    return {"read_bytes": read, "write_bytes": write_bytes}


class _Fanout:
    """Spawns ``children`` children; finalize reports how many there were."""

    async def execute(self, payload: Any, ctx: TaskContext) -> Any:
        p = _obj(payload, "demo::fanout")
        n = _int(p, "children", None, 0, 10_000)
        child_ms = _int(p, "child_ms", 0, 0, _MAX_SLEEP_MS)
        fail_index = p.get("fail_index")
        for i in range(n):
            key = f"fanout-{ctx.task_id}-{i}"
            if i == fail_index:
                await ctx.spawn_child("demo::fail", {"times": -1}, key=key)
            else:
                await ctx.spawn_child("demo::sleep", {"ms": child_ms, "steps": 2}, key=key)
            ctx.progress.report_fraction(i + 1, max(n, 1), "spawning")
        return {"spawned": n}

    async def finalize(self, payload: Any, memo: Any, ctx: TaskContext) -> Any:
        return {"children": len(ctx.children)}


async def _echo(payload: Any, ctx: TaskContext) -> Any:
    return payload


def demo_domain() -> Domain:
    """A fresh ``demo`` domain with its five task types."""
    d = Domain("demo")
    d.register("sleep", _sleep)
    d.register("fail", _fail)
    d.register("io", _io, expected_io=IoBudget(disk_read=1 << 20, disk_write=1 << 20))
    d.register("fanout", _Fanout())
    d.register("echo", _echo)
    return d
