"""Event bus: numbering, filters, bounded buffers, coalescing, lagged."""

from __future__ import annotations

import asyncio

import pytest

from taskmill import Progress, Status, TaskRecord
from taskmill.errors import InvalidParams
from taskmill.model import IoBudget
from taskmill.scheduler.events import EventBus, EventFilter


def rec(task_id: int, domain: str = "d", tags: dict[str, str] | None = None) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        task_type=f"{domain}::t",
        domain=domain,
        key="k",
        label="l",
        priority=128,
        effective_priority=128,
        status=Status.PENDING,
        payload=None,
        group=None,
        tags=tags or {},
        parent_id=None,
        retry_count=0,
        max_retries=3,
        last_error=None,
        created_at=0,
        started_at=None,
        run_after=None,
        expires_at=None,
        progress=Progress(),
        expected_io=IoBudget(),
    )


def test_seq_counts_every_event_even_filtered() -> None:
    bus = EventBus(lambda: 5)
    sub = bus.subscribe(EventFilter.of(domains=["b"]))
    bus.emit("submitted", rec(1, "a"), outcome="inserted")
    bus.emit("submitted", rec(2, "b"), outcome="inserted")
    bus.emit("paused")
    got = list(iter(sub.get_nowait, None))
    assert [(e.kind, e.seq) for e in got] == [("submitted", 2), ("paused", 3)]
    assert got[0]["task_id"] == 2 and got[0]["at"] == 5


def test_filters_combine() -> None:
    bus = EventBus(lambda: 0)
    sub = bus.subscribe(EventFilter.of(kinds=["completed"], task_ids=[1, 2], tags={"x": "1"}))
    bus.emit("completed", rec(1, tags={"x": "1"}))
    bus.emit("completed", rec(2, tags={"x": "2"}))
    bus.emit("dispatched", rec(1, tags={"x": "1"}))
    bus.emit("completed", rec(3, tags={"x": "1"}))
    assert [e.task_id for e in iter(sub.get_nowait, None)] == [1]
    with pytest.raises(InvalidParams):
        EventFilter.of(kinds=["nope"])


def test_kinds_no_one_wants_end_early_and_follow_unsubscribes() -> None:
    bus = EventBus(lambda: 0)
    done = bus.subscribe(EventFilter.of(kinds=["completed"]))
    nothing = bus.subscribe(EventFilter.of(kinds=[]))
    assert bus.emit("dispatched", rec(1)) is None  # nobody wants it: not even built
    assert bus.emit("completed", rec(1)) is not None
    everything = bus.subscribe()
    assert bus.emit("dispatched", rec(2)) is not None
    everything.close()
    done.close()
    assert bus.emit("completed", rec(3)) is None
    assert bus.seq == 4  # every event took a seq
    assert [e.task_id for e in iter(everything.get_nowait, None)] == [2]
    assert list(iter(nothing.get_nowait, None)) == []


def test_an_event_skipped_unbuilt_still_takes_its_seq() -> None:
    bus = EventBus(lambda: 0)
    assert not bus.wants("submitted")  # no subscription at all
    bus.skip()
    done = bus.subscribe(EventFilter.of(kinds=["completed"]))
    assert not bus.wants("submitted") and bus.wants("completed")
    bus.skip()
    bus.emit("completed", rec(1))
    assert [e.seq for e in iter(done.get_nowait, None)] == [3]
    bus.subscribe()
    assert bus.wants("submitted")


def test_overflow_becomes_one_lagged_at_the_gap() -> None:
    bus = EventBus(lambda: 0)
    sub = bus.subscribe(maxsize=4)
    for i in range(10):
        bus.emit("dispatched", rec(i), attempt=1)
    got = [sub.get_nowait() for _ in range(4)]
    assert [e.task_id for e in got if e] == [0, 1, 2, 3]
    lag = sub.get_nowait()
    assert lag is not None and lag.kind == "lagged" and lag["missed"] == 6
    assert sub.get_nowait() is None
    bus.emit("dispatched", rec(99), attempt=1)
    nxt = sub.get_nowait()
    assert nxt is not None and nxt.task_id == 99


async def test_progress_coalescing_keeps_latest_and_order() -> None:
    bus = EventBus(lambda: 0)
    sub = bus.subscribe(EventFilter.of(progress_interval_ms=30))
    r = rec(1)
    for i in range(5):
        bus.emit("progress", r, percent=i / 10, message=None, reported=True)
    first = sub.get_nowait()
    assert first is not None and first["percent"] == 0.0
    assert sub.get_nowait() is None  # the rest wait for the interval
    bus.emit("completed", r, duration_ms=1, result=None)
    # The pending progress is flushed before the lifecycle event, in order.
    a, b = sub.get_nowait(), sub.get_nowait()
    assert a is not None and a.kind == "progress" and a["percent"] == 0.4
    assert b is not None and b.kind == "completed"
    sub.close()


async def test_progress_flushes_after_interval() -> None:
    bus = EventBus(lambda: 0)
    sub = bus.subscribe(EventFilter.of(progress_interval_ms=20))
    r = rec(1)
    bus.emit("progress", r, percent=0.1, message=None, reported=True)
    bus.emit("progress", r, percent=0.2, message=None, reported=True)
    assert (await sub.get(timeout=1))["percent"] == 0.1
    assert (await sub.get(timeout=1))["percent"] == 0.2
    sub.close()


async def test_closed_subscription_ends_iteration() -> None:
    bus = EventBus(lambda: 0)
    sub = bus.subscribe()
    bus.emit("paused")
    sub.close()
    seen = [e.kind async for e in sub]
    assert seen == ["paused"]
    bus.emit("resumed")  # no longer delivered
    assert sub.get_nowait() is None
    await asyncio.sleep(0)
