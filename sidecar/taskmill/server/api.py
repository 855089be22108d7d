"""The sidecar's methods: validated params in, scheduler calls, wire results out.

:data:`HANDLERS` is the method table: for every method of the contract, the
params parser of :mod:`taskmill.protocol.params` and the handler that takes
what it returns (bound by :func:`~taskmill.server.session.bind`, so mypy
checks that they agree). Each handler gets a :class:`~taskmill.server.session.Call`
(scheduler, session, host) and returns the JSON result. Errors are
:class:`~taskmill.errors.TaskmillError` subclasses, which the session turns
into error responses. The sidecar hands the table to its sessions
(``server/app.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..errors import InvalidParams, LimitExceeded, NotFound, UnknownTaskType
from ..filters import TaskFilter
from ..model import Submission
from ..protocol.params.control import (
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
from ..protocol.params.events import (
    EventsSubscribeParams,
    EventsUnsubscribeParams,
    parse_events_subscribe,
    parse_events_unsubscribe,
)
from ..protocol.params.session import (
    NoParams,
    SessionHelloParams,
    ShutdownParams,
    parse_no_params,
    parse_session_hello,
    parse_shutdown,
)
from ..protocol.params.tasks import (
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
from ..protocol.params.workers import (
    SpawnChildParams,
    WorkerIoParams,
    WorkerProgressParams,
    WorkerRegisterParams,
    WorkerUnregisterParams,
    parse_worker_io,
    parse_worker_progress,
    parse_worker_register,
    parse_worker_spawn_child,
    parse_worker_unregister,
)
from .session import MAX_WORKER_TYPES, Call, Methods, bind, bind_notification

__all__ = ["HANDLERS", "JSONObject"]

JSONObject = Mapping[str, object]
"""A result whose members the handler passes on as they are (records,
snapshots); the codec checks them."""


# -- session and sidecar -----------------------------------------------------


async def _session_hello(call: Call, params: SessionHelloParams) -> JSONObject:
    return call.session.hello(params)


async def _sidecar_info(call: Call, params: NoParams) -> JSONObject:
    return call.host.info()


async def _sidecar_shutdown(call: Call, params: ShutdownParams) -> JSONObject:
    call.host.request_shutdown(params.mode, params.timeout_ms)
    return {}


# -- tasks -------------------------------------------------------------------


async def _task_submit(call: Call, params: Submission) -> JSONObject:
    (res,) = await call.scheduler.submit_many([params])
    return res.to_dict()


async def _task_submit_batch(call: Call, params: SubmitBatchParams) -> JSONObject:
    if not params.tasks:
        return {"outcomes": []}
    results = await call.scheduler.submit_many(list(params.tasks))
    outcomes = []
    for i, result in enumerate(results):
        if i and i % 2000 == 0:
            await asyncio.sleep(0)  # 100,000 outcomes take ~50 ms to build
        outcomes.append(result.to_dict())
    return {"outcomes": outcomes}


async def _task_get(call: Call, params: IdParams) -> JSONObject:
    return (await call.scheduler.get(params.id)).to_dict()


async def _task_lookup(call: Call, params: TaskLookupParams) -> JSONObject:
    where, rec = await call.scheduler.lookup(params.task_type, params.key)
    out: dict[str, object] = {"where": where}
    if rec is not None:
        out["record"] = rec.to_dict()
    return out


def _filter(params: TaskListParams | CancelWhereParams) -> TaskFilter:
    return TaskFilter(
        status=None if params.status is None else [st.value for st in params.status],
        domain=params.domain,
        task_type=params.task_type,
        group=params.group,
        tags=params.tags or None,
        tag_prefix=params.tag_prefix or None,
    )


async def _task_list(call: Call, params: TaskListParams) -> JSONObject:
    tasks, total = await call.scheduler.list_tasks(
        _filter(params), limit=params.limit, offset=params.offset
    )
    return {"tasks": [t.to_dict() for t in tasks], "total": total}


async def _task_cancel(call: Call, params: IdParams) -> dict[str, bool]:
    return {"cancelled": await call.scheduler.cancel(params.id)}


async def _task_cancel_where(call: Call, params: CancelWhereParams) -> dict[str, list[int]]:
    return {"cancelled": await call.scheduler.cancel_where(_filter(params))}


async def _task_set_priority(call: Call, params: TaskSetPriorityParams) -> dict[str, bool]:
    return {"updated": await call.scheduler.set_priority(params.id, params.priority)}


async def _task_retry_dead_letter(call: Call, params: IdParams) -> JSONObject:
    return (await call.scheduler.retry_dead_letter(params.id)).to_dict()


async def _history_list(call: Call, params: HistoryListParams) -> JSONObject:
    tasks, total = await call.scheduler.history(
        status=None if params.status is None else [st.value for st in params.status],
        task_type=params.task_type,
        key=params.key,
        limit=params.limit,
        offset=params.offset,
    )
    return {"tasks": [t.to_dict() for t in tasks], "total": total}


async def _history_stats(call: Call, params: HistoryStatsParams) -> JSONObject:
    return await call.scheduler.history_stats(params.task_type)


async def _dependencies_get(call: Call, params: IdParams) -> dict[str, list[int]]:
    return await call.scheduler.dependencies(params.id)


async def _tags_values(call: Call, params: TagsValuesParams) -> JSONObject:
    return {"values": await call.scheduler.tag_values(params.key, domain=params.domain)}


async def _tags_keys(call: Call, params: TagsKeysParams) -> dict[str, list[str]]:
    return {"keys": await call.scheduler.tag_keys(params.prefix, domain=params.domain)}


# -- scheduler control -------------------------------------------------------


async def _scheduler_snapshot(call: Call, params: OptionalDomainParams) -> JSONObject:
    return await call.scheduler.snapshot(params.domain)


async def _scheduler_pause(call: Call, params: NoParams) -> JSONObject:
    await call.scheduler.pause()
    return {}


async def _scheduler_resume(call: Call, params: NoParams) -> JSONObject:
    await call.scheduler.resume()
    return {}


async def _scheduler_set_max_concurrency(call: Call, params: SetMaxConcurrencyParams) -> JSONObject:
    call.scheduler.set_max_concurrency(params.value)
    return {}


async def _scheduler_metrics(call: Call, params: NoParams) -> JSONObject:
    return await call.scheduler.metrics_snapshot()


async def _domain_set_max_concurrency(
    call: Call, params: DomainSetMaxConcurrencyParams
) -> JSONObject:
    call.scheduler.set_domain_max_concurrency(params.domain, params.value)
    return {}


async def _domain_pause(call: Call, params: DomainParams) -> dict[str, int]:
    return {"count": await call.scheduler.pause_domain(params.domain)}


async def _domain_resume(call: Call, params: DomainParams) -> dict[str, int]:
    return {"count": await call.scheduler.resume_domain(params.domain)}


async def _group_pause(call: Call, params: GroupPauseParams) -> dict[str, int]:
    return await call.scheduler.pause_group(params.group, params.duration_ms)


async def _group_resume(call: Call, params: GroupParams) -> dict[str, int]:
    return {"resumed": await call.scheduler.resume_group(params.group)}


async def _group_set_limit(call: Call, params: GroupSetValueParams) -> JSONObject:
    call.scheduler.set_group_limit(params.group, params.value)
    return {}


async def _group_set_weight(call: Call, params: GroupSetWeightParams) -> JSONObject:
    call.scheduler.set_group_weight(params.group, params.weight)
    return {}


async def _group_set_min_slots(call: Call, params: GroupSetValueParams) -> JSONObject:
    call.scheduler.set_group_min_slots(params.group, params.value)
    return {}


async def _rate_limit_set(call: Call, params: RateLimitSetParams) -> JSONObject:
    call.scheduler.set_rate_limit(
        task_type=params.task_type,
        group=params.group,
        per_second=params.per_second,
        burst=params.burst,
    )
    return {}


async def _rate_limit_remove(call: Call, params: RateLimitTargetParams) -> JSONObject:
    call.scheduler.remove_rate_limit(task_type=params.task_type, group=params.group)
    return {}


async def _recurring_list(call: Call, params: OptionalDomainParams) -> JSONObject:
    return {"schedules": await call.scheduler.recurring_list(params.domain)}


async def _recurring_pause(call: Call, params: IdParams) -> JSONObject:
    await call.scheduler.pause_recurring(params.id)
    return {}


async def _recurring_resume(call: Call, params: IdParams) -> JSONObject:
    await call.scheduler.resume_recurring(params.id)
    return {}


async def _recurring_cancel(call: Call, params: IdParams) -> JSONObject:
    await call.scheduler.cancel_recurring(params.id)
    return {}


async def _pressure_set(call: Call, params: PressureSetParams) -> JSONObject:
    call.scheduler.set_pressure(params.source, params.value)
    return {}


# -- events ------------------------------------------------------------------


async def _events_subscribe(call: Call, params: EventsSubscribeParams) -> dict[str, int]:
    return {"subscription": call.session.subscribe(params.filter)}


async def _events_unsubscribe(call: Call, params: EventsUnsubscribeParams) -> JSONObject:
    if not call.session.unsubscribe(params.subscription):
        raise NotFound(f"no subscription {params.subscription}", field="subscription")
    return {}


# -- remote workers ----------------------------------------------------------


async def _worker_register(call: Call, params: WorkerRegisterParams) -> dict[str, str]:
    workers = call.host.workers
    served = {t for w in workers.by_channel(call.session) for t in w.task_types}
    wanted = served | {t.task_type for t in params.task_types}
    if len(wanted) > MAX_WORKER_TYPES:
        raise LimitExceeded(
            "worker_types",
            MAX_WORKER_TYPES,
            f"the workers of a connection serve at most {MAX_WORKER_TYPES} task types "
            f"together ({len(served)} already)",
            field="task_types",
        )
    registry = call.scheduler.registry
    for i, t in enumerate(params.task_types):
        if t.config is None and registry.find(t.task_type) is None:
            raise UnknownTaskType(
                f"task type {t.task_type!r} is not declared; pass a config to declare it",
                field=f"task_types[{i}]",
            )
    for t in params.task_types:
        if t.config is not None:
            call.host.declare_type(t.task_type, t.config, source="worker")
            await call.scheduler.remember_worker_type(t.task_type, t.config)
    worker = workers.register(
        call.session, frozenset(t.task_type for t in params.task_types), params.concurrency
    )
    return {"worker": worker.id}


async def _worker_unregister(call: Call, params: WorkerUnregisterParams) -> JSONObject:
    await call.host.workers.unregister(params.worker, call.session)
    return {}


async def _worker_spawn_child(call: Call, params: SpawnChildParams) -> JSONObject:
    ctx = call.host.workers.find_run(call.session, params.task_id)
    if ctx is None:
        raise InvalidParams(
            f"task {params.task_id} is not running on a worker of this connection",
            field="task_id",
        )
    (res,) = await call.scheduler.submit_many([params.submission], parent=ctx.record)
    return res.to_dict()


def _worker_progress(call: Call, params: WorkerProgressParams) -> None:
    ctx = call.host.workers.find_run(call.session, params.task_id)
    if ctx is not None:
        ctx.progress.report(params.percent, params.message)


def _worker_io(call: Call, params: WorkerIoParams) -> None:
    ctx = call.host.workers.find_run(call.session, params.task_id)
    if ctx is not None:
        io = params.io
        ctx.record_read_bytes(io.disk_read)
        ctx.record_write_bytes(io.disk_write)
        ctx.record_net_rx_bytes(io.net_rx)
        ctx.record_net_tx_bytes(io.net_tx)


# -- the table ---------------------------------------------------------------

HANDLERS: Methods = {
    "session.hello": bind(parse_session_hello, _session_hello, while_closing=True),
    "sidecar.info": bind(parse_no_params, _sidecar_info, while_closing=True),
    "sidecar.shutdown": bind(parse_shutdown, _sidecar_shutdown),
    "task.submit": bind(parse_submission, _task_submit),
    "task.submit_batch": bind(parse_submit_batch, _task_submit_batch, steps=submit_batch_steps),
    "task.get": bind(parse_id, _task_get),
    "task.lookup": bind(parse_task_lookup, _task_lookup),
    "task.list": bind(parse_task_list, _task_list),
    "task.cancel": bind(parse_id, _task_cancel),
    "task.cancel_where": bind(parse_cancel_where, _task_cancel_where),
    "task.set_priority": bind(parse_task_set_priority, _task_set_priority),
    "task.retry_dead_letter": bind(parse_id, _task_retry_dead_letter),
    "history.list": bind(parse_history_list, _history_list),
    "history.stats": bind(parse_history_stats, _history_stats),
    "dependencies.get": bind(parse_id, _dependencies_get),
    "tags.values": bind(parse_tags_values, _tags_values),
    "tags.keys": bind(parse_tags_keys, _tags_keys),
    "scheduler.snapshot": bind(parse_optional_domain, _scheduler_snapshot),
    "scheduler.pause": bind(parse_no_params, _scheduler_pause),
    "scheduler.resume": bind(parse_no_params, _scheduler_resume),
    "scheduler.set_max_concurrency": bind(
        parse_set_max_concurrency, _scheduler_set_max_concurrency
    ),
    "scheduler.metrics": bind(parse_no_params, _scheduler_metrics),
    "domain.pause": bind(parse_domain, _domain_pause),
    "domain.resume": bind(parse_domain, _domain_resume),
    "domain.set_max_concurrency": bind(
        parse_domain_set_max_concurrency, _domain_set_max_concurrency
    ),
    "group.pause": bind(parse_group_pause, _group_pause),
    "group.resume": bind(parse_group, _group_resume),
    "group.set_limit": bind(parse_group_set_value, _group_set_limit),
    "group.set_weight": bind(parse_group_set_weight, _group_set_weight),
    "group.set_min_slots": bind(parse_group_set_value, _group_set_min_slots),
    "rate_limit.set": bind(parse_rate_limit_set, _rate_limit_set),
    "rate_limit.remove": bind(parse_rate_limit_remove, _rate_limit_remove),
    "recurring.list": bind(parse_optional_domain, _recurring_list),
    "recurring.pause": bind(parse_id, _recurring_pause),
    "recurring.resume": bind(parse_id, _recurring_resume),
    "recurring.cancel": bind(parse_id, _recurring_cancel),
    "pressure.set": bind(parse_pressure_set, _pressure_set),
    "events.subscribe": bind(parse_events_subscribe, _events_subscribe),
    "events.unsubscribe": bind(parse_events_unsubscribe, _events_unsubscribe),
    "worker.register": bind(parse_worker_register, _worker_register),
    "worker.unregister": bind(parse_worker_unregister, _worker_unregister),
    "worker.progress": bind_notification(parse_worker_progress, _worker_progress),
    "worker.io": bind_notification(parse_worker_io, _worker_io),
    "worker.spawn_child": bind(parse_worker_spawn_child, _worker_spawn_child),
}
"""Every method of the contract (:data:`taskmill.protocol.methods.METHODS`,
same names, same parsers: tests/unit/server/test_api.py) with what the
sidecar does with it."""
