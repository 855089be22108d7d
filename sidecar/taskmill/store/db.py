"""Synchronous database operations: the only module that writes SQL.

Each public function takes an open :class:`sqlite3.Connection` and runs on
the store's database thread, inside a transaction the caller (the async
:class:`~taskmill.store.store.Store`) opened. One function is one logical
operation, so a whole operation costs one hop to the database thread however
many statements it runs.

Functions return plain data; they never touch scheduler state. The scheduler
applies in-memory effects (events, cancelling executions) from what they return.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import InvalidParams, InvalidState, NotFound, StorageError
from ..filters import TaskFilter
from ..model import IoBudget, Outcome, Status, TaskRecord
from .rows import (
    PAUSE_DOMAIN,
    PAUSE_GLOBAL,
    PAUSE_GROUP,
    PAUSE_PREEMPTION,
    PAUSE_SCHEDULE,
    Admission,
    CancelledTask,
    Candidate,
    Claimed,
    ClaimPlan,
    ClaimResult,
    Effects,
    Finish,
    FinishResult,
    GateFn,
    GroupKey,
    NewTask,
    SubmitEffect,
    pause_reason_names,
    record_from_new,
    record_from_row,
)

__all__ = [
    "PAUSE_DOMAIN",
    "PAUSE_GLOBAL",
    "PAUSE_GROUP",
    "PAUSE_PREEMPTION",
    "PAUSE_SCHEDULE",
    "SCHEMA_VERSION",
    "Admission",
    "CancelledTask",
    "Candidate",
    "ClaimPlan",
    "ClaimResult",
    "Claimed",
    "Effects",
    "FinishResult",
    "SubmitEffect",
    "dependency_done",
    "dependency_failed",
    "expire_due",
    "open_connection",
]

# ---------------------------------------------------------------------------
# Opening and migrations


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("taskmill.store") / "migrations"
    out: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            out.append((int(name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(out)


SCHEMA_VERSION = max(v for v, _ in _migrations())


def open_connection(
    path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
) -> sqlite3.Connection:
    """Open (creating if missing), check, configure and migrate a database.

    The file is read before anything is written to it, so a file that is not
    a taskmill database is refused untouched.

    Raises:
        StorageError: the file is not SQLite, is corrupt, is from a newer
            taskmill, or cannot be opened or written.
    """
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        # Read first: fails on a non-SQLite or corrupt file without writing.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"database {path} has schema version {version}, newer than this "
                f"taskmill supports ({SCHEMA_VERSION})"
            )
        if version == 0:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if tables:
                raise StorageError(f"database {path} is not a taskmill database")
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StorageError(f"bad synchronous mode {synchronous!r}")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and path != ":memory:":
            raise StorageError(f"database {path}: cannot switch to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = OFF")
        for number, script in _migrations():
            if number <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except StorageError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"cannot use database {path}: {_explain(path, exc)}") from exc
    return conn


def open_readonly(path: str) -> sqlite3.Connection:
    """Open a database to read it while a scheduler may be writing it (WAL
    readers do not block the writer): no migration, no recovery, no writes.

    Raises:
        StorageError: it cannot be opened, is not a taskmill database, or is
            from a newer taskmill.
    """
    if not os.path.isfile(path):
        raise StorageError(f"no database at {path}")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read database {path}: {_explain(path, exc)}") from exc
    if version == 0:
        conn.close()
        raise StorageError(f"{path} is not a taskmill database")
    if version != SCHEMA_VERSION:
        conn.close()
        which = "newer" if version > SCHEMA_VERSION else "older"
        raise StorageError(
            f"database {path} has schema version {version}, {which} than this taskmill's "
            f"({SCHEMA_VERSION})"
            + (
                "; start this taskmill's sidecar on it once to upgrade it"
                if which == "older"
                else ""
            )
        )
    return conn


def _explain(path: str, exc: sqlite3.Error) -> str:
    """SQLite's reason, or what is behind it when it is vague: a full disk
    shows up at start-up as a mere "disk I/O error"."""
    text = str(exc)
    if "disk i/o error" in text.lower() or "full" in text.lower():
        folder = os.path.dirname(os.path.abspath(path))
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return text
        if free < (1 << 20):
            return f"the disk is full ({free} bytes free in {folder}; SQLite said: {text})"
    return text


def _split_sql(script: str) -> list[str]:
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    parts: list[str] = []
    buf = ""
    for line in lines:
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            if buf.strip():
                parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts


# ---------------------------------------------------------------------------
# Shared helpers


_HISTORY_COLUMNS = (
    "id, task_type, domain, key, label, priority, status, payload, result, memo, group_key, "
    "parent_id, fail_fast, retry_count, max_retries, last_error, created_at, started_at, "
    "finished_at, duration_ms, run_after, ttl_ms, ttl_from, expires_at, expected_read, "
    "expected_write, expected_net_rx, expected_net_tx, actual_read, actual_write, "
    "actual_net_rx, actual_net_tx, depends_on, tags, retry_policy, traceback"
)

_MOVE_TO_HISTORY = f"""
INSERT INTO history ({_HISTORY_COLUMNS})
SELECT id, task_type, domain, key, label, priority, :status, payload, :result,
       COALESCE(:memo, memo), group_key, parent_id, fail_fast, retry_count + :retry_bump,
       max_retries, COALESCE(:error, last_error), created_at, started_at, :now,
       CASE WHEN started_at IS NULL THEN NULL ELSE :now - started_at END,
       run_after, ttl_ms, ttl_from, expires_at, expected_read, expected_write, expected_net_rx,
       expected_net_tx, :ar, :aw, :arx, :atx, depends_on, tags, retry_policy,
       COALESCE(:traceback, traceback)
FROM tasks WHERE id = :id
"""


_BULK_MOVE_TO_HISTORY = re.sub(
    r":(\w+)",
    lambda m: (
        {"status": "?1", "now": "?2", "id": ":id"}.get(m.group(1), "NULL")
        if m.group(1) in ("status", "now", "id", "result", "memo", "error", "traceback")
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


# ---------------------------------------------------------------------------
# Submission


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
    pauses = _Pauses(
        groups={r[0] for r in conn.execute("SELECT group_key FROM paused_groups")},
        domains={r[0] for r in conn.execute("SELECT domain FROM paused_domains")},
    )
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


_INSERT_TASK = """
INSERT INTO tasks (
    task_type, domain, key, label, priority, status, delayed, payload, group_key, parent_id,
    fail_fast, max_retries, retry_policy, created_at, run_after, expected_read, expected_write,
    expected_net_rx, expected_net_tx, ttl_ms, ttl_from, expires_at, on_dep_failure, depends_on,
    recurring_interval_ms, recurring_max, pause_reasons, paused_at, tags
) VALUES (
    :task_type, :domain, :key, :label, :priority, :status, :delayed, :payload, :group_key,
    :parent_id, :fail_fast, :max_retries, :retry_policy, :now, :run_after, :er, :ew, :erx, :etx,
    :ttl_ms, :ttl_from, :expires_at, :on_dep_failure, :depends_on, :rec_interval, :rec_max,
    :pause_reasons, :paused_at, :tags
) ON CONFLICT (task_type, key) DO NOTHING RETURNING id
"""


_BULK_MIN = 8

_INSERT_ROW = """
INSERT OR IGNORE INTO tasks (
    task_type, domain, key, label, priority, status, delayed, payload, group_key, parent_id,
    fail_fast, max_retries, retry_policy, created_at, run_after, expected_read, expected_write,
    expected_net_rx, expected_net_tx, ttl_ms, ttl_from, expires_at, on_dep_failure,
    pause_reasons, paused_at, tags
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _insert_run(
    conn: sqlite3.Connection,
    items: Sequence[NewTask],
    run: list[int],
    now: int,
    pauses: _Pauses,
    effects: list[SubmitEffect | None],
) -> None:
    """Insert plain tasks (no dependencies, no supersede) in one statement.

    Rows whose key is taken are skipped by the insert. With AUTOINCREMENT and
    the single writer inside this transaction, the new ids are consecutive
    after the current sequence: when every row went in, that is the whole
    answer; otherwise each item is looked up and the taken ones go through the
    one-by-one dedup path.
    """
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tasks'").fetchone()
    first = (row[0] if row else 0) + 1
    rows = []
    statuses = []
    for i in run:
        item = items[i]
        reasons = pauses.reasons(item)
        status = Status.PAUSED if reasons else Status.PENDING
        statuses.append(status)
        io = item.expected_io
        rows.append(
            (
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
                reasons,
                now if reasons else None,
                item.tags_json,
            )
        )
    inserted = conn.executemany(_INSERT_ROW, rows).rowcount
    if inserted != len(run):
        # Some keys were taken: sort out which, the slow way.
        ours = []
        for i, status in zip(run, statuses, strict=True):
            got = conn.execute(
                "SELECT id FROM tasks WHERE task_type = ? AND key = ? AND id >= ?",
                (items[i].task_type, items[i].key, first),
            ).fetchone()
            if got is None:
                effects[i] = _submit_one(conn, items[i], now, pauses)
            else:
                ours.append((got[0], i, status))
        _record_run(conn, items, ours, now, effects)
        return
    ids = range(first, first + len(run))
    _record_run(conn, items, list(zip(ids, run, statuses, strict=True)), now, effects)


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
        rec = record_from_new(items[i], task_id, now, status)
        effects[i] = SubmitEffect(outcome=Outcome.INSERTED, id=task_id, record=rec)


def _task_params(item: NewTask, now: int, status: Status, reasons: int) -> dict[str, Any]:
    return {
        "task_type": item.task_type,
        "domain": item.domain,
        "key": item.key,
        "label": item.label,
        "priority": item.priority,
        "status": status.value,
        "delayed": 1 if item.run_after is not None and item.run_after > now else 0,
        "payload": item.payload_json,
        "group_key": item.group,
        "parent_id": item.parent_id,
        "fail_fast": 1 if item.fail_fast else 0,
        "max_retries": item.max_retries,
        "retry_policy": item.retry_policy_json,
        "now": now,
        "run_after": item.run_after,
        "er": item.expected_io.disk_read,
        "ew": item.expected_io.disk_write,
        "erx": item.expected_io.net_rx,
        "etx": item.expected_io.net_tx,
        "ttl_ms": item.ttl_ms,
        "ttl_from": item.ttl_from,
        "expires_at": item.expires_at,
        "on_dep_failure": item.on_dep_failure,
        "depends_on": json.dumps(item.depends_on),
        "rec_interval": item.recurring_interval_ms,
        "rec_max": item.recurring_max,
        "pause_reasons": reasons,
        "paused_at": now if reasons else None,
        "tags": item.tags_json,
    }


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
    conn: sqlite3.Connection, item: NewTask, now: int, pauses: _Pauses
) -> TaskRecord | None:
    """Insert a task; None when its key is taken (nothing written)."""
    waiting = _resolve_dependencies(conn, item) if item.depends_on else []
    status = Status.BLOCKED if waiting else Status.PENDING
    reasons = pauses.reasons(item) if status is Status.PENDING else 0
    if reasons:
        status = Status.PAUSED
    row = conn.execute(_INSERT_TASK, _task_params(item, now, status, reasons)).fetchone()
    if row is None:
        return None
    task_id: int = row[0]
    _insert_tags(conn, task_id, item.tags)
    if item.recurring_interval_ms is not None:
        conn.execute("UPDATE tasks SET schedule_id = id WHERE id = ?", (task_id,))
    if waiting:
        conn.executemany(
            "INSERT OR IGNORE INTO task_deps (task_id, depends_on_id) VALUES (?, ?)",
            [(task_id, d) for d in waiting],
        )
    return record_from_new(item, task_id, now, status)


def _by_key(conn: sqlite3.Connection, item: NewTask) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tasks WHERE task_type = ? AND key = ?", (item.task_type, item.key)
    ).fetchone()
    return row


def _submit_one(conn: sqlite3.Connection, item: NewTask, now: int, pauses: _Pauses) -> SubmitEffect:
    existing = None
    if item.depends_on or item.on_duplicate == "supersede":
        existing = _by_key(conn, item)
    if existing is None:
        # The common case is one statement: insert unless the key is taken.
        rec = _insert_new(conn, item, now, pauses)
        if rec is not None:
            return SubmitEffect(outcome=Outcome.INSERTED, id=rec.id, record=rec)
        existing = _by_key(conn, item)
        assert existing is not None
    old = record_from_row(existing)
    status = old.status
    if item.on_duplicate == "supersede":
        return _supersede(conn, item, existing, now, pauses)
    if status in (Status.PENDING, Status.PAUSED, Status.BLOCKED) and item.priority < old.priority:
        conn.execute("UPDATE tasks SET priority = ? WHERE id = ?", (item.priority, old.id))
        rec = old.evolve(priority=item.priority, effective_priority=item.priority)
        return SubmitEffect(outcome=Outcome.UPGRADED, id=old.id, replaced_id=old.id, record=rec)
    if status is Status.RUNNING and item.payload_json != existing["payload"]:
        prio = item.priority
        if existing["requeue"] and existing["requeue_priority"] is not None:
            prio = min(prio, existing["requeue_priority"])
        conn.execute(
            "UPDATE tasks SET requeue = 1, requeue_priority = ?, requeue_payload = ? WHERE id = ?",
            (prio, item.payload_json, old.id),
        )
        return SubmitEffect(outcome=Outcome.REQUEUED, id=old.id, replaced_id=old.id, record=old)
    return SubmitEffect(outcome=Outcome.DUPLICATE, id=old.id, replaced_id=old.id)


def _supersede(
    conn: sqlite3.Connection, item: NewTask, existing: sqlite3.Row, now: int, pauses: _Pauses
) -> SubmitEffect:
    """Replace the task holding the key: it goes to history as ``superseded`` (its
    children are cancelled) and the new task takes its place with a new id; tasks
    that waited for the old one wait for the new one."""
    old = record_from_row(existing)
    _to_history(conn, old.id, Status.SUPERSEDED, now, tags_json=existing["tags"], delete=False)
    cancelled = _cancel_children(conn, old.id, now, "superseded")
    _delete_active(conn, old.id)
    new = _insert_new(conn, item, now, pauses)
    assert new is not None
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
        record=new,
        old_record=old,
        stop_running=old.status in (Status.RUNNING, Status.WAITING),
        cancelled=cancelled,
    )


# ---------------------------------------------------------------------------
# Dispatch


_CANDIDATE_COLUMNS = (
    "id, task_type, domain, group_key, priority, expires_at, created_at, pause_duration_ms, "
    "expected_read, expected_write, expected_net_rx, expected_net_tx"
)


_CLAIM_SET = """
UPDATE tasks SET status = 'running', started_at = ?1, dispatch_count = dispatch_count + 1,
    expires_at = CASE WHEN ttl_from = 'first_attempt' AND expires_at IS NULL
                      AND ttl_ms IS NOT NULL THEN ?1 + ttl_ms ELSE expires_at END
"""


_READY = "status = 'pending' AND delayed = 0"


def _ready_rows(
    conn: sqlite3.Connection,
    group: GroupKey | object,
    level: int | None,
    window: int,
    *,
    never_paused: bool = False,
) -> Iterator[sqlite3.Row]:
    """Ready candidates in (priority, id) order, optionally one group / one level
    (and only tasks never paused, for the aging walk)."""
    last: tuple[int, int] | None = None
    use_group = group is not _ANY
    index = "tasks_ready_group" if use_group and group is not None else "tasks_ready"
    while True:
        clauses = [_READY]
        params: list[Any] = []
        if use_group and group is None:
            clauses.append("group_key IS NULL")
        elif use_group:
            clauses.append("group_key = ?")
            params.append(group)
        if level is not None:
            clauses.append("priority = ?")
            params.append(level)
        if never_paused:
            clauses.append("pause_duration_ms = 0")
        if last is not None:
            clauses.append("(priority, id) > (?, ?)")
            params.extend(last)
        rows = conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM tasks INDEXED BY {index} "
            f"WHERE {' AND '.join(clauses)} ORDER BY priority, id LIMIT ?",
            (*params, window),
        ).fetchall()
        yield from rows
        if len(rows) < window:
            return
        last = (rows[-1]["priority"], rows[-1]["id"])


def _paused_before_rows(
    conn: sqlite3.Connection, group: GroupKey | object, level: int, window: int
) -> Iterator[sqlite3.Row]:
    """Ready candidates of one level that were paused once, oldest first, where
    age does not count the pause: (created_at + pause_duration_ms, id) order."""
    last: tuple[int, int] | None = None
    params: tuple[Any, ...] = ()
    if group is _ANY or group is None:
        index, where = "tasks_ready_aged", ""
        if group is None:
            where = " AND group_key IS NULL"
    else:
        index, where, params = "tasks_ready_aged_group", " AND group_key = ?", (group,)
    while True:
        after = ""
        extra: tuple[Any, ...] = ()
        if last is not None:
            after = " AND (created_at + pause_duration_ms, id) > (?, ?)"
            extra = last
        rows = conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM tasks INDEXED BY {index} "
            f"WHERE {_READY} AND pause_duration_ms > 0 AND priority = ?{where}{after} "
            "ORDER BY created_at + pause_duration_ms, id LIMIT ?",
            (level, *params, *extra, window),
        ).fetchall()
        yield from rows
        if len(rows) < window:
            return
        tail = rows[-1]
        last = (tail["created_at"] + tail["pause_duration_ms"], tail["id"])


_ANY = object()


def _levels(conn: sqlite3.Connection, group: GroupKey | object) -> list[int]:
    """Distinct priorities among ready tasks: one index probe per level."""
    params: tuple[Any, ...] = ()
    if group is _ANY:
        where, index = _READY, "tasks_ready"
    elif group is None:
        where, index = f"{_READY} AND group_key IS NULL", "tasks_ready"
    else:
        where, params, index = f"{_READY} AND group_key = ?", (group,), "tasks_ready_group"
    out: list[int] = []
    lo = -1
    while True:
        row = conn.execute(
            f"SELECT MIN(priority) FROM tasks INDEXED BY {index} WHERE {where} AND priority > ?",
            (*params, lo),
        ).fetchone()
        if row[0] is None:
            return out
        lo = row[0]
        out.append(lo)


def _candidates(
    conn: sqlite3.Connection,
    effective: Callable[[int, int, int], int] | None,
    group: GroupKey | object = _ANY,
    window: int = 32,
) -> Iterator[tuple[int, Candidate]]:
    """Ready candidates in (effective priority, id) order, with their effective priority.

    Without aging this is one walk of the ready index. With aging, each priority
    level is its own walk (oldest first, so most promoted first) and the walks
    are merged: a huge queue still costs index seeks, not a sort.
    """
    if effective is None:
        for row in _ready_rows(conn, group, None, window):
            c = Candidate(*row)
            yield c.priority, c
        return
    heap: list[tuple[int, int, int, Candidate, Iterator[sqlite3.Row]]] = []
    walks = 0
    for level in _levels(conn, group):
        # Within a walk, effective priority only grows: tasks never paused in
        # id order (their age is their creation), tasks paused once in order of
        # creation plus time paused. The heap merges the walks exactly.
        for it in (
            _ready_rows(conn, group, level, window, never_paused=True),
            _paused_before_rows(conn, group, level, window),
        ):
            first = next(it, None)
            if first is not None:
                c = Candidate(*first)
                e = effective(c.priority, c.created_at, c.pause_duration_ms)
                walks += 1
                heapq.heappush(heap, (e, c.id, walks, c, it))
    while heap:
        e, _, walk, c, it = heapq.heappop(heap)
        yield e, c
        nxt = next(it, None)
        if nxt is not None:
            n = Candidate(*nxt)
            ne = effective(n.priority, n.created_at, n.pause_duration_ms)
            heapq.heappush(heap, (ne, n.id, walk, n, it))


def _ready_groups(conn: sqlite3.Connection) -> list[GroupKey]:
    """Distinct groups among ready tasks (index probes, not a scan)."""
    out: list[GroupKey] = []
    if conn.execute(
        f"SELECT 1 FROM tasks INDEXED BY tasks_ready WHERE {_READY} AND group_key IS NULL LIMIT 1"
    ).fetchone():
        out.append(None)
    lo = ""
    while True:
        row = conn.execute(
            f"SELECT MIN(group_key) FROM tasks INDEXED BY tasks_ready_group WHERE {_READY} "
            "AND group_key > ?",
            (lo,),
        ).fetchone()
        if row[0] is None:
            return out
        lo = row[0]
        out.append(lo)


def _count_ready(conn: sqlite3.Connection, group: GroupKey, cap: int) -> int:
    params: tuple[Any, ...]
    if group is None:
        where, params, index = "group_key IS NULL", (cap,), "tasks_ready"
    else:
        where, params, index = "group_key = ?", (group, cap), "tasks_ready_group"
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY {index} "
        f"WHERE {_READY} AND {where} LIMIT ?)",
        params,
    ).fetchone()
    return int(row[0])


@dataclass(slots=True)
class _Scan:
    """The state of one claim: what was admitted, expired and deferred."""

    now: int
    eff: Effects
    admitted: list[int] = field(default_factory=list)
    admitted_set: set[int] = field(default_factory=set)
    effective: dict[int, int] = field(default_factory=dict)
    by_group: dict[GroupKey, int] = field(default_factory=dict)
    deferred: int = 0
    denied: int = 0

    def run(
        self,
        conn: sqlite3.Connection,
        candidates: Iterator[tuple[int, Candidate]],
        gate: GateFn | None,
        want: int,
        scan_limit: int,
        stop_above: int | None = None,
    ) -> None:
        """Admit up to ``want`` candidates; a candidate-only denial skips ahead."""
        got = 0
        scanned = 0
        for eff, cand in candidates:
            if got >= want or scanned >= scan_limit:
                return
            if stop_above is not None and eff > stop_above:
                return
            if cand.id in self.admitted_set:
                continue
            scanned += 1
            if cand.expires_at is not None and cand.expires_at <= self.now:
                _expire(conn, self.now, self.eff, cand.id)
                continue
            verdict = Admission.ADMIT if gate is None else gate(cand)
            if verdict == Admission.ADMIT:
                self.admitted.append(cand.id)
                self.admitted_set.add(cand.id)
                self.effective[cand.id] = eff
                self.by_group[cand.group] = self.by_group.get(cand.group, 0) + 1
                got += 1
            elif verdict == Admission.STOP:
                self.denied += 1
                return
            elif verdict > Admission.STOP:
                self.deferred += 1
                conn.execute(
                    "UPDATE tasks SET run_after = ?, delayed = 1 WHERE id = ?", (verdict, cand.id)
                )
            else:
                self.denied += 1


def claim(
    conn: sqlite3.Connection,
    now: int,
    limit: int | ClaimPlan,
    gate: GateFn | None = None,
) -> ClaimResult:
    """Claim up to ``plan.limit`` ready tasks.

    Due delayed tasks become ready first. Without fairness, candidates are
    taken in (effective) priority then FIFO order. With aging and an urgent
    threshold, tasks that aged past it are taken first, ignoring weights. With
    fairness, a fair pass gives each group its share, then a greedy pass fills
    what is left in priority order (work-conserving). Candidates past their
    deadline expire.
    """
    plan = limit if isinstance(limit, ClaimPlan) else ClaimPlan(limit=limit, gate=gate)
    conn.execute(
        "UPDATE tasks INDEXED BY tasks_delayed SET delayed = 0 "
        "WHERE status = 'pending' AND delayed = 1 AND run_after <= ?",
        (now,),
    )
    scan = _Scan(now, Effects())
    allocation: dict[GroupKey, int] = {}
    ready_counts: dict[GroupKey, int] | None = None
    if plan.limit > 0:
        if plan.urgent_threshold is not None and plan.effective is not None:
            # Tasks aged past the urgent threshold go first, whatever the weights.
            scan.run(
                conn,
                _candidates(conn, plan.effective),
                plan.gate,
                plan.limit,
                plan.scan_limit,
                stop_above=plan.urgent_threshold,
            )
        if plan.fair is not None and len(scan.admitted) < plan.limit:
            running = dict(plan.running_by_group)
            for g, n in scan.by_group.items():
                running[g] = running.get(g, 0) + n
            ready = plan.ready_counts
            if ready is None:
                cap = plan.limit + sum(plan.running_by_group.values())
                ready = {g: _count_ready(conn, g, cap) for g in _ready_groups(conn)}
                ready_counts = ready
            demand = {g: (running.get(g, 0), n) for g, n in ready.items() if n > 0}
            for g, r in running.items():
                demand.setdefault(g, (r, 0))
            allocation = plan.fair(demand)
            for g, slots in allocation.items():
                want = min(slots - running.get(g, 0), plan.limit - len(scan.admitted))
                if want > 0:
                    scan.run(
                        conn,
                        _candidates(conn, plan.effective, g, window=min(32, want + 2)),
                        plan.fair_gate or plan.gate,
                        want,
                        plan.scan_limit,
                    )
        left = plan.limit - len(scan.admitted)
        if left > 0:
            window = min(32, max(left * 2, 8))
            scan.run(
                conn,
                _candidates(conn, plan.effective, window=window),
                plan.gate,
                left,
                plan.scan_limit,
            )
    claimed: list[Claimed] = []
    if scan.admitted:
        marks = ",".join(f"?{i + 2}" for i in range(len(scan.admitted)))
        rows = conn.execute(
            f"{_CLAIM_SET} WHERE id IN ({marks}) AND status = 'pending' RETURNING *",
            (now, *scan.admitted),
        ).fetchall()
        by_id = {r["id"]: r for r in rows}
        for i in scan.admitted:
            row = by_id.get(i)
            if row is None:
                continue
            phase = row["phase"]
            rec = record_from_row(row)
            eff = scan.effective.get(i, rec.priority)
            if eff != rec.priority:
                rec = rec.evolve(effective_priority=eff)
            claimed.append(
                Claimed(
                    rec,
                    row["dispatch_count"],
                    row["retry_policy"],
                    row["memo"],
                    phase,
                    child_outcomes(conn, i) if phase == "finalize" else None,
                )
            )
    return ClaimResult(
        claimed=claimed,
        next_due=next_due(conn),
        effects=scan.eff,
        allocation=allocation,
        denied=scan.denied,
        deferred=scan.deferred,
        ready_counts=ready_counts,
    )


def next_due(conn: sqlite3.Connection) -> int | None:
    row = conn.execute(
        "SELECT MIN(run_after) FROM tasks INDEXED BY tasks_delayed "
        "WHERE status = 'pending' AND delayed = 1"
    ).fetchone()
    value: int | None = row[0]
    return value


# ---------------------------------------------------------------------------
# Finishing executions


# ---------------------------------------------------------------------------
# Dependencies


def _paused_sets(conn: sqlite3.Connection) -> _Pauses:
    return _Pauses(
        groups={r[0] for r in conn.execute("SELECT group_key FROM paused_groups")},
        domains={r[0] for r in conn.execute("SELECT domain FROM paused_domains")},
    )


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


def finish(
    conn: sqlite3.Connection, items: Sequence[Finish], now: int, eff: Effects | None = None
) -> list[FinishResult]:
    """Record finished executions: to history, back to pending, requeued or waiting."""
    eff = eff if eff is not None else Effects()
    out: list[FinishResult] = []
    left: dict[int, tuple[int, str] | None] = {}
    completed: list[int] = []
    states: dict[int, sqlite3.Row] = {}
    ids = [f.task_id for f in items]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for r in conn.execute(
            "SELECT id, status, dispatch_count, retry_count, requeue, tags, parent_id, phase, "
            f"recurring_interval_ms FROM tasks WHERE id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            states[r["id"]] = r
    for f in items:
        row = states.get(f.task_id)
        if row is None or row["status"] != "running" or row["dispatch_count"] != f.dispatch_count:
            out.append(FinishResult(kind="stale", task_id=f.task_id))
            continue
        parent_id = row["parent_id"]
        if f.kind == "completed":
            if row["phase"] == "execute" and f.may_have_children:
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
            full = None
            if row["recurring_interval_ms"] is not None and not row["requeue"]:
                full = conn.execute("SELECT * FROM tasks WHERE id = ?", (f.task_id,)).fetchone()
            hid = _to_history(
                conn,
                f.task_id,
                Status.COMPLETED,
                now,
                tags_json=row["tags"],
                result_json=f.result_json,
                actual=f.actual_io,
                delete=not row["requeue"],
                edges=False,  # a running task waits on nothing
            )
            completed.append(f.task_id)
            if row["requeue"]:
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
                    retry_count=row["retry_count"] + 1,
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
                tags_json=row["tags"],
                error=f.error,
                traceback=f.traceback,
                actual=f.actual_io,
            )
            dependency_failed(conn, now, eff, f.task_id)
            out.append(
                FinishResult(
                    kind="dead_letter" if status is Status.DEAD_LETTER else "failed",
                    task_id=f.task_id,
                    history_id=hid,
                    retry_count=row["retry_count"],
                )
            )
            if parent_id is not None:
                left[parent_id] = (f.task_id, f.error or "")
    if completed:
        dependency_done(conn, now, eff, *completed)
    if left:
        settle_parents(conn, now, eff, left)
    return out


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


_OCCURRENCE_COPY = (
    "task_type, domain, key, label, priority, payload, group_key, fail_fast, max_retries, "
    "retry_policy, expected_read, expected_write, expected_net_rx, expected_net_tx, ttl_ms, "
    "ttl_from, on_dep_failure, recurring_interval_ms, recurring_max, schedule_id, tags"
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
    due = (row["run_after"] or row["created_at"]) + interval
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
    new_id = conn.execute(
        f"INSERT INTO tasks ({_OCCURRENCE_COPY}, status, delayed, created_at, run_after, "
        "expires_at, recurring_count, recurring_paused, pause_reasons, paused_at) "
        f"VALUES ({', '.join('?' * len(cols))}, ?, 1, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            *(values[c] for c in cols),
            "paused" if bits else "pending",
            now,
            due,
            expires,
            count,
            row["recurring_paused"],
            bits,
            now if bits else None,
        ),
    ).fetchone()[0]
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


def recheck_waiting(conn: sqlite3.Connection, now: int) -> list[int]:
    """Waiting parents whose children all finished (e.g. before a crash) become ready."""
    eff = Effects()
    ids = [r[0] for r in conn.execute("SELECT id FROM tasks WHERE status = 'waiting'")]
    settle_parents(conn, now, eff, dict.fromkeys(ids))
    return eff.parents_ready


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
            f"paused_at = NULL WHERE status = 'paused' AND pause_reasons = ? AND ({where}) "
            f"RETURNING id",
            (now, now, reason_bit, *params),
        )
    ]
    conn.execute(
        f"UPDATE tasks SET pause_reasons = pause_reasons & ~? "
        f"WHERE status = 'paused' AND (pause_reasons & ?) != 0 AND ({where})",
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


# ---------------------------------------------------------------------------
# Worker-declared task types


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


# ---------------------------------------------------------------------------
# Recovery and retention


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
        "WHERE status = 'running'",
        (now,),
    ).rowcount
    return count


def recover(conn: sqlite3.Connection, now: int) -> Recovery:
    """Repair state left by a crash: running work goes back to pending, no retry counted."""
    requeued = requeue_running(conn, now)
    conn.execute(
        "UPDATE tasks SET pause_duration_ms = pause_duration_ms + MAX(0, ? - paused_at), "
        "paused_at = ? WHERE status = 'paused' AND paused_at IS NOT NULL",
        (now, now),
    )
    # Global pause and preemption live in memory only: after a restart they are over.
    clear_pause_bit(conn, PAUSE_GLOBAL, now)
    clear_pause_bit(conn, PAUSE_PREEMPTION, now)
    stale = conn.execute(
        "DELETE FROM task_deps WHERE depends_on_id NOT IN (SELECT id FROM tasks)"
    ).rowcount
    # Blocked tasks with no edges left can run.
    conn.execute(
        "UPDATE tasks SET status = 'pending' WHERE status = 'blocked' AND NOT EXISTS "
        "(SELECT 1 FROM task_deps d WHERE d.task_id = tasks.id)"
    )
    return Recovery(requeued=requeued, stale_edges=stale, parents_ready=recheck_waiting(conn, now))


def prune_history(
    conn: sqlite3.Connection, now: int, max_count: int | None, max_age_ms: int | None
) -> int:
    """Apply retention; returns the number of history rows removed (tags too)."""
    removed = 0
    cutoff: int | None = None
    if max_count is not None:
        row = conn.execute(
            "SELECT history_id FROM history ORDER BY history_id DESC LIMIT 1 OFFSET ?",
            (max_count,),
        ).fetchone()
        if row is not None:
            cutoff = row[0]
            conn.execute("DELETE FROM history_tags WHERE history_id <= ?", (cutoff,))
            removed += conn.execute("DELETE FROM history WHERE history_id <= ?", (cutoff,)).rowcount
    if max_age_ms is not None:
        limit = now - max_age_ms
        conn.execute(
            "DELETE FROM history_tags WHERE history_id IN "
            "(SELECT history_id FROM history WHERE finished_at < ?)",
            (limit,),
        )
        removed += conn.execute("DELETE FROM history WHERE finished_at < ?", (limit,)).rowcount
    return removed


# ---------------------------------------------------------------------------
# Queries


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
    row = conn.execute(
        "SELECT * FROM tasks WHERE task_type = ? AND key = ?", (task_type, key)
    ).fetchone()
    if row is not None:
        return "active", record_from_row(row)
    row = conn.execute(
        "SELECT * FROM history WHERE task_type = ? AND key = ? ORDER BY history_id DESC LIMIT 1",
        (task_type, key),
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
    sql = "SELECT pause_reasons, count(*) FROM tasks WHERE status = 'paused'"
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
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute("SELECT domain, status, count(*) FROM tasks GROUP BY domain, status"):
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


def checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def checkpoint_passive(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database as far as readers allow (fsyncs)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


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


# ---------------------------------------------------------------------------
# Domain and group pauses, preemption


def _pause_queued(conn: sqlite3.Connection, bit: int, now: int, where: str, params: Any) -> int:
    """Pending and paused tasks matching ``where`` get a pause reason; returns how many
    were pending."""
    paused = conn.execute(
        f"UPDATE tasks SET status = 'paused', pause_reasons = pause_reasons | ?, "
        f"paused_at = COALESCE(paused_at, ?) WHERE status = 'pending' AND ({where})",
        (bit, now, *params),
    ).rowcount
    conn.execute(
        f"UPDATE tasks SET pause_reasons = pause_reasons | ? WHERE status = 'paused' AND ({where})",
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
            "SELECT 1 FROM tasks WHERE status = 'paused' AND (pause_reasons & ?) != 0 LIMIT 1",
            (PAUSE_PREEMPTION,),
        ).fetchone()
        is not None
    )
