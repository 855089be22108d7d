"""The floor: what bare sqlite3, aiosqlite and asyncio cost on this machine.

Every run uses a fresh database file in `cfg.workdir`, WAL, synchronous=NORMAL (one row
forces FULL for contrast). Only the measured loop is timed; schema creation and pre-filling
are not.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from bench.harness import Case, Config, Measurement, rate

GROUP = "floor"

# Row names, importable by other sections for their `vs_floor` references.
INSERT_COMMIT = "sqlite3 INSERT + COMMIT per row"
INSERT_COMMIT_FULL = "sqlite3 INSERT + COMMIT per row, synchronous=FULL"
BATCH_INSERT = "sqlite3 batch INSERT, one transaction"
CLAIM_COMPLETE = "sqlite3 claim + complete (2 commits/task)"
AIO_CLAIM_COMPLETE = "aiosqlite claim + complete (4 awaits/task)"
TO_THREAD_RTT = "asyncio.to_thread round trip"
AIO_RTT = "aiosqlite await round trip (SELECT 1)"

SCHEMA = """
CREATE TABLE task (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    payload BLOB,
    claimed_at REAL
);
CREATE INDEX task_pending ON task (state, priority DESC, id);
"""
INSERT_SQL = "INSERT INTO task (kind, priority, payload) VALUES (?, ?, ?)"
CLAIM_SQL = """
UPDATE task SET state = 'running', claimed_at = ?
WHERE id = (SELECT id FROM task WHERE state = 'pending' ORDER BY priority DESC, id LIMIT 1)
RETURNING id, kind, payload
"""
COMPLETE_SQL = "DELETE FROM task WHERE id = ?"
PAYLOAD = b"x" * 64


def open_db(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in Python's default transaction mode (implicit BEGIN before DML)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript(SCHEMA)
    conn.commit()
    return conn


def prefill(conn: sqlite3.Connection, n: int) -> None:
    conn.executemany(INSERT_SQL, (("noop", i % 3, PAYLOAD) for i in range(n)))
    conn.commit()


# ---------------------------------------------------------------------------- sqlite3


def insert_commit_per_row(cfg: Config, n: int, synchronous: str) -> float:
    with cfg.fresh_db("floor-insert") as path:
        conn = open_db(path, synchronous)
        try:
            t0 = time.perf_counter()
            for i in range(n):
                conn.execute(INSERT_SQL, ("noop", i % 3, PAYLOAD))
                conn.commit()
            return rate(n, time.perf_counter() - t0)
        finally:
            conn.close()


def batch_insert(cfg: Config, n: int) -> float:
    with cfg.fresh_db("floor-batch") as path:
        conn = open_db(path)
        try:
            rows = [("noop", i % 3, PAYLOAD) for i in range(n)]
            t0 = time.perf_counter()
            conn.executemany(INSERT_SQL, rows)
            conn.commit()
            return rate(n, time.perf_counter() - t0)
        finally:
            conn.close()


def claim_complete(cfg: Config, n: int) -> float:
    with cfg.fresh_db("floor-claim") as path:
        conn = open_db(path)
        try:
            prefill(conn, n)
            t0 = time.perf_counter()
            for _ in range(n):
                row = conn.execute(CLAIM_SQL, (time.time(),)).fetchone()
                conn.commit()
                conn.execute(COMPLETE_SQL, (row[0],))
                conn.commit()
            return rate(n, time.perf_counter() - t0)
        finally:
            conn.close()


# ---------------------------------------------------------------------------- asyncio


async def _aio_claim_complete(path: Path, n: int) -> float:
    setup = open_db(path)
    prefill(setup, n)
    setup.close()
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA synchronous=NORMAL")
        t0 = time.perf_counter()
        for _ in range(n):
            rows = list(await db.execute_fetchall(CLAIM_SQL, (time.time(),)))
            await db.commit()
            await db.execute(COMPLETE_SQL, (rows[0][0],))
            await db.commit()
        return rate(n, time.perf_counter() - t0)


def aio_claim_complete(cfg: Config, n: int) -> float:
    with cfg.fresh_db("floor-aio-claim") as path:
        return asyncio.run(_aio_claim_complete(path, n))


def _noop() -> None:
    return None


async def _to_thread_rtt(rounds: int) -> float:
    await asyncio.to_thread(_noop)  # start the default executor's thread outside the timing
    t0 = time.perf_counter()
    for _ in range(rounds):
        await asyncio.to_thread(_noop)
    return (time.perf_counter() - t0) / rounds * 1e6


def to_thread_rtt(rounds: int) -> float:
    return asyncio.run(_to_thread_rtt(rounds))


async def _aio_rtt(path: Path, rounds: int) -> float:
    async with aiosqlite.connect(path) as db:
        await db.execute_fetchall("SELECT 1")
        t0 = time.perf_counter()
        for _ in range(rounds):
            await db.execute_fetchall("SELECT 1")
        return (time.perf_counter() - t0) / rounds * 1e6


def aio_rtt(cfg: Config, rounds: int) -> float:
    with cfg.fresh_db("floor-aio-rtt") as path:
        return asyncio.run(_aio_rtt(path, rounds))


# ---------------------------------------------------------------------------- section


def cases(cfg: Config) -> Sequence[Case]:
    n = cfg.n
    batch_n = 20 * n  # one transaction of n rows takes only a few ms
    rounds = min(5 * n, 20_000)

    def m(name: str, unit: str, note: str = "", **kw: str) -> Measurement:
        return Measurement(name, unit, unit.endswith("/s"), GROUP, note=note, **kw)

    return [
        Case.single(m(INSERT_COMMIT, "rows/s"), lambda: insert_commit_per_row(cfg, n, "NORMAL")),
        Case.single(
            m(INSERT_COMMIT_FULL, "rows/s", vs_floor=INSERT_COMMIT),
            lambda: insert_commit_per_row(cfg, n, "FULL"),
        ),
        Case.single(
            m(BATCH_INSERT, "rows/s", f"{batch_n} rows, executemany"),
            lambda: batch_insert(cfg, batch_n),
        ),
        Case.single(
            m(CLAIM_COMPLETE, "tasks/s", "UPDATE..RETURNING + commit, DELETE + commit"),
            lambda: claim_complete(cfg, n),
        ),
        Case.single(
            m(
                AIO_CLAIM_COMPLETE,
                "tasks/s",
                "execute_fetchall(UPDATE..RETURNING), commit, execute(DELETE), commit",
                vs_floor=CLAIM_COMPLETE,
            ),
            lambda: aio_claim_complete(cfg, n),
        ),
        Case.single(m(TO_THREAD_RTT, "us", f"mean of {rounds}"), lambda: to_thread_rtt(rounds)),
        Case.single(
            m(AIO_RTT, "us", f"mean of {rounds} execute_fetchall('SELECT 1')"),
            lambda: aio_rtt(cfg, rounds),
        ),
    ]
