"""What follows when a task ends: dependents unblocked or failed, parents settled,
children cancelled, expiry, cancel."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ..filters import TaskFilter
from ..model import Status, TaskRecord
from .queries import active_ids
from .rows import PAUSE_DOMAIN, PAUSE_GROUP, CancelledTask, Effects, record_from_row
from .tables import _IN_CHUNK, NOT_PENDING, _active, _bulk_to_history, _paused_sets, _to_history

__all__ = [
    "cancel",
    "cancel_page",
    "child_outcomes",
    "dependency_done",
    "dependency_failed",
    "expire_due",
    "recheck_waiting",
    "settle_parents",
]


def _unblock(conn: sqlite3.Connection, now: int, eff: Effects, task_id: int) -> None:
    """A blocked task with no edges left becomes pending (paused in a paused group/domain)."""
    if conn.execute("SELECT 1 FROM task_deps WHERE task_id = ? LIMIT 1", (task_id,)).fetchone():
        return
    row = conn.execute(
        "SELECT * FROM tasks WHERE id = ? AND status = 'blocked'", (task_id,)
    ).fetchone()
    if row is None:
        return
    rec = record_from_row(row)
    pauses = _paused_sets(conn)
    bits = 0
    if rec.group is not None and rec.group in pauses.groups:
        bits |= PAUSE_GROUP
    if rec.domain in pauses.domains:
        bits |= PAUSE_DOMAIN
    delayed = 1 if rec.run_after is not None and rec.run_after > now else 0
    conn.execute(
        "UPDATE tasks SET status = ?, pause_reasons = ?, paused_at = ?, delayed = ? WHERE id = ?",
        ("paused" if bits else "pending", bits, now if bits else None, delayed, task_id),
    )
    eff.unblocked.append(rec.evolve(status=Status.PAUSED if bits else Status.PENDING))


def dependency_done(conn: sqlite3.Connection, now: int, eff: Effects, *task_ids: int) -> None:
    """These tasks completed: their dependents may run once their last edge is gone."""
    dependents: list[int] = []
    for start in range(0, len(task_ids), 500):
        chunk = task_ids[start : start + 500]
        dependents += [
            r[0]
            for r in conn.execute(
                "DELETE FROM task_deps WHERE depends_on_id IN "
                f"({','.join('?' * len(chunk))}) RETURNING task_id",
                chunk,
            )
        ]
    for d in dict.fromkeys(dependents):
        _unblock(conn, now, eff, d)


def dependency_failed(
    conn: sqlite3.Connection, now: int, eff: Effects, task_id: int, *, forced: bool = False
) -> None:
    """``task_id`` ended without completing: apply each dependent's policy.

    ``cancel`` (default): the dependent ends as ``dependency_failed`` and so
    does everything downstream of it. ``fail``: the dependent ends as
    ``dependency_failed``; its own dependents then apply their own policies.
    ``ignore``: the edge is dropped and the dependent runs once its other
    dependencies are done.
    """
    todo = [(task_id, forced)]
    while todo:
        failed_id, force = todo.pop()
        dependents = [
            r[0]
            for r in conn.execute(
                "DELETE FROM task_deps WHERE depends_on_id = ? RETURNING task_id", (failed_id,)
            )
        ]
        for d in dependents:
            row = _active(conn, d)
            if row is None:
                continue
            policy = row["on_dep_failure"]
            if policy == "ignore" and not force:
                _unblock(conn, now, eff, d)
                continue
            rec = record_from_row(row)
            eff.cancelled.extend(_cancel_children(conn, d, now, "dependency_failed", eff))
            _to_history(
                conn,
                d,
                Status.DEPENDENCY_FAILED,
                now,
                tags_json=row["tags"],
                error=f"dependency task {failed_id} failed",
            )
            eff.dependency_failed.append((rec, failed_id))
            todo.append((d, force or policy == "cancel"))


def expire_due(conn: sqlite3.Connection, now: int, eff: Effects, limit: int = 500) -> None:
    """Expire queued tasks past their deadline (pending, paused, blocked), oldest
    deadline first; their queued descendants expire with them."""
    rows = conn.execute(
        "SELECT id FROM tasks INDEXED BY tasks_expires WHERE expires_at IS NOT NULL "
        "AND expires_at <= ? AND status IN ('pending', 'paused', 'blocked') "
        "ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    for r in rows:
        _expire(conn, now, eff, r[0])


def _expire(conn: sqlite3.Connection, now: int, eff: Effects, task_id: int) -> TaskRecord | None:
    row = _active(conn, task_id)
    if row is None or row["status"] not in ("pending", "paused", "blocked"):
        return None
    for child in conn.execute(
        "SELECT id FROM tasks WHERE parent_id = ? AND status IN ('pending', 'paused', 'blocked')",
        (task_id,),
    ).fetchall():
        _expire(conn, now, eff, child[0])
    rec = record_from_row(row)
    _to_history(conn, task_id, Status.EXPIRED, now, tags_json=row["tags"])
    done = rec.evolve(status=Status.EXPIRED)
    eff.expired.append(done)
    dependency_failed(conn, now, eff, task_id)
    if rec.parent_id is not None:
        settle_parents(conn, now, eff, {rec.parent_id: None})
    return done


def _has_children(conn: sqlite3.Connection, task_id: int) -> tuple[int, bool]:
    """(active children, whether any child ever existed)."""
    active = conn.execute("SELECT count(*) FROM tasks WHERE parent_id = ?", (task_id,)).fetchone()[
        0
    ]
    if active:
        return active, True
    past = conn.execute("SELECT 1 FROM history WHERE parent_id = ? LIMIT 1", (task_id,)).fetchone()
    return 0, past is not None


def settle_parents(
    conn: sqlite3.Connection,
    now: int,
    eff: Effects,
    children_left: Mapping[int, tuple[int, str] | None],
) -> None:
    """React to children that left the active table.

    ``children_left`` maps a parent id to ``(child id, error)`` when a child
    failed, else None. A failed child of a fail-fast parent cancels its
    siblings and fails the parent (and so on upwards); a waiting parent whose
    last child is done becomes ready to finalize.
    """
    todo = dict(children_left)
    while todo:
        pid, failure = todo.popitem()
        row = _active(conn, pid)
        if row is None:
            continue
        status = Status(row["status"])
        if (
            failure is not None
            and row["fail_fast"]
            and status
            in (
                Status.RUNNING,
                Status.WAITING,
            )
        ):
            child_id, error = failure
            message = f"child task {child_id} failed: {error}"
            eff.cancelled.extend(_cancel_children(conn, pid, now, "fail_fast", eff))
            rec = record_from_row(row)
            _to_history(conn, pid, Status.FAILED, now, tags_json=row["tags"], error=message)
            eff.failed_parents.append((rec, message, status))
            dependency_failed(conn, now, eff, pid)
            if rec.parent_id is not None:
                todo[rec.parent_id] = (pid, message)
            continue
        if status is Status.WAITING:
            active, _ = _has_children(conn, pid)
            if active == 0:
                conn.execute(
                    "UPDATE tasks SET status = 'pending', delayed = 0, run_after = NULL "
                    "WHERE id = ?",
                    (pid,),
                )
                eff.parents_ready.append(pid)


def child_outcomes(conn: sqlite3.Connection, parent_id: int) -> list[dict[str, Any]]:
    """The latest history record of each child of a parent, oldest child first."""
    rows = conn.execute(
        """
        SELECT h.id, h.task_type, h.status, h.result, h.last_error FROM history h
        WHERE h.parent_id = ? AND h.history_id =
            (SELECT MAX(h2.history_id) FROM history h2 WHERE h2.id = h.id)
        ORDER BY h.id
        """,
        (parent_id,),
    ).fetchall()
    return [
        {
            "id": r["id"],
            "task_type": r["task_type"],
            "status": r["status"],
            "result": None if r["result"] is None else json.loads(r["result"]),
            "error": r["last_error"],
        }
        for r in rows
    ]


def _cancel_children(
    conn: sqlite3.Connection,
    parent_id: int,
    now: int,
    reason: str,
    eff: Effects | None = None,
) -> list[CancelledTask]:
    """Cancel every descendant of a task (deepest first)."""
    out: list[CancelledTask] = []
    rows = conn.execute("SELECT * FROM tasks WHERE parent_id = ?", (parent_id,)).fetchall()
    for row in rows:
        out.extend(_cancel_children(conn, row["id"], now, reason, eff))
        rec = record_from_row(row)
        _to_history(conn, rec.id, Status.CANCELLED, now, tags_json=row["tags"])
        out.append(CancelledTask(rec, rec.status, reason))
        if eff is not None:
            dependency_failed(conn, now, eff, rec.id)
    return out


def cancel(
    conn: sqlite3.Connection,
    ids: Sequence[int],
    now: int,
    reason: str,
    eff: Effects | None = None,
) -> list[CancelledTask]:
    """Cancel active tasks and, first, their children (any depth).

    Tasks with neither children nor dependents (the common case: a queue of
    independent work) move to history in a few set-based statements; the
    others take the task-by-task path that cascades.
    """
    eff = eff if eff is not None else Effects()
    out: list[CancelledTask] = []
    left: dict[int, tuple[int, str] | None] = {}
    rows: dict[int, sqlite3.Row] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        part = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(part))
        rows.update((r["id"], r) for r in conn.execute(
            f"SELECT * FROM tasks WHERE id IN ({marks})", part
        ))  # fmt: skip
        busy = {
            r[0]
            for r in conn.execute(
                f"SELECT parent_id FROM tasks WHERE parent_id IN ({marks}) UNION "
                f"SELECT depends_on_id FROM task_deps WHERE depends_on_id IN ({marks})",
                (*part, *part),
            )
        }
        simple = [i for i in part if i in rows and i not in busy]
        if simple:
            _bulk_to_history(conn, simple, Status.CANCELLED, now)
            for task_id in simple:
                rec = record_from_row(rows[task_id])
                out.append(CancelledTask(rec, rec.status, reason))
                if rec.parent_id is not None:
                    left.setdefault(rec.parent_id, None)
        for task_id in part:
            if task_id not in busy or task_id not in rows:
                continue
            row = _active(conn, task_id)
            if row is None:
                continue  # a child of one cancelled before it, say
            out.extend(_cancel_children(conn, task_id, now, reason, eff))
            rec = record_from_row(row)
            _to_history(conn, task_id, Status.CANCELLED, now, tags_json=row["tags"])
            out.append(CancelledTask(rec, rec.status, reason))
            dependency_failed(conn, now, eff, task_id)
            if rec.parent_id is not None:
                left.setdefault(rec.parent_id, None)
    if left:
        settle_parents(conn, now, eff, left)
    return out


def recheck_waiting(conn: sqlite3.Connection, now: int) -> list[int]:
    """Waiting parents whose children all finished (e.g. before a crash) become ready."""
    eff = Effects()
    ids = [
        r[0]
        for r in conn.execute("SELECT id FROM tasks WHERE status = 'waiting' AND " + NOT_PENDING)
    ]
    settle_parents(conn, now, eff, dict.fromkeys(ids))
    return eff.parents_ready


def cancel_page(
    conn: sqlite3.Connection, f: TaskFilter, after: int, limit: int, now: int, eff: Effects
) -> tuple[list[CancelledTask], int | None]:
    """Cancel one page of the active tasks matching ``f`` (ids above ``after``).

    Returns what was cancelled (children included) and the last id of the page,
    or None when the page was the last.
    """
    ids = active_ids(conn, f, after=after, limit=limit)
    done = cancel(conn, ids, now, "cancelled", eff)
    return done, (ids[-1] if len(ids) == limit else None)
