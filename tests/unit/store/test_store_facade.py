"""Store: the typed async door over the Engine (one transaction per operation)."""

from __future__ import annotations

import asyncio

import pytest

from taskmill.errors import InvalidParams, StorageError
from taskmill.filters import TaskFilter
from taskmill.model import Outcome, Status
from taskmill.store.rows import ClaimPlan, Finish
from taskmill.store.store import Store
from tests.unit.store.helpers import NOW, new_task


async def test_submit_turn_and_read_back_across_a_reopen(db_path: str) -> None:
    store = await Store.open(db_path)
    try:
        (eff,) = await store.submit([new_task("k", payload={"n": 1})], NOW)
        assert eff.outcome is Outcome.INSERTED
        turn = await store.turn([], NOW + 1, plan=ClaimPlan(limit=4))
        (claimed,) = turn.claim.claimed
        assert claimed.record.id == eff.id and claimed.record.status is Status.RUNNING
        done = Finish(
            task_id=eff.id,
            dispatch_count=claimed.dispatch_count,
            kind="completed",
            result_json='"ok"',
        )
        turn = await store.turn([done], NOW + 5, plan=None, prune=(100, None))
        assert [(r.kind, r.task_id) for r in turn.results] == [("completed", eff.id)]
        assert turn.claim.claimed == [] and turn.pruned == 0 and not turn.effects
    finally:
        await store.close()
    store = await Store.open(db_path)
    try:
        rec = await store.get(eff.id)
        assert rec is not None and (rec.status, rec.result, rec.duration_ms) == (
            Status.COMPLETED,
            "ok",
            4,
        )
        assert (await store.counts()).status == {}
    finally:
        await store.close()


async def test_a_refused_submission_writes_nothing(db_path: str) -> None:
    store = await Store.open(db_path)
    try:
        with pytest.raises(InvalidParams) as err:
            await store.submit([new_task("fine"), new_task("bad", depends_on=[999])], NOW)
        assert err.value.field == "tasks[1].depends_on"
        # The whole operation is one transaction: "fine" was rolled back with it.
        assert await store.list_active(TaskFilter(), 10, 0) == ([], 0)
        assert await store.lookup("d::work", "fine") == ("not_found", None)
    finally:
        await store.close()


async def test_concurrent_writes_commit_together_but_fail_alone(db_path: str) -> None:
    store = await Store.open(db_path)
    try:
        results = await asyncio.gather(
            store.submit([new_task("a")], NOW, inline=False),
            store.submit([new_task("bad", depends_on=[999])], NOW, inline=False),
            store.submit([new_task("b")], NOW, inline=False),
            return_exceptions=True,
        )
        assert isinstance(results[1], InvalidParams)
        assert [r[0].outcome for r in (results[0], results[2]) if isinstance(r, list)] == [
            Outcome.INSERTED,
            Outcome.INSERTED,
        ]
        recs, total = await store.list_active(TaskFilter(), 10, 0)
        assert total == 2 and sorted(r.key for r in recs) == ["a", "b"]
    finally:
        await store.close()


async def test_a_closed_store_refuses_work(db_path: str) -> None:
    store = await Store.open(db_path)
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.get(1)
    with pytest.raises(StorageError, match="closed"):
        await store.submit([new_task("k")], NOW)
