"""A bounded dirty backlog: written bytes reach the disk a little at a time.

Left alone, the kernel keeps written data in memory (up to a fifth of RAM on
Linux) and writes it out in one large flush later; whoever calls ``fsync``
meanwhile, the user's editor saving a file, waits behind that flush.
:class:`Writeback` keeps the bytes written to one file and not yet on the
device under about twice ``every_bytes``: each time ``every_bytes`` more have
been written, it waits for the writeback it started last time, then starts
one for the new bytes.

Linux has ``sync_file_range`` for exactly this (start, or wait for, the
writeback of a file's dirty pages, without flushing the device's cache or
the file's metadata); Python's ``os`` does not offer it, so it is called
through ``ctypes``. Elsewhere (or when the call fails) each step is an
``fdatasync`` (``fsync`` where that is missing), which waits for the bytes
and flushes them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Any, Protocol

__all__ = ["FsyncSyncer", "RangeSyncer", "Syncer", "Writeback", "default_syncer"]

log = logging.getLogger(__name__)

# <linux/fs.h>
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4


class Syncer(Protocol):
    """How one step of the backlog is taken on a file descriptor."""

    def step(self, fd: int) -> None:
        """Wait for the writeback started last time; start it for what is dirty now."""
        ...

    def drain(self, fd: int) -> None:
        """Wait until nothing written to ``fd`` waits in memory to be written out."""
        ...


class FsyncSyncer:
    """Each step is an ``fdatasync`` (``fsync`` where there is none)."""

    def __init__(self) -> None:
        self._sync = getattr(os, "fdatasync", os.fsync)

    def step(self, fd: int) -> None:
        self._sync(fd)

    def drain(self, fd: int) -> None:
        self._sync(fd)


class RangeSyncer:
    """Linux ``sync_file_range`` over the whole file (offset 0, length 0).

    Args:
        call: ``sync_file_range(fd, offset, nbytes, flags) -> int`` (0 or -1 and
            errno), from libc; tests pass a recorder.
        get_errno: The errno of the last failed call.
    """

    def __init__(self, call: Any, get_errno: Any = ctypes.get_errno) -> None:
        self._call = call
        self._get_errno = get_errno
        self._fallback: FsyncSyncer | None = None

    def _range(self, fd: int, flags: int) -> None:
        if self._fallback is not None:
            self._fallback.step(fd)
            return
        if self._call(fd, 0, 0, flags) != 0:
            err = self._get_errno()
            if err == 0 or err == 29:  # ESPIPE: a pipe or socket, nothing to write back
                return
            # EINVAL on a file system without it, ENOSYS under an old kernel.
            log.debug("sync_file_range failed (errno %s); using fdatasync", err)
            self._fallback = FsyncSyncer()
            self._fallback.step(fd)

    def step(self, fd: int) -> None:
        self._range(fd, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE)

    def drain(self, fd: int) -> None:
        self._range(
            fd, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
        )


def default_syncer() -> Syncer:
    """``sync_file_range`` on Linux when libc has it, else ``fdatasync``."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fn = libc.sync_file_range
        except (OSError, AttributeError):
            return FsyncSyncer()
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return RangeSyncer(fn)
    return FsyncSyncer()


class Writeback:
    """The bytes written to one file and not yet on the device, kept under a bound.

    Args:
        every_bytes: Bytes written between two steps (0: no bound, no steps).
        syncer: How a step is taken.
    """

    __slots__ = ("_since", "every_bytes", "steps", "syncer")

    def __init__(self, every_bytes: int, syncer: Syncer) -> None:
        if every_bytes < 0:
            raise ValueError(f"every_bytes must be >= 0, got {every_bytes}")
        self.every_bytes = every_bytes
        self.syncer = syncer
        self._since = 0
        #: Steps taken so far.
        self.steps = 0

    def wrote(self, n: int) -> bool:
        """Count ``n`` bytes just written; True when a :meth:`step` is due."""
        if self.every_bytes == 0:
            return False
        self._since += n
        return self._since >= self.every_bytes

    def step(self, fd: int) -> None:
        """Wait for the last step's writeback and start one for what is dirty now."""
        self._since = 0
        self.steps += 1
        self.syncer.step(fd)

    def drain(self, fd: int) -> None:
        """Wait until every byte counted so far is written out."""
        self._since = 0
        self.syncer.drain(fd)
