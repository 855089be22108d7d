"""Crash recovery and retention."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .cascade import recheck_waiting
from .ids import raise_floor
from .pauses import clear_pause_bit
from .rows import PAUSE_DOMAIN, PAUSE_GLOBAL, PAUSE_GROUP, PAUSE_PREEMPTION
from .tables import NOT_PENDING

__all__ = ["Recovery", "prune_history", "recover", "requeue_running"]


@dataclass(slots=True)
class Recovery:
    requeued: int
    stale_edges: int
    parents_ready: list[int]


def requeue_running(conn: sqlite3.Connection, now: int) -> int:
    """Every running task back to pending, no retry counted; returns how many."""
    count: int = conn.execute(
        "UPDATE tasks SET status = 'pending', started_at = NULL, delayed = "
        "CASE WHEN run_after IS NOT NULL AND run_after > ? THEN 1 ELSE 0 END "
        f"WHERE status = 'running' AND {NOT_PENDING}",
        (now,),
    ).rowcount
    return count


def recover(conn: sqlite3.Connection, now: int) -> Recovery:
    """Repair state left by a crash: running work goes back to pending, no retry counted."""
    requeued = requeue_running(conn, now)
    conn.execute(
        "UPDATE tasks SET pause_duration_ms = pause_duration_ms + MAX(0, ? - paused_at), "
        f"paused_at = ? WHERE status = 'paused' AND {NOT_PENDING} AND paused_at IS NOT NULL",
        (now, now),
    )
    # Global pause and preemption live in memory only: after a restart they are over.
    clear_pause_bit(conn, PAUSE_GLOBAL, now)
    clear_pause_bit(conn, PAUSE_PREEMPTION, now)
    stale = conn.execute(
        "DELETE FROM task_deps WHERE depends_on_id NOT IN (SELECT id FROM tasks)"
    ).rowcount
    # Blocked tasks with no edges left can run: pending, or paused in a paused
    # group or domain (as when their last dependency completes).
    conn.execute(
        "UPDATE tasks SET pause_reasons = (pause_reasons & ~(? | ?)) | "
        "(CASE WHEN group_key IN (SELECT group_key FROM paused_groups) THEN ? ELSE 0 END) | "
        "(CASE WHEN domain IN (SELECT domain FROM paused_domains) THEN ? ELSE 0 END), "
        "delayed = CASE WHEN run_after IS NOT NULL AND run_after > ? THEN 1 ELSE 0 END "
        f"WHERE status = 'blocked' AND {NOT_PENDING} AND NOT EXISTS "
        "(SELECT 1 FROM task_deps d WHERE d.task_id = tasks.id)",
        (PAUSE_GROUP, PAUSE_DOMAIN, PAUSE_GROUP, PAUSE_DOMAIN, now),
    )
    conn.execute(
        "UPDATE tasks SET status = CASE WHEN pause_reasons = 0 THEN 'pending' ELSE 'paused' END, "
        "paused_at = CASE WHEN pause_reasons = 0 THEN NULL ELSE ? END "
        f"WHERE status = 'blocked' AND {NOT_PENDING} AND NOT EXISTS "
        "(SELECT 1 FROM task_deps d WHERE d.task_id = tasks.id)",
        (now,),
    )
    return Recovery(requeued=requeued, stale_edges=stale, parents_ready=recheck_waiting(conn, now))


def prune_history(
    conn: sqlite3.Connection, now: int, max_count: int | None, max_age_ms: int | None
) -> int:
    """Apply retention; returns the number of history rows removed (tags too)."""
    removed = 0
    cutoff: int | None = None
    if max_count is not None:
        # History ids only grow, so the newest max_count rows are those above
        # MAX - max_count: an index probe, where an OFFSET walked max_count
        # rows at every prune. (A dead letter retried leaves a gap: then a few
        # less are kept.)
        top = conn.execute("SELECT MAX(history_id) FROM history").fetchone()[0]
        if top is not None and top - max_count > 0:
            cutoff = top - max_count
            raise_floor(conn)  # the ids of the rows deleted are never given again
            conn.execute("DELETE FROM history_tags WHERE history_id <= ?", (cutoff,))
            removed += conn.execute("DELETE FROM history WHERE history_id <= ?", (cutoff,)).rowcount
    if max_age_ms is not None:
        limit = now - max_age_ms
        raise_floor(conn)
        conn.execute(
            "DELETE FROM history_tags WHERE history_id IN "
            "(SELECT history_id FROM history WHERE finished_at < ?)",
            (limit,),
        )
        removed += conn.execute("DELETE FROM history WHERE finished_at < ?", (limit,)).rowcount
    return removed
