"""One scheduler per database: an exclusive OS lock on a file beside it.

A second scheduler on the same database would put the first one's running
tasks back to pending and run them again, and the two would race on every
write. So before it opens (and recovers) the database, a scheduler takes an
exclusive, non-blocking lock on ``<db>.lock`` and holds it for its whole life:
``flock`` on POSIX, ``msvcrt.locking`` on Windows. The operating system drops
the lock when the holder dies, however it dies, so there is no stale-lock
state and no timeout; of two schedulers started at the same moment exactly
one gets it.

The holder writes ``{"pid": ..., "ws": ..., "token": ...}`` into the file
(mode 0600: only the user can read it), so a second instance can say who
holds the database and how to reach it, and the queue inspector
(``taskmill-sidecar inspect``) can send its writes through the running
sidecar. The file itself is never deleted: removing it while another process
waits to open it would let two processes lock two different files.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import NamedTuple

from ..errors import DatabaseInUse, StorageError

__all__ = ["LOCK_SUFFIX", "DatabaseLock", "Holder", "holder_of", "lock_path_for"]

LOCK_SUFFIX = ".lock"

#: How long a loser waits for the winner to write who it is (a simultaneous start).
_HOLDER_WAIT_S = 0.5


def lock_path_for(db_path: str) -> str:
    return db_path + LOCK_SUFFIX


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    # Windows locks byte ranges: the holder's description lives past the locked byte.
    _INFO_OFFSET = 1
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)

    _INFO_OFFSET = 0


class DatabaseLock:
    """The held lock of one database. Release it with :meth:`release`."""

    def __init__(self, db_path: str, fd: int) -> None:
        self.db_path = db_path
        self.path = lock_path_for(db_path)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db_path: str) -> DatabaseLock:
        """Take the lock of ``db_path``, or fail at once.

        Raises:
            DatabaseInUse: another scheduler holds it (its pid and URL attached).
            StorageError: the lock file cannot be created (a read-only folder, say).
        """
        path = lock_path_for(db_path)
        try:
            # Not inherited by child processes (Python's default), so a task's
            # subprocess cannot keep the lock after the sidecar dies.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {path}: {exc.strerror}") from exc
        if not _try_lock(fd):
            try:
                holder = _read_holder(fd)
            finally:
                os.close(fd)
            raise DatabaseInUse(db_path, holder.pid, holder.ws)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # it holds the token: the user's only
        lock = cls(db_path, fd)
        lock.describe()
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def describe(self, ws: str | None = None, token: str | None = None) -> None:
        """Record who holds the lock (this pid) and, if any, its WebSocket URL
        and token (for the inspector; the file is readable by the user only)."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "ws": ws, "token": token}).encode()
        try:
            os.ftruncate(self._fd, _INFO_OFFSET)
            os.lseek(self._fd, _INFO_OFFSET, os.SEEK_SET)
            os.write(self._fd, data)
        except OSError:
            pass  # only the loser's message is poorer for it

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays (see the module docs)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, _INFO_OFFSET)
        _unlock(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


class Holder(NamedTuple):
    """Who holds a database, as its lock file says."""

    pid: int | None
    ws: str | None
    token: str | None


def holder_of(db_path: str) -> Holder | None:
    """The scheduler holding ``db_path`` now, or None when none does (the lock
    is free, or there is no lock file). Takes nothing: a free lock is let go
    at once."""
    try:
        fd = os.open(lock_path_for(db_path), os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> Holder:
    """The holder's pid, URL and token; waits briefly for a holder that is
    just starting."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            os.lseek(fd, _INFO_OFFSET, os.SEEK_SET)
            info = json.loads(os.read(fd, 4096))
            pid, ws, token = info.get("pid"), info.get("ws"), info.get("token")
            return Holder(
                pid if isinstance(pid, int) else None,
                ws if isinstance(ws, str) else None,
                token if isinstance(token, str) else None,
            )
        except (OSError, ValueError, AttributeError):
            if time.monotonic() >= deadline:
                return Holder(None, None, None)
            time.sleep(0.01)
