"""Events (protocol section 6): subscriptions, filters, progress coalescing, seq, lagged."""

from __future__ import annotations

import itertools
from typing import Any

from tests.e2e.conftest import WsConnect
from tests.e2e.harness import SidecarProcess, WsClient, error_of

Event = dict[str, Any]


def of_sub(client: SidecarProcess | WsClient, sub: int) -> list[Event]:
    return [e for e in client.events if e["subscription"] == sub]


async def sync(client: SidecarProcess | WsClient) -> None:
    """A round trip: events already buffered for this connection are written before it."""
    await client.result("sidecar.info")


async def test_subscribe_returns_ids_and_unsubscribe_stops_delivery(
    sidecar: SidecarProcess,
) -> None:
    a = await sidecar.subscribe()
    b = await sidecar.subscribe(kinds=["completed"])
    assert a != b
    t1 = await sidecar.submit("demo::echo", 1)
    await sidecar.wait_event(lambda e: e["subscription"] == b and e["task_id"] == t1)
    assert any(e["subscription"] == a and e["task_id"] == t1 for e in sidecar.events)
    assert await sidecar.result("events.unsubscribe", {"subscription": a}) == {}
    seen = len(sidecar.events)
    t2 = await sidecar.submit("demo::echo", 2)
    await sidecar.wait_event(lambda e: e["subscription"] == b and e["task_id"] == t2)
    await sync(sidecar)
    assert all(e["subscription"] != a for e in sidecar.events[seen:])
    resp = await sidecar.error("events.unsubscribe", {"subscription": a})
    assert error_of(resp) == (-32002, "not_found")


async def test_no_events_without_a_subscription(sidecar: SidecarProcess) -> None:
    tid = await sidecar.submit("demo::echo", 1)
    await sidecar.wait_status(tid, "completed")
    await sync(sidecar)
    assert sidecar.events == []


async def test_filters_select_exactly_their_events(sidecar: SidecarProcess) -> None:
    everything = await sidecar.subscribe()
    completed = await sidecar.subscribe(kinds=["completed"])
    demo = await sidecar.subscribe(domains=["demo"], kinds=["submitted"])
    other_domain = await sidecar.subscribe(domains=["other"])
    echo = await sidecar.subscribe(task_types=["demo::echo"])
    tagged = await sidecar.subscribe(tags={"album": "x"})
    two_kinds = await sidecar.subscribe(kinds=["dispatched", "failed"], task_types=["demo::fail"])

    e1 = await sidecar.submit("demo::echo", 1, tags={"album": "x"})
    s1 = await sidecar.submit("demo::sleep", {"ms": 20, "steps": 1}, tags={"album": "y"})
    f1 = await sidecar.submit(
        "demo::fail", {"times": -1, "retryable": False}, tags={"album": "x", "k": "v"}
    )
    e2 = await sidecar.submit("demo::echo", 2)
    by_id = await sidecar.subscribe(task_ids=[s1])  # after the fact: only what is left
    for t in (e1, s1, f1, e2):
        await sidecar.wait_done(t)
    await sync(sidecar)

    def ids_kinds(sub: int) -> list[tuple[int, str]]:
        return [(e["task_id"], e["kind"]) for e in of_sub(sidecar, sub)]

    all_ids = {e["task_id"] for e in of_sub(sidecar, everything)}
    assert all_ids == {e1, s1, f1, e2}
    assert sorted(ids_kinds(completed)) == sorted(
        [(e1, "completed"), (s1, "completed"), (e2, "completed")]
    )
    assert sorted(ids_kinds(demo)) == sorted([(t, "submitted") for t in (e1, s1, f1, e2)])
    assert of_sub(sidecar, other_domain) == []
    assert {e["task_id"] for e in of_sub(sidecar, echo)} == {e1, e2}
    assert {e["task_type"] for e in of_sub(sidecar, echo)} == {"demo::echo"}
    assert {e["task_id"] for e in of_sub(sidecar, tagged)} == {e1, f1}
    assert sorted(ids_kinds(two_kinds)) == [(f1, "dispatched"), (f1, "failed")]
    assert {e["task_id"] for e in of_sub(sidecar, by_id)} <= {s1}
    # Each subscription sees the same events as the catch-all, in the same order.
    for sub in (completed, demo, echo, tagged, two_kinds):
        seqs = [e["seq"] for e in of_sub(sidecar, sub)]
        full = [e["seq"] for e in of_sub(sidecar, everything)]
        assert seqs == [s for s in full if s in set(seqs)]


async def test_seq_increases_by_one_per_event_and_strictly_per_subscription(
    sidecar: SidecarProcess,
) -> None:
    everything = await sidecar.subscribe(progress_interval_ms=0)
    filtered = await sidecar.subscribe(kinds=["completed"])
    ids = [await sidecar.submit("demo::sleep", {"ms": 30, "steps": 3, "i": i}) for i in range(5)]
    for t in ids:
        await sidecar.wait_done(t)
    await sync(sidecar)
    full = [e["seq"] for e in of_sub(sidecar, everything)]
    assert full == list(range(full[0], full[0] + len(full))), "no gaps without a filter"
    part = [e["seq"] for e in of_sub(sidecar, filtered)]
    assert len(part) == 5
    assert all(a < b for a, b in itertools.pairwise(part))
    for e in sidecar.events:
        assert isinstance(e["at"], int) and e["at"] > 1_600_000_000_000


async def test_progress_interval_coalesces_progress(sidecar: SidecarProcess) -> None:
    every = await sidecar.subscribe(kinds=["progress", "completed"], progress_interval_ms=0)
    default = await sidecar.subscribe(kinds=["progress", "completed"])
    slow = await sidecar.subscribe(kinds=["progress", "completed"], progress_interval_ms=10_000)
    tid = await sidecar.submit("demo::sleep", {"ms": 400, "steps": 40})
    await sidecar.wait_done(tid)
    await sync(sidecar)

    def progress(sub: int) -> list[float]:
        return [e["percent"] for e in of_sub(sidecar, sub) if e["kind"] == "progress"]

    assert len(progress(every)) == 40
    assert progress(every) == sorted(progress(every))
    # At most one per 100 ms (plus the latest, flushed before the completion).
    duration = of_sub(sidecar, every)[-1]["duration_ms"]
    assert 1 <= len(progress(default)) <= duration // 100 + 2, (duration, progress(default))
    assert len(progress(default)) < 20
    assert len(progress(slow)) <= 2, progress(slow)
    for sub in (every, default, slow):
        evs = of_sub(sidecar, sub)
        assert evs[-1]["kind"] == "completed"
        # The latest value wins: the last progress before completion is 100 %.
        assert progress(sub)[-1] == 1.0


async def test_two_ws_clients_receive_exactly_their_events(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect, encoding: str
) -> None:
    sc = ws_sidecar
    a = await ws_connect(sc, encoding=encoding)
    b = await ws_connect(sc, encoding="json" if encoding == "msgpack" else "msgpack")
    x = await sc.submit("demo::echo", "x", run_after_ms=600)
    await a.subscribe(kinds=["completed"], domains=["demo"])
    await b.subscribe(task_ids=[x])
    others = [await sc.submit("demo::sleep", {"ms": 20, "steps": 2, "i": i}) for i in range(3)]
    await b.wait_done(x)
    for t in others:
        await a.wait_done(t)
    await a.wait_done(x)
    await sync(a)
    await sync(b)
    assert sorted(e["task_id"] for e in a.events) == sorted([x, *others])
    assert {e["kind"] for e in a.events} == {"completed"}
    assert {e["task_id"] for e in b.events} == {x}
    assert [e["kind"] for e in b.events] == ["dispatched", "completed"]
    for c in (a, b):
        seqs = [e["seq"] for e in c.events]
        assert all(p < q for p, q in itertools.pairwise(seqs))


async def test_a_slow_reader_gets_lagged_and_a_prompt_one_misses_nothing(
    ws_sidecar: SidecarProcess, ws_connect: WsConnect
) -> None:
    sc = ws_sidecar
    n = 2000
    # Completed events carry the result: make them big (about 7 MB in all), and give
    # the slow client a small socket receive buffer, so that kernel buffers cannot
    # absorb the whole stream.
    pad = "p" * 3000
    slow = await ws_connect(sc, rcvbuf=4096)
    fast = await ws_connect(sc)
    await slow.subscribe(kinds=["submitted", "dispatched", "completed"])
    await fast.subscribe(kinds=["completed", "lagged"])
    slow.pause_reading()
    for start in range(0, n, 500):
        batch = [
            {"task_type": "demo::echo", "payload": {"i": i, "pad": pad}}
            for i in range(start, start + 500)
        ]
        res = await sc.result("task.submit_batch", {"tasks": batch}, timeout=30)
        assert all(o["outcome"] == "inserted" for o in res["outcomes"])
    # The scheduler is not slowed by the slow client: every task completes.
    done = await fast.wait_count(lambda e: e["kind"] == "completed", n, timeout=60)
    assert sorted(e["result"]["i"] for e in done) == list(range(n))
    assert not [e for e in fast.events if e["kind"] == "lagged"]
    seqs = [e["seq"] for e in fast.events]
    assert all(p < q for p, q in itertools.pairwise(seqs))
    # Now read the backlog: somewhere in it, lagged says how much was dropped.
    slow.resume_reading()
    lagged = await slow.wait_event(lambda e: e["kind"] == "lagged", timeout=30)
    assert lagged["missed"] > 0
    # The connection still works after the overflow.
    assert (await slow.result("sidecar.info", timeout=30))["protocol"] == 1

    # Every event is either received or counted as missed: submitted, dispatched
    # and completed for each task.
    def accounted() -> bool:
        received = sum(1 for e in slow.events if e["kind"] != "lagged")
        missed: int = sum(e["missed"] for e in slow.events if e["kind"] == "lagged")
        return received + missed == 3 * n

    await slow.inbox.wait_for(accounted, 30, "the whole backlog")
    seqs = [e["seq"] for e in slow.events if e["kind"] != "lagged"]
    assert all(p < q for p, q in itertools.pairwise(seqs))
