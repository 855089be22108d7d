"""Recurring schedules: the next occurrence, pause and resume."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..errors import NotFound
from .ids import take_ids
from .pauses import _pause_queued, clear_pause_bit
from .rows import PAUSE_DOMAIN, PAUSE_GROUP, PAUSE_SCHEDULE
from .tables import _paused_sets

__all__ = ["find_schedule", "schedules", "set_schedule_paused"]

_OCCURRENCE_COPY = (
    "task_type, domain, key, label, priority, payload, group_key, fail_fast, max_retries, "
    "retry_policy, expected_read, expected_write, expected_net_rx, expected_net_tx, ttl_ms, "
    "ttl_from, on_dep_failure, recurring_interval_ms, recurring_max, schedule_id, tags, key_hash"
)


def _next_occurrence(
    conn: sqlite3.Connection, row: sqlite3.Row, now: int
) -> tuple[int | None, int]:
    """Enqueue the next occurrence of a recurring task that just completed.

    Occurrences keep the schedule's cadence: the next one is due one interval
    after this one was due; occurrences that came due while this one was still
    queued or running are skipped (counted, not run). A paused schedule keeps
    its next occurrence, held (``paused`` with the schedule bit) until resumed
    or cancelled. Returns the new id (None when the schedule is over) and the
    number skipped.
    """
    interval = row["recurring_interval_ms"]
    count = row["recurring_count"] + 1
    if row["recurring_max"] is not None and count >= row["recurring_max"]:
        return None, 0
    # When this one was due (run_after may have moved since: a retry, a rate
    # limit); rows from before schema 4 have only run_after.
    was_due = row["recurring_due_at"]
    if was_due is None:
        was_due = row["run_after"] or row["created_at"]
    due = was_due + interval
    skipped = 0
    if due <= now:
        skipped = (now - due) // interval + 1
        due += skipped * interval
    values = {k: row[k] for k in _OCCURRENCE_COPY.split(", ")}
    pauses = _paused_sets(conn)
    bits = 0
    if values["group_key"] is not None and values["group_key"] in pauses.groups:
        bits |= PAUSE_GROUP
    if values["domain"] in pauses.domains:
        bits |= PAUSE_DOMAIN
    if row["recurring_paused"]:
        bits |= PAUSE_SCHEDULE
    expires = None
    if values["ttl_ms"] is not None and values["ttl_from"] == "submission":
        expires = now + values["ttl_ms"]
    cols = _OCCURRENCE_COPY.split(", ")
    new_id = take_ids(conn)
    conn.execute(
        f"INSERT INTO tasks (id, {_OCCURRENCE_COPY}, status, delayed, created_at, run_after, "
        "expires_at, recurring_count, recurring_paused, pause_reasons, paused_at, "
        "recurring_due_at) "
        f"VALUES (?, {', '.join('?' * len(cols))}, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id,
            *(values[c] for c in cols),
            "paused" if bits else "pending",
            now,
            due,
            expires,
            count,
            row["recurring_paused"],
            bits,
            now if bits else None,
            due,
        ),
    )
    conn.execute(
        "INSERT INTO task_tags (task_id, key, value) "
        "SELECT ?, key, value FROM history_tags WHERE history_id = "
        "(SELECT MAX(history_id) FROM history WHERE id = ?)",
        (new_id, row["id"]),
    )
    return new_id, skipped


def find_schedule(conn: sqlite3.Connection, schedule_or_task_id: int) -> sqlite3.Row | None:
    """The active occurrence of a recurring schedule, by schedule id or task id."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tasks WHERE recurring_interval_ms IS NOT NULL "
        "AND (schedule_id = ? OR id = ?) LIMIT 1",
        (schedule_or_task_id, schedule_or_task_id),
    ).fetchone()
    return row


def set_schedule_paused(
    conn: sqlite3.Connection, schedule_or_task_id: int, paused: bool, now: int
) -> list[int]:
    """Pause or resume a schedule. Paused, its queued occurrence is held (a
    running one finishes) and so is each next one, until resumed or
    cancelled. Returns the ids that became pending (on resume).

    Raises:
        NotFound: no active recurring task with that id.
    """
    row = find_schedule(conn, schedule_or_task_id)
    if row is None:
        raise NotFound(f"no recurring schedule {schedule_or_task_id}", field="id")
    task_id = row["id"]
    conn.execute(
        "UPDATE tasks SET recurring_paused = ? WHERE id = ?", (1 if paused else 0, task_id)
    )
    if paused:
        _pause_queued(conn, PAUSE_SCHEDULE, now, "id = ?", (task_id,))
        return []
    return clear_pause_bit(conn, PAUSE_SCHEDULE, now, "id = ?", (task_id,))


def schedules(conn: sqlite3.Connection, domain: str | None = None) -> list[dict[str, Any]]:
    """Every active recurring schedule."""
    sql = "SELECT * FROM tasks WHERE recurring_interval_ms IS NOT NULL"
    params: tuple[Any, ...] = ()
    if domain is not None:
        sql += " AND domain = ?"
        params = (domain,)
    out = []
    for row in conn.execute(sql + " ORDER BY id", params):
        out.append(
            {
                "id": row["schedule_id"] or row["id"],
                "task_id": row["id"],
                "task_type": row["task_type"],
                "label": row["label"],
                "interval_ms": row["recurring_interval_ms"],
                "next_run": row["run_after"] if row["status"] in ("pending", "paused") else None,
                "status": row["status"],
                "occurrences": row["recurring_count"],
                "max_occurrences": row["recurring_max"],
                "paused": bool(row["recurring_paused"]),
            }
        )
    return out
