"""The scheduler: run loop, gate, dispatch, events, progress, snapshot."""

from .config import Retention, SchedulerConfig
from .context import CancelSignal, TaskContext
from .core import Scheduler
from .domain import Domain, TaskType
from .events import Event, EventFilter, Subscription

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
    "TaskType",
]
