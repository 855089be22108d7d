"""queries: records, lookups, filtered lists, counts, statistics, tags, dependencies."""

from __future__ import annotations

import sqlite3

import pytest

from taskmill.errors import InvalidState, NotFound
from taskmill.filters import TaskFilter
from taskmill.model import IoBudget, Status
from taskmill.store import pauses, queries, runs
from taskmill.store.rows import PAUSE_PREEMPTION
from tests.unit.store.helpers import NOW, add, finish, start


def test_get_finds_an_active_task_then_its_latest_record(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "k")
    rec = queries.get(conn, task_id)
    assert rec is not None and rec.status is Status.PENDING and not rec.is_history
    assert queries.get_active(conn, task_id) == rec
    finish(conn, start(conn, task_id), "failed", error="x")
    rec = queries.get(conn, task_id)
    assert rec is not None and rec.status is Status.FAILED and rec.is_history
    assert queries.get_active(conn, task_id) is None
    assert queries.latest_history(conn, task_id) == rec
    assert queries.get(conn, 999) is None and queries.latest_history(conn, 999) is None


def test_lookup_by_type_and_key_and_pending_counts_with_delays(
    conn: sqlite3.Connection,
) -> None:
    active = add(conn, "a")
    later = add(conn, "later", run_after=NOW + 1000)
    done = add(conn, "b")
    finish(conn, start(conn, done))
    where, rec = queries.lookup(conn, "d::work", "a")
    assert where == "active" and rec is not None and rec.id == active
    where, rec = queries.lookup(conn, "d::work", "b")
    assert where == "history" and rec is not None and rec.id == done
    assert queries.lookup(conn, "d::other", "a") == ("not_found", None)
    # Pending counts the delayed task too, overall and per domain.
    assert queries.get(conn, later) is not None
    assert queries.status_counts(conn) == {"pending": 2}
    assert queries.status_counts(conn, "d") == {"pending": 2}
    assert queries.status_counts(conn, "nowhere") == {}


def test_list_active_filters_and_pages(conn: sqlite3.Connection) -> None:
    a = add(conn, "a", task_type="files::hash", group="g", tags={"user": "ada", "run": "1"})
    b = add(conn, "b", task_type="files::copy", tags={"user": "bob"})
    c = add(conn, "c", task_type="mail::send", group="g", parent_id=a)
    start(conn, b)

    def ids(flt: TaskFilter) -> list[int]:
        recs, total = queries.list_active(conn, flt, 100, 0)
        assert total == len(recs)
        return [r.id for r in recs]

    assert ids(TaskFilter()) == [a, b, c]
    assert ids(TaskFilter(status=["running"])) == [b]
    assert ids(TaskFilter(status=["pending", "running"], domain="files")) == [a, b]
    assert ids(TaskFilter(task_type="mail::send")) == [c]
    assert ids(TaskFilter(group="g")) == [a, c]
    assert ids(TaskFilter(parent_id=a)) == [c]
    assert ids(TaskFilter(tags={"user": "ada"})) == [a]
    assert ids(TaskFilter(tags={"user": "ada", "run": "2"})) == []
    assert ids(TaskFilter(tag_prefix="us")) == [a, b]
    recs, total = queries.list_active(conn, TaskFilter(), 2, 1)
    assert ([r.id for r in recs], total) == ([b, c], 3)
    assert queries.active_ids(conn, TaskFilter(), after=a, limit=1) == [b]


def test_a_tag_prefix_is_literal_and_case_sensitive(conn: sqlite3.Connection) -> None:
    pct = add(conn, "pct", tags={"50%off": "y"})
    under = add(conn, "under", tags={"a_b": "y"})
    plain = add(conn, "plain", tags={"axb": "y", "Upper": "y"})

    def ids(prefix: str) -> list[int]:
        return [r.id for r in queries.list_active(conn, TaskFilter(tag_prefix=prefix), 10, 0)[0]]

    assert ids("50%") == [pct] and ids("5%") == []
    assert ids("a_") == [under]  # "_" is not a wildcard: axb does not match
    assert ids("upper") == [] and ids("Upp") == [plain]
    assert queries.tag_keys(conn, "a", None) == ["a_b", "axb"]
    assert queries.tag_keys(conn, "a_", None) == ["a_b"]


def test_list_history_filters_newest_first(conn: sqlite3.Connection) -> None:
    a = add(conn, "a", task_type="files::hash")
    b = add(conn, "b", task_type="files::hash")
    c = add(conn, "c", task_type="mail::send")
    finish(conn, start(conn, a))
    finish(conn, start(conn, b), "failed", error="x")
    finish(conn, start(conn, c))

    def ids(
        *,
        status: list[str] | None = None,
        task_type: str | None = None,
        key: str | None = None,
        domain: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[int]:
        recs, _ = queries.list_history(
            conn,
            status=status,
            task_type=task_type,
            key=key,
            domain=domain,
            limit=limit,
            offset=offset,
        )
        assert all(r.is_history for r in recs)
        return [r.id for r in recs]

    assert ids() == [c, b, a]
    assert ids(status=["completed"]) == [c, a]
    assert ids(task_type="files::hash") == [b, a]
    assert ids(key="b") == [b]
    assert ids(domain="mail") == [c]
    assert ids(limit=1, offset=1) == [b]
    _, total = queries.list_history(
        conn, status=None, task_type=None, key=None, domain=None, limit=1, offset=0
    )
    assert total == 3


def test_counts_by_status_domain_group_and_pause_reason(conn: sqlite3.Connection) -> None:
    add(conn, "ready")
    add(conn, "later", run_after=NOW + 1000)
    running = add(conn, "running", group="g")
    start(conn, running)
    dep = add(conn, "dep", task_type="mail::send")
    add(conn, "blocked", task_type="mail::send", depends_on=[dep])
    add(conn, "held", group="g")
    pauses.pause_group(conn, "g", NOW, None)
    pauses.pause_domain(conn, "d", NOW)
    preempted = add(conn, "preempted", task_type="mail::send")
    run = start(conn, preempted)
    runs.pause_running(conn, [(preempted, run.dispatch_count)], PAUSE_PREEMPTION, NOW)

    assert queries.status_counts(conn) == {
        "pending": 1,  # dep; ready and later are paused with their domain
        "running": 1,
        "blocked": 1,
        "paused": 4,
    }
    assert queries.status_counts(conn, "mail") == {"pending": 1, "blocked": 1, "paused": 1}
    assert queries.pause_reason_counts(conn) == {"domain": 3, "group": 1, "preempted": 1}
    assert queries.pause_reason_counts(conn, "mail") == {"preempted": 1}
    assert queries.domain_counts(conn) == {
        "d": {"paused": 3, "running": 1},
        "mail": {"pending": 1, "blocked": 1, "paused": 1},
    }
    assert queries.group_counts(conn) == {"g": {"paused": 1, "running": 1}}


def test_history_stats_durations_and_throughput(conn: sqlite3.Connection) -> None:
    io = IoBudget(disk_read=1000, disk_write=0, net_rx=500, net_tx=0)
    for i, ms in enumerate((100, 300)):
        task_id = add(conn, f"ok{i}")
        finish(conn, start(conn, task_id, NOW), actual_io=io, now=NOW + ms)
    bad = add(conn, "bad")
    finish(conn, start(conn, bad, NOW), "dead_letter", error="x", now=NOW + 5000)
    add(conn, "other", task_type="e::t")
    stats = queries.history_stats(conn, "d::work")
    assert stats["count"] == 3
    assert stats["failure_rate"] == pytest.approx(1 / 3)
    assert stats["avg_duration_ms"] == 200.0  # completed runs only
    assert (stats["avg_read_bytes"], stats["avg_net_rx_bytes"]) == (1000.0, 500.0)
    assert queries.history_stats(conn, "e::t")["count"] == 0
    assert queries.recent_durations(conn, "d::work", 5) == [300, 100]
    tput = queries.avg_throughput(conn, "d::work", 5)
    # 1000 bytes in 100 ms and in 300 ms: 10,000 and 3,333 bytes/s.
    assert tput["read_bps"] == pytest.approx((10_000 + 1000 / 0.3) / 2)
    assert tput["write_bps"] == 0.0


def test_tag_values_count_active_tasks_most_used_first(conn: sqlite3.Connection) -> None:
    add(conn, "a", tags={"user": "bob"})
    add(conn, "b", tags={"user": "ada"})
    add(conn, "c", tags={"user": "bob"})
    add(conn, "m", task_type="mail::send", tags={"user": "cy", "urgent": "1"})
    done = add(conn, "gone", tags={"user": "zed"})
    finish(conn, start(conn, done))
    assert queries.tag_values(conn, "user", None) == [
        {"value": "bob", "count": 2},
        {"value": "ada", "count": 1},
        {"value": "cy", "count": 1},
    ]
    assert queries.tag_values(conn, "user", "mail") == [{"value": "cy", "count": 1}]
    assert queries.tag_keys(conn, "", None) == ["urgent", "user"]
    assert queries.tag_keys(conn, "u", "d") == ["user"]


def test_dependencies_lists_both_directions(conn: sqlite3.Connection) -> None:
    a, b = add(conn, "a"), add(conn, "b")
    c = add(conn, "c", depends_on=[a, b])
    d = add(conn, "d", depends_on=[a])
    assert queries.dependencies(conn, a) == {"depends_on": [], "dependents": [c, d]}
    assert queries.dependencies(conn, c) == {"depends_on": [a, b], "dependents": []}
    finish(conn, start(conn, a))
    # As submitted, even once satisfied; the finished task has no dependents left.
    assert queries.dependencies(conn, c) == {"depends_on": [a, b], "dependents": []}
    assert queries.dependencies(conn, a) == {"depends_on": [], "dependents": []}
    with pytest.raises(NotFound):
        queries.dependencies(conn, 999)


def test_retry_source_is_a_dead_letter_with_its_policy(conn: sqlite3.Connection) -> None:
    dead = add(conn, "dead", retry_policy_json='{"max_retries":1}')
    finish(conn, start(conn, dead), "dead_letter", error="gave up")
    rec, policy = queries.retry_source(conn, dead)
    assert (rec.id, rec.status, policy) == (dead, Status.DEAD_LETTER, '{"max_retries":1}')
    active = add(conn, "active")
    done = add(conn, "done")
    finish(conn, start(conn, done))
    with pytest.raises(InvalidState, match="still active"):
        queries.retry_source(conn, active)
    with pytest.raises(InvalidState, match="ended as completed"):
        queries.retry_source(conn, done)
    with pytest.raises(NotFound):
        queries.retry_source(conn, 999)
