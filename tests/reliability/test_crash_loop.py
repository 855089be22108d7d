"""SIGKILL the real sidecar again and again under a mixed workload (issue 10, part 1).

The workload (:mod:`tests.reliability.crashloop`) mixes retries, dead letters,
permanent failures, delays, dependency chains (some with a failing head),
parents with children and finalize, ``demo::fanout`` and repeated keys. The
sidecar is killed at seeded random moments 50-400 ms after each start (at least
30 times) and restarted on the same database until every task is final. Then:
every accepted task is in history exactly once with its designed status; no
task ran after its completion (or failure) was recorded; every task that was
not dependency-failed ran; each ran exactly the attempts its retry count says;
delays and dependencies were honoured; parents finalized after their children.

``TASKMILL_CRASH_SEED`` and ``TASKMILL_CRASH_N`` override the seed and size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Spawn
from tests.reliability.common import write_artifact
from tests.reliability.crashloop import CrashLoop, Figures, Spec, check, plan

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = int(os.environ.get("TASKMILL_CRASH_SEED", "20240610"))
N = int(os.environ.get("TASKMILL_CRASH_N", "2000"))


async def test_crash_loop_loses_nothing_and_never_reruns_a_finished_task(tmp_path: Path) -> None:
    specs = plan(SEED, N)
    assert len(specs) >= 2000 or N < 2000
    loop = CrashLoop(tmp_path, specs, seed=SEED, max_kills=50, max_concurrency=4, deadline_s=240)
    figures = await loop.run()  # raises SidecarStalled if the sidecar stops answering
    await loop.verify()
    line = f"seed {SEED}: " + figures.line()
    print(line)
    write_artifact("crash-loop.txt", line + "\n")
    assert figures.kills >= 30, f"only {figures.kills} kills hit live work: {line}"
    assert figures.tasks_checked >= len(specs) - figures.refused - 2 * len(
        [s for s in specs if s.kind == "repeat"]
    )


async def test_a_due_delayed_task_waiting_for_a_slot_does_not_stall_the_sidecar(
    spawn: Spawn,
) -> None:
    # A regression test for a bug the crash loop found (recovered tasks fill
    # every slot while delayed ones come due): Scheduler._run spun without
    # yielding, so the sidecar stopped answering and running tasks never
    # finished. One slot: the sleep takes it, the echo comes due 50 ms later
    # and must wait for the slot; the sidecar must keep serving.
    sc = await spawn("--max-concurrency", "1")
    res = await sc.result(
        "task.submit_batch",
        {
            "tasks": [
                {"task_type": "demo::sleep", "payload": {"ms": 300, "steps": 1}},
                {"task_type": "demo::echo", "payload": 1, "run_after_ms": 50},
            ]
        },
    )
    sleep_id, echo_id = (o["id"] for o in res["outcomes"])
    await sc.wait_status(echo_id, "completed", timeout=5)
    assert (await sc.result("task.get", {"id": sleep_id}))["status"] == "completed"


def test_the_crash_loop_checker_catches_what_it_must() -> None:
    """The verification itself, on hand-made histories (no sidecar)."""
    specs = [
        Spec(idx=0, kind="plain", task_type="cl::work", key="a", payload={"n": 0}),
        Spec(
            idx=1,
            kind="retry",
            task_type="cl::work",
            key="b",
            payload={"n": 1, "fail": 1},
            retries=1,
        ),
        Spec(
            idx=2,
            kind="chain",
            task_type="cl::work",
            key="c",
            payload={"n": 2},
            deps=[1],
            expect="dependency_failed",
        ),
    ]
    ids = {0: 10, 1: 11, 2: 12}

    def rec(tid: int, status: str, retry_count: int = 0, finished: int = 1000) -> dict[str, Any]:
        return {
            "id": tid,
            "status": status,
            "retry_count": retry_count,
            "finished_at": finished,
            "created_at": 0,
            "parent_id": None,
            "last_error": None,
            "priority": 128,
            "result": None,
            "key": "",
        }

    def run(tid: int, attempt: int, t: int) -> dict[str, Any]:
        return {"kind": "run", "id": tid, "attempt": attempt, "t": t}

    good_history = [rec(10, "completed"), rec(11, "completed", 1), rec(12, "dependency_failed")]
    good_fx = {10: [run(10, 1, 500)], 11: [run(11, 1, 400), run(11, 2, 600), run(11, 2, 700)]}

    def problems(history: list[dict[str, Any]], fx: dict[int, list[dict[str, Any]]]) -> list[str]:
        return check(specs, ids, {}, set(), history, fx, Figures())

    assert problems(good_history, good_fx) == []
    bad_cases = {
        "a lost task": (good_history[1:], good_fx),
        "a twice-recorded task": ([*good_history, rec(10, "completed")], good_fx),
        "a run after completion": (
            good_history,
            {**good_fx, 10: [run(10, 1, 500), run(10, 1, 1001)]},
        ),
        "a task that never ran": (good_history, {11: good_fx[11]}),
        "a missing attempt": (good_history, {**good_fx, 11: [run(11, 2, 600)]}),
        "a wrong status": ([rec(10, "failed"), *good_history[1:]], good_fx),
        "a wrong retry count": (
            [good_history[0], rec(11, "completed", 2), good_history[2]],
            good_fx,
        ),
        "a dependency-failed task that ran": (good_history, {**good_fx, 12: [run(12, 1, 900)]}),
    }
    for what, (history, fx) in bad_cases.items():
        assert problems(history, fx), f"the checker missed {what}"
