"""Remote workers: clients that execute tasks themselves (protocol section 8).

A client registers for some task types with a concurrency; the scheduler's
gate sees the free slots through :class:`WorkerPool` (a
:class:`~taskmill.scheduler.executions.RemoteExecutors`), and each run becomes a
``worker.execute`` request to that client. When a connection closes, its
running tasks go back to pending without counting a retry, as after a crash.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidParams, NotFound, TaskError, UnknownTaskType
from ..protocol.messages import ErrorResponse, Response
from ..protocol.params.workers import (
    ExecuteCompleted,
    cancel_reason,
    parse_execute_outcome,
    worker_cancel_notification,
    worker_execute_request,
)
from ..scheduler.context import TaskContext
from ..scheduler.core import Scheduler
from ..scheduler.domain import BoundExecutor

__all__ = ["RemoteWorker", "WorkerChannel", "WorkerPool"]

log = logging.getLogger(__name__)


class WorkerChannel(Protocol):
    """The connection a worker lives on (a server session)."""

    def call(
        self, build: Callable[[str], Mapping[str, Any]]
    ) -> Awaitable[Response | ErrorResponse]:
        """Send the request ``build`` makes from the id it is given; resolves
        to the client's answer."""
        ...

    def send_message(self, msg: Mapping[str, Any]) -> None:
        """Send a message (a notification) to the client."""
        ...


@dataclass(eq=False)
class RemoteWorker:
    id: str
    channel: WorkerChannel
    task_types: frozenset[str]
    concurrency: int
    #: Task id -> context of the runs this worker has now.
    running: dict[int, TaskContext] = field(default_factory=dict)
    #: Slots taken (runs handed out, including those not started yet).
    busy: int = 0

    @property
    def free(self) -> int:
        return max(0, self.concurrency - self.busy)


class WorkerPool:
    """Every registered remote worker, across connections."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.workers: dict[str, RemoteWorker] = {}
        #: task type -> the workers serving it (so a claim's cost does not grow
        #: with the number of types).
        self._by_type: dict[str, list[RemoteWorker]] = {}
        self._ids = itertools.count(1)

    # -- registration ---------------------------------------------------

    def register(
        self, channel: WorkerChannel, task_types: frozenset[str], concurrency: int
    ) -> RemoteWorker:
        for t in task_types:
            tt = self.scheduler.registry.find(t)
            if tt is None:
                raise UnknownTaskType(
                    f"task type {t!r} is not declared; declare it in the config file or "
                    'register it inline as {"task_type": ..., "config": {...}}',
                    field="task_types",
                )
            if tt.executor is not None:
                raise InvalidParams(
                    f"task type {t!r} already has an executor in the sidecar",
                    field="task_types",
                )
        worker = RemoteWorker(f"w{next(self._ids)}", channel, task_types, concurrency)
        self.workers[worker.id] = worker
        for t in task_types:
            self._by_type.setdefault(t, []).append(worker)
        self.scheduler.wake()
        return worker

    async def unregister(self, worker_id: str, channel: WorkerChannel | None = None) -> None:
        """Remove a worker; its running tasks go back to pending (no retry counted).

        Raises:
            NotFound: no such worker (on this connection).
        """
        worker = self.workers.get(worker_id)
        if worker is None or (channel is not None and worker.channel is not channel):
            raise NotFound(f"no worker {worker_id!r}", field="worker")
        del self.workers[worker_id]
        for t in worker.task_types:
            serving = self._by_type.get(t)
            if serving is not None:
                serving.remove(worker)
                if not serving:
                    del self._by_type[t]
        if worker.running:
            released = await self.scheduler.release(list(worker.running), "worker_gone")
            if released:
                log.info("worker %s left; %d task(s) back to pending", worker_id, len(released))
        await self._forget_unserved(worker.task_types)

    async def _forget_unserved(self, task_types: frozenset[str]) -> None:
        """Types declared inline by workers leave with the last worker serving
        them, unless a task of theirs is still queued (it waits for a worker)."""
        registry = self.scheduler.registry
        for t in task_types:
            tt = registry.find(t)
            if tt is None or tt.source != "worker" or t in self._by_type:
                continue
            if await self.scheduler.forget_worker_type(t):
                registry.remove(t)

    async def channel_closed(self, channel: WorkerChannel) -> None:
        """A connection closed: unregister every worker it had."""
        for wid in [w.id for w in self.workers.values() if w.channel is channel]:
            await self.unregister(wid)

    def by_channel(self, channel: WorkerChannel) -> list[RemoteWorker]:
        return [w for w in self.workers.values() if w.channel is channel]

    def types_with_workers(self) -> frozenset[str]:
        return frozenset(self._by_type)

    def find_run(self, channel: WorkerChannel, task_id: int) -> TaskContext | None:
        """The context of a run of ``task_id`` on one of this connection's workers."""
        for w in self.by_channel(channel):
            ctx = w.running.get(task_id)
            if ctx is not None:
                return ctx
        return None

    # -- RemoteExecutors --------------------------------------------------

    def free_slots_of(self, task_type: str) -> int:
        return sum(w.free for w in self._by_type.get(task_type, ()))

    def executor_for(self, task_type: str) -> BoundExecutor | None:
        candidates = [w for w in self._by_type.get(task_type, ()) if w.free]
        if not candidates:
            return None
        worker = max(candidates, key=lambda w: w.free)
        worker.busy += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                worker.busy -= 1
                self.scheduler.wake()

        async def execute(payload: Any, ctx: TaskContext) -> Any:
            return await self._run(worker, ctx)

        return BoundExecutor(execute=execute, where="worker", release=release)

    async def _run(self, worker: RemoteWorker, ctx: TaskContext) -> Any:
        worker.running[ctx.task_id] = ctx
        watcher = asyncio.get_running_loop().create_task(self._forward_cancel(worker, ctx))
        try:
            reply = await worker.channel.call(
                functools.partial(
                    worker_execute_request,
                    worker=worker.id,
                    task=ctx.record.to_dict(),
                    attempt=ctx.attempt,
                )
            )
        except asyncio.CancelledError:
            if not ctx.cancelled.is_set():
                # Not stopped by the scheduler (that sends worker.cancel itself):
                # the attempt timed out. The worker's late answer is ignored.
                worker.channel.send_message(worker_cancel_notification(ctx.task_id, "cancelled"))
            raise
        finally:
            watcher.cancel()
            worker.running.pop(ctx.task_id, None)
        outcome = parse_execute_outcome(reply)
        if isinstance(outcome, ExecuteCompleted):
            return outcome.result
        raise TaskError(
            outcome.message, retryable=outcome.retryable, retry_after_ms=outcome.retry_after_ms
        )

    @staticmethod
    async def _forward_cancel(worker: RemoteWorker, ctx: TaskContext) -> None:
        await ctx.cancelled.wait()
        reason = cancel_reason(ctx.cancelled.reason)
        worker.channel.send_message(worker_cancel_notification(ctx.task_id, reason))
