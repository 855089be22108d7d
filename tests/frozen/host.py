"""A stand-in for the desktop app: launch the sidecar with pipes, report, then idle.

    python host.py EXE DB [--stdin-fd FD] [--busy]

The sidecar gets ``--parent-pid <this pid>``, as a launcher would pass.
``--stdin-fd``: the sidecar's stdin is FD, a pipe whose write end someone else
keeps open, so it sees no EOF when this process dies; only the parent-pid
watchdog can notice. ``--busy``: a long task is running when the report goes
out, and the sidecar has ``--drain-timeout-ms 500`` (it would otherwise wait up
to 10 s for the task). Prints one JSON line: the launched pid and the
``sidecar.ready`` params.
"""

import argparse
import json
import os
import subprocess
import time

p = argparse.ArgumentParser()
p.add_argument("exe")
p.add_argument("db")
p.add_argument("--stdin-fd", type=int)
p.add_argument("--busy", action="store_true")
args = p.parse_args()

cmd = [args.exe, "--stdio", "--demo", "--db", args.db, "--no-resource-monitoring"]
cmd += ["--parent-pid", str(os.getpid())]
cmd += ["--drain-timeout-ms", "500"] if args.busy else []
proc = subprocess.Popen(
    cmd,
    stdin=subprocess.PIPE if args.stdin_fd is None else args.stdin_fd,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    pass_fds=() if args.stdin_fd is None else (args.stdin_fd,),
)
assert proc.stdout is not None
ready = json.loads(proc.stdout.readline())
if args.busy:
    assert proc.stdin is not None
    for line in (
        {"id": 1, "method": "events.subscribe", "params": {"filter": {"kinds": ["dispatched"]}}},
        {
            "id": 2,
            "method": "task.submit",
            "params": {"task_type": "demo::sleep", "payload": {"ms": 60000}},
        },
    ):
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", **line}).encode() + b"\n")
    proc.stdin.flush()
    while json.loads(proc.stdout.readline()).get("method") != "event":
        pass  # until the task is running
print(json.dumps({"launched": proc.pid, "ready": ready["params"]}), flush=True)
time.sleep(600)
