"""taskmill at scale: restart time and memory with a very large queue.

A database of 100,000 no-op tasks is filled once through the public batch
API; the 1,000,000-task database is that one with its rows copied nine more
times in SQL (every column as the API wrote it, the dedup key made unique),
which takes seconds instead of the minutes a million API submits need. Then
each measurement starts a fresh Python process on it, so memory and start-up
are those of a real (re)start:

- restart to first dispatch with 100,000 queued: from ``Scheduler.start()``
  (open, migrate, recover) until the first executor runs;
- peak RSS with 1,000,000 queued: the process opens the database, dispatches
  for two seconds at concurrency 8 and takes a snapshot; its peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import Case, Config, Measurement
from taskmill import Domain, Scheduler, SchedulerConfig, Submission
from taskmill.store.schema import key_hash

GROUP = "taskmill at scale"

RESTART = "restart to first dispatch, 100,000 queued"
RSS = "peak RSS, 1,000,000 queued, dispatching"
RESTART_1M = "restart to first dispatch, 1,000,000 queued"

_filled: dict[int, Path] = {}

CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, sys, time
    from taskmill import Domain, Scheduler, SchedulerConfig

    db, mode = sys.argv[1], sys.argv[2]
    started = asyncio.Event()

    async def noop(payload, ctx):
        started.set()

    d = Domain("bench")
    d.register("noop", noop)

    async def main():
        sched = Scheduler(db, domains=[d], config=SchedulerConfig(max_concurrency=8))
        t0 = time.perf_counter()
        await sched.start()
        await asyncio.wait_for(started.wait(), 60)
        first = (time.perf_counter() - t0) * 1000
        if mode == "rss":
            await asyncio.sleep(2.0)
            await sched.snapshot()
        await sched.shutdown("hard")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"first_dispatch_ms": first, "peak_rss_mb": rss_mb}))

    asyncio.run(main())
    """
)


def _fill(cfg: Config, n: int) -> Path:
    """A database with ``n`` queued no-op tasks (built once per run)."""
    if n in _filled:
        return _filled[n]
    path = cfg.workdir / f"scale-{n}.db"
    if n > _API_FILL and n % _API_FILL == 0:
        t0 = time.perf_counter()
        shutil.copyfile(_fill(cfg, _API_FILL), path)
        _replicate(path, n // _API_FILL)
        print(f"  copied to {n:,} tasks in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        _filled[n] = path
        return path

    async def run() -> None:
        d = Domain("bench")
        d.register("noop", lambda p, c: None)
        sched = Scheduler(str(path), domains=[d], config=SchedulerConfig(max_concurrency=0))
        await sched.start()
        try:
            for start in range(0, n, 10_000):
                await sched.submit_batch(
                    [
                        Submission(task_type="bench::noop", payload=i)
                        for i in range(start, min(n, start + 10_000))
                    ]
                )
        finally:
            await sched.shutdown("hard")

    t0 = time.perf_counter()
    asyncio.run(run())
    print(f"  filled {n:,} tasks in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    _filled[n] = path
    return path


_API_FILL = 100_000


def _replicate(path: Path, times: int) -> None:
    """Copy every queued row ``times - 1`` more times, keeping keys unique (and
    their hashes right, as the scheduler finds keys by them)."""
    con = sqlite3.connect(path)
    con.create_function("taskmill_key_hash", 2, key_hash, deterministic=True)
    try:
        skip = ("id", "key", "key_hash")
        cols = [r[1] for r in con.execute("PRAGMA table_info(tasks)") if r[1] not in skip]
        listed = ", ".join(cols)
        last = con.execute("SELECT max(id) FROM tasks").fetchone()[0]
        with con:
            for copy in range(1, times):
                con.execute(
                    f"INSERT INTO tasks ({listed}, key, key_hash) "
                    f"SELECT {listed}, key || '/{copy}', "
                    f"taskmill_key_hash(task_type, key || '/{copy}') FROM tasks WHERE id <= ?",
                    (last,),
                )
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def _child(db: Path, mode: str, workdir: Path) -> dict[str, float]:
    copy = workdir / f"{db.stem}-run.db"
    shutil.copyfile(db, copy)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(copy), mode],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _at_a_million(cfg: Config) -> dict[str, float]:
    out = _child(_fill(cfg, 1_000_000), "rss", cfg.workdir)
    return {RESTART_1M: out["first_dispatch_ms"], RSS: out["peak_rss_mb"]}


def cases(cfg: Config) -> Sequence[Case]:
    return [
        Case.single(
            Measurement(RESTART, "ms", False, GROUP, note="goal: under 1 s"),
            lambda: _child(_fill(cfg, 100_000), "restart", cfg.workdir)["first_dispatch_ms"],
        ),
        Case(
            (
                Measurement(RESTART_1M, "ms", False, GROUP, note="goal: under 1 s"),
                Measurement(RSS, "MB", False, GROUP, note="goal: under 64 MB (issue 19)"),
            ),
            lambda: _at_a_million(cfg),
        ),
    ]
