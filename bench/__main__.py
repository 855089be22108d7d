"""Entry point: `python -m bench [--quick|--full] [--out PATH] [--only SECTION,...]`.

A section is a module with `cases(cfg: Config) -> Sequence[Case]`; register it with one
line in SECTIONS. Modules are imported lazily, so a section that fails to import is
reported and the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import DEFAULT_OUT, Config, Report, Section, run_case

# name -> module exposing `cases(cfg)`. Order is the order of the report.
SECTIONS: dict[str, str] = {
    "floor": "bench.floor",
    "huey": "bench.huey_peer",
    "taskmill": "bench.taskmill_inproc",
    "scale": "bench.taskmill_scale",
    "sidecar": "bench.taskmill_sidecar",
    "responsiveness": "bench.responsiveness",
    "reliability": "bench.reliability",
}

MODES = {
    # mode: (repeats, n, latency samples)
    "quick": (3, 2_000, 50),
    "full": (5, 20_000, 200),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick")
    mode.add_argument("--full", dest="mode", action="store_const", const="full")
    p.set_defaults(mode="quick")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--only", help=f"comma-separated sections out of: {', '.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, help="override the mode's repeat count (min 3)")
    p.add_argument("--n", type=int, help="override the mode's task count")
    p.add_argument("--dir", type=Path, help="directory for database files (default: a temp dir)")
    return p.parse_args(argv)


def load_section(module: str) -> Section:
    mod = importlib.import_module(module)
    fn: Section = mod.cases
    return fn


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats, n, samples = MODES[args.mode]
    repeats = max(3, args.repeats or repeats)
    n = args.n or n
    names = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}", file=sys.stderr)
        return 2

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="taskmill-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = Config(args.mode, repeats, n, samples, workdir)
    report = Report(cfg)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    failed = False
    t0 = time.perf_counter()
    try:
        for name in names:
            log(f"section {name}")
            try:
                cases = load_section(SECTIONS[name])(cfg)
            except Exception:
                traceback.print_exc()
                failed = True
                continue
            for case in cases:
                results = run_case(case, repeats, log)
                failed = failed or any(not r.ok for r in results)
                report.add(results)
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"total {time.perf_counter() - t0:.1f} s")

    print(report.render())
    report.write_json(args.out)
    print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
