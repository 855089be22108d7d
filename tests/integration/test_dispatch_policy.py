"""Dispatch policy through the Python API: preemption, groups, domains, aging,
weighted fairness, rate limits."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from taskmill import Domain, InvalidParams, Scheduler, SchedulerConfig, Status, Submission
from taskmill.scheduler.aging import AgingConfig
from taskmill.testing import FakeClock
from tests.helpers import MakeScheduler, until


class Hold:
    """Executors that run until released (or cancelled), recording starts."""

    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.release = asyncio.Event()

    async def __call__(self, payload: Any, ctx: Any) -> Any:
        self.starts.append(payload)
        await self.release.wait()
        return payload


def domain(name: str = "t", **executors: Any) -> Domain:
    d = Domain(name)
    for type_name, fn in executors.items():
        d.register(type_name, fn)
    return d


async def quick(payload: Any, ctx: Any) -> Any:
    await asyncio.sleep(0.002)
    return payload


# -- preemption ---------------------------------------------------------------


async def test_realtime_submission_preempts_and_work_resumes_after(
    make_scheduler: MakeScheduler,
) -> None:
    hold = Hold()
    urgent_release = asyncio.Event()

    async def urgent(payload: Any, ctx: Any) -> Any:
        await urgent_release.wait()
        return "urgent done"

    sched = await make_scheduler(domain(h=hold, u=urgent), max_concurrency=4)
    sub = sched.subscribe(kinds=["preempted", "dispatched"])
    bg = [await sched.submit("t::h", i, priority="background") for i in range(4)]
    await until(lambda: len(sched.running()) == 4)
    for _ in range(4):
        await sub.get(timeout=5)
    rt = await sched.submit("t::u", None, priority="realtime")
    # It needs one slot: one task is preempted (the least urgent, then the
    # latest started), the other three go on.
    ev = await sub.get(timeout=5)
    assert ev.kind == "preempted" and ev["by_task_id"] == rt.id
    assert ev.task_id in {r.id for r in bg}
    assert (await sched.get(ev.task_id)).status is Status.PAUSED
    assert (await sched.get(ev.task_id)).pause_reasons == ("preempted",)
    ev2 = await sub.get(timeout=5)
    assert ev2.kind == "dispatched" and ev2.task_id == rt.id
    # No thrash: nothing resumes while the urgent task runs.
    await sched.tick()
    await sched.tick()
    assert sorted(r.id for r in sched.running()) == sorted(
        [rt.id, *(r.id for r in bg if r.id != ev.task_id)]
    )
    urgent_release.set()
    hold.release.set()
    await sched.wait_for(rt.id, timeout=5)
    for r in bg:
        rec = await sched.wait_for(r.id, timeout=5)
        assert rec.status is Status.COMPLETED and rec.retry_count == 0
    assert sched.metrics["preempted"] == 1


async def test_pause_reasons_are_independent(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain("dd", q=quick))
    await sched.pause()
    res = await sched.submit("dd::q", 1, group="g1")
    await sched.pause_group("g1")
    await sched.pause_domain("dd")
    assert (await sched.get(res.id)).status is Status.PAUSED
    await sched.resume_domain("dd")
    assert (await sched.get(res.id)).status is Status.PAUSED  # the group still holds it
    await sched.resume_group("g1")
    assert (await sched.get(res.id)).status is Status.PENDING
    await sched.tick()
    assert (await sched.get(res.id)).status is Status.PENDING  # the global pause holds
    await sched.resume()
    assert (await sched.wait_for(res.id, timeout=5)).status is Status.COMPLETED


# -- groups -------------------------------------------------------------------


async def test_group_limit_and_default_group_concurrency(make_scheduler: MakeScheduler) -> None:
    hold = Hold()
    sched = await make_scheduler(domain(h=hold), max_concurrency=8, default_group_concurrency=2)
    sched.set_group_limit("one", 1)
    for i in range(3):
        await sched.submit("t::h", f"one-{i}", group="one")
        await sched.submit("t::h", f"two-{i}", group="two")
        await sched.submit("t::h", f"none-{i}")
    await until(lambda: len(sched.running()) == 6)
    await sched.tick()
    by_group = Counter(r.group for r in sched.running())
    assert by_group == {"one": 1, "two": 2, None: 3}
    sched.set_group_limit("one", None)  # falls back to the default of 2
    await until(lambda: Counter(r.group for r in sched.running())["one"] == 2)
    hold.release.set()


async def test_group_pause_for_a_duration_resumes_by_itself(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    sched = await make_scheduler(domain(q=quick), clock=clock)
    sub = sched.subscribe(kinds=["group_paused", "group_resumed"])
    first = await sched.submit("t::q", 1, group="bucket")
    out = await sched.pause_group("bucket", duration_ms=10_000)
    assert out["pending"] + out["running"] <= 1
    later = await sched.submit("t::q", 2, group="bucket")
    assert (await sched.get(later.id)).status is Status.PAUSED  # stored paused
    ev = await sub.get(timeout=5)
    assert ev.kind == "group_paused" and ev["group"] == "bucket"
    snap = await sched.snapshot()
    (g,) = [g for g in snap["groups"] if g["group"] == "bucket"]
    assert g["paused"] and g["paused_until"] == clock.now_ms() + 10_000
    clock.advance(9_000)
    await sched.tick()
    assert (await sched.get(later.id)).status is Status.PAUSED
    clock.advance(1_000)
    rec = await sched.wait_for(later.id, timeout=5)
    assert rec.status is Status.COMPLETED
    ev = await sub.get(timeout=5)
    assert ev.kind == "group_resumed" and ev["resumed"] >= 1
    await sched.wait_for(first.id, timeout=5)


async def test_group_pause_survives_restart(db_path: str) -> None:
    d = domain(q=quick)
    sched = Scheduler(db_path, domains=[d])
    await sched.start()
    await sched.pause_group("g", duration_ms=3_600_000)
    res = await sched.submit("t::q", 1, group="g")
    await sched.shutdown("hard")
    again = Scheduler(db_path, domains=[domain(q=quick)])
    await again.start()
    try:
        assert "g" in again.policy.paused_groups
        await again.tick()
        assert (await again.get(res.id)).status is Status.PAUSED
        assert await again.resume_group("g") == 1
        assert (await again.wait_for(res.id, timeout=5)).status is Status.COMPLETED
    finally:
        await again.shutdown("hard")


# -- domains --------------------------------------------------------------------


async def test_capped_domain_never_blocks_others(make_scheduler: MakeScheduler) -> None:
    hold = Hold()
    busy = Domain("busy", max_concurrency=1)
    busy.register("h", hold)
    other = domain("other", q=quick)
    sched = await make_scheduler(busy, other, max_concurrency=4)
    for i in range(20):
        await sched.submit("busy::h", i, priority="high")
    res = [await sched.submit("other::q", i, priority="background") for i in range(5)]
    for r in res:
        assert (await sched.wait_for(r.id, timeout=5)).status is Status.COMPLETED
    assert sum(1 for r in sched.running() if r.domain == "busy") == 1
    sched.set_domain_max_concurrency("busy", None)
    await until(lambda: len(sched.running()) == 4)
    hold.release.set()


async def test_domain_pause_holds_new_tasks_and_is_additive_with_global(
    make_scheduler: MakeScheduler,
) -> None:
    hold = Hold()
    sched = await make_scheduler(domain("a", h=hold), domain("b", q=quick))
    sub = sched.subscribe(kinds=["domain_paused", "domain_resumed", "preempted"])
    running = await sched.submit("a::h", "r")
    await until(lambda: len(sched.running()) == 1)
    count = await sched.pause_domain("a")
    assert count == 1
    assert (await sched.get(running.id)).status is Status.PAUSED
    kinds = [(await sub.get(timeout=5)).kind for _ in range(2)]
    assert kinds == ["preempted", "domain_paused"]
    late = await sched.submit("a::h", "late")
    assert (await sched.get(late.id)).status is Status.PAUSED
    other = await sched.submit("b::q", 1)
    assert (await sched.wait_for(other.id, timeout=5)).status is Status.COMPLETED
    await sched.pause()
    assert await sched.resume_domain("a") == 2
    await sched.tick()
    assert not sched.running()  # the global pause still holds
    await sched.resume()
    await until(lambda: len(hold.starts) == 3)
    hold.release.set()
    snap = await sched.snapshot()
    assert {d["domain"]: d["paused"] for d in snap["domains"]} == {"a": False, "b": False}


# -- aging ----------------------------------------------------------------------


async def test_aging_promotes_waiting_work(make_scheduler: MakeScheduler, clock: FakeClock) -> None:
    order: list[str] = []

    async def rec(payload: Any, ctx: Any) -> Any:
        order.append(payload)
        return None

    aging = AgingConfig(grace_period_ms=0, aging_interval_ms=1_000, max_effective_priority=64)
    sched = await make_scheduler(domain(r=rec), clock=clock, aging=aging, max_concurrency=0)
    old = await sched.submit("t::r", "old background", priority=192)
    clock.advance(100_000)  # 100 promotions, clamped at the ceiling of 64
    await sched.submit("t::r", "new normal", priority=128)
    urgent = await sched.submit("t::r", "realtime", priority=0)
    assert (await sched.get(old.id)).effective_priority == 92
    assert (await sched.get(urgent.id)).effective_priority == 0  # never demoted
    sub = sched.subscribe(kinds=["dispatched"])
    sched.set_max_concurrency(1)
    await until(lambda: len(order) == 3)
    assert order == ["realtime", "old background", "new normal"]
    evs = [await sub.get(timeout=5) for _ in range(3)]
    assert [e["effective_priority"] for e in evs] == [0, 92, 128]
    assert [e["base_priority"] for e in evs] == [0, 192, 128]
    snap = await sched.snapshot()
    assert snap["aging"]["max_effective_priority"] == 64


async def test_aging_clock_is_frozen_while_paused(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    aging = AgingConfig(grace_period_ms=0, aging_interval_ms=1_000, max_effective_priority=0)
    sched = await make_scheduler(domain(q=quick), clock=clock, aging=aging, max_concurrency=0)
    res = await sched.submit("t::q", 1, priority=200, group="g")
    await sched.pause_group("g")
    clock.advance(50_000)
    await sched.resume_group("g")
    clock.advance(10_000)
    assert (await sched.get(res.id)).effective_priority == 190


async def test_dispatch_order_does_not_count_time_paused(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    """Within a level, a task paused for a while is less promoted than a younger
    one never paused; dispatch follows the reported effective priorities."""
    order: list[str] = []

    async def rec(payload: Any, ctx: Any) -> Any:
        order.append(payload)
        return None

    aging = AgingConfig(grace_period_ms=0, aging_interval_ms=1_000, max_effective_priority=0)
    sched = await make_scheduler(domain(r=rec), clock=clock, aging=aging, max_concurrency=0)
    paused = await sched.submit("t::r", "paused 100 s", priority=255, group="g")
    await sched.pause_group("g")
    clock.advance(1)
    fresh = await sched.submit("t::r", "never paused", priority=255)
    clock.advance(100_000)
    await sched.resume_group("g")
    clock.advance(50_000)
    middle = await sched.submit("t::r", "middle", priority=150)
    effective = {r.id: (await sched.get(r.id)).effective_priority for r in (paused, fresh, middle)}
    assert effective == {paused.id: 205, fresh.id: 105, middle.id: 150}
    sched.set_max_concurrency(1)
    await until(lambda: len(order) == 3)
    assert order == ["never paused", "middle", "paused 100 s"]


async def test_urgent_threshold_bypasses_weights(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    hold = Hold()
    aging = AgingConfig(
        grace_period_ms=0, aging_interval_ms=1_000, max_effective_priority=0, urgent_threshold=10
    )
    sched = await make_scheduler(domain(h=hold), clock=clock, aging=aging, max_concurrency=0)
    sched.set_group_weight("heavy", 100)
    sched.set_group_min_slots("heavy", 2)
    starving = await sched.submit("t::h", "light", group="light", priority=200)
    clock.advance(195_000)  # 'light' ages to 5: past the urgent threshold
    for i in range(4):  # fresh, so not aged
        await sched.submit("t::h", f"heavy-{i}", group="heavy", priority=50)
    sched.set_max_concurrency(2)
    await until(lambda: len(hold.starts) == 2)
    await sched.tick()
    assert "light" in hold.starts, hold.starts
    assert (await sched.get(starving.id)).status is Status.RUNNING
    hold.release.set()


# -- weighted fairness ------------------------------------------------------------


async def test_weights_three_to_one_within_ten_percent(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain(q=quick), max_concurrency=8)
    sub = sched.subscribe(kinds=["dispatched", "group_weight_changed"], maxsize=5000)
    sched.set_group_weight("a", 3)
    sched.set_group_weight("b", 1)
    ev = await sub.get(timeout=5)
    assert ev.kind == "group_weight_changed" and ev["previous"] == 1 and ev["weight"] == 3
    await sub.get(timeout=5)
    await sched.pause()
    await sched.submit_batch(
        [Submission(task_type="t::q", payload=f"a{i}", group="a") for i in range(400)]
        + [Submission(task_type="t::q", payload=f"b{i}", group="b") for i in range(400)]
    )
    await sched.resume()
    groups: Counter[str] = Counter()
    while sum(groups.values()) < 400:
        ev = await sub.get(timeout=10)
        groups["a" if ev["task_id"] <= 400 else "b"] += 1
    ratio = groups["a"] / groups["b"]
    assert 2.7 <= ratio <= 3.3, groups
    snap = await sched.snapshot()
    alloc = {g["group"]: g["allocated_slots"] for g in snap["groups"]}
    assert alloc["a"] + alloc["b"] <= 8
    assert snap["fair"] is True


async def test_min_slots_and_ungrouped_virtual_group(make_scheduler: MakeScheduler) -> None:
    hold = Hold()
    sched = await make_scheduler(domain(h=hold), max_concurrency=4, default_group_weight=1)
    sched.set_group_weight("big", 10)
    sched.set_group_min_slots("small", 1)
    await sched.pause()
    for i in range(10):
        await sched.submit("t::h", f"big-{i}", group="big")
        await sched.submit("t::h", f"small-{i}", group="small")
        await sched.submit("t::h", f"none-{i}")
    await sched.resume()
    await until(lambda: len(sched.running()) == 4)
    await sched.tick()
    by_group = Counter(r.group for r in sched.running())
    assert by_group["small"] >= 1  # its minimum slot
    assert by_group["big"] >= 2
    hold.release.set()


# -- rate limits ----------------------------------------------------------------


async def test_rate_limit_holds_while_unlimited_work_runs(make_scheduler: MakeScheduler) -> None:
    started: Counter[str] = Counter()
    free_done = asyncio.Event()

    async def limited(payload: Any, ctx: Any) -> Any:
        started["limited"] += 1
        return None

    async def free(payload: Any, ctx: Any) -> Any:
        started["free"] += 1
        if started["free"] == 2000:
            free_done.set()
        return None

    sched = await make_scheduler(domain(lim=limited, free=free), max_concurrency=8)
    sched.set_rate_limit(task_type="t::lim", per_second=50, burst=5)
    await sched.pause()
    await sched.submit_batch(
        [Submission(task_type="t::lim", payload=i) for i in range(400)]
        + [Submission(task_type="t::free", payload=i) for i in range(2000)]
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    await sched.resume()
    # The unlimited type is never held behind the limited one: all of it runs
    # while the limited type stays paced.
    await asyncio.wait_for(free_done.wait(), timeout=60)
    elapsed = loop.time() - began
    limited_then = started["limited"]
    assert limited_then <= 5 + 50 * elapsed + 5, (limited_then, elapsed)
    snap = await sched.snapshot()
    (rl,) = snap["rate_limits"]
    assert rl["scope"] == "t::lim" and rl["per_second"] == 50 and rl["burst"] == 5
    assert 0 <= rl["available_tokens"] <= 5
    assert sched.metrics["rate_limited"] > 0
    assert sched.remove_rate_limit(task_type="t::lim")


async def test_group_and_type_rate_limits_take_tokens_only_together(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    sched = await make_scheduler(domain(q=quick), clock=clock, max_concurrency=0)
    sched.set_rate_limit(task_type="t::q", per_second=1, burst=1)
    sched.set_rate_limit(group="g", per_second=1, burst=1)
    sched.policy.group_buckets["g"].tokens = 0.0
    await sched.submit("t::q", 1, group="g")
    sched.set_max_concurrency(1)
    await sched.tick()
    assert sched.policy.type_buckets["t::q"].tokens == 1.0
    with pytest.raises(InvalidParams):
        sched.set_rate_limit(task_type="t::q", group="g", per_second=1)


async def test_denied_head_of_queue_does_not_block_others(make_scheduler: MakeScheduler) -> None:
    hold = Hold()
    sched = await make_scheduler(domain(h=hold, q=quick), max_concurrency=4)
    sched.set_group_limit("narrow", 1)
    for i in range(30):
        await sched.submit("t::h", f"narrow-{i}", group="narrow", priority="high")
    tail = await sched.submit("t::q", "tail", priority="idle")
    assert (await sched.wait_for(tail.id, timeout=5)).status is Status.COMPLETED
    hold.release.set()


async def test_snapshot_shows_policy(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain(q=quick))
    sched.set_group_limit("g", 3)
    sched.set_group_weight("g", 2)
    sched.set_group_min_slots("g", 1)
    sched.set_rate_limit(group="g", per_second=5)
    snap = await sched.snapshot()
    (g,) = snap["groups"]
    assert (g["limit"], g["weight"], g["min_slots"], g["paused"], g["paused_until"]) == (
        3,
        2.0,
        1,
        False,
        None,
    )
    assert "allocated_slots" in g
    (rl,) = snap["rate_limits"]
    assert rl["scope_kind"] == "group" and rl["available_tokens"] == 5
    assert snap["aging"] is None


async def test_config_defaults_reach_the_policy(db_path: str) -> None:
    cfg = SchedulerConfig(
        default_group_concurrency=2, default_group_weight=3, aging=AgingConfig(urgent_threshold=10)
    )
    sched = Scheduler(db_path, domains=[domain(q=quick)], config=cfg)
    await sched.start()
    try:
        assert sched.policy.default_group_limit == 2
        assert sched.policy.weight(None) == 3
        assert (await sched.snapshot())["aging"]["urgent_threshold"] == 10
    finally:
        await sched.shutdown("hard")
