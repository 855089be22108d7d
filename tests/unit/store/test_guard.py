"""FileGuard: the file at the path must stay the file opened."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from taskmill.store.guard import FileGuard
from taskmill.store.schema import open_connection


def _open(path: Path) -> sqlite3.Connection:
    conn = open_connection(str(path))
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    return conn


def test_it_stays_quiet_while_the_file_is_ours(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    conn = _open(path)
    guard = FileGuard(str(path))
    for _ in range(3):
        conn.execute("INSERT INTO t VALUES (2)")
        assert guard.check(conn) is None
    assert guard.wal_bytes > 0
    conn.close()


def test_a_deleted_file_is_noticed_once_and_for_good(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    conn = _open(path)
    guard = FileGuard(str(path))
    os.unlink(path)
    reason = guard.check(conn)
    assert reason is not None and "was deleted" in reason
    assert guard.check(conn) == reason
    conn.close()


def test_a_replaced_file_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    conn = _open(path)
    guard = FileGuard(str(path))
    shutil.copy(path, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", path)
    assert "replaced" in (guard.check(conn) or "")
    conn.close()


def test_a_deleted_wal_is_folded_into_the_main_file_first(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    conn = _open(path)
    guard = FileGuard(str(path))
    assert guard.check(conn) is None
    for i in range(100):
        conn.execute("INSERT INTO t VALUES (?)", (i,))
    os.unlink(str(path) + "-wal")
    assert "write-ahead log" in (guard.check(conn) or "")
    conn.close()
    # What the unlinked log held reached the main file.
    check = sqlite3.connect(path)
    assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 101
    check.close()
