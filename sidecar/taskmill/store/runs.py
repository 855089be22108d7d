"""How a run ends: its outcome recorded, or the task put back (shutdown, a lost
worker) or paused (preemption, pauses)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from ..model import IoBudget, Status
from .cascade import (
    _cancel_children,
    _has_children,
    dependency_done,
    dependency_failed,
    settle_parents,
)
from .recurring import _next_occurrence
from .rows import Effects, Finish, FinishResult
from .tables import _bulk_complete, _to_history

__all__ = ["finish", "pause_running", "return_to_pending"]


class _State(NamedTuple):
    """What recording a finished run reads of its task's row."""

    id: int
    status: str
    dispatch_count: int
    retry_count: int
    requeue: int
    tags: str
    parent_id: int | None
    phase: str
    recurring_interval_ms: int | None


_STATE_COLUMNS = ", ".join(_State._fields)


def finish(
    conn: sqlite3.Connection, items: Sequence[Finish], now: int, eff: Effects | None = None
) -> list[FinishResult]:
    """Record finished executions: to history, back to pending, requeued or waiting."""
    eff = eff if eff is not None else Effects()
    out: list[FinishResult] = []
    left: dict[int, tuple[int, str] | None] = {}
    completed: list[int] = []
    plain: list[tuple[int, str | None, int | None, int | None, IoBudget]] = []
    plain_results: list[FinishResult] = []
    states: dict[int, _State] = {}
    ids = [f.task_id for f in items]
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: a Row looked up by name scans its columns
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for r in cur.execute(
            f"SELECT {_STATE_COLUMNS} FROM tasks WHERE id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            states[r[0]] = _State._make(r)
    for f in items:
        row = states.get(f.task_id)
        if row is None or row.status != "running" or row.dispatch_count != f.dispatch_count:
            out.append(FinishResult(kind="stale", task_id=f.task_id))
            continue
        parent_id = row.parent_id
        if f.kind == "completed":
            if row.phase == "execute" and f.may_have_children:
                active, had = _has_children(conn, f.task_id)
                if had:
                    # A parent: finalize once every child is done.
                    conn.execute(
                        "UPDATE tasks SET status = ?, phase = 'finalize', memo = ?, "
                        "started_at = NULL WHERE id = ?",
                        ("waiting" if active else "pending", f.result_json, f.task_id),
                    )
                    out.append(
                        FinishResult(
                            kind="waiting" if active else "finalize",
                            task_id=f.task_id,
                            children=active,
                        )
                    )
                    continue
            if row.recurring_interval_ms is None and not row.requeue and row.tags == "{}":
                # The common case: recorded with the others in one statement.
                res = FinishResult(kind="completed", task_id=f.task_id)
                plain.append((f.task_id, f.result_json, f.started_at, f.ended_at, f.actual_io))
                plain_results.append(res)
                out.append(res)
                completed.append(f.task_id)
                if parent_id is not None:
                    left.setdefault(parent_id, None)
                continue
            full = None
            if row.recurring_interval_ms is not None and not row.requeue:
                full = conn.execute("SELECT * FROM tasks WHERE id = ?", (f.task_id,)).fetchone()
            hid = _to_history(
                conn,
                f.task_id,
                Status.COMPLETED,
                now,
                tags_json=row.tags,
                result_json=f.result_json,
                actual=f.actual_io,
                started_at=f.started_at,
                ended_at=f.ended_at,
                delete=not row.requeue,
                edges=False,  # a running task waits on nothing
            )
            completed.append(f.task_id)
            if row.requeue:
                conn.execute(
                    """
                    UPDATE tasks SET status = 'pending', started_at = NULL, retry_count = 0,
                        last_error = NULL, priority = COALESCE(requeue_priority, priority),
                        payload = COALESCE(requeue_payload, payload), requeue = 0,
                        requeue_priority = NULL, requeue_payload = NULL, run_after = NULL,
                        delayed = 0, phase = 'execute', memo = NULL
                    WHERE id = ?
                    """,
                    (f.task_id,),
                )
                out.append(FinishResult(kind="requeued", task_id=f.task_id, history_id=hid))
            else:
                res = FinishResult(kind="completed", task_id=f.task_id, history_id=hid)
                if full is not None:
                    res.occurrences = full["recurring_count"] + 1
                    res.next_id, res.skipped = _next_occurrence(conn, full, now)
                out.append(res)
                if parent_id is not None:
                    left.setdefault(parent_id, None)
        elif f.kind == "retry":
            run_after = now + f.retry_delay_ms
            conn.execute(
                """
                UPDATE tasks SET status = 'pending', started_at = NULL,
                    retry_count = retry_count + 1, last_error = ?, traceback = ?,
                    run_after = ?, delayed = ?
                WHERE id = ?
                """,
                (f.error, f.traceback, run_after, 1 if f.retry_delay_ms > 0 else 0, f.task_id),
            )
            out.append(
                FinishResult(
                    kind="retry",
                    task_id=f.task_id,
                    retry_count=row.retry_count + 1,
                    run_after=run_after,
                )
            )
        else:
            status = Status.DEAD_LETTER if f.kind == "dead_letter" else Status.FAILED
            # Children still running under a failed parent are cancelled.
            eff.cancelled.extend(_cancel_children(conn, f.task_id, now, "parent_failed", eff))
            hid = _to_history(
                conn,
                f.task_id,
                status,
                now,
                tags_json=row.tags,
                error=f.error,
                traceback=f.traceback,
                actual=f.actual_io,
                started_at=f.started_at,
                ended_at=f.ended_at,
            )
            dependency_failed(conn, now, eff, f.task_id)
            out.append(
                FinishResult(
                    kind="dead_letter" if status is Status.DEAD_LETTER else "failed",
                    task_id=f.task_id,
                    history_id=hid,
                    retry_count=row.retry_count,
                )
            )
            if parent_id is not None:
                left[parent_id] = (f.task_id, f.error or "")
    if plain:
        history_ids = _bulk_complete(conn, plain, now)
        for res in plain_results:
            res.history_id = history_ids.get(res.task_id)
    if completed:
        dependency_done(conn, now, eff, *completed)
    if left:
        settle_parents(conn, now, eff, left)
    return out


def return_to_pending(conn: sqlite3.Connection, ids: Sequence[tuple[int, int]]) -> list[int]:
    """Running -> pending, no retry counted (shutdown, lost worker); ``(id, dispatch_count)``."""
    done: list[int] = []
    for task_id, count in ids:
        cur = conn.execute(
            "UPDATE tasks SET status = 'pending', started_at = NULL, delayed = 0 "
            "WHERE id = ? AND status = 'running' AND dispatch_count = ?",
            (task_id, count),
        )
        if cur.rowcount:
            done.append(task_id)
    return done


def pause_running(
    conn: sqlite3.Connection, ids: Sequence[tuple[int, int]], reason_bit: int, now: int
) -> list[int]:
    """Running -> paused with a reason bit (no retry counted)."""
    done: list[int] = []
    for task_id, count in ids:
        cur = conn.execute(
            "UPDATE tasks SET status = 'paused', started_at = NULL, "
            "pause_reasons = pause_reasons | ?, paused_at = COALESCE(paused_at, ?) "
            "WHERE id = ? AND status = 'running' AND dispatch_count = ?",
            (reason_bit, now, task_id, count),
        )
        if cur.rowcount:
            done.append(task_id)
    return done
