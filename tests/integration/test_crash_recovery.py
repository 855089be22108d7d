"""Crash recovery: SIGKILL a real process holding the scheduler mid-task."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from taskmill import Domain, Scheduler, Status, TaskContext

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from taskmill import Domain, Scheduler

    db, marker = sys.argv[1], Path(sys.argv[2])
    d = Domain("crash")

    @d.task("work")
    async def work(payload, ctx):
        marker.write_text(str(ctx.task_id))
        await asyncio.Event().wait()  # never finishes: we get killed here

    async def main():
        sched = Scheduler(db, domains=[d])
        await sched.start()
        await sched.submit("crash::work", {"n": 1})
        await sched.submit("crash::work", {"n": 2}, run_after_ms=3_600_000)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_sigkill_mid_task_reruns_it_without_counting_a_retry(tmp_path: Path) -> None:
    db = str(tmp_path / "crash.db")
    marker = tmp_path / "started"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), db, str(marker)])
    try:
        async with asyncio.timeout(30):
            while not marker.exists():
                assert proc.poll() is None, "the child exited early"
                await asyncio.sleep(0.01)
        task_id = int(marker.read_text())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    runs: list[int] = []
    d = Domain("crash")

    @d.task("work")
    async def work(payload: dict[str, int], ctx: object) -> dict[str, int]:
        runs.append(payload["n"])
        return payload

    sched = Scheduler(db, domains=[d])
    await sched.start()
    try:
        rec = await sched.wait_for(task_id, timeout=10)
        assert rec.status is Status.COMPLETED
        assert rec.retry_count == 0
        assert rec.result == {"n": 1}
        assert runs == [1]
        # Nothing submitted was lost: the delayed task is still queued.
        tasks, total = await sched.list_tasks()
        assert total == 1 and tasks[0].payload == {"n": 2}
        assert tasks[0].status is Status.PENDING
    finally:
        await sched.shutdown("hard")


STRUCTURE_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from taskmill import Domain, Recurring, Scheduler

    db, marker = sys.argv[1], Path(sys.argv[2])
    d = Domain("s")

    @d.task("hold")
    async def hold(payload, ctx):
        await asyncio.Event().wait()

    @d.task("quick")
    async def quick(payload, ctx):
        return payload

    class Parent:
        async def execute(self, payload, ctx):
            await ctx.spawn_child("s::hold", {"child": 1})
            return "memo"

        async def finalize(self, payload, memo, ctx):
            return {"memo": memo, "children": len(ctx.children)}

    d.register("parent", Parent())

    async def main():
        s = Scheduler(db, domains=[d])
        await s.start()
        ids = {}
        ids["delayed"] = (await s.submit("s::quick", "delayed", run_after_ms=1500)).id
        ids["recurring"] = (await s.submit("s::quick", "tick",
                                           recurring=Recurring(interval_ms=200))).id
        ids["dep"] = (await s.submit("s::hold", "dependency")).id
        ids["blocked"] = (await s.submit("s::quick", "blocked", depends_on=[ids["dep"]])).id
        ids["parent"] = (await s.submit("s::parent", "p")).id
        while (await s.get(ids["parent"])).status.value != "waiting":
            await asyncio.sleep(0.01)
        while not (await s.recurring_list()) or (await s.recurring_list())[0]["occurrences"] < 1:
            await asyncio.sleep(0.01)
        marker.write_text(json.dumps(ids))
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_sigkill_keeps_delayed_recurring_blocked_and_waiting_tasks(tmp_path: Path) -> None:
    import json

    db = str(tmp_path / "structure.db")
    marker = tmp_path / "ids.json"
    script = tmp_path / "child.py"
    script.write_text(STRUCTURE_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), db, str(marker)])
    try:
        async with asyncio.timeout(30):
            while not marker.exists():
                assert proc.poll() is None, "the child exited early"
                await asyncio.sleep(0.01)
        ids = json.loads(marker.read_text())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    d = Domain("s")

    @d.task("hold")
    async def hold(payload: object, ctx: object) -> object:
        return payload

    @d.task("quick")
    async def quick(payload: object, ctx: object) -> object:
        return payload

    class Parent:
        async def execute(self, payload: object, ctx: object) -> object:
            raise AssertionError("execute must not run again: the parent was waiting")

        async def finalize(self, payload: object, memo: object, ctx: TaskContext) -> object:
            return {"memo": memo, "children": len(ctx.children)}

    d.register("parent", Parent())
    sched = Scheduler(db, domains=[d])
    await sched.start()
    try:
        assert (await sched.wait_for(ids["delayed"], timeout=10)).status is Status.COMPLETED
        assert (await sched.wait_for(ids["dep"], timeout=10)).status is Status.COMPLETED
        assert (await sched.wait_for(ids["blocked"], timeout=10)).status is Status.COMPLETED
        parent = await sched.wait_for(ids["parent"], timeout=10)
        assert parent.status is Status.COMPLETED
        assert parent.result == {"memo": "memo", "children": 1}
        schedules = await sched.recurring_list()
        assert len(schedules) == 1 and schedules[0]["id"] == ids["recurring"]
        before = schedules[0]["occurrences"]
        sub = sched.subscribe(kinds=["recurring_completed"])
        ev = await sub.get(timeout=10)
        assert ev["occurrences"] > before  # the schedule goes on
    finally:
        await sched.shutdown("hard")
