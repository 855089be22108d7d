"""Reactions: what the store did, turned into events, metrics and stopped runs.

Every store operation returns its effects as data (records, outcomes,
:class:`~taskmill.store.rows.Effects`); :class:`Reactions` is the one place
that turns them into the events clients see, in the order they happened,
after the transaction that made them committed. Each event kind is built in
one place (the ``failed`` event was written three times before).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..model import Outcome, Status, SubmitResult, TaskRecord
from ..store.rows import CancelledTask, Effects, Finish, FinishResult, SubmitEffect
from .awareness import Awareness
from .dispatch import DispatchPolicy
from .events import EventBus

if TYPE_CHECKING:
    from .executions import Execution, Executions

__all__ = ["Reactions"]


class Reactions:
    """Effects of store operations → events, metrics, stopped executions."""

    def __init__(
        self,
        *,
        events: EventBus,
        metrics: Counter[str],
        executions: Executions,
        awareness: Awareness,
        policy: DispatchPolicy,
        now_ms: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self._events = events
        self._metrics = metrics
        self._executions = executions
        self._awareness = awareness
        self._policy = policy
        self._now_ms = now_ms
        self._wake = wake

    def submitted(self, effects: Sequence[SubmitEffect]) -> list[SubmitResult]:
        """Events of a submission; returns the outcomes to answer with."""
        out: list[SubmitResult] = []
        changed = False
        for eff in effects:
            out.append(SubmitResult(outcome=eff.outcome, id=eff.id, replaced_id=eff.replaced_id))
            if eff.outcome is Outcome.DUPLICATE:
                continue
            changed = True
            self._metrics["submitted"] += eff.outcome in (Outcome.INSERTED, Outcome.SUPERSEDED)
            for ct in eff.cancelled:
                self._executions.stop(ct.record.id, "superseded")
                self._metrics["cancelled"] += 1
                self._events.emit("cancelled", ct.record, reason="superseded")
            if eff.outcome is Outcome.SUPERSEDED and eff.old_record is not None:
                self._metrics["superseded"] += 1
                if eff.stop_running:
                    self._executions.stop(eff.old_record.id, "superseded")
                self._events.emit("superseded", eff.old_record, new_task_id=eff.id)
            if self._events.wants("submitted"):
                assert eff.record is not None
                self._events.emit("submitted", eff.record, outcome=eff.outcome.value)
            else:
                self._events.skip()  # and the record is never built
            if eff.cascade is not None:
                self.effects(eff.cascade)
        if changed:
            self._policy.invalidate_counts()
            self._wake()
        return out

    def finished(self, f: Finish, ex: Execution, res: FinishResult, now: int) -> None:
        """Events of one recorded outcome."""
        rec = ex.record
        kind = res.kind
        if kind == "stale":
            return
        duration = ex.run_ms if ex.run_ms is not None else max(0, now - (rec.started_at or now))
        if kind in ("completed", "requeued"):
            self._metrics["completed"] += 1
            self._awareness.record_duration(rec.task_type, duration)
            if res.occurrences is not None:
                if res.skipped:
                    self._metrics["recurring_skipped"] += res.skipped
                    self._events.emit("recurring_skipped", rec, reason="overdue", count=res.skipped)
                self._events.emit(
                    "recurring_completed",
                    rec,
                    occurrences=res.occurrences,
                    next_task_id=res.next_id,
                )
            self._events.emit("completed", rec, duration_ms=duration, result=ex.value)
        elif kind == "waiting":
            self._events.emit("waiting", rec, children_count=res.children)
        elif kind == "finalize":
            self._wake()
        elif kind == "retry":
            self._metrics["retried"] += 1
            self.failed(rec, f.error, f.traceback, retry_after_ms=f.retry_delay_ms)
        elif kind == "dead_letter":
            self._metrics["dead_lettered"] += 1
            self._metrics["failed"] += 1
            extra = {} if f.traceback is None else {"traceback": f.traceback}
            self._events.emit(
                "dead_lettered", rec, error=f.error, retry_count=rec.retry_count, **extra
            )
        else:
            self.failed(rec, f.error, f.traceback)

    def failed(
        self,
        rec: TaskRecord,
        error: str | None,
        traceback: str | None = None,
        *,
        retry_after_ms: int | None = None,
    ) -> None:
        """Count and emit ``failed``: retried when ``retry_after_ms`` is given."""
        self._metrics["failed"] += 1
        extra = {} if traceback is None else {"traceback": traceback}
        self._events.emit(
            "failed",
            rec,
            error=error,
            retryable=retry_after_ms is not None,
            will_retry=retry_after_ms is not None,
            retry_after_ms=retry_after_ms,
            attempt=rec.retry_count + 1,
            **extra,
        )

    def cancelled(self, cancelled: Sequence[CancelledTask], reason: str) -> None:
        """Tasks cancelled on request: their runs stop, ``cancelled`` for each."""
        for ct in cancelled:
            self._executions.stop(ct.record.id, reason)
            self._metrics["cancelled"] += 1
            self._events.emit("cancelled", ct.record, reason=reason)
        if cancelled:
            self._wake()

    def effects(self, eff: Effects) -> None:
        """Events for tasks an operation touched indirectly (cascades)."""
        now = self._now_ms()
        for ct in eff.cancelled:
            self._executions.stop(ct.record.id, "cancelled")
            self._metrics["cancelled"] += 1
            self._events.emit("cancelled", ct.record, reason=ct.reason)
        for rec in eff.expired:
            self._metrics["expired"] += 1
            self._events.emit("expired", rec, age_ms=now - rec.created_at)
        for rec, failed_dep in eff.dependency_failed:
            self._metrics["dependency_failures"] += 1
            self._events.emit("dependency_failed", rec, failed_dependency=failed_dep)
        for rec in eff.unblocked:
            self._events.emit("unblocked", rec)
        if eff.unblocked:
            self._policy.invalidate_counts()
            self._wake()
        for rec, error, was in eff.failed_parents:
            if was is Status.RUNNING:
                self._executions.stop(rec.id, "cancelled")
            self.failed(rec, error)
        if eff.parents_ready:
            self._wake()

    def preempted(self, ex: Execution, reason: str, by_task_id: int | None) -> None:
        """A running task paused (preemption, a pause): its run stops."""
        self._executions.stop(ex.record.id, reason)
        self._metrics["preempted"] += 1
        self._events.emit("preempted", ex.record, by_task_id=by_task_id)
