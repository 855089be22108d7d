"""The sidecar process: scheduler, transports, readiness and shutdown.

Start-up: take the database's lock (a second sidecar exits with code 3),
open the database (migrate, recover), start the WebSocket server if asked,
write ``sidecar.ready`` as the first stdout line, then serve. Shutdown (stdin
EOF, SIGTERM/SIGINT/SIGHUP, ``sidecar.shutdown``, the parent process gone):
stop dispatching, emit ``shutdown``, drain running tasks up to the drain
timeout, put the rest back to pending, close the database, exit 0. The
:class:`~taskmill.server.lifeline.Lifeline` ends the process within the drain
timeout plus a grace period if task code keeps the loop from doing so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .._version import __version__
from ..config import ConfigError, FileConfig, parse_domain
from ..errors import DatabaseInUse, InvalidParams, StorageError
from ..protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, DecodedItem, LineDecoder
from ..protocol.messages import PROTOCOL_VERSION, notification
from ..protocol.params.session import ShutdownMode
from ..scheduler.config import SchedulerConfig
from ..scheduler.core import Scheduler
from ..scheduler.domain import Domain
from .api import HANDLERS
from .lifeline import Lifeline
from .session import Sessions
from .stdio import LineWriter, StdinReader
from .workers import WorkerPool
from .ws import DEFAULT_ORIGINS, ConnectionGate, start_ws_server

__all__ = ["Sidecar", "SidecarOptions"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_STARTUP = 2
#: Another scheduler holds the database (protocol section 9).
EXIT_IN_USE = 3


@dataclass(kw_only=True)
class SidecarOptions:
    """Everything the command line (merged with the config file) decides."""

    db_path: str
    stdio: bool = True
    ws: bool = False
    ws_host: str = "127.0.0.1"
    ws_port: int = 0
    allow_origins: Sequence[str] = ()
    parent_pid: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    domains: Sequence[Domain] = ()
    #: The token from TASKMILL_TOKEN, if the launcher set one.
    env_token: str | None = None
    #: Groups and rate limits declared by the config file.
    file_config: FileConfig | None = None


class Sidecar:
    """One running sidecar: the :class:`~taskmill.server.session.Host` of its
    sessions, which it builds with the method table of :mod:`.api`."""

    def __init__(
        self,
        options: SidecarOptions,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
    ) -> None:
        self.options = options
        self.scheduler = Scheduler(
            options.db_path, domains=list(options.domains), config=options.config
        )
        self.workers = WorkerPool(self.scheduler)
        self.scheduler.remote = self.workers
        self.token = options.env_token or secrets.token_urlsafe(32)
        self.sessions = Sessions(self, HANDLERS)
        self.ws_url: str | None = None
        self.closing = False
        self._stdin = stdin
        self._stdout = stdout
        self._shutdown: asyncio.Future[tuple[ShutdownMode, int | None]] | None = None
        self._writer: LineWriter | None = None
        self.lifeline: Lifeline | None = None
        #: The WebSocket connection gate, while serving WebSocket.
        self.ws_gate: ConnectionGate | None = None

    # -- what the methods need ---------------------------------------------

    def info(self) -> dict[str, Any]:
        with_workers = self.workers.types_with_workers()
        types = []
        for tt in sorted(self.scheduler.registry.all_types(), key=lambda t: t.qualified):
            if tt.executor is not None:
                where = "python"
            elif tt.qualified in with_workers:
                where = "worker"
            else:
                where = "none"
            types.append(
                {
                    "task_type": tt.qualified,
                    "domain": tt.domain,
                    "config": tt.config_dict(),
                    "executor": where,
                }
            )
        cfg = self.scheduler.config
        return {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "db_path": self.scheduler.path,
            "transports": self.transports(),
            "task_types": types,
            "config": {
                "max_concurrency": self.scheduler.max_concurrency,
                "max_retries": cfg.max_retries,
                "poll_interval_ms": cfg.poll_interval_ms,
                "drain_timeout_ms": cfg.drain_timeout_ms,
                "default_ttl_ms": cfg.default_ttl_ms,
                "preempt_priority": cfg.preempt_priority,
                "synchronous": cfg.synchronous,
                "resource_monitoring": self.scheduler.awareness.monitor is not None,
                "throttle": cfg.throttle.to_list(),
                "retention": {
                    "max_count": cfg.retention.max_count,
                    "max_age_ms": cfg.retention.max_age_ms,
                    "prune_interval": cfg.retention.prune_interval,
                },
            },
        }

    def transports(self) -> dict[str, Any]:
        ws: dict[str, Any] | None = None
        if self.ws_url is not None:
            ws = {
                "url": self.ws_url,
                "token": None if self.options.env_token else self.token,
            }
        return {"stdio": self.options.stdio, "ws": ws}

    def declare_type(self, task_type: str, config: Mapping[str, Any], source: str) -> None:
        """Declare a type from a worker's inline declaration (config-file schema)."""
        name = task_type.partition("::")[2]
        domain_name = task_type.partition("::")[0]
        try:
            declared = parse_domain(domain_name, {"types": {name: dict(config)}})
        except ConfigError as exc:
            raise InvalidParams(f"task_types: {exc}", field="task_types") from exc
        tt = declared.types[name]
        existing = self.scheduler.registry.find(task_type)
        if existing is not None and existing.executor is not None:
            raise InvalidParams(
                f"task type {task_type!r} already has an executor in the sidecar",
                field="task_types",
            )
        tt.source = source
        self.scheduler.registry.domain(domain_name, create=True).types[name] = tt

    def request_shutdown(
        self, mode: ShutdownMode = "graceful", timeout_ms: int | None = None
    ) -> None:
        """Begin shutting down (idempotent). Runs on the event loop."""
        if self._shutdown is not None and not self._shutdown.done():
            self._shutdown.set_result((mode, timeout_ms))
            if self.lifeline is not None:
                self.lifeline.arm(mode, None if timeout_ms is None else timeout_ms / 1000)

    # -- running -------------------------------------------------------------

    async def run(self) -> int:
        """Serve until shutdown; returns the process exit code."""
        loop = asyncio.get_running_loop()
        self._shutdown = loop.create_future()
        out = self._stdout or sys.stdout.buffer
        try:
            await self.scheduler.start()
        except DatabaseInUse as exc:
            print(f"taskmill-sidecar: {exc.message}", file=sys.stderr, flush=True)
            return EXIT_IN_USE
        except StorageError as exc:
            reason = exc.message
            if self.scheduler.path not in reason:
                reason = f"{self.scheduler.path}: {reason}"
            print(f"taskmill-sidecar: {reason}", file=sys.stderr, flush=True)
            return EXIT_STARTUP
        self._apply_file_config()
        await self._restore_worker_types()
        server = None
        try:
            if self.options.ws:
                server, self.ws_url, self.ws_gate = await start_ws_server(
                    self.sessions,
                    self.options.ws_host,
                    self.options.ws_port,
                    [*DEFAULT_ORIGINS, *self.options.allow_origins],
                    self.options.max_message_bytes,
                )
        except OSError as exc:
            print(f"taskmill-sidecar: cannot listen for WebSocket: {exc}", file=sys.stderr)
            await self.scheduler.shutdown("hard")
            return EXIT_STARTUP
        if self.scheduler.lock is not None:
            self.scheduler.lock.describe(
                ws=self.ws_url, token=self.token if self.ws_url is not None else None
            )
        # Signals and the watchdog are in place before the ready line, so a
        # launcher that acts on it at once cannot race them.
        self.lifeline = lifeline = Lifeline(
            call_on_loop=loop.call_soon_threadsafe,
            request_shutdown=self.request_shutdown,
            rescue=self.scheduler.rescue_running,
            drain_timeout_s=self.scheduler.config.drain_timeout_ms / 1000,
        )
        if threading.current_thread() is threading.main_thread():
            lifeline.install_signals()
        if self.options.parent_pid is not None:
            lifeline.watch_parent(self.options.parent_pid)
        self._writer = LineWriter(out, loop)
        self._writer.send(notification("sidecar.ready", self._ready_params()))
        if self.options.stdio:
            self._serve_stdio(loop)
        elif self._stdin is None and _is_pipe(sys.stdin):
            # Served over WebSocket only, but launched with a pipe on stdin:
            # its end of file still means the parent is gone.
            StdinReader(
                sys.stdin.buffer,
                loop,
                lambda _data: None,
                lambda: None,
                on_eof_thread=self._stdin_closed,
            ).start()
        mode, timeout_ms = await self._shutdown
        log.info("shutting down (%s)", mode)
        self.closing = True
        await self.scheduler.shutdown(mode, timeout_ms)
        for session in self.sessions:
            await session.close()
        if server is not None:
            server.close()
            try:
                async with asyncio.timeout(2):
                    await server.wait_closed()
            except TimeoutError:
                log.warning("WebSocket connections did not close in time")
        await asyncio.to_thread(self._writer.flush_and_stop)
        lifeline.finished.set()
        return EXIT_OK

    def _stdin_closed(self) -> None:
        """From the stdin thread: the parent is gone, even if the loop is blocked."""
        if self.lifeline is not None:
            self.lifeline.begin("graceful", "stdin closed")

    def _apply_file_config(self) -> None:
        fc = self.options.file_config
        if fc is None:
            return
        sched = self.scheduler
        for group, g in fc.groups.items():
            if g.limit is not None:
                sched.set_group_limit(group, g.limit)
            if g.weight is not None:
                sched.policy.group_weights[group] = g.weight
            if g.min_slots is not None:
                sched.set_group_min_slots(group, g.min_slots)
        for task_type, r in fc.rate_limits.items():
            sched.set_rate_limit(task_type=task_type, per_second=r.per_second, burst=r.burst)
        for group, r in fc.group_rate_limits.items():
            sched.set_rate_limit(group=group, per_second=r.per_second, burst=r.burst)

    async def _restore_worker_types(self) -> None:
        """Declare again the types workers declared inline before a restart, so
        their queued tasks wait for a worker instead of failing."""
        registry = self.scheduler.registry
        for task_type, config in await self.scheduler.remembered_worker_types():
            if registry.find(task_type) is not None:
                continue  # declared by the config file or Python code now
            if await self.scheduler.forget_worker_type(task_type):
                continue  # nothing of it is queued: it left with its worker
            try:
                self.declare_type(task_type, config, source="worker")
            except InvalidParams as exc:
                log.warning("cannot restore worker type %s: %s", task_type, exc)

    def _ready_params(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "version": __version__,
            "pid": os.getpid(),
            "transports": self.transports(),
            "db_path": self.scheduler.path,
            "task_types": sorted(t.qualified for t in self.scheduler.registry.all_types()),
        }

    def _serve_stdio(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._writer is not None
        session = self.sessions.open(self._writer, transport="stdio", authenticated=True)
        self._writer.on_writable = session.writable
        # The decoder runs on the reader thread (only there): JSON decoding of a
        # big line does not hold the event loop.
        decoder = LineDecoder(self.options.max_message_bytes)

        def on_items(items: list[DecodedItem]) -> None:
            for item in items:
                session.receive(item)

        def on_eof() -> None:
            for item in decoder.finish():
                session.receive(item)
            log.info("stdin closed: the parent is gone")
            self.request_shutdown("graceful")

        StdinReader(
            self._stdin or sys.stdin.buffer,
            loop,
            on_items,
            on_eof,
            on_eof_thread=self._stdin_closed if self._stdin is None else None,
            parse=decoder.feed,
        ).start()


def _is_pipe(stream: Any) -> bool:
    """True for a pipe or socket (a launcher's), false for a TTY, a file or /dev/null."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
