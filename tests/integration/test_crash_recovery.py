"""Crash recovery: SIGKILL a real process holding the scheduler mid-task."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from taskmill import Domain, Scheduler, Status

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
