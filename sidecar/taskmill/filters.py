"""Filters shared by the wire, the scheduler and the store: which tasks
(:class:`TaskFilter`) and which events (:class:`EventFilter`).

One definition of each: the protocol parses straight into them, the
scheduler and the event bus match with them, the store turns a
``TaskFilter`` into SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidParams
from .model import EVENT_KINDS

if TYPE_CHECKING:
    from .scheduler.events import Event

__all__ = ["DEFAULT_PROGRESS_INTERVAL_MS", "EventFilter", "TaskFilter"]

#: Progress events of one task are coalesced to one per this interval by default.
DEFAULT_PROGRESS_INTERVAL_MS = 100


@dataclass(slots=True, kw_only=True)
class TaskFilter:
    """Filters on active tasks; every set field must match (AND)."""

    status: Sequence[str] | None = None
    domain: str | None = None
    task_type: str | None = None
    group: str | None = None
    tags: Mapping[str, str] | None = None
    tag_prefix: str | None = None
    parent_id: int | None = None

    def is_empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.status,
                self.domain,
                self.task_type,
                self.group,
                self.tags,
                self.tag_prefix,
                self.parent_id,
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    """Which events a subscription receives; every set field must match (AND).

    A field only applies to events that carry it: ``domains`` filters task
    events and ``domain_*`` events, while ``paused`` or ``shutdown`` pass any
    task filter. ``progress_interval_ms`` coalesces progress per task: at most
    one progress event per task per interval, the latest value wins; 0 sends
    every report.
    """

    kinds: frozenset[str] | None = None
    domains: frozenset[str] | None = None
    task_types: frozenset[str] | None = None
    task_ids: frozenset[int] | None = None
    tags: Mapping[str, str] | None = None
    progress_interval_ms: int = DEFAULT_PROGRESS_INTERVAL_MS

    @classmethod
    def of(
        cls,
        *,
        kinds: Collection[str] | None = None,
        domains: Collection[str] | None = None,
        task_types: Collection[str] | None = None,
        task_ids: Collection[int] | None = None,
        tags: Mapping[str, str] | None = None,
        progress_interval_ms: int = DEFAULT_PROGRESS_INTERVAL_MS,
    ) -> EventFilter:
        """Build a filter from any collections, checking the kinds."""
        if kinds is not None:
            unknown = set(kinds) - EVENT_KINDS
            if unknown:
                raise InvalidParams(
                    f"unknown event kind {sorted(unknown)[0]!r}", field="filter.kinds"
                )
        if progress_interval_ms < 0:
            raise InvalidParams(
                "progress_interval_ms must be >= 0", field="filter.progress_interval_ms"
            )
        return cls(
            kinds=None if kinds is None else frozenset(kinds),
            domains=None if domains is None else frozenset(domains),
            task_types=None if task_types is None else frozenset(task_types),
            task_ids=None if task_ids is None else frozenset(task_ids),
            tags=None if tags is None else dict(tags),
            progress_interval_ms=progress_interval_ms,
        )

    def matches(self, ev: Event) -> bool:
        if ev.kind == "lagged":
            return True
        return self.wants(
            ev.kind, ev.task_id, ev.task_type, ev.domain, ev.tags, ev.data.get("domain")
        )

    def wants(
        self,
        kind: str,
        task_id: int | None,
        task_type: str | None,
        domain: str | None,
        tags: Mapping[str, str] | None,
        event_domain: object = None,
    ) -> bool:
        """Whether an event with these fields passes (checked before it is built)."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        if task_id is None:
            if self.domains is not None and event_domain is not None:
                return event_domain in self.domains
            return True
        if self.domains is not None and domain not in self.domains:
            return False
        if self.task_types is not None and task_type not in self.task_types:
            return False
        if self.task_ids is not None and task_id not in self.task_ids:
            return False
        if self.tags:
            have = tags or {}
            for k, v in self.tags.items():
                if have.get(k) != v:
                    return False
        return True
