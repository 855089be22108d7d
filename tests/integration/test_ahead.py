"""Tasks claimed ahead of the free slots (scheduler/ahead.py), through the API:
they look pending until they start, an urgent task goes before them, and a
pause, a group pause or a shutdown puts them back to pending."""

from __future__ import annotations

import asyncio
from typing import Any

from taskmill import Domain, Scheduler, SchedulerConfig, Status, Submission
from tests.helpers import MakeScheduler, until


class Gated:
    """Short tasks that run only while the gate is open, recording starts."""

    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, payload: Any, ctx: Any) -> Any:
        self.starts.append(payload)
        await self.open.wait()
        return None


def domain(run: Gated) -> Domain:
    d = Domain("t")
    d.register("w", run)
    return d


async def _with_window(sched: Scheduler, run: Gated, n: int, **fields: Any) -> list[int]:
    """Queue n short tasks, let the runs be measured, then hold the one running
    so the window stays full; returns the ids."""
    await sched.pause()
    res = await sched.submit_batch(
        [Submission(task_type="t::w", payload=i, **fields) for i in range(n)]
    )
    await sched.resume()
    await until(lambda: len(run.starts) >= 20)
    run.open.clear()

    def held() -> bool:
        running = list(sched.executions.running.values())
        return (
            len(sched.executions.ahead) > 0
            and len(running) == 1
            and bool(run.starts)
            and running[0].record.payload == run.starts[-1]  # it started, and waits
        )

    await until(held)
    await sched.tick()  # what finished before is recorded
    return [r.id for r in res]


async def _running_rows(sched: Scheduler) -> int:
    return int(
        await sched.store.engine.read(
            lambda c: c.execute("SELECT count(*) FROM tasks WHERE status = 'running'").fetchone()[0]
        )
    )


async def test_claimed_ahead_looks_pending_and_counts_as_pending(
    make_scheduler: MakeScheduler,
) -> None:
    run = Gated()
    sched = await make_scheduler(domain(run), max_concurrency=1)
    ids = await _with_window(sched, run, 400)
    waiting = next(iter(sched.executions.ahead)).record.id
    rec = await sched.get(waiting)
    assert rec.status is Status.PENDING and rec.started_at is None
    snap = await sched.snapshot()
    # Every task is counted once: completed, running, or pending (claimed ahead included).
    assert sched.metrics["completed"] == len(run.starts) - 1
    assert snap["running_count"] == 1
    assert snap["pending_count"] == len(ids) - len(run.starts)
    metrics = await sched.metrics_snapshot()
    assert metrics["gauges"]["pending"] == len(ids) - len(run.starts)
    run.open.set()
    await sched.wait_for(ids[-1], timeout=30)


async def test_an_urgent_submission_starts_before_the_window(
    make_scheduler: MakeScheduler,
) -> None:
    run = Gated()
    sched = await make_scheduler(domain(run), max_concurrency=1)
    await _with_window(sched, run, 400)
    started_before = len(run.starts)
    urgent = await sched.submit("t::w", "urgent", priority=10)
    await sched.tick()
    assert urgent.id in sched.executions.ahead, (sched.loop.urgent, len(sched.executions.ahead))
    run.open.set()
    await sched.wait_for(urgent.id, timeout=10)
    # The one running when it arrived finished first; then the urgent one.
    assert run.starts[started_before] == "urgent", run.starts[started_before - 1 :][:5]


async def test_a_pause_puts_the_window_back_to_pending(make_scheduler: MakeScheduler) -> None:
    run = Gated()
    sched = await make_scheduler(domain(run), max_concurrency=1)
    ids = await _with_window(sched, run, 400)
    await sched.pause()
    await sched.tick()
    assert len(sched.executions.ahead) == 0
    # Only the task that ran is left running in the database (paused: stopped).
    assert await _running_rows(sched) == len(sched.executions.running) == 0
    run.open.set()
    await sched.resume()
    await sched.wait_for(ids[-1], timeout=30)


async def test_a_group_pause_takes_its_tasks_out_of_the_window(
    make_scheduler: MakeScheduler,
) -> None:
    run = Gated()
    sched = await make_scheduler(domain(run), max_concurrency=1)
    ids = await _with_window(sched, run, 400, group="g")
    result = await sched.pause_group("g")
    assert not any(c.record.group == "g" for c in sched.executions.ahead)
    assert result["pending"] > 0
    waiting = await sched.list_tasks(limit=1000)
    paused = [r for r in waiting[0] if r.status is Status.PAUSED]
    assert paused and all("group" in (r.pause_reasons or ()) for r in paused)
    run.open.set()
    await sched.resume_group("g")
    await sched.wait_for(ids[-1], timeout=30)


async def test_shutdown_returns_the_window_without_counting_a_retry(db_path: str) -> None:
    run = Gated()
    sched = Scheduler(db_path, domains=[domain(run)], config=SchedulerConfig(max_concurrency=1))
    await sched.start()
    ids = await _with_window(sched, run, 400)
    await sched.shutdown("hard")
    again = Scheduler(db_path, domains=[domain(Gated())], config=SchedulerConfig(max_concurrency=0))
    await again.start()
    try:
        recs, _ = await again.list_tasks(limit=1000)
        assert {r.status for r in recs} == {Status.PENDING}
        assert all(r.retry_count == 0 for r in recs)
        assert len(recs) == len(ids) - len(run.starts) + 1  # the one running came back too
    finally:
        await again.shutdown("hard")


async def test_an_idle_scheduler_claims_a_few_inline_then_the_rest(
    make_scheduler: MakeScheduler,
) -> None:
    from taskmill.scheduler.runloop import INLINE_CLAIM_MAX
    from taskmill.store.store import Store

    run = Gated()
    sched = await make_scheduler(domain(run), max_concurrency=16)
    inline_claims: list[int] = []
    turn = Store.turn

    async def spy(self: Store, *args: Any, **kw: Any) -> Any:
        out = await turn(self, *args, **kw)
        if kw.get("inline"):
            inline_claims.append(len(out.claim.claimed))
        return out

    Store.turn = spy  # type: ignore[method-assign]
    try:
        await sched.pause()
        await sched.submit_batch([Submission(task_type="t::w", payload=i) for i in range(12)])
        run.open.clear()  # nothing finishes: no completion wakes the loop
        await sched.resume()  # one wake; the inline turn asks for the next one itself
        await until(lambda: len(run.starts) == 12)
    finally:
        Store.turn = turn  # type: ignore[method-assign]
        run.open.set()
    assert inline_claims and max(inline_claims) <= INLINE_CLAIM_MAX
    assert sorted(run.starts) == list(range(12))
