"""Row shapes passed between the scheduler and the store, and row -> record decoding."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..model import IoBudget, Outcome, Progress, Status, TaskRecord, build_record

if TYPE_CHECKING:
    import sqlite3

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
    "Admission",
    "CancelledTask",
    "Candidate",
    "ClaimPlan",
    "ClaimResult",
    "Claimed",
    "Effects",
    "Finish",
    "FinishKind",
    "FinishResult",
    "FinishResultKind",
    "GateFn",
    "GroupKey",
    "NewTask",
    "Phase",
    "SubmitEffect",
    "pause_reason_names",
    "record_from_new",
    "record_from_row",
]


#: How an execution ended (the scheduler's decision).
FinishKind = Literal["completed", "retry", "failed", "dead_letter"]
#: What recording it did (see :class:`FinishResult`).
FinishResultKind = Literal[
    "completed", "requeued", "retry", "failed", "dead_letter", "waiting", "finalize", "stale"
]
#: Which part of a task a run executes.
Phase = Literal["execute", "finalize"]


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
    kind: FinishKind
    result_json: str | None = None
    error: str | None = None
    retry_delay_ms: int = 0
    actual_io: IoBudget = field(default_factory=IoBudget)
    #: Phase that ended: "execute" or "finalize".
    phase: Phase = "execute"
    #: JSON memo when execute returned with live children (parents).
    memo_json: str | None = None
    #: False when the run spawned no child and is the task's first run: the
    #: store can skip looking for children.
    may_have_children: bool = True
    #: Where task code failed (scheduler/tracebacks.py), for failures.
    traceback: str | None = None
    #: When the run started (epoch ms), if later than the claim (it waited
    #: ahead for a slot): history's started_at and duration count from it.
    started_at: int | None = None
    #: When the run ended (epoch ms): history's finished_at, which the batch
    #: that records it may write later.
    ended_at: int | None = None


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
    return build_record(
        (
            task_id,
            item.task_type,
            item.domain,
            item.key,
            item.label,
            item.priority,
            item.priority,
            status,
            item.payload,
            item.group,
            item.tags,
            item.parent_id,
            0,  # retry_count
            item.max_retries,
            None,  # last_error
            now,  # created_at
            None,  # started_at
            item.run_after,
            item.expires_at,
            item.depends_on,
            _NO_PROGRESS,
            item.expected_io,
            None,  # history_id
            None,  # finished_at
            None,  # duration_ms
            None,  # result
            None,  # actual_io
            0,  # pause_duration_ms
            (),  # pause_reasons
            None,  # traceback
        )
    )


def _io(r: int, w: int, rx: int, tx: int) -> IoBudget:
    if not (r or w or rx or tx):
        return _NO_IO
    return IoBudget(disk_read=r, disk_write=w, net_rx=rx, net_tx=tx)


#: Column positions by column layout (``Row.keys()``): a ``Row`` looked up by
#: name compares the name with each column in turn, and a task row has forty
#: (measured: that was half of the 19 us a record took to decode).
_POSITIONS: dict[tuple[str, ...], dict[str, int]] = {}


def _positions(row: sqlite3.Row) -> dict[str, int]:
    keys = tuple(row.keys())
    at = _POSITIONS.get(keys)
    if at is None:
        if len(_POSITIONS) > 64:  # only SELECT * of two tables come here
            _POSITIONS.clear()
        at = _POSITIONS[keys] = {k: i for i, k in enumerate(keys)}
    return at


#: TaskRecord's fields in declaration order, as record_from_row lists them
#: (tests/unit/store/test_rows.py checks the two agree).
RECORD_ORDER = (
    "id", "task_type", "domain", "key", "label", "priority", "effective_priority",
    "status", "payload", "group", "tags", "parent_id", "retry_count", "max_retries",
    "last_error", "created_at", "started_at", "run_after", "expires_at", "depends_on",
    "progress", "expected_io", "history_id", "finished_at", "duration_ms", "result",
    "actual_io", "pause_duration_ms", "pause_reasons", "traceback",
)  # fmt: skip


def record_from_row(
    row: sqlite3.Row, *, history: bool = False, at: dict[str, int] | None = None
) -> TaskRecord:
    """Decode a ``tasks`` or ``history`` row (``SELECT *``) into a record;
    ``at``: its column positions, when the caller has them (:func:`_positions`)."""
    if at is None:
        at = _positions(row)
    v = tuple(row)
    priority: int = v[at["priority"]]
    expected = _io(
        v[at["expected_read"]],
        v[at["expected_write"]],
        v[at["expected_net_rx"]],
        v[at["expected_net_tx"]],
    )
    if history:
        finished: tuple[Any, ...] = (
            v[at["history_id"]],
            v[at["finished_at"]],
            v[at["duration_ms"]],
            _loads(v[at["result"]]),
            _io(v[at["actual_read"]], v[at["actual_write"]], v[at["actual_net_rx"]],
                v[at["actual_net_tx"]]),
            0,
            (),
        )  # fmt: skip
    else:
        finished = (
            None,
            None,
            None,
            None,
            None,
            v[at["pause_duration_ms"]],
            pause_reason_names(v[at["pause_reasons"]]),
        )
    return build_record(
        (
            v[at["id"]],
            v[at["task_type"]],
            v[at["domain"]],
            v[at["key"]],
            v[at["label"]],
            priority,
            priority,
            Status(v[at["status"]]),
            _loads(v[at["payload"]]),
            v[at["group_key"]],
            _tags(v[at["tags"]]),
            v[at["parent_id"]],
            v[at["retry_count"]],
            v[at["max_retries"]],
            v[at["last_error"]],
            v[at["created_at"]],
            v[at["started_at"]],
            v[at["run_after"]],
            v[at["expires_at"]],
            _ids(v[at["depends_on"]]),
            _NO_PROGRESS,
            expected,
            *finished,
            v[at["traceback"]],
        )
    )


# ---------------------------------------------------------------------------
# What store operations and the scheduler exchange: the claim and gate
# vocabulary, and the effects of an operation, returned as data.


@dataclass(slots=True, kw_only=True)
class SubmitEffect:
    """What one submission did, with what the scheduler needs to react.

    A task inserted as given carries ``new`` (the item, its id, the time and
    its status) instead of a record: :attr:`record` builds it when first
    asked, and a batch nobody watches (no ``submitted`` subscription, no
    preemption) never builds one.
    """

    outcome: Outcome
    id: int
    #: The task whose key matched (duplicate/upgraded/requeued/superseded).
    replaced_id: int | None = None
    #: The record as it now stands (None for duplicate): see :attr:`record`.
    built: TaskRecord | None = None
    #: ``(item, id, now, status)`` of an insert whose record is not built yet.
    new: tuple[NewTask, int, int, Status] | None = None
    #: For supersede: the old record (its header goes in the superseded event).
    old_record: TaskRecord | None = None
    #: For supersede of a running or waiting task: it must be stopped.
    stop_running: bool = False
    #: Tasks cancelled as a side effect (children of a superseded parent).
    cancelled: list[CancelledTask] = field(default_factory=list)
    #: What cancelling them did further on (their dependents failed, say).
    cascade: Effects | None = None

    @property
    def record(self) -> TaskRecord | None:
        """The record as it now stands (None for duplicate)."""
        if self.built is None and self.new is not None:
            self.built = record_from_new(*self.new)
            self.new = None
        return self.built

    @property
    def new_priority(self) -> int | None:
        """The priority of an insert whose record is not built yet (else None):
        a check that fails on it needs no record."""
        return None if self.new is None else self.new[0].priority


class Admission:
    """What the gate says about one candidate."""

    ADMIT = 0
    #: Not this one (its group, domain or type is at its cap): try the next.
    SKIP = 1
    #: Nothing more this cycle (a global reason).
    STOP = 2


class Candidate(NamedTuple):
    """The columns of a ready task that gate checks look at."""

    id: int
    task_type: str
    domain: str
    group: str | None
    priority: int
    expires_at: int | None
    created_at: int
    pause_duration_ms: int
    expected_read: int
    expected_write: int
    expected_net_rx: int
    expected_net_tx: int


class Claimed:
    """A task claimed for a run, with what the run needs beyond the record.

    A claim made on the database thread keeps its row and decodes the record
    when the loop first asks for it (:meth:`from_row`): the decoding is Python
    that would otherwise hold the GIL on the busier of the two threads.
    """

    __slots__ = (
        "_at",
        "_effective",
        "_record",
        "_row",
        "children",
        "dispatch_count",
        "memo_json",
        "phase",
        "retry_policy_json",
    )  # fmt: skip

    def __init__(
        self,
        record: TaskRecord,
        dispatch_count: int,
        retry_policy_json: str | None,
        memo_json: str | None,
        phase: Phase = "execute",
        children: list[dict[str, Any]] | None = None,
    ) -> None:
        self._record: TaskRecord | None = record
        self._row: sqlite3.Row | None = None
        self._at: dict[str, int] | None = None
        self._effective: int | None = None
        self.dispatch_count = dispatch_count
        self.retry_policy_json = retry_policy_json
        self.memo_json = memo_json
        #: "execute", or "finalize" for a parent whose children are done.
        self.phase: Phase = phase
        #: For finalize: the latest outcome of each child.
        self.children = children

    @classmethod
    def from_row(
        cls,
        row: sqlite3.Row,
        effective: int | None,
        at: dict[str, int],
    ) -> Claimed:
        """A claim of a ``tasks`` row (``SELECT *``) at ``effective`` priority
        (None: its own); the record is decoded on first use. ``at``: the
        row's column positions (:func:`_positions`, once per claim)."""
        out = cls.__new__(cls)
        out._record = None
        out._row = row
        out._at = at
        out._effective = effective
        out.dispatch_count = row[at["dispatch_count"]]
        out.retry_policy_json = row[at["retry_policy"]]
        out.memo_json = row[at["memo"]]
        out.phase = row[at["phase"]]
        out.children = None
        return out

    @property
    def record(self) -> TaskRecord:
        rec = self._record
        if rec is None:
            assert self._row is not None
            rec = record_from_row(self._row, at=self._at)
            eff = self._effective
            if eff is not None and eff != rec.priority:
                rec = rec.evolve(effective_priority=eff)
            self._record, self._row = rec, None
        return rec

    def __repr__(self) -> str:
        return f"Claimed({self.record!r}, {self.dispatch_count})"


@dataclass(slots=True)
class ClaimResult:
    claimed: list[Claimed]
    #: Epoch ms of the earliest delayed task, or None.
    next_due: int | None
    #: Other tasks affected (expired candidates, their parents and dependents).
    effects: Effects = field(default_factory=lambda: Effects())
    #: With fairness: the slots each group got this cycle.
    allocation: dict[str | None, int] = field(default_factory=dict)
    #: Candidates the gate turned down, and those deferred by a rate limit.
    denied: int = 0
    deferred: int = 0
    #: Ready tasks per group, when this claim counted them (fair path).
    ready_counts: dict[str | None, int] | None = None


#: Gate callback: (candidate) -> Admission.ADMIT/SKIP/STOP, or an int > 2 meaning
#: "defer until this epoch ms" (rate limits).
GateFn = Callable[[Candidate], int]


GroupKey = str | None


@dataclass(slots=True, kw_only=True)
class ClaimPlan:
    """How to pick the next tasks; built by the scheduler from its policy.

    Attributes:
        limit: Free slots to fill.
        gate: Checks one candidate (see :class:`Admission`); it keeps its own
            counts, so later candidates see earlier admissions.
        effective: ``(priority, created_at, pause_duration_ms) -> effective
            priority`` when aging is on, else None (plain priority order).
        fair: ``{group: (running, ready)} -> {group: slots}`` when weighted
            fairness is on, else None.
        running_by_group: Running tasks per group (for the fair pass).
        urgent_threshold: With aging, tasks this urgent bypass fairness.
        fair_gate: The gate to use in the fair pass (group caps already applied).
    """

    limit: int
    gate: GateFn | None = None
    effective: Callable[[int, int, int], int] | None = None
    fair: Callable[[dict[GroupKey, tuple[int, int]]], dict[GroupKey, int]] | None = None
    running_by_group: Mapping[GroupKey, int] = field(default_factory=dict)
    urgent_threshold: int | None = None
    fair_gate: GateFn | None = None
    scan_limit: int = 256
    #: Ready tasks per group from a recent claim, to skip recounting (fair path).
    ready_counts: dict[GroupKey, int] | None = None


@dataclass(slots=True, kw_only=True)
class FinishResult:
    """What recording one finished execution did.

    ``kind`` is one of: ``completed``, ``requeued`` (completed, then re-run
    under the same id), ``retry`` (back to pending), ``failed``,
    ``dead_letter``, ``waiting`` (a parent whose children still run),
    ``finalize`` (a parent whose children are all done: finalize is queued), or
    ``stale`` (the task had already moved on: cancelled, paused, superseded;
    nothing was written).
    """

    kind: FinishResultKind
    task_id: int
    history_id: int | None = None
    retry_count: int = 0
    run_after: int | None = None
    children: int = 0
    #: Recurring: runs completed so far, the next occurrence's id (None when the
    #: schedule ended) and how many occurrences were skipped as overdue.
    occurrences: int | None = None
    next_id: int | None = None
    skipped: int = 0


@dataclass(slots=True)
class CancelledTask:
    record: TaskRecord
    #: Status before the cancel (running ones must be stopped in memory).
    was: Status
    #: Why: "cancelled", "superseded", "parent_failed", "fail_fast", "dependency_failed".
    reason: str = "cancelled"


@dataclass(slots=True)
class Effects:
    """What one store operation did to tasks other than the ones it was asked about."""

    #: Tasks cancelled on the way (children of a cancelled or failed parent).
    cancelled: list[CancelledTask] = field(default_factory=list)
    #: Parents failed because a child failed (fail_fast): (record before, error, was).
    failed_parents: list[tuple[TaskRecord, str, Status]] = field(default_factory=list)
    #: Parents whose children are all done: ready to finalize.
    parents_ready: list[int] = field(default_factory=list)
    #: Blocked tasks whose dependencies are all settled (now pending or paused).
    unblocked: list[TaskRecord] = field(default_factory=list)
    #: Tasks ended because a dependency failed: (record, the failed dependency).
    dependency_failed: list[tuple[TaskRecord, int]] = field(default_factory=list)
    #: Tasks expired on the way (children of an expired parent).
    expired: list[TaskRecord] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.cancelled
            or self.failed_parents
            or self.parents_ready
            or self.unblocked
            or self.dependency_failed
            or self.expired
        )
