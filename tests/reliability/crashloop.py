"""The crash loop: a mixed workload against a sidecar SIGKILLed again and again.

:func:`plan` builds a seeded workload (retries, dead letters, permanent
failures, delays, dependency chains, parents with children and finalize,
``demo::fanout``, repeated keys). :class:`CrashLoop` submits it over stdio in
batches to a real sidecar process that it kills with SIGKILL at seeded random
moments (a delay after each ``sidecar.ready``), restarting it on the same
database each time, until every task is final. Submission is made idempotent
by explicit keys: after a restart, every item of a batch whose answer was lost
is looked up by key (``task.lookup``) and only the missing ones are submitted
again. :meth:`CrashLoop.verify` then checks history and the executors' side
effects against the design. Used by ``tests/reliability/test_crash_loop.py``
(small) and ``bench/reliability.py`` (large).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.harness import RpcError, SidecarProcess, child_env, error_field, error_of
from tests.reliability.common import (
    SIDEFX_MODULE,
    all_active,
    all_history,
    read_sidefx,
    write_sidefx_app,
)

#: History statuses a task can end in.
FINAL = {
    "completed",
    "failed",
    "cancelled",
    "superseded",
    "expired",
    "dead_letter",
    "dependency_failed",
}


@dataclass
class Spec:
    """One planned submission."""

    idx: int
    kind: str
    task_type: str
    key: str
    payload: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    deps: list[int] = field(default_factory=list)
    level: int = 0
    expect: str = "completed"
    retries: int = 0  # the history retry_count the design implies
    original: int | None = None  # a repeated key: the spec it repeats

    def submit_params(self, ids: dict[int, int]) -> dict[str, Any]:
        p: dict[str, Any] = {
            "task_type": self.task_type,
            "payload": self.payload,
            "key": self.key,
            **self.options,
        }
        if self.deps:
            p["depends_on"] = [ids[d] for d in self.deps]
        return p


def plan(seed: int, n: int, *, max_delay_ms: int = 20_000) -> list[Spec]:
    """A seeded workload of ``n`` submissions (children come on top)."""
    rng = random.Random(seed)
    specs: list[Spec] = []

    def add(kind: str, payload: dict[str, Any], **kw: Any) -> Spec:
        idx = len(specs)
        kw.setdefault("task_type", "cl::work")
        s = Spec(idx=idx, kind=kind, key=f"cl-{seed}-{idx}", payload=payload, **kw)
        specs.append(s)
        return s

    def ms() -> int:
        return rng.choice((0, 5, 10, 20, 40, 80))

    n_fanout = max(2, n // 100)
    n_parent = max(3, n * 3 // 100)
    n_chain = max(6, n * 9 // 100 // 3)
    n_dedup = max(3, n * 5 // 100)
    n_dead = max(3, n * 4 // 100)
    n_perm = max(2, n * 2 // 100)
    n_retry = max(5, n * 20 // 100)
    n_delay = max(5, n * 15 // 100)
    used = n_fanout + n_parent + 3 * n_chain + 2 * n_dedup + n_dead + n_perm + n_retry + n_delay
    n_plain = max(0, n - used)

    for i in range(n_plain):
        add("plain", {"n": i, "ms": ms()})
    for i in range(n_retry):
        fail = rng.randint(1, 2)
        add(
            "retry",
            {"n": i, "fail": fail, "ms": ms()},
            options={
                "retry": {"max_retries": 3, "backoff": "constant", "base_ms": rng.randint(20, 200)}
            },
            retries=fail,
        )
    for i in range(n_dead):
        m = rng.randint(0, 2)
        add(
            "dead",
            {"n": i, "fail": -1, "ms": ms()},
            options={
                "retry": {"max_retries": m, "backoff": "constant", "base_ms": rng.randint(50, 300)}
            },
            expect="dead_letter",
            retries=m,
        )
    for i in range(n_perm):
        add(
            "perm",
            {"n": i, "fail": 1, "permanent": True, "ms": ms()},
            options={"retry": {"max_retries": 3}},
            expect="failed",
        )
    for i in range(n_delay):
        add("delay", {"n": i, "ms": ms()}, options={"run_after_ms": rng.randint(200, max_delay_ms)})
    for i in range(n_chain):
        failing = i % 6 == 0
        if failing:
            # Fails only after a delay and a backoff, so its dependents are
            # (almost always) submitted before it ends; if not, submitting them
            # is refused with -32602 on depends_on, which the check accepts.
            head = add(
                "chain-head-fail",
                {"n": i, "fail": -1},
                options={
                    "run_after_ms": 1500,
                    "retry": {"max_retries": 1, "backoff": "constant", "base_ms": 1500},
                },
                expect="dead_letter",
                retries=1,
            )
        else:
            head = add("chain-head", {"n": i, "ms": ms()})
        prev = head
        for step in (1, 2):
            prev = add(
                "chain",
                {"n": i, "step": step, "ms": ms()},
                deps=[prev.idx],
                level=step,
                expect="dependency_failed" if failing else "completed",
            )
    for i in range(n_parent):
        add(
            "parent",
            {"n": i, "children": rng.randint(2, 4), "child_ms": ms()},
            task_type="cl::parent",
        )
    for _ in range(n_fanout):
        add(
            "fanout",
            {"children": 2, "child_ms": 10},
            task_type="demo::fanout",
        )
    originals = [
        add("dedup", {"n": i, "ms": ms()}, options={"run_after_ms": rng.randint(3000, 6000)})
        for i in range(n_dedup)
    ]
    for o in originals:
        s = add("repeat", o.payload, level=1, original=o.idx)
        s.key = o.key
        if rng.random() < 0.5:
            s.options = {"priority": "high"}
    return specs


class SidecarStalled(AssertionError):
    """The sidecar (alive, not being killed) stopped answering requests."""

    def __init__(self, what: str, cpu: float) -> None:
        super().__init__(f"the sidecar stopped answering ({what}); its CPU use: {cpu:.0f}%")
        self.cpu = cpu


def _cpu_percent(pid: int) -> float:
    try:
        return float(psutil.Process(pid).cpu_percent(interval=0.5))
    except psutil.Error:
        return -1.0


@dataclass
class Figures:
    kills: int = 0
    starts: int = 0
    kills_during_submit: int = 0
    batches: int = 0
    lookups: int = 0
    resubmitted: int = 0
    refused: int = 0
    tasks_checked: int = 0
    children_checked: int = 0
    attempts: int = 0
    reruns_after_crash: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"crash loop: {self.kills} SIGKILLs survived ({self.kills_during_submit} during "
            f"submission), {self.starts} starts, {self.tasks_checked} tasks + "
            f"{self.children_checked} children checked, {self.attempts} attempts recorded "
            f"({self.reruns_after_crash} re-runs after a crash), {self.lookups} lookups, "
            f"{self.resubmitted} resubmitted, {self.refused} refused by design, "
            f"{self.seconds:.1f}s"
        )


class CrashLoop:
    """Drive :func:`plan`'s workload through repeated SIGKILLs."""

    def __init__(
        self,
        workdir: Path,
        specs: list[Spec],
        *,
        seed: int,
        min_kills: int = 30,
        max_kills: int = 60,
        kill_ms: tuple[int, int] = (50, 400),
        batch: int = 100,
        max_concurrency: int = 8,
        deadline_s: float = 240.0,
    ) -> None:
        self.workdir = workdir
        self.specs = specs
        self.rng = random.Random(seed ^ 0x5EED)
        self.min_kills = min_kills
        self.max_kills = max_kills
        self.kill_ms = kill_ms
        self.batch = batch
        self.max_concurrency = max_concurrency
        self.deadline_s = deadline_s
        self.db = workdir / "crash.db"
        self.sidefx = workdir / "sidefx"
        self.sidefx.mkdir(parents=True, exist_ok=True)
        self.app_dir = workdir / "app"
        write_sidefx_app(self.app_dir)
        self.config = workdir / "taskmill.toml"
        self.config.write_text("[retention]\nmax_count = 10000000\n", encoding="utf-8")
        self.ids: dict[int, int] = {}
        self.outcomes: dict[int, str] = {}
        self.refused: set[int] = set()
        self.inflight: set[int] = set()
        self.figures = Figures()
        self.stderr_tail: list[str] = []
        self.submitted_all = False

    def args(self) -> list[str]:
        return [
            "--stdio",
            "--demo",
            "--no-resource-monitoring",
            "--db",
            str(self.db),
            "--config",
            str(self.config),
            "--app",
            f"{SIDEFX_MODULE}:dom",
            "--app-path",
            str(self.app_dir),
            "--max-concurrency",
            str(self.max_concurrency),
        ]

    async def start(self) -> SidecarProcess:
        env = child_env({"TASKMILL_SIDEFX": str(self.sidefx)})
        sc = await SidecarProcess.start(*self.args(), env=env, ready_timeout=30)
        self.figures.starts += 1
        return sc

    # -- one life of the sidecar -------------------------------------------

    async def _recover_inflight(self, sc: SidecarProcess) -> None:
        """Find which items of the batches whose answers were lost were accepted."""
        items = sorted(self.inflight)
        for i in range(0, len(items), 200):
            chunk = items[i : i + 200]
            answers = await asyncio.gather(
                *(
                    sc.result(
                        "task.lookup",
                        {"task_type": self.specs[j].task_type, "key": self.specs[j].key},
                        timeout=30,
                    )
                    for j in chunk
                )
            )
            self.figures.lookups += len(chunk)
            for j, ans in zip(chunk, answers, strict=True):
                if ans["where"] != "not_found":
                    self.ids[j] = int(ans["record"]["id"])
                    self.outcomes[j] = "lookup"
                else:
                    self.figures.resubmitted += 1
                self.inflight.discard(j)

    def _ready(self, level: int) -> list[Spec]:
        out = []
        for s in self.specs:
            if s.level != level or s.idx in self.ids or s.idx in self.refused:
                continue
            if any(d in self.refused for d in s.deps):
                self.refused.add(s.idx)
                continue
            if s.original is not None and s.original in self.refused:
                self.refused.add(s.idx)
                continue
            out.append(s)
        return out

    async def _submit(self, sc: SidecarProcess) -> None:
        for level in (0, 1, 2):
            todo = self._ready(level)
            while todo:
                chunk, todo = todo[: self.batch], todo[self.batch :]
                while chunk:
                    params = [s.submit_params(self.ids) for s in chunk]
                    self.inflight.update(s.idx for s in chunk)
                    resp = await sc.call("task.submit_batch", {"tasks": params}, timeout=60)
                    self.figures.batches += 1
                    if "result" in resp:
                        for s, out in zip(chunk, resp["result"]["outcomes"], strict=True):
                            self.ids[s.idx] = int(out["id"])
                            self.outcomes[s.idx] = out["outcome"]
                            self.inflight.discard(s.idx)
                        break
                    self.inflight.difference_update(s.idx for s in chunk)
                    fld = error_field(resp) or ""
                    code, _ = error_of(resp)
                    # A dependency that already failed: that item is refused by
                    # contract (-32602 naming tasks[i].depends_on); drop it.
                    if code == -32602 and fld.startswith("tasks[") and "depends_on" in fld:
                        bad = chunk[int(fld[6 : fld.index("]")])]
                        await self._check_refusal(sc, bad)
                        self.refused.add(bad.idx)
                        self.figures.refused += 1
                        chunk = [s for s in chunk if s is not bad]
                        continue
                    raise RpcError("task.submit_batch", resp)
        self.submitted_all = True

    async def _check_refusal(self, sc: SidecarProcess, spec: Spec) -> None:
        for d in spec.deps:
            rec = await sc.result("task.get", {"id": self.ids[d]})
            assert rec["status"] in FINAL - {"completed"}, (
                f"submitting {spec.kind} {spec.key} was refused on depends_on, "
                f"but dependency {self.ids[d]} is {rec['status']}"
            )

    async def _drive(self, sc: SidecarProcess) -> None:
        if self.inflight:
            await self._recover_inflight(sc)
        if not self.submitted_all:
            await self._submit(sc)
        while (await sc.result("task.list", {"limit": 0}))["total"] > 0:
            await asyncio.sleep(0.05)

    async def run(self) -> Figures:
        """Kill and restart until every task is final; then stop cleanly."""
        started = time.monotonic()
        while True:
            if time.monotonic() - started > self.deadline_s:
                raise AssertionError(f"the crash loop did not finish in {self.deadline_s}s")
            sc = await self.start()
            try:
                drive = asyncio.get_running_loop().create_task(self._drive(sc))
                if self.figures.kills < self.max_kills:
                    delay = self.rng.uniform(self.kill_ms[0], self.kill_ms[1]) / 1000
                    done, _ = await asyncio.wait({drive}, timeout=delay)
                else:
                    done, _ = await asyncio.wait({drive}, timeout=self.deadline_s)
                if drive in done:
                    try:
                        drive.result()
                    except AssertionError as exc:
                        if "no answer" in str(exc) and sc.proc.returncode is None:
                            raise SidecarStalled(str(exc), _cpu_percent(sc.pid)) from exc
                        raise
                    assert await sc.shutdown(30) == 0, sc.stderr_text()
                    break
                # SIGKILL mid-flight.
                sc.proc.kill()
                self.figures.kills += 1
                if not self.submitted_all:
                    self.figures.kills_during_submit += 1
                drive.cancel()
                with contextlib.suppress(BaseException):
                    await drive
            finally:
                await sc.kill()
                self.stderr_tail = sc.stderr_lines[-20:]
        self.figures.seconds = time.monotonic() - started
        return self.figures

    # -- checks ------------------------------------------------------------

    async def verify(self) -> Figures:
        """Start once more (no kill) and check history and side effects."""
        sc = await self.start()
        try:
            assert await all_active(sc) == [], "tasks still active after the loop"
            history = await all_history(sc)
            assert await sc.shutdown(30) == 0
        finally:
            await sc.kill()
        problems = check(
            self.specs,
            self.ids,
            self.outcomes,
            self.refused,
            history,
            read_sidefx(self.sidefx),
            self.figures,
        )
        assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:30])
        return self.figures


def check(
    specs: list[Spec],
    ids: dict[int, int],
    outcomes: dict[int, str],
    refused: set[int],
    history: list[dict[str, Any]],
    sidefx: dict[int, list[dict[str, Any]]],
    figures: Figures,
) -> list[str]:
    """Every problem found (empty = the run matches its design)."""
    problems: list[str] = []
    by_id: dict[int, list[dict[str, Any]]] = {}
    for rec in history:
        by_id.setdefault(int(rec["id"]), []).append(rec)
    counts = Counter(int(r["id"]) for r in history)
    twice = [i for i, c in counts.items() if c != 1]
    if twice:
        problems.append(f"ids with more than one history record: {twice[:20]}")
    children: dict[int, list[dict[str, Any]]] = {}
    for rec in history:
        if rec["parent_id"] is not None:
            children.setdefault(int(rec["parent_id"]), []).append(rec)

    for s in specs:
        if s.idx in refused:
            continue
        if s.idx not in ids:
            problems.append(f"{s.kind} {s.key}: never accepted")
            continue
        tid = ids[s.idx]
        recs = by_id.get(tid)
        if not recs:
            problems.append(f"{s.kind} {s.key} (id {tid}): submitted but not in history (lost)")
            continue
        if s.original is not None:
            oid = ids.get(s.original)
            if outcomes.get(s.idx) in ("duplicate", "upgraded") and tid != oid:
                problems.append(f"repeat {s.key}: outcome {outcomes[s.idx]} but id {tid} != {oid}")
            if outcomes.get(s.idx) == "upgraded" and recs[-1]["priority"] != 64:
                problems.append(f"repeat {s.key}: upgraded but priority {recs[-1]['priority']}")
            if tid == oid:
                continue  # the original's checks cover it
        rec = recs[-1]
        figures.tasks_checked += 1
        fx = sidefx.get(tid, [])
        problems += _check_one(s, rec, fx, ids, by_id)
        runs = [r for r in fx if r["kind"] == "run"]
        figures.reruns_after_crash += len(runs) - len({r["attempt"] for r in runs})
        if s.kind in ("parent", "fanout"):
            kids = children.get(tid, [])
            figures.children_checked += len(kids)
            problems += _check_parent(s, rec, kids, sidefx)
    figures.attempts = sum(len(v) for v in sidefx.values())
    return problems


def _check_one(
    s: Spec,
    rec: dict[str, Any],
    fx: list[dict[str, Any]],
    ids: dict[int, int],
    by_id: dict[int, list[dict[str, Any]]],
) -> list[str]:
    out: list[str] = []
    what = f"{s.kind} {s.key} (id {rec['id']})"
    if rec["status"] != s.expect:
        out.append(f"{what}: status {rec['status']}, designed {s.expect} ({rec['last_error']})")
        return out
    runs = [r for r in fx if r["kind"] == "run"]
    finished = rec["finished_at"]
    if s.task_type.startswith("demo::"):
        return out  # no side-effect files; the parent check covers fanout
    if s.expect == "dependency_failed":
        if runs:
            out.append(f"{what}: dependency_failed but it ran {len(runs)} times")
        return out
    if not runs:
        out.append(f"{what}: {rec['status']} but it never ran")
        return out
    if rec["retry_count"] != s.retries:
        out.append(f"{what}: retry_count {rec['retry_count']}, designed {s.retries}")
    attempts = {r["attempt"] for r in runs}
    if attempts != set(range(1, s.retries + 2)):
        out.append(f"{what}: attempts {sorted(attempts)} ran, history says {s.retries + 1}")
    late = [r for r in fx if r["t"] > finished]
    if late:
        out.append(
            f"{what}: ran again after its {rec['status']} was recorded at {finished}: {late}"
        )
    if "run_after_ms" in s.options:
        earliest = rec["created_at"] + s.options["run_after_ms"]
        if runs[0]["t"] < earliest - 2:
            out.append(f"{what}: ran at {runs[0]['t']}, before its delay ended at {earliest}")
    for d in s.deps:
        dep = by_id.get(ids[d], [{}])[-1]
        if dep.get("finished_at") is not None and runs[0]["t"] < dep["finished_at"] - 2:
            out.append(f"{what}: ran before its dependency {ids[d]} completed")
    return out


def _check_parent(
    s: Spec,
    rec: dict[str, Any],
    kids: list[dict[str, Any]],
    sidefx: dict[int, list[dict[str, Any]]],
) -> list[str]:
    out: list[str] = []
    what = f"{s.kind} {s.key} (id {rec['id']})"
    n = s.payload["children"]
    # A parent whose execute was interrupted after spawning runs again and
    # spawns again: children that had already finished get a new twin. So at
    # least n children, every planned key among them, all completed.
    keys = {k["key"] for k in kids}
    if len(kids) < n or len(keys) != n:
        out.append(f"{what}: {len(kids)} children with keys {sorted(keys)}, planned {n}")
    bad = [k["id"] for k in kids if k["status"] != "completed"]
    if bad:
        out.append(f"{what}: children not completed: {bad}")
    if rec["result"].get("children") != len(kids):
        out.append(f"{what}: finalize saw {rec['result']} children, history has {len(kids)}")
    last_child = max((k["finished_at"] for k in kids), default=0)
    if s.task_type == "cl::parent":
        fin = [r for r in sidefx.get(rec["id"], []) if r["kind"] == "finalize"]
        if not fin:
            out.append(f"{what}: completed without running finalize")
        elif fin[0]["t"] < last_child - 2:
            out.append(f"{what}: finalize ran before its last child finished")
        for k in kids:
            fx = [r for r in sidefx.get(k["id"], []) if r["kind"] == "run"]
            if not fx:
                out.append(f"{what}: child {k['id']} completed but never ran")
            elif any(r["t"] > k["finished_at"] for r in fx):
                out.append(f"{what}: child {k['id']} ran again after completing")
    return out
