"""Params of the task methods: submitting, reading, listing, cancelling and
reprioritising tasks, history, dependencies and tags (protocol section 5.2).

``task.submit`` params come out as a :class:`~taskmill.model.Submission`;
``task.submit_batch`` is checked in chunks by :func:`submit_batch_steps`, a
generator that pauses between them (sans-I/O: the caller decides what to do
at each pause).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from ... import _checks as checks
from ..._checks import Fields
from ...errors import InvalidParams, LimitExceeded
from ...model import (
    ACTIVE_STATUSES,
    HISTORY_STATUSES,
    DependencyPolicy,
    IoBudget,
    OnDuplicate,
    Recurring,
    RetryPolicy,
    Status,
    Submission,
    TtlFrom,
    parse_priority,
)

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "MAX_BATCH",
    "MAX_LIST_LIMIT",
    "PARSE_CHUNK",
    "SUBMIT_FIELDS",
    "CancelWhereParams",
    "HistoryListParams",
    "HistoryStatsParams",
    "IdParams",
    "SubmitBatchParams",
    "TagsKeysParams",
    "TagsValuesParams",
    "TaskListParams",
    "TaskLookupParams",
    "TaskSetPriorityParams",
    "parse_cancel_where",
    "parse_history_list",
    "parse_history_stats",
    "parse_id",
    "parse_submission",
    "parse_submit_batch",
    "parse_tags_keys",
    "parse_tags_values",
    "parse_task_list",
    "parse_task_lookup",
    "parse_task_set_priority",
    "read_submission",
    "submit_batch_steps",
]

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
#: Tasks one ``task.submit_batch`` may hold (a documented limit: -32008).
MAX_BATCH = 100_000
#: Batch items checked between two pauses of :func:`submit_batch_steps`.
PARSE_CHUNK = 500

SUBMIT_FIELDS = frozenset(
    {
        "task_type",
        "payload",
        "key",
        "label",
        "priority",
        "group",
        "tags",
        "ttl_ms",
        "ttl_from",
        "run_after_ms",
        "run_at",
        "depends_on",
        "on_dependency_failure",
        "expected_io",
        "retry",
        "recurring",
        "on_duplicate",
        "parent_id",
        "fail_fast",
    }
)
"""The members of ``task.submit`` params."""

_TTL_FROM: tuple[TtlFrom, ...] = ("submission", "first_attempt")
_ON_DEPENDENCY_FAILURE: tuple[DependencyPolicy, ...] = ("cancel", "fail", "ignore")
_ON_DUPLICATE: tuple[OnDuplicate, ...] = ("skip", "supersede")


# --------------------------------------------------------------------------
# Parameter types
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitBatchParams:
    """``task.submit_batch``: submitted in one transaction, outcomes in order."""

    tasks: tuple[Submission, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IdParams:
    """Methods on one task or schedule: ``task.get``, ``task.cancel``,
    ``task.retry_dead_letter``, ``dependencies.get``, ``recurring.pause``,
    ``recurring.resume``, ``recurring.cancel``."""

    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLookupParams:
    """``task.lookup``."""

    task_type: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskListParams:
    """``task.list``: filters are AND-ed; ``status`` holds active statuses only."""

    status: tuple[Status, ...] | None = None
    domain: str | None = None
    task_type: str | None = None
    group: str | None = None
    tags: Mapping[str, str] | None = None
    tag_prefix: str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWhereParams:
    """``task.cancel_where``: at least one filter constrains the selection."""

    domain: str | None = None
    task_type: str | None = None
    group: str | None = None
    status: tuple[Status, ...] | None = None
    tags: Mapping[str, str] | None = None
    tag_prefix: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSetPriorityParams:
    """``task.set_priority``: ``priority`` is already an integer 0..255."""

    id: int
    priority: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryListParams:
    """``history.list``: ``status`` holds history statuses only."""

    status: tuple[Status, ...] | None = None
    task_type: str | None = None
    key: str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryStatsParams:
    """``history.stats``."""

    task_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TagsValuesParams:
    """``tags.values``."""

    key: str
    domain: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TagsKeysParams:
    """``tags.keys``: ``prefix`` may be empty (every key)."""

    prefix: str
    domain: str | None = None


# --------------------------------------------------------------------------
# Checks of task fields
# --------------------------------------------------------------------------


def _statuses(allowed: list[str]) -> checks.Check[tuple[Status, ...]]:
    one_or_list = checks.one_or_list(checks.choice(allowed))

    def check(value: Any, name: str) -> tuple[Status, ...]:
        return tuple(Status(s) for s in one_or_list(value, name))

    return check


_active_statuses = _statuses(sorted(s.value for s in ACTIVE_STATUSES))
_history_statuses = _statuses(sorted(s.value for s in HISTORY_STATUSES))


def _io_budget(value: Any, name: str) -> IoBudget:
    return IoBudget.from_mapping(checks.obj(value, name), name)


def _retry(value: Any, name: str) -> RetryPolicy:
    return RetryPolicy.from_mapping(checks.obj(value, name), name)


def _recurring(value: Any, name: str) -> Recurring:
    fields = Fields(
        checks.obj(value, name), ("interval_ms", "max_occurrences", "initial_delay_ms"), path=name
    )
    return Recurring(
        interval_ms=fields.required("interval_ms", checks.integer(1)),
        max_occurrences=fields.optional("max_occurrences", checks.integer(1)),
        initial_delay_ms=fields.optional("initial_delay_ms", checks.non_negative),
    )


def _raw_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise checks.wrong_type(field, "an array", value)
    return value


def _limit(fields: Fields) -> int:
    limit = fields.optional("limit", checks.integer(0, MAX_LIST_LIMIT))
    return DEFAULT_LIST_LIMIT if limit is None else limit


# --------------------------------------------------------------------------
# Submitting
# --------------------------------------------------------------------------


def read_submission(fields: Fields, *, parent_id: int | None = None) -> Submission:
    """The :class:`~taskmill.model.Submission` that submit params describe.

    Shared by ``task.submit``, each item of ``task.submit_batch`` and
    ``worker.spawn_child`` (which gives ``parent_id``; otherwise it is read).
    """
    task_type = fields.required("task_type", checks.task_type)
    if fields.given("run_after_ms") and fields.given("run_at"):
        raise InvalidParams(
            f"give either {fields.name('run_after_ms')} or {fields.name('run_at')}, not both",
            field=fields.name("run_at"),
        )
    # Read in this order so that of two bad fields the same one is named as ever.
    ttl_from = fields.optional("ttl_from", checks.choice(_TTL_FROM))
    on_dependency_failure = fields.optional(
        "on_dependency_failure", checks.choice(_ON_DEPENDENCY_FAILURE)
    )
    on_duplicate = fields.optional("on_duplicate", checks.choice(_ON_DUPLICATE)) or "skip"
    if parent_id is None:
        parent_id = fields.optional("parent_id", checks.task_id)
    return Submission(
        task_type=task_type,
        payload=fields.params.get("payload"),
        key=fields.optional("key", checks.string(nonempty=True)),
        label=fields.optional("label", checks.string()),
        priority=fields.optional("priority", parse_priority),
        group=fields.optional("group", checks.group),
        tags=fields.optional("tags", checks.str_map),
        ttl_ms=fields.optional("ttl_ms", checks.non_negative),
        ttl_from=ttl_from,
        run_after_ms=fields.optional("run_after_ms", checks.non_negative),
        run_at=fields.optional("run_at", checks.non_negative),
        depends_on=fields.optional("depends_on", checks.list_of(checks.task_id)),
        on_dependency_failure=on_dependency_failure,
        expected_io=fields.optional("expected_io", _io_budget),
        retry=fields.optional("retry", _retry),
        recurring=fields.optional("recurring", _recurring),
        on_duplicate=on_duplicate,
        parent_id=parent_id,
        fail_fast=fields.optional("fail_fast", checks.boolean),
    )


def parse_submission(params: Mapping[str, Any], *, path: str = "") -> Submission:
    """``task.submit`` params, as a :class:`~taskmill.model.Submission`.

    ``priority`` comes out as an integer; ``retry``, ``expected_io`` and
    ``recurring`` as model objects. The payload is not size-checked here (the
    scheduler raises ``PayloadTooLarge``).

    Args:
        params: The params object.
        path: Prefix for field names, e.g. ``tasks[3]`` inside a batch.

    Raises:
        InvalidParams: naming the field (``run_at`` when both ``run_after_ms``
            and ``run_at`` are given).
    """
    return read_submission(Fields(params, SUBMIT_FIELDS, path=path))


def parse_submit_batch(params: Mapping[str, Any]) -> SubmitBatchParams:
    """``task.submit_batch {tasks: [submit params]}``; errors name ``tasks[i].field``.

    Raises:
        LimitExceeded: more than :data:`MAX_BATCH` tasks (``batch_length``).
    """
    steps = submit_batch_steps(params)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: SubmitBatchParams = done.value
            return result


def submit_batch_steps(params: Mapping[str, Any]) -> Generator[None, None, SubmitBatchParams]:
    """:func:`parse_submit_batch`, pausing (``yield``) every :data:`PARSE_CHUNK` items."""
    fields = Fields(params, ("tasks",))
    tasks = fields.required("tasks", _raw_list)
    if len(tasks) > MAX_BATCH:
        raise LimitExceeded(
            "batch_length",
            MAX_BATCH,
            f"a batch holds at most {MAX_BATCH} tasks (got {len(tasks)}): split it",
            field="tasks",
        )
    out: list[Submission] = []
    for i, value in enumerate(tasks):
        if i and i % PARSE_CHUNK == 0:
            yield
        name = f"tasks[{i}]"
        out.append(parse_submission(checks.obj(value, name), path=name))
    return SubmitBatchParams(tasks=tuple(out))


# --------------------------------------------------------------------------
# Reading, listing, cancelling
# --------------------------------------------------------------------------


def parse_id(params: Mapping[str, Any]) -> IdParams:
    """``{id}``: a task or schedule id."""
    return IdParams(id=Fields(params, ("id",)).required("id", checks.task_id))


def parse_task_lookup(params: Mapping[str, Any]) -> TaskLookupParams:
    """``task.lookup {task_type, key}``."""
    fields = Fields(params, ("task_type", "key"))
    return TaskLookupParams(
        task_type=fields.required("task_type", checks.task_type),
        key=fields.required("key", checks.string()),
    )


def parse_task_list(params: Mapping[str, Any]) -> TaskListParams:
    """``task.list {status?, domain?, task_type?, group?, tags?, tag_prefix?, limit?, offset?}``.

    ``status`` is one active status or a list of them; ``limit`` is 0..1000
    (default 100).
    """
    fields = Fields(
        params,
        ("status", "domain", "task_type", "group", "tags", "tag_prefix", "limit", "offset"),
    )
    return TaskListParams(
        status=fields.optional("status", _active_statuses),
        domain=fields.optional("domain", checks.domain),
        task_type=fields.optional("task_type", checks.task_type),
        group=fields.optional("group", checks.group),
        tags=fields.optional("tags", checks.str_map),
        tag_prefix=fields.optional("tag_prefix", checks.string()),
        limit=_limit(fields),
        offset=fields.optional("offset", checks.non_negative) or 0,
    )


def parse_cancel_where(params: Mapping[str, Any]) -> CancelWhereParams:
    """``task.cancel_where {domain?, task_type?, group?, status?, tags?, tag_prefix?}``.

    Raises:
        InvalidParams: when no filter constrains the selection (empty ``tags``
            and an empty ``tag_prefix`` match everything, so they do not count).
    """
    fields = Fields(params, ("domain", "task_type", "group", "status", "tags", "tag_prefix"))
    out = CancelWhereParams(
        domain=fields.optional("domain", checks.domain),
        task_type=fields.optional("task_type", checks.task_type),
        group=fields.optional("group", checks.group),
        status=fields.optional("status", _active_statuses),
        tags=fields.optional("tags", checks.str_map),
        tag_prefix=fields.optional("tag_prefix", checks.string()),
    )
    if (
        out.domain is None
        and out.task_type is None
        and out.group is None
        and out.status is None
        and not out.tags
        and not out.tag_prefix
    ):
        raise InvalidParams(
            "task.cancel_where needs at least one filter: domain, task_type, group, status, "
            "tags or tag_prefix",
            field="domain",
        )
    return out


def parse_task_set_priority(params: Mapping[str, Any]) -> TaskSetPriorityParams:
    """``task.set_priority {id, priority}``: priority 0..255 or a name."""
    fields = Fields(params, ("id", "priority"))
    return TaskSetPriorityParams(
        id=fields.required("id", checks.task_id),
        priority=fields.required("priority", parse_priority),
    )


# --------------------------------------------------------------------------
# History, dependencies, tags
# --------------------------------------------------------------------------


def parse_history_list(params: Mapping[str, Any]) -> HistoryListParams:
    """``history.list {status?, task_type?, key?, limit?, offset?}``.

    ``status`` is one history status or a list of them.
    """
    fields = Fields(params, ("status", "task_type", "key", "limit", "offset"))
    return HistoryListParams(
        status=fields.optional("status", _history_statuses),
        task_type=fields.optional("task_type", checks.task_type),
        key=fields.optional("key", checks.string()),
        limit=_limit(fields),
        offset=fields.optional("offset", checks.non_negative) or 0,
    )


def parse_history_stats(params: Mapping[str, Any]) -> HistoryStatsParams:
    """``history.stats {task_type}``."""
    fields = Fields(params, ("task_type",))
    return HistoryStatsParams(task_type=fields.required("task_type", checks.task_type))


def parse_tags_values(params: Mapping[str, Any]) -> TagsValuesParams:
    """``tags.values {key, domain?}``."""
    fields = Fields(params, ("key", "domain"))
    return TagsValuesParams(
        key=fields.required("key", checks.string()),
        domain=fields.optional("domain", checks.domain),
    )


def parse_tags_keys(params: Mapping[str, Any]) -> TagsKeysParams:
    """``tags.keys {prefix, domain?}``."""
    fields = Fields(params, ("prefix", "domain"))
    return TagsKeysParams(
        prefix=fields.required("prefix", checks.string()),
        domain=fields.optional("domain", checks.domain),
    )
