#!/usr/bin/env python3
"""Drive the taskmill sidecar from Python with the standard library only.

``SidecarClient`` spawns the sidecar with pipes, reads its ``sidecar.ready``
line, sends JSON-RPC requests (one JSON object per line), matches responses
by id and queues ``event`` notifications. Closing it closes the sidecar's
stdin, which the sidecar takes as its cue to drain and exit.

    python examples/headless/client.py            # runs: python -m taskmill
    TASKMILL_SIDECAR=path/to/taskmill-sidecar-<triple> python examples/headless/client.py

    # one task of your own (no --demo): progress, then the result; exit 1 if it fails
    TASKMILL_SIDECAR=path/to/your-sidecar python examples/headless/client.py \
        --run thumbs::make --payload '{"path": "cat.jpg"}'
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
from typing import Any


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.kind = (error.get("data") or {}).get("kind")


class SidecarClient:
    """A sidecar process and a blocking client for it (requests may come from any thread)."""

    def __init__(self, command: list[str], timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._ready: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._ready.get(timeout=timeout)
        if ready is None:
            raise RuntimeError(f"the sidecar exited before it was ready ({self.proc.wait()})")
        #: ``sidecar.ready`` params: pid, db_path, task_types, transports.
        self.ready = ready

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.strip():
                continue
            msg = json.loads(raw)
            method = msg.get("method")
            if method == "sidecar.ready":
                self._ready.put(msg["params"])
            elif method == "event":
                self.events.put(msg["params"])
            elif method is None and msg.get("id") in self._replies:
                self._replies[msg["id"]].put(msg)
        self._ready.put(None)

    def call(self, method: str, **params: Any) -> Any:
        """Send a request and wait for its result (raises RpcError on an error reply)."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            reply: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
            self._replies[rid] = reply
            line = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        try:
            msg = reply.get(timeout=self.timeout)
        finally:
            del self._replies[rid]
        if "error" in msg:
            raise RpcError(msg["error"])
        return msg["result"]

    def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        return self.events.get(timeout=timeout or self.timeout)

    def close(self) -> int:
        """Close stdin (the sidecar drains and exits) and return its exit code."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=self.timeout)

    def __enter__(self) -> SidecarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sidecar_command(*args: str) -> list[str]:
    """``$TASKMILL_SIDECAR`` (split like a shell would) or ``python -m taskmill``, plus args."""
    base = os.environ.get("TASKMILL_SIDECAR")
    return [*(shlex.split(base) if base else [sys.executable, "-m", "taskmill"]), *args]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", metavar="TASK_TYPE", help="run one task of this type (no --demo)")
    p.add_argument("--payload", default="{}", metavar="JSON", help="its payload (default {})")
    args = p.parse_args(argv)
    task_type = args.run or "demo::sleep"
    payload = (
        json.loads(args.payload)
        if args.run
        else {"ms": 400, "steps": 4, "result": {"greeting": "hello from Python"}}
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "tasks.db")
        demo = [] if args.run else ["--demo"]
        cmd = sidecar_command("--stdio", *demo, "--db", db, "--no-resource-monitoring")
        with SidecarClient(cmd) as sc:
            print(f"sidecar {sc.ready['version']} ready (pid {sc.ready['pid']})")
            print(f"task types: {', '.join(sc.ready['task_types']) or '-'}")
            sc.call(
                "events.subscribe",
                filter={
                    "kinds": ["progress", "completed", "failed", "dead_lettered"],
                    "progress_interval_ms": 0,
                },
            )
            try:
                task_id = sc.call("task.submit", task_type=task_type, payload=payload)["id"]
            except RpcError as error:
                print(f"task.submit: {error}", file=sys.stderr)
                return 1
            print(f"submitted task {task_id}")
            while True:
                event = sc.next_event()
                if event.get("task_id") != task_id:
                    continue
                if event["kind"] == "progress":
                    print(f"progress {event['percent']:.0%} {event.get('message') or ''}")
                elif event["kind"] == "completed":
                    print(f"result: {json.dumps(event['result'])}")
                    break
                elif event["kind"] == "failed" and event.get("will_retry"):
                    print(f"attempt {event.get('attempt')} failed, retrying: {event.get('error')}")
                else:
                    print(f"task {task_id} {event['kind']}: {event.get('error')}", file=sys.stderr)
                    return 1
            record = sc.call("task.get", id=task_id)
            print(f"history: {record['status']} in {record['duration_ms']} ms")
        code = sc.proc.returncode
        print(f"sidecar exited with code {code}")
        return code


if __name__ == "__main__":
    sys.exit(main())
