"""The method table of the wire contract (protocol sections 5, 6 and 8).

:data:`METHODS` maps every method a client (or a remote worker) may call on
the sidecar to the parser of its ``params``; :func:`parse_params` looks one up
and raises :class:`~taskmill.errors.MethodNotFound` for an unknown name, and
:func:`parse_steps` does the same as a generator that pauses inside a big
``task.submit_batch``.

The parsers live in :mod:`taskmill.protocol.params`, one module per family
(``session``, ``tasks``, ``control``, ``events``, ``workers``), and are
re-exported here. Each takes a request's raw ``params`` object and returns a
frozen dataclass (or a :class:`~taskmill.model.Submission` for
``task.submit``), raising :class:`~taskmill.errors.InvalidParams` naming the
field at fault for a member that is unknown (``"unknown field 'priorty' (did
you mean 'priority'?)"``), missing, ``null`` where a value is required, of the
wrong type (a boolean is not an integer, ``1.0`` is not an integer) or out of
range. Optional members may be absent or ``null``; both mean "not given".

Checks that need state (is the type declared, is the payload under 1 MiB, does
the task exist) belong to the scheduler, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, TypeAlias

from .._checks import did_you_mean
from ..errors import MethodNotFound
from ..filters import DEFAULT_PROGRESS_INTERVAL_MS, EventFilter
from ..model import EVENT_KINDS, SCHEDULER_EVENT_KINDS, TASK_EVENT_KINDS, Submission
from .messages import PROTOCOL_VERSION as PROTOCOL_VERSION
from .params.control import (
    DomainParams,
    DomainSetMaxConcurrencyParams,
    GroupParams,
    GroupPauseParams,
    GroupSetValueParams,
    GroupSetWeightParams,
    OptionalDomainParams,
    PressureSetParams,
    RateLimitSetParams,
    RateLimitTargetParams,
    SetMaxConcurrencyParams,
    parse_domain,
    parse_domain_set_max_concurrency,
    parse_group,
    parse_group_pause,
    parse_group_set_value,
    parse_group_set_weight,
    parse_optional_domain,
    parse_pressure_set,
    parse_rate_limit_remove,
    parse_rate_limit_set,
    parse_set_max_concurrency,
)
from .params.events import (
    EventsSubscribeParams,
    EventsUnsubscribeParams,
    event_notification,
    parse_events_subscribe,
    parse_events_unsubscribe,
)
from .params.session import (
    SHUTDOWN_MODES,
    NoParams,
    SessionHelloParams,
    ShutdownMode,
    ShutdownParams,
    parse_no_params,
    parse_session_hello,
    parse_shutdown,
)
from .params.tasks import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    SUBMIT_FIELDS,
    CancelWhereParams,
    HistoryListParams,
    HistoryStatsParams,
    IdParams,
    SubmitBatchParams,
    TagsKeysParams,
    TagsValuesParams,
    TaskListParams,
    TaskLookupParams,
    TaskSetPriorityParams,
    parse_cancel_where,
    parse_history_list,
    parse_history_stats,
    parse_id,
    parse_submission,
    parse_submit_batch,
    parse_tags_keys,
    parse_tags_values,
    parse_task_list,
    parse_task_lookup,
    parse_task_set_priority,
    submit_batch_steps,
)
from .params.workers import (
    CANCEL_REASONS,
    WORKER_ERROR_CODE,
    CancelReason,
    ExecuteCompleted,
    ExecuteFailed,
    ExecuteOutcome,
    SpawnChildParams,
    WorkerIoParams,
    WorkerProgressParams,
    WorkerRegisterParams,
    WorkerTaskType,
    WorkerUnregisterParams,
    cancel_reason,
    parse_execute_outcome,
    parse_worker_io,
    parse_worker_progress,
    parse_worker_register,
    parse_worker_spawn_child,
    parse_worker_unregister,
    worker_cancel_notification,
    worker_execute_request,
)

__all__ = [
    "CANCEL_REASONS",
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_PROGRESS_INTERVAL_MS",
    "EVENT_KINDS",
    "MAX_LIST_LIMIT",
    "METHODS",
    "NOTIFICATION_METHODS",
    "SCHEDULER_EVENT_KINDS",
    "SHUTDOWN_MODES",
    "SUBMIT_FIELDS",
    "TASK_EVENT_KINDS",
    "WORKER_ERROR_CODE",
    "CancelReason",
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
    "Parser",
    "PressureSetParams",
    "RateLimitSetParams",
    "RateLimitTargetParams",
    "SessionHelloParams",
    "SetMaxConcurrencyParams",
    "ShutdownMode",
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
    "cancel_reason",
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
    "submit_batch_steps",
    "worker_cancel_notification",
    "worker_execute_request",
]

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

Parser: TypeAlias = Callable[[Mapping[str, Any]], Params]
"""A method's params parser: the raw ``params`` object in, a checked value out."""

METHODS: dict[str, Parser] = {
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
        return (yield from submit_batch_steps(params))
    return parse_params(method, params)


def parse_params(method: str, params: Mapping[str, Any]) -> Params:
    """Check ``params`` for ``method``.

    Raises:
        MethodNotFound: when ``method`` is not in :data:`METHODS`.
        InvalidParams: naming the field at fault.
    """
    parser = METHODS.get(method)
    if parser is None:
        raise MethodNotFound(f"unknown method {method!r}{did_you_mean(method, METHODS)}")
    return parser(params)
