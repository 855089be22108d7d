"""The scheduler's one door to SQLite: :class:`Store`, one async method per
logical operation.

Each method is one hop to the database and one transaction (writes are
batched with concurrent writes by the :class:`~taskmill.store.engine.Engine`:
group commit, each in its own savepoint), and returns what it did as data
(records, :class:`~taskmill.store.rows.Effects`), never a cursor or a row.
The SQL lives in the concept modules beside this one: ``submit``, ``claim``,
``cascade``, ``runs``, ``recurring``, ``pauses``, ``recovery``,
``worker_types`` and ``queries``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..filters import TaskFilter
from ..model import TaskRecord
from . import cascade, claim, pauses, queries, recovery, recurring, runs, submit, worker_types
from .engine import Engine, rescue_running as engine_rescue_running
from .guard import FileGuard
from .rows import (
    CancelledTask,
    ClaimPlan,
    ClaimResult,
    Effects,
    Finish,
    FinishResult,
    NewTask,
    SubmitEffect,
)

__all__ = ["Counts", "Store", "Turn"]


@dataclass(slots=True)
class Turn:
    """What one turn of the run loop did: finishes recorded, then a claim."""

    results: list[FinishResult]
    claim: ClaimResult
    #: Effects of recording the finishes (the claim carries its own).
    effects: Effects
    pruned: int = 0


@dataclass(slots=True)
class Counts:
    """The counts a snapshot shows."""

    status: dict[str, int]
    domains: dict[str, dict[str, int]]
    groups: dict[str, dict[str, int]]
    pause_reasons: dict[str, int]


class Store:
    """An open taskmill database, seen as its logical operations."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = engine.path

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> Store:
        """Open, check and migrate the database at ``path``.

        Raises:
            StorageError: the database cannot be opened or is not ours.
        """
        return cls(
            await Engine.open(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        )

    @staticmethod
    def rescue_running(path: str, now: int) -> int:
        """Put running tasks back to pending through a fresh connection of its
        own, from any thread, whether or not a Store is open (the lifeline's
        last act while task code blocks the loop). Returns how many.

        Raises:
            sqlite3.Error: the database could not be written within a second.
        """
        return engine_rescue_running(path, now)

    @property
    def guard(self) -> FileGuard | None:
        return self.engine.guard

    async def close(self) -> None:
        await self.engine.close()

    # -- lifecycle ---------------------------------------------------------------

    async def recover(self, now: int) -> recovery.Recovery:
        return await self.engine.write(lambda c: recovery.recover(c, now))

    async def load_pauses(self) -> tuple[dict[str, int | None], set[str]]:
        return await self.engine.read(pauses.load_pauses)

    # -- submission ----------------------------------------------------------------

    async def submit(
        self,
        items: Sequence[NewTask],
        now: int,
        *,
        positions: Sequence[int] | None = None,
        inline: bool = True,
    ) -> list[SubmitEffect]:
        op = functools.partial(submit.submit, items=items, now=now, positions=positions)
        return await self.engine.write(op, inline=inline)

    async def submit_and_claim(
        self, items: Sequence[NewTask], now: int, plan: ClaimPlan
    ) -> tuple[list[SubmitEffect], ClaimResult]:
        """Submit, then claim what ``plan`` admits, in one transaction: an idle
        scheduler starts a submitted task without a turn of its own."""

        def op(conn: Any) -> tuple[list[SubmitEffect], ClaimResult]:
            return submit.submit(conn, items, now), claim.claim(conn, now, plan)

        return await self.engine.write(op)

    # -- the run loop ----------------------------------------------------------------

    async def turn(
        self,
        finishes: Sequence[Finish],
        now: int,
        *,
        plan: ClaimPlan | None,
        prune: tuple[int | None, int | None] | None = None,
        release: Sequence[tuple[int, int]] = (),
        inline: bool = False,
    ) -> Turn:
        """Record finished executions, apply retention (``(max_count,
        max_age_ms)``), put ``release`` (claimed, never started: ``(id,
        dispatch_count)``) back to pending, and claim what ``plan`` admits, in
        one transaction.

        It runs on the database thread, where its SQL overlaps with the
        executions on the loop (measured: inline turns halve throughput on two
        cores), unless ``inline`` (a small turn of an idle scheduler: the hop
        is most of its submit-to-start latency) and the thread is idle.
        """
        eff = Effects()

        def op(conn: Any) -> Turn:
            results = runs.finish(conn, finishes, now, eff) if finishes else []
            if release:
                runs.return_to_pending(conn, release)
            pruned = recovery.prune_history(conn, now, *prune) if prune is not None else 0
            result = (
                claim.claim(conn, now, plan)
                if plan is not None
                else ClaimResult([], claim.next_due(conn))
            )
            return Turn(results, result, eff, pruned)

        return await self.engine.write(op, inline=inline)

    async def resume_preempted(self, now: int, preempt_priority: int) -> tuple[list[int], bool]:
        """Preempted tasks with no urgent task ahead back to pending; and whether
        any preempted task is left."""

        def op(conn: Any) -> tuple[list[int], bool]:
            return pauses.resume_preempted(conn, now, preempt_priority), pauses.has_preempted(conn)

        return await self.engine.write(op)

    async def pause_running(
        self, pairs: Sequence[tuple[int, int]], bit: int, now: int
    ) -> list[int]:
        """Running tasks (``(id, dispatch_count)``) to paused with ``bit``; the ids done."""
        return await self.engine.write(lambda c: runs.pause_running(c, pairs, bit, now))

    async def return_to_pending(self, pairs: Sequence[tuple[int, int]]) -> list[int]:
        """Running tasks back to pending, no retry counted; the ids done."""
        return await self.engine.write(lambda c: runs.return_to_pending(c, pairs))

    # -- control ----------------------------------------------------------------------

    async def cancel(
        self, ids: Sequence[int], now: int, reason: str
    ) -> tuple[list[CancelledTask], Effects]:
        eff = Effects()
        done = await self.engine.write(lambda c: cascade.cancel(c, ids, now, reason, eff))
        return done, eff

    async def cancel_page(
        self, flt: TaskFilter, after: int, limit: int, now: int
    ) -> tuple[list[CancelledTask], int | None, Effects]:
        """One page of a ``cancel_where`` (ids above ``after``), off the loop thread."""
        eff = Effects()
        op = functools.partial(
            cascade.cancel_page, f=flt, after=after, limit=limit, now=now, eff=eff
        )
        done, last = await self.engine.write(op, inline=False)
        return done, last, eff

    async def expire_due(self, now: int) -> Effects:
        eff = Effects()
        await self.engine.write(lambda c: cascade.expire_due(c, now, eff), inline=False)
        return eff

    async def set_priority(self, task_id: int, priority: int) -> bool:
        return await self.engine.write(lambda c: pauses.set_priority(c, task_id, priority))

    async def clear_pause_bit(self, bit: int, now: int) -> list[int]:
        return await self.engine.write(lambda c: pauses.clear_pause_bit(c, bit, now))

    async def pause_domain(self, domain: str, now: int) -> int:
        return await self.engine.write(lambda c: pauses.pause_domain(c, domain, now), inline=False)

    async def resume_domain(self, domain: str, now: int) -> list[int]:
        return await self.engine.write(lambda c: pauses.resume_domain(c, domain, now), inline=False)

    async def pause_group(self, group: str, now: int, resume_at: int | None) -> int:
        return await self.engine.write(
            lambda c: pauses.pause_group(c, group, now, resume_at), inline=False
        )

    async def resume_group(self, group: str, now: int) -> list[int]:
        return await self.engine.write(lambda c: pauses.resume_group(c, group, now), inline=False)

    # -- recurring ------------------------------------------------------------------

    async def schedules(self, domain: str | None = None) -> list[dict[str, Any]]:
        return await self.engine.read(lambda c: recurring.schedules(c, domain))

    async def set_schedule_paused(self, schedule_id: int, paused: bool, now: int) -> list[int]:
        return await self.engine.write(
            lambda c: recurring.set_schedule_paused(c, schedule_id, paused, now)
        )

    async def schedule_task(self, schedule_id: int) -> int | None:
        """The id of a schedule's current occurrence (by schedule or task id)."""
        row = await self.engine.read(lambda c: recurring.find_schedule(c, schedule_id))
        return None if row is None else int(row["id"])

    # -- worker-declared types --------------------------------------------------------

    async def save_worker_type(self, task_type: str, config_json: str, now: int) -> None:
        await self.engine.write(
            lambda c: worker_types.save_worker_type(c, task_type, config_json, now)
        )

    async def forget_worker_type(self, task_type: str) -> bool:
        return await self.engine.write(lambda c: worker_types.forget_worker_type(c, task_type))

    async def worker_types(self) -> list[tuple[str, str]]:
        return await self.engine.read(worker_types.worker_types)

    # -- queries --------------------------------------------------------------------

    async def get(self, task_id: int) -> TaskRecord | None:
        return await self.engine.read(lambda c: queries.get(c, task_id))

    async def get_active(self, task_id: int) -> TaskRecord | None:
        return await self.engine.read(lambda c: queries.get_active(c, task_id))

    async def lookup(self, task_type: str, key: str) -> tuple[str, TaskRecord | None]:
        return await self.engine.read(lambda c: queries.lookup(c, task_type, key))

    async def list_active(
        self, flt: TaskFilter, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]:
        return await self.engine.read(lambda c: queries.list_active(c, flt, limit, offset))

    async def list_history(
        self,
        *,
        status: Sequence[str] | None,
        task_type: str | None,
        key: str | None,
        domain: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[TaskRecord], int]:
        op = functools.partial(
            queries.list_history,
            status=status,
            task_type=task_type,
            key=key,
            domain=domain,
            limit=limit,
            offset=offset,
        )
        return await self.engine.read(op)

    async def retry_source(self, task_id: int) -> tuple[TaskRecord, str | None]:
        return await self.engine.read(lambda c: queries.retry_source(c, task_id))

    async def dependencies(self, task_id: int) -> dict[str, list[int]]:
        return await self.engine.read(lambda c: queries.dependencies(c, task_id))

    async def tag_values(self, key: str, domain: str | None) -> list[dict[str, Any]]:
        return await self.engine.read(lambda c: queries.tag_values(c, key, domain), inline=False)

    async def tag_keys(self, prefix: str, domain: str | None) -> list[str]:
        return await self.engine.read(lambda c: queries.tag_keys(c, prefix, domain), inline=False)

    async def history_stats(self, task_type: str) -> dict[str, Any]:
        return await self.engine.read(lambda c: queries.history_stats(c, task_type), inline=False)

    async def avg_throughput(self, task_type: str, n: int) -> dict[str, float]:
        return await self.engine.read(lambda c: queries.avg_throughput(c, task_type, n))

    async def recent_durations(self, task_type: str, n: int) -> list[int]:
        return await self.engine.read(lambda c: queries.recent_durations(c, task_type, n))

    async def status_counts(self, domain: str | None = None) -> dict[str, int]:
        return await self.engine.read(lambda c: queries.status_counts(c, domain))

    async def counts(self, domain: str | None = None) -> Counts:
        """Everything a snapshot counts, in one read."""

        def op(conn: Any) -> Counts:
            return Counts(
                status=queries.status_counts(conn, domain),
                domains=queries.domain_counts(conn),
                groups=queries.group_counts(conn),
                pause_reasons=queries.pause_reason_counts(conn, domain),
            )

        return await self.engine.read(op)
