#!/usr/bin/env python3
"""Measure the frozen sidecar: size on disk and time from launch to ``sidecar.ready``.

    python build/measure.py [--runs 7] [--onedir EXE] [--onefile EXE]

Without --onedir/--onefile the binaries come from build/build.py (built if
needed). Each command runs once untimed (to warm the page cache), then
``--runs`` times on a fresh database, taking turns with the others; the JSON
printed has the median, min and max in milliseconds, next to
``python -m taskmill`` from this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def built(*flags: str) -> str:
    cmd = [sys.executable, str(HERE / "build.py"), *flags]
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def tree_bytes(folder: Path) -> int:
    return sum(f.lstat().st_size for f in folder.rglob("*") if f.is_file() or f.is_symlink())


def launch_to_ready_ms(cmd: list[str], db: str) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--stdio", "--demo", "--db", db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    elapsed = (time.perf_counter() - started) * 1000
    proc.stdin.close()  # stdin EOF: the sidecar shuts down
    proc.wait(timeout=30)
    if b'"sidecar.ready"' not in line:
        raise RuntimeError(f"{cmd[0]}: no ready line (got {line[:200]!r})")
    return elapsed


def startup(commands: dict[str, list[str]], runs: int) -> dict[str, dict[str, float]]:
    """Round-robin over the commands, so a burst of load on the machine hits them all."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in commands.items():
            launch_to_ready_ms(cmd, os.path.join(tmp, f"{name}-warmup.db"))
        for i in range(runs):
            for name, cmd in commands.items():
                times[name].append(launch_to_ready_ms(cmd, os.path.join(tmp, f"{name}-{i}.db")))
    return {
        name: {
            "median_ms": round(statistics.median(t), 1),
            "min_ms": round(min(t), 1),
            "max_ms": round(max(t), 1),
        }
        for name, t in times.items()
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--onedir", help="onedir executable (default: build/build.py)")
    p.add_argument("--onefile", help="onefile executable (default: build/build.py --onefile)")
    args = p.parse_args()
    onedir = Path(args.onedir or built())
    onefile = Path(args.onefile or built("--onefile"))
    report = {
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "runs": args.runs,
        "size_bytes": {
            "onedir_folder": tree_bytes(onedir.parent),
            "onefile": onefile.stat().st_size,
        },
        "launch_to_ready": startup(
            {
                "onedir": [str(onedir)],
                "onefile": [str(onefile)],
                "python -m taskmill": [sys.executable, "-m", "taskmill"],
            },
            args.runs,
        ),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
