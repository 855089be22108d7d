"""The WebSocket transport: MessagePack (binary) or JSON (text) frames.

Binds 127.0.0.1 on an ephemeral port unless told otherwise. Browsers let any
page open a WebSocket to a loopback address, so two defences apply: a browser
``Origin`` outside the allowlist is refused at the upgrade with 403, and the
first request must be ``session.hello`` carrying the per-launch token (compared
in constant time); anything else is answered with -32001 and the connection is
closed with code 4401. A connection that has not said hello within 5 s is
dropped. A connection answers in the encoding of the first frame it got.

Anyone on the machine can connect without the token, so until ``session.hello``
a connection is kept cheap and short-lived (:class:`ConnectionGate`): at most
:data:`MAX_PENDING` such connections at once (a new one evicts the oldest, so
a client that says hello at once always gets in, whatever a flood does), a
frame limit of :data:`PRE_HELLO_MAX_BYTES`, and no close handshake when one is
dropped (its descriptor is freed at once). Connections as a whole are capped
below the process's descriptor limit, keeping headroom for the database and
the executors' files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from ..errors import InvalidRequest
from ..protocol.codec import (
    DecodedItem,
    DecodeFailure,
    decode_json_text,
    decode_msgpack,
    encode_json_text,
    encode_msgpack,
)
from ..protocol.messages import encode_reply
from .session import CLOSE_UNAUTHORIZED, HIGH_WATER, Session, Sessions

__all__ = [
    "DEFAULT_ORIGINS",
    "HELLO_TIMEOUT_S",
    "ConnectionGate",
    "Encoding",
    "WsOut",
    "start_ws_server",
]

log = logging.getLogger(__name__)

DEFAULT_ORIGINS = (
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
    "file://",
)
HELLO_TIMEOUT_S = 5.0
#: Connections that have not said hello yet, at once.
MAX_PENDING = 64
#: A connection in its HTTP handshake this long may be evicted (a real
#: client's handshake takes milliseconds).
HANDSHAKE_GRACE_S = 0.5
#: A pending connection that sent a frame is not evicted this long, while its
#: hello is handled.
HELLO_GRACE_S = 0.5
#: The largest frame a connection may send before hello (a hello is ~100 bytes).
PRE_HELLO_MAX_BYTES = 64 * 1024
#: File descriptors kept free for everything but connections (database, WAL,
#: lock, logs, the fs executors' files, psutil).
FD_RESERVE = 64
#: Connections the kernel may hand over in one accept round (the listen
#: backlog): asyncio accepts that many before any of them reaches the gate, so
#: they are kept free too (else an accept fails with EMFILE and is logged).
ACCEPT_BURST = 32
#: Frames above this are decoded on a thread.
BIG_FRAME_BYTES = 256 * 1024
#: Seconds a close handshake may take before the connection is dropped.
CLOSE_TIMEOUT_S = 2.0
#: WebSocket keepalive: a ping every so often; no pong within as long, and the
#: connection (and its workers' runs) are given up.
PING_INTERVAL_S = 10.0

Encoding: TypeAlias = Literal["msgpack", "json"]
"""A connection's encoding: binary frames carry MessagePack, text frames JSON."""


class ConnectionGate:
    """Admits connections within the descriptor budget, unauthenticated ones
    within :data:`MAX_PENDING`.

    When the pending ones are at their cap, a newcomer makes room by evicting
    the connection that has waited longest *after* its upgrade without saying
    hello (a client that means it says hello within a millisecond of the
    upgrade), else one stuck in the HTTP handshake for over
    :data:`HANDSHAKE_GRACE_S`; a connection still in a young handshake is
    never evicted. Only when nothing can be evicted is the newcomer dropped.
    So a flood of silent connections keeps churning through the oldest idle
    slots, and a real client, whose handshake is young while it runs and
    whose hello follows at once, gets through.
    """

    def __init__(
        self, capacity: int, max_pending: int = MAX_PENDING, clock: Any = time.monotonic
    ) -> None:
        self.capacity = max(1, capacity)
        self.max_pending = max(1, max_pending)
        self._clock = clock
        #: Pending connections and when they arrived, oldest first.
        self._pending: OrderedDict[ServerConnection, float] = OrderedDict()
        self._authed: set[ServerConnection] = set()
        #: Pending connections past their upgrade, in upgrade order.
        self._upgraded: OrderedDict[ServerConnection, None] = OrderedDict()
        #: When pending connections sent their first frame.
        self._spoke: dict[ServerConnection, float] = {}
        #: Connections dropped at the door or evicted (for tests and metrics).
        self.dropped = 0

    def open(self, conn: ServerConnection) -> bool:
        """A TCP connection was accepted; False if it was dropped at once."""
        while self._pending and (
            len(self._pending) >= self.max_pending
            or len(self._pending) + len(self._authed) >= self.capacity
        ):
            victim = self._victim()
            if victim is None:
                break
            self._forget(victim)
            self._drop(victim)
        full = (
            len(self._pending) >= self.max_pending
            or len(self._pending) + len(self._authed) >= self.capacity
        )
        if full:
            self._drop(conn)
            return False
        self._pending[conn] = self._clock()
        return True

    def _victim(self) -> ServerConnection | None:
        """The pending connection to evict, or None (all are young)."""
        now = self._clock()
        for conn in self._upgraded:  # in the order of their upgrade
            spoke = self._spoke.get(conn)
            if spoke is None or now - spoke > HELLO_GRACE_S:
                return conn  # silent since its upgrade, or no hello came of it
        for conn, since in self._pending.items():
            if conn not in self._upgraded and now - since > HANDSHAKE_GRACE_S:
                return conn  # stuck in the HTTP handshake
        return None

    def upgraded(self, conn: ServerConnection) -> None:
        """The WebSocket handshake of a pending connection completed."""
        if conn in self._pending:
            self._upgraded[conn] = None

    def spoke(self, conn: ServerConnection) -> None:
        """The pending connection sent a frame (its hello, likely): it is left
        alone for :data:`HELLO_GRACE_S` while that is handled."""
        if conn in self._pending and conn not in self._spoke:
            self._spoke[conn] = self._clock()

    def hello(self, conn: ServerConnection, max_size: int) -> None:
        """The connection authenticated: it is no longer evictable."""
        if self._forget(conn):
            self._authed.add(conn)
            # The parser reads the limit afresh for each frame. websockets 15+
            # calls it max_message_size, earlier ones max_size.
            proto: Any = conn.protocol
            if hasattr(proto, "max_message_size"):
                proto.max_message_size = max_size
            else:
                proto.max_size = max_size

    def is_pending(self, conn: ServerConnection) -> bool:
        return conn in self._pending

    def _forget(self, conn: ServerConnection) -> bool:
        self._spoke.pop(conn, None)
        self._upgraded.pop(conn, None)
        return self._pending.pop(conn, None) is not None

    def close(self, conn: ServerConnection) -> None:
        self._forget(conn)
        self._authed.discard(conn)

    def _drop(self, conn: ServerConnection) -> None:
        self.dropped += 1
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.abort()


def _hang_up(ws: ServerConnection, code: int, reason: str) -> None:
    """Send a close frame and close the socket at once, without waiting for the
    peer's close frame (a close handshake would hold the descriptor up to
    CLOSE_TIMEOUT_S more)."""
    try:
        ws.protocol.send_close(code, reason)
        ws.send_data()
    except Exception:  # the connection is already closing: just close it
        pass
    ws.transport.close()


def _fd_capacity(reserve: int = FD_RESERVE) -> int:
    """How many connections fit under the descriptor limit, keeping ``reserve``."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # Windows: no such limit
        return 4096
    if soft == resource.RLIM_INFINITY:
        return 4096
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    return max(8, soft - in_use - reserve - ACCEPT_BURST)


class WsOut:
    """A session's outbound side on a WebSocket, written by one task."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        #: Set by the first frame received.
        self.encoding: Encoding | None = None
        self.session: Session | None = None
        self._frames: deque[bytes | str] = deque()
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._task = asyncio.get_running_loop().create_task(self._writer())

    def send(self, msg: Mapping[str, Any]) -> None:
        if self._closing is not None:
            return
        frame: bytes | str
        if self.encoding == "msgpack":
            frame = encode_reply(msg, encode_msgpack)
        else:
            frame = encode_reply(msg, encode_json_text)
        self._frames.append(frame)
        self._wake.set()

    def backlog(self) -> int:
        return len(self._frames)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closing is None:
            self._closing = (code, reason)
            self._wake.set()

    async def _writer(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._frames:
                    frame = self._frames.popleft()
                    await self.ws.send(frame)
                    if len(self._frames) == HIGH_WATER // 2 and self.session is not None:
                        self.session.writable()
                if self.session is not None and not self._frames:
                    self.session.writable()
                if self._closing is not None and not self._frames:
                    await self.ws.close(*self._closing)
                    return
        except ConnectionClosed:
            return

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, ConnectionClosed):
            pass


async def start_ws_server(
    sessions: Sessions,
    host: str,
    port: int,
    origins: Sequence[str],
    max_message_bytes: int,
) -> tuple[Server, str, ConnectionGate]:
    """Start serving; returns the server, its ``ws://host:port`` URL and the
    gate its connections pass."""
    allowed: list[Origin | None] = [Origin(o) for o in origins]
    allowed.append(None)  # non-browser clients send no Origin; the token guards them

    gate = ConnectionGate(_fd_capacity())

    class GatedConnection(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            gate.open(self)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.response is not None:
                gate.spoke(self)
            sent = self.protocol.close_sent
            if sent is not None and sent.code == 1009 and gate.is_pending(self):
                # An oversized frame before hello: websockets would read and
                # discard the rest of it (megabytes) during the close
                # handshake. Close now; the kernel drops what still comes.
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            gate.close(self)
            super().connection_lost(exc)

    async def handler(ws: ServerConnection) -> None:
        await _serve_connection(sessions, ws, max_message_bytes, gate)

    server = await serve(
        handler,
        host,
        port,
        origins=allowed,
        # Before hello, frames are small (a bigger one closes the connection,
        # 1009); after it, frames up to twice the limit are read and refused
        # with -32600 (the connection stays open), larger ones close it.
        max_size=PRE_HELLO_MAX_BYTES,
        compression=None,
        ping_interval=PING_INTERVAL_S,
        ping_timeout=PING_INTERVAL_S,
        close_timeout=CLOSE_TIMEOUT_S,
        open_timeout=HELLO_TIMEOUT_S,
        max_queue=16,
        backlog=ACCEPT_BURST,
        create_connection=GatedConnection,
    )
    sock_port = next(iter(server.sockets)).getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return server, f"ws://{shown}:{sock_port}", gate


async def _serve_connection(
    sessions: Sessions, ws: ServerConnection, limit: int, gate: ConnectionGate
) -> None:
    gate.upgraded(ws)
    out = WsOut(ws)
    session: Session = sessions.open(out, transport="ws", authenticated=False)
    session.on_authenticated = lambda: gate.hello(ws, 2 * limit)
    out.session = session
    loop = asyncio.get_running_loop()

    def hello_deadline() -> None:
        if not session.authenticated:
            _hang_up(ws, CLOSE_UNAUTHORIZED, "no session.hello in time")

    timer = loop.call_later(HELLO_TIMEOUT_S, hello_deadline)
    try:
        async for frame in ws:
            if out.encoding is None:
                out.encoding = "msgpack" if isinstance(frame, bytes) else "json"
            size = len(frame)
            if size > limit:
                session.receive(
                    DecodeFailure(
                        InvalidRequest(f"message of {size} bytes exceeds the limit of {limit}")
                    )
                )
                continue
            decode: Callable[..., DecodedItem] = (
                decode_msgpack if isinstance(frame, bytes) else decode_json_text
            )
            if size > BIG_FRAME_BYTES:
                # A batch of 100,000 tasks takes ~100 ms to decode: on a thread,
                # the event loop keeps serving others meanwhile.
                item = await asyncio.to_thread(decode, frame, max_message_bytes=limit)
            else:
                item = decode(frame, max_message_bytes=limit)
            session.receive(item)
    except ConnectionClosed:
        pass
    finally:
        timer.cancel()
        sessions.discard(session)
        await session.close()
        await out.stop()
