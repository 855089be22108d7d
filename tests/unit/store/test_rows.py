"""Row decoding: records built field by field equal those the dataclass builds."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from taskmill.model import IoBudget, Status, TaskRecord, build_record
from taskmill.store.rows import RECORD_ORDER, record_from_row

from .helpers import NOW, add, finish, new_task, start, submit


def test_the_decoder_lists_every_field_in_declaration_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(TaskRecord)) == RECORD_ORDER


def _rebuilt(rec: TaskRecord) -> TaskRecord:
    """The same record through the dataclass's own constructor."""
    return TaskRecord(**{f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)})


def test_an_active_row_decodes_to_what_the_constructor_builds(conn: sqlite3.Connection) -> None:
    (eff,) = submit(
        conn,
        new_task(
            "k",
            payload={"a": [1, 2]},
            group="g",
            tags={"t": "v"},
            expected_io=IoBudget(disk_read=5),
            run_after=NOW + 10,
        ),
    )
    row = conn.execute("SELECT * FROM tasks WHERE id = ?", (eff.id,)).fetchone()
    rec = record_from_row(row)
    assert rec == _rebuilt(rec)
    assert (rec.payload, rec.group, dict(rec.tags)) == ({"a": [1, 2]}, "g", {"t": "v"})
    assert rec.expected_io == IoBudget(disk_read=5)
    assert rec.status is Status.PENDING and rec.history_id is None
    assert rec.effective_priority == rec.priority


def test_a_history_row_decodes_with_its_outcome(conn: sqlite3.Connection) -> None:
    task_id = add(conn, "h", payload=3)
    finish(conn, start(conn, task_id), result_json='{"ok":true}')
    row = conn.execute("SELECT * FROM history WHERE id = ?", (task_id,)).fetchone()
    rec = record_from_row(row, history=True)
    assert rec == _rebuilt(rec)
    assert rec.history_id is not None and rec.result == {"ok": True}
    assert rec.status is Status.COMPLETED and rec.pause_reasons == ()


def test_evolve_changes_the_named_fields_only() -> None:
    values: dict[str, object] = {f.name: None for f in dataclasses.fields(TaskRecord)}
    values.update(id=1, task_type="d::t", priority=5, effective_priority=5, tags={})
    rec = build_record(tuple(values[name] for name in RECORD_ORDER))
    moved = rec.evolve(effective_priority=2, label="x")
    assert moved == dataclasses.replace(rec, effective_priority=2, label="x")
    assert rec.effective_priority == 5
    with pytest.raises(TypeError, match="no field 'nope'"):
        rec.evolve(nope=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        moved.label = "y"  # type: ignore[misc]
