"""Threads for plain-``def`` executors, owned by the scheduler.

asyncio's default pool has ``min(32, cpus + 4)`` threads shared with
everything else in the process. A cancelled plain-``def`` task cannot be
stopped (Python has no thread cancellation): if it never checks
``ctx.cancelled`` it keeps its thread, and six of them filled the default
pool on two cores, so every later plain-``def`` task was "running" without
running. So the scheduler owns its threads, and each execution carries a
:class:`ThreadSlot` that counts the threads it has busy. The run loop counts
a stopped execution whose thread is still busy against the concurrency limit
until the thread returns: such a thread can neither push the scheduler past
its limit nor leave a dispatched task waiting for a thread. Threads are
daemons, started when none is idle (so there are as many as the
concurrency admits) and ended after a minute of idleness.

A plain-``def`` executor whose context says so (``ctx.background_io``: a
task of background priority) runs at the OS's background IO priority
(:func:`taskmill.resource.ioprio.background_io`), put back when it returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..resource.ioprio import background_io

__all__ = ["ExecutorThreads", "ThreadSlot", "bind", "run_sync"]

#: Seconds an idle thread waits for work before it ends.
IDLE_EXIT_S = 60.0

_Item = tuple[Callable[[], Any], concurrent.futures.Future[Any]]


class ExecutorThreads:
    """A pool of daemon threads that grows to what is asked of it."""

    def __init__(self, name: str = "taskmill-exec") -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0
        self._closed = False

    @property
    def size(self) -> int:
        """Threads alive now."""
        return self._count

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor threads are shut down")
            spawn = self._idle == 0
            if spawn:
                self._count += 1
            else:
                self._idle -= 1
        self._queue.put((fn, fut))
        if spawn:
            threading.Thread(
                target=self._work, name=f"{self._name}-{self._count}", daemon=True
            ).start()
        return fut

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._count -= 1
                        return
                continue  # an item is on its way to us
            if item is None:
                with self._lock:
                    self._count -= 1
                return
            fn, fut = item
            if fut.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:  # handed to the awaiting task
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let idle threads end; busy ones end when their work returns."""
        with self._lock:
            self._closed = True
            n = self._count
        for _ in range(n):
            self._queue.put(None)


class ThreadSlot:
    """One execution's claim on executor threads."""

    __slots__ = ("busy", "on_free")

    def __init__(self, on_free: Callable[[ThreadSlot], None] | None = None) -> None:
        #: Threads running this execution's code now.
        self.busy = 0
        #: Called on the event loop when ``busy`` drops to 0.
        self.on_free = on_free


_CURRENT: contextvars.ContextVar[tuple[ExecutorThreads, ThreadSlot] | None] = (
    contextvars.ContextVar("taskmill_executor_threads", default=None)
)


def bind(threads: ExecutorThreads, slot: ThreadSlot) -> contextvars.Context:
    """A context in which :func:`run_sync` uses ``threads`` and counts on ``slot``."""
    ctx = contextvars.copy_context()
    ctx.run(_CURRENT.set, (threads, slot))
    return ctx


async def run_sync(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a plain function on a thread: the scheduler's, when called from an execution."""
    bound = _CURRENT.get()
    if bound is None:
        return await asyncio.to_thread(fn, *args)
    threads, slot = bound
    loop = asyncio.get_running_loop()
    # An executor's last argument is its context (execute, finalize, on_cancel).
    if args and getattr(args[-1], "background_io", False) is True:
        fn = functools.partial(_in_background_io, fn)
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    slot.busy += 1
    try:
        fut = threads.submit(call)
    except BaseException:
        slot.busy -= 1
        raise

    def done(_f: concurrent.futures.Future[Any]) -> None:
        try:
            loop.call_soon_threadsafe(_release, slot)
        except RuntimeError:  # the loop is gone
            pass

    fut.add_done_callback(done)
    return await asyncio.wrap_future(fut, loop=loop)


def _in_background_io(fn: Callable[..., Any], *args: Any) -> Any:
    with background_io():
        return fn(*args)


def _release(slot: ThreadSlot) -> None:
    slot.busy -= 1
    if slot.busy == 0 and slot.on_free is not None:
        slot.on_free(slot)
