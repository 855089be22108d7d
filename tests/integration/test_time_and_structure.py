"""TTL, delays, recurring schedules, dependencies, children and tags."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskmill import (
    Domain,
    InvalidParams,
    NotFound,
    Recurring,
    Scheduler,
    SchedulerConfig,
    Status,
    Submission,
    TaskFilter,
)
from taskmill.testing import FakeClock
from tests.helpers import MakeScheduler, until


class Log:
    def __init__(self) -> None:
        self.runs: list[Any] = []

    async def __call__(self, payload: Any, ctx: Any) -> Any:
        self.runs.append(payload)
        return payload


def dom(name: str = "t", **executors: Any) -> Domain:
    d = Domain(name)
    for type_name, fn in executors.items():
        d.register(type_name, fn)
    return d


# -- TTL ------------------------------------------------------------------------


async def test_ttl_precedence_task_type_domain_global(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    d = Domain("t", default_ttl_ms=3_000)
    d.register("typed", Log(), ttl_ms=2_000)
    d.register("plain", Log())
    other = dom("o", plain=Log())
    sched = await make_scheduler(d, other, clock=clock, default_ttl_ms=4_000, max_concurrency=0)
    now = clock.now_ms()
    per_task = await sched.get((await sched.submit("t::typed", 1, ttl_ms=1_000)).id)
    per_type = await sched.get((await sched.submit("t::typed", 2)).id)
    per_domain = await sched.get((await sched.submit("t::plain", 3)).id)
    global_ = await sched.get((await sched.submit("o::plain", 4)).id)
    assert [r.expires_at for r in (per_task, per_type, per_domain, global_)] == [
        now + 1_000,
        now + 2_000,
        now + 3_000,
        now + 4_000,
    ]


async def test_sweep_expires_queued_tasks_with_event(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    log = Log()
    sched = await make_scheduler(
        dom(l=log), clock=clock, max_concurrency=0, expiry_sweep_interval_ms=30_000
    )
    sub = sched.subscribe(kinds=["expired"])
    res = await sched.submit("t::l", 1, ttl_ms=10_000)
    keep = await sched.submit("t::l", 2, ttl_ms=100_000)
    clock.advance(30_000)  # the next sweep is due
    ev = await sub.get(timeout=5)
    assert ev.task_id == res.id and ev["age_ms"] == 30_000
    assert (await sched.get(res.id)).status is Status.EXPIRED
    assert (await sched.get(keep.id)).status is Status.PENDING
    # Expiry frees the key.
    again = await sched.submit("t::l", 1)
    assert again.outcome == "inserted"
    assert log.runs == []


async def test_expiry_at_dispatch_and_paused_groups_keep_their_ttl(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    sched = await make_scheduler(
        dom(l=Log()), clock=clock, max_concurrency=0, expiry_sweep_interval_ms=None
    )
    a = await sched.submit("t::l", 1, ttl_ms=1_000)
    b = await sched.submit("t::l", 2, ttl_ms=1_000, group="g")
    await sched.pause_group("g")
    clock.advance(2_000)
    sched.set_max_concurrency(1)
    await sched.tick()
    assert (await sched.get(a.id)).status is Status.EXPIRED  # seen at dispatch
    assert await sched.expire_now() == 1  # the paused one expires in a sweep
    assert (await sched.get(b.id)).status is Status.EXPIRED


async def test_ttl_from_first_attempt(make_scheduler: MakeScheduler, clock: FakeClock) -> None:
    from taskmill import RetryPolicy, TaskError

    async def flaky(payload: Any, ctx: Any) -> Any:
        raise TaskError("again")

    d = Domain("t")
    d.register("f", flaky, retry=RetryPolicy(max_retries=5, base_ms=5_000))
    sched = await make_scheduler(d, clock=clock)
    await sched.pause()
    res = await sched.submit("t::f", 1, ttl_ms=3_000, ttl_from="first_attempt")
    assert (await sched.get(res.id)).expires_at is None
    clock.advance(1_000)
    start = clock.now_ms()
    await sched.resume()
    await until(lambda: sched.metrics["failed"] == 1)
    rec = await sched.get(res.id)
    assert rec.expires_at == start + 3_000  # fixed at the first attempt
    clock.advance(5_000)  # the retry is due, but the TTL ran out first
    await sched.tick()
    assert (await sched.get(res.id)).status is Status.EXPIRED


async def test_children_inherit_remaining_ttl_and_expire_with_parent(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    sched = await make_scheduler(dom(l=Log()), clock=clock, max_concurrency=0)
    parent = await sched.submit("t::l", "p", ttl_ms=10_000)
    clock.advance(4_000)
    child = await sched.submit("t::l", "c", parent_id=parent.id)
    own = await sched.submit("t::l", "own", parent_id=parent.id, ttl_ms=1_000)
    c = await sched.get(child.id)
    assert c.expires_at == (await sched.get(parent.id)).expires_at  # 6 s left
    assert (await sched.get(own.id)).expires_at == clock.now_ms() + 1_000
    clock.advance(6_000)
    assert await sched.expire_now() == 3
    for r in (parent, child, own):
        assert (await sched.get(r.id)).status is Status.EXPIRED


async def test_deadlines_survive_restart(db_path: str, clock: FakeClock) -> None:
    sched = Scheduler(
        db_path, domains=[dom(l=Log())], clock=clock, config=SchedulerConfig(max_concurrency=0)
    )
    await sched.start()
    res = await sched.submit("t::l", 1, ttl_ms=5_000)
    await sched.shutdown("hard")
    clock.advance(60_000)  # it expired while the process was down
    again = Scheduler(db_path, domains=[dom(l=Log())], clock=clock)
    await again.start()
    try:
        await again.tick()
        assert (await again.get(res.id)).status is Status.EXPIRED
    finally:
        await again.shutdown("hard")


# -- delays ---------------------------------------------------------------------


async def test_run_after_and_run_at(make_scheduler: MakeScheduler, clock: FakeClock) -> None:
    log = Log()
    sched = await make_scheduler(dom(l=log), clock=clock)
    await sched.submit("t::l", "later", run_after_ms=5_000)
    await sched.submit("t::l", "at", run_at=clock.now_ms() + 8_000)
    await sched.tick()
    assert log.runs == []
    clock.advance(4_999)
    await sched.tick()
    assert log.runs == []
    clock.advance(1)
    await until(lambda: log.runs == ["later"])
    clock.advance(3_000)
    await until(lambda: log.runs == ["later", "at"])


async def test_loop_sleeps_until_the_next_due_task(make_scheduler: MakeScheduler) -> None:
    log = Log()
    sched = await make_scheduler(dom(l=log), poll_interval_ms=60_000)
    await sched.submit("t::l", "soon", run_after_ms=300)
    turns = sched._turns_done
    await until(lambda: log.runs == ["soon"], timeout=5)
    # Woken by the submit and then by its due time, not by polling.
    assert sched._turns_done - turns <= 4


async def test_tasks_due_while_down_run_first(db_path: str, clock: FakeClock) -> None:
    sched = Scheduler(db_path, domains=[dom(l=Log())], clock=clock)
    await sched.start()
    await sched.pause()
    res = await sched.submit("t::l", "due", run_after_ms=1_000)
    await sched.shutdown("hard")
    clock.advance(10_000)
    log = Log()
    again = Scheduler(db_path, domains=[dom(l=log)], clock=clock)
    await again.start()
    try:
        assert (await again.wait_for(res.id, timeout=5)).status is Status.COMPLETED
        assert log.runs == ["due"]
    finally:
        await again.shutdown("hard")


# -- recurring --------------------------------------------------------------------


async def test_recurring_interval_max_and_events(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    log = Log()
    sched = await make_scheduler(dom(l=log), clock=clock)
    sub = sched.subscribe(kinds=["recurring_completed", "completed"])
    res = await sched.submit(
        "t::l",
        "tick",
        recurring=Recurring(interval_ms=60_000, max_occurrences=3, initial_delay_ms=1_000),
    )
    await sched.tick()
    assert log.runs == []
    clock.advance(1_000)
    ev = await sub.get(timeout=5)
    assert ev.kind == "recurring_completed" and ev["occurrences"] == 1
    assert ev["next_task_id"] is not None
    assert (await sub.get(timeout=5)).kind == "completed"
    (sched_info,) = await sched.recurring_list()
    assert sched_info["id"] == res.id and sched_info["occurrences"] == 1
    assert sched_info["next_run"] == clock.now_ms() + 60_000
    for n in (2, 3):
        clock.advance(60_000)
        ev = await sub.get(timeout=5)
        assert ev.kind == "recurring_completed" and ev["occurrences"] == n
        await sub.get(timeout=5)
    assert ev["next_task_id"] is None  # max_occurrences reached
    assert log.runs == ["tick"] * 3
    assert await sched.recurring_list() == []


async def test_recurring_skips_overdue_occurrences(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    log = Log()
    sched = await make_scheduler(dom(l=log), clock=clock, max_concurrency=0)
    sub = sched.subscribe(kinds=["recurring_skipped"])
    await sched.submit("t::l", "sync", recurring=Recurring(interval_ms=10_000))
    clock.advance(35_000)  # held back: three more occurrences came due meanwhile
    sched.set_max_concurrency(1)
    ev = await sub.get(timeout=5)
    assert ev["reason"] == "overdue" and ev["count"] == 3
    (info,) = await sched.recurring_list()
    assert info["next_run"] == clock.now_ms() + 5_000  # back on the cadence
    assert sched.metrics["recurring_skipped"] == 3


async def test_recurring_pause_resume_cancel(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    log = Log()
    sched = await make_scheduler(dom(l=log), clock=clock)
    res = await sched.submit(
        "t::l", "job", recurring=Recurring(interval_ms=1_000), run_after_ms=500
    )
    await sched.pause_recurring(res.id)
    assert (await sched.recurring_list())[0]["paused"] is True
    await sched.resume_recurring(res.id)
    clock.advance(500)
    await until(lambda: len(log.runs) == 1)
    await until(lambda: len(asyncio.all_tasks()) > 0)
    (info,) = await sched.recurring_list()
    assert info["id"] == res.id and info["task_id"] != res.id  # the schedule id is stable
    await sched.pause_recurring(res.id)
    clock.advance(1_000)
    await sched.tick()
    assert len(log.runs) == 1  # paused: the queued occurrence is held
    (held,) = await sched.recurring_list()
    assert held["paused"] is True and held["status"] == "paused"
    await sched.resume_recurring(res.id)
    await until(lambda: len(log.runs) == 2)
    await sched.pause_recurring(res.id)
    clock.advance(1_000)
    await sched.tick()
    # The schedule outlives its occurrences while paused (it is never dropped).
    (kept,) = await sched.recurring_list()
    assert kept["id"] == res.id and kept["paused"] is True and kept["status"] == "paused"
    assert len(log.runs) == 2
    await sched.cancel_recurring(res.id)
    assert await sched.recurring_list() == []
    res2 = await sched.submit(
        "t::l", "job2", recurring=Recurring(interval_ms=1_000), run_after_ms=50_000
    )
    await sched.cancel_recurring(res2.id)
    assert (await sched.get(res2.id)).status is Status.CANCELLED
    with pytest.raises(NotFound):
        await sched.pause_recurring(res2.id)
    with pytest.raises(InvalidParams):
        await sched.submit("t::l", "x", recurring=Recurring(interval_ms=10), parent_id=res2.id)


async def test_recurring_survives_restart(db_path: str, clock: FakeClock) -> None:
    log = Log()
    sched = Scheduler(db_path, domains=[dom(l=log)], clock=clock)
    await sched.start()
    res = await sched.submit("t::l", "r", recurring=Recurring(interval_ms=1_000))
    # Recorded, not only run: a hard shutdown puts a run still going back to pending.
    await until(lambda: sched.metrics["completed"] == 1)
    await sched.shutdown("hard")
    clock.advance(1_000)
    log2 = Log()
    again = Scheduler(db_path, domains=[dom(l=log2)], clock=clock)
    await again.start()
    try:
        await until(lambda: len(log2.runs) == 1)
        (info,) = await again.recurring_list()
        assert info["id"] == res.id and info["occurrences"] == 2
    finally:
        await again.shutdown("hard")


# -- dependencies -------------------------------------------------------------------


async def test_dependencies_block_then_unblock(make_scheduler: MakeScheduler) -> None:
    log = Log()
    sched = await make_scheduler(dom("a", l=log), dom("b", l=log), max_concurrency=4)
    await sched.pause()
    one = await sched.submit("a::l", 1)
    two = await sched.submit("a::l", 2)
    after = await sched.submit("b::l", "after", depends_on=[one.id, two.id])  # cross-domain
    assert (await sched.get(after.id)).status is Status.BLOCKED
    deps = await sched.dependencies(after.id)
    assert deps == {"depends_on": [one.id, two.id], "dependents": []}
    assert (await sched.dependencies(one.id))["dependents"] == [after.id]
    sub = sched.subscribe(kinds=["unblocked", "completed"])
    await sched.resume()
    kinds: list[str] = []
    while "completed" not in kinds[-1:] or len(kinds) < 4:
        kinds.append((await sub.get(timeout=5)).kind)
    assert kinds.index("unblocked") == 2  # after both dependencies completed
    assert log.runs[-1] == "after"
    # A dependency already completed is satisfied at submit.
    late = await sched.submit("b::l", "late", depends_on=[one.id])
    assert (await sched.get(late.id)).status in (Status.PENDING, Status.RUNNING, Status.COMPLETED)


async def test_dependency_errors_at_submit(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(dom(l=Log()), max_concurrency=0)
    with pytest.raises(InvalidParams) as err:
        await sched.submit("t::l", 1, depends_on=[9999])
    assert err.value.field == "depends_on"
    a = await sched.submit("t::l", "a", key="a")
    b = await sched.submit("t::l", "b", depends_on=[a.id])
    # Superseding a with a dependency on b would close a cycle.
    with pytest.raises(InvalidParams) as err:
        await sched.submit("t::l", "a2", key="a", on_duplicate="supersede", depends_on=[b.id])
    assert "cycle" in err.value.message
    await sched.cancel(a.id)
    with pytest.raises(InvalidParams):
        await sched.submit("t::l", "c", depends_on=[a.id])  # ended without completing
    ok = await sched.submit("t::l", "c", depends_on=[a.id], on_dependency_failure="ignore")
    assert ok.outcome == "inserted"


async def test_dependency_failure_policies(make_scheduler: MakeScheduler) -> None:
    from taskmill import TaskError

    async def boom(payload: Any, ctx: Any) -> Any:
        raise TaskError.permanent("no")

    log = Log()
    sched = await make_scheduler(dom(boom=boom, l=log))
    sub = sched.subscribe(kinds=["dependency_failed", "unblocked"])
    await sched.pause()
    root = await sched.submit("t::boom", "root")
    cancel_dep = await sched.submit("t::l", "c1", depends_on=[root.id])
    cascaded = await sched.submit(
        "t::l", "c2", depends_on=[cancel_dep.id], on_dependency_failure="ignore"
    )
    fail_dep = await sched.submit("t::l", "f1", depends_on=[root.id], on_dependency_failure="fail")
    after_fail = await sched.submit(
        "t::l", "f2", depends_on=[fail_dep.id], on_dependency_failure="ignore"
    )
    ignore_dep = await sched.submit(
        "t::l", "i1", depends_on=[root.id], on_dependency_failure="ignore"
    )
    await sched.resume()
    for r in (root, cancel_dep, fail_dep):
        await sched.wait_for(r.id, timeout=5)
    assert (await sched.get(cancel_dep.id)).status is Status.DEPENDENCY_FAILED
    assert (await sched.get(fail_dep.id)).status is Status.DEPENDENCY_FAILED
    # cancel cascades whatever the downstream policy; fail lets it decide.
    assert (await sched.get(cascaded.id)).status is Status.DEPENDENCY_FAILED
    assert (await sched.wait_for(after_fail.id, timeout=5)).status is Status.COMPLETED
    assert (await sched.wait_for(ignore_dep.id, timeout=5)).status is Status.COMPLETED
    failed: set[int | None] = set()
    while len(failed) < 3:
        ev = await sub.get(timeout=5)
        if ev.kind == "dependency_failed":
            failed.add(ev.task_id)
    assert failed == {cancel_dep.id, cascaded.id, fail_dep.id}
    assert sched.metrics["dependency_failures"] == 3


async def test_stale_edges_cleaned_at_startup(db_path: str) -> None:
    sched = Scheduler(db_path, domains=[dom(l=Log())], config=SchedulerConfig(max_concurrency=0))
    await sched.start()
    a = await sched.submit("t::l", "a")
    b = await sched.submit("t::l", "b", depends_on=[a.id])
    await sched.store.engine.write(lambda c: c.execute("DELETE FROM tasks WHERE id = ?", (a.id,)))
    await sched.shutdown("hard")
    again = Scheduler(db_path, domains=[dom(l=Log())])
    await again.start()
    try:
        assert (await again.wait_for(b.id, timeout=5)).status is Status.COMPLETED
    finally:
        await again.shutdown("hard")


async def test_chain_of_50_and_fan_in_of_100(make_scheduler: MakeScheduler) -> None:
    log = Log()
    sched = await make_scheduler(dom(l=log), max_concurrency=8)
    prev = None
    for i in range(50):
        res = await sched.submit("t::l", f"chain-{i}", depends_on=[prev] if prev else None)
        prev = res.id
    assert prev is not None
    assert (await sched.wait_for(prev, timeout=20)).status is Status.COMPLETED
    assert [r for r in log.runs if str(r).startswith("chain")] == [f"chain-{i}" for i in range(50)]
    leaves = await sched.submit_batch(
        [Submission(task_type="t::l", payload=f"leaf-{i}") for i in range(100)]
    )
    sink = await sched.submit("t::l", "sink", depends_on=[r.id for r in leaves])
    assert (await sched.wait_for(sink.id, timeout=20)).status is Status.COMPLETED
    assert log.runs[-1] == "sink"


# -- children -------------------------------------------------------------------------


async def test_spawn_children_batch_cross_domain_and_priority_inheritance(
    make_scheduler: MakeScheduler,
) -> None:
    seen: dict[str, Any] = {}

    class Parent:
        async def execute(self, payload: Any, ctx: Any) -> Any:
            res = await ctx.spawn_children(
                [Submission(task_type="kids::c", payload=i) for i in range(3)]
            )
            seen["ids"] = [r.id for r in res]
            await ctx.spawn_child("kids::c", "explicit", priority="idle")
            return None

        async def finalize(self, payload: Any, memo: Any, ctx: Any) -> Any:
            return len(ctx.children)

    release = asyncio.Event()

    async def child(payload: Any, ctx: Any) -> Any:
        await release.wait()
        return payload

    kids = dom("kids", c=child)
    parents = Domain("p")
    parents.register("p", Parent())
    sched = await make_scheduler(parents, kids, max_concurrency=0)
    res = await sched.submit("p::p", None, priority="high", tags={"job": "x"})
    sched.set_max_concurrency(1)
    await until(lambda: "ids" in seen)
    first = await sched.get(seen["ids"][0])
    assert first.priority == 64 and first.parent_id == res.id  # inherited the parent's
    assert first.tags["job"] == "x"  # and its tags
    await until(lambda: len(sched.running()) == 1 and sched.running()[0].task_type == "kids::c")
    tasks, _ = await sched.list_tasks(TaskFilter(parent_id=res.id))
    assert sorted(t.priority for t in tasks) == [64, 64, 64, 255]
    release.set()
    assert (await sched.wait_for(res.id, timeout=5)).result == 4


# -- tags -------------------------------------------------------------------------------


async def test_tag_filters_values_keys_and_literal_prefixes(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(dom(l=Log()), dom("o", l=Log()), max_concurrency=0)
    await sched.submit("t::l", 1, tags={"album": "2024", "a%b": "x"}, group="g1")
    await sched.submit("t::l", 2, tags={"album": "2024"})
    await sched.submit("t::l", 3, tags={"album": "2023", "ab_c": "y"})
    await sched.submit("o::l", 4, tags={"album": "2024"})
    tasks, total = await sched.list_tasks(TaskFilter(tags={"album": "2024"}))
    assert total == 3
    tasks, total = await sched.list_tasks(TaskFilter(tags={"album": "2024"}, domain="t"))
    assert total == 2
    assert (await sched.list_tasks(TaskFilter(group="g1")))[1] == 1
    assert (await sched.list_tasks(TaskFilter(task_type="o::l")))[1] == 1
    assert (await sched.list_tasks(TaskFilter(status=["pending"])))[1] == 4
    # LIKE wildcards in a prefix match literally.
    assert (await sched.list_tasks(TaskFilter(tag_prefix="a%")))[1] == 1
    assert (await sched.list_tasks(TaskFilter(tag_prefix="ab_")))[1] == 1
    assert (await sched.list_tasks(TaskFilter(tag_prefix="a_")))[1] == 0
    assert await sched.tag_values("album") == [
        {"value": "2024", "count": 3},
        {"value": "2023", "count": 1},
    ]
    assert await sched.tag_values("album", domain="o") == [{"value": "2024", "count": 1}]
    assert await sched.tag_keys("a") == ["a%b", "ab_c", "album"]
    assert await sched.tag_keys("a%") == ["a%b"]
    cancelled = await sched.cancel_where(TaskFilter(tags={"album": "2024"}, domain="t"))
    assert len(cancelled) == 2
    assert (await sched.list_tasks())[1] == 2
