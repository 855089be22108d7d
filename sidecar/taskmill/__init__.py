"""taskmill: a persistent, priority-aware, IO-aware background task scheduler.

Use it in-process::

    from taskmill import Domain, Scheduler

or run it as a sidecar: ``taskmill-sidecar --stdio`` (see docs/protocol.md).
"""

from ._version import __version__
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
    TaskType,
)
from .store import TaskFilter

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
    "TaskRecord",
    "TaskType",
    "TaskmillError",
    "UnknownTaskType",
    "__version__",
]
