"""Children, waiting parents and finalize."""

from __future__ import annotations

import asyncio
from typing import Any

from taskmill import Domain, Status, TaskError
from tests.helpers import MakeScheduler, until


def fanout_domain(release: asyncio.Event | None = None) -> Domain:
    d = Domain("f")

    class Parent:
        async def execute(self, payload: dict[str, Any], ctx: Any) -> Any:
            for i in range(payload["n"]):
                await ctx.spawn_child("f::child", {"i": i, "fail": i == payload.get("fail")})
            return {"spawned": payload["n"]}

        async def finalize(self, payload: Any, memo: Any, ctx: Any) -> Any:
            return {
                "memo": memo,
                "statuses": sorted(c["status"] for c in ctx.children),
                "results": sorted(
                    c["result"]["i"] for c in ctx.children if c["status"] == "completed"
                ),
            }

    async def child(payload: dict[str, Any], ctx: Any) -> Any:
        if release is not None:
            await release.wait()
        if payload["fail"]:
            raise TaskError.permanent(f"child {payload['i']} broke")
        return {"i": payload["i"]}

    d.register("parent", Parent())
    d.register("child", child)
    d.register("plain_parent", Parent().execute)
    return d


async def test_parent_waits_then_finalizes_with_children_outcomes(
    make_scheduler: MakeScheduler,
) -> None:
    release = asyncio.Event()
    sched = await make_scheduler(fanout_domain(release), max_concurrency=4)
    sub = sched.subscribe(kinds=["waiting", "completed", "dispatched"])
    res = await sched.submit("f::parent", {"n": 3})
    ev = await sub.get(timeout=5)
    while ev.kind != "waiting":
        ev = await sub.get(timeout=5)
    assert ev.task_id == res.id and ev["children_count"] == 3
    assert (await sched.get(res.id)).status is Status.WAITING
    release.set()
    rec = await sched.wait_for(res.id, timeout=5)
    assert rec.status is Status.COMPLETED
    assert rec.result == {
        "memo": {"spawned": 3},
        "statuses": ["completed"] * 3,
        "results": [0, 1, 2],
    }
    children, total = await sched.history(task_type="f::child")
    assert total == 3 and all(c.parent_id == res.id for c in children)


async def test_parent_without_finalize_completes_with_execute_result(
    make_scheduler: MakeScheduler,
) -> None:
    sched = await make_scheduler(fanout_domain())
    res = await sched.submit("f::plain_parent", {"n": 2})
    rec = await sched.wait_for(res.id, timeout=5)
    assert rec.status is Status.COMPLETED and rec.result == {"spawned": 2}


async def test_fail_fast_cancels_siblings_and_fails_parent(make_scheduler: MakeScheduler) -> None:
    release = asyncio.Event()
    sched = await make_scheduler(fanout_domain(release), max_concurrency=8)
    res = await sched.submit("f::parent", {"n": 4, "fail": 1})
    await until(lambda: len(sched.running()) >= 4)
    release.set()
    rec = await sched.wait_for(res.id, timeout=5)
    assert rec.status is Status.FAILED
    assert rec.last_error is not None and "child 1 broke" in rec.last_error
    children, _ = await sched.history(task_type="f::child")
    statuses = sorted(c.status.value for c in children)
    assert "failed" in statuses and len(children) == 4


async def test_fail_fast_false_lets_finalize_decide(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(fanout_domain(), max_concurrency=2)
    res = await sched.submit("f::parent", {"n": 3, "fail": 0}, fail_fast=False)
    rec = await sched.wait_for(res.id, timeout=5)
    assert rec.status is Status.COMPLETED
    assert rec.result["statuses"] == ["completed", "completed", "failed"]
    assert rec.result["results"] == [1, 2]


async def test_sibling_of_root_is_invalid_state(make_scheduler: MakeScheduler) -> None:
    seen: list[str] = []

    async def root(payload: Any, ctx: Any) -> Any:
        try:
            await ctx.spawn_sibling("s::root", {"x": 1})
        except Exception as exc:
            seen.append(type(exc).__name__)
        return None

    d = Domain("s")
    d.register("root", root)
    sched = await make_scheduler(d)
    res = await sched.submit("s::root", None)
    await sched.wait_for(res.id, timeout=5)
    assert seen == ["InvalidState"]


async def test_waiting_parent_survives_restart(db_path: str) -> None:
    from taskmill import Scheduler

    release = asyncio.Event()
    sched = Scheduler(db_path, domains=[fanout_domain(release)])
    await sched.start()
    res = await sched.submit("f::parent", {"n": 2})
    await until(lambda: len(sched.running()) == 2)
    assert (await sched.get(res.id)).status is Status.WAITING
    await sched.shutdown("hard")
    again = Scheduler(db_path, domains=[fanout_domain()])
    await again.start()
    try:
        rec = await again.wait_for(res.id, timeout=5)
        assert rec.status is Status.COMPLETED
        assert rec.result["results"] == [0, 1]
    finally:
        await again.shutdown("hard")


async def test_cancel_waiting_parent_cancels_children(make_scheduler: MakeScheduler) -> None:
    release = asyncio.Event()
    sched = await make_scheduler(fanout_domain(release), max_concurrency=4)
    sub = sched.subscribe(kinds=["cancelled"])
    res = await sched.submit("f::parent", {"n": 2})
    await until(lambda: len(sched.running()) == 2)
    assert (await sched.get(res.id)).status is Status.WAITING
    assert await sched.cancel(res.id) is True
    assert (await sched.get(res.id)).status is Status.CANCELLED
    cancelled = {(await sub.get(timeout=5)).task_id for _ in range(3)}
    assert res.id in cancelled and len(cancelled) == 3
    assert not sched.running()
