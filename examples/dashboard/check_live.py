#!/usr/bin/env python3
"""Check that the demo's workload is alive: run ``serve.py --no-page`` for a
while and read its ``workload: {...}`` report.

    python examples/dashboard/check_live.py [SECONDS]      (default 20; make test-examples)

It fails (exit 1, saying what is missing) unless, over that window, the
trickle submitted at least one task every two seconds and was still
submitting at the end, and the sidecar reported completions, failures that
were retried, a dead letter, a preemption by a realtime task and a recurring
completion, with disk IO among the work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def problems(report: dict[str, Any], seconds: float) -> list[str]:
    events, kinds = report["events"], report["kinds"]
    wanted = {
        "at least one task every two seconds": report["per_second"] >= 0.5,
        "still submitting at the end": report["seconds_since_last_submit"] < 6,
        "completions": events.get("completed", 0) >= seconds / 2,
        "failures that were retried": report["retries"] >= 1,
        "a dead letter": events.get("dead_lettered", 0) >= 1,
        "a preemption": events.get("preempted", 0) >= 1,
        "a recurring completion": events.get("recurring_completed", 0) >= 1,
        "disk IO": kinds.get("io", 0) >= 1,
    }
    return [what for what, ok in wanted.items() if not ok]


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    cmd = [sys.executable, str(HERE / "serve.py"), "--no-page", "--exit-after", f"{seconds:g}"]
    cmd += ["--seed", "17"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in res.stdout.splitlines() if x.startswith("workload: ")), None)
    if res.returncode != 0 or line is None:
        print(f"check_live: serve.py failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
        return 1
    report = json.loads(line.removeprefix("workload: "))
    missing = problems(report, seconds)
    print(f"check_live: {line}")
    if missing:
        print(f"check_live: the demo workload lacks {', '.join(missing)}")
        return 1
    print(f"check_live: alive: {report['per_second']} tasks/s over {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
