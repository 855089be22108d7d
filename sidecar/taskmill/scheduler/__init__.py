"""The scheduler: run loop, gate, dispatch, events, progress, snapshot.

Names are imported on first use, so that importing one pure module (say
``taskmill.scheduler.policy``) does not load the store and SQLite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..filters import EventFilter
    from .config import Retention, SchedulerConfig
    from .context import CancelSignal, TaskContext
    from .core import Scheduler
    from .domain import Domain, TaskType
    from .events import Event, Subscription
    from .taskio import TaskIo

__all__ = [
    "CancelSignal",
    "Domain",
    "Event",
    "EventFilter",
    "Retention",
    "Scheduler",
    "SchedulerConfig",
    "Subscription",
    "TaskContext",
    "TaskIo",
    "TaskType",
]

_WHERE = {
    "CancelSignal": ".context",
    "Domain": ".domain",
    "Event": ".events",
    "EventFilter": "..filters",
    "Retention": ".config",
    "Scheduler": ".core",
    "SchedulerConfig": ".config",
    "Subscription": ".events",
    "TaskContext": ".context",
    "TaskIo": ".taskio",
    "TaskType": ".domain",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
