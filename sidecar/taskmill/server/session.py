"""One client connection: requests in, responses and events out.

A session is transport-agnostic: the stdio and WebSocket transports feed it
decoded items and give it an :class:`Outbound` to write to. It answers each
request in its own task (answers may come out of order; ids correlate),
delivers the events of its subscriptions while the transport keeps up (a
client that reads slowly fills its subscription buffers and gets ``lagged``;
it never slows the scheduler), and carries the requests the sidecar sends to
the client's remote workers.

What a session serves is handed to it: the :class:`Host` (the sidecar
process: scheduler, workers, token, shutdown) and the method table, one
:class:`Method` per wire method, pairing the params parser with the handler
that takes what it parses (mypy checks the two agree). Handlers get a
:class:`Call`: the scheduler, the calling session and the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar

from .._checks import did_you_mean
from .._version import __version__
from ..errors import (
    InternalError,
    LimitExceeded,
    MethodNotFound,
    ShuttingDown,
    TaskmillError,
    Unauthorized,
)
from ..filters import EventFilter
from ..memory import no_cyclic_gc
from ..protocol.codec import Decoded, DecodedItem
from ..protocol.messages import (
    PROTOCOL_VERSION,
    ErrorResponse,
    Notification,
    Request,
    Response,
    error_message,
    parse_message,
    request_id_of,
    result_message,
)
from ..protocol.params.events import event_notification
from ..protocol.params.session import SessionHelloParams, ShutdownMode
from ..scheduler.core import Scheduler
from ..scheduler.events import Subscription
from .workers import WorkerPool

__all__ = [
    "Call",
    "Host",
    "Method",
    "Methods",
    "Outbound",
    "Session",
    "Sessions",
    "Transport",
    "bind",
    "bind_notification",
    "find_method",
]

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


Transport: TypeAlias = Literal["stdio", "ws"]
"""The transport a session came in on."""

P = TypeVar("P")
R = TypeVar("R")


class Host(Protocol):
    """What sessions and handlers need of the process serving them (the
    :class:`~taskmill.server.app.Sidecar`)."""

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def workers(self) -> WorkerPool: ...

    @property
    def token(self) -> str:
        """The per-launch token a WebSocket client's ``session.hello`` carries."""
        ...

    @property
    def closing(self) -> bool:
        """Shutting down: requests other than hello and info are refused."""
        ...

    def info(self) -> dict[str, Any]:
        """The ``sidecar.info`` result."""
        ...

    def request_shutdown(
        self, mode: ShutdownMode = "graceful", timeout_ms: int | None = None
    ) -> None:
        """Begin shutting down (idempotent)."""
        ...

    def declare_type(self, task_type: str, config: Mapping[str, Any], source: str) -> None:
        """Declare a task type a worker registers with an inline config."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """What a method handler works with."""

    scheduler: Scheduler
    #: The session the request came in on (a worker's channel, the owner of
    #: subscriptions).
    session: Session
    host: Host


@dataclass(frozen=True, slots=True, kw_only=True)
class Method(Generic[P, R]):
    """One wire method: its params parser and what the sidecar does with them.

    ``P`` ties them: a handler takes exactly what the parser returns.
    """

    parse: Callable[[Mapping[str, Any]], P]
    #: Answers a request; ``None`` for a method peers only send as notifications.
    handle: Callable[[Call, P], Awaitable[R]] | None = None
    #: Acts on a notification (no answer, at once, in arrival order).
    notify: Callable[[Call, P], None] | None = None
    #: ``parse`` as a generator that pauses in a long list (``task.submit_batch``).
    steps: Callable[[Mapping[str, Any]], Generator[None, None, P]] | None = None
    #: Answered while the sidecar shuts down (others answer ``shutting_down``).
    while_closing: bool = False

    def parse_steps(self, params: Mapping[str, Any]) -> Generator[None, None, P]:
        """:attr:`parse`, pausing (``yield``) where :attr:`steps` does."""
        if self.steps is not None:
            return (yield from self.steps(params))
        return self.parse(params)


Methods: TypeAlias = Mapping[str, Method[Any, Any]]
"""A method table: wire name to :class:`Method` (each entry typed on its own)."""


# bind() and bind_notification() return Method[Any, Any], which has no type
# variable, so mypy infers P from the parser and the handler alone and refuses
# a pair that disagree. Method(...) written in a table typed Method[Any, Any]
# would take P = Any from the table and accept anything.


def bind(
    parse: Callable[[Mapping[str, Any]], P],
    handle: Callable[[Call, P], Awaitable[R]],
    *,
    steps: Callable[[Mapping[str, Any]], Generator[None, None, P]] | None = None,
    while_closing: bool = False,
) -> Method[Any, Any]:
    """The :class:`Method` of a request: ``handle`` takes what ``parse`` returns."""
    return Method(parse=parse, handle=handle, steps=steps, while_closing=while_closing)


def bind_notification(
    parse: Callable[[Mapping[str, Any]], P], notify: Callable[[Call, P], None]
) -> Method[Any, Any]:
    """The :class:`Method` of a notification: ``notify`` takes what ``parse`` returns."""
    return Method(parse=parse, notify=notify)


def find_method(methods: Methods, name: str) -> Method[Any, Any]:
    """The method called ``name``.

    Raises:
        MethodNotFound: no such method, with the nearest name when one is close.
    """
    method = methods.get(name)
    if method is None:
        raise MethodNotFound(f"unknown method {name!r}{did_you_mean(name, methods)}")
    return method


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

    def __init__(
        self,
        host: Host,
        methods: Methods,
        out: Outbound,
        *,
        transport: Transport,
        authenticated: bool,
    ) -> None:
        self.host = host
        self.methods = methods
        #: What this session's handlers get.
        self.context = Call(scheduler=host.scheduler, session=self, host=host)
        self.out = out
        self.transport = transport
        self.authenticated = authenticated
        self.id = secrets.token_hex(6)
        self.client: str | None = None
        self.subscriptions: dict[int, Subscription] = {}
        self._calls: dict[str, asyncio.Future[Response | ErrorResponse]] = {}
        self._call_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_request(self, req: Request) -> None:
        try:
            result = await self._answer(find_method(self.methods, req.method), req)
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

    async def _answer(self, method: Method[P, R], req: Request) -> R:
        with contextlib.ExitStack() as stack:
            steps = method.parse_steps(req.params)
            big = False
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    params: P = done.value
                    break
                if not big:  # a long batch
                    big = True
                    stack.enter_context(no_cyclic_gc())
                await asyncio.sleep(0)  # let other clients in
            if method.handle is None:
                raise MethodNotFound(
                    f"method {req.method!r} is not available in taskmill {__version__}"
                )
            if self.host.closing and not method.while_closing:
                raise ShuttingDown("the sidecar is shutting down")
            return await method.handle(self.context, params)

    def _handle_notification(self, msg: Notification) -> None:
        try:
            method = find_method(self.methods, msg.method)
            params = method.parse(msg.params)
        except TaskmillError as exc:
            log.debug("ignoring notification %s: %s", msg.method, exc)
            return
        if method.notify is None:
            log.debug("ignoring notification %s", msg.method)
            return
        method.notify(self.context, params)

    # -- methods that need the session -------------------------------------

    def hello(self, params: SessionHelloParams) -> dict[str, object]:
        """``session.hello``: authenticate (WebSocket) and name the client.

        The protocol version was checked by the parser.

        Raises:
            Unauthorized: the token is wrong.
        """
        if not self.authenticated:
            token = params.token or ""
            if not hmac.compare_digest(token.encode(), self.host.token.encode()):
                raise Unauthorized("wrong token")
            self.authenticated = True
            if self.on_authenticated is not None:
                self.on_authenticated()
        self.client = params.client
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

        events = self.host.scheduler.events
        sub = events.subscribe(flt, maxsize=SUBSCRIPTION_BUFFER, on_ready=ready)
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

    # -- output ----------------------------------------------------------

    def send_message(self, msg: Mapping[str, Any]) -> None:
        if not self.closed:
            self.out.send(msg)

    def call(
        self, build: Callable[[str], Mapping[str, Any]]
    ) -> asyncio.Future[Response | ErrorResponse]:
        """Send a request to the client; resolves to its response.

        Args:
            build: Makes the request from the id the session gives it
                (``"s-<n>"``), e.g. ``worker_execute_request``.
        """
        fut: asyncio.Future[Response | ErrorResponse] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(ConnectionError("the connection is closed"))
            return fut
        call_id = f"s-{next(self._call_ids)}"
        self._calls[call_id] = fut
        self.out.send(build(call_id))
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
                    self.out.send(event_notification(ev.data, subscription=sub.id))

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
            await self.host.workers.channel_closed(self)
        except TaskmillError as exc:
            log.error("could not release the tasks of closed session %s: %s", self.id, exc)
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the connection closed"))
        self._calls.clear()
        for task in list(self._tasks):
            task.cancel()


class Sessions:
    """The open sessions of a host, each built with the host's method table.

    Args:
        host: What the sessions serve.
        methods: The method table every session answers with.
    """

    def __init__(self, host: Host, methods: Methods) -> None:
        self.host = host
        self.methods = methods
        self._open: set[Session] = set()

    def open(self, out: Outbound, *, transport: Transport, authenticated: bool) -> Session:
        """A new session writing to ``out``."""
        session = Session(
            self.host, self.methods, out, transport=transport, authenticated=authenticated
        )
        self._open.add(session)
        return session

    def discard(self, session: Session) -> None:
        """Forget a session whose connection is gone (before closing it)."""
        self._open.discard(session)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._open))

    def __len__(self) -> int:
        return len(self._open)
