"""The async face of the store: one connection, one thread, group commit.

All database work runs on aiosqlite's connection thread as whole operations
(functions of :mod:`taskmill.store.db`), so an operation costs one hop however
many statements it runs. Writes issued while another write is in flight are
committed together in one transaction (group commit), each in its own
savepoint so one failing operation does not undo the others.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from ..errors import StorageError, TaskmillError
from . import db

__all__ = ["Store"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]


def _storage_error(exc: sqlite3.Error) -> StorageError:
    return StorageError(f"storage error: {exc}")


def _run_batch(conn: sqlite3.Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    """Run write operations in one transaction; one result per operation."""
    try:
        conn.execute("BEGIN IMMEDIATE")
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

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> Store:
        """Open, check and migrate the database at ``path``.

        Raises:
            StorageError: the database cannot be opened or is not ours.
        """

        def connector() -> sqlite3.Connection:
            return db.open_connection(
                path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
            )

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
        return cls(conn, path)

    def _raw(self) -> sqlite3.Connection:
        raw: sqlite3.Connection = self._conn._conn
        return raw

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        # aiosqlite runs every call on its connection thread; we hand it whole
        # operations so a transaction is one hop, whatever its statement count.
        result: T = await self._conn._execute(fn, *args)  # type: ignore[no-untyped-call]
        return result

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` in a write transaction, batched with concurrent writes."""
        if self._closed:
            raise StorageError("the store is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, fut))
        if not self._flushing:
            self._flushing = True
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        result: T = await fut
        return result

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                ops = [op for op, _ in batch]
                try:
                    results = await self._on_thread(_run_batch, self._raw(), ops)
                except BaseException as exc:  # the connection itself failed
                    err = exc if isinstance(exc, TaskmillError) else StorageError(str(exc))
                    results = [(False, err)] * len(batch)
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
