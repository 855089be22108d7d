"""Remote workers (protocol section 8): the params of ``worker.register``,
``worker.unregister``, ``worker.spawn_child`` and the ``worker.progress`` and
``worker.io`` notifications, and the messages the sidecar sends a worker
(``worker.execute``, ``worker.cancel``) with the reading of its answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from ... import _checks as checks
from ..._checks import Fields
from ...errors import InvalidParams
from ...model import IoBudget, JSONValue, Submission
from ..messages import ErrorResponse, Response, notification, request
from .tasks import SUBMIT_FIELDS, read_submission

__all__ = [
    "CANCEL_REASONS",
    "WORKER_ERROR_CODE",
    "CancelReason",
    "ExecuteCompleted",
    "ExecuteFailed",
    "ExecuteOutcome",
    "SpawnChildParams",
    "WorkerIoParams",
    "WorkerProgressParams",
    "WorkerRegisterParams",
    "WorkerTaskType",
    "WorkerUnregisterParams",
    "cancel_reason",
    "parse_execute_outcome",
    "parse_worker_io",
    "parse_worker_progress",
    "parse_worker_register",
    "parse_worker_spawn_child",
    "parse_worker_unregister",
    "worker_cancel_notification",
    "worker_execute_request",
]

WORKER_ERROR_CODE = -32010
"""The error code a remote worker answers ``worker.execute`` with on failure."""

CancelReason: TypeAlias = Literal["preempted", "cancelled", "paused", "shutdown"]
"""Why the sidecar stops a worker's run (``worker.cancel``)."""

CANCEL_REASONS: tuple[CancelReason, ...] = ("preempted", "cancelled", "paused", "shutdown")
"""The ``reason`` values of a ``worker.cancel`` notification."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerTaskType:
    """One type a remote worker executes, with an optional inline declaration.

    ``config`` is the same table as ``[domains.D.types.N]`` in the config file
    and is checked by whoever declares the type, not here.
    """

    task_type: str
    config: Mapping[str, JSONValue] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRegisterParams:
    """``worker.register``."""

    task_types: tuple[WorkerTaskType, ...]
    concurrency: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerUnregisterParams:
    """``worker.unregister``."""

    worker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerProgressParams:
    """The ``worker.progress`` notification: ``percent`` is 0..1."""

    task_id: int
    percent: float
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerIoParams:
    """The ``worker.io`` notification; members not sent are 0."""

    task_id: int
    io: IoBudget


@dataclass(frozen=True, slots=True, kw_only=True)
class SpawnChildParams:
    """``worker.spawn_child``: ``submission.parent_id`` is ``task_id``."""

    task_id: int
    submission: Submission


# --------------------------------------------------------------------------
# From a worker
# --------------------------------------------------------------------------


def _worker_task_type(value: Any, name: str) -> WorkerTaskType:
    if isinstance(value, str):
        return WorkerTaskType(task_type=checks.task_type(value, name))
    if not isinstance(value, dict):
        raise checks.wrong_type(name, "a task type or an object {task_type, config?}", value)
    fields = Fields(value, ("task_type", "config"), path=name)
    return WorkerTaskType(
        task_type=fields.required("task_type", checks.task_type),
        config=fields.optional("config", checks.obj),
    )


def parse_worker_register(params: Mapping[str, Any]) -> WorkerRegisterParams:
    """``worker.register {task_types: [type | {task_type, config?}], concurrency?: 1}``.

    Raises:
        InvalidParams: for an empty or repeating ``task_types``.
    """
    fields = Fields(params, ("task_types", "concurrency"))
    task_types = fields.required("task_types", checks.list_of(_worker_task_type))
    if not task_types:
        raise InvalidParams("task_types must not be empty", field="task_types")
    seen: set[str] = set()
    for i, item in enumerate(task_types):
        if item.task_type in seen:
            raise InvalidParams(
                f"task_types[{i}] repeats {item.task_type!r}", field=f"task_types[{i}]"
            )
        seen.add(item.task_type)
    return WorkerRegisterParams(
        task_types=task_types, concurrency=fields.optional("concurrency", checks.integer(1)) or 1
    )


def parse_worker_unregister(params: Mapping[str, Any]) -> WorkerUnregisterParams:
    """``worker.unregister {worker}``."""
    fields = Fields(params, ("worker",))
    return WorkerUnregisterParams(worker=fields.required("worker", checks.string(nonempty=True)))


def parse_worker_progress(params: Mapping[str, Any]) -> WorkerProgressParams:
    """The ``worker.progress {task_id, percent, message?}`` notification."""
    fields = Fields(params, ("task_id", "percent", "message"))
    return WorkerProgressParams(
        task_id=fields.required("task_id", checks.task_id),
        percent=fields.required("percent", checks.number(0, 1)),
        message=fields.optional("message", checks.string()),
    )


def parse_worker_io(params: Mapping[str, Any]) -> WorkerIoParams:
    """The ``worker.io {task_id, disk_read?, disk_write?, net_rx?, net_tx?}`` notification."""
    counters = ("disk_read", "disk_write", "net_rx", "net_tx")
    fields = Fields(params, ("task_id", *counters))
    amounts = {name: fields.optional(name, checks.non_negative) or 0 for name in counters}
    return WorkerIoParams(
        task_id=fields.required("task_id", checks.task_id), io=IoBudget(**amounts)
    )


def parse_worker_spawn_child(params: Mapping[str, Any]) -> SpawnChildParams:
    """``worker.spawn_child {task_id, ...submit params}``.

    The child's ``parent_id`` is ``task_id``; giving ``parent_id`` too is refused.
    """
    allowed = (SUBMIT_FIELDS - {"parent_id"}) | {"task_id"}
    fields = Fields(params, allowed, hints={"parent_id": "the parent is task_id"})
    task_id = fields.required("task_id", checks.task_id)
    return SpawnChildParams(task_id=task_id, submission=read_submission(fields, parent_id=task_id))


# --------------------------------------------------------------------------
# To a worker, and its answer
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteCompleted:
    """A worker completed its task with ``result``."""

    result: JSONValue


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteFailed:
    """A worker failed its task (or answered ``worker.execute`` malformed)."""

    message: str
    retryable: bool = True
    retry_after_ms: int | None = None
    code: int = WORKER_ERROR_CODE


ExecuteOutcome: TypeAlias = ExecuteCompleted | ExecuteFailed


def parse_execute_outcome(reply: Response | ErrorResponse) -> ExecuteOutcome:
    """Interpret a worker's answer to ``worker.execute``. Never raises.

    A result must be ``{"result": value}``; anything else is a retryable failure
    (like an exception escaping a Python executor). An error's ``data`` may
    carry ``retryable`` (default true) and ``retry_after_ms``.

    Args:
        reply: The response whose id is the ``worker.execute`` request's.

    Returns:
        :class:`ExecuteCompleted` or :class:`ExecuteFailed`.
    """
    if isinstance(reply, Response):
        result = reply.result
        if isinstance(result, dict) and set(result) == {"result"}:
            return ExecuteCompleted(result=result["result"])
        return ExecuteFailed(
            message='malformed worker.execute result: expected {"result": <value>}',
            retryable=True,
        )
    retryable, retry_after_ms = True, None
    data = reply.data
    if isinstance(data, dict):
        if isinstance(data.get("retryable"), bool):
            retryable = data["retryable"]
        after = data.get("retry_after_ms")
        if (
            isinstance(after, int)
            and not isinstance(after, bool)
            and 0 <= after <= checks.INT64_MAX
        ):
            retry_after_ms = after
    return ExecuteFailed(
        message=reply.message, retryable=retryable, retry_after_ms=retry_after_ms, code=reply.code
    )


def worker_execute_request(
    id: str, *, worker: str, task: Mapping[str, JSONValue], attempt: int
) -> dict[str, Any]:
    """Build the ``worker.execute`` request the sidecar sends to a worker.

    Args:
        id: A sidecar request id, ``"s-<n>"``.
        worker: The worker id from ``worker.register``.
        task: The task record (``TaskRecord.to_dict()``).
        attempt: 1 for the first attempt.
    """
    return request(id, "worker.execute", {"worker": worker, "task": task, "attempt": attempt})


def cancel_reason(reason: str | None) -> CancelReason:
    """The ``worker.cancel`` reason for why a run was stopped: the run's own
    reason when the contract has it, else ``"cancelled"``."""
    for known in CANCEL_REASONS:
        if reason == known:
            return known
    return "cancelled"


def worker_cancel_notification(task_id: int, reason: CancelReason) -> dict[str, Any]:
    """Build the ``worker.cancel {task_id, reason}`` notification.

    Raises:
        ValueError: for a reason not in :data:`CANCEL_REASONS` (a bug).
    """
    if reason not in CANCEL_REASONS:
        raise ValueError(f"unknown cancel reason {reason!r}")
    return notification("worker.cancel", {"task_id": task_id, "reason": reason})
