"""The claim scan: ready candidates in (effective) priority order, gated, claimed."""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .cascade import _expire, child_outcomes
from .rows import (
    Admission,
    Candidate,
    Claimed,
    ClaimPlan,
    ClaimResult,
    Effects,
    GateFn,
    GroupKey,
    _positions,
)
from .tables import _READY

__all__ = ["claim", "next_due"]

_CANDIDATE_COLUMNS = (
    "id, task_type, domain, group_key, priority, expires_at, created_at, pause_duration_ms, "
    "expected_read, expected_write, expected_net_rx, expected_net_tx"
)


_CLAIM_SET = """
UPDATE tasks SET status = 'running', started_at = ?1, dispatch_count = dispatch_count + 1,
    expires_at = CASE WHEN ttl_from = 'first_attempt' AND expires_at IS NULL
                      AND ttl_ms IS NOT NULL THEN ?1 + ttl_ms ELSE expires_at END
"""


def _ready_rows(
    conn: sqlite3.Connection,
    group: GroupKey | object,
    level: int | None,
    window: int,
    *,
    never_paused: bool = False,
) -> Iterator[sqlite3.Row]:
    """Ready candidates in (priority, id) order, optionally one group / one level
    (and only tasks never paused, for the aging walk)."""
    last: tuple[int, int] | None = None
    use_group = group is not _ANY
    index = "tasks_ready_group" if use_group and group is not None else "tasks_ready"
    while True:
        clauses = [_READY]
        params: list[Any] = []
        if use_group and group is None:
            clauses.append("group_key IS NULL")
        elif use_group:
            clauses.append("group_key = ?")
            params.append(group)
        if level is not None:
            clauses.append("priority = ?")
            params.append(level)
        if never_paused:
            clauses.append("pause_duration_ms = 0")
        if last is not None:
            clauses.append("(priority, id) > (?, ?)")
            params.extend(last)
        rows = conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM tasks INDEXED BY {index} "
            f"WHERE {' AND '.join(clauses)} ORDER BY priority, id LIMIT ?",
            (*params, window),
        ).fetchall()
        yield from rows
        if len(rows) < window:
            return
        last = (rows[-1]["priority"], rows[-1]["id"])


def _paused_before_rows(
    conn: sqlite3.Connection, group: GroupKey | object, level: int, window: int
) -> Iterator[sqlite3.Row]:
    """Ready candidates of one level that were paused once, oldest first, where
    age does not count the pause: (created_at + pause_duration_ms, id) order."""
    last: tuple[int, int] | None = None
    params: tuple[Any, ...] = ()
    if group is _ANY or group is None:
        index, where = "tasks_ready_aged", ""
        if group is None:
            where = " AND group_key IS NULL"
    else:
        index, where, params = "tasks_ready_aged_group", " AND group_key = ?", (group,)
    while True:
        after = ""
        extra: tuple[Any, ...] = ()
        if last is not None:
            after = " AND (created_at + pause_duration_ms, id) > (?, ?)"
            extra = last
        rows = conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM tasks INDEXED BY {index} "
            f"WHERE {_READY} AND pause_duration_ms > 0 AND priority = ?{where}{after} "
            "ORDER BY created_at + pause_duration_ms, id LIMIT ?",
            (level, *params, *extra, window),
        ).fetchall()
        yield from rows
        if len(rows) < window:
            return
        tail = rows[-1]
        last = (tail["created_at"] + tail["pause_duration_ms"], tail["id"])


_ANY = object()


def _levels(conn: sqlite3.Connection, group: GroupKey | object) -> list[int]:
    """Distinct priorities among ready tasks: one index probe per level."""
    params: tuple[Any, ...] = ()
    if group is _ANY:
        where, index = _READY, "tasks_ready"
    elif group is None:
        where, index = f"{_READY} AND group_key IS NULL", "tasks_ready"
    else:
        where, params, index = f"{_READY} AND group_key = ?", (group,), "tasks_ready_group"
    out: list[int] = []
    lo = -1
    while True:
        row = conn.execute(
            f"SELECT MIN(priority) FROM tasks INDEXED BY {index} WHERE {where} AND priority > ?",
            (*params, lo),
        ).fetchone()
        if row[0] is None:
            return out
        lo = row[0]
        out.append(lo)


def _candidates(
    conn: sqlite3.Connection,
    effective: Callable[[int, int, int], int] | None,
    group: GroupKey | object = _ANY,
    window: int = 32,
) -> Iterator[tuple[int, Candidate]]:
    """Ready candidates in (effective priority, id) order, with their effective priority.

    Without aging this is one walk of the ready index. With aging, each priority
    level is its own walk (oldest first, so most promoted first) and the walks
    are merged: a huge queue still costs index seeks, not a sort.
    """
    if effective is None:
        for row in _ready_rows(conn, group, None, window):
            c = Candidate(*row)
            yield c.priority, c
        return
    heap: list[tuple[int, int, int, Candidate, Iterator[sqlite3.Row]]] = []
    walks = 0
    for level in _levels(conn, group):
        # Within a walk, effective priority only grows: tasks never paused in
        # id order (their age is their creation), tasks paused once in order of
        # creation plus time paused. The heap merges the walks exactly.
        for it in (
            _ready_rows(conn, group, level, window, never_paused=True),
            _paused_before_rows(conn, group, level, window),
        ):
            first = next(it, None)
            if first is not None:
                c = Candidate(*first)
                e = effective(c.priority, c.created_at, c.pause_duration_ms)
                walks += 1
                heapq.heappush(heap, (e, c.id, walks, c, it))
    while heap:
        e, _, walk, c, it = heapq.heappop(heap)
        yield e, c
        nxt = next(it, None)
        if nxt is not None:
            n = Candidate(*nxt)
            ne = effective(n.priority, n.created_at, n.pause_duration_ms)
            heapq.heappush(heap, (ne, n.id, walk, n, it))


def _ready_groups(conn: sqlite3.Connection) -> list[GroupKey]:
    """Distinct groups among ready tasks (index probes, not a scan)."""
    out: list[GroupKey] = []
    if conn.execute(
        f"SELECT 1 FROM tasks INDEXED BY tasks_ready WHERE {_READY} AND group_key IS NULL LIMIT 1"
    ).fetchone():
        out.append(None)
    lo = ""
    while True:
        row = conn.execute(
            f"SELECT MIN(group_key) FROM tasks INDEXED BY tasks_ready_group WHERE {_READY} "
            "AND group_key > ?",
            (lo,),
        ).fetchone()
        if row[0] is None:
            return out
        lo = row[0]
        out.append(lo)


def _count_ready(conn: sqlite3.Connection, group: GroupKey, cap: int) -> int:
    params: tuple[Any, ...]
    if group is None:
        where, params, index = "group_key IS NULL", (cap,), "tasks_ready"
    else:
        where, params, index = "group_key = ?", (group, cap), "tasks_ready_group"
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY {index} "
        f"WHERE {_READY} AND {where} LIMIT ?)",
        params,
    ).fetchone()
    return int(row[0])


@dataclass(slots=True)
class _Scan:
    """The state of one claim: what was admitted, expired and deferred."""

    now: int
    eff: Effects
    admitted: list[int] = field(default_factory=list)
    admitted_set: set[int] = field(default_factory=set)
    effective: dict[int, int] = field(default_factory=dict)
    by_group: dict[GroupKey, int] = field(default_factory=dict)
    deferred: int = 0
    denied: int = 0

    def run(
        self,
        conn: sqlite3.Connection,
        candidates: Iterator[tuple[int, Candidate]],
        gate: GateFn | None,
        want: int,
        scan_limit: int,
        stop_above: int | None = None,
    ) -> None:
        """Admit up to ``want`` candidates; a candidate-only denial skips ahead."""
        got = 0
        scanned = 0
        for eff, cand in candidates:
            if got >= want or scanned >= scan_limit:
                return
            if stop_above is not None and eff > stop_above:
                return
            if cand.id in self.admitted_set:
                continue
            scanned += 1
            if cand.expires_at is not None and cand.expires_at <= self.now:
                _expire(conn, self.now, self.eff, cand.id)
                continue
            verdict = Admission.ADMIT if gate is None else gate(cand)
            if verdict == Admission.ADMIT:
                self.admitted.append(cand.id)
                self.admitted_set.add(cand.id)
                self.effective[cand.id] = eff
                self.by_group[cand.group] = self.by_group.get(cand.group, 0) + 1
                got += 1
            elif verdict == Admission.STOP:
                self.denied += 1
                return
            elif verdict > Admission.STOP:
                self.deferred += 1
                conn.execute(
                    "UPDATE tasks SET run_after = ?, delayed = 1 WHERE id = ?", (verdict, cand.id)
                )
            else:
                self.denied += 1


def claim(
    conn: sqlite3.Connection,
    now: int,
    limit: int | ClaimPlan,
    gate: GateFn | None = None,
) -> ClaimResult:
    """Claim up to ``plan.limit`` ready tasks.

    Due delayed tasks become ready first. Without fairness, candidates are
    taken in (effective) priority then FIFO order. With aging and an urgent
    threshold, tasks that aged past it are taken first, ignoring weights. With
    fairness, a fair pass gives each group its share, then a greedy pass fills
    what is left in priority order (work-conserving). Candidates past their
    deadline expire.
    """
    plan = limit if isinstance(limit, ClaimPlan) else ClaimPlan(limit=limit, gate=gate)
    conn.execute(
        "UPDATE tasks INDEXED BY tasks_delayed SET delayed = 0 "
        "WHERE status = 'pending' AND delayed = 1 AND run_after <= ?",
        (now,),
    )
    scan = _Scan(now, Effects())
    allocation: dict[GroupKey, int] = {}
    ready_counts: dict[GroupKey, int] | None = None
    if plan.limit > 0:
        if plan.urgent_threshold is not None and plan.effective is not None:
            # Tasks aged past the urgent threshold go first, whatever the weights.
            scan.run(
                conn,
                _candidates(conn, plan.effective),
                plan.gate,
                plan.limit,
                plan.scan_limit,
                stop_above=plan.urgent_threshold,
            )
        if plan.fair is not None and len(scan.admitted) < plan.limit:
            running = dict(plan.running_by_group)
            for g, n in scan.by_group.items():
                running[g] = running.get(g, 0) + n
            ready = plan.ready_counts
            if ready is None:
                cap = plan.limit + sum(plan.running_by_group.values())
                ready = {g: _count_ready(conn, g, cap) for g in _ready_groups(conn)}
                ready_counts = ready
            demand = {g: (running.get(g, 0), n) for g, n in ready.items() if n > 0}
            for g, r in running.items():
                demand.setdefault(g, (r, 0))
            allocation = plan.fair(demand)
            for g, slots in allocation.items():
                want = min(slots - running.get(g, 0), plan.limit - len(scan.admitted))
                if want > 0:
                    scan.run(
                        conn,
                        _candidates(conn, plan.effective, g, window=min(32, want + 2)),
                        plan.fair_gate or plan.gate,
                        want,
                        plan.scan_limit,
                    )
        left = plan.limit - len(scan.admitted)
        if left > 0:
            window = min(32, max(left * 2, 8))
            scan.run(
                conn,
                _candidates(conn, plan.effective, window=window),
                plan.gate,
                left,
                plan.scan_limit,
            )
    claimed: list[Claimed] = []
    if scan.admitted:
        marks = ",".join(f"?{i + 2}" for i in range(len(scan.admitted)))
        rows = conn.execute(
            f"{_CLAIM_SET} WHERE id IN ({marks}) AND status = 'pending' RETURNING *",
            (now, *scan.admitted),
        ).fetchall()
        at = _positions(rows[0]) if rows else {}
        by_id = {r[at["id"]]: r for r in rows}
        for i in scan.admitted:
            row = by_id.get(i)
            if row is None:
                continue
            c = Claimed.from_row(row, scan.effective.get(i), at)
            if c.phase == "finalize":
                c.children = child_outcomes(conn, i)
            claimed.append(c)
    return ClaimResult(
        claimed=claimed,
        next_due=next_due(conn),
        effects=scan.eff,
        allocation=allocation,
        denied=scan.denied,
        deferred=scan.deferred,
        ready_counts=ready_counts,
    )


def next_due(conn: sqlite3.Connection) -> int | None:
    row = conn.execute(
        "SELECT MIN(run_after) FROM tasks INDEXED BY tasks_delayed "
        "WHERE status = 'pending' AND delayed = 1"
    ).fetchone()
    value: int | None = row[0]
    return value
