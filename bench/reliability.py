"""Reliability at scale: the crash loop, many WebSocket clients, and a soak.

The small versions of these run in ``make test`` (tests/reliability/); here
they run bigger:

- **crash loop**: a mixed workload (retries, dead letters, delays, dependency
  chains, children with finalize, repeated keys) against a sidecar SIGKILLed at
  seeded random moments and restarted until every task is final, then checked
  task by task against history and the executors' side effects
  (:mod:`tests.reliability.crashloop`). quick: 1,000 tasks, >= 15 kills;
  full: 10,000 tasks, >= 100 kills.
- **load**: N WebSocket clients subscribed to every event submit ``demo::echo``
  tasks; every client must account for every completion (event or ``lagged``
  count); the sidecar's RSS is sampled (:mod:`tests.reliability.loadgen`).
  quick: 5 clients, 3,000 tasks; full: 20 clients, 50,000 tasks.
- **soak**: steady submissions (200/s) with clients connecting and leaving,
  RSS and open fds sampled every 5 s; growth = median of the last fifth minus
  median of the first fifth (after a warm-up). quick: 20 s; full: 600 s.
  ``TASKMILL_SOAK_S`` overrides the duration.
- **abuse**: each abuse of :mod:`tests.reliability.abuse` (a flood of silent
  connections at a 256 fd limit, 50 x 8 MiB frames before hello, 100,000
  subscriptions, 10,000 worker types, a 100,000-task batch, a 200,000-task
  ``cancel_where``) against its own sidecar, while a probe client in a
  process of its own asks ``task.get`` every 5 ms: the probe's p99 and the
  sidecar's peak RSS per abuse (the same runs as ``tests/reliability/test_abuse.py``).

Each is one long run: the harness's repeats reuse its figures (a failed check
is reported as the case's error). Register with ``"reliability":
"bench.reliability"`` in ``bench.__main__.SECTIONS``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from bench.harness import Case, Config, Measurement
from tests.e2e.harness import SidecarProcess, child_env
from tests.reliability import abuse as abuses
from tests.reliability.crashloop import CrashLoop, plan
from tests.reliability.loadgen import run_load, run_soak

GROUP = "reliability"
SEED = 20240610

CRASH_KILLS = "crash loop: SIGKILLs survived"
CRASH_TASKS = "crash loop: tasks checked against side effects"
CRASH_TIME = "crash loop: wall time to all final"
LOAD_RATE = "load: tasks/s, all clients subscribed to every event"
LOAD_EVENTS = "load: events delivered per second (all clients)"
LOAD_RSS = "load: sidecar peak RSS"
SOAK_RSS = "soak: sidecar RSS growth"
SOAK_FDS = "soak: sidecar open fd growth"
SOAK_PEAK = "soak: sidecar peak RSS"

MIB = 1024 * 1024


def _log(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _once(fn: Callable[[], Mapping[str, float]]) -> Callable[[], Mapping[str, float]]:
    """Run ``fn`` the first time; later repeats return the same figures."""
    cache: list[Mapping[str, float]] = []

    def run() -> Mapping[str, float]:
        if not cache:
            cache.append(fn())
        return cache[0]

    return run


def _workdir(cfg: Config, name: str) -> Path:
    path = cfg.workdir / f"reliability-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def crash_loop(cfg: Config) -> Mapping[str, float]:
    n, max_kills, min_kills = (10_000, 150, 100) if cfg.full else (1_000, 25, 15)
    work = _workdir(cfg, "crash")
    try:
        specs = plan(SEED, n)
        loop = CrashLoop(
            work,
            specs,
            seed=SEED,
            max_kills=max_kills,
            max_concurrency=8,
            deadline_s=3600 if cfg.full else 600,
        )
        figures = asyncio.run(loop.run())
        asyncio.run(loop.verify())
        _log(figures.line())
        if figures.kills < min_kills:
            raise AssertionError(f"only {figures.kills} kills hit live work (want {min_kills})")
        return {
            CRASH_KILLS: figures.kills,
            CRASH_TASKS: figures.tasks_checked + figures.children_checked,
            CRASH_TIME: figures.seconds,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load(cfg: Config) -> Mapping[str, float]:
    clients, tasks = (20, 50_000) if cfg.full else (5, 3_000)
    work = _workdir(cfg, "load")
    try:
        res = asyncio.run(
            run_load(
                work,
                clients=clients,
                tasks=tasks,
                slow_clients=1,
                slow_for=3.0,
                pad=1000,
                timeout=3600,
            )
        )
        _log(res.line())
        if res.problems:
            raise AssertionError("; ".join(res.problems[:5]))
        return {
            LOAD_RATE: res.tasks_per_s,
            LOAD_EVENTS: res.events / res.seconds,
            LOAD_RSS: res.peak_rss / MIB,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def soak(cfg: Config) -> Mapping[str, float]:
    seconds = float(os.environ.get("TASKMILL_SOAK_S", "600" if cfg.full else "20"))
    work = _workdir(cfg, "soak")
    try:
        res = asyncio.run(run_soak(work, seconds=seconds, rate=200.0, sample_every=5.0))
        _log(res.line())
        return {SOAK_RSS: res.rss_growth, SOAK_FDS: res.fd_growth, SOAK_PEAK: res.rss_peak}
    finally:
        shutil.rmtree(work, ignore_errors=True)


Abuse = Callable[[SidecarProcess], Awaitable[str]]

ABUSES: dict[str, tuple[Abuse, int | None]] = {
    "silent flood at 256 fds": (abuses.silent_flood, 256),
    "50 x 8 MiB frames before hello": (abuses.oversized_frames, None),
    "100,000 subscriptions": (abuses.many_subscriptions, None),
    "10,000 worker types": (abuses.many_worker_types, None),
    "a 100,000-task batch": (abuses.big_batch, None),
    "cancel_where over 200,000": (abuses.big_cancel, None),
}


async def _one_abuse(work: Path, name: str, run: Abuse, fds: int | None) -> abuses.Outcome:
    sc = await SidecarProcess.start(
        "--stdio", "--ws", "--demo", "--no-resource-monitoring",
        "--db", str(work / "abuse.db"), "--fs-root", str(work),
        env=child_env(),
        preexec_fn=None if fds is None else abuses.limit_fds(fds),
    )  # fmt: skip
    try:
        return await abuses.probed(sc, name, lambda: run(sc))
    finally:
        await sc.kill()


def abuse(cfg: Config) -> Mapping[str, float]:
    """Every abuse once, each on a fresh sidecar; probe p99 and peak RSS of each."""
    out: dict[str, float] = {}
    abuses.raise_own_fd_limit()
    for name, (run, fds) in ABUSES.items():
        work = _workdir(cfg, "abuse")
        try:
            res = asyncio.run(_one_abuse(work, name, run, fds))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _log(res.line())
        out[f"abuse: probe p99, {name}"] = res.probe.pct(99)
        out[f"abuse: sidecar peak RSS, {name}"] = res.peak_rss / MIB
    return out


def cases(cfg: Config) -> Sequence[Case]:
    once = "one run; repeats reuse it"
    return [
        Case(
            (
                Measurement(CRASH_KILLS, "kills", True, GROUP, note=once),
                Measurement(CRASH_TASKS, "tasks", True, GROUP, note=once),
                Measurement(CRASH_TIME, "s", False, GROUP, note=once),
            ),
            _once(lambda: crash_loop(cfg)),
        ),
        Case(
            (
                Measurement(LOAD_RATE, "tasks/s", True, GROUP, note=once),
                Measurement(LOAD_EVENTS, "events/s", True, GROUP, note=once),
                Measurement(LOAD_RSS, "MiB", False, GROUP, note=once),
            ),
            _once(lambda: load(cfg)),
        ),
        Case(
            (
                Measurement(SOAK_RSS, "MiB", False, GROUP, note=once),
                Measurement(SOAK_FDS, "fds", False, GROUP, note=once),
                Measurement(SOAK_PEAK, "MiB", False, GROUP, note=once),
            ),
            _once(lambda: soak(cfg)),
        ),
        Case(
            tuple(
                Measurement(f"abuse: {what}, {name}", unit, False, GROUP, note=once)
                for name in ABUSES
                for what, unit in (("probe p99", "ms"), ("sidecar peak RSS", "MiB"))
            ),
            _once(lambda: abuse(cfg)),
        ),
    ]
