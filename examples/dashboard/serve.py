#!/usr/bin/env python3
"""Run the taskmill live dashboard against a real sidecar.

1. builds the page (``npm ci`` + esbuild) if ``dist/app.js`` is missing or
   older than its sources, unless ``--no-build``;
2. serves this folder on ``http://127.0.0.1:PORT`` (a thread);
3. starts the sidecar with ``--stdio --ws --demo --fs-root <temp files>``,
   allowing the page's Origin, and reads the WebSocket URL and token from its
   ``sidecar.ready`` line;
4. submits a real workload over stdio (sleeps with progress, a fanout, disk
   IO, a hashing scan of the temp files, a flaky task, a doomed task and a
   recurring heartbeat);
5. prints the page URL, with the WebSocket URL and token in its query string,
   and runs until Ctrl-C, SIGTERM or ``--exit-after SECONDS``.

Stopping closes the sidecar's stdin (it drains and exits) and removes the
temporary folder.

    python examples/dashboard/serve.py [--port 8765] [--db tasks.db] [--open]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BRIDGE = ROOT / "bridge_js"
MiB = 1024 * 1024


def log(message: str) -> None:
    print(f"[dashboard] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Build


def _newest(paths: Iterator[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else -1.0


def _npm(args: list[str], cwd: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "serve.py: npm is needed to build the page (or build it first and pass --no-build)"
        )
    log(f"npm {' '.join(args)}  (in {cwd.relative_to(ROOT)})")
    subprocess.run([npm, *args], cwd=cwd, check=True)


def ensure_built() -> None:
    """Builds bridge_js/dist and dist/app.js when missing or older than their sources."""
    if not (BRIDGE / "node_modules").is_dir():
        _npm(["ci", "--no-audit", "--no-fund"], BRIDGE)
    if _mtime(BRIDGE / "dist" / "index.js") < _newest((BRIDGE / "src").glob("*.ts")):
        _npm(["run", "build"], BRIDGE)
    if not (HERE / "node_modules").is_dir():
        _npm(["ci", "--no-audit", "--no-fund"], HERE)
    sources = itertools.chain(
        (HERE / "src").glob("*.ts"), [HERE / "package.json"], (BRIDGE / "dist").glob("*.js")
    )
    if _mtime(HERE / "dist" / "app.js") < _newest(sources):
        _npm(["run", "build"], HERE)


# ---------------------------------------------------------------------------
# Static files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".map": "application/json",
    }

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_static_server(port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(HERE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, name="static-http", daemon=True).start()
    return server


# ---------------------------------------------------------------------------
# Sidecar over stdio


class SidecarError(RuntimeError):
    pass


class Sidecar:
    """The sidecar as a child process: JSON-RPC requests over its stdin/stdout."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first:
            code = self.proc.wait()
            raise SidecarError(
                f"the sidecar exited with code {code} before sidecar.ready (see its stderr above)"
            )
        message = json.loads(first)
        if message.get("method") != "sidecar.ready":
            raise SidecarError(f"expected sidecar.ready, got {first.strip()[:200]}")
        self.ready: dict[str, Any] = message["params"]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        threading.Thread(target=self._read, name="sidecar-stdout", daemon=True).start()

    def _read(self) -> None:
        """Reads every stdout line (so the pipe never fills) and hands answers to their callers."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._lock:
                waiter = self._waiting.pop(message.get("id"), None) if "id" in message else None
            if waiter is not None:
                waiter[1].append(message)
                waiter[0].set()

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15.0) -> Any:
        assert self.proc.stdin is not None
        request_id = next(self._ids)
        done = threading.Event()
        box: list[dict[str, Any]] = []
        with self._lock:
            self._waiting[request_id] = (done, box)
        self.proc.stdin.write(
            json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            )
            + "\n"
        )
        self.proc.stdin.flush()
        if not done.wait(timeout):
            raise SidecarError(f"{method}: no answer within {timeout} s")
        answer = box[0]
        if "error" in answer:
            raise SidecarError(
                f"{method}: {answer['error'].get('message')} ({answer['error'].get('code')})"
            )
        return answer["result"]

    def stop(self, timeout: float = 15.0) -> int:
        """Closes stdin (the sidecar drains and exits 0); kills it if it does not."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("the sidecar did not exit after stdin closed: killing it")
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def venv_python() -> str:
    for candidate in (ROOT / ".venv" / "bin" / "python", ROOT / ".venv" / "Scripts" / "python.exe"):
        if candidate.exists():
            return str(candidate)
    return sys.executable


# ---------------------------------------------------------------------------
# Demo data and workload


def make_files(root: Path) -> None:
    """A few real files for fs::scan to hash."""
    sizes = {
        "photos/beach.raw": 12 * MiB,
        "photos/city.raw": 8 * MiB,
        "photos/forest.raw": 6 * MiB,
        "docs/report.pdf": 3 * MiB,
        "archive/backup.bin": 24 * MiB,
    }
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (root / "docs" / "notes.txt").write_text(
        "taskmill dashboard demo files\n" * 200, encoding="utf-8"
    )


def initial_workload(files: Path) -> list[dict[str, Any]]:
    sleeps = [
        {
            "task_type": "demo::sleep",
            "payload": {"ms": 3000 + 800 * i, "steps": 20},
            "key": f"boot-render-{i}",
            "label": f"render {i + 1}/6",
            "group": "batch",
        }
        for i in range(6)
    ]
    return [
        *sleeps,
        {
            "task_type": "demo::fanout",
            "payload": {"children": 5, "child_ms": 2500},
            "key": "boot-fanout",
            "label": "fanout (5 children)",
        },
        {
            "task_type": "demo::io",
            "payload": {"read_bytes": 32 * MiB, "write_bytes": 32 * MiB},
            "key": "boot-io",
            "label": "disk io 32 MiB",
            "priority": "background",
            "expected_io": {"disk_read": 32 * MiB, "disk_write": 32 * MiB},
        },
        {
            "task_type": "fs::scan",
            "payload": {"root": str(files), "hash": True},
            "key": "boot-scan",
            "label": "scan + hash files",
        },
        {
            "task_type": "demo::fail",
            "payload": {"times": 2, "message": "flaky upstream (simulated)"},
            "key": "boot-flaky",
            "label": "flaky call",
            "retry": {"max_retries": 3, "backoff": "constant", "base_ms": 1500},
        },
        {
            "task_type": "demo::fail",
            "payload": {"times": -1, "message": "always fails (simulated)"},
            "key": "boot-doomed",
            "label": "doomed call",
            "retry": {"max_retries": 2, "backoff": "constant", "base_ms": 1000},
        },
        {
            "task_type": "demo::sleep",
            "payload": {"ms": 1500, "steps": 10},
            "key": "heartbeat",
            "label": "heartbeat",
            "priority": "background",
            "recurring": {"interval_ms": 5000},
        },
    ]


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Serve the taskmill live dashboard against a demo sidecar."
    )
    p.add_argument(
        "--port",
        type=int,
        default=0,
        help="port of the static page server (default: any free port)",
    )
    p.add_argument("--db", help="sidecar database (default: a temporary one)")
    p.add_argument(
        "--python",
        default=venv_python(),
        help="python that can run `-m taskmill` (default: the repo's .venv)",
    )
    p.add_argument("--max-concurrency", type=int, default=4)
    p.add_argument(
        "--exit-after",
        type=float,
        metavar="SECONDS",
        help="stop by itself after this long (scripted use)",
    )
    p.add_argument("--no-workload", action="store_true", help="do not submit the initial workload")
    p.add_argument(
        "--no-build", action="store_true", help="do not build dist/app.js, even if stale"
    )
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--log-level", default="warning", help="the sidecar's log level (its stderr)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_build:
        ensure_built()
    if not (HERE / "dist" / "app.js").exists():
        sys.exit(
            "serve.py: dist/app.js is missing: run `npm ci && npm run build` in examples/dashboard"
        )

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    workdir = Path(tempfile.mkdtemp(prefix="taskmill-dashboard-"))
    server: http.server.ThreadingHTTPServer | None = None
    sidecar: Sidecar | None = None
    try:
        files = workdir / "files"
        make_files(files)
        server = start_static_server(args.port)
        port = server.server_address[1]
        db = args.db or str(workdir / "tasks.db")
        sidecar = Sidecar(
            [
                args.python, "-m", "taskmill",
                "--stdio", "--ws", "--demo",
                "--fs-root", str(files),
                "--db", db,
                "--allow-origin", f"http://127.0.0.1:{port}",
                "--allow-origin", f"http://localhost:{port}",
                "--max-concurrency", str(args.max_concurrency),
                "--drain-timeout-ms", "1500",
                "--parent-pid", str(os.getpid()),
                "--log-level", args.log_level,
            ]
        )  # fmt: skip
        ws = sidecar.ready["transports"]["ws"]
        if not args.no_workload:
            outcomes = sidecar.call("task.submit_batch", {"tasks": initial_workload(files)})[
                "outcomes"
            ]
            log(f"submitted the initial workload: {len(outcomes)} tasks")
        query = urllib.parse.urlencode({"ws": ws["url"], "token": ws["token"]})
        url = f"http://127.0.0.1:{port}/index.html?{query}"
        print(f"dashboard: {url}", flush=True)
        print(f"sidecar:   pid {sidecar.ready['pid']}, {ws['url']}, db {db}", flush=True)
        print(
            "Ctrl-C to stop."
            if args.exit_after is None
            else f"Stopping after {args.exit_after:g} s.",
            flush=True,
        )
        if args.open:
            webbrowser.open(url)

        deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
        while not stop.wait(0.5):
            if sidecar.proc.poll() is not None:
                log(f"the sidecar exited on its own with code {sidecar.proc.returncode}")
                return 1
            if deadline is not None and time.monotonic() >= deadline:
                break
        return 0
    except SidecarError as error:
        log(str(error))
        return 1
    finally:
        if sidecar is not None:
            code = sidecar.stop()
            log(f"sidecar stopped (exit code {code})")
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
