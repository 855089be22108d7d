"""Task types declared inline by remote workers, remembered across restarts."""

from __future__ import annotations

import sqlite3

__all__ = ["forget_worker_type", "save_worker_type", "worker_types"]


def save_worker_type(conn: sqlite3.Connection, task_type: str, config_json: str, now: int) -> None:
    """Remember a type a worker declared inline, so its tasks wait across restarts."""
    conn.execute(
        "INSERT INTO worker_types (task_type, config, declared_at) VALUES (?, ?, ?) "
        "ON CONFLICT (task_type) DO UPDATE SET config = excluded.config, "
        "declared_at = excluded.declared_at",
        (task_type, config_json, now),
    )


def forget_worker_type(conn: sqlite3.Connection, task_type: str) -> bool:
    """Forget a worker-declared type, unless a task of it is still active."""
    if conn.execute("SELECT 1 FROM tasks WHERE task_type = ? LIMIT 1", (task_type,)).fetchone():
        return False
    conn.execute("DELETE FROM worker_types WHERE task_type = ?", (task_type,))
    return True


def worker_types(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every remembered worker-declared type: ``(task_type, config JSON)``."""
    return [(r[0], r[1]) for r in conn.execute("SELECT task_type, config FROM worker_types")]
