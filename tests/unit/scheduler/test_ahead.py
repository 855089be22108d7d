"""The window of tasks claimed ahead: its size, and its order."""

from __future__ import annotations

from taskmill.model import Status, TaskRecord
from taskmill.scheduler.ahead import HORIZON_S, WINDOW_MAX, Ahead, window
from taskmill.store.rows import Claimed


def claimed(
    task_id: int, priority: int = 128, domain: str = "d", group: str | None = None
) -> Claimed:
    rec = TaskRecord(
        id=task_id,
        task_type=f"{domain}::t",
        domain=domain,
        key=str(task_id),
        label=f"{domain}::t",
        priority=priority,
        effective_priority=priority,
        status=Status.RUNNING,
        payload=None,
        group=group,
        tags={},
        parent_id=None,
        retry_count=0,
        max_retries=3,
        last_error=None,
        created_at=0,
        started_at=0,
        run_after=None,
        expires_at=None,
    )
    return Claimed(rec, 1, None, None)


def test_window_is_about_the_horizon_of_work_per_slot() -> None:
    assert window(1, None) == 0  # nothing known yet: claim only what starts
    assert window(0, 0.001) == 0
    assert window(1, 0.001) == int(HORIZON_S / 0.001)
    assert window(4, 0.001) == 4 * int(HORIZON_S / 0.001)
    assert window(64, 0.00001) == WINDOW_MAX
    # Runs as long as the horizon or longer gain nothing from a window.
    assert window(1, HORIZON_S) == 0
    assert window(1, 10.0) == 0
    assert window(8, 1.0) == 0


def test_most_urgent_first_then_oldest() -> None:
    ahead = Ahead()
    for held in (claimed(5, 100), claimed(3, 100), claimed(9, 10), claimed(1, 200)):
        ahead.hold(held)
    assert len(ahead) == 4 and 9 in ahead and 2 not in ahead
    assert ahead.least_urgent() == 200
    order = []
    while (c := ahead.pop()) is not None:
        order.append(c.record.id)
    assert order == [9, 3, 5, 1]
    assert ahead.least_urgent() is None


def test_discard_and_release_take_tasks_out_for_good() -> None:
    ahead = Ahead()
    for i in range(1, 7):
        ahead.hold(claimed(i, domain="a" if i % 2 else "b", group="g" if i < 3 else None))
    assert ahead.discard(2) is not None and ahead.discard(2) is None
    assert ahead.by_domain() == {"a": 3, "b": 2}
    out = ahead.release(lambda r: r.group == "g")
    assert [c.record.id for c in out] == [1]
    assert sorted(c.record.id for c in ahead.release()) == [3, 4, 5, 6]
    assert len(ahead) == 0 and ahead.pop() is None


def test_a_task_released_and_claimed_again_is_started_once() -> None:
    ahead = Ahead()
    first = claimed(7, 100)
    ahead.hold(first)
    ahead.hold(claimed(8, 100))
    assert ahead.release(lambda r: r.id == 7) == [first]
    again = claimed(7, 100)
    ahead.hold(again)
    popped = [ahead.pop(), ahead.pop(), ahead.pop()]
    assert popped[0] is again and popped[1] is not None and popped[1].record.id == 8
    assert popped[2] is None


def test_stale_entries_do_not_pile_up() -> None:
    ahead = Ahead()
    for round_ in range(50):
        for i in range(10):
            ahead.hold(claimed(round_ * 10 + i))
        ahead.release()
    ahead.hold(claimed(10_000))
    assert len(ahead._heap) <= 2 * len(ahead) + 64
