"""Operations that run with the whole queue present read through an index,
never by scanning every task (at 1,000,000 queued, restart took 1.7 s when
recovery's statements scanned: SQLite does not infer a partial index's
``status != 'pending'`` from ``status = 'paused'``; a snapshot's per-domain
counts took 840 ms)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from taskmill.store import pauses, queries, recovery
from taskmill.store.rows import PAUSE_GROUP

from .helpers import NOW, add


def _scans(conn: sqlite3.Connection, op: Callable[[], object]) -> list[str]:
    """The statements ``op`` ran that scan the tasks table."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        op()
    finally:
        conn.set_trace_callback(None)
    out = []
    for sql in seen:
        head = sql.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "UPDATE", "DELETE", "WITH"):
            continue
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        if any(row[3] in ("SCAN tasks", "SCAN t") for row in plan):
            out.append(sql)
    return out


@pytest.mark.parametrize(
    "name",
    [
        "recover",
        "has_preempted",
        "pause_reason_counts",
        "clear_group_pause",
        "domain_counts",
        "status_counts_of_a_domain",
    ],
)
def test_status_queries_use_an_index(conn: sqlite3.Connection, name: str) -> None:
    for i in range(20):
        add(conn, f"k{i}", group="g" if i % 2 else None)
    ops: dict[str, Callable[[], object]] = {
        "recover": lambda: recovery.recover(conn, NOW),
        "has_preempted": lambda: pauses.has_preempted(conn),
        "pause_reason_counts": lambda: queries.pause_reason_counts(conn),
        "clear_group_pause": lambda: pauses.clear_pause_bit(
            conn, PAUSE_GROUP, NOW, "group_key = ?", ("g",)
        ),
        "domain_counts": lambda: queries.domain_counts(conn),
        "status_counts_of_a_domain": lambda: queries.status_counts(conn, "d"),
    }
    assert _scans(conn, ops[name]) == []
