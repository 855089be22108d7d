"""The async face of the store: one connection, one thread, group commit.

Database work runs as whole operations (functions of the store's concept modules),
so an operation costs one hop to the database thread however many statements
it runs. Writes issued while another write is in flight are committed together
in one transaction (group commit), each in its own savepoint so one failing
operation does not undo the others.

When the database thread is idle, an operation runs inline on the event loop
thread instead: the hop to a thread and back costs more than a short
transaction, and with WAL and ``synchronous=NORMAL`` a commit does not fsync.
The only fsyncs, checkpoints, are run on the database thread every
:data:`CHECKPOINT_EVERY` commits. With ``synchronous=FULL`` an inline commit
does fsync on the loop thread (0.2-0.7 ms here; at most 8.5 ms beside a
3 GB write); on the thread, the hop cost a sequential submit 200-250 us more
(2,153-2,661 against 1,453-1,719 a second), so ``FULL`` runs inline too.
If the database is locked by another process, the inline attempt gives way
at once and the operation waits on the database thread (up to the busy
timeout) instead.

The file at the path must stay the file we opened. A "clear app data" button,
a restore or a sync tool can delete or replace it (or its ``-wal``) under a
running scheduler; SQLite would go on writing to the unlinked inode and every
later write would vanish at exit. So after each commit, before the write is
acknowledged, and on a timer, :class:`FileGuard` compares the device and
inode at the path (and of the ``-wal``) with what was opened. Once they
differ, that write and every later one fail with a
:class:`~taskmill.errors.StorageError` naming the cause, and the log says so
once. (Two ``stat`` calls per commit, about 2 us; a commit costs 30 us or
more.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import DatabaseGone, StorageError, TaskmillError
from . import recovery, schema
from .guard import IDENTITY_CHECK_S, FileGuard

__all__ = ["DbThread", "Engine", "rescue_running"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

#: Commits between two checkpoints (run on the database thread).
CHECKPOINT_EVERY = 256

#: WAL bytes after which a checkpoint runs whatever the commit count. The WAL
#: only grows until a checkpoint lets it be reused: on a small or nearly full
#: disk, a WAL grown without bound leaves no room for the checkpoint itself.
#: (SQLite's own default, 1,000 pages or about 4 MiB, left a 6 MiB disk that
#: filled up unable to checkpoint even after space came back:
#: tests/reliability/test_storage.py.) After a checkpoint the WAL is written
#: from its start again but keeps its size, so only growth past that size
#: counts (comparing the size alone asked for a checkpoint after every commit
#: once the file had passed this: a fifth of the database thread's time with
#: short tasks).
CHECKPOINT_WAL_BYTES = 1 << 20

#: Inline operations in a row, with no turn of the event loop between them,
#: after which the next one yields first. A caller that awaits one write or
#: read after another never suspends otherwise, and nothing else on the loop
#: would run meanwhile: no task would start, no event would go out, and an
#: app whose UI shares the loop would freeze for the whole loop of submits.
INLINE_STREAK = 32


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
    conn: sqlite3.Connection, ops: list[Op], wait_s: float = 5.0, guard: FileGuard | None = None
) -> list[tuple[bool, Any]]:
    """Run write operations in one transaction; one result per operation.

    A commit counts only when the file at the path is still the one opened
    (see :class:`FileGuard`): otherwise every operation gets the error.
    """
    try:
        _begin(conn, wait_s)
    except _Busy as exc:
        if wait_s == 0:
            raise
        err = StorageError(f"storage error: the database is locked by another process ({exc})")
        return [(False, err)] * len(ops)
    except sqlite3.Error as exc:
        return _failed(conn, exc, len(ops), guard)
    results: list[tuple[bool, Any]] = []
    if len(ops) == 1:
        try:
            results.append((True, ops[0](conn)))
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                return _failed(conn, exc, 1, guard)
            return [(False, exc)]
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
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        return _failed(conn, exc, len(ops), guard)
    if guard is not None:
        lost = guard.check(conn)
        if lost is not None:
            return [(False, DatabaseGone(f"storage error: {lost}; restart taskmill"))] * len(ops)
    return results


def _failed(
    conn: sqlite3.Connection, exc: sqlite3.Error, n: int, guard: FileGuard | None
) -> list[tuple[bool, Any]]:
    if guard is not None and "full" in str(exc).lower():
        guard.disk_full(conn)
    return [(False, _storage_error(exc))] * n


def rescue_running(path: str, now: int, wait_s: float = 1.0) -> int:
    """Put running tasks back to pending from a fresh connection; returns how many.

    For a process about to exit while its event loop is blocked by task code:
    the state it leaves is then the state a clean shutdown leaves. Safe only
    while this process holds the database lock (no other scheduler runs).

    Raises:
        sqlite3.Error: the database could not be written within ``wait_s``.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=wait_s)
    try:
        conn.execute("BEGIN IMMEDIATE")
        count = recovery.requeue_running(conn, now)
        conn.execute("COMMIT")
        return count
    finally:
        conn.close()


def _run_read(conn: sqlite3.Connection, op: Op) -> Any:
    try:
        return op(conn)
    except sqlite3.Error as exc:
        raise _storage_error(exc) from exc


class DbThread:
    """One sqlite3 connection and the one thread that runs work on it.

    A single-worker executor: an operation handed over runs whole on that
    thread (a transaction is one hop, whatever its statement count), and the
    connection is opened there too. (This is what aiosqlite does inside; we
    needed its private ``_execute`` and ``_conn`` to hand it whole operations,
    so the standard library's executor does the job instead.)
    """

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self.conn: sqlite3.Connection | None = None

    async def open(self, connector: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
        try:
            self.conn = await self.run(connector)
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        return self.conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def close(self) -> None:
        if self.conn is not None:
            await self.run(self.conn.close)
        await asyncio.to_thread(self._pool.shutdown, True)


class Engine:
    """An open database: its connection, its thread and group commit."""

    def __init__(self, thread: DbThread, path: str, *, busy_timeout_ms: int = 5000) -> None:
        self._thread = thread
        self.path = path
        self._wait_s = busy_timeout_ms / 1000
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self._closed = False
        #: Operations handed to the database thread and not finished yet.
        self._on_thread_count = 0
        #: Inline operations since the event loop last had a turn.
        self._streak = 0
        self._commits = 0
        #: The WAL file's size when the last checkpoint ended.
        self._wal_floor = 0
        #: Run operations on the loop thread when the database thread is idle.
        self.inline = True
        #: Watches the file opened (None for an in-memory database); set by :meth:`open`.
        self.guard: FileGuard | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        #: The read-only connection for reads while a write holds the thread.
        self._reader: asyncio.Task[DbThread] | None = None

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> Engine:
        """Open, check and migrate the database at ``path``.

        Raises:
            StorageError: the database cannot be opened or is not ours.
        """

        def connector() -> sqlite3.Connection:
            # No busy timeout in SQLite itself: waits for the lock happen in
            # _begin, on the database thread only, never on the event loop.
            conn = schema.open_connection(path, synchronous=synchronous, busy_timeout_ms=0)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            return conn

        thread = DbThread("taskmill-db")
        try:
            await thread.open(connector)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc
        store = cls(thread, path, busy_timeout_ms=busy_timeout_ms)
        # A WAL left by a crash (or many short runs) is folded in at start.
        try:
            await store._on_thread(_run_read, store._raw(), schema.checkpoint)
        except StorageError as exc:
            log.warning("checkpoint at open failed: %s", exc)
        if path not in ("", ":memory:") and not path.startswith("file:"):
            store.guard = FileGuard(path)
            store._watch_task = asyncio.get_running_loop().create_task(store._watch())
        return store

    def _raw(self) -> sqlite3.Connection:
        assert self._thread.conn is not None
        return self._thread.conn

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        self._on_thread_count += 1
        try:
            return await self._thread.run(fn, *args)
        finally:
            self._on_thread_count -= 1

    def _idle(self) -> bool:
        # A checkpoint that is due goes first. A caller that awaits one inline
        # write after another never yields to the event loop, so the task that
        # would run the checkpoint never started and the WAL grew without
        # bound: 183 MB after 10,000 sequential submits, each commit slower as
        # it appended (synchronous=FULL: 370-520 us against 210 us a commit).
        return (
            self.inline
            and not self._flushing
            and not self._queue
            and self._on_thread_count == 0
            and self._checkpointing is None
            and not self._closed
        )

    def _end_streak(self) -> None:
        self._streak = 0

    def _streak_due(self) -> bool:
        """Count an inline operation; True once :data:`INLINE_STREAK` of them
        ran without the event loop getting a turn."""
        if self._streak == 0:
            # Runs at the loop's next turn, whoever gives it.
            asyncio.get_running_loop().call_soon(self._end_streak)
        self._streak += 1
        return self._streak > INLINE_STREAK

    async def _idle_after_yield(self) -> bool:
        await asyncio.sleep(0)
        if self._closed:
            raise StorageError("the store is closed")
        return self._idle()

    def _lost(self) -> StorageError | None:
        if self.guard is None or self.guard.lost is None:
            return None
        return DatabaseGone(f"storage error: {self.guard.lost}; restart taskmill")

    async def _watch(self) -> None:
        """Notice a deleted or replaced file even when nothing is written."""
        while self.guard is not None and self.guard.lost is None and not self._closed:
            await asyncio.sleep(IDENTITY_CHECK_S)
            if not self._closed and not self._flushing:
                with contextlib.suppress(Exception):
                    await self._on_thread(self.guard.check, self._raw())

    def _committed(self, n: int = 1) -> None:
        before = self._commits
        self._commits += n
        due = before // CHECKPOINT_EVERY != self._commits // CHECKPOINT_EVERY
        if self.guard is not None:
            size = self.guard.wal_bytes
            self._wal_floor = min(self._wal_floor, size)  # truncated since
            due = due or size > max(CHECKPOINT_WAL_BYTES, self._wal_floor)
        if due and self._checkpointing is None:
            self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        # On the database thread, between writes. (On a thread of its own it
        # let inline writes run beside its fsync on the event loop thread:
        # a probe's p99 went from 20 to 100-150 ms in
        # tests/reliability/test_abuse.py.)
        try:
            await self._on_thread(_run_read, self._raw(), schema.checkpoint_passive)
        except (StorageError, ValueError) as exc:
            log.warning("checkpoint failed: %s", exc)
        finally:
            self._checkpointing = None
            if self.guard is not None:
                self._wal_floor = self.guard.wal_bytes

    async def write(self, op: Callable[[sqlite3.Connection], T], *, inline: bool = True) -> T:
        """Run ``op`` in a write transaction, batched with concurrent writes.

        ``inline=False`` keeps a long operation off the event loop thread.
        """
        if self._closed:
            raise StorageError("the store is closed")
        lost = self._lost()
        if lost is not None:
            raise lost
        if inline and self._idle() and (not self._streak_due() or await self._idle_after_yield()):
            try:
                ((ok, value),) = _run_batch(self._raw(), [op], 0, self.guard)
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
                    results = await self._on_thread(
                        _run_batch, self._raw(), ops, self._wait_s, self.guard
                    )
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

    async def read(self, op: Callable[[sqlite3.Connection], T], *, inline: bool = True) -> T:
        """Run a read-only ``op`` (no transaction).

        Inline when the database thread is idle; while it is busy (a chunk of
        a long cancel, a big batch), on a second, read-only connection with a
        thread of its own, so a read never waits behind a write (WAL readers
        see the last commit and do not block the writer). ``inline=False``
        keeps a read over an unbounded set (tag counts, history stats) off the
        event loop thread.
        """
        if self._closed:
            raise StorageError("the store is closed")
        if inline and self._idle() and (not self._streak_due() or await self._idle_after_yield()):
            try:
                return op(self._raw())
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if "locked" not in text and "busy" not in text:
                    raise _storage_error(exc) from exc
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc
        reader = await self._reader_conn()
        if reader is None or reader.conn is None:
            return await self._on_thread(_run_read, self._raw(), op)
        return await reader.run(_run_read, reader.conn, op)

    async def _reader_conn(self) -> DbThread | None:
        """The read-only connection, opened on first need (None in memory)."""
        if self.guard is None:
            return None
        if self._reader is None:
            path = self.path

            def connector() -> sqlite3.Connection:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA query_only = 1")
                return conn

            self._reader = asyncio.get_running_loop().create_task(self._open_reader(connector))
        try:
            return await self._reader
        except (sqlite3.Error, OSError) as exc:
            log.warning("no read-only connection (%s): reads wait for writes", exc)
            return None

    @staticmethod
    async def _open_reader(connector: Callable[[], sqlite3.Connection]) -> DbThread:
        thread = DbThread("taskmill-db-reader")
        await thread.open(connector)
        return thread

    async def close(self) -> None:
        """Checkpoint the WAL and close. Pending writes are finished first."""
        if self._closed:
            return
        while self._flush_task is not None and not self._flush_task.done():
            await asyncio.wait([self._flush_task])
        self._closed = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await (await self._reader).close()
        try:
            await self._on_thread(_run_read, self._raw(), schema.checkpoint)
        except (StorageError, ValueError) as exc:
            log.warning("checkpoint on close failed: %s", exc)
        await self._thread.close()
