"""Where task code failed, on stderr and in the record (issue 17)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Spawn

APPS = Path(__file__).with_name("apps")
UNRULY = ("--app", "unruly:dom", "--app-path", str(APPS))


async def test_a_keyerror_shows_file_and_line_on_stderr_and_in_history(spawn: Spawn) -> None:
    sc = await spawn(*UNRULY)
    await sc.subscribe(kinds=["failed", "dead_lettered"])
    tid = await sc.submit(
        "unruly::keyerror", {"no": "path"}, retry={"max_retries": 1, "backoff": "constant"}
    )
    first = await sc.wait_task_event(tid, "failed")
    assert first["will_retry"] is True
    dead = await sc.wait_task_event(tid, "dead_lettered")
    rec = await sc.result("task.get", {"id": tid})
    app = str(APPS / "unruly.py")
    for tb in (first["traceback"], dead["traceback"], rec["traceback"]):
        assert f'File "{app}"' in tb, tb
        assert 'return payload["path"]' in tb and "in _lookup" in tb, tb
        assert tb.rstrip().endswith("KeyError: 'path'"), tb
        assert "taskmill/scheduler" not in tb and "asyncio/" not in tb, "only the app frames"
    assert rec["last_error"] == "KeyError: 'path'"
    history = (await sc.result("history.list", {"task_type": "unruly::keyerror"}))["tasks"]
    assert history[0]["traceback"] == rec["traceback"]
    # On stderr at the default log level: the task, the error, the file and line.
    stderr = sc.stderr_text()
    assert f"task {tid} (unruly::keyerror) attempt 1 failed: KeyError: 'path'" in stderr
    assert f'File "{app}", line' in stderr
    # An error made by taskmill itself has no traceback field.
    bad = await sc.submit("unruly::object_result", retry={"max_retries": 0})
    rec = await sc.wait_status(bad, "failed")
    assert "traceback" not in rec
