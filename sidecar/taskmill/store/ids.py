"""Task ids: given by the store, in order, never reused.

SQLite's AUTOINCREMENT gives the same guarantee by rewriting a row of
``sqlite_sequence`` at every insert: one more page written at every submit's
commit. Here the one writer connection keeps the next id in memory, found once
as one above the largest id in ``tasks``, ``history`` and the floor in
``counters``. Every task ever given an id has a row in one of the two tables
until its history row is deleted, so :func:`raise_floor` runs before history
rows are deleted (in the same transaction: a rollback undoes both). An insert
rolled back leaves its id unused, a gap, as AUTOINCREMENT would.
"""

from __future__ import annotations

import logging
import sqlite3

__all__ = ["Connection", "drop_autoincrement", "raise_floor", "take_ids"]

log = logging.getLogger("taskmill.store")

_FLOOR = "task_id_floor"
_LARGEST = (
    "SELECT max((SELECT value FROM counters WHERE name = ?), "
    "coalesce((SELECT max(id) FROM tasks), 0), coalesce((SELECT max(id) FROM history), 0))"
)
_KEYWORD = "INTEGER PRIMARY KEY AUTOINCREMENT"


class Connection(sqlite3.Connection):
    """The connection the store writes with: it remembers the next task id."""

    next_task_id: int | None = None


def take_ids(conn: sqlite3.Connection, n: int = 1) -> int:
    """The first of ``n`` new consecutive task ids (inside a write transaction).
    A plain connection (not the store's) finds the next id each time."""
    ours = conn if isinstance(conn, Connection) else None
    first = None if ours is None else ours.next_task_id
    if first is None:
        first = int(conn.execute(_LARGEST, (_FLOOR,)).fetchone()[0]) + 1
    if ours is not None:
        ours.next_task_id = first + n
    return first


def raise_floor(conn: sqlite3.Connection) -> None:
    """Keep every id given so far above the floor: call before deleting history rows."""
    conn.execute("UPDATE counters SET value = (" + _LARGEST + ") WHERE name = ?", (_FLOOR, _FLOOR))


def drop_autoincrement(conn: sqlite3.Connection) -> None:
    """Take AUTOINCREMENT out of the ``tasks`` table's schema (schema 7 and on).

    A rowid table stores its rows the same way with or without the keyword,
    so only the schema text changes (SQLite's documented way for changes that
    leave the stored content as it is): no row is rewritten, at any size. A
    SQLite built to refuse schema edits (``SQLITE_DBCONFIG_DEFENSIVE``), or a
    write lock held elsewhere, leaves the keyword (tried again at the next
    open): the ids are right either way, a submit just writes one more page.
    """
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'")
    sql = row.fetchone()[0]
    if _KEYWORD not in sql:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'tasks'",
            (sql.replace(_KEYWORD, "INTEGER PRIMARY KEY"),),
        )
        # Other connections read the schema again; this one, at once.
        conn.execute(f"PRAGMA schema_version = {version + 1}")
        conn.execute("PRAGMA writable_schema = RESET")
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA writable_schema = RESET")
        log.info("tasks keep AUTOINCREMENT for now (%s)", exc)
