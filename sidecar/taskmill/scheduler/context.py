"""What an executor sees while it runs: :class:`TaskContext`."""

from __future__ import annotations

import asyncio
import threading
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import TaskCancelled
from ..model import IoBudget, JSONValue, Submission, SubmitResult, TaskRecord
from .taskio import IoPacing, TaskIo, lowers_io

__all__ = ["CancelSignal", "ProgressReporter", "Spawner", "TaskContext", "state_view"]


class Spawner(Protocol):
    """What a running task reaches the scheduler through: submissions, the IO pacer."""

    @property
    def io_pacing(self) -> IoPacing: ...

    async def submit(
        self, task_type: str, payload: JSONValue = None, **options: Any
    ) -> SubmitResult: ...

    async def spawn_children(
        self, parent: TaskRecord, subs: list[Submission]
    ) -> list[SubmitResult]: ...

    async def spawn_sibling(
        self, rec: TaskRecord, task_type: str, payload: JSONValue, options: dict[str, Any]
    ) -> SubmitResult: ...


ProgressSink = Callable[["TaskContext", float, "str | None"], None]


_IO_LOCK = threading.Lock()
_NO_IO = IoBudget()


class CancelSignal:
    """Set when the task is cancelled, preempted, paused or shut down.

    Usable from coroutines (``await signal.wait()``) and threads
    (``signal.is_set()``).
    """

    __slots__ = ("_event", "_flag", "reason")

    def __init__(self) -> None:
        self._flag = False
        self._event: asyncio.Event | None = None  # created on first wait()
        #: Why: "cancelled", "preempted", "paused", "superseded" or "shutdown".
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._flag

    def __bool__(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    def fire(self, reason: str) -> None:
        """Set the signal (the scheduler does, when the run must stop)."""
        if self._flag:
            return
        self.reason = reason
        self._flag = True
        if self._event is not None:
            self._event.set()


class ProgressReporter:
    """Reports how far a task has got; each report becomes a ``progress`` event."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx

    def report(self, fraction: float, message: str | None = None) -> None:
        """Report progress as a fraction 0..1 (clamped)."""
        self._ctx._on_progress(max(0.0, min(1.0, float(fraction))), message)

    def report_fraction(
        self, done: int | float, total: int | float, message: str | None = None
    ) -> None:
        """Report ``done / total`` (1.0 when ``total`` is 0)."""
        self.report(1.0 if total == 0 else done / total, message)


class TaskContext:
    """The running task's record, cancellation signal, progress and IO counters.

    Attributes:
        record: The task as claimed for this run.
        io: Paced reads and writes (:class:`~taskmill.scheduler.taskio.TaskIo`).
        attempt: 1 for the first run, 2 for the first retry, and so on.
        cancelled: Set when the run must stop; see :meth:`check_cancelled`.
        progress: ``ctx.progress.report(0.5, "halfway")``.
        state: Shared state, the domain's first, then the scheduler's.
        phase: ``"execute"`` or ``"finalize"``.
    """

    __slots__ = (
        "_io",
        "_loop",
        "_loop_thread",
        "_progress",
        "_progress_sink",
        "_spawner",
        "_task_io",
        "attempt",
        "cancelled",
        "children",
        "phase",
        "record",
        "spawned",
        "state",
    )

    def __init__(
        self,
        spawner: Spawner,
        record: TaskRecord,
        attempt: int,
        state: Mapping[Any, Any],
        loop: asyncio.AbstractEventLoop,
        phase: str = "execute",
        children: list[dict[str, Any]] | None = None,
        progress_sink: ProgressSink | None = None,
    ) -> None:
        self._spawner = spawner
        self.record = record
        self.attempt = attempt
        self.phase = phase
        #: In finalize: the outcome of each child (id, task_type, status, result, error).
        self.children: list[dict[str, Any]] = [] if children is None else list(children)
        self.cancelled = CancelSignal()
        self._progress: ProgressReporter | None = None
        self.state: Mapping[Any, Any] = state
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._io = [0, 0, 0, 0]
        #: How many children this run spawned (counted by the scheduler).
        self.spawned = 0
        self._progress_sink = progress_sink
        self._task_io: TaskIo | None = None

    @property
    def progress(self) -> ProgressReporter:
        """``ctx.progress.report(0.5, "halfway")``."""
        reporter = self._progress
        if reporter is None:
            reporter = self._progress = ProgressReporter(self)
        return reporter

    @property
    def io(self) -> TaskIo:
        """Paced IO: ``await ctx.io.write(f, data)``, ``ctx.io.read_sync(f, n)``,
        ``await ctx.io.pace(write=n)`` (see :mod:`taskmill.scheduler.taskio`)."""
        task_io = self._task_io
        if task_io is None:
            task_io = self._task_io = TaskIo(self, self._spawner.io_pacing)
        return task_io

    @property
    def background_io(self) -> bool:
        """Whether this task's IO runs at the OS's background IO priority: its
        priority is background or less urgent, and the scheduler's
        ``io_background_priority`` is on. Plain ``def`` executors run so."""
        return lowers_io(self.record.priority, self._spawner.io_pacing)

    @property
    def task_id(self) -> int:
        return self.record.id

    @property
    def payload(self) -> JSONValue:
        return self.record.payload

    @property
    def task_type(self) -> str:
        return self.record.task_type

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if the run must stop."""
        if self.cancelled.is_set():
            raise TaskCancelled(self.cancelled.reason or "cancelled")

    def _on_progress(self, fraction: float, message: str | None) -> None:
        sink = self._progress_sink
        if sink is None or self.cancelled.is_set():
            return
        if threading.get_ident() == self._loop_thread:
            sink(self, fraction, message)
        else:
            self._loop.call_soon_threadsafe(sink, self, fraction, message)

    def _add_io(self, index: int, n: int) -> None:
        if n < 0:
            raise ValueError("byte counts are non-negative")
        with _IO_LOCK:
            self._io[index] += int(n)

    def record_read_bytes(self, n: int) -> None:
        """Add ``n`` to the bytes this task read from disk."""
        self._add_io(0, n)

    def record_write_bytes(self, n: int) -> None:
        """Add ``n`` to the bytes this task wrote to disk."""
        self._add_io(1, n)

    def record_net_rx_bytes(self, n: int) -> None:
        """Add ``n`` to the bytes this task received from the network."""
        self._add_io(2, n)

    def record_net_tx_bytes(self, n: int) -> None:
        """Add ``n`` to the bytes this task sent over the network."""
        self._add_io(3, n)

    @property
    def actual_io(self) -> IoBudget:
        r, w, rx, tx = self._io
        if not (r or w or rx or tx):
            return _NO_IO
        return IoBudget(disk_read=r, disk_write=w, net_rx=rx, net_tx=tx)

    async def submit(
        self, task_type: str, payload: JSONValue = None, **options: Any
    ) -> SubmitResult:
        """Submit another (independent) task from inside this one."""
        return await self._spawner.submit(task_type, payload, **options)

    async def spawn_child(
        self, task_type: str, payload: JSONValue = None, **options: Any
    ) -> SubmitResult:
        """Submit a child of this task; the parent waits for it before finalizing."""
        options["parent_id"] = self.record.id
        return await self._spawner.submit(task_type, payload, **options)

    async def spawn_children(self, subs: list[Submission]) -> list[SubmitResult]:
        """Submit several children in one transaction."""
        return await self._spawner.spawn_children(self.record, subs)

    async def spawn_sibling(
        self, task_type: str, payload: JSONValue = None, **options: Any
    ) -> SubmitResult:
        """Submit a task under this task's parent.

        Raises:
            InvalidState: this task has no parent.
        """
        return await self._spawner.spawn_sibling(self.record, task_type, payload, options)


def state_view(
    domain_state: Mapping[Any, Any], global_state: Mapping[Any, Any]
) -> Mapping[Any, Any]:
    """Domain state first, then global."""
    return ChainMap(domain_state, global_state)  # type: ignore[arg-type]
