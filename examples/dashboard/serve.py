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
   recurring heartbeat), then keeps a steady, varied trickle going for as long
   as it runs (``LiveWorkload``: about one task a second, held back while
   more than a dozen wait, with IO, retries, dead letters and a realtime task
   that preempts every half minute or so);
5. prints the page URL, with the WebSocket URL and token in its query string,
   opens it with ``--open``, and runs until Ctrl-C, SIGTERM or
   ``--exit-after SECONDS``.

Stopping closes the sidecar's stdin (it drains and exits), prints one
``workload: {...}`` JSON line on stdout (what was submitted and what
happened), and removes the temporary folder.

    python examples/dashboard/serve.py [--port 8765] [--db tasks.db] [--open]
                                       [--workload steady|initial|none] [--no-page]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import webbrowser
from collections import Counter
from collections.abc import Callable, Iterator
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

    def __init__(
        self, argv: list[str], on_event: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.on_event = on_event
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
            if message.get("method") == "event" and self.on_event is not None:
                self.on_event(message["params"])
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
        HEARTBEAT,
    ]


class LiveWorkload:
    """A steady, varied trickle of work for as long as the demo runs.

    About one task a second (sleeps with progress, some in group ``batch``;
    disk IO; hashing a file; fanouts; flaky tasks that fail and retry; now and
    then one that dead-letters), held back while more than ``queue_target``
    tasks wait, so the queue stays short and the dashboard moves instead of
    filling up. Every 25-40 s (the first after about 8 s), once every slot is
    busy, a realtime task arrives and preempts one. The recurring heartbeat
    from the initial workload is resubmitted if someone cancelled it.
    Counts what it submitted and the events it saw, for :meth:`report`.
    """

    def __init__(
        self,
        sidecar: Sidecar,
        files: list[Path],
        *,
        max_concurrency: int,
        seed: int | None = None,
        queue_target: int = 12,
    ) -> None:
        self.sidecar = sidecar
        self.files = files
        self.max_concurrency = max_concurrency
        self.queue_target = queue_target
        self.rng = random.Random(seed)
        self.submitted: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.retries = 0
        self.started = time.monotonic()
        self.last_submit = self.started
        self._n = 0
        self._lock = threading.Lock()

    def on_event(self, event: dict[str, Any]) -> None:
        """Called from the sidecar's reader thread for every event."""
        with self._lock:
            self.events[event.get("kind", "?")] += 1
            if event.get("kind") == "failed" and event.get("will_retry"):
                self.retries += 1

    def _task(self, kind: str) -> dict[str, Any]:
        self._n += 1
        n, rng = self._n, self.rng
        key = f"live-{kind}-{n}"
        if kind == "sleep":
            grouped = rng.random() < 0.5
            return {
                "task_type": "demo::sleep",
                "payload": {"ms": rng.randrange(1500, 6000, 250), "steps": 20},
                "key": key,
                "label": f"render #{n}",
                "priority": rng.choice(["normal", "normal", "background", "high"]),
                **({"group": "batch"} if grouped else {}),
            }
        if kind == "io":
            size = rng.choice([2, 4, 8, 16]) * MiB
            return {
                "task_type": "demo::io",
                "payload": {"read_bytes": size, "write_bytes": size},
                "key": key,
                "label": f"disk io {size // MiB} MiB #{n}",
                "priority": "background",
                "expected_io": {"disk_read": size, "disk_write": size},
            }
        if kind == "hash":
            path = rng.choice(self.files)
            return {
                "task_type": "fs::hash",
                "payload": {"path": str(path)},
                "key": key,
                "label": f"hash {path.name} #{n}",
            }
        if kind == "fanout":
            return {
                "task_type": "demo::fanout",
                "payload": {
                    "children": rng.randint(2, 4),
                    "child_ms": rng.randrange(800, 2000, 100),
                },
                "key": key,
                "label": f"fanout #{n}",
            }
        if kind == "flaky":
            return {
                "task_type": "demo::fail",
                "payload": {"times": rng.randint(1, 2), "message": "flaky upstream (simulated)"},
                "key": key,
                "label": f"flaky call #{n}",
                "retry": {"max_retries": 3, "backoff": "constant", "base_ms": 1000},
            }
        if kind == "doomed":
            return {
                "task_type": "demo::fail",
                "payload": {"times": -1, "message": "always fails (simulated)"},
                "key": key,
                "label": f"doomed call #{n}",
                "retry": {"max_retries": 1, "backoff": "constant", "base_ms": 800},
            }
        if kind == "realtime":
            return {
                "task_type": "demo::sleep",
                "payload": {"ms": 1500, "steps": 10},
                "key": key,
                "label": f"user clicked #{n} (realtime)",
                "priority": "realtime",
            }
        raise ValueError(kind)

    KINDS = ("sleep", "io", "hash", "fanout", "flaky", "doomed")
    WEIGHTS = (8, 2, 1.5, 1, 1.5, 0.4)

    def _submit(self, kind: str) -> None:
        self.sidecar.call("task.submit", self._task(kind))
        self.submitted[kind] += 1
        self.last_submit = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Submit until ``stop`` is set (a thread's target)."""
        next_preempt = time.monotonic() + 8
        next_heartbeat = time.monotonic() + 30
        while not stop.wait(self.rng.uniform(0.5, 1.1)):
            try:
                gauges = self.sidecar.call("scheduler.metrics")["gauges"]
                queued = gauges["pending"] + gauges["paused"] + gauges["blocked"]
                now = time.monotonic()
                if now >= next_preempt and gauges["running"] >= self.max_concurrency:
                    self._submit("realtime")
                    next_preempt = now + self.rng.uniform(25, 40)
                elif queued < self.queue_target:
                    self._submit(self.rng.choices(self.KINDS, self.WEIGHTS)[0])
                if now >= next_heartbeat:  # a duplicate while the schedule lives
                    self.sidecar.call("task.submit", HEARTBEAT)
                    next_heartbeat = now + 30
            except SidecarError as error:
                if stop.is_set() or self.sidecar.proc.poll() is not None:
                    return
                log(f"live workload: {error}")

    def report(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        total = sum(self.submitted.values())
        with self._lock:
            events = dict(sorted(self.events.items()))
            retries = self.retries
        return {
            "seconds": round(seconds, 1),
            "submitted": total,
            "per_second": round(total / seconds, 2) if seconds > 0 else 0.0,
            "seconds_since_last_submit": round(time.monotonic() - self.last_submit, 1),
            "kinds": dict(sorted(self.submitted.items())),
            "events": events,
            "retries": retries,
        }


#: What the live workload counts (its report), over the stdio connection.
LIVE_EVENT_KINDS = (
    "completed",
    "failed",
    "dead_lettered",
    "preempted",
    "recurring_completed",
    "cancelled",
)

HEARTBEAT: dict[str, Any] = {
    "task_type": "demo::sleep",
    "payload": {"ms": 1500, "steps": 10},
    "key": "heartbeat",
    "label": "heartbeat",
    "priority": "background",
    "recurring": {"interval_ms": 5000},
}


def display_available() -> bool:
    """Whether a browser window can be opened here (macOS, Windows, or X11/Wayland)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
    p.add_argument(
        "--workload",
        choices=["steady", "initial", "none"],
        default="steady",
        help="steady (default): the initial burst, then a trickle for as long as it runs; "
        "initial: the burst only; none: nothing",
    )
    p.add_argument(
        "--no-workload", action="store_const", const="none", dest="workload", help="--workload none"
    )
    p.add_argument("--seed", type=int, help="seed of the steady workload's choices")
    p.add_argument(
        "--no-build", action="store_true", help="do not build dist/app.js, even if stale"
    )
    p.add_argument(
        "--no-page", action="store_true", help="no page server: the sidecar and its workload only"
    )
    p.add_argument(
        "--open",
        nargs="?",
        const="always",
        choices=["always", "auto"],
        help="open the page in the default browser (auto: only when a display is present)",
    )
    p.add_argument("--log-level", default="warning", help="the sidecar's log level (its stderr)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_build and not args.no_page:
        ensure_built()
    if not args.no_page and not (HERE / "dist" / "app.js").exists():
        sys.exit(
            "serve.py: dist/app.js is missing: run `npm ci && npm run build` in examples/dashboard"
        )

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    workdir = Path(tempfile.mkdtemp(prefix="taskmill-dashboard-"))
    server: http.server.ThreadingHTTPServer | None = None
    sidecar: Sidecar | None = None
    live: LiveWorkload | None = None
    feeder: threading.Thread | None = None
    try:
        files = workdir / "files"
        make_files(files)
        port = args.port
        if not args.no_page:
            server = start_static_server(args.port)
            port = server.server_address[1]
        db = args.db or str(workdir / "tasks.db")
        events: list[Callable[[dict[str, Any]], None]] = []
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
            ],
            on_event=lambda event: [handle(event) for handle in events],
        )  # fmt: skip
        ws = sidecar.ready["transports"]["ws"]
        if args.workload == "steady":
            live = LiveWorkload(
                sidecar,
                sorted(p for p in files.rglob("*") if p.is_file()),
                max_concurrency=args.max_concurrency,
                seed=args.seed,
            )
            events.append(live.on_event)
            sidecar.call("events.subscribe", {"filter": {"kinds": list(LIVE_EVENT_KINDS)}})
        if args.workload != "none":
            outcomes = sidecar.call("task.submit_batch", {"tasks": initial_workload(files)})[
                "outcomes"
            ]
            log(f"submitted the initial workload: {len(outcomes)} tasks")
        if live is not None:
            feeder = threading.Thread(target=live.run, args=(stop,), name="live-workload")
            feeder.start()
            log("then a steady trickle of work, about a task a second (--workload initial: none)")
        query = urllib.parse.urlencode({"ws": ws["url"], "token": ws["token"]})
        url = f"http://127.0.0.1:{port}/index.html?{query}"
        if not args.no_page:
            print(f"dashboard: {url}", flush=True)
        print(f"sidecar:   pid {sidecar.ready['pid']}, {ws['url']}, db {db}", flush=True)
        print(
            "Ctrl-C to stop."
            if args.exit_after is None
            else f"Stopping after {args.exit_after:g} s.",
            flush=True,
        )
        wants_browser = args.open == "always" or (args.open == "auto" and display_available())
        if wants_browser and not args.no_page and not webbrowser.open(url):
            log("could not open a browser: open the URL above")

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
        stop.set()
        if feeder is not None:
            feeder.join(timeout=20)
        if sidecar is not None:
            code = sidecar.stop()
            log(f"sidecar stopped (exit code {code})")
        if live is not None:
            print(f"workload: {json.dumps(live.report())}", flush=True)
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
