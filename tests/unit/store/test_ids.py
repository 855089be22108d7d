"""ids: task ids are given in order and never given again, with no AUTOINCREMENT."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from taskmill.store import ids, recovery
from taskmill.store.schema import open_connection
from tests.unit.store.helpers import NOW, add, build_old, finish, new_task, start, submit


def _sequence_rows(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return [tuple(r) for r in conn.execute("SELECT name, seq FROM sqlite_sequence")]


def test_ids_follow_each_other_and_a_submit_leaves_sqlite_sequence_alone(
    conn: sqlite3.Connection,
) -> None:
    before = _sequence_rows(conn)
    first = add(conn, "a")
    batch = submit(conn, *(new_task(f"b{i}") for i in range(20)))  # the bulk path
    assert [e.id for e in batch] == list(range(first + 1, first + 21))
    assert add(conn, "c") == first + 21
    assert _sequence_rows(conn) == before  # no page of it written at a submit
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    assert "AUTOINCREMENT" not in sql


def test_an_id_whose_rows_are_all_gone_is_not_given_again_after_a_restart(db_path: str) -> None:
    conn = open_connection(db_path)
    ids = [add(conn, f"k{i}") for i in range(3)]
    for task_id in ids:
        finish(conn, start(conn, task_id))
    assert recovery.prune_history(conn, NOW, 0, None) == 3  # every row of them gone
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
    conn.close()
    again = open_connection(db_path)  # a new process: nothing remembered in memory
    try:
        assert add(again, "next") == ids[-1] + 1
    finally:
        again.close()


def test_a_rolled_back_insert_leaves_a_gap_not_a_reused_id(conn: sqlite3.Connection) -> None:
    first = add(conn, "a")
    conn.execute("BEGIN IMMEDIATE")
    lost = add(conn, "b")
    conn.execute("ROLLBACK")
    assert add(conn, "c") == lost + 1 == first + 2


def test_an_upgraded_database_keeps_counting_from_its_autoincrement_sequence(
    db_path: str,
) -> None:
    build_old(db_path, 6)  # one task, id 1, under AUTOINCREMENT
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("UPDATE sqlite_sequence SET seq = 41 WHERE name = 'tasks'")  # 40 came and went
    raw.close()
    conn = open_connection(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert add(conn, "new") == 42
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        # As a SQLite built with SQLITE_DBCONFIG_DEFENSIVE answers the edit.
        ("UPDATE sqlite_master", "table sqlite_master may not be modified"),
        # Another connection holds the write lock at that moment.
        ("BEGIN IMMEDIATE", "database is locked"),
    ],
)
def test_where_the_edit_cannot_be_made_the_keyword_stays_and_ids_stay_right(
    db_path: str, monkeypatch: pytest.MonkeyPatch, statement: str, error: str
) -> None:
    build_old(db_path, 6)
    real = ids.Connection.execute
    migrated: list[bool] = []

    def refusing(self: ids.Connection, sql: str, *args: Any) -> sqlite3.Cursor:
        if migrated and sql.startswith(statement):
            raise sqlite3.OperationalError(error)
        if sql.startswith("PRAGMA user_version = 7"):
            migrated.append(True)  # what follows is the edit's
        return real(self, sql, *args)

    monkeypatch.setattr(ids.Connection, "execute", refusing)
    conn = open_connection(db_path)
    monkeypatch.undo()
    try:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
        assert "AUTOINCREMENT" in sql
        assert conn.execute("PRAGMA writable_schema").fetchone()[0] == 0
        assert [add(conn, f"k{i}") for i in range(3)] == [2, 3, 4]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    again = open_connection(db_path)  # a SQLite that allows it: out now
    try:
        sql = again.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
        assert "AUTOINCREMENT" not in sql
        assert add(again, "k9") == 5
    finally:
        again.close()
