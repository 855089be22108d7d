"""The async face of the store: one connection, one thread, group commit.

Database work runs as whole operations (functions of :mod:`taskmill.store.db`),
so an operation costs one hop to the database thread however many statements
it runs. Writes issued while another write is in flight are committed together
in one transaction (group commit), each in its own savepoint so one failing
operation does not undo the others.

When the database thread is idle, an operation runs inline on the event loop
thread instead: the hop to a thread and back costs more than a short
transaction, and with WAL and ``synchronous=NORMAL`` a commit does not fsync.
The only fsyncs, checkpoints, are run on the database thread every
:data:`CHECKPOINT_EVERY` commits. If the database is locked by another
process, the inline attempt gives way at once and the operation waits on the
database thread (up to the busy timeout) instead.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from ..errors import StorageError, TaskmillError
from . import db

__all__ = ["Store"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

#: Commits between two checkpoints (run on the database thread).
CHECKPOINT_EVERY = 256


class _Busy(Exception):
    """The write lock is held by another connection (inline attempts only)."""


def _begin(conn: sqlite3.Connection, wait_s: float) -> None:
    """BEGIN IMMEDIATE, retrying while another connection holds the lock.

    Raises:
        _Busy: still locked after ``wait_s`` (0: no waiting).
        sqlite3.Error: any other failure.
    """
    deadline = time.monotonic() + wait_s
    pause = 0.002
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" not in text and "busy" not in text:
                raise
            if time.monotonic() >= deadline:
                raise _Busy(str(exc)) from exc
            time.sleep(pause)
            pause = min(0.05, pause * 2)


def _storage_error(exc: sqlite3.Error) -> StorageError:
    return StorageError(f"storage error: {exc}")


def _run_batch(
    conn: sqlite3.Connection, ops: list[Op], wait_s: float = 5.0
) -> list[tuple[bool, Any]]:
    """Run write operations in one transaction; one result per operation."""
    try:
        _begin(conn, wait_s)
    except _Busy as exc:
        if wait_s == 0:
            raise
        err = StorageError(f"storage error: the database is locked by another process ({exc})")
        return [(False, err)] * len(ops)
    except sqlite3.Error as exc:
        err = _storage_error(exc)
        return [(False, err)] * len(ops)
    results: list[tuple[bool, Any]] = []
    if len(ops) == 1:
        try:
            results.append((True, ops[0](conn)))
        except BaseException as exc:
            conn.execute("ROLLBACK")
            return [(False, _storage_error(exc) if isinstance(exc, sqlite3.Error) else exc)]
    else:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except BaseException as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append(
                    (False, _storage_error(exc) if isinstance(exc, sqlite3.Error) else exc)
                )
            else:
                conn.execute("RELEASE op")
                results.append((True, value))
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        err = _storage_error(exc)
        return [(False, err)] * len(ops)
    return results


def _run_read(conn: sqlite3.Connection, op: Op) -> Any:
    try:
        return op(conn)
    except sqlite3.Error as exc:
        raise _storage_error(exc) from exc


class Store:
    """An open taskmill database."""

    def __init__(
        self, conn: aiosqlite.Connection, path: str, *, busy_timeout_ms: int = 5000
    ) -> None:
        self._conn = conn
        self.path = path
        self._wait_s = busy_timeout_ms / 1000
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self._closed = False
        #: Operations handed to the database thread and not finished yet.
        self._on_thread_count = 0
        self._commits = 0
        #: Run operations on the loop thread when the database thread is idle.
        self.inline = True

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> Store:
        """Open, check and migrate the database at ``path``.

        Raises:
            StorageError: the database cannot be opened or is not ours.
        """

        def connector() -> sqlite3.Connection:
            # No busy timeout in SQLite itself: waits for the lock happen in
            # _begin, on the database thread only, never on the event loop.
            conn = db.open_connection(path, synchronous=synchronous, busy_timeout_ms=0)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            return conn

        conn = aiosqlite.Connection(connector, 64)
        try:
            await conn
        except BaseException as exc:
            # aiosqlite stops its thread on a failed connect; wait for it so it
            # does not report to an event loop that is already gone.
            await asyncio.to_thread(conn._thread.join, 5.0)
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc) from exc
            raise
        store = cls(conn, path, busy_timeout_ms=busy_timeout_ms)
        # A WAL left by a crash (or many short runs) is folded in at start.
        try:
            await store._on_thread(_run_read, store._raw(), db.checkpoint)
        except StorageError as exc:
            log.warning("checkpoint at open failed: %s", exc)
        return store

    def _raw(self) -> sqlite3.Connection:
        raw: sqlite3.Connection = self._conn._conn
        return raw

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        # aiosqlite runs every call on its connection thread; we hand it whole
        # operations so a transaction is one hop, whatever its statement count.
        self._on_thread_count += 1
        try:
            result: T = await self._conn._execute(fn, *args)  # type: ignore[no-untyped-call]
        finally:
            self._on_thread_count -= 1
        return result

    def _idle(self) -> bool:
        return (
            self.inline
            and not self._flushing
            and not self._queue
            and self._on_thread_count == 0
            and not self._closed
        )

    def _committed(self, n: int = 1) -> None:
        before = self._commits
        self._commits += n
        if before // CHECKPOINT_EVERY != self._commits // CHECKPOINT_EVERY:
            task = asyncio.get_running_loop().create_task(self._checkpoint())
            self._background = task  # keep a reference until it is done

    async def _checkpoint(self) -> None:
        try:
            await self._on_thread(_run_read, self._raw(), db.checkpoint_passive)
        except (StorageError, ValueError) as exc:
            log.warning("checkpoint failed: %s", exc)

    async def write(self, op: Callable[[sqlite3.Connection], T], *, inline: bool = True) -> T:
        """Run ``op`` in a write transaction, batched with concurrent writes.

        ``inline=False`` keeps a long operation off the event loop thread.
        """
        if self._closed:
            raise StorageError("the store is closed")
        if inline and self._idle():
            try:
                ((ok, value),) = _run_batch(self._raw(), [op], wait_s=0)
            except _Busy:
                pass  # locked by another process: wait on the database thread
            else:
                if ok:
                    self._committed()
                    result: T = value
                    return result
                raise value
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, fut))
        if not self._flushing:
            self._flushing = True
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        result = await fut
        return result

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                ops = [op for op, _ in batch]
                try:
                    results = await self._on_thread(_run_batch, self._raw(), ops, self._wait_s)
                except BaseException as exc:  # the connection itself failed
                    err = exc if isinstance(exc, TaskmillError) else StorageError(str(exc))
                    results = [(False, err)] * len(batch)
                else:
                    self._committed()
                for (_, fut), (ok, value) in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
        finally:
            self._flushing = False

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``op`` (no transaction) on the database thread."""
        if self._closed:
            raise StorageError("the store is closed")
        if self._idle():
            try:
                return op(self._raw())
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if "locked" not in text and "busy" not in text:
                    raise _storage_error(exc) from exc
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc
        return await self._on_thread(_run_read, self._raw(), op)

    async def close(self) -> None:
        """Checkpoint the WAL and close. Pending writes are finished first."""
        if self._closed:
            return
        while self._flush_task is not None and not self._flush_task.done():
            await asyncio.wait([self._flush_task])
        self._closed = True
        try:
            await self._on_thread(_run_read, self._raw(), db.checkpoint)
        except (StorageError, ValueError) as exc:
            log.warning("checkpoint on close failed: %s", exc)
        await self._conn.close()
