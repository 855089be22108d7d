"""schema: opening creates or migrates to SCHEMA_VERSION, and refuses what is not ours."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from taskmill.errors import StorageError
from taskmill.model import Outcome
from taskmill.store import queries
from taskmill.store.schema import SCHEMA_VERSION, open_connection, open_readonly
from tests.unit.store.helpers import add, build_old, new_task, submit

TABLES = {
    "tasks",
    "task_tags",
    "task_deps",
    "history",
    "history_tags",
    "paused_domains",
    "paused_groups",
    "worker_types",
}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("sqlite_")
    }


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _schema_sql(conn: sqlite3.Connection) -> list[str]:
    return sorted(r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_a_new_file_is_created_at_the_current_version_in_wal_mode(db_path: str) -> None:
    conn = open_connection(db_path)
    try:
        assert _version(conn) == SCHEMA_VERSION
        assert _tables(conn) >= TABLES
        assert "traceback" in _columns(conn, "tasks") and "traceback" in _columns(conn, "history")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        conn.close()


def test_reopening_is_idempotent_and_keeps_the_data(db_path: str) -> None:
    first = open_connection(db_path)
    task_id = add(first, "k")
    schema_sql = _schema_sql(first)
    first.close()
    again = open_connection(db_path, synchronous="FULL")
    try:
        assert _version(again) == SCHEMA_VERSION
        assert _schema_sql(again) == schema_sql
        assert [r[0] for r in again.execute("SELECT id FROM tasks")] == [task_id]
        assert again.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        again.close()
    with pytest.raises(StorageError, match="bad synchronous mode"):
        open_connection(db_path, synchronous="SOMETIMES")


@pytest.mark.parametrize("old", range(1, SCHEMA_VERSION))
def test_an_older_database_is_migrated_forward_keeping_its_rows(db_path: str, old: int) -> None:
    build_old(db_path, old)
    with pytest.raises(StorageError, match=r"older.*upgrade"):
        open_readonly(db_path)
    conn = open_connection(db_path)
    try:
        assert _version(conn) == SCHEMA_VERSION
        assert _tables(conn) >= TABLES and "traceback" in _columns(conn, "tasks")
        rec = queries.get(conn, 1)  # the old row reads as a record of today
        assert rec is not None and (rec.task_type, rec.priority, rec.traceback) == (
            "d::old",
            7,
            None,
        )
        # Its key is found again (schema 5 finds keys by their hash).
        assert queries.lookup(conn, "d::old", "k")[0] == "active"
        (eff,) = submit(conn, new_task("k", task_type="d::old"))
        assert (eff.outcome, eff.id) == (Outcome.DUPLICATE, 1)
    finally:
        conn.close()
    open_readonly(db_path).close()  # current now


def test_open_readonly_reads_beside_a_writer_but_cannot_write_or_create(db_path: str) -> None:
    writer = open_connection(db_path)
    reader = open_readonly(db_path)
    try:
        task_id = add(writer, "k")
        assert [r[0] for r in reader.execute("SELECT id FROM tasks")] == [task_id]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("DELETE FROM tasks")
        assert writer.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
    finally:
        reader.close()
        writer.close()
    missing = Path(db_path).with_name("nope.db")
    with pytest.raises(StorageError, match="no database at"):
        open_readonly(str(missing))
    assert not missing.exists()


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StorageError, match="cannot use database"):
        open_connection(str(path))
    with pytest.raises(StorageError, match="cannot read database"):
        open_readonly(str(path))
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal, no -shm


def test_another_apps_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE contacts (name TEXT)")
    raw.execute("INSERT INTO contacts VALUES ('ada')")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="not a taskmill database"):
        open_connection(str(path))
    with pytest.raises(StorageError, match="not a taskmill database"):
        open_readonly(str(path))
    assert path.read_bytes() == before


def test_a_database_from_a_newer_taskmill_is_refused(db_path: str) -> None:
    open_connection(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StorageError, match="newer"):
        open_connection(db_path)
    with pytest.raises(StorageError, match="newer"):
        open_readonly(db_path)


def test_an_in_memory_database_is_allowed_without_wal() -> None:
    conn = open_connection(":memory:")
    try:
        assert _version(conn) == SCHEMA_VERSION
        assert add(conn, "k") == 1
    finally:
        conn.close()
