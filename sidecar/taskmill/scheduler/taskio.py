"""``ctx.io``: an executor's own reads and writes, paced and written out as they go.

Every task's context has an ``io`` (:class:`TaskIo`) over the scheduler's
one :class:`IoPacing`. Through it, bytes are read and written in chunks of
``io_chunk_bytes`` (``io_writeback_bytes`` while the pacer holds nobody
back), each waiting for the shared pacer (whose rate the latency
target steers, see :mod:`taskmill.resource.latency`), and written bytes are
pushed to the disk every ``io_writeback_bytes`` (:mod:`taskmill.resource.writeback`;
every 256 KiB at most while the pacer may hold callers back) so the kernel
never holds a large flush that the user's own saves would wait behind. The
bytes count as the task's IO (``ctx.actual_io``): no ``record_*_bytes`` for
them. A task of background priority (192 and less urgent) does its paced IO
at the OS's background IO priority (:mod:`taskmill.resource.ioprio`).

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

A file the task made and no longer needs goes with ``ctx.io.remove(path)``
(``remove_sync``): its name at once, its blocks a step at a time, paced, so
the file system never discards (TRIMs) a whole file's worth in one go.

IO that cannot go through these (a library writing on its own) can still be
paced: ``await ctx.io.pace(write=n)`` (or ``ctx.io.pace_sync(read=n)``)
before moving ``n`` bytes. A cancelled task waiting for the pacer raises
:class:`~taskmill.errors.TaskCancelled` at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
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

#: Bytes between two writeback steps, at most, while the pacer may hold
#: callers back: the smaller the step, the shorter the request a foreground
#: save can queue behind (docs/benchmarks.md, issue 20).
_PACED_WRITEBACK = 256 * 1024

#: Bytes :meth:`TaskIo.remove_sync` gives back per step.
_REMOVE_STEP = 256 * 1024
#: A step of removal waits for the pacer as writing this share of its bytes
#: would: discarding freed blocks costs the device less than writing them,
#: but not nothing. What matters is that the steps are spread out; an eighth
#: did that as well as a quarter (docs/benchmarks.md, issue 20) and takes
#: less of the batch's allowance.
_REMOVE_SHARE = 1 / 8


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

        Every ``io_writeback_bytes`` written to the same file (every 256 KiB
        at most while the pacer may hold callers back), the previous step's
        writeback is waited for and the next is started. This is not
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
                if backlog is None:
                    continue
                backlog.every_bytes = self._writeback_every()
                if backlog.wrote(len(piece)):
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

    async def remove(self, path: str | os.PathLike[str], *, missing_ok: bool = False) -> None:
        """Delete the file at ``path``, giving its blocks back a step at a time.

        Runs :meth:`remove_sync` on an executor thread.
        """
        await run_sync(functools.partial(self.remove_sync, path, missing_ok=missing_ok))

    def remove_sync(self, path: str | os.PathLike[str], *, missing_ok: bool = False) -> None:
        """Delete the file at ``path``: the name at once, the blocks a step at a time.

        Freeing a file's blocks is work for the device too: on an SSD or a
        thin-provisioned virtual disk the file system discards (TRIMs) them,
        and one large discard holds up the user's own requests the way one
        large write does. So while the pacer may hold callers back, the name
        is unlinked at once and the open file is then cut from its end 256
        KiB at a time, each step waiting for the pacer as writing an eighth
        of it would. When the pacer lets everything through, or for anything
        but a regular file with this one name (a symlink, a hard-linked
        file), or off POSIX, it is a plain ``os.unlink``. Another process
        that has the file open sees it shrink: meant for files the task owns
        (its temporary and output files). Never raises
        :class:`~taskmill.errors.TaskCancelled`: a cancelled task's cleanup
        gives back the rest at once.

        Raises:
            FileNotFoundError: no such file (unless ``missing_ok``).
            OSError: from ``os.unlink`` (a folder, no permission).
        """
        try:
            self._remove(os.fspath(path))
        except FileNotFoundError:
            if not missing_ok:
                raise

    # -- inside ---------------------------------------------------------------------------

    def _remove(self, path: str) -> None:
        pacer = self.pacer
        st = os.lstat(path)
        if (
            os.name != "posix"
            or not pacer.limited
            or not stat.S_ISREG(st.st_mode)
            or st.st_nlink != 1
            or st.st_size <= _REMOVE_STEP
        ):
            os.unlink(path)
            return
        try:
            # Never follow a link, never wait for a reader (a fifo swapped in).
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            os.unlink(path)  # not ours to open (permissions): a plain unlink
            return
        try:
            opened = os.fstat(fd)
            os.unlink(path)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                return  # replaced meanwhile: the name is gone, the rest is not ours
            size = opened.st_size
            charge = max(1, int(_REMOVE_STEP * _REMOVE_SHARE))
            stop = self._ctx.cancelled.is_set
            while size > _REMOVE_STEP:
                if not pacer.pace_sync(write=charge, stop=stop):
                    break  # cancelled: the rest goes with the close
                if os.fstat(fd).st_nlink != 0:
                    break  # linked again meanwhile: its data is someone's
                size -= _REMOVE_STEP
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _chunk(self) -> int:
        """Bytes per call to the OS: small while the pacer may hold callers
        back, a writeback step's worth when it lets everything through."""
        settings = self._pacing.settings
        if self.pacer.limited:
            return settings.chunk_bytes
        return max(settings.chunk_bytes, settings.writeback_bytes)

    def _writeback_every(self) -> int:
        """Bytes between two writeback steps: at most :data:`_PACED_WRITEBACK`
        while the pacer may hold callers back (someone else may be using the
        disk: each step is one request their own wait behind), ``io_writeback_bytes``
        when it lets everything through."""
        every = self._pacing.settings.writeback_bytes
        if self.pacer.limited:
            return min(every, _PACED_WRITEBACK)
        return every

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
