"""The peer: Huey's SqliteHuey on a file database, with an in-process thread consumer.

Settings are Huey's defaults unless a row says otherwise: WAL, no synchronous pragma (so
SQLite's compiled default, FULL, applies), `immediate` off, a consumer with
`worker_type="thread"`, polling that starts at 0.1 s and backs off x1.15 per empty poll up to
10 s. The "NORMAL" variant subclasses `SqliteStorage` to add `PRAGMA synchronous=NORMAL`
(Huey's own `fsync=` option only offers FULL or OFF).

Note what one Huey task costs on SQLite: enqueue is one `begin exclusive` transaction;
the worker's dequeue is one more, and after execution it deletes the task's revoke key
(`Huey.delete(task.revoke_id)`), a third committed write.
"""

from __future__ import annotations

import queue
import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huey import SqliteHuey  # type: ignore[import-untyped]
from huey.consumer import Consumer  # type: ignore[import-untyped]
from huey.storage import SqliteStorage  # type: ignore[import-untyped]

from bench import floor
from bench.harness import Case, Config, Measurement, rate

GROUP = "huey"

# Row names, importable by other sections for their `vs_huey` references.
ENQUEUE_DEFAULT = "huey enqueue, default sync (FULL)"
ENQUEUE_NORMAL = "huey enqueue, synchronous=NORMAL"
E2E_1 = "huey end-to-end no-op, 1 thread"
E2E_1_NORMAL = "huey end-to-end no-op, 1 thread, NORMAL"
E2E_8 = "huey end-to-end no-op, 8 threads"
E2E_2_NORMAL = "huey end-to-end no-op, 2 threads, NORMAL"
E2E_8_NORMAL = "huey end-to-end no-op, 8 threads, NORMAL"
#: Huey's candidates for its best single-consumer row, and for its best row
#: at any thread count: "vs Huey best" compares with the best in the run.
E2E_BEST_SINGLE = (E2E_1, E2E_1_NORMAL)
E2E_BEST_ANY = (E2E_1, E2E_1_NORMAL, E2E_2_NORMAL, E2E_8, E2E_8_NORMAL)
PICKUP_P50 = "huey pickup latency p50"
PICKUP_P99 = "huey pickup latency p99"
PICKUP_IDLE_P50 = "huey pickup latency p50, after 1-2 s idle"
PICKUP_IDLE_P99 = "huey pickup latency p99, after 1-2 s idle"

DEFAULT_POLL_S = 0.1  # Consumer(initial_delay=0.1): first sleep after an empty poll
WAIT_TIMEOUT_S = 120.0


class NormalSyncStorage(SqliteStorage):  # type: ignore[misc]
    """SqliteStorage with `PRAGMA synchronous=NORMAL` on every connection it opens."""

    def _create_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = super()._create_connection()
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn


class NormalSqliteHuey(SqliteHuey):  # type: ignore[misc]
    storage_class = NormalSyncStorage


class BenchConsumer(Consumer):  # type: ignore[misc]
    """A Consumer that leaves the benchmark's signal handlers alone."""

    def _set_signal_handlers(self) -> None:
        pass


class Peer:
    """A Huey instance on a fresh file with a `noop` task that calls `self.on_run`."""

    def __init__(self, path: Path, normal_sync: bool = False) -> None:
        cls = NormalSqliteHuey if normal_sync else SqliteHuey
        self.huey: Any = cls("bench", filename=str(path))
        assert not self.huey.immediate
        self.on_run: Callable[[], None] = lambda: None

        def noop() -> None:
            self.on_run()

        self.noop: Any = self.huey.task()(noop)

    def sync_mode(self) -> int:
        row = self.huey.storage.sql("PRAGMA synchronous", results=True)
        return int(row[0][0])

    def prefill(self, n: int) -> None:
        """Enqueue n no-op tasks quickly (synchronous=OFF), then restore the sync mode."""
        before = self.sync_mode()
        self.huey.storage.sql("PRAGMA synchronous=OFF")
        try:
            for _ in range(n):
                self.noop()
        finally:
            self.huey.storage.sql(f"PRAGMA synchronous={before}")
        if self.sync_mode() != before:
            raise RuntimeError("could not restore PRAGMA synchronous")

    @contextmanager
    def consumer(self, workers: int = 1) -> Iterator[Any]:
        c = BenchConsumer(self.huey, workers=workers, worker_type="thread")
        c.start()
        try:
            yield c
        finally:
            c.stop(graceful=True)

    def close(self) -> None:
        self.huey.storage.close()


@contextmanager
def peer(cfg: Config, stem: str, normal_sync: bool = False) -> Iterator[Peer]:
    with cfg.fresh_db(stem) as path:
        p = Peer(path, normal_sync)
        try:
            yield p
        finally:
            p.close()


class Countdown:
    def __init__(self, n: int) -> None:
        self.remaining = n
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.finished_at = 0.0

    def hit(self) -> None:
        with self.lock:
            self.remaining -= 1
            if self.remaining == 0:
                self.finished_at = time.perf_counter()
                self.done.set()


# ---------------------------------------------------------------------------- runs


def enqueue_rate(cfg: Config, n: int, normal_sync: bool) -> float:
    with peer(cfg, "huey-enqueue", normal_sync) as p:
        expected = 1 if normal_sync else 2
        if p.sync_mode() != expected:
            raise RuntimeError(f"synchronous={p.sync_mode()}, expected {expected}")
        t0 = time.perf_counter()
        for _ in range(n):
            p.noop()
        return rate(n, time.perf_counter() - t0)


def end_to_end(cfg: Config, n: int, workers: int, normal_sync: bool = False) -> float:
    """Enqueue n no-op tasks (untimed, fast); time from consumer start to the n-th execution."""
    with peer(cfg, "huey-e2e", normal_sync) as p:
        p.prefill(n)
        countdown = Countdown(n)
        p.on_run = countdown.hit
        t0 = time.perf_counter()
        with p.consumer(workers):
            if not countdown.done.wait(WAIT_TIMEOUT_S):
                raise TimeoutError(f"{countdown.remaining} of {n} tasks not run")
        return rate(n, countdown.finished_at - t0)


def pickup_latency(cfg: Config, samples: int, wait_s: tuple[float, float]) -> dict[str, float]:
    """Enqueue one task at a time on an idle one-thread consumer; time enqueue -> task start.

    After each task the worker polls once, finds nothing and sleeps `initial_delay` (0.1 s),
    then backs off x1.15 per empty poll. The next task is enqueued a random `wait_s[0]` to
    `wait_s[1]` seconds after the previous one started; with (0, 0.1) the enqueue lands at a
    uniform phase of the first polling sleep, with (1, 2) the interval has grown to ~0.3 s.
    """
    rng = random.Random(1234)
    started: queue.Queue[float] = queue.Queue()
    with peer(cfg, "huey-pickup") as p:
        p.on_run = lambda: started.put(time.perf_counter())
        latencies: list[float] = []
        with p.consumer(workers=1):
            p.noop()  # warm-up: resets the worker's backoff
            started.get(timeout=WAIT_TIMEOUT_S)
            for _ in range(samples):
                time.sleep(rng.uniform(*wait_s))
                t0 = time.perf_counter()
                p.noop()
                latencies.append(started.get(timeout=WAIT_TIMEOUT_S) - t0)
    ms = [x * 1000.0 for x in latencies]
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": statistics.median(ms), "p99": cuts[98]}


# ---------------------------------------------------------------------------- section


def cases(cfg: Config) -> Sequence[Case]:
    n = cfg.n

    def m(name: str, unit: str, note: str = "", vs_floor: str | None = None) -> Measurement:
        return Measurement(name, unit, unit.endswith("/s"), GROUP, vs_floor=vs_floor, note=note)

    e2e_note = "n tasks enqueued first, timed from consumer start to last execution"
    out = [
        Case.single(
            m(ENQUEUE_DEFAULT, "tasks/s", vs_floor=floor.INSERT_COMMIT_FULL),
            lambda: enqueue_rate(cfg, n, normal_sync=False),
        ),
        Case.single(
            m(ENQUEUE_NORMAL, "tasks/s", vs_floor=floor.INSERT_COMMIT),
            lambda: enqueue_rate(cfg, n, normal_sync=True),
        ),
        Case.single(
            m(E2E_1, "tasks/s", e2e_note, vs_floor=floor.CLAIM_COMPLETE),
            lambda: end_to_end(cfg, n, workers=1),
        ),
        Case.single(
            m(E2E_1_NORMAL, "tasks/s", e2e_note, vs_floor=floor.CLAIM_COMPLETE),
            lambda: end_to_end(cfg, n, workers=1, normal_sync=True),
        ),
        Case.single(
            m(E2E_8, "tasks/s", e2e_note, vs_floor=floor.CLAIM_COMPLETE),
            lambda: end_to_end(cfg, n, workers=8),
        ),
        Case.single(
            m(E2E_2_NORMAL, "tasks/s", e2e_note, vs_floor=floor.CLAIM_COMPLETE),
            lambda: end_to_end(cfg, n, workers=2, normal_sync=True),
        ),
        Case.single(
            m(E2E_8_NORMAL, "tasks/s", e2e_note, vs_floor=floor.CLAIM_COMPLETE),
            lambda: end_to_end(cfg, n, workers=8, normal_sync=True),
        ),
    ]
    pickup_note = "enqueued 0..0.1 s after the previous task, in the first polling sleep"
    first_sleep = (0.0, DEFAULT_POLL_S)
    out.append(
        pickup_case(cfg, PICKUP_P50, PICKUP_P99, cfg.latency_samples, first_sleep, pickup_note)
    )
    if cfg.full:
        idle_note = "enqueued 1..2 s after the previous task: polling has backed off"
        out.append(pickup_case(cfg, PICKUP_IDLE_P50, PICKUP_IDLE_P99, 20, (1.0, 2.0), idle_note))
    return out


def pickup_case(
    cfg: Config, p50: str, p99: str, samples: int, wait_s: tuple[float, float], note: str
) -> Case:
    m50 = Measurement(p50, "ms", False, GROUP, note=f"{samples} samples, {note}")
    m99 = Measurement(p99, "ms", False, GROUP, note=f"{samples} samples")

    def run() -> dict[str, float]:
        lat = pickup_latency(cfg, samples, wait_s)
        return {p50: lat["p50"], p99: lat["p99"]}

    return Case((m50, m99), run)
