"""Builders for the store's unit tests: new tasks, a claim of one task, finishes.

Every function takes the ``sqlite3.Connection`` of ``schema.open_connection``
(autocommit: each statement commits on its own, which is enough to test what an
operation writes) and a fixed ``now`` in epoch ms, never the wall clock.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from importlib import resources
from typing import Any

from taskmill.model import IoBudget, Outcome
from taskmill.store import claim as claim_mod, runs, submit as submit_mod
from taskmill.store.rows import (
    Admission,
    Candidate,
    Claimed,
    ClaimPlan,
    Effects,
    Finish,
    FinishKind,
    FinishResult,
    NewTask,
    SubmitEffect,
)
from taskmill.store.schema import key_hash

#: A fixed "now" (epoch ms); tests add offsets to it.
NOW = 1_700_000_000_000

TYPE = "d::work"


def new_task(
    key: str,
    *,
    task_type: str = TYPE,
    priority: int = 128,
    payload: Any = None,
    group: str | None = None,
    tags: dict[str, str] | None = None,
    depends_on: list[int] | None = None,
    **fields: Any,
) -> NewTask:
    """A resolved submission with plain defaults; ``fields`` override the rest."""
    base = NewTask(
        task_type=task_type,
        domain=task_type.split("::", 1)[0],
        key=key,
        label=key,
        priority=priority,
        payload_json=json.dumps(payload, separators=(",", ":")),
        payload=payload,
        group=group,
        tags=dict(tags or {}),
        parent_id=None,
        fail_fast=True,
        max_retries=3,
        retry_policy_json=None,
        expected_io=IoBudget(),
        ttl_ms=None,
        ttl_from="submission",
        expires_at=None,
        run_after=None,
        on_dep_failure="cancel",
        depends_on=list(depends_on or []),
        recurring_interval_ms=None,
        recurring_max=None,
        on_duplicate="skip",
    )
    return replace(base, **fields) if fields else base


def submit(conn: sqlite3.Connection, *items: NewTask, now: int = NOW) -> list[SubmitEffect]:
    return submit_mod.submit(conn, list(items), now)


def add(conn: sqlite3.Connection, key: str, *, now: int = NOW, **kw: Any) -> int:
    """Insert one new task and return its id (it must be new)."""
    (eff,) = submit_mod.submit(conn, [new_task(key, **kw)], now)
    assert eff.outcome is Outcome.INSERTED, eff
    return eff.id


def start(conn: sqlite3.Connection, task_id: int, now: int = NOW) -> Claimed:
    """Claim exactly this task (the gate skips every other candidate)."""

    def only(c: Candidate) -> int:
        return Admission.ADMIT if c.id == task_id else Admission.SKIP

    result = claim_mod.claim(conn, now, ClaimPlan(limit=1, gate=only))
    assert [c.record.id for c in result.claimed] == [task_id], result
    return result.claimed[0]


def finish(
    conn: sqlite3.Connection,
    claimed: Claimed,
    kind: FinishKind = "completed",
    *,
    now: int = NOW,
    eff: Effects | None = None,
    **fields: Any,
) -> FinishResult:
    """Record how one claimed run ended."""
    item = Finish(
        task_id=claimed.record.id, dispatch_count=claimed.dispatch_count, kind=kind, **fields
    )
    (result,) = runs.finish(conn, [item], now, eff)
    return result


def claim_ids(conn: sqlite3.Connection, limit: int, now: int = NOW) -> list[int]:
    """Ids claimed by a plain claim of ``limit`` (no gate)."""
    return [c.record.id for c in claim_mod.claim(conn, now, limit).claimed]


def active_row(conn: sqlite3.Connection, task_id: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tasks WHERE id = ?", (task_id,)
    ).fetchone()
    return row


def history_statuses(conn: sqlite3.Connection, task_id: int) -> list[str]:
    """Every history status of a task, oldest first."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT status FROM history WHERE id = ? ORDER BY history_id", (task_id,)
        )
    ]


def status(conn: sqlite3.Connection, task_id: int) -> str | None:
    """The active status, else the latest history status, else None."""
    row = active_row(conn, task_id)
    if row is not None:
        return str(row["status"])
    done = history_statuses(conn, task_id)
    return done[-1] if done else None


def build_old(path: str, upto: int) -> None:
    """A database as an older taskmill left it: migrations 1..``upto`` only."""
    folder = resources.files("taskmill.store") / "migrations"
    scripts = sorted(
        (int(e.name.split("_", 1)[0]), e.read_text(encoding="utf-8"))
        for e in folder.iterdir()
        if e.name.endswith(".sql")
    )
    raw = sqlite3.connect(path, isolation_level=None)
    raw.create_function("taskmill_key_hash", 2, key_hash)  # migration 5 backfills with it
    body = "".join(script for number, script in scripts if number <= upto)
    raw.executescript(f"BEGIN; {body}; PRAGMA user_version = {upto}; COMMIT;")
    raw.execute(
        "INSERT INTO tasks (task_type, domain, key, label, priority, status, max_retries, "
        "created_at) VALUES ('d::old', 'd', 'k', 'k', 7, 'pending', 3, 1)"
    )
    if upto >= 5:  # as the taskmill of that schema wrote its rows
        raw.execute("UPDATE tasks SET key_hash = taskmill_key_hash(task_type, key)")
    raw.close()
