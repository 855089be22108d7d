"""Exceptions raised by taskmill.

Every error a caller can see derives from :class:`TaskmillError`, which carries
the JSON-RPC ``code`` and the stable ``kind`` string of the wire contract, and
optionally the ``field`` at fault. The sidecar turns them into error responses
without a lookup table; Python callers catch the class they care about::

    TaskmillError                      root; code, kind, field
    ├── ParseError             -32700  not JSON / not MessagePack
    ├── InvalidRequest         -32600  not a JSON-RPC request, or too large
    ├── MethodNotFound         -32601  unknown method
    ├── InvalidParams          -32602  wrong, missing or unknown field
    ├── InternalError          -32603  a bug; nothing else is affected
    ├── Unauthorized           -32001  no successful session.hello yet
    ├── NotFound               -32002  no such task, subscription, worker...
    ├── UnknownTaskType        -32003  type not declared anywhere
    ├── InvalidState           -32004  the object is not in a state that allows it
    ├── PayloadTooLarge        -32005  payload over 1 MiB, result over 256 KiB
    ├── ShuttingDown           -32006  the scheduler is draining or closed
    ├── StorageError           -32007  SQLite failed (full, locked, corrupt)
    │   ├── DatabaseInUse              another scheduler holds the database
    │   └── DatabaseGone               the file was deleted or replaced under us
    └── LimitExceeded          -32008  a documented per-connection limit

Executors signal failure with :class:`TaskError` (retryable or permanent); it is
not a ``TaskmillError`` because it is raised *by* user code, not *to* it.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "DatabaseGone",
    "DatabaseInUse",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "InvalidState",
    "LimitExceeded",
    "MethodNotFound",
    "NotFound",
    "ParseError",
    "PayloadTooLarge",
    "ShuttingDown",
    "StorageError",
    "TaskCancelled",
    "TaskError",
    "TaskmillError",
    "Unauthorized",
    "UnknownTaskType",
]


class TaskmillError(Exception):
    """Root of every error taskmill raises to its callers."""

    code: ClassVar[int] = -32603
    kind: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The request field at fault (dotted path), when one is.
        self.field = field

    def to_data(self) -> dict[str, Any]:
        """The ``error.data`` object of a JSON-RPC error response."""
        data: dict[str, Any] = {"kind": self.kind}
        if self.field is not None:
            data["field"] = self.field
        return data


class ParseError(TaskmillError):
    """The message is not valid JSON or MessagePack."""

    code = -32700
    kind = "parse_error"


class InvalidRequest(TaskmillError):
    """The message is not a JSON-RPC request, or is over the size limit."""

    code = -32600
    kind = "invalid_request"


class MethodNotFound(TaskmillError):
    """No method of that name."""

    code = -32601
    kind = "method_not_found"


class InvalidParams(TaskmillError):
    """A field is missing, unknown, of the wrong type or out of range."""

    code = -32602
    kind = "invalid_params"


class InternalError(TaskmillError):
    """A bug. The connection and the scheduler stay up."""

    code = -32603
    kind = "internal_error"


class Unauthorized(TaskmillError):
    """A WebSocket request before a successful ``session.hello``."""

    code = -32001
    kind = "unauthorized"


class NotFound(TaskmillError):
    """No such task, schedule, subscription or worker."""

    code = -32002
    kind = "not_found"


class UnknownTaskType(TaskmillError):
    """The task type is not declared by config, Python code or a worker."""

    code = -32003
    kind = "unknown_task_type"


class InvalidState(TaskmillError):
    """The object exists but its state does not allow the operation."""

    code = -32004
    kind = "invalid_state"


class PayloadTooLarge(TaskmillError):
    """A payload over 1 MiB or a result over 256 KiB."""

    code = -32005
    kind = "payload_too_large"


class ShuttingDown(TaskmillError):
    """The scheduler is draining or already closed."""

    code = -32006
    kind = "shutting_down"


class StorageError(TaskmillError):
    """SQLite failed: the disk is full, the database is locked or corrupt."""

    code = -32007
    kind = "storage_error"


class LimitExceeded(TaskmillError):
    """A documented per-connection limit was reached (subscriptions, worker
    types, requests in flight, batch length); ``data.limit`` names it and
    ``data.max`` gives its value."""

    code = -32008
    kind = "limit_exceeded"

    def __init__(self, limit: str, maximum: int, message: str, *, field: str | None = None):
        super().__init__(message, field=field)
        self.limit = limit
        self.max = maximum

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        data["limit"] = self.limit
        data["max"] = self.max
        return data


class DatabaseInUse(StorageError):
    """Another scheduler (this process or another) holds the database's lock.

    Attributes:
        path: The database file.
        holder_pid: The pid of the holder, when it could be read.
        holder_ws: The holder's WebSocket URL, when it serves one.
    """

    def __init__(self, path: str, holder_pid: int | None, holder_ws: str | None) -> None:
        who = f"pid {holder_pid}" if holder_pid is not None else "a process whose pid is unknown"
        where = f", serving {holder_ws}" if holder_ws else ""
        super().__init__(
            f"the database {path} is in use by another taskmill scheduler ({who}{where})"
        )
        self.path = path
        self.holder_pid = holder_pid
        self.holder_ws = holder_ws


class DatabaseGone(StorageError):
    """The database file (or its write-ahead log) was deleted or replaced
    while the scheduler ran: nothing more can be written until a restart."""


class TaskError(Exception):
    """Raised by an executor to fail its task.

    A retryable error is retried by the task's retry policy and goes to
    ``dead_letter`` when retries run out; a permanent one goes straight to
    ``failed``. Any other exception an executor raises counts as retryable.

    Args:
        message: What went wrong; stored as the task's ``last_error``.
        retryable: Whether another attempt may succeed.
        retry_after_ms: Overrides the backoff delay for this one retry.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms

    @classmethod
    def permanent(cls, message: str) -> TaskError:
        """A failure that no retry can fix."""
        return cls(message, retryable=False)

    @classmethod
    def transient(cls, message: str, *, retry_after_ms: int | None = None) -> TaskError:
        """A failure worth retrying, optionally after a given delay."""
        return cls(message, retryable=True, retry_after_ms=retry_after_ms)


class TaskCancelled(Exception):
    """Raised by :meth:`TaskContext.check_cancelled` once the task is cancelled.

    The scheduler has already recorded the task's new state (cancelled, paused,
    preempted or back to pending at shutdown); raising this just ends the run.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"task cancelled: {reason}")
        self.reason = reason
