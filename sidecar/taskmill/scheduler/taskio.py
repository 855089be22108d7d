"""``ctx.io``: an executor's own reads and writes, paced and written out as they go.

Every task's context has an ``io`` (:class:`TaskIo`) over the scheduler's
one :class:`IoPacing`. Through it, bytes are read and written in chunks of
``io_chunk_bytes`` (``io_writeback_bytes`` while the pacer holds nobody
back), each waiting for the shared pacer (whose rate the latency
target steers, see :mod:`taskmill.resource.latency`), and written bytes are
pushed to the disk every ``io_writeback_bytes`` (:mod:`taskmill.resource.writeback`)
so the kernel never holds a large flush that the user's own saves would wait
behind. The bytes count as the task's IO (``ctx.actual_io``): no
``record_*_bytes`` for them. A task of background priority (192 and less
urgent) does its paced IO at the OS's background IO priority
(:mod:`taskmill.resource.ioprio`).

Each operation has an async form, for ``async def`` executors (it runs on an
executor thread), and a ``_sync`` form, for plain ``def`` executors (already
on one)::

    async def export(payload, ctx):
        with open(payload["path"], "wb") as f:
            for block in render(payload):
                await ctx.io.write(f, block)
            os.fsync(f.fileno())

    def checksum(payload, ctx):
        h = hashlib.sha256()
        with open(payload["path"], "rb") as f:
            while chunk := ctx.io.read_sync(f, 1 << 20):
                h.update(chunk)
        return h.hexdigest()

IO that cannot go through these (a library writing on its own) can still be
paced: ``await ctx.io.pace(write=n)`` (or ``ctx.io.pace_sync(read=n)``)
before moving ``n`` bytes. A cancelled task waiting for the pacer raises
:class:`~taskmill.errors.TaskCancelled` at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from ..model import Priority
from ..resource.ioprio import background_io
from ..resource.pacer import IoPacer
from ..resource.writeback import Syncer, Writeback, default_syncer
from .config import IoSettings
from .threads import run_sync

if TYPE_CHECKING:
    from .context import TaskContext

__all__ = ["FileArg", "IoPacing", "TaskIo", "lowers_io"]

#: A file descriptor, or a binary file object (``open(path, "rb")``).
FileArg = int | BinaryIO

#: Open files a task's ``io`` keeps a writeback count for, at most.
_MAX_BACKLOGS = 64


class IoPacing:
    """The scheduler's pacer and how executors' IO goes through it (one per scheduler).

    Args:
        pacer: The shared read and write buckets.
        settings: Chunk and writeback sizes, the OS priority switch.
        syncer: How writeback steps are taken (the platform's when omitted).
    """

    def __init__(
        self, pacer: IoPacer, settings: IoSettings, *, syncer: Syncer | None = None
    ) -> None:
        self.pacer = pacer
        self.settings = settings
        self.syncer = syncer if syncer is not None else default_syncer()


class TaskIo:
    """One task's paced IO (``ctx.io``).

    Reads and writes go in chunks of ``io_chunk_bytes``, each after the
    scheduler's pacer lets it (the latency target sets its rate), and written
    data reaches the disk every ``io_writeback_bytes``. The bytes count as the
    task's IO. A plain ``def`` executor uses the ``_sync`` forms, an ``async
    def`` one awaits the others (they run on an executor thread)::

        def export(payload, ctx):
            with open(payload["out"], "wb") as f:
                for block in render(payload):
                    ctx.io.write_sync(f, block)
                os.fsync(f.fileno())

        async def digest(payload, ctx):
            h = hashlib.sha256()
            with open(payload["path"], "rb") as f:
                while chunk := await ctx.io.read(f, 1 << 20):
                    h.update(chunk)
            await ctx.io.pace(write=n)  # before IO done some other way
    """

    __slots__ = ("_backlogs", "_ctx", "_pacing")

    def __init__(self, ctx: TaskContext, pacing: IoPacing) -> None:
        self._ctx = ctx
        self._pacing = pacing
        self._backlogs: dict[int, Writeback] = {}

    @property
    def pacer(self) -> IoPacer:
        """The scheduler's pacer (shared by every task)."""
        return self._pacing.pacer

    # -- pacing alone -------------------------------------------------------------------

    async def pace(self, read: int = 0, write: int = 0) -> None:
        """Wait until ``read`` bytes may be read and ``write`` written; count them.

        Raises:
            TaskCancelled: the task was cancelled (or paused) while it waited.
            ValueError: a negative count.
        """
        if not await self.pacer.pace(read, write, stop=self._ctx.cancelled.is_set):
            self._ctx.check_cancelled()
        self._count(read, write)

    def pace_sync(self, read: int = 0, write: int = 0) -> None:
        """:meth:`pace` for plain ``def`` executors (blocks the calling thread)."""
        if not self.pacer.pace_sync(read, write, stop=self._ctx.cancelled.is_set):
            self._ctx.check_cancelled()
        self._count(read, write)

    # -- paced IO -------------------------------------------------------------------------

    async def write(self, f: FileArg, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` to ``f`` (at its position), paced; the bytes written.

        Runs :meth:`write_sync` on an executor thread.
        """
        n: int = await run_sync(self.write_sync, f, data)
        return n

    def write_sync(self, f: FileArg, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` to ``f``, chunk by chunk, each after the pacer lets it.

        Every ``io_writeback_bytes`` written to the same file, the previous
        step's writeback is waited for and the next is started. This is not
        durability: ``os.fsync`` when the data must survive a crash.

        Raises:
            TaskCancelled: cancelled between two chunks (what was written stays).
            OSError: from the write.
        """
        view = memoryview(data).cast("B")
        fd = f if isinstance(f, int) else f.fileno()
        backlog = self._backlog(fd)
        with self._lowered():
            start = 0
            while start < len(view):
                piece = view[start : start + self._chunk()]
                start += len(piece)
                self._ctx.check_cancelled()
                self.pace_sync(write=len(piece))
                _write_all(f, piece)
                if backlog is not None and backlog.wrote(len(piece)):
                    if not isinstance(f, int):
                        f.flush()
                    backlog.step(fd)
        return len(view)

    async def read(self, f: FileArg, n: int) -> bytes:
        """Read up to ``n`` bytes from ``f`` (fewer only at the end of the file), paced.

        Runs :meth:`read_sync` on an executor thread.
        """
        data: bytes = await run_sync(self.read_sync, f, n)
        return data

    def read_sync(self, f: FileArg, n: int) -> bytes:
        """Read up to ``n`` bytes from ``f``, chunk by chunk, each paced; ``b""`` at the end.

        Raises:
            TaskCancelled: cancelled between two chunks.
            ValueError: a negative ``n``.
            OSError: from the read.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        parts: list[bytes] = []
        left = n
        with self._lowered():
            while left > 0:
                self._ctx.check_cancelled()
                want = min(self._chunk(), left)
                got = os.read(f, want) if isinstance(f, int) else f.read(want)
                if not got:
                    break
                parts.append(got)
                left -= len(got)
                self.pace_sync(read=len(got))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- inside ---------------------------------------------------------------------------

    def _chunk(self) -> int:
        """Bytes per call to the OS: small while the pacer may hold callers
        back, a writeback step's worth when it lets everything through."""
        settings = self._pacing.settings
        if self.pacer.limited:
            return settings.chunk_bytes
        return max(settings.chunk_bytes, settings.writeback_bytes)

    def _count(self, read: int, write: int) -> None:
        if read:
            self._ctx.record_read_bytes(read)
        if write:
            self._ctx.record_write_bytes(write)

    def _backlog(self, fd: int) -> Writeback | None:
        every = self._pacing.settings.writeback_bytes
        if every <= 0:
            return None
        backlog = self._backlogs.get(fd)
        if backlog is None:
            if len(self._backlogs) >= _MAX_BACKLOGS:
                self._backlogs.clear()
            backlog = self._backlogs[fd] = Writeback(every, self._pacing.syncer)
        return backlog

    @contextlib.contextmanager
    def _lowered(self) -> Iterator[None]:
        if self._ctx.background_io:
            with background_io():
                yield
        else:
            yield


def _write_all(f: FileArg, data: memoryview) -> None:
    while data:
        # A raw file (buffering=0) or a descriptor may take part of it.
        n = os.write(f, data) if isinstance(f, int) else f.write(data)
        data = data[len(data) if n is None else n :]


def lowers_io(priority: int, pacing: IoPacing) -> bool:
    """Whether a task of ``priority`` runs at the OS's background IO priority."""
    return priority >= Priority.BACKGROUND and pacing.settings.background_priority
