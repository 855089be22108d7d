"""The file at the path must stay the file opened.

A "clear app data" button, a restore or a sync tool can delete or replace the
database (or its ``-wal``) under a running scheduler; SQLite would go on
writing to the unlinked inode and every later write would vanish at exit.
:class:`FileGuard` compares the device and inode at the path (and of the
``-wal``) with what was opened, after each commit (before the write is
acknowledged) and on a timer. (Two ``stat`` calls per commit, about 2 us; a
commit costs 30 us or more.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time

__all__ = ["IDENTITY_CHECK_S", "FileGuard"]

log = logging.getLogger("taskmill.store")

#: Seconds between two checks of the file's identity when nothing is written.
IDENTITY_CHECK_S = 1.0

FileId = tuple[int, int]


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _file_id(path: str) -> FileId | None:
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


class FileGuard:
    """Watches the database file under a running scheduler.

    Identity: the device and inode of the file and of its ``-wal``, as
    opened; :meth:`check` says once they changed or vanished. Space: after a
    write fails because the disk is full, :meth:`disk_full` truncates the WAL
    (it only grows between checkpoints), giving its space back so the retried
    write can fit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = _file_id(path)
        self.wal = _file_id(path + "-wal")
        #: Why the file at the path is no longer ours, once it is not.
        self.lost: str | None = None
        #: The WAL's size at the last check (for size-driven checkpoints).
        self.wal_bytes = 0
        self._truncated_at = 0.0

    def check(self, conn: sqlite3.Connection | None = None) -> str | None:
        """Return why the file changed (logged once), or None while it is ours.

        With ``conn`` (the scheduler's connection, on its thread), a vanished
        or replaced ``-wal`` is first folded into the main file: SQLite still
        holds the unlinked log, and what was acknowledged is in it.
        """
        if self.lost is not None or self.db is None:
            return self.lost
        now = _file_id(self.path)
        if now is None:
            lost = f"the database file {self.path} was deleted while the scheduler ran"
        elif now != self.db:
            lost = (
                f"the database file {self.path} was replaced by another file while "
                "the scheduler ran"
            )
        else:
            st = _stat(self.path + "-wal")
            wal = None if st is None else (st.st_dev, st.st_ino)
            self.wal_bytes = 0 if st is None else st.st_size
            if self.wal is None:
                self.wal = wal
                return None
            if wal == self.wal:
                return None
            what = "deleted" if wal is None else "replaced"
            lost = f"the write-ahead log {self.path}-wal was {what} while the scheduler ran"
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(FULL)")
        self.lost = lost
        log.error("%s; nothing more is written: restart taskmill", lost)
        return lost

    def disk_full(self, conn: sqlite3.Connection) -> None:
        """Give the WAL's space back after a write failed on a full disk (at
        most once a second)."""
        if time.monotonic() - self._truncated_at < 1.0:
            return
        self._truncated_at = time.monotonic()
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
