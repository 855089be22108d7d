"""Fixtures for the frozen-binary tests: the built sidecars and a stdio driver.

``make test-frozen`` builds the binaries (build/build.py) and points
``TASKMILL_FROZEN_ONEDIR`` / ``TASKMILL_FROZEN_ONEFILE`` at them. Without those
variables the tests skip with a message, so a plain ``pytest`` run stays green.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 20.0
Message = dict[str, Any]


def frozen_exe(kind: str) -> str:
    """The path in ``TASKMILL_FROZEN_<KIND>``, or skip the test."""
    var = f"TASKMILL_FROZEN_{kind.upper()}"
    path = os.environ.get(var)
    if not path:
        pytest.skip(f"{var} is not set: run `make test-frozen` (it builds the {kind} binary)")
    if not os.path.isfile(path):
        pytest.skip(f"{var}={path} does not exist: run `python build/build.py`")
    return path


@pytest.fixture
def onedir() -> str:
    return frozen_exe("onedir")


@pytest.fixture
def onefile() -> str:
    return frozen_exe("onefile")


class Sidecar:
    """A frozen sidecar spoken to over stdio, one JSON message per line."""

    def __init__(self, exe: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [exe, "--stdio", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.inbox: queue.Queue[Message | None] = queue.Queue()
        self.stderr = b""
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.ready = self.next(lambda m: True)
        assert self.ready["method"] == "sidecar.ready", self.ready

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.inbox.put(json.loads(line))
        self.inbox.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def next(self, pred: Any, timeout: float = TIMEOUT) -> Message:
        """The next message matching ``pred`` (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no matching message from the sidecar in time") from None
            if msg is None:
                raise AssertionError(f"the sidecar closed stdout; stderr: {self.stderr[-2000:]!r}")
            if pred(msg):
                return msg

    def send(self, msg: Message) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg, ensure_ascii=False).encode() + b"\n")
        self.proc.stdin.flush()

    def call(self, method: str, **params: Any) -> Any:
        self.ids += 1
        rid = self.ids
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        resp = self.next(lambda m: m.get("id") == rid and "method" not in m)
        assert "result" in resp, resp
        return resp["result"]

    def close(self, timeout: float = TIMEOUT) -> int:
        """Close stdin (the sidecar's cue to shut down) and wait for the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGTERM first: SIGKILL on a onefile bootloader would orphan the interpreter."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start(tmp_path: Path) -> Any:
    """``start(exe, *args)``: a Sidecar on a fresh database, killed at teardown."""
    started: list[Sidecar] = []

    def run(exe: str, *args: str) -> Sidecar:
        db = str(tmp_path / f"t{len(started)}.db")
        sc = Sidecar(exe, "--db", db, "--no-resource-monitoring", *args)
        started.append(sc)
        return sc

    yield run
    for sc in started:
        sc.kill()
