"""One client connection: requests in, responses and events out.

A session is transport-agnostic: the stdio and WebSocket transports feed it
decoded items and give it an :class:`Outbound` to write to. It answers each
request in its own task (answers may come out of order; ids correlate),
delivers the events of its subscriptions while the transport keeps up (a
client that reads slowly fills its subscription buffers and gets ``lagged``;
it never slows the scheduler), and carries the requests the sidecar sends to
the client's remote workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .._version import __version__
from ..errors import (
    InternalError,
    InvalidParams,
    LimitExceeded,
    ShuttingDown,
    TaskmillError,
    Unauthorized,
    UnknownTaskType,
)
from ..filters import EventFilter
from ..memory import no_cyclic_gc
from ..protocol.codec import Decoded, DecodedItem
from ..protocol.messages import (
    ErrorResponse,
    Notification,
    Request,
    Response,
    error_message,
    parse_message,
    request,
    request_id_of,
    result_message,
)
from ..protocol.methods import (
    PROTOCOL_VERSION,
    SessionHelloParams,
    WorkerIoParams,
    WorkerProgressParams,
    WorkerRegisterParams,
    parse_params,
    parse_steps,
)
from ..scheduler.events import Subscription
from . import api

if TYPE_CHECKING:
    from .app import Sidecar

__all__ = ["Outbound", "Session"]

log = logging.getLogger(__name__)

#: Stop pulling events for a client when this many messages wait to be written.
HIGH_WATER = 256
#: Events buffered per subscription before the overflow becomes ``lagged``.
SUBSCRIPTION_BUFFER = 1024
#: Close code when a WebSocket client fails authentication.
CLOSE_UNAUTHORIZED = 4401

# Per-connection limits (docs/security.md); past one, a request answers
# -32008 limit_exceeded with data.limit and data.max. Each is far above what
# an app needs and far below what hurts other clients.
#: Subscriptions open at once (each buffers up to SUBSCRIPTION_BUFFER events).
MAX_SUBSCRIPTIONS = 1_000
#: Task types served by the connection's workers together.
MAX_WORKER_TYPES = 1_000
#: Requests being handled at once (a pipelining client waits for answers).
MAX_IN_FLIGHT = 1_024


class Outbound(Protocol):
    """Where a session writes: a stdout pipe or a WebSocket."""

    def send(self, msg: Mapping[str, Any]) -> None:
        """Encode and queue one message."""
        ...

    def backlog(self) -> int:
        """Messages queued but not yet written."""
        ...

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (after what is queued, where possible)."""
        ...


class Session:
    """A client connection's state: auth, subscriptions, workers, calls."""

    def __init__(self, app: Sidecar, out: Outbound, *, transport: str, authenticated: bool) -> None:
        self.app = app
        self.out = out
        self.transport = transport
        self.authenticated = authenticated
        self.id = secrets.token_hex(6)
        self.client: str | None = None
        self.subscriptions: dict[int, Subscription] = {}
        self._calls: dict[str, asyncio.Future[Response | ErrorResponse]] = {}
        self._call_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Subscriptions with events to deliver, in the order they got some.
        self._ready: dict[int, Subscription] = {}
        self._pump_scheduled = False
        self.closed = False
        #: Called once when ``session.hello`` succeeds (the transport lifts its
        #: pre-hello limits).
        self.on_authenticated: Callable[[], None] | None = None

    # -- input -----------------------------------------------------------

    def receive(self, item: DecodedItem) -> None:
        """Handle one decoded item from the transport."""
        if self.closed:
            return
        if not isinstance(item, Decoded):
            self.out.send(error_message(None, item.error))
            return
        try:
            msg = parse_message(item.value)
        except TaskmillError as exc:
            self.out.send(error_message(request_id_of(item.value), exc))
            return
        if isinstance(msg, Request):
            if not self.authenticated and msg.method != "session.hello":
                self.out.send(
                    error_message(msg.id, Unauthorized("send session.hello with the token first"))
                )
                self.out.close(CLOSE_UNAUTHORIZED, "unauthorized")
                return
            if len(self._tasks) >= MAX_IN_FLIGHT:
                busy = LimitExceeded(
                    "requests_in_flight",
                    MAX_IN_FLIGHT,
                    f"{MAX_IN_FLIGHT} requests of this connection are being handled; "
                    "wait for answers before sending more",
                )
                self.out.send(error_message(msg.id, busy))
                return
            self._spawn(self._handle_request(msg))
        elif isinstance(msg, Notification):
            self._handle_notification(msg)
        else:
            fut = self._calls.pop(str(msg.id), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_request(self, req: Request) -> None:
        try:
            with contextlib.ExitStack() as stack:
                steps = parse_steps(req.method, req.params)
                big = False
                while True:
                    try:
                        next(steps)
                    except StopIteration as done:
                        params = done.value
                        break
                    if not big:  # a long batch
                        big = True
                        stack.enter_context(no_cyclic_gc())
                    await asyncio.sleep(0)  # let other clients in
                fn = api.find(req.method)
                if self.app.closing and req.method not in ("session.hello", "sidecar.info"):
                    raise ShuttingDown("the sidecar is shutting down")
                result = await fn(self, params)
        except TaskmillError as exc:
            reply = error_message(req.id, exc)
        except Exception:
            log.exception("internal error in %s", req.method)
            reply = error_message(req.id, InternalError(f"internal error in {req.method}"))
        else:
            reply = result_message(req.id, result)
        if not self.closed:
            self.out.send(reply)
            if isinstance(reply.get("error"), dict) and not self.authenticated:
                # A failed hello on an unauthenticated connection ends it.
                self.out.close(CLOSE_UNAUTHORIZED, "unauthorized")

    def _handle_notification(self, msg: Notification) -> None:
        try:
            params = parse_params(msg.method, msg.params)
        except TaskmillError as exc:
            log.debug("ignoring notification %s: %s", msg.method, exc)
            return
        if isinstance(params, WorkerProgressParams):
            ctx = self.app.workers.find_run(self, params.task_id)
            if ctx is not None:
                ctx.progress.report(params.percent, params.message)
        elif isinstance(params, WorkerIoParams):
            ctx = self.app.workers.find_run(self, params.task_id)
            if ctx is not None:
                io = params.io
                ctx.record_read_bytes(io.disk_read)
                ctx.record_write_bytes(io.disk_write)
                ctx.record_net_rx_bytes(io.net_rx)
                ctx.record_net_tx_bytes(io.net_tx)
        else:
            log.debug("ignoring notification %s", msg.method)

    # -- methods that need the session -------------------------------------

    def hello(self, p: SessionHelloParams) -> dict[str, Any]:
        if p.protocol != PROTOCOL_VERSION:
            raise InvalidParams(
                f"protocol {p.protocol} is not supported; this sidecar speaks {PROTOCOL_VERSION}",
                field="protocol",
            )
        if not self.authenticated:
            token = p.token or ""
            if not hmac.compare_digest(token.encode(), self.app.token.encode()):
                raise Unauthorized("wrong token")
            self.authenticated = True
            if self.on_authenticated is not None:
                self.on_authenticated()
        self.client = p.client
        return {"protocol": PROTOCOL_VERSION, "version": __version__, "session": self.id}

    def subscribe(self, flt: EventFilter) -> int:
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise LimitExceeded(
                "subscriptions",
                MAX_SUBSCRIPTIONS,
                f"this connection has {MAX_SUBSCRIPTIONS} subscriptions open; unsubscribe "
                "some, or widen one filter instead of opening many",
            )
        holder: list[Subscription] = []

        def ready() -> None:
            sub = holder[0]
            if sub.id in self.subscriptions:
                self._ready[sub.id] = sub
                self.schedule_pump()

        sub = self.app.scheduler.events.subscribe(flt, maxsize=SUBSCRIPTION_BUFFER, on_ready=ready)
        holder.append(sub)
        self.subscriptions[sub.id] = sub
        return sub.id

    def unsubscribe(self, sub_id: int) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        self._ready.pop(sub_id, None)
        sub.close()
        return True

    async def register_worker(self, p: WorkerRegisterParams) -> str:
        registry = self.app.scheduler.registry
        served = {t for w in self.app.workers.by_channel(self) for t in w.task_types}
        wanted = served | {t.task_type for t in p.task_types}
        if len(wanted) > MAX_WORKER_TYPES:
            raise LimitExceeded(
                "worker_types",
                MAX_WORKER_TYPES,
                f"the workers of a connection serve at most {MAX_WORKER_TYPES} task types "
                f"together ({len(served)} already)",
                field="task_types",
            )
        for i, t in enumerate(p.task_types):
            if t.config is None and registry.find(t.task_type) is None:
                raise UnknownTaskType(
                    f"task type {t.task_type!r} is not declared; pass a config to declare it",
                    field=f"task_types[{i}]",
                )
        for t in p.task_types:
            if t.config is not None:
                self.app.declare_type(t.task_type, t.config, source="worker")
                await self.app.scheduler.remember_worker_type(t.task_type, t.config)
        worker = self.app.workers.register(
            self, frozenset(t.task_type for t in p.task_types), p.concurrency
        )
        return worker.id

    # -- output ----------------------------------------------------------

    def send_message(self, msg: Mapping[str, Any]) -> None:
        if not self.closed:
            self.out.send(msg)

    def call(self, method: str, params: Mapping[str, Any]) -> asyncio.Future[Any]:
        """Send a request to the client (``s-`` ids); resolves to its response."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(ConnectionError("the connection is closed"))
            return fut
        call_id = f"s-{next(self._call_ids)}"
        self._calls[call_id] = fut
        self.out.send(request(call_id, method, params))
        return fut

    def schedule_pump(self) -> None:
        """Deliver buffered events soon (called when a subscription has some)."""
        if not self._pump_scheduled and not self.closed:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self.pump)

    def pump(self) -> None:
        """Move events from the subscriptions that have some to the transport,
        one from each in turn, while the transport keeps up."""
        self._pump_scheduled = False
        if self.closed:
            return
        ready = self._ready
        while ready and self.out.backlog() < HIGH_WATER:
            for sub_id, sub in list(ready.items()):
                ev = sub.get_nowait()
                if ev is None or not sub.pending():
                    del ready[sub_id]
                if ev is not None:
                    params = {"subscription": sub.id, **ev.data}
                    self.out.send({"jsonrpc": "2.0", "method": "event", "params": params})

    def writable(self) -> None:
        """The transport drained below its high-water mark."""
        if self._ready:
            self.schedule_pump()

    # -- end ---------------------------------------------------------------

    async def close(self) -> None:
        """The connection is gone: release its workers' tasks, drop subscriptions."""
        if self.closed:
            return
        self.closed = True
        for sub in self.subscriptions.values():
            sub.close()
        self.subscriptions.clear()
        self._ready.clear()
        # Release first, then fail the calls: a released run records nothing.
        try:
            await self.app.workers.channel_closed(self)
        except TaskmillError as exc:
            log.error("could not release the tasks of closed session %s: %s", self.id, exc)
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the connection closed"))
        self._calls.clear()
        for task in list(self._tasks):
            task.cancel()
