"""Pause reasons: domains, groups, the global pause, preemption; priorities."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import NotFound
from .rows import PAUSE_DOMAIN, PAUSE_GROUP, PAUSE_PREEMPTION
from .tables import NOT_PENDING, _active

__all__ = [
    "clear_pause_bit",
    "has_preempted",
    "load_pauses",
    "pause_domain",
    "pause_group",
    "resume_domain",
    "resume_group",
    "resume_preempted",
    "set_priority",
]


def clear_pause_bit(
    conn: sqlite3.Connection,
    reason_bit: int,
    now: int,
    where: str = "1",
    params: Sequence[Any] = (),
) -> list[int]:
    """Clear one pause reason; tasks left with none become pending. Returns those ids."""
    resumed = [
        r[0]
        for r in conn.execute(
            f"UPDATE tasks SET status = 'pending', pause_reasons = 0, delayed = 0, "
            f"pause_duration_ms = pause_duration_ms + (? - COALESCE(paused_at, ?)), "
            f"paused_at = NULL WHERE status = 'paused' AND {NOT_PENDING} AND pause_reasons = ? "
            f"AND ({where}) "
            f"RETURNING id",
            (now, now, reason_bit, *params),
        )
    ]
    conn.execute(
        f"UPDATE tasks SET pause_reasons = pause_reasons & ~? "
        f"WHERE status = 'paused' AND {NOT_PENDING} AND (pause_reasons & ?) != 0 AND ({where})",
        (reason_bit, reason_bit, *params),
    )
    # A delayed task resumed into the future stays delayed.
    if resumed:
        conn.execute(
            "UPDATE tasks SET delayed = 1 WHERE status = 'pending' AND run_after > ? AND id IN "
            f"({','.join('?' * len(resumed))})",
            (now, *resumed),
        )
    return resumed


def set_priority(conn: sqlite3.Connection, task_id: int, priority: int) -> bool:
    row = _active(conn, task_id)
    if row is None:
        raise NotFound(f"no active task with id {task_id}", field="id")
    if row["status"] not in ("pending", "paused", "blocked"):
        return False
    conn.execute("UPDATE tasks SET priority = ? WHERE id = ?", (priority, task_id))
    return True


def _pause_queued(conn: sqlite3.Connection, bit: int, now: int, where: str, params: Any) -> int:
    """Pending and paused tasks matching ``where`` get a pause reason; returns how many
    were pending."""
    paused = conn.execute(
        f"UPDATE tasks SET status = 'paused', pause_reasons = pause_reasons | ?, "
        f"paused_at = COALESCE(paused_at, ?) WHERE status = 'pending' AND ({where})",
        (bit, now, *params),
    ).rowcount
    conn.execute(
        f"UPDATE tasks SET pause_reasons = pause_reasons | ? WHERE status = 'paused' "
        f"AND {NOT_PENDING} AND ({where})",
        (bit, *params),
    )
    return paused


def pause_domain(conn: sqlite3.Connection, domain: str, now: int) -> int:
    """Persist a domain pause; its queued tasks are paused. Returns how many were pending."""
    conn.execute(
        "INSERT OR IGNORE INTO paused_domains (domain, paused_at) VALUES (?, ?)", (domain, now)
    )
    return _pause_queued(conn, PAUSE_DOMAIN, now, "domain = ?", (domain,))


def resume_domain(conn: sqlite3.Connection, domain: str, now: int) -> list[int]:
    conn.execute("DELETE FROM paused_domains WHERE domain = ?", (domain,))
    return clear_pause_bit(conn, PAUSE_DOMAIN, now, "domain = ?", (domain,))


def pause_group(conn: sqlite3.Connection, group: str, now: int, resume_at: int | None) -> int:
    """Persist a group pause (with its auto-resume time); its queued tasks are paused."""
    conn.execute(
        "INSERT OR REPLACE INTO paused_groups (group_key, paused_at, resume_at) VALUES (?, ?, ?)",
        (group, now, resume_at),
    )
    return _pause_queued(conn, PAUSE_GROUP, now, "group_key = ?", (group,))


def resume_group(conn: sqlite3.Connection, group: str, now: int) -> list[int]:
    conn.execute("DELETE FROM paused_groups WHERE group_key = ?", (group,))
    return clear_pause_bit(conn, PAUSE_GROUP, now, "group_key = ?", (group,))


def load_pauses(conn: sqlite3.Connection) -> tuple[dict[str, int | None], set[str]]:
    """Persisted group pauses (with resume times) and domain pauses."""
    groups = {r[0]: r[1] for r in conn.execute("SELECT group_key, resume_at FROM paused_groups")}
    domains = {r[0] for r in conn.execute("SELECT domain FROM paused_domains")}
    return groups, domains


def resume_preempted(conn: sqlite3.Connection, now: int, preempt_priority: int) -> list[int]:
    """Resume preempted tasks that no urgent task is still ahead of (no thrash).

    A preempted task of priority p resumes only when no pending or running task
    at or above the preemption threshold is more urgent than p.
    """
    row = conn.execute(
        "SELECT MIN(priority) FROM tasks WHERE status IN ('pending', 'running') AND priority <= ?",
        (preempt_priority,),
    ).fetchone()
    best = row[0]
    if best is None:
        return clear_pause_bit(conn, PAUSE_PREEMPTION, now)
    return clear_pause_bit(conn, PAUSE_PREEMPTION, now, "priority <= ?", (best,))


def has_preempted(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            f"SELECT 1 FROM tasks WHERE status = 'paused' AND {NOT_PENDING} "
            "AND (pause_reasons & ?) != 0 LIMIT 1",
            (PAUSE_PREEMPTION,),
        ).fetchone()
        is not None
    )
