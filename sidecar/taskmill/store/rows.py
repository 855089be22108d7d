"""Row shapes passed between the scheduler and the store, and row -> record decoding."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..model import IoBudget, Progress, Status, TaskRecord

# Why a task is paused: bits of ``tasks.pause_reasons``, independent; a task is
# pending again only when all are clear.
PAUSE_PREEMPTION = 1
PAUSE_DOMAIN = 2
PAUSE_GLOBAL = 4
PAUSE_GROUP = 8
#: A paused recurring schedule holds its queued occurrence (durable).
PAUSE_SCHEDULE = 16
#: The names of the bits, as records and snapshots show why a task is paused.
PAUSE_REASONS = (
    (PAUSE_PREEMPTION, "preempted"),
    (PAUSE_DOMAIN, "domain"),
    (PAUSE_GLOBAL, "scheduler"),
    (PAUSE_GROUP, "group"),
    (PAUSE_SCHEDULE, "schedule"),
)


def pause_reason_names(bits: int) -> tuple[str, ...]:
    """The names of the pause bits set in ``bits``."""
    if not bits:
        return ()
    return tuple(name for bit, name in PAUSE_REASONS if bits & bit)


__all__ = [
    "PAUSE_DOMAIN",
    "PAUSE_GLOBAL",
    "PAUSE_GROUP",
    "PAUSE_PREEMPTION",
    "PAUSE_REASONS",
    "PAUSE_SCHEDULE",
    "Finish",
    "NewTask",
    "pause_reason_names",
    "record_from_new",
    "record_from_row",
]


@dataclass(slots=True, kw_only=True)
class NewTask:
    """A submission with every default resolved, ready to insert."""

    task_type: str
    domain: str
    key: str
    label: str
    priority: int
    payload_json: str
    group: str | None
    tags: dict[str, str]
    parent_id: int | None
    fail_fast: bool
    max_retries: int
    retry_policy_json: str | None
    expected_io: IoBudget
    ttl_ms: int | None
    ttl_from: str
    expires_at: int | None
    run_after: int | None
    on_dep_failure: str
    depends_on: list[int]
    recurring_interval_ms: int | None
    recurring_max: int | None
    on_duplicate: str
    #: The payload as given (for the record of a new task; stored as ``payload_json``).
    payload: Any = None

    @property
    def tags_json(self) -> str:
        return json.dumps(self.tags, separators=(",", ":"), sort_keys=True) if self.tags else "{}"


@dataclass(slots=True, kw_only=True)
class Finish:
    """How one execution ended, as decided by the scheduler's pure policy."""

    task_id: int
    dispatch_count: int
    #: "completed", "retry", "failed" (permanent) or "dead_letter".
    kind: str
    result_json: str | None = None
    error: str | None = None
    retry_delay_ms: int = 0
    actual_io: IoBudget = field(default_factory=IoBudget)
    #: Phase that ended: "execute" or "finalize".
    phase: str = "execute"
    #: JSON memo when execute returned with live children (parents).
    memo_json: str | None = None
    #: False when the run spawned no child and is the task's first run: the
    #: store can skip looking for children.
    may_have_children: bool = True
    #: Where task code failed (scheduler/tracebacks.py), for failures.
    traceback: str | None = None


_EMPTY_TAGS: dict[str, str] = {}


def _loads(text: str | None) -> Any:
    if text is None or text == "null":
        return None
    return json.loads(text)


def _tags(text: str) -> dict[str, str]:
    return {} if text == "{}" else dict(json.loads(text))


def _ids(text: str) -> list[int]:
    return [] if text == "[]" else list(json.loads(text))


_NO_IO = IoBudget()
_NO_PROGRESS = Progress()


def record_from_new(item: NewTask, task_id: int, now: int, status: Status) -> TaskRecord:
    """The record of a task just inserted, built without reading it back."""
    return TaskRecord(
        id=task_id,
        task_type=item.task_type,
        domain=item.domain,
        key=item.key,
        label=item.label,
        priority=item.priority,
        effective_priority=item.priority,
        status=status,
        payload=item.payload,
        group=item.group,
        tags=item.tags,
        parent_id=item.parent_id,
        retry_count=0,
        max_retries=item.max_retries,
        last_error=None,
        created_at=now,
        started_at=None,
        run_after=item.run_after,
        expires_at=item.expires_at,
        depends_on=item.depends_on,
        progress=_NO_PROGRESS,
        expected_io=item.expected_io,
    )


def _io(r: int, w: int, rx: int, tx: int) -> IoBudget:
    if not (r or w or rx or tx):
        return _NO_IO
    return IoBudget(disk_read=r, disk_write=w, net_rx=rx, net_tx=tx)


def record_from_row(row: sqlite3.Row, *, history: bool = False) -> TaskRecord:
    """Decode a ``tasks`` or ``history`` row (``SELECT *``) into a record."""
    priority: int = row["priority"]
    rec = TaskRecord(
        id=row["id"],
        task_type=row["task_type"],
        domain=row["domain"],
        key=row["key"],
        label=row["label"],
        priority=priority,
        effective_priority=priority,
        status=Status(row["status"]),
        payload=_loads(row["payload"]),
        group=row["group_key"],
        tags=_tags(row["tags"]),
        parent_id=row["parent_id"],
        retry_count=row["retry_count"],
        max_retries=row["max_retries"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        run_after=row["run_after"],
        expires_at=row["expires_at"],
        depends_on=_ids(row["depends_on"]),
        progress=_NO_PROGRESS,
        pause_duration_ms=row["pause_duration_ms"] if not history else 0,
        pause_reasons=() if history else pause_reason_names(row["pause_reasons"]),
        traceback=row["traceback"],
        expected_io=_io(
            row["expected_read"],
            row["expected_write"],
            row["expected_net_rx"],
            row["expected_net_tx"],
        ),
    )
    if not history:
        return rec
    return rec.evolve(
        history_id=row["history_id"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        result=_loads(row["result"]),
        actual_io=_io(
            row["actual_read"], row["actual_write"], row["actual_net_rx"], row["actual_net_tx"]
        ),
    )
