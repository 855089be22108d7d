"""Parameters of every method, checked and typed (protocol sections 5, 6 and 8).

Each ``parse_*`` function takes a request's raw ``params`` object and returns a
frozen dataclass (or a :class:`~taskmill.model.Submission` for ``task.submit``),
raising :class:`~taskmill.errors.InvalidParams` naming the field at fault for a
member that is unknown (``"unknown field 'priorty' (did you mean 'priority'?)"``),
missing, ``null`` where a value is required, of the wrong type (a boolean is not
an integer, ``1.0`` is not an integer) or out of range. Optional members may be
absent or ``null``; both mean "not given".

:data:`METHODS` maps every method a client (or a remote worker) may call on the
sidecar to its parser; :func:`parse_params` looks one up and raises
:class:`~taskmill.errors.MethodNotFound` for an unknown name.

Checks that need state (is the type declared, is the payload under 1 MiB, does
the task exist) belong to the scheduler, not here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from ..errors import InvalidParams, LimitExceeded, MethodNotFound
from ..filters import DEFAULT_PROGRESS_INTERVAL_MS, EventFilter
from ..model import (
    ACTIVE_STATUSES,
    EVENT_KINDS,
    HISTORY_STATUSES,
    SCHEDULER_EVENT_KINDS,
    TASK_EVENT_KINDS,
    IoBudget,
    JSONValue,
    Recurring,
    RetryPolicy,
    Status,
    Submission,
    parse_priority,
)
from . import _fields as f
from ._fields import Fields
from .messages import ErrorResponse, Response, notification, request

__all__ = [
    "CANCEL_REASONS",
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_PROGRESS_INTERVAL_MS",
    "EVENT_KINDS",
    "MAX_LIST_LIMIT",
    "METHODS",
    "NOTIFICATION_METHODS",
    "PROTOCOL_VERSION",
    "SCHEDULER_EVENT_KINDS",
    "SUBMIT_FIELDS",
    "TASK_EVENT_KINDS",
    "WORKER_ERROR_CODE",
    "CancelWhereParams",
    "DomainParams",
    "DomainSetMaxConcurrencyParams",
    "EventFilter",
    "EventsSubscribeParams",
    "EventsUnsubscribeParams",
    "ExecuteCompleted",
    "ExecuteFailed",
    "ExecuteOutcome",
    "GroupParams",
    "GroupPauseParams",
    "GroupSetValueParams",
    "GroupSetWeightParams",
    "HistoryListParams",
    "HistoryStatsParams",
    "IdParams",
    "NoParams",
    "OptionalDomainParams",
    "Params",
    "PressureSetParams",
    "RateLimitSetParams",
    "RateLimitTargetParams",
    "SessionHelloParams",
    "SetMaxConcurrencyParams",
    "ShutdownParams",
    "SpawnChildParams",
    "SubmitBatchParams",
    "TagsKeysParams",
    "TagsValuesParams",
    "TaskListParams",
    "TaskLookupParams",
    "TaskSetPriorityParams",
    "WorkerIoParams",
    "WorkerProgressParams",
    "WorkerRegisterParams",
    "WorkerTaskType",
    "WorkerUnregisterParams",
    "event_notification",
    "parse_cancel_where",
    "parse_domain",
    "parse_domain_set_max_concurrency",
    "parse_events_subscribe",
    "parse_events_unsubscribe",
    "parse_execute_outcome",
    "parse_group",
    "parse_group_pause",
    "parse_group_set_value",
    "parse_group_set_weight",
    "parse_history_list",
    "parse_history_stats",
    "parse_id",
    "parse_no_params",
    "parse_optional_domain",
    "parse_params",
    "parse_pressure_set",
    "parse_rate_limit_remove",
    "parse_rate_limit_set",
    "parse_session_hello",
    "parse_set_max_concurrency",
    "parse_shutdown",
    "parse_steps",
    "parse_submission",
    "parse_submit_batch",
    "parse_tags_keys",
    "parse_tags_values",
    "parse_task_list",
    "parse_task_lookup",
    "parse_task_set_priority",
    "parse_worker_io",
    "parse_worker_progress",
    "parse_worker_register",
    "parse_worker_spawn_child",
    "parse_worker_unregister",
    "worker_cancel_notification",
    "worker_execute_request",
]

PROTOCOL_VERSION = 1
"""The wire contract version this module implements."""

DEFAULT_LIST_LIMIT = 100
#: Tasks one ``task.submit_batch`` may hold (a documented limit: -32008).
MAX_BATCH = 100_000
#: Batch items checked between two pauses of :func:`parse_steps`.
PARSE_CHUNK = 500
MAX_LIST_LIMIT = 1000

WORKER_ERROR_CODE = -32010
"""The error code a remote worker answers ``worker.execute`` with on failure."""


CANCEL_REASONS = ("preempted", "cancelled", "paused", "shutdown")
"""The ``reason`` values of a ``worker.cancel`` notification."""

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

_ACTIVE = sorted(s.value for s in ACTIVE_STATUSES)
_HISTORY = sorted(s.value for s in HISTORY_STATUSES)


# --------------------------------------------------------------------------
# Parameter types
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NoParams:
    """Methods without parameters: ``sidecar.info``, ``scheduler.pause``,
    ``scheduler.resume``, ``scheduler.metrics``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHelloParams:
    """``session.hello``. The token is checked by the WebSocket transport only."""

    protocol: int
    token: str | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownParams:
    """``sidecar.shutdown``: ``timeout_ms`` overrides the drain timeout."""

    mode: Literal["graceful", "hard"] = "graceful"
    timeout_ms: int | None = None


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


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionalDomainParams:
    """``scheduler.snapshot`` and ``recurring.list``: ``None`` means every domain."""

    domain: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMaxConcurrencyParams:
    """``scheduler.set_max_concurrency``."""

    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainParams:
    """``domain.pause`` and ``domain.resume``."""

    domain: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainSetMaxConcurrencyParams:
    """``domain.set_max_concurrency``: ``value=None`` removes the limit."""

    domain: str
    value: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupParams:
    """``group.resume``."""

    group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPauseParams:
    """``group.pause``: with ``duration_ms`` the group resumes by itself."""

    group: str
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSetValueParams:
    """``group.set_limit`` and ``group.set_min_slots``: ``None`` removes the setting."""

    group: str
    value: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSetWeightParams:
    """``group.set_weight``: ``None`` restores the default weight."""

    group: str
    weight: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitTargetParams:
    """``rate_limit.remove``: exactly one of ``task_type`` and ``group`` is set."""

    task_type: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSetParams:
    """``rate_limit.set``: exactly one of ``task_type`` and ``group`` is set."""

    per_second: float
    task_type: str | None = None
    group: str | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PressureSetParams:
    """``pressure.set``: ``value=None`` removes the source."""

    source: str
    value: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsSubscribeParams:
    """``events.subscribe``."""

    filter: EventFilter = field(default_factory=EventFilter)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsUnsubscribeParams:
    """``events.unsubscribe``."""

    subscription: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerTaskType:
    """One type a remote worker executes, with an optional inline declaration.

    ``config`` is the same table as ``[domains.D.types.N]`` in the config file
    and is checked by whoever declares the type, not here.
    """

    task_type: str
    config: Mapping[str, JSONValue] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRegisterParams:
    """``worker.register``."""

    task_types: tuple[WorkerTaskType, ...]
    concurrency: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerUnregisterParams:
    """``worker.unregister``."""

    worker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerProgressParams:
    """The ``worker.progress`` notification: ``percent`` is 0..1."""

    task_id: int
    percent: float
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerIoParams:
    """The ``worker.io`` notification; members not sent are 0."""

    task_id: int
    io: IoBudget


@dataclass(frozen=True, slots=True, kw_only=True)
class SpawnChildParams:
    """``worker.spawn_child``: ``submission.parent_id`` is ``task_id``."""

    task_id: int
    submission: Submission


Params: TypeAlias = (
    NoParams
    | SessionHelloParams
    | ShutdownParams
    | Submission
    | SubmitBatchParams
    | IdParams
    | TaskLookupParams
    | TaskListParams
    | CancelWhereParams
    | TaskSetPriorityParams
    | HistoryListParams
    | HistoryStatsParams
    | TagsValuesParams
    | TagsKeysParams
    | OptionalDomainParams
    | SetMaxConcurrencyParams
    | DomainParams
    | DomainSetMaxConcurrencyParams
    | GroupParams
    | GroupPauseParams
    | GroupSetValueParams
    | GroupSetWeightParams
    | RateLimitSetParams
    | RateLimitTargetParams
    | PressureSetParams
    | EventsSubscribeParams
    | EventsUnsubscribeParams
    | WorkerRegisterParams
    | WorkerUnregisterParams
    | WorkerProgressParams
    | WorkerIoParams
    | SpawnChildParams
)
"""Every parameter type a :data:`METHODS` parser returns."""


# --------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------

_group = f.string(nonempty=True)
_non_negative = f.integer(0)


def _statuses(allowed: list[str]) -> f.Check[tuple[Status, ...]]:
    one_or_list = f.one_or_list(f.choice(allowed))

    def check(value: Any, name: str) -> tuple[Status, ...]:
        return tuple(Status(s) for s in one_or_list(value, name))

    return check


_active_statuses = _statuses(_ACTIVE)
_history_statuses = _statuses(_HISTORY)


def _io_budget(value: Any, name: str) -> IoBudget:
    return IoBudget.from_mapping(f.obj(value, name), name)


def _retry(value: Any, name: str) -> RetryPolicy:
    return RetryPolicy.from_mapping(f.obj(value, name), name)


def _recurring(value: Any, name: str) -> Recurring:
    r = Fields(
        f.obj(value, name), ("interval_ms", "max_occurrences", "initial_delay_ms"), path=name
    )
    return Recurring(
        interval_ms=r.required("interval_ms", f.integer(1)),
        max_occurrences=r.optional("max_occurrences", f.integer(1)),
        initial_delay_ms=r.optional("initial_delay_ms", _non_negative),
    )


# --------------------------------------------------------------------------
# Session and sidecar
# --------------------------------------------------------------------------


def parse_no_params(params: Mapping[str, Any]) -> NoParams:
    """Params of a method that takes none: only ``{}`` is accepted."""
    Fields(params, ())
    return NoParams()


def parse_session_hello(params: Mapping[str, Any]) -> SessionHelloParams:
    """``session.hello {token?, protocol, client?}``; ``protocol`` must be 1.

    Raises:
        InvalidParams: naming ``protocol`` for any version but 1.
    """
    p = Fields(params, ("token", "protocol", "client"))
    protocol = p.required("protocol", f.integer(0))
    if protocol != PROTOCOL_VERSION:
        raise InvalidParams(
            f"unsupported protocol {protocol}; this sidecar speaks protocol {PROTOCOL_VERSION}",
            field="protocol",
        )
    return SessionHelloParams(
        protocol=protocol,
        token=p.optional("token", f.string()),
        client=p.optional("client", f.string()),
    )


def parse_shutdown(params: Mapping[str, Any]) -> ShutdownParams:
    """``sidecar.shutdown {mode?: "graceful"|"hard", timeout_ms?}``."""
    p = Fields(params, ("mode", "timeout_ms"))
    mode = p.optional("mode", f.choice(("graceful", "hard"))) or "graceful"
    return ShutdownParams(
        mode=cast(Literal["graceful", "hard"], mode),
        timeout_ms=p.optional("timeout_ms", _non_negative),
    )


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


def _submission_from(p: Fields, *, parent_id: int | None = None) -> Submission:
    task_type = p.required("task_type", f.task_type)
    if p.given("run_after_ms") and p.given("run_at"):
        raise InvalidParams(
            f"give either {p.name('run_after_ms')} or {p.name('run_at')}, not both",
            field=p.name("run_at"),
        )
    ttl_from = p.optional("ttl_from", f.choice(("submission", "first_attempt")))
    on_dependency_failure = p.optional(
        "on_dependency_failure", f.choice(("cancel", "fail", "ignore"))
    )
    on_duplicate = p.optional("on_duplicate", f.choice(("skip", "supersede"))) or "skip"
    if parent_id is None:
        parent_id = p.optional("parent_id", f.task_id)
    return Submission(
        task_type=task_type,
        payload=p.params.get("payload"),
        key=p.optional("key", f.string(nonempty=True)),
        label=p.optional("label", f.string()),
        priority=p.optional("priority", parse_priority),
        group=p.optional("group", _group),
        tags=p.optional("tags", f.str_map),
        ttl_ms=p.optional("ttl_ms", _non_negative),
        ttl_from=cast(Literal["submission", "first_attempt"] | None, ttl_from),
        run_after_ms=p.optional("run_after_ms", _non_negative),
        run_at=p.optional("run_at", _non_negative),
        depends_on=p.optional("depends_on", f.list_of(f.task_id)),
        on_dependency_failure=cast(
            Literal["cancel", "fail", "ignore"] | None, on_dependency_failure
        ),
        expected_io=p.optional("expected_io", _io_budget),
        retry=p.optional("retry", _retry),
        recurring=p.optional("recurring", _recurring),
        on_duplicate=cast(Literal["skip", "supersede"], on_duplicate),
        parent_id=parent_id,
        fail_fast=p.optional("fail_fast", f.boolean),
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
    return _submission_from(Fields(params, SUBMIT_FIELDS, path=path))


def parse_submit_batch(params: Mapping[str, Any]) -> SubmitBatchParams:
    """``task.submit_batch {tasks: [submit params]}``; errors name ``tasks[i].field``.

    Raises:
        LimitExceeded: more than :data:`MAX_BATCH` tasks (``batch_length``).
    """
    steps = _submit_batch_steps(params)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: SubmitBatchParams = done.value
            return result


def _submit_batch_steps(params: Mapping[str, Any]) -> Generator[None, None, SubmitBatchParams]:
    """:func:`parse_submit_batch`, pausing (``yield``) every :data:`PARSE_CHUNK` items."""
    p = Fields(params, ("tasks",))
    tasks = p.required("tasks", _raw_list)
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
        out.append(parse_submission(f.obj(value, name), path=name))
    return SubmitBatchParams(tasks=tuple(out))


def _raw_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise f.wrong_type(field, "an array", value)
    return value


def parse_id(params: Mapping[str, Any]) -> IdParams:
    """``{id}``: a task or schedule id."""
    return IdParams(id=Fields(params, ("id",)).required("id", f.task_id))


def parse_task_lookup(params: Mapping[str, Any]) -> TaskLookupParams:
    """``task.lookup {task_type, key}``."""
    p = Fields(params, ("task_type", "key"))
    return TaskLookupParams(
        task_type=p.required("task_type", f.task_type), key=p.required("key", f.string())
    )


def _limit(p: Fields) -> int:
    limit = p.optional("limit", f.integer(0, MAX_LIST_LIMIT))
    return DEFAULT_LIST_LIMIT if limit is None else limit


def parse_task_list(params: Mapping[str, Any]) -> TaskListParams:
    """``task.list {status?, domain?, task_type?, group?, tags?, tag_prefix?, limit?, offset?}``.

    ``status`` is one active status or a list of them; ``limit`` is 0..1000
    (default 100).
    """
    p = Fields(
        params,
        ("status", "domain", "task_type", "group", "tags", "tag_prefix", "limit", "offset"),
    )
    return TaskListParams(
        status=p.optional("status", _active_statuses),
        domain=p.optional("domain", f.domain),
        task_type=p.optional("task_type", f.task_type),
        group=p.optional("group", _group),
        tags=p.optional("tags", f.str_map),
        tag_prefix=p.optional("tag_prefix", f.string()),
        limit=_limit(p),
        offset=p.optional("offset", _non_negative) or 0,
    )


def parse_cancel_where(params: Mapping[str, Any]) -> CancelWhereParams:
    """``task.cancel_where {domain?, task_type?, group?, status?, tags?, tag_prefix?}``.

    Raises:
        InvalidParams: when no filter constrains the selection (empty ``tags``
            and an empty ``tag_prefix`` match everything, so they do not count).
    """
    p = Fields(params, ("domain", "task_type", "group", "status", "tags", "tag_prefix"))
    out = CancelWhereParams(
        domain=p.optional("domain", f.domain),
        task_type=p.optional("task_type", f.task_type),
        group=p.optional("group", _group),
        status=p.optional("status", _active_statuses),
        tags=p.optional("tags", f.str_map),
        tag_prefix=p.optional("tag_prefix", f.string()),
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
    p = Fields(params, ("id", "priority"))
    return TaskSetPriorityParams(
        id=p.required("id", f.task_id), priority=p.required("priority", parse_priority)
    )


def parse_history_list(params: Mapping[str, Any]) -> HistoryListParams:
    """``history.list {status?, task_type?, key?, limit?, offset?}``.

    ``status`` is one history status or a list of them.
    """
    p = Fields(params, ("status", "task_type", "key", "limit", "offset"))
    return HistoryListParams(
        status=p.optional("status", _history_statuses),
        task_type=p.optional("task_type", f.task_type),
        key=p.optional("key", f.string()),
        limit=_limit(p),
        offset=p.optional("offset", _non_negative) or 0,
    )


def parse_history_stats(params: Mapping[str, Any]) -> HistoryStatsParams:
    """``history.stats {task_type}``."""
    p = Fields(params, ("task_type",))
    return HistoryStatsParams(task_type=p.required("task_type", f.task_type))


def parse_tags_values(params: Mapping[str, Any]) -> TagsValuesParams:
    """``tags.values {key, domain?}``."""
    p = Fields(params, ("key", "domain"))
    return TagsValuesParams(
        key=p.required("key", f.string()), domain=p.optional("domain", f.domain)
    )


def parse_tags_keys(params: Mapping[str, Any]) -> TagsKeysParams:
    """``tags.keys {prefix, domain?}``."""
    p = Fields(params, ("prefix", "domain"))
    return TagsKeysParams(
        prefix=p.required("prefix", f.string()), domain=p.optional("domain", f.domain)
    )


# --------------------------------------------------------------------------
# Scheduler, domains, groups, rate limits, pressure
# --------------------------------------------------------------------------


def parse_optional_domain(params: Mapping[str, Any]) -> OptionalDomainParams:
    """``{domain?}``: ``scheduler.snapshot`` and ``recurring.list``."""
    return OptionalDomainParams(domain=Fields(params, ("domain",)).optional("domain", f.domain))


def parse_set_max_concurrency(params: Mapping[str, Any]) -> SetMaxConcurrencyParams:
    """``scheduler.set_max_concurrency {value}``: a non-negative integer."""
    return SetMaxConcurrencyParams(
        value=Fields(params, ("value",)).required("value", _non_negative)
    )


def parse_domain(params: Mapping[str, Any]) -> DomainParams:
    """``{domain}``: ``domain.pause`` and ``domain.resume``."""
    return DomainParams(domain=Fields(params, ("domain",)).required("domain", f.domain))


def parse_domain_set_max_concurrency(params: Mapping[str, Any]) -> DomainSetMaxConcurrencyParams:
    """``domain.set_max_concurrency {domain, value}``: ``value`` >= 0 or null (removes)."""
    p = Fields(params, ("domain", "value"))
    return DomainSetMaxConcurrencyParams(
        domain=p.required("domain", f.domain), value=p.nullable("value", _non_negative)
    )


def parse_group(params: Mapping[str, Any]) -> GroupParams:
    """``{group}``: ``group.resume``."""
    return GroupParams(group=Fields(params, ("group",)).required("group", _group))


def parse_group_pause(params: Mapping[str, Any]) -> GroupPauseParams:
    """``group.pause {group, duration_ms?}``."""
    p = Fields(params, ("group", "duration_ms"))
    return GroupPauseParams(
        group=p.required("group", _group), duration_ms=p.optional("duration_ms", _non_negative)
    )


def parse_group_set_value(params: Mapping[str, Any]) -> GroupSetValueParams:
    """``{group, value}``: ``group.set_limit`` and ``group.set_min_slots``.

    ``value`` is a non-negative integer or null (removes the setting).
    """
    p = Fields(params, ("group", "value"))
    return GroupSetValueParams(
        group=p.required("group", _group), value=p.nullable("value", _non_negative)
    )


def parse_group_set_weight(params: Mapping[str, Any]) -> GroupSetWeightParams:
    """``group.set_weight {group, weight}``: an integer >= 1 or null (default weight)."""
    p = Fields(params, ("group", "weight"))
    return GroupSetWeightParams(
        group=p.required("group", _group), weight=p.nullable("weight", f.integer(1))
    )


def _rate_limit_target(p: Fields) -> tuple[str | None, str | None]:
    task_type = p.optional("task_type", f.task_type)
    group = p.optional("group", _group)
    if task_type is None and group is None:
        raise InvalidParams("give exactly one of task_type or group", field="task_type")
    if task_type is not None and group is not None:
        raise InvalidParams("give exactly one of task_type or group, not both", field="group")
    return task_type, group


def parse_rate_limit_set(params: Mapping[str, Any]) -> RateLimitSetParams:
    """``rate_limit.set {task_type? xor group?, per_second, burst?}``.

    ``per_second`` is a number > 0; ``burst`` an integer >= 1.

    Raises:
        InvalidParams: when neither or both of ``task_type`` and ``group`` are given.
    """
    p = Fields(params, ("task_type", "group", "per_second", "burst"))
    task_type, group = _rate_limit_target(p)
    return RateLimitSetParams(
        task_type=task_type,
        group=group,
        per_second=p.required("per_second", f.number(0, exclusive_minimum=True)),
        burst=p.optional("burst", f.integer(1)),
    )


def parse_rate_limit_remove(params: Mapping[str, Any]) -> RateLimitTargetParams:
    """``rate_limit.remove {task_type? xor group?}``."""
    task_type, group = _rate_limit_target(Fields(params, ("task_type", "group")))
    return RateLimitTargetParams(task_type=task_type, group=group)


def parse_pressure_set(params: Mapping[str, Any]) -> PressureSetParams:
    """``pressure.set {source, value}``: ``value`` 0..1 or null (removes the source)."""
    p = Fields(params, ("source", "value"))
    return PressureSetParams(
        source=p.required("source", f.string(nonempty=True)),
        value=p.nullable("value", f.number(0, 1)),
    )


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------

_FILTER_FIELDS = (
    "kinds",
    "domains",
    "task_types",
    "task_ids",
    "tags",
    "progress_interval_ms",
)


def _event_filter(value: Any, name: str) -> EventFilter:
    p = Fields(f.obj(value, name), _FILTER_FIELDS, path=name)
    kinds = p.optional("kinds", f.list_of(f.choice(sorted(EVENT_KINDS))))
    domains = p.optional("domains", f.list_of(f.domain))
    task_types = p.optional("task_types", f.list_of(f.task_type))
    task_ids = p.optional("task_ids", f.list_of(f.task_id))
    interval = p.optional("progress_interval_ms", _non_negative)
    return EventFilter(
        kinds=None if kinds is None else frozenset(kinds),
        domains=None if domains is None else frozenset(domains),
        task_types=None if task_types is None else frozenset(task_types),
        task_ids=None if task_ids is None else frozenset(task_ids),
        tags=p.optional("tags", f.str_map),
        progress_interval_ms=DEFAULT_PROGRESS_INTERVAL_MS if interval is None else interval,
    )


def parse_events_subscribe(params: Mapping[str, Any]) -> EventsSubscribeParams:
    """``events.subscribe {filter?}``: kinds must be event kinds of section 6."""
    hint = "filter members go inside 'filter'"
    p = Fields(params, ("filter",), hints=dict.fromkeys(_FILTER_FIELDS, hint))
    event_filter = p.optional("filter", _event_filter)
    return EventsSubscribeParams(filter=event_filter or EventFilter())


def parse_events_unsubscribe(params: Mapping[str, Any]) -> EventsUnsubscribeParams:
    """``events.unsubscribe {subscription}``."""
    p = Fields(params, ("subscription",))
    return EventsUnsubscribeParams(subscription=p.required("subscription", _non_negative))


# --------------------------------------------------------------------------
# Remote workers (section 8)
# --------------------------------------------------------------------------


def _worker_task_type(value: Any, name: str) -> WorkerTaskType:
    if isinstance(value, str):
        return WorkerTaskType(task_type=f.task_type(value, name))
    if not isinstance(value, dict):
        raise f.wrong_type(name, "a task type or an object {task_type, config?}", value)
    p = Fields(value, ("task_type", "config"), path=name)
    return WorkerTaskType(
        task_type=p.required("task_type", f.task_type), config=p.optional("config", f.obj)
    )


def parse_worker_register(params: Mapping[str, Any]) -> WorkerRegisterParams:
    """``worker.register {task_types: [type | {task_type, config?}], concurrency?: 1}``.

    Raises:
        InvalidParams: for an empty or repeating ``task_types``.
    """
    p = Fields(params, ("task_types", "concurrency"))
    task_types = p.required("task_types", f.list_of(_worker_task_type))
    if not task_types:
        raise InvalidParams("task_types must not be empty", field="task_types")
    seen: set[str] = set()
    for i, item in enumerate(task_types):
        if item.task_type in seen:
            raise InvalidParams(
                f"task_types[{i}] repeats {item.task_type!r}", field=f"task_types[{i}]"
            )
        seen.add(item.task_type)
    return WorkerRegisterParams(
        task_types=task_types, concurrency=p.optional("concurrency", f.integer(1)) or 1
    )


def parse_worker_unregister(params: Mapping[str, Any]) -> WorkerUnregisterParams:
    """``worker.unregister {worker}``."""
    p = Fields(params, ("worker",))
    return WorkerUnregisterParams(worker=p.required("worker", f.string(nonempty=True)))


def parse_worker_progress(params: Mapping[str, Any]) -> WorkerProgressParams:
    """The ``worker.progress {task_id, percent, message?}`` notification."""
    p = Fields(params, ("task_id", "percent", "message"))
    return WorkerProgressParams(
        task_id=p.required("task_id", f.task_id),
        percent=p.required("percent", f.number(0, 1)),
        message=p.optional("message", f.string()),
    )


def parse_worker_io(params: Mapping[str, Any]) -> WorkerIoParams:
    """The ``worker.io {task_id, disk_read?, disk_write?, net_rx?, net_tx?}`` notification."""
    counters = ("disk_read", "disk_write", "net_rx", "net_tx")
    p = Fields(params, ("task_id", *counters))
    amounts = {name: p.optional(name, _non_negative) or 0 for name in counters}
    return WorkerIoParams(task_id=p.required("task_id", f.task_id), io=IoBudget(**amounts))


def parse_worker_spawn_child(params: Mapping[str, Any]) -> SpawnChildParams:
    """``worker.spawn_child {task_id, ...submit params}``.

    The child's ``parent_id`` is ``task_id``; giving ``parent_id`` too is refused.
    """
    allowed = (SUBMIT_FIELDS - {"parent_id"}) | {"task_id"}
    p = Fields(params, allowed, hints={"parent_id": "the parent is task_id"})
    task_id = p.required("task_id", f.task_id)
    return SpawnChildParams(task_id=task_id, submission=_submission_from(p, parent_id=task_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteCompleted:
    """A worker completed its task with ``result``."""

    result: JSONValue


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteFailed:
    """A worker failed its task (or answered ``worker.execute`` malformed)."""

    message: str
    retryable: bool = True
    retry_after_ms: int | None = None
    code: int = WORKER_ERROR_CODE


ExecuteOutcome: TypeAlias = ExecuteCompleted | ExecuteFailed


def parse_execute_outcome(reply: Response | ErrorResponse) -> ExecuteOutcome:
    """Interpret a worker's answer to ``worker.execute``. Never raises.

    A result must be ``{"result": value}``; anything else is a retryable failure
    (like an exception escaping a Python executor). An error's ``data`` may
    carry ``retryable`` (default true) and ``retry_after_ms``.

    Args:
        reply: The response whose id is the ``worker.execute`` request's.

    Returns:
        :class:`ExecuteCompleted` or :class:`ExecuteFailed`.
    """
    if isinstance(reply, Response):
        result = reply.result
        if isinstance(result, dict) and set(result) == {"result"}:
            return ExecuteCompleted(result=result["result"])
        return ExecuteFailed(
            message='malformed worker.execute result: expected {"result": <value>}',
            retryable=True,
        )
    retryable, retry_after_ms = True, None
    data = reply.data
    if isinstance(data, dict):
        if isinstance(data.get("retryable"), bool):
            retryable = data["retryable"]
        after = data.get("retry_after_ms")
        if isinstance(after, int) and not isinstance(after, bool) and 0 <= after <= f.INT64_MAX:
            retry_after_ms = after
    return ExecuteFailed(
        message=reply.message, retryable=retryable, retry_after_ms=retry_after_ms, code=reply.code
    )


def worker_execute_request(
    id: str, *, worker: str, task: Mapping[str, JSONValue], attempt: int
) -> dict[str, Any]:
    """Build the ``worker.execute`` request the sidecar sends to a worker.

    Args:
        id: A sidecar request id, ``"s-<n>"``.
        worker: The worker id from ``worker.register``.
        task: The task record (``TaskRecord.to_dict()``).
        attempt: 1 for the first attempt.
    """
    return request(id, "worker.execute", {"worker": worker, "task": task, "attempt": attempt})


def worker_cancel_notification(task_id: int, reason: str) -> dict[str, Any]:
    """Build the ``worker.cancel {task_id, reason}`` notification.

    Raises:
        ValueError: for a reason not in :data:`CANCEL_REASONS` (a bug).
    """
    if reason not in CANCEL_REASONS:
        raise ValueError(f"unknown cancel reason {reason!r}")
    return notification("worker.cancel", {"task_id": task_id, "reason": reason})


def event_notification(params: Mapping[str, JSONValue]) -> dict[str, Any]:
    """Build an ``event`` notification from its params (``subscription``, ``seq``,
    ``at``, ``kind``, ...)."""
    return notification("event", params)


# --------------------------------------------------------------------------
# Method table
# --------------------------------------------------------------------------

METHODS: dict[str, Callable[[Mapping[str, Any]], Params]] = {
    "session.hello": parse_session_hello,
    "sidecar.info": parse_no_params,
    "sidecar.shutdown": parse_shutdown,
    "task.submit": parse_submission,
    "task.submit_batch": parse_submit_batch,
    "task.get": parse_id,
    "task.lookup": parse_task_lookup,
    "task.list": parse_task_list,
    "task.cancel": parse_id,
    "task.cancel_where": parse_cancel_where,
    "task.set_priority": parse_task_set_priority,
    "task.retry_dead_letter": parse_id,
    "history.list": parse_history_list,
    "history.stats": parse_history_stats,
    "dependencies.get": parse_id,
    "tags.values": parse_tags_values,
    "tags.keys": parse_tags_keys,
    "scheduler.snapshot": parse_optional_domain,
    "scheduler.pause": parse_no_params,
    "scheduler.resume": parse_no_params,
    "scheduler.set_max_concurrency": parse_set_max_concurrency,
    "scheduler.metrics": parse_no_params,
    "domain.pause": parse_domain,
    "domain.resume": parse_domain,
    "domain.set_max_concurrency": parse_domain_set_max_concurrency,
    "group.pause": parse_group_pause,
    "group.resume": parse_group,
    "group.set_limit": parse_group_set_value,
    "group.set_weight": parse_group_set_weight,
    "group.set_min_slots": parse_group_set_value,
    "rate_limit.set": parse_rate_limit_set,
    "rate_limit.remove": parse_rate_limit_remove,
    "recurring.list": parse_optional_domain,
    "recurring.pause": parse_id,
    "recurring.resume": parse_id,
    "recurring.cancel": parse_id,
    "pressure.set": parse_pressure_set,
    "events.subscribe": parse_events_subscribe,
    "events.unsubscribe": parse_events_unsubscribe,
    "worker.register": parse_worker_register,
    "worker.unregister": parse_worker_unregister,
    "worker.progress": parse_worker_progress,
    "worker.io": parse_worker_io,
    "worker.spawn_child": parse_worker_spawn_child,
}
"""Every method a peer may call on the sidecar, mapped to its params parser."""

NOTIFICATION_METHODS = frozenset({"worker.progress", "worker.io"})
"""Methods peers send as notifications (no ``id``); the rest are requests."""


def parse_steps(method: str, params: Mapping[str, Any]) -> Generator[None, None, Params]:
    """:func:`parse_params` as a generator that pauses (``yield``) between
    chunks of a long list, so a caller on an event loop can let others run
    while a 100,000-task batch is checked (sans-I/O: the caller decides what
    to do at each pause)."""
    if method == "task.submit_batch":
        return (yield from _submit_batch_steps(params))
    return parse_params(method, params)


def parse_params(method: str, params: Mapping[str, Any]) -> Params:
    """Check ``params`` for ``method``.

    Raises:
        MethodNotFound: when ``method`` is not in :data:`METHODS`.
        InvalidParams: naming the field at fault.
    """
    parser = METHODS.get(method)
    if parser is None:
        close = difflib.get_close_matches(method, sorted(METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MethodNotFound(f"unknown method {method!r}{hint}")
    return parser(params)
