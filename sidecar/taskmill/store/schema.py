"""Opening a database: the schema, its migrations, checkpoints."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import urllib.parse
from importlib import resources

from ..errors import StorageError
from .ids import Connection, drop_autoincrement

__all__ = [
    "SCHEMA_VERSION",
    "checkpoint",
    "checkpoint_passive",
    "key_hash",
    "open_connection",
    "open_readonly",
]


def key_hash(task_type: str, key: str) -> int:
    """The 64-bit hash a task's ``(task_type, key)`` is found by (signed, as
    SQLite stores integers). Stored: it must never change.

    An index on the key text itself (64 hex characters for a payload's key)
    took 22 us of each insert and delete at random places of a large B-tree;
    on this integer, 4 us (measured over 100,000 rows). Equal hashes of
    different keys are told apart by comparing type and key as well.
    """
    digest = hashlib.blake2b(f"{task_type}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("taskmill.store") / "migrations"
    out: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            out.append((int(name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(out)


SCHEMA_VERSION = max(v for v, _ in _migrations())


def open_connection(
    path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
) -> sqlite3.Connection:
    """Open (creating if missing), check, configure and migrate a database.

    The file is read before anything is written to it, so a file that is not
    a taskmill database is refused untouched.

    Raises:
        StorageError: the file is not SQLite, is corrupt, is from a newer
            taskmill, or cannot be opened or written.
    """
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
            factory=Connection,
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        # Read first: fails on a non-SQLite or corrupt file without writing.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"database {path} has schema version {version}, newer than this "
                f"taskmill supports ({SCHEMA_VERSION})"
            )
        if version == 0:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if tables:
                raise StorageError(f"database {path} is not a taskmill database")
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StorageError(f"bad synchronous mode {synchronous!r}")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and path != ":memory:":
            raise StorageError(f"database {path}: cannot switch to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = OFF")
        # For migration 5's backfill (SQL cannot compute the hash itself).
        conn.create_function("taskmill_key_hash", 2, key_hash, deterministic=True)
        for number, script in _migrations():
            if number <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        drop_autoincrement(conn)  # schema 7: where a crash or SQLite left it in
    except StorageError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"cannot use database {path}: {_explain(path, exc)}") from exc
    return conn


def open_readonly(path: str) -> sqlite3.Connection:
    """Open a database to read it while a scheduler may be writing it (WAL
    readers do not block the writer): no migration, no recovery, no writes.

    Raises:
        StorageError: it cannot be opened, is not a taskmill database, or is
            from a newer taskmill.
    """
    if not os.path.isfile(path):
        raise StorageError(f"no database at {path}")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read database {path}: {_explain(path, exc)}") from exc
    if version == 0:
        conn.close()
        raise StorageError(f"{path} is not a taskmill database")
    if version != SCHEMA_VERSION:
        conn.close()
        which = "newer" if version > SCHEMA_VERSION else "older"
        raise StorageError(
            f"database {path} has schema version {version}, {which} than this taskmill's "
            f"({SCHEMA_VERSION})"
            + (
                "; start this taskmill's sidecar on it once to upgrade it"
                if which == "older"
                else ""
            )
        )
    return conn


def _explain(path: str, exc: sqlite3.Error) -> str:
    """SQLite's reason, or what is behind it when it is vague: a full disk
    shows up at start-up as a mere "disk I/O error"."""
    text = str(exc)
    if "disk i/o error" in text.lower() or "full" in text.lower():
        folder = os.path.dirname(os.path.abspath(path))
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return text
        if free < (1 << 20):
            return f"the disk is full ({free} bytes free in {folder}; SQLite said: {text})"
    return text


def _split_sql(script: str) -> list[str]:
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    parts: list[str] = []
    buf = ""
    for line in lines:
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            if buf.strip():
                parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts


def checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def checkpoint_passive(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database as far as readers allow (fsyncs)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
