"""The sidecar's methods: validated params in, scheduler calls, wire results out.

Each handler takes the calling :class:`~taskmill.server.session.Session` and
the params object :mod:`taskmill.protocol.methods` produced, and returns the
JSON result. Errors are :class:`~taskmill.errors.TaskmillError` subclasses,
which the session turns into error responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import InvalidParams, MethodNotFound, NotFound
from ..filters import TaskFilter
from ..protocol import methods as m

if TYPE_CHECKING:
    from .session import Session

__all__ = ["HANDLERS", "Handler"]

Handler = Callable[["Session", Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return deco


# -- session and sidecar -----------------------------------------------------


@handler("session.hello")
async def session_hello(s: Session, p: m.SessionHelloParams) -> Any:
    return s.hello(p)


@handler("sidecar.info")
async def sidecar_info(s: Session, p: m.NoParams) -> Any:
    return s.app.info()


@handler("sidecar.shutdown")
async def sidecar_shutdown(s: Session, p: m.ShutdownParams) -> Any:
    s.app.request_shutdown(p.mode, p.timeout_ms)
    return {}


# -- tasks -------------------------------------------------------------------


@handler("task.submit")
async def task_submit(s: Session, p: Any) -> Any:
    (res,) = await s.app.scheduler.submit_many([p])
    return res.to_dict()


@handler("task.submit_batch")
async def task_submit_batch(s: Session, p: m.SubmitBatchParams) -> Any:
    if not p.tasks:
        return {"outcomes": []}
    results = await s.app.scheduler.submit_many(list(p.tasks))
    outcomes = []
    for i, r in enumerate(results):
        if i and i % 2000 == 0:
            await asyncio.sleep(0)  # 100,000 outcomes take ~50 ms to build
        outcomes.append(r.to_dict())
    return {"outcomes": outcomes}


@handler("task.get")
async def task_get(s: Session, p: m.IdParams) -> Any:
    return (await s.app.scheduler.get(p.id)).to_dict()


@handler("task.lookup")
async def task_lookup(s: Session, p: m.TaskLookupParams) -> Any:
    where, rec = await s.app.scheduler.lookup(p.task_type, p.key)
    out: dict[str, Any] = {"where": where}
    if rec is not None:
        out["record"] = rec.to_dict()
    return out


def _filter(p: m.TaskListParams | m.CancelWhereParams) -> TaskFilter:
    return TaskFilter(
        status=None if p.status is None else [st.value for st in p.status],
        domain=p.domain,
        task_type=p.task_type,
        group=p.group,
        tags=p.tags or None,
        tag_prefix=p.tag_prefix or None,
    )


@handler("task.list")
async def task_list(s: Session, p: m.TaskListParams) -> Any:
    tasks, total = await s.app.scheduler.list_tasks(_filter(p), limit=p.limit, offset=p.offset)
    return {"tasks": [t.to_dict() for t in tasks], "total": total}


@handler("task.cancel")
async def task_cancel(s: Session, p: m.IdParams) -> Any:
    return {"cancelled": await s.app.scheduler.cancel(p.id)}


@handler("task.cancel_where")
async def task_cancel_where(s: Session, p: m.CancelWhereParams) -> Any:
    return {"cancelled": await s.app.scheduler.cancel_where(_filter(p))}


@handler("task.set_priority")
async def task_set_priority(s: Session, p: m.TaskSetPriorityParams) -> Any:
    return {"updated": await s.app.scheduler.set_priority(p.id, p.priority)}


@handler("task.retry_dead_letter")
async def task_retry_dead_letter(s: Session, p: m.IdParams) -> Any:
    return (await s.app.scheduler.retry_dead_letter(p.id)).to_dict()


@handler("history.list")
async def history_list(s: Session, p: m.HistoryListParams) -> Any:
    tasks, total = await s.app.scheduler.history(
        status=None if p.status is None else [st.value for st in p.status],
        task_type=p.task_type,
        key=p.key,
        limit=p.limit,
        offset=p.offset,
    )
    return {"tasks": [t.to_dict() for t in tasks], "total": total}


@handler("history.stats")
async def history_stats(s: Session, p: m.HistoryStatsParams) -> Any:
    return await s.app.scheduler.history_stats(p.task_type)


@handler("dependencies.get")
async def dependencies_get(s: Session, p: m.IdParams) -> Any:
    return await s.app.scheduler.dependencies(p.id)


@handler("tags.values")
async def tags_values(s: Session, p: m.TagsValuesParams) -> Any:
    return {"values": await s.app.scheduler.tag_values(p.key, domain=p.domain)}


@handler("tags.keys")
async def tags_keys(s: Session, p: m.TagsKeysParams) -> Any:
    return {"keys": await s.app.scheduler.tag_keys(p.prefix, domain=p.domain)}


# -- scheduler control -------------------------------------------------------


@handler("scheduler.snapshot")
async def scheduler_snapshot(s: Session, p: m.OptionalDomainParams) -> Any:
    return await s.app.scheduler.snapshot(p.domain)


@handler("scheduler.pause")
async def scheduler_pause(s: Session, p: m.NoParams) -> Any:
    await s.app.scheduler.pause()
    return {}


@handler("scheduler.resume")
async def scheduler_resume(s: Session, p: m.NoParams) -> Any:
    await s.app.scheduler.resume()
    return {}


@handler("scheduler.set_max_concurrency")
async def scheduler_set_max_concurrency(s: Session, p: m.SetMaxConcurrencyParams) -> Any:
    s.app.scheduler.set_max_concurrency(p.value)
    return {}


@handler("scheduler.metrics")
async def scheduler_metrics(s: Session, p: m.NoParams) -> Any:
    return await s.app.scheduler.metrics_snapshot()


@handler("domain.set_max_concurrency")
async def domain_set_max_concurrency(s: Session, p: m.DomainSetMaxConcurrencyParams) -> Any:
    s.app.scheduler.set_domain_max_concurrency(p.domain, p.value)
    return {}


@handler("domain.pause")
async def domain_pause(s: Session, p: m.DomainParams) -> Any:
    return {"count": await s.app.scheduler.pause_domain(p.domain)}


@handler("domain.resume")
async def domain_resume(s: Session, p: m.DomainParams) -> Any:
    return {"count": await s.app.scheduler.resume_domain(p.domain)}


@handler("group.pause")
async def group_pause(s: Session, p: m.GroupPauseParams) -> Any:
    return await s.app.scheduler.pause_group(p.group, p.duration_ms)


@handler("group.resume")
async def group_resume(s: Session, p: m.GroupParams) -> Any:
    return {"resumed": await s.app.scheduler.resume_group(p.group)}


@handler("group.set_limit")
async def group_set_limit(s: Session, p: m.GroupSetValueParams) -> Any:
    s.app.scheduler.set_group_limit(p.group, p.value)
    return {}


@handler("group.set_weight")
async def group_set_weight(s: Session, p: m.GroupSetWeightParams) -> Any:
    s.app.scheduler.set_group_weight(p.group, p.weight)
    return {}


@handler("group.set_min_slots")
async def group_set_min_slots(s: Session, p: m.GroupSetValueParams) -> Any:
    s.app.scheduler.set_group_min_slots(p.group, p.value)
    return {}


@handler("rate_limit.set")
async def rate_limit_set(s: Session, p: m.RateLimitSetParams) -> Any:
    s.app.scheduler.set_rate_limit(
        task_type=p.task_type, group=p.group, per_second=p.per_second, burst=p.burst
    )
    return {}


@handler("rate_limit.remove")
async def rate_limit_remove(s: Session, p: m.RateLimitTargetParams) -> Any:
    s.app.scheduler.remove_rate_limit(task_type=p.task_type, group=p.group)
    return {}


@handler("recurring.list")
async def recurring_list(s: Session, p: m.OptionalDomainParams) -> Any:
    return {"schedules": await s.app.scheduler.recurring_list(p.domain)}


@handler("recurring.pause")
async def recurring_pause(s: Session, p: m.IdParams) -> Any:
    await s.app.scheduler.pause_recurring(p.id)
    return {}


@handler("recurring.resume")
async def recurring_resume(s: Session, p: m.IdParams) -> Any:
    await s.app.scheduler.resume_recurring(p.id)
    return {}


@handler("recurring.cancel")
async def recurring_cancel(s: Session, p: m.IdParams) -> Any:
    await s.app.scheduler.cancel_recurring(p.id)
    return {}


@handler("pressure.set")
async def pressure_set(s: Session, p: m.PressureSetParams) -> Any:
    s.app.scheduler.set_pressure(p.source, p.value)
    return {}


# -- events ------------------------------------------------------------------


@handler("events.subscribe")
async def events_subscribe(s: Session, p: m.EventsSubscribeParams) -> Any:
    return {"subscription": s.subscribe(p.filter)}


@handler("events.unsubscribe")
async def events_unsubscribe(s: Session, p: m.EventsUnsubscribeParams) -> Any:
    if not s.unsubscribe(p.subscription):
        raise NotFound(f"no subscription {p.subscription}", field="subscription")
    return {}


# -- remote workers ----------------------------------------------------------


@handler("worker.register")
async def worker_register(s: Session, p: m.WorkerRegisterParams) -> Any:
    return {"worker": await s.register_worker(p)}


@handler("worker.unregister")
async def worker_unregister(s: Session, p: m.WorkerUnregisterParams) -> Any:
    await s.app.workers.unregister(p.worker, s)
    return {}


@handler("worker.spawn_child")
async def worker_spawn_child(s: Session, p: m.SpawnChildParams) -> Any:
    ctx = s.app.workers.find_run(s, p.task_id)
    if ctx is None:
        raise InvalidParams(
            f"task {p.task_id} is not running on a worker of this connection", field="task_id"
        )
    (res,) = await s.app.scheduler.submit_many([p.submission], parent=ctx.record)
    return res.to_dict()


def find(method: str) -> Handler:
    """The handler of ``method``.

    Raises:
        MethodNotFound: the method exists in the contract but its feature is not
            available in this sidecar, or it does not exist at all.
    """
    fn = HANDLERS.get(method)
    if fn is None:
        raise MethodNotFound(f"method {method!r} is not available in taskmill {__version__}")
    return fn
