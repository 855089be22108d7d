"""The scheduler core on real SQLite files: order, dedup, retries, cancel, shutdown."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from taskmill import (
    Domain,
    InvalidParams,
    NotFound,
    PayloadTooLarge,
    Retention,
    RetryPolicy,
    Scheduler,
    SchedulerConfig,
    ShuttingDown,
    Status,
    Submission,
    TaskError,
    UnknownTaskType,
)
from taskmill.testing import FakeClock
from tests.helpers import MakeScheduler, until


class Gated:
    """An executor that records starts and finishes only when released."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.release: dict[Any, asyncio.Event] = {}
        self.started_event = asyncio.Event()

    def gate(self, key: Any) -> asyncio.Event:
        return self.release.setdefault(key, asyncio.Event())

    async def __call__(self, payload: Any, ctx: Any) -> Any:
        self.started.append(payload)
        self.started_event.set()
        await self.gate(payload).wait()
        return {"done": payload}

    async def wait_started(self, n: int) -> None:
        """Until ``n`` tasks have started."""
        await until(lambda: len(self.started) >= n)


def domain_with(**executors: Any) -> Domain:
    d = Domain("t")
    for name, fn in executors.items():
        d.register(name, fn)
    return d


async def echo(payload: Any, ctx: Any) -> Any:
    return payload


async def test_priority_then_fifo_with_one_slot(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    sched = await make_scheduler(domain_with(g=gated), max_concurrency=1)
    await sched.pause()  # queue everything first, then let it run in order
    order = [("a", 128), ("b", 64), ("c", 128), ("d", 0), ("e", 64), ("f", 255)]
    for name, prio in order:
        await sched.submit("t::g", name, priority=prio)
    await sched.resume()
    expected = ["d", "b", "e", "a", "c", "f"]
    for i, name in enumerate(expected):
        await gated.wait_started(i + 1)
        assert gated.started[i] == name
        assert len(sched.running()) == 1
        gated.gate(name).set()
    assert gated.started == expected


async def test_priority_names_and_range(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    res = await sched.submit("t::e", 1, priority="background", run_after_ms=60_000)
    assert (await sched.get(res.id)).priority == 192
    with pytest.raises(InvalidParams) as err:
        await sched.submit("t::e", 2, priority=256)
    assert err.value.field == "priority"
    with pytest.raises(InvalidParams):
        await sched.submit("t::e", 2, priority="urgent")


async def test_unknown_type_and_bad_type_name(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    with pytest.raises(UnknownTaskType):
        await sched.submit("t::nope")
    with pytest.raises(InvalidParams) as err:
        await sched.submit("no-domain")
    assert err.value.field == "task_type"


async def test_dedup_pending_running_and_after_completion(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    sched = await make_scheduler(domain_with(g=gated), max_concurrency=1)
    await sched.pause()
    a = await sched.submit("t::g", "x", key="k1")
    b = await sched.submit("t::g", "x", key="k1")
    assert a.outcome == "inserted" and b.outcome == "duplicate" and b.id == a.id
    # Without an explicit key, the payload is the key.
    c = await sched.submit("t::g", {"p": 1, "q": 2})
    d = await sched.submit("t::g", {"q": 2, "p": 1})
    assert d.outcome == "duplicate" and d.id == c.id
    await sched.cancel(c.id)
    await sched.resume()
    await until(lambda: gated.started == ["x"])
    # Running: the same payload is a duplicate.
    e = await sched.submit("t::g", "x", key="k1")
    assert e.outcome == "duplicate" and e.id == a.id
    gated.gate("x").set()
    rec = await sched.wait_for(a.id, timeout=5)
    assert rec.status is Status.COMPLETED
    # Completed: the key is free again.
    f = await sched.submit("t::g", "x", key="k1")
    assert f.outcome == "inserted" and f.id != a.id


async def test_running_task_with_new_payload_is_requeued(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    sched = await make_scheduler(domain_with(g=gated), max_concurrency=1)
    a = await sched.submit("t::g", "v1", key="doc")
    await until(lambda: gated.started == ["v1"])
    b = await sched.submit("t::g", "v2", key="doc")
    assert b.outcome == "requeued" and b.id == a.id
    gated.gate("v1").set()
    await until(lambda: gated.started == ["v1", "v2"])
    gated.gate("v2").set()
    await until(lambda: sched.metrics["completed"] == 2)
    runs, total = await sched.history(task_type="t::g")
    assert total == 2 and {r.id for r in runs} == {a.id}
    assert sorted(r.result["done"] for r in runs) == ["v1", "v2"]


async def test_upgrade_raises_priority_of_queued_task(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    await sched.pause()
    a = await sched.submit("t::e", 1, key="u", priority="background")
    same = await sched.submit("t::e", 1, key="u", priority="background")
    lower = await sched.submit("t::e", 1, key="u", priority="idle")
    up = await sched.submit("t::e", 1, key="u", priority="high")
    assert (same.outcome, lower.outcome, up.outcome) == ("duplicate", "duplicate", "upgraded")
    assert up.id == a.id
    assert (await sched.get(a.id)).priority == 64


async def test_supersede_pending_gives_a_new_task(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    sched = await make_scheduler(domain_with(e=echo), clock=clock)
    await sched.pause()
    sub = sched.subscribe()
    a = await sched.submit("t::e", {"v": 1}, key="s", tags={"x": "1"})
    clock.advance(1000)
    b = await sched.submit("t::e", {"v": 2}, key="s", on_duplicate="supersede", tags={"y": "2"})
    assert b.outcome == "superseded" and b.id != a.id
    rec = await sched.get(b.id)
    assert rec.payload == {"v": 2} and dict(rec.tags) == {"y": "2"} and rec.key == "s"
    assert rec.created_at == clock.now_ms()  # the aging clock restarts
    old = await sched.get(a.id)
    assert old.status is Status.SUPERSEDED and old.payload == {"v": 1}
    evs = list(iter(sub.get_nowait, None))
    assert [e.kind for e in evs] == ["submitted", "superseded", "submitted"]
    assert evs[1].task_id == a.id and evs[1]["new_task_id"] == b.id


async def test_supersede_running_stops_it(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    sched = await make_scheduler(domain_with(g=gated))
    a = await sched.submit("t::g", "old", key="s")
    await until(lambda: gated.started == ["old"])
    b = await sched.submit("t::g", "new", key="s", on_duplicate="supersede")
    assert b.outcome == "superseded" and b.id != a.id
    await until(lambda: "new" in gated.started)
    gated.gate("new").set()
    gated.gate("old").set()
    rec = await sched.wait_for(b.id, timeout=5)
    assert rec.status is Status.COMPLETED and rec.result == {"done": "new"}
    old = await sched.get(a.id)
    assert old.status is Status.SUPERSEDED


async def test_batch_with_internal_duplicates_is_last_wins(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    await sched.pause()
    subs = [
        Submission(task_type="t::e", payload=1, key="a", label="first"),
        Submission(task_type="t::e", payload=2, key="b"),
        Submission(task_type="t::e", payload=3, key="a", label="last"),
    ]
    out = await sched.submit_batch(subs)
    assert [o.outcome for o in out] == ["duplicate", "inserted", "inserted"]
    assert out[0].id == out[2].id
    rec = await sched.get(out[2].id)
    assert rec.label == "last" and rec.payload == 3
    # One invalid item rejects the whole batch, naming it.
    with pytest.raises(InvalidParams) as err:
        await sched.submit_batch(
            [Submission(task_type="t::e", payload=9), Submission(task_type="t::e", priority=-1)]
        )
    assert err.value.field == "tasks[1].priority"
    _, total = await sched.list_tasks()
    assert total == 2


async def test_retries_follow_backoff_on_fake_clock(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    attempts: list[int] = []

    async def flaky(payload: Any, ctx: Any) -> Any:
        attempts.append(clock.now_ms())
        raise TaskError("boom")

    d = Domain("t")
    d.register("f", flaky, retry=RetryPolicy(max_retries=2, backoff="exponential", base_ms=1000))
    sched = await make_scheduler(d, clock=clock)
    sub = sched.subscribe(kinds=["failed", "dead_lettered", "dispatched"])
    t0 = clock.now_ms()
    res = await sched.submit("t::f")
    await until(lambda: len(attempts) == 1)
    ev = await sub.get(timeout=5)
    assert ev.kind == "dispatched"
    ev = await sub.get(timeout=5)
    assert ev.kind == "failed" and ev["will_retry"] and ev["retry_after_ms"] == 1000
    clock.advance(999)
    await sched.tick()
    assert len(attempts) == 1
    assert (await sched.get(res.id)).status is Status.PENDING
    clock.advance(1)
    await until(lambda: len(attempts) == 2)
    assert attempts[1] - t0 == 1000
    ev = await sub.get(timeout=5)  # dispatched
    ev = await sub.get(timeout=5)
    assert ev.kind == "failed" and ev["retry_after_ms"] == 2000 and ev["attempt"] == 2
    clock.advance(1999)
    await sched.tick()
    assert len(attempts) == 2
    clock.advance(1)
    rec = await sched.wait_for(res.id, timeout=5)
    assert attempts[2] - t0 == 3000
    assert rec.status is Status.DEAD_LETTER and rec.retry_count == 2
    assert rec.last_error == "boom"
    ev = await sub.get(timeout=5)
    ev = await sub.get(timeout=5)
    assert ev.kind == "dead_lettered" and ev["retry_count"] == 2
    # A dead letter can be resubmitted as a new task.
    again = await sched.retry_dead_letter(res.id)
    assert again.outcome == "inserted" and again.id != res.id


async def test_permanent_error_and_arbitrary_exception(make_scheduler: MakeScheduler) -> None:
    calls = {"perm": 0, "boom": 0}

    async def perm(payload: Any, ctx: Any) -> Any:
        calls["perm"] += 1
        raise TaskError.permanent("bad input")

    async def boom(payload: Any, ctx: Any) -> Any:
        calls["boom"] += 1
        raise KeyError("missing")

    sched = await make_scheduler(domain_with(perm=perm, boom=boom), max_retries=1)
    a = await sched.submit("t::perm")
    b = await sched.submit("t::boom")
    ra = await sched.wait_for(a.id, timeout=5)
    rb = await sched.wait_for(b.id, timeout=5)
    assert ra.status is Status.FAILED and ra.last_error == "bad input" and calls["perm"] == 1
    assert rb.status is Status.DEAD_LETTER and calls["boom"] == 2
    assert rb.last_error == "KeyError: 'missing'"
    with pytest.raises(Exception) as err:
        await sched.retry_dead_letter(a.id)
    assert err.value.__class__.__name__ == "InvalidState"


async def test_sync_executor_runs_in_a_thread(make_scheduler: MakeScheduler) -> None:
    import threading

    main = threading.get_ident()

    def blocking(payload: Any, ctx: Any) -> Any:
        ctx.progress.report(0.5, "half")
        ctx.record_write_bytes(10)
        return threading.get_ident() != main

    sched = await make_scheduler(domain_with(b=blocking))
    res = await sched.submit("t::b")
    rec = await sched.wait_for(res.id, timeout=5)
    assert rec.result is True
    assert rec.actual_io is not None and rec.actual_io.disk_write == 10


async def test_payload_and_result_size_limits(make_scheduler: MakeScheduler) -> None:
    async def big(payload: Any, ctx: Any) -> Any:
        return "x" * (256 * 1024 + 1)

    sched = await make_scheduler(domain_with(e=echo, big=big))
    with pytest.raises(PayloadTooLarge) as err:
        await sched.submit("t::e", "x" * (1024 * 1024 + 1))
    assert err.value.field == "payload" and "1 MiB" in err.value.message
    ok = await sched.submit("t::e", "x" * (1024 * 1024 - 2))  # exactly 1 MiB encoded
    assert ok.outcome == "inserted"
    with pytest.raises(InvalidParams) as err2:
        await sched.submit("t::e", {1, 2})
    assert err2.value.field == "payload"
    res = await sched.submit("t::big")
    rec = await sched.wait_for(res.id, timeout=5)
    assert rec.status is Status.FAILED and "256 KiB" in (rec.last_error or "")


async def test_tag_limits(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    with pytest.raises(InvalidParams) as err:
        await sched.submit("t::e", tags={f"k{i}": "v" for i in range(33)})
    assert err.value.field == "tags"
    with pytest.raises(InvalidParams):
        await sched.submit("t::e", tags={"k" * 65: "v"})
    with pytest.raises(InvalidParams):
        await sched.submit("t::e", tags={"k": "v" * 257})


async def test_cancel_in_each_status(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    cancelled_hooks: list[Any] = []

    class WithHook:
        async def execute(self, payload: Any, ctx: Any) -> Any:
            await ctx.cancelled.wait()
            return None

        async def on_cancel(self, payload: Any, ctx: Any) -> None:
            cancelled_hooks.append(payload)

    sched = await make_scheduler(domain_with(g=gated, h=WithHook()), max_concurrency=2)
    sub = sched.subscribe(kinds=["cancelled"])
    running = await sched.submit("t::h", "run")
    await until(lambda: len(sched.running()) == 1)
    await sched.pause()  # the running task goes to paused
    paused = running
    pending = await sched.submit("t::g", "pend")
    blocked = await sched.submit("t::g", "blk", depends_on=[pending.id])
    assert (await sched.get(blocked.id)).status is Status.BLOCKED
    assert (await sched.get(paused.id)).status is Status.PAUSED
    for res in (blocked, pending, paused):
        assert await sched.cancel(res.id) is True
        assert (await sched.get(res.id)).status is Status.CANCELLED
    await sched.resume()
    live = await sched.submit("t::h", "live")
    await until(lambda: len(sched.running()) == 1)
    assert await sched.cancel(live.id) is True
    assert (await sched.get(live.id)).status is Status.CANCELLED
    await until(lambda: cancelled_hooks == ["live"])
    assert await sched.cancel(live.id) is False  # no longer active
    with pytest.raises(NotFound):
        await sched.get(10_000)
    ids = [(await sub.get(timeout=5)).task_id for _ in range(4)]
    assert ids == [blocked.id, pending.id, paused.id, live.id]


async def test_cancel_cascades_to_children(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    sched = await make_scheduler(domain_with(g=gated))
    await sched.pause()
    parent = await sched.submit("t::g", "parent")
    child = await sched.submit("t::g", "child", parent_id=parent.id)
    grandchild = await sched.submit("t::g", "grandchild", parent_id=child.id)
    assert await sched.cancel(parent.id)
    for r in (parent, child, grandchild):
        assert (await sched.get(r.id)).status is Status.CANCELLED


async def test_graceful_shutdown_waits_for_running_task(db_path: str) -> None:
    gated = Gated()
    sched = Scheduler(db_path, domains=[domain_with(g=gated)])
    await sched.start()
    res = await sched.submit("t::g", "slow")
    await until(lambda: gated.started == ["slow"])
    stop = asyncio.create_task(sched.shutdown("graceful", timeout_ms=10_000))
    await asyncio.sleep(0.05)
    assert not stop.done()
    with pytest.raises(ShuttingDown):
        await sched.submit("t::g", "late")
    gated.gate("slow").set()
    await asyncio.wait_for(stop, 5)
    again = Scheduler(db_path, domains=[domain_with(g=gated)])
    await again.start()
    try:
        rec = await again.get(res.id)
        assert rec.status is Status.COMPLETED and rec.result == {"done": "slow"}
    finally:
        await again.shutdown("hard")


async def test_graceful_shutdown_timeout_returns_task_to_pending(db_path: str) -> None:
    gated = Gated()
    sched = Scheduler(db_path, domains=[domain_with(g=gated)])
    await sched.start()
    res = await sched.submit("t::g", "stuck")
    await until(lambda: gated.started == ["stuck"])
    await sched.shutdown("graceful", timeout_ms=50)
    again = Scheduler(db_path, domains=[domain_with(e=echo)])
    await again.start()
    try:
        rec = await again.get(res.id)
        assert rec.status in (Status.PENDING, Status.RUNNING) and rec.retry_count == 0
    finally:
        await again.shutdown("hard")


async def test_hard_shutdown_leaves_task_pending(db_path: str) -> None:
    gated = Gated()
    sched = Scheduler(db_path, domains=[domain_with(g=gated)])
    await sched.start()
    res = await sched.submit("t::g", "work")
    await until(lambda: gated.started == ["work"])
    await sched.shutdown("hard")
    reopened = Scheduler(db_path, domains=[domain_with(g=echo)])
    reopened.config = reopened.config.evolve(max_concurrency=0)
    await reopened.start()
    try:
        rec = await reopened.get(res.id)
        assert rec.status is Status.PENDING and rec.retry_count == 0
        reopened.set_max_concurrency(1)
        done = await reopened.wait_for(res.id, timeout=5)
        assert done.status is Status.COMPLETED and done.result == "work"
    finally:
        await reopened.shutdown("hard")


async def test_retention_prunes_history(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(
        domain_with(e=echo), retention=Retention(max_count=10, prune_interval=5)
    )
    await sched.submit_batch([Submission(task_type="t::e", payload=i) for i in range(40)])
    await until(lambda: sched.metrics["completed"] == 40)
    await sched.tick()
    _, total = await sched.history()
    assert 10 <= total < 15  # pruned every 5 completions down to 10
    kept, _ = await sched.history(limit=100)
    assert {r.payload for r in kept} <= set(range(25, 40))  # the newest survive


async def test_event_order_for_one_task(make_scheduler: MakeScheduler) -> None:
    async def steps(payload: Any, ctx: Any) -> Any:
        for i in range(3):
            ctx.progress.report((i + 1) / 3, f"step {i}")
            await asyncio.sleep(0)
        return "ok"

    sched = await make_scheduler(domain_with(s=steps))
    sub = sched.subscribe(progress_interval_ms=0)
    res = await sched.submit("t::s")
    events = []
    while True:
        ev = await sub.get(timeout=5)
        events.append(ev)
        if ev.kind == "completed":
            break
    assert [e.kind for e in events] == [
        "submitted",
        "dispatched",
        "progress",
        "progress",
        "progress",
        "completed",
    ]
    assert all(e.task_id == res.id for e in events)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert events[-1]["result"] == "ok" and events[-1]["duration_ms"] >= 0
    assert [e["percent"] for e in events[2:5]] == pytest.approx([1 / 3, 2 / 3, 1.0])
    head = events[1].data
    for field in (
        "task_id",
        "task_type",
        "domain",
        "key",
        "label",
        "tags",
        "base_priority",
        "effective_priority",
        "parent_id",
        "attempt",
    ):
        assert field in head


async def test_progress_is_coalesced_per_interval(make_scheduler: MakeScheduler) -> None:
    release = asyncio.Event()

    async def chatty(payload: Any, ctx: Any) -> Any:
        for i in range(200):
            ctx.progress.report(i / 200)
        await release.wait()
        return None

    sched = await make_scheduler(domain_with(c=chatty))
    sub = sched.subscribe(kinds=["progress", "completed"], progress_interval_ms=50)
    res = await sched.submit("t::c")
    first = await sub.get(timeout=5)
    assert first["percent"] == 0.0
    second = await sub.get(timeout=5)  # the latest value, after the interval
    assert second["percent"] == pytest.approx(199 / 200)
    release.set()
    last = await sub.get(timeout=5)
    assert last.kind == "completed" and last.task_id == res.id


async def test_slow_subscriber_gets_lagged_and_dispatch_continues(
    make_scheduler: MakeScheduler,
) -> None:
    sched = await make_scheduler(domain_with(e=echo), max_concurrency=8)
    slow = sched.subscribe(maxsize=16)
    fast = sched.subscribe(kinds=["completed"], maxsize=10_000)
    res = await sched.submit_batch([Submission(task_type="t::e", payload=i) for i in range(300)])
    done = 0
    while done < 300:
        ev = await fast.get(timeout=10)
        done += ev.kind == "completed"
    assert sched.metrics["completed"] == 300
    assert slow.pending() <= 17
    got = list(iter(slow.get_nowait, None))
    kinds = [e.kind for e in got]
    assert "lagged" in kinds
    lagged = got[kinds.index("lagged")]
    assert lagged["missed"] > 0
    assert lagged["missed"] + len(got) - 1 >= 300 * 3 - 16
    assert all(r.outcome == "inserted" for r in res)


async def test_snapshot_fields(make_scheduler: MakeScheduler) -> None:
    gated = Gated()
    sched = await make_scheduler(domain_with(g=gated), max_concurrency=1)
    await sched.submit("t::g", "one")
    await sched.submit("t::g", "two")
    await until(lambda: gated.started == ["one"])
    snap = await sched.snapshot()
    assert snap["pending_count"] == 1 and len(snap["running"]) == 1
    assert snap["max_concurrency"] == 1 and snap["is_paused"] is False
    for k in (
        "paused_count",
        "blocked_count",
        "waiting_count",
        "progress",
        "pressure",
        "pressure_breakdown",
        "resources",
        "domains",
        "groups",
        "rate_limits",
        "recurring",
        "aging",
    ):
        assert k in snap
    sched.set_max_concurrency(2)
    await until(lambda: len(sched.running()) == 2)
    assert (await sched.snapshot())["max_concurrency"] == 2
    gated.gate("one").set()
    gated.gate("two").set()


async def test_state_is_domain_first_then_global(make_scheduler: MakeScheduler) -> None:
    seen: dict[str, Any] = {}

    async def read_state(payload: Any, ctx: Any) -> Any:
        seen.update(a=ctx.state["a"], b=ctx.state["b"])
        return None

    d = Domain("t", state={"a": "domain"})
    d.register("r", read_state)
    sched = await make_scheduler(d, state={"a": "global", "b": "global"})
    res = await sched.submit("t::r")
    await sched.wait_for(res.id, timeout=5)
    assert seen == {"a": "domain", "b": "global"}


async def test_defaults_layer_call_type_domain_scheduler(make_scheduler: MakeScheduler) -> None:
    d = Domain(
        "t",
        default_priority="background",
        default_retry=RetryPolicy(max_retries=7),
        default_group="dg",
        default_tags={"from": "domain", "d": "1"},
    )
    d.register("typed", echo, priority="high", tags={"from": "type"})
    d.register("plain", echo)
    sched = await make_scheduler(d, max_retries=2)
    await sched.pause()
    a = await sched.get((await sched.submit("t::typed", 1)).id)
    b = await sched.get((await sched.submit("t::plain", 1)).id)
    c = await sched.get(
        (
            await sched.submit(
                "t::plain",
                2,
                priority=3,
                group="g",
                retry=RetryPolicy(max_retries=1),
                tags={"from": "call"},
            )
        ).id
    )
    assert (a.priority, a.max_retries, a.group, a.tags["from"]) == (64, 7, "dg", "type")
    assert (b.priority, b.max_retries, b.tags["d"]) == (192, 7, "1")
    assert (c.priority, c.max_retries, c.group, c.tags["from"]) == (3, 1, "g", "call")
    plain = await make_scheduler(domain_with(e=echo), path=sched.path + "2", max_retries=2)
    await plain.pause()
    r = await plain.get((await plain.submit("t::e", 1)).id)
    assert (r.priority, r.max_retries) == (128, 2)


async def test_lookup_and_list(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    await sched.pause()
    a = await sched.submit("t::e", 1, key="alpha", tags={"kind": "x"})
    where, rec = await sched.lookup("t::e", "alpha")
    assert where == "active" and rec is not None and rec.id == a.id
    where, rec = await sched.lookup("t::e", payload=1)
    assert where == "not_found"
    await sched.submit("t::e", 2)
    where, rec = await sched.lookup("t::e", payload=2)
    assert where == "active"
    await sched.resume()
    await sched.wait_for(a.id, timeout=5)
    where, rec = await sched.lookup("t::e", "alpha")
    assert where == "history" and rec is not None and rec.status is Status.COMPLETED


async def test_set_priority_on_queued_task(make_scheduler: MakeScheduler) -> None:
    sched = await make_scheduler(domain_with(e=echo))
    await sched.pause()
    a = await sched.submit("t::e", 1)
    assert await sched.set_priority(a.id, "realtime") is True
    assert (await sched.get(a.id)).priority == 0
    with pytest.raises(NotFound):
        await sched.set_priority(999, 1)


async def test_no_executor_fails_permanently(make_scheduler: MakeScheduler, db_path: str) -> None:
    sched = await make_scheduler(domain_with(e=echo), max_concurrency=0)
    res = await sched.submit("t::e", 1)
    await sched.shutdown("hard")
    other = Domain("t")
    other.register("other", echo)
    again = Scheduler(db_path, domains=[other], config=SchedulerConfig())
    await again.start()
    try:
        rec = await again.wait_for(res.id, timeout=5)
        assert rec.status is Status.FAILED and "no executor" in (rec.last_error or "")
    finally:
        await again.shutdown("hard")


def _size(path: str) -> int:
    return os.stat(path).st_size


async def test_a_caller_that_never_yields_still_gets_checkpoints(
    make_scheduler: MakeScheduler, db_path: str
) -> None:
    """Sequential submits run inline and never give the event loop a turn, so
    the checkpoint they make due must go before the next write: the WAL stays
    bounded (it grew by every commit, 183 MB after 10,000 submits)."""
    from taskmill.store.engine import CHECKPOINT_WAL_BYTES

    sched = await make_scheduler(domain_with(echo=echo), max_concurrency=0)
    for i in range(600):  # about 8 MiB of WAL if nothing is checkpointed
        await sched.submit("t::echo", {"i": i, "pad": "x" * 3000})
    wal = _size(db_path + "-wal")
    assert wal < 3 * CHECKPOINT_WAL_BYTES, wal


async def test_a_caller_that_never_yields_does_not_hold_the_event_loop(
    make_scheduler: MakeScheduler,
) -> None:
    """Inline submits never suspend, so nothing else on the loop ran until the
    caller's loop ended; after INLINE_STREAK of them in a row, the next yields
    first, and tasks start while the caller goes on submitting."""
    from taskmill.store.engine import INLINE_STREAK

    started: list[Any] = []

    async def record(payload: Any, ctx: Any) -> None:
        started.append(payload)

    sched = await make_scheduler(domain_with(record=record), max_concurrency=2)
    for i in range(INLINE_STREAK + 8):  # well under a checkpoint's worth of WAL
        await sched.submit("t::record", i)
    assert started, "no task started while the caller was submitting"
