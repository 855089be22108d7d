"""Primitives every operation shares: moving a task to history, tags, pause reasons."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model import IoBudget, Status
from .rows import PAUSE_DOMAIN, PAUSE_GROUP, NewTask

__all__ = []

_HISTORY_COLUMNS = (
    "id, task_type, domain, key, label, priority, status, payload, result, memo, group_key, "
    "parent_id, fail_fast, retry_count, max_retries, last_error, created_at, started_at, "
    "finished_at, duration_ms, run_after, ttl_ms, ttl_from, expires_at, expected_read, "
    "expected_write, expected_net_rx, expected_net_tx, actual_read, actual_write, "
    "actual_net_rx, actual_net_tx, depends_on, tags, retry_policy, traceback, key_hash"
)

_MOVE_TO_HISTORY = f"""
INSERT INTO history ({_HISTORY_COLUMNS})
SELECT id, task_type, domain, key, label, priority, :status, payload, :result,
       COALESCE(:memo, memo), group_key, parent_id, fail_fast, retry_count + :retry_bump,
       max_retries, COALESCE(:error, last_error), created_at, COALESCE(:started, started_at),
       COALESCE(:ended, :now), CASE WHEN COALESCE(:started, started_at) IS NULL THEN NULL
                  ELSE MAX(0, COALESCE(:ended, :now) - COALESCE(:started, started_at)) END,
       run_after, ttl_ms, ttl_from, expires_at, expected_read, expected_write, expected_net_rx,
       expected_net_tx, :ar, :aw, :arx, :atx, depends_on, tags, retry_policy,
       COALESCE(:traceback, traceback), key_hash
FROM tasks WHERE id = :id
"""


_BULK_MOVE_TO_HISTORY = re.sub(
    r":(\w+)",
    lambda m: (
        {"status": "?1", "now": "?2", "id": ":id"}.get(m.group(1), "NULL")
        if m.group(1)
        in ("status", "now", "id", "result", "memo", "error", "traceback", "started", "ended")
        else "0"
    ),
    _MOVE_TO_HISTORY,
)
"""_MOVE_TO_HISTORY for many ids: no result, memo, error or IO; status ?1, now ?2."""


def _to_history(
    conn: sqlite3.Connection,
    task_id: int,
    status: Status,
    now: int,
    *,
    tags_json: str | None = None,
    result_json: str | None = None,
    error: str | None = None,
    traceback: str | None = None,
    memo_json: str | None = None,
    actual: IoBudget | None = None,
    retry_bump: int = 0,
    started_at: int | None = None,
    ended_at: int | None = None,
    delete: bool = True,
    edges: bool = True,
) -> int:
    """Copy an active row (and its tags) to history; delete it unless told not to."""
    io = actual or IoBudget()
    cur = conn.execute(
        _MOVE_TO_HISTORY,
        {
            "status": status.value,
            "result": result_json,
            "memo": memo_json,
            "retry_bump": retry_bump,
            "error": error,
            "traceback": traceback,
            "now": now,
            "ar": io.disk_read,
            "aw": io.disk_write,
            "arx": io.net_rx,
            "atx": io.net_tx,
            "started": started_at,
            "ended": ended_at,
            "id": task_id,
        },
    )
    history_id = cur.lastrowid
    assert history_id is not None
    if tags_json is None:
        row = conn.execute("SELECT tags FROM tasks WHERE id = ?", (task_id,)).fetchone()
        tags_json = row["tags"] if row else "{}"
    if tags_json != "{}":
        conn.execute(
            "INSERT INTO history_tags (history_id, key, value) "
            "SELECT ?, key, value FROM task_tags WHERE task_id = ?",
            (history_id, task_id),
        )
    if delete:
        _delete_active(conn, task_id, has_tags=tags_json != "{}", edges=edges)
    return history_id


def _delete_active(
    conn: sqlite3.Connection, task_id: int, *, has_tags: bool = True, edges: bool = True
) -> None:
    if has_tags:
        conn.execute("DELETE FROM task_tags WHERE task_id = ?", (task_id,))
    if edges:
        conn.execute("DELETE FROM task_deps WHERE task_id = ?", (task_id,))
    conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))


def _insert_tags(conn: sqlite3.Connection, task_id: int, tags: Mapping[str, str]) -> None:
    if tags:
        conn.executemany(
            "INSERT INTO task_tags (task_id, key, value) VALUES (?, ?, ?)",
            [(task_id, k, v) for k, v in tags.items()],
        )


def _active(conn: sqlite3.Connection, task_id: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tasks WHERE id = ?", (task_id,)
    ).fetchone()
    return row


@dataclass(slots=True)
class _Pauses:
    """Paused groups and domains, read once per submission batch."""

    groups: set[str]
    domains: set[str]

    def reasons(self, item: NewTask) -> int:
        """A new task of a paused group or domain is stored paused."""
        bits = 0
        if item.group is not None and item.group in self.groups:
            bits |= PAUSE_GROUP
        if item.domain in self.domains:
            bits |= PAUSE_DOMAIN
        return bits


def _paused_sets(conn: sqlite3.Connection) -> _Pauses:
    return _Pauses(
        groups={r[0] for r in conn.execute("SELECT group_key FROM paused_groups")},
        domains={r[0] for r in conn.execute("SELECT domain FROM paused_domains")},
    )


#: Ids per ``IN (...)`` list (SQLite allows 32,766 variables; stay far below).
_IN_CHUNK = 500


def _bulk_to_history(
    conn: sqlite3.Connection, ids: Sequence[int], status: Status, now: int
) -> None:
    """:func:`_to_history` for many tasks with no children and no dependents."""
    marks = ",".join("?" * len(ids))
    before = conn.execute("SELECT COALESCE(MAX(history_id), 0) FROM history").fetchone()[0]
    conn.execute(
        _BULK_MOVE_TO_HISTORY.replace("WHERE id = :id", f"WHERE id IN ({marks})"),
        (status.value, now, *ids),
    )
    conn.execute(
        "INSERT INTO history_tags (history_id, key, value) "
        "SELECT h.history_id, g.key, g.value FROM history h JOIN task_tags g ON g.task_id = h.id "
        "WHERE h.history_id > ?",
        (before,),
    )
    conn.execute(f"DELETE FROM task_tags WHERE task_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM task_deps WHERE task_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM tasks WHERE id IN ({marks})", ids)


_BULK_COMPLETE = f"""
INSERT INTO history ({_HISTORY_COLUMNS})
SELECT t.id, task_type, domain, key, label, priority, 'completed', payload, v.column2,
       memo, group_key, parent_id, fail_fast, retry_count, max_retries, last_error,
       created_at, COALESCE(v.column3, started_at), COALESCE(v.column4, ?1),
       MAX(0, COALESCE(v.column4, ?1) - COALESCE(v.column3, started_at, ?1)),
       run_after, ttl_ms, ttl_from, expires_at, expected_read, expected_write,
       expected_net_rx, expected_net_tx, v.column5, v.column6, v.column7, v.column8,
       depends_on, tags, retry_policy, traceback, key_hash
FROM (VALUES {{rows}}) AS v JOIN tasks t ON t.id = v.column1
RETURNING history_id, id
"""

#: Rows of one bulk completion (8 parameters each, far below SQLite's 32,766).
_COMPLETE_CHUNK = 500


def _bulk_complete(
    conn: sqlite3.Connection,
    done: Sequence[tuple[int, str | None, int | None, int | None, IoBudget]],
    now: int,
) -> dict[int, int]:
    """Move plain completed tasks (no tags, children, dependents' edges of their
    own, requeue or schedule) to history in a few statements: ``(id,
    result_json, started_at, ended_at, actual_io)`` each. Returns id -> history_id.

    One statement for a batch instead of three per task: a turn that records
    hundreds of short tasks spends its time in SQLite, not in Python.
    """
    out: dict[int, int] = {}
    for start in range(0, len(done), _COMPLETE_CHUNK):
        part = done[start : start + _COMPLETE_CHUNK]
        params: list[object] = [now]
        for task_id, result, started, ended, io in part:
            params += (
                task_id,
                result,
                started,
                ended,
                io.disk_read,
                io.disk_write,
                io.net_rx,
                io.net_tx,
            )
        rows = ",".join(["(?,?,?,?,?,?,?,?)"] * len(part))
        for history_id, task_id in conn.execute(_BULK_COMPLETE.format(rows=rows), params):
            out[task_id] = history_id
        ids = [p[0] for p in part]
        conn.execute(f"DELETE FROM tasks WHERE id IN ({','.join('?' * len(ids))})", ids)
    return out


#: Said beside ``status = 'paused'`` (or running, blocked, waiting) so that
#: SQLite uses the tasks_other index, whose WHERE it is: the planner does not
#: infer it from the equality, and scanned every queued row instead (1.7 s
#: at start with 1,000,000 queued).
NOT_PENDING = "status != 'pending'"

#: Ready to run: pending and not delayed (what the ready indexes cover).
_READY = "status = 'pending' AND delayed = 0"
