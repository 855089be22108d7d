"""A small benchmark framework: measurements, repeated runs, a report table and JSON.

Vocabulary:

* A `Measurement` describes one row of the report: its name (unique in a report), unit,
  whether higher is better, the group (section) it belongs to, and optionally the names of
  the Huey row and of the floor row it should be compared with.
* A `Case` is one function that performs a single run and returns a value for each of its
  measurements (one run may yield several values, e.g. p50 and p99 of a latency sample).
* A section is a function `cases(cfg: Config) -> Sequence[Case]` in a module registered in
  `bench.__main__.SECTIONS`.
* `run_case` repeats a case `cfg.repeats` times and returns one `Result` per measurement;
  a `Report` collects results, prints a table and writes JSON.

Ratios in the "vs Huey" and "vs floor" columns are oriented so that a value above 1 means
"better than the reference": median / reference for higher-is-better rows, reference /
median for lower-is-better rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import importlib.metadata
import itertools
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Measurement:
    name: str
    unit: str  # "tasks/s", "rows/s", "ms", "us", ...
    higher_is_better: bool
    group: str
    vs_huey: str | None = None  # name of the Huey row to compare with
    vs_floor: str | None = None  # name of the floor row to compare with
    note: str = ""
    #: Huey rows one of which is its best configuration for this row (threads,
    #: durability): the "vs Huey best" column compares with whichever measured
    #: best in this run.
    vs_huey_best: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    mode: str  # "quick" or "full"
    repeats: int
    n: int  # tasks (or rows) per throughput run
    latency_samples: int  # samples per latency run
    workdir: Path  # directory for the database files
    _seq: Iterator[int] = field(default_factory=itertools.count, repr=False, compare=False)

    @property
    def full(self) -> bool:
        return self.mode == "full"

    @contextlib.contextmanager
    def fresh_db(self, stem: str) -> Iterator[Path]:
        """Yield the path of a database file that does not exist yet; delete it afterwards."""
        path = self.workdir / f"{stem}-{next(self._seq)}.db"
        remove_db(path)
        try:
            yield path
        finally:
            remove_db(path)


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


RunFn = Callable[[], Mapping[str, float]]


@dataclass(frozen=True)
class Case:
    measurements: tuple[Measurement, ...]
    fn: RunFn  # one run; returns {measurement name: value}

    @classmethod
    def single(cls, measurement: Measurement, fn: Callable[[], float]) -> Case:
        return cls((measurement,), lambda: {measurement.name: fn()})


Section = Callable[[Config], Sequence[Case]]


@dataclass
class Result:
    measurement: Measurement
    samples: list[float]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent."""
        med = self.median
        return 100.0 * (self.max - self.min) / med if med else 0.0


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def run_case(case: Case, repeats: int, log: Callable[[str], None] | None = None) -> list[Result]:
    """Run `case` `repeats` times; on an exception, record the error and stop repeating."""
    samples: dict[str, list[float]] = {m.name: [] for m in case.measurements}
    error: str | None = None
    started = time.perf_counter()
    for _ in range(repeats):
        gc.collect()
        try:
            values = case.fn()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            error = f"{type(exc).__name__}: {exc}"
            break
        for m in case.measurements:
            samples[m.name].append(float(values[m.name]))
    results = [Result(m, samples[m.name], error) for m in case.measurements]
    if log is not None:
        took = time.perf_counter() - started
        for r in results:
            shown = f"{fmt_value(r.median)} {r.measurement.unit}" if r.ok else f"ERROR {r.error}"
            log(f"  [{r.measurement.group}] {r.measurement.name}: {shown}  ({took:.1f} s)")
    return results


# ---------------------------------------------------------------------------- report

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _comparable(value: float, unit: str, ref_unit: str) -> tuple[float, float] | None:
    """Scale factors making `unit` and `ref_unit` comparable, or None if they are not."""
    if unit in _TIME_UNITS and ref_unit in _TIME_UNITS:
        return _TIME_UNITS[unit], _TIME_UNITS[ref_unit]
    if unit.endswith("/s") and ref_unit.endswith("/s"):  # tasks/s vs rows/s is fine
        return 1.0, 1.0
    return None


def fmt_value(v: float) -> str:
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for pkg in ("aiosqlite", "huey", "taskmill"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Report:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.machine = machine_info()
        self.results: list[Result] = []
        self._by_name: dict[str, Result] = {}

    def add(self, results: Sequence[Result]) -> None:
        for r in results:
            if r.measurement.name in self._by_name:
                raise ValueError(f"duplicate measurement name: {r.measurement.name!r}")
            self._by_name[r.measurement.name] = r
            self.results.append(r)

    def find(self, name: str) -> Result | None:
        return self._by_name.get(name)

    def ratio(self, result: Result, ref_name: str | None) -> float | None:
        """Ratio against the named row, above 1 meaning better; None if not computable."""
        ref = self.find(ref_name) if ref_name else None
        if ref is None or not result.ok or not ref.ok:
            return None
        scales = _comparable(result.median, result.measurement.unit, ref.measurement.unit)
        if scales is None:
            return None
        ours, theirs = result.median * scales[0], ref.median * scales[1]
        if ours <= 0 or theirs <= 0:
            return None
        return ours / theirs if result.measurement.higher_is_better else theirs / ours

    def best(self, names: Sequence[str]) -> str | None:
        """The name of the best row among ``names`` in this run (None if none ran)."""
        done = [r for r in (self.find(n) for n in names) if r is not None and r.ok]
        if not done:
            return None
        pick = max if done[0].measurement.higher_is_better else min
        return pick(done, key=lambda r: r.median).measurement.name

    # -- output

    def header(self) -> str:
        m, c = self.machine, self.config
        return "\n".join(
            [
                f"taskmill bench, {c.mode} mode: {c.repeats} repeats, n={c.n}, "
                f"latency samples={c.latency_samples}",
                f"machine: {m['cpu_count']} CPUs ({m['cpu_affinity']} usable) {m['cpu_model']}",
                f"python {m['python']}, sqlite {m['sqlite']}, aiosqlite {m['aiosqlite']}, "
                f"huey {m['huey']}, taskmill {m['taskmill']}",
                f"platform {m['platform']}, date {m['date']}",
                "ratios: above 1 = better than the reference row",
            ]
        )

    def table(self) -> str:
        head = (
            "measurement",
            "median",
            "spread (min..max)",
            "vs Huey",
            "vs Huey best",
            "vs floor",
        )
        rows: list[tuple[str, ...] | str] = []
        group: str | None = None
        for r in self.results:
            if r.measurement.group != group:
                group = r.measurement.group
                rows.append(f"[{group}]")
            rows.append(self._row(r))
        cells = [head] + [row for row in rows if isinstance(row, tuple)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]

        def line(row: tuple[str, ...]) -> str:
            first = row[0].ljust(widths[0])
            rest = (cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        out = [line(head), "  ".join("-" * w for w in widths)]
        out += [row if isinstance(row, str) else line(row) for row in rows]
        return "\n".join(out)

    def _row(self, r: Result) -> tuple[str, ...]:
        m = r.measurement
        name = m.name + ("" if m.higher_is_better else "  (lower is better)")
        if not r.ok:
            return (name, "ERROR", (r.error or "no samples")[:40], "", "", "")
        spread = f"{fmt_value(r.min)}..{fmt_value(r.max)} ({r.spread_pct:.0f}%)"
        return (
            name,
            f"{fmt_value(r.median)} {m.unit}",
            spread,
            _fmt_ratio(self.ratio(r, m.vs_huey)),
            _fmt_ratio(self.ratio(r, self.best(m.vs_huey_best))),
            _fmt_ratio(self.ratio(r, m.vs_floor)),
        )

    def render(self) -> str:
        notes = [f"  {r.measurement.name}: {r.measurement.note}" for r in self.results]
        notes = [n for n, r in zip(notes, self.results, strict=True) if r.measurement.note]
        parts = [self.header(), "", self.table()]
        if notes:
            parts += ["", "notes:", *notes]
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        def ref(r: Result, name: str | None) -> dict[str, Any] | None:
            return None if name is None else {"name": name, "ratio": self.ratio(r, name)}

        return {
            "machine": self.machine,
            "config": {
                "mode": self.config.mode,
                "repeats": self.config.repeats,
                "n": self.config.n,
                "latency_samples": self.config.latency_samples,
            },
            "results": [
                {
                    "name": r.measurement.name,
                    "group": r.measurement.group,
                    "unit": r.measurement.unit,
                    "higher_is_better": r.measurement.higher_is_better,
                    "median": r.median if r.ok else None,
                    "min": r.min if r.ok else None,
                    "max": r.max if r.ok else None,
                    "spread_pct": r.spread_pct if r.ok else None,
                    "samples": r.samples,
                    "vs_huey": ref(r, r.measurement.vs_huey),
                    "vs_huey_best": ref(r, self.best(r.measurement.vs_huey_best)),
                    "vs_floor": ref(r, r.measurement.vs_floor),
                    "note": r.measurement.note,
                    "error": r.error,
                }
                for r in self.results
            ],
        }

    def write_json(self, path: Path = DEFAULT_OUT) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"
