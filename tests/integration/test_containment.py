"""The library's side of trust: one scheduler per database, contained task code,
threads a cancelled run keeps (issue 14)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from taskmill import Domain, RetryPolicy, Scheduler, Status
from taskmill.errors import DatabaseInUse
from tests.helpers import MakeScheduler, until

NO_RETRY = RetryPolicy(max_retries=0, backoff="constant", base_ms=0)


async def test_a_second_scheduler_on_the_same_database_is_refused(
    make_scheduler: MakeScheduler, db_path: str
) -> None:
    first = await make_scheduler()
    second = Scheduler(db_path)
    with pytest.raises(DatabaseInUse) as info:
        await second.start()
    assert info.value.holder_pid is not None
    await first.shutdown()
    third = Scheduler(db_path)
    await third.start()  # the lock went with the first one's shutdown
    await third.shutdown()


@pytest.mark.parametrize("sync", [False, True])
async def test_system_exit_and_friends_fail_the_attempt_only(
    make_scheduler: MakeScheduler, sync: bool
) -> None:
    d = Domain("t")
    raised = {
        "exit": SystemExit(2),
        "interrupt": KeyboardInterrupt(),
        "genexit": GeneratorExit(),
        "cancelled": asyncio.CancelledError(),
    }
    for name, exc in raised.items():

        def raise_sync(payload: Any, ctx: Any, exc: BaseException = exc) -> Any:
            raise exc

        async def raise_async(payload: Any, ctx: Any, exc: BaseException = exc) -> Any:
            raise exc

        d.register(name, raise_sync if sync else raise_async, retry=NO_RETRY)

    async def ok(payload: Any, ctx: Any) -> Any:
        return "fine"

    d.register("ok", ok)
    sched = await make_scheduler(d)
    ids = {name: (await sched.submit(f"t::{name}")).id for name in raised}
    recs = {name: await sched.wait_for(tid, timeout=10) for name, tid in ids.items()}
    assert recs["exit"].status is Status.FAILED and "SystemExit: 2" in (
        recs["exit"].last_error or ""
    )
    assert recs["interrupt"].status is Status.FAILED
    assert recs["genexit"].status is Status.DEAD_LETTER
    assert recs["cancelled"].status is Status.DEAD_LETTER
    assert "CancelledError" in (recs["cancelled"].last_error or "")
    ok_rec = await sched.wait_for((await sched.submit("t::ok")).id, timeout=10)
    assert ok_rec.status is Status.COMPLETED


async def test_a_stopped_run_still_in_its_thread_holds_its_slot(
    make_scheduler: MakeScheduler,
) -> None:
    release = threading.Event()
    started = threading.Event()

    def deaf(payload: Any, ctx: Any) -> Any:
        started.set()
        release.wait(10)
        return None

    async def quick(payload: Any, ctx: Any) -> Any:
        return payload

    d = Domain("t")
    d.register("deaf", deaf)
    d.register("quick", quick)
    sched = await make_scheduler(d, max_concurrency=1)
    res = await sched.submit("t::deaf")
    await asyncio.to_thread(started.wait, 5)
    assert await sched.cancel(res.id)
    q = await sched.submit("t::quick", "after")
    await sched.tick()
    await sched.tick()
    # The cancelled run's thread still runs: its slot is taken.
    assert (await sched.get(q.id)).status is Status.PENDING
    release.set()
    rec = await sched.wait_for(q.id, timeout=10)
    assert rec.status is Status.COMPLETED


async def test_a_run_cancelled_before_its_first_step_frees_its_slot(
    make_scheduler: MakeScheduler,
) -> None:
    """On an idle scheduler a submit starts its task at once; a cancel before
    the task's coroutine ever ran still ends the run and frees the slot."""
    ran: list[int] = []

    async def body(payload: Any, ctx: Any) -> Any:
        ran.append(payload)

    d = Domain("t")
    d.register("t", body)
    sched = await make_scheduler(d, max_concurrency=1)
    await sched.tick()  # the loop is asleep, not in a turn
    first = await sched.submit("t::t", 1)
    assert [r.id for r in sched.running()] == [first.id]  # started by the submit
    assert await sched.cancel(first.id)
    await until(lambda: not sched.executions.busy_slots())
    assert (await sched.get(first.id)).status is Status.CANCELLED
    second = await sched.submit("t::t", 2)
    assert (await sched.wait_for(second.id, timeout=10)).status is Status.COMPLETED
    assert ran == [2]


async def test_every_execution_ends_with_an_outcome(make_scheduler: MakeScheduler) -> None:
    """A mixed batch of misbehaving runs: nothing stays running, nothing is dropped."""
    d = Domain("t")

    async def bad_result(payload: Any, ctx: Any) -> Any:
        return {"x": {1, 2}} if payload % 2 else "\ud800"

    d.register("bad", bad_result, retry=NO_RETRY)
    sched = await make_scheduler(d, max_concurrency=4)
    ids = [(await sched.submit("t::bad", n)).id for n in range(20)]
    for tid in ids:
        rec = await sched.wait_for(tid, timeout=10)
        assert rec.status is Status.FAILED and "cannot be stored" in (rec.last_error or "")
    await until(lambda: not sched.running())
