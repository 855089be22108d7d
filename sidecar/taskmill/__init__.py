"""taskmill: a persistent, priority-aware, IO-aware background task scheduler.

Use it in-process::

    from taskmill import Domain, Scheduler

or run it as a sidecar: ``taskmill-sidecar --stdio`` (see docs/protocol.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .errors import (
        DatabaseGone,
        DatabaseInUse,
        InvalidParams,
        InvalidState,
        LimitExceeded,
        NotFound,
        PayloadTooLarge,
        ShuttingDown,
        StorageError,
        TaskCancelled,
        TaskError,
        TaskmillError,
        UnknownTaskType,
    )
    from .filters import TaskFilter
    from .model import (
        IoBudget,
        Outcome,
        Priority,
        Progress,
        Recurring,
        RetryPolicy,
        Status,
        Submission,
        SubmitResult,
        TaskRecord,
    )
    from .scheduler import (
        CancelSignal,
        Domain,
        Event,
        EventFilter,
        Retention,
        Scheduler,
        SchedulerConfig,
        Subscription,
        TaskContext,
        TaskIo,
        TaskType,
    )

__all__ = [
    "CancelSignal",
    "DatabaseGone",
    "DatabaseInUse",
    "Domain",
    "Event",
    "EventFilter",
    "InvalidParams",
    "InvalidState",
    "IoBudget",
    "LimitExceeded",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "Priority",
    "Progress",
    "Recurring",
    "Retention",
    "RetryPolicy",
    "Scheduler",
    "SchedulerConfig",
    "ShuttingDown",
    "Status",
    "StorageError",
    "Submission",
    "SubmitResult",
    "Subscription",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskFilter",
    "TaskIo",
    "TaskRecord",
    "TaskType",
    "TaskmillError",
    "UnknownTaskType",
    "__version__",
]


_WHERE = {
    "CancelSignal": ".scheduler",
    "DatabaseGone": ".errors",
    "DatabaseInUse": ".errors",
    "Domain": ".scheduler",
    "Event": ".scheduler",
    "EventFilter": ".scheduler",
    "InvalidParams": ".errors",
    "InvalidState": ".errors",
    "IoBudget": ".model",
    "LimitExceeded": ".errors",
    "NotFound": ".errors",
    "Outcome": ".model",
    "PayloadTooLarge": ".errors",
    "Priority": ".model",
    "Progress": ".model",
    "Recurring": ".model",
    "Retention": ".scheduler",
    "RetryPolicy": ".model",
    "Scheduler": ".scheduler",
    "SchedulerConfig": ".scheduler",
    "ShuttingDown": ".errors",
    "Status": ".model",
    "StorageError": ".errors",
    "Submission": ".model",
    "SubmitResult": ".model",
    "Subscription": ".scheduler",
    "TaskCancelled": ".errors",
    "TaskContext": ".scheduler",
    "TaskError": ".errors",
    "TaskFilter": ".filters",
    "TaskIo": ".scheduler",
    "TaskRecord": ".model",
    "TaskType": ".scheduler",
    "TaskmillError": ".errors",
    "UnknownTaskType": ".errors",
}


def __getattr__(name: str) -> Any:
    """Names are imported on first use: ``import taskmill.model`` alone does not
    load the scheduler, the store and SQLite."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
