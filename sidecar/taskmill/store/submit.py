"""Submission: dedup by key, supersede, bulk insert, dependencies checked at the door."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InvalidParams
from ..model import Outcome, Status
from .cascade import _cancel_children
from .ids import take_ids
from .rows import Effects, NewTask, SubmitEffect, record_from_new, record_from_row
from .schema import key_hash
from .tables import _active, _delete_active, _insert_tags, _Pauses, _to_history

__all__ = ["submit"]


def submit(
    conn: sqlite3.Connection,
    items: Sequence[NewTask],
    now: int,
    *,
    positions: Sequence[int] | None = None,
) -> list[SubmitEffect]:
    """Insert tasks with dedup; a batch is last-wins on equal keys.

    ``positions`` are the items' indexes in the request, when they are a chunk
    of a larger batch (errors name ``tasks[position]``).

    Raises:
        InvalidParams: a dependency is unknown, failed, or would form a cycle.
    """
    last_index: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        last_index[item.task_type, item.key] = i
    paused: tuple[set[str], set[str]] = (set(), set())
    for which, name in conn.execute(_PAUSED):
        paused[which].add(name)
    pauses = _Pauses(groups=paused[0], domains=paused[1])
    effects: list[SubmitEffect | None] = [None] * len(items)
    run: list[int] = []  # plain tasks, inserted together in order
    for i, item in enumerate(items):
        if last_index[item.task_type, item.key] != i:
            continue
        if (
            len(items) >= _BULK_MIN
            and not item.depends_on
            and item.on_duplicate == "skip"
            and item.recurring_interval_ms is None
        ):
            run.append(i)
            continue
        if run:
            _insert_run(conn, items, run, now, pauses, effects)
            run = []
        try:
            effects[i] = _submit_one(conn, item, now, pauses)
        except InvalidParams as exc:
            if (len(items) > 1 or positions is not None) and exc.field is not None:
                exc.field = f"tasks[{i if positions is None else positions[i]}].{exc.field}"
            raise
    if run:
        _insert_run(conn, items, run, now, pauses, effects)
    out: list[SubmitEffect] = []
    for i, item in enumerate(items):
        eff = effects[i]
        if eff is None:
            winner = effects[last_index[item.task_type, item.key]]
            assert winner is not None
            eff = SubmitEffect(outcome=Outcome.DUPLICATE, id=winner.id, replaced_id=winner.id)
        out.append(eff)
    return out


#: The paused groups (0) and domains (1), in one statement.
_PAUSED = "SELECT 0, group_key FROM paused_groups UNION ALL SELECT 1, domain FROM paused_domains"

_INSERT_TASK = """
INSERT INTO tasks (
    id, task_type, domain, key, label, priority, status, delayed, payload, group_key, parent_id,
    fail_fast, max_retries, retry_policy, created_at, run_after, expected_read, expected_write,
    expected_net_rx, expected_net_tx, ttl_ms, ttl_from, expires_at, on_dep_failure, depends_on,
    recurring_interval_ms, recurring_max, recurring_due_at, schedule_id, pause_reasons, paused_at,
    tags, key_hash
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
    ?, ?, ?)
"""


_BULK_MIN = 8


#: Keys looked up at once by _taken (one parameter each, far below SQLite's 32,766).
_LOOKUP_CHUNK = 500


def _taken(
    conn: sqlite3.Connection, items: Sequence[NewTask], run: list[int], hashes: list[int]
) -> set[int]:
    """The items of ``run`` whose key an active task holds."""
    wanted: dict[int, list[int]] = {}
    for i, h in zip(run, hashes, strict=True):
        wanted.setdefault(h, []).append(i)
    taken: set[int] = set()
    keys = list(wanted)
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        part = keys[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(part))
        for h, task_type, key in conn.execute(
            f"SELECT key_hash, task_type, key FROM tasks WHERE key_hash IN ({marks})", part
        ):
            for i in wanted.get(h, ()):
                if items[i].task_type == task_type and items[i].key == key:
                    taken.add(i)
    return taken


def _insert_run(
    conn: sqlite3.Connection,
    items: Sequence[NewTask],
    run: list[int],
    now: int,
    pauses: _Pauses,
    effects: list[SubmitEffect | None],
) -> None:
    """Insert plain tasks (no dependencies, no supersede) in one statement.

    The keys are looked up first (by hash, a few queries for the run); the
    free ones are inserted together, with consecutive ids, then the taken
    ones go through the one-by-one dedup path.
    """
    hashes = [key_hash(items[i].task_type, items[i].key) for i in run]
    taken = _taken(conn, items, run, hashes)
    first = take_ids(conn, len(run) - len(taken))
    rows: list[tuple[Any, ...]] = []
    ours: list[tuple[int, int, Status]] = []
    for i, h in zip(run, hashes, strict=True):
        if i in taken:
            continue
        item = items[i]
        reasons = pauses.reasons(item)
        status = Status.PAUSED if reasons else Status.PENDING
        task_id = first + len(rows)
        ours.append((task_id, i, status))
        rows.append(_task_params(task_id, item, now, status, reasons, h))
    if rows:
        conn.executemany(_INSERT_TASK, rows)
        _record_run(conn, items, ours, now, effects)
    for i in run:
        if i in taken:  # the one-by-one dedup path, after the new ones as before
            effects[i] = _submit_one(conn, items[i], now, pauses)


def _record_run(
    conn: sqlite3.Connection,
    items: Sequence[NewTask],
    ours: list[tuple[int, int, Status]],
    now: int,
    effects: list[SubmitEffect | None],
) -> None:
    tag_rows = [(task_id, k, v) for task_id, i, _ in ours for k, v in items[i].tags.items()]
    if tag_rows:
        conn.executemany("INSERT INTO task_tags (task_id, key, value) VALUES (?, ?, ?)", tag_rows)
    for task_id, i, status in ours:
        effects[i] = SubmitEffect(
            outcome=Outcome.INSERTED, id=task_id, new=(items[i], task_id, now, status)
        )


def _task_params(
    task_id: int, item: NewTask, now: int, status: Status, reasons: int, h: int | None = None
) -> tuple[Any, ...]:
    """_INSERT_TASK's parameters, by position (binding 31 names cost 10 us);
    ``h``: the key's hash, when already computed."""
    io = item.expected_io
    due = schedule_id = None
    if item.recurring_interval_ms is not None:
        due = item.run_after if item.run_after is not None else now
        schedule_id = task_id  # the first occurrence names its schedule
    return (
        task_id,
        item.task_type,
        item.domain,
        item.key,
        item.label,
        item.priority,
        status.value,
        1 if item.run_after is not None and item.run_after > now else 0,
        item.payload_json,
        item.group,
        item.parent_id,
        1 if item.fail_fast else 0,
        item.max_retries,
        item.retry_policy_json,
        now,
        item.run_after,
        io.disk_read,
        io.disk_write,
        io.net_rx,
        io.net_tx,
        item.ttl_ms,
        item.ttl_from,
        item.expires_at,
        item.on_dep_failure,
        json.dumps(item.depends_on) if item.depends_on else "[]",
        item.recurring_interval_ms,
        item.recurring_max,
        due,
        schedule_id,
        reasons,
        now if reasons else None,
        item.tags_json,
        key_hash(item.task_type, item.key) if h is None else h,
    )


def _resolve_dependencies(conn: sqlite3.Connection, item: NewTask) -> list[int]:
    """Return the dependency ids still active (edges to insert).

    A dependency whose latest record is completed is satisfied; one that ended
    otherwise fails the submission unless the policy is ``ignore``.
    """
    waiting: list[int] = []
    for dep in dict.fromkeys(item.depends_on):
        if _active(conn, dep) is not None:
            waiting.append(dep)
            continue
        row = conn.execute(
            "SELECT status FROM history WHERE id = ? ORDER BY history_id DESC LIMIT 1", (dep,)
        ).fetchone()
        if row is None:
            raise InvalidParams(f"depends_on: no task with id {dep}", field="depends_on")
        if row["status"] == Status.COMPLETED.value or item.on_dep_failure == "ignore":
            continue
        raise InvalidParams(
            f"depends_on: task {dep} already ended as {row['status']}", field="depends_on"
        )
    return waiting


def _creates_cycle(conn: sqlite3.Connection, task_id: int, deps: Iterable[int]) -> bool:
    deps = list(deps)
    if task_id in deps:
        return True
    if not deps:
        return False
    marks = ",".join("?" * len(deps))
    row = conn.execute(
        f"""
        WITH RECURSIVE up(id) AS (
            SELECT depends_on_id FROM task_deps WHERE task_id IN ({marks})
            UNION
            SELECT d.depends_on_id FROM task_deps d JOIN up ON d.task_id = up.id
        )
        SELECT 1 FROM up WHERE id = ? LIMIT 1
        """,
        (*deps, task_id),
    ).fetchone()
    return row is not None


def _insert_new(
    conn: sqlite3.Connection, item: NewTask, now: int, pauses: _Pauses, h: int | None = None
) -> tuple[NewTask, int, int, Status]:
    """Insert a task whose key is free (``h``: its hash, if known); what its
    record is built from."""
    waiting = _resolve_dependencies(conn, item) if item.depends_on else []
    status = Status.BLOCKED if waiting else Status.PENDING
    reasons = pauses.reasons(item) if status is Status.PENDING else 0
    if reasons:
        status = Status.PAUSED
    task_id = take_ids(conn)
    conn.execute(_INSERT_TASK, _task_params(task_id, item, now, status, reasons, h))
    _insert_tags(conn, task_id, item.tags)
    if waiting:
        conn.executemany(
            "INSERT OR IGNORE INTO task_deps (task_id, depends_on_id) VALUES (?, ?)",
            [(task_id, d) for d in waiting],
        )
    return item, task_id, now, status


def _by_key(conn: sqlite3.Connection, item: NewTask, h: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tasks WHERE key_hash = ? AND task_type = ? AND key = ?",
        (h, item.task_type, item.key),
    ).fetchone()
    return row


def _submit_one(conn: sqlite3.Connection, item: NewTask, now: int, pauses: _Pauses) -> SubmitEffect:
    h = key_hash(item.task_type, item.key)
    existing = _by_key(conn, item, h)
    if existing is None:
        new = _insert_new(conn, item, now, pauses, h)
        return SubmitEffect(outcome=Outcome.INSERTED, id=new[1], new=new)
    old = record_from_row(existing)
    status = old.status
    if item.on_duplicate == "supersede":
        return _supersede(conn, item, existing, now, pauses, h)
    if status in (Status.PENDING, Status.PAUSED, Status.BLOCKED) and item.priority < old.priority:
        conn.execute("UPDATE tasks SET priority = ? WHERE id = ?", (item.priority, old.id))
        rec = old.evolve(priority=item.priority, effective_priority=item.priority)
        return SubmitEffect(outcome=Outcome.UPGRADED, id=old.id, replaced_id=old.id, built=rec)
    if status is Status.RUNNING and item.payload_json != existing["payload"]:
        prio = item.priority
        if existing["requeue"] and existing["requeue_priority"] is not None:
            prio = min(prio, existing["requeue_priority"])
        conn.execute(
            "UPDATE tasks SET requeue = 1, requeue_priority = ?, requeue_payload = ? WHERE id = ?",
            (prio, item.payload_json, old.id),
        )
        return SubmitEffect(outcome=Outcome.REQUEUED, id=old.id, replaced_id=old.id, built=old)
    return SubmitEffect(outcome=Outcome.DUPLICATE, id=old.id, replaced_id=old.id)


def _supersede(
    conn: sqlite3.Connection,
    item: NewTask,
    existing: sqlite3.Row,
    now: int,
    pauses: _Pauses,
    h: int,
) -> SubmitEffect:
    """Replace the task holding the key: it goes to history as ``superseded`` (its
    children are cancelled) and the new task takes its place with a new id; tasks
    that waited for the old one wait for the new one."""
    old = record_from_row(existing)
    _to_history(conn, old.id, Status.SUPERSEDED, now, tags_json=existing["tags"], delete=False)
    cascade = Effects()
    cancelled = _cancel_children(conn, old.id, now, "superseded", cascade)
    _delete_active(conn, old.id)
    new = record_from_new(*_insert_new(conn, item, now, pauses, h))
    conn.execute("UPDATE task_deps SET depends_on_id = ? WHERE depends_on_id = ?", (new.id, old.id))
    waiting = [
        r[0]
        for r in conn.execute("SELECT depends_on_id FROM task_deps WHERE task_id = ?", (new.id,))
    ]
    if waiting and _creates_cycle(conn, new.id, waiting):
        raise InvalidParams("depends_on: the dependencies would form a cycle", field="depends_on")
    return SubmitEffect(
        outcome=Outcome.SUPERSEDED,
        id=new.id,
        replaced_id=old.id,
        built=new,
        old_record=old,
        stop_running=old.status in (Status.RUNNING, Status.WAITING),
        cancelled=cancelled,
        cascade=cascade if cascade else None,
    )
