"""A real workload through taskmill's Python API.

Declares a domain with three kinds of work (hashing real files, a slow step
that reports progress, and a flaky call that succeeds on retry), submits a
mixed-priority workload with some duplicates, follows the events live, and
prints a summary from history. Run it with ``make demo`` or
``python examples/quickstart.py [--db PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from taskmill import (
    Domain,
    RetryPolicy,
    Scheduler,
    SchedulerConfig,
    Submission,
    TaskContext,
    TaskError,
)

media = Domain("media", default_priority="normal")


@media.task("hash", priority="background")
def hash_file(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Plain functions run in a worker thread: fine for blocking file IO."""
    path = Path(payload["path"])
    size = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(256 * 1024):
            ctx.check_cancelled()
            digest.update(chunk)
            done += len(chunk)
            ctx.record_read_bytes(len(chunk))
            ctx.progress.report_fraction(done, size)
    return {"sha256": digest.hexdigest(), "size": size}


@media.task("render")
async def render(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Coroutines run on the event loop and report progress as they go."""
    steps = payload.get("steps", 5)
    for i in range(steps):
        await asyncio.sleep(payload["ms"] / 1000 / steps)
        ctx.progress.report((i + 1) / steps, f"frame {i + 1}/{steps}")
    return {"frames": steps}


@media.task("upload", retry=RetryPolicy(max_retries=3, backoff="exponential", base_ms=50))
async def upload(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fails on its first attempt; the retry policy brings it home."""
    if ctx.attempt == 1:
        raise TaskError.transient("the server said 503")
    ctx.record_net_tx_bytes(payload["bytes"])
    return {"uploaded": payload["bytes"], "attempts": ctx.attempt}


async def main(db: str) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="taskmill-demo-"))
    files = []
    for i in range(12):
        p = workdir / f"file-{i}.bin"
        p.write_bytes(os.urandom(256 * 1024 * (1 + i % 4)))
        files.append(p)

    config = SchedulerConfig(max_concurrency=4)
    async with Scheduler(db, domains=[media], config=config) as sched:
        events = sched.subscribe(progress_interval_ms=250)
        subs = [Submission(task_type="media::hash", payload={"path": str(p)}) for p in files]
        subs += [
            Submission(task_type="media::render", payload={"ms": 300 + 50 * i}, label=f"clip {i}")
            for i in range(6)
        ]
        subs += [
            Submission(task_type="media::upload", payload={"bytes": 1000 * i}, priority="high")
            for i in range(4)
        ]
        t0 = time.monotonic()
        results = await sched.submit_batch(subs)
        # Submitting the same work again is a no-op: the dedup key matches.
        again = await sched.submit("media::hash", {"path": str(files[0])})
        print(f"submitted {len(results)} tasks; resubmitting one gave {again.outcome!r}")
        # Something urgent arrives while the queue is busy.
        urgent = await sched.submit(
            "media::render", {"ms": 100}, priority="realtime", label="user clicked"
        )
        ids = {r.id for r in results} | {urgent.id}
        finished: set[int] = set()
        kinds: Counter[str] = Counter()
        while finished != ids:
            ev = await events.get(timeout=30)
            kinds[ev.kind] += 1
            if ev.kind == "progress" and ev.get("message"):
                print(f"  {ev['label']:<14} {ev['percent']:4.0%}  {ev['message']}")
            elif ev.kind == "failed":
                print(
                    f"  task {ev.task_id} failed ({ev['error']}); retry in "
                    f"{ev['retry_after_ms']} ms"
                )
            elif ev.kind == "completed" and ev.task_id == urgent.id:
                print(f"  urgent task done after {time.monotonic() - t0:.2f}s")
            if ev.is_terminal and ev.task_id in ids:
                finished.add(ev.task_id)
        elapsed = time.monotonic() - t0
        print(f"all {len(ids)} tasks finished in {elapsed:.2f}s; events: {dict(kinds)}")
        for task_type in ("media::hash", "media::render", "media::upload"):
            st = await sched.history_stats(task_type)
            print(
                f"  {task_type:<14} runs={st['count']:<3} avg={st['avg_duration_ms']:.0f} ms "
                f"read={st['avg_read_bytes'] / 1024:.0f} KiB failures={st['failure_rate']:.0%}"
            )
        snap = await sched.snapshot()
        print(f"snapshot: pending={snap['pending_count']} running={len(snap['running'])}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=None, help="database file (default: a temp file)")
    args = parser.parse_args()
    db_path = args.db or str(Path(tempfile.mkdtemp(prefix="taskmill-db-")) / "demo.db")
    print(f"database: {db_path}")
    sys.exit(asyncio.run(main(db_path)))
