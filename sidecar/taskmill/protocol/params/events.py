"""Params of ``events.subscribe`` and ``events.unsubscribe``, and the
``event`` notification the sidecar sends (protocol section 6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import _checks as checks
from ..._checks import Fields
from ...filters import DEFAULT_PROGRESS_INTERVAL_MS, EventFilter
from ...model import EVENT_KINDS, JSONValue
from ..messages import JSONRPC_VERSION

__all__ = [
    "EventsSubscribeParams",
    "EventsUnsubscribeParams",
    "event_notification",
    "parse_events_subscribe",
    "parse_events_unsubscribe",
]

_FILTER_FIELDS = (
    "kinds",
    "domains",
    "task_types",
    "task_ids",
    "tags",
    "progress_interval_ms",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsSubscribeParams:
    """``events.subscribe``."""

    filter: EventFilter = field(default_factory=EventFilter)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsUnsubscribeParams:
    """``events.unsubscribe``."""

    subscription: int


def _event_filter(value: Any, name: str) -> EventFilter:
    fields = Fields(checks.obj(value, name), _FILTER_FIELDS, path=name)
    kinds = fields.optional("kinds", checks.list_of(checks.choice(sorted(EVENT_KINDS))))
    domains = fields.optional("domains", checks.list_of(checks.domain))
    task_types = fields.optional("task_types", checks.list_of(checks.task_type))
    task_ids = fields.optional("task_ids", checks.list_of(checks.task_id))
    interval = fields.optional("progress_interval_ms", checks.non_negative)
    return EventFilter(
        kinds=None if kinds is None else frozenset(kinds),
        domains=None if domains is None else frozenset(domains),
        task_types=None if task_types is None else frozenset(task_types),
        task_ids=None if task_ids is None else frozenset(task_ids),
        tags=fields.optional("tags", checks.str_map),
        progress_interval_ms=DEFAULT_PROGRESS_INTERVAL_MS if interval is None else interval,
    )


def parse_events_subscribe(params: Mapping[str, Any]) -> EventsSubscribeParams:
    """``events.subscribe {filter?}``: kinds must be event kinds of section 6."""
    hint = "filter members go inside 'filter'"
    fields = Fields(params, ("filter",), hints=dict.fromkeys(_FILTER_FIELDS, hint))
    event_filter = fields.optional("filter", _event_filter)
    return EventsSubscribeParams(filter=event_filter or EventFilter())


def parse_events_unsubscribe(params: Mapping[str, Any]) -> EventsUnsubscribeParams:
    """``events.unsubscribe {subscription}``."""
    fields = Fields(params, ("subscription",))
    return EventsUnsubscribeParams(
        subscription=fields.required("subscription", checks.non_negative)
    )


def event_notification(
    params: Mapping[str, JSONValue], *, subscription: int | None = None
) -> dict[str, Any]:
    """Build an ``event`` notification from its params (``subscription``, ``seq``,
    ``at``, ``kind``, ...).

    Args:
        params: The event's members.
        subscription: When given, the ``subscription`` member, put first (the
            session passes an event's data as it is, without copying it twice).
    """
    members = dict(params) if subscription is None else {"subscription": subscription, **params}
    return {"jsonrpc": JSONRPC_VERSION, "method": "event", "params": members}
