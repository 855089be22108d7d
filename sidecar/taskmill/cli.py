"""The ``taskmill-sidecar`` command (and ``python -m taskmill``).

::

    taskmill-sidecar [--db PATH] [--stdio] [--ws] [--ws-host H] [--ws-port P]
                     [--allow-origin O]... [--config FILE] [--app MODULE:ATTR]...
                     [--demo] [--max-concurrency N] [--drain-timeout-ms N]
                     [--parent-pid PID] [--log-level L] [--log-file PATH]

With neither ``--stdio`` nor ``--ws``, stdio is served. A flag given on the
command line wins over the same setting in ``--config``. Exit codes: 0 after
a clean shutdown, 2 when start-up fails (bad flags or config, a database that
cannot be opened), 3 when another scheduler holds the database, 1 on an
unexpected error.

``--check`` loads the config and every app module (``--app``, the config's
``[app] modules`` and those frozen into the binary by ``build/build.py
--app``), prints the task types on stdout and exits 0, or 2 with the reason
on stderr; it opens no database. ``--help`` and ``--version`` print on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._version import __version__
from .config import ConfigError, FileConfig, load_config
from .protocol.codec import DEFAULT_MAX_MESSAGE_BYTES
from .scheduler.config import SchedulerConfig
from .scheduler.domain import Domain
from .server.app import EXIT_ERROR, EXIT_STARTUP, Sidecar, SidecarOptions

__all__ = [
    "RepeatFilter",
    "StartupError",
    "build_options",
    "build_parser",
    "bundled_apps",
    "check",
    "default_db_path",
    "load_apps",
    "main",
    "raise_fd_limit",
    "setup_logging",
    "share_the_gil",
]

log = logging.getLogger("taskmill")


def default_db_path() -> str:
    """``tasks.db`` in the platform's per-user data directory."""
    import platformdirs

    folder = Path(platformdirs.user_data_dir("taskmill", appauthor=False))
    return str(folder / "tasks.db")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskmill-sidecar",
        description="The taskmill sidecar: a persistent task scheduler spoken to over "
        "JSON-RPC on stdio (JSON lines) and WebSocket (MessagePack or JSON).",
    )
    p.add_argument("--db", metavar="PATH", help="database file (default: per-user data dir)")
    p.add_argument("--stdio", action="store_true", help="serve JSON lines on stdin/stdout")
    p.add_argument("--ws", action="store_true", help="serve WebSocket on 127.0.0.1")
    p.add_argument("--ws-host", default="127.0.0.1", metavar="H", help="WebSocket bind address")
    p.add_argument("--ws-port", type=int, default=0, metavar="P", help="0 = any free port")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="O",
        help="an extra browser Origin allowed to connect (repeatable)",
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="load Python domains from MODULE:ATTR (repeatable)",
    )
    p.add_argument(
        "--app-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder to import --app modules from (repeatable)",
    )
    p.add_argument("--demo", action="store_true", help="declare the demo domain")
    p.add_argument(
        "--fs-root",
        action="append",
        default=[],
        metavar="DIR",
        help="enable the fs domain, confined to DIR (repeatable)",
    )
    p.add_argument("--max-concurrency", type=int, metavar="N")
    p.add_argument("--drain-timeout-ms", type=int, metavar="N")
    p.add_argument(
        "--parent-pid", type=int, metavar="PID", help="shut down when this process is gone"
    )
    p.add_argument(
        "--no-resource-monitoring",
        action="store_true",
        help="do not watch disk, network, memory and battery",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="N",
        help="largest message accepted (default 4 MiB)",
    )
    p.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error", "critical"]
    )
    p.add_argument(
        "--log-file",
        metavar="PATH",
        help="append logs to PATH instead of stderr (for hosts that do not keep stderr)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="load the config and the app modules, print the task types and exit "
        "(0, or 2 naming what failed); opens no database",
    )
    p.add_argument("--version", action="version", version=f"taskmill {__version__}")
    return p


#: Written into a frozen sidecar by build/build.py --app: {"apps": ["MODULE:ATTR", ...]}.
BUNDLED_APPS_FILE = "bundled_apps.json"


def bundled_apps() -> list[str]:
    """The ``--app`` specs frozen into this binary (``build/build.py --app``).

    A frozen sidecar loads them on every start, so its command line needs no
    ``--app``. Unfrozen (``python -m taskmill``) there are none.
    """
    if not getattr(sys, "frozen", False):
        return []
    try:
        data = json.loads((Path(__file__).resolve().parent / BUNDLED_APPS_FILE).read_text())
    except (OSError, ValueError):
        return []
    apps = data.get("apps", []) if isinstance(data, dict) else []
    return [str(a) for a in apps]


def setup_logging(level: str, path: str | None = None) -> None:
    """The sidecar's logs: stderr (or ``path``), repeats held back, and the
    libraries' chatter (aiosqlite logs every statement at debug) kept out."""
    handler: logging.Handler
    if path:
        try:
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            print(f"taskmill-sidecar: --log-file {path}: {exc.strerror}", file=sys.stderr)
            sys.exit(EXIT_STARTUP)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    for noisy in ("aiosqlite", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.root.level))


class RepeatFilter(logging.Filter):
    """Lets a log message through at most once per interval (per logger and
    message template); the next one that passes says how many were held back.

    A flood (connections refused for want of descriptors, say) must not turn
    into hundreds of thousands of stderr lines.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, object, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # A record may say what makes it distinct (a task failure: its type
        # and error), so different failures are all shown.
        key = (record.name, record.msg, getattr(record, "repeat_key", None))
        now = record.created
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} ({seen[1]} more like it in {self.interval_s:g} s)"
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        return True


def raise_fd_limit(cap: int = 65536) -> None:
    """Raise the soft limit on open files to the hard limit (at most ``cap``).

    macOS starts programs at 256 and Linux desktops at 1,024: with WebSocket
    clients and the fs executors' files, that is too few to keep headroom.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    for value in (target, min(target, 10240)):  # macOS refuses above OPEN_MAX
        if soft >= value:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
            return
        except (ValueError, OSError):
            continue


#: How long a thread holds the GIL before a waiting one may take it (CPython's
#: default is 5 ms).
SWITCH_INTERVAL_S = 0.001


def share_the_gil(interval_s: float = SWITCH_INTERVAL_S) -> None:
    """Let a thread waiting for the GIL have it after ``interval_s``.

    The sidecar owns its process, and its event loop shares the GIL with the
    database thread and the threads of plain ``def`` executors. A thread of
    CPU-bound task code held the loop off for the whole default 5 ms at a
    time: with two such threads, the loop woke 9.5 ms late at the median and
    45 ms at p99; at 1 ms, 2.5 and 16 ms. The database thread gets the GIL
    back sooner after each SQLite call, too (no-op tasks at concurrency 1:
    about 10% more a second).
    """
    sys.setswitchinterval(interval_s)


class StartupError(Exception):
    """A problem found before serving: one line on stderr, exit 2."""


def load_apps(specs: Iterable[str], paths: Iterable[str]) -> list[Domain]:
    """Import ``MODULE:ATTR`` specs; ATTR is a Domain, a list of them, or a factory."""
    for folder in paths:
        sys.path.insert(0, os.path.abspath(folder))
    domains: list[Domain] = []
    for spec in specs:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise StartupError(f"--app {spec!r}: expected MODULE:ATTR")
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:  # an app module may call sys.exit()
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, SystemExit) else str(exc)
            raise StartupError(f"--app {spec!r}: cannot import {module_name}: {why}") from exc
        try:
            target: Any = module
            for part in attr.split("."):
                target = getattr(target, part)
        except AttributeError as exc:
            raise StartupError(f"--app {spec!r}: {module_name} has no {attr}") from exc
        if callable(target) and not isinstance(target, Domain):
            target = target()
        found = [target] if isinstance(target, Domain) else list(target)
        for d in found:
            if not isinstance(d, Domain):
                raise StartupError(f"--app {spec!r}: {attr} gave {d!r}, not a taskmill Domain")
        domains.extend(found)
    return domains


def build_options(args: argparse.Namespace, *, create_dirs: bool = True) -> SidecarOptions:
    """Merge flags, config file and built-ins into sidecar options.

    ``create_dirs=False`` (``--check``) leaves the default database's folder alone.
    """
    file_cfg = FileConfig()
    if args.config:
        try:
            file_cfg = load_config(args.config)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
    # Every [scheduler] key the file validated is a SchedulerConfig field of the
    # same name (tests/unit/test_config.py holds the two to that).
    overrides: dict[str, Any] = dict(file_cfg.scheduler)
    if file_cfg.retention is not None:
        overrides["retention"] = file_cfg.retention
    if file_cfg.aging is not None:
        from .scheduler.aging import AgingConfig

        try:
            overrides["aging"] = AgingConfig(**file_cfg.aging)
        except Exception as exc:
            raise StartupError(f"scheduler.aging: {exc}") from exc
    # The sidecar watches the machine unless told not to.
    overrides.setdefault("resource_monitoring", True)
    if args.no_resource_monitoring:
        overrides["resource_monitoring"] = False
    if args.max_concurrency is not None:
        if args.max_concurrency < 0:
            raise StartupError("--max-concurrency must be >= 0")
        overrides["max_concurrency"] = args.max_concurrency
    if args.drain_timeout_ms is not None:
        if args.drain_timeout_ms < 0:
            raise StartupError("--drain-timeout-ms must be >= 0")
        overrides["drain_timeout_ms"] = args.drain_timeout_ms
    try:
        config = SchedulerConfig(**overrides)
    except Exception as exc:
        raise StartupError(f"config: {exc}") from exc

    domains: list[Domain] = list(file_cfg.domains)
    # Frozen-in apps, then the config's [app] modules, then --app; each once.
    specs = list(dict.fromkeys([*bundled_apps(), *file_cfg.app_modules, *args.app]))
    domains += load_apps(specs, [*file_cfg.app_paths, *args.app_path])
    if args.demo:
        from .builtins.demo import demo_domain

        domains.append(demo_domain())
    if args.fs_root:
        from .builtins.fs import fs_domain

        for root in args.fs_root:
            if not os.path.isdir(root):
                raise StartupError(f"--fs-root {root!r} is not a folder")
        domains.append(fs_domain(args.fs_root))
    if args.ws_port < 0 or args.ws_port > 65535:
        raise StartupError("--ws-port must be within 0..65535")
    if args.max_message_bytes < 1024:
        raise StartupError("--max-message-bytes must be at least 1024")

    db_path = args.db or default_db_path()
    if not args.db and create_dirs:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    serve_ws = bool(args.ws)
    serve_stdio = bool(args.stdio) or not serve_ws
    return SidecarOptions(
        db_path=db_path,
        stdio=serve_stdio,
        ws=serve_ws,
        ws_host=args.ws_host,
        ws_port=args.ws_port,
        allow_origins=args.allow_origin,
        parent_pid=args.parent_pid,
        max_message_bytes=args.max_message_bytes,
        config=config,
        domains=domains,
        env_token=os.environ.get("TASKMILL_TOKEN") or None,
        file_config=file_cfg,
    )


def check(args: argparse.Namespace) -> int:
    """``--check``: load everything a start would load except the database."""
    try:
        options = build_options(args, create_dirs=False)
    except StartupError as exc:
        print(f"taskmill-sidecar: {exc}", file=sys.stderr, flush=True)
        return EXIT_STARTUP
    types = sorted(f"{d.name}::{name}" for d in options.domains for name in d.types)
    print(f"taskmill-sidecar: ok, {len(types)} task types: {', '.join(types) or '-'}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Run the sidecar; exits the process with its exit code.

    ``taskmill-sidecar inspect ...`` is the queue inspector instead
    (:mod:`taskmill.inspector`).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["inspect"]:
        from . import inspector

        sys.exit(inspector.main(argv[1:], default_db_path))
    # --help and --version print on stdout, before it is reserved for the protocol.
    args = build_parser().parse_args(argv)
    if args.check:
        sys.exit(check(args))
    # stdout carries protocol messages only: keep the real pipe for the
    # protocol and send anything printed (by app code, say) to stderr.
    proto_out = sys.stdout.buffer
    sys.stdout = sys.stderr
    setup_logging(args.log_level, args.log_file)
    raise_fd_limit()
    share_the_gil()
    try:
        options = build_options(args)
    except StartupError as exc:
        print(f"taskmill-sidecar: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_STARTUP)
    code = EXIT_ERROR
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(Sidecar(options, stdout=proto_out).run())
    except KeyboardInterrupt:  # Ctrl-C before the handlers were in place
        code = 0
    except BaseException:  # whatever escapes, the exit is ours
        log.exception("the sidecar stopped on an unexpected error")
        code = EXIT_ERROR
    finally:
        # Leave directly with the exit code, whatever escaped: asyncio.run's
        # clean-up would wait for executions that ignore cancellation and for
        # executor threads that never return, and the stdin reader is a thread
        # blocked in read() that can abort a finalizing interpreter. The
        # database is closed and stdout flushed by now.
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)
