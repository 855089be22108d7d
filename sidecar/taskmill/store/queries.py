"""Read queries: records, lists, counts, statistics, tags."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidState, NotFound
from ..filters import TaskFilter
from ..model import Status, TaskRecord
from .rows import pause_reason_names, record_from_row
from .schema import key_hash
from .tables import _READY, NOT_PENDING, _active

__all__ = [
    "active_ids",
    "avg_throughput",
    "dependencies",
    "domain_counts",
    "get",
    "get_active",
    "group_counts",
    "history_counts",
    "history_stats",
    "latest_history",
    "list_active",
    "list_history",
    "lookup",
    "pause_reason_counts",
    "recent_durations",
    "retry_source",
    "status_counts",
    "tag_keys",
    "tag_values",
]


def get(conn: sqlite3.Connection, task_id: int) -> TaskRecord | None:
    row = _active(conn, task_id)
    if row is not None:
        return record_from_row(row)
    row = conn.execute(
        "SELECT * FROM history WHERE id = ? ORDER BY history_id DESC LIMIT 1", (task_id,)
    ).fetchone()
    return None if row is None else record_from_row(row, history=True)


def get_active(conn: sqlite3.Connection, task_id: int) -> TaskRecord | None:
    row = _active(conn, task_id)
    return None if row is None else record_from_row(row)


def lookup(conn: sqlite3.Connection, task_type: str, key: str) -> tuple[str, TaskRecord | None]:
    h = key_hash(task_type, key)
    row = conn.execute(
        "SELECT * FROM tasks WHERE key_hash = ? AND task_type = ? AND key = ?", (h, task_type, key)
    ).fetchone()
    if row is not None:
        return "active", record_from_row(row)
    row = conn.execute(
        "SELECT * FROM history WHERE key_hash = ? AND task_type = ? AND key = ? "
        "ORDER BY history_id DESC LIMIT 1",
        (h, task_type, key),
    ).fetchone()
    if row is not None:
        return "history", record_from_row(row, history=True)
    return "not_found", None


def _prefix_clause(column: str) -> str:
    """A literal, case-sensitive prefix test on ``column`` (parameters: prefix, prefix).

    LIKE would treat ``%`` and ``_`` as wildcards and ignore ASCII case; tag keys
    are case-sensitive names, so compare the leading characters instead.
    """
    return f"substr({column}, 1, length(?)) = ?"


def _where(
    f: TaskFilter, tag_table: str = "task_tags", id_col: str = "t.id"
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if f.status:
        clauses.append(f"t.status IN ({','.join('?' * len(f.status))})")
        params.extend(f.status)
    if f.domain is not None:
        clauses.append("t.domain = ?")
        params.append(f.domain)
    if f.task_type is not None:
        clauses.append("t.task_type = ?")
        params.append(f.task_type)
    if f.group is not None:
        clauses.append("t.group_key = ?")
        params.append(f.group)
    if f.parent_id is not None:
        clauses.append("t.parent_id = ?")
        params.append(f.parent_id)
    ref = "task_id" if tag_table == "task_tags" else "history_id"
    for k, v in (f.tags or {}).items():
        clauses.append(
            f"EXISTS (SELECT 1 FROM {tag_table} g WHERE g.{ref} = {id_col} "
            "AND g.key = ? AND g.value = ?)"
        )
        params.extend((k, v))
    if f.tag_prefix is not None:
        clauses.append(
            f"EXISTS (SELECT 1 FROM {tag_table} g WHERE g.{ref} = {id_col} "
            f"AND {_prefix_clause('g.key')})"
        )
        params.extend((f.tag_prefix, f.tag_prefix))
    return (" AND ".join(clauses) or "1"), params


def list_active(
    conn: sqlite3.Connection, f: TaskFilter, limit: int, offset: int
) -> tuple[list[TaskRecord], int]:
    where, params = _where(f)
    total = conn.execute(f"SELECT count(*) FROM tasks t WHERE {where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM tasks t WHERE {where} ORDER BY t.id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [record_from_row(r) for r in rows], total


def active_ids(
    conn: sqlite3.Connection, f: TaskFilter, *, after: int = -1, limit: int = -1
) -> list[int]:
    """Ids of active tasks matching ``f``, ascending, above ``after`` (a page of
    ``limit``; -1: all)."""
    where, params = _where(f)
    return [
        r[0]
        for r in conn.execute(
            f"SELECT t.id FROM tasks t WHERE {where} AND t.id > ? ORDER BY t.id LIMIT ?",
            (*params, after, limit),
        )
    ]


def list_history(
    conn: sqlite3.Connection,
    *,
    status: Sequence[str] | None,
    task_type: str | None,
    key: str | None,
    domain: str | None,
    limit: int,
    offset: int,
) -> tuple[list[TaskRecord], int]:
    clauses: list[str] = []
    params: list[Any] = []
    if status:
        clauses.append(f"status IN ({','.join('?' * len(status))})")
        params.extend(status)
    if task_type is not None:
        clauses.append("task_type = ?")
        params.append(task_type)
    if key is not None:
        if task_type is not None:  # what the index holds
            clauses.append("key_hash = ?")
            params.append(key_hash(task_type, key))
        clauses.append("key = ?")
        params.append(key)
    if domain is not None:
        clauses.append("domain = ?")
        params.append(domain)
    where = " AND ".join(clauses) or "1"
    total = conn.execute(f"SELECT count(*) FROM history WHERE {where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM history WHERE {where} ORDER BY history_id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [record_from_row(r, history=True) for r in rows], total


def latest_history(conn: sqlite3.Connection, task_id: int) -> TaskRecord | None:
    row = conn.execute(
        "SELECT * FROM history WHERE id = ? ORDER BY history_id DESC LIMIT 1", (task_id,)
    ).fetchone()
    return None if row is None else record_from_row(row, history=True)


def history_stats(conn: sqlite3.Connection, task_type: str) -> dict[str, Any]:
    row = conn.execute(
        """
        SELECT count(*) AS n,
               SUM(status = 'failed' OR status = 'dead_letter') AS failures,
               AVG(CASE WHEN status = 'completed' THEN duration_ms END) AS avg_ms,
               AVG(CASE WHEN status = 'completed' THEN actual_read END) AS avg_read,
               AVG(CASE WHEN status = 'completed' THEN actual_write END) AS avg_write,
               AVG(CASE WHEN status = 'completed' THEN actual_net_rx END) AS avg_rx,
               AVG(CASE WHEN status = 'completed' THEN actual_net_tx END) AS avg_tx
        FROM history WHERE task_type = ?
        """,
        (task_type,),
    ).fetchone()
    n = row["n"] or 0
    return {
        "count": n,
        "avg_duration_ms": float(row["avg_ms"] or 0.0),
        "avg_read_bytes": float(row["avg_read"] or 0.0),
        "avg_write_bytes": float(row["avg_write"] or 0.0),
        "avg_net_rx_bytes": float(row["avg_rx"] or 0.0),
        "avg_net_tx_bytes": float(row["avg_tx"] or 0.0),
        "failure_rate": (row["failures"] or 0) / max(n, 1),
    }


def recent_durations(conn: sqlite3.Connection, task_type: str, n: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT duration_ms FROM history WHERE task_type = ? AND status = 'completed' "
            "AND duration_ms IS NOT NULL ORDER BY history_id DESC LIMIT ?",
            (task_type, n),
        )
    ]


def avg_throughput(conn: sqlite3.Connection, task_type: str, n: int) -> dict[str, float]:
    """Mean bytes/s of the last ``n`` completed runs with a positive duration."""
    row = conn.execute(
        """
        SELECT AVG(actual_read * 1000.0 / duration_ms), AVG(actual_write * 1000.0 / duration_ms),
               AVG(actual_net_rx * 1000.0 / duration_ms), AVG(actual_net_tx * 1000.0 / duration_ms)
        FROM (SELECT * FROM history WHERE task_type = ? AND status = 'completed'
              AND duration_ms > 0 ORDER BY history_id DESC LIMIT ?)
        """,
        (task_type, n),
    ).fetchone()
    return {
        "read_bps": float(row[0] or 0.0),
        "write_bps": float(row[1] or 0.0),
        "net_rx_bps": float(row[2] or 0.0),
        "net_tx_bps": float(row[3] or 0.0),
    }


def status_counts(conn: sqlite3.Connection, domain: str | None = None) -> dict[str, int]:
    """Active tasks per status (pending counted from the ready and delayed indexes)."""
    if domain is None:
        out = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT status, count(*) FROM tasks INDEXED BY tasks_other "
                "WHERE status != 'pending' GROUP BY status"
            )
        }
        ready = conn.execute(
            f"SELECT count(*) FROM tasks INDEXED BY tasks_ready WHERE {_READY}"
        ).fetchone()[0]
        delayed = conn.execute(
            "SELECT count(*) FROM tasks INDEXED BY tasks_delayed "
            "WHERE status = 'pending' AND delayed = 1"
        ).fetchone()[0]
    else:
        out = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT status, count(*) FROM tasks INDEXED BY tasks_other "
                "WHERE status != 'pending' AND domain = ? GROUP BY status",
                (domain,),
            )
        }
        ready = conn.execute(
            "SELECT count(*) FROM tasks WHERE status = 'pending' AND domain = ?", (domain,)
        ).fetchone()[0]
        delayed = 0
    if ready or delayed:
        out["pending"] = ready + delayed
    return out


def pause_reason_counts(conn: sqlite3.Connection, domain: str | None = None) -> dict[str, int]:
    """How many paused tasks each pause reason holds (a task can have several)."""
    sql = f"SELECT pause_reasons, count(*) FROM tasks WHERE status = 'paused' AND {NOT_PENDING}"
    params: tuple[Any, ...] = ()
    if domain is not None:
        sql += " AND domain = ?"
        params = (domain,)
    out: dict[str, int] = {}
    for bits, n in conn.execute(sql + " GROUP BY pause_reasons", params):
        for name in pause_reason_names(bits):
            out[name] = out.get(name, 0) + n
    return out


def history_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """History records per status."""
    return {
        r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM history GROUP BY status")
    }


def domain_counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Active tasks per domain and status, read from two indexes (a GROUP BY
    over the table read every queued row: 840 ms at 1,000,000)."""
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT domain, count(*) FROM tasks INDEXED BY tasks_pending_domain "
        "WHERE status = 'pending' GROUP BY domain"
    ):
        out.setdefault(r[0], {})["pending"] = r[1]
    for r in conn.execute(
        f"SELECT domain, status, count(*) FROM tasks INDEXED BY tasks_other "
        f"WHERE {NOT_PENDING} GROUP BY domain, status"
    ):
        out.setdefault(r[0], {})[r[1]] = r[2]
    return out


def group_counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT group_key, status, count(*) FROM tasks WHERE group_key IS NOT NULL "
        "GROUP BY group_key, status"
    ):
        out.setdefault(r[0], {})[r[1]] = r[2]
    return out


def retry_source(conn: sqlite3.Connection, task_id: int) -> tuple[TaskRecord, str | None]:
    """The dead-letter record to resubmit with its retry policy (JSON), or an
    error saying why not."""
    rec = latest_history(conn, task_id)
    if rec is None:
        if _active(conn, task_id) is not None:
            raise InvalidState(f"task {task_id} is still active, not dead-lettered")
        raise NotFound(f"no task with id {task_id}", field="id")
    if rec.status is not Status.DEAD_LETTER:
        raise InvalidState(f"task {task_id} ended as {rec.status.value}, not dead_letter")
    row = conn.execute(
        "SELECT retry_policy FROM history WHERE history_id = ?", (rec.history_id,)
    ).fetchone()
    return rec, row[0]


def dependencies(conn: sqlite3.Connection, task_id: int) -> dict[str, list[int]]:
    """What a task waits on (as submitted) and which active tasks wait on it."""
    rec = get(conn, task_id)
    if rec is None:
        raise NotFound(f"no task with id {task_id}", field="id")
    dependents = [
        r[0]
        for r in conn.execute(
            "SELECT task_id FROM task_deps WHERE depends_on_id = ? ORDER BY task_id", (task_id,)
        )
    ]
    return {"depends_on": list(rec.depends_on), "dependents": dependents}


def tag_values(conn: sqlite3.Connection, key: str, domain: str | None) -> list[dict[str, Any]]:
    """Distinct values of a tag on active tasks, with counts, most used first."""
    if domain is None:
        rows = conn.execute(
            "SELECT value, count(*) AS n FROM task_tags WHERE key = ? "
            "GROUP BY value ORDER BY n DESC, value",
            (key,),
        )
    else:
        rows = conn.execute(
            "SELECT g.value, count(*) AS n FROM task_tags g JOIN tasks t ON t.id = g.task_id "
            "WHERE g.key = ? AND t.domain = ? GROUP BY g.value ORDER BY n DESC, g.value",
            (key, domain),
        )
    return [{"value": r[0], "count": r[1]} for r in rows]


def tag_keys(conn: sqlite3.Connection, prefix: str, domain: str | None) -> list[str]:
    """Distinct tag keys of active tasks starting with ``prefix`` (literally, case-sensitive)."""
    if domain is None:
        rows = conn.execute(
            f"SELECT DISTINCT key FROM task_tags WHERE {_prefix_clause('key')} ORDER BY key",
            (prefix, prefix),
        )
    else:
        rows = conn.execute(
            "SELECT DISTINCT g.key FROM task_tags g JOIN tasks t ON t.id = g.task_id "
            f"WHERE {_prefix_clause('g.key')} AND t.domain = ? ORDER BY g.key",
            (prefix, prefix, domain),
        )
    return [r[0] for r in rows]
