"""The WebSocket transport: MessagePack (binary) or JSON (text) frames.

Binds 127.0.0.1 on an ephemeral port unless told otherwise. Browsers let any
page open a WebSocket to a loopback address, so two defences apply: a browser
``Origin`` outside the allowlist is refused at the upgrade with 403, and the
first request must be ``session.hello`` carrying the per-launch token (compared
in constant time); anything else is answered with -32001 and the connection is
closed with code 4401. A connection that has not said hello within 5 s is
closed too. A connection answers in the encoding of the first frame it got.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from ..errors import InternalError, InvalidRequest
from ..protocol.codec import (
    DecodeFailure,
    decode_json_text,
    decode_msgpack,
    encode_json_text,
    encode_msgpack,
)
from ..protocol.messages import error_message
from .session import CLOSE_UNAUTHORIZED, HIGH_WATER, Session

if TYPE_CHECKING:
    from .app import Sidecar

__all__ = ["DEFAULT_ORIGINS", "HELLO_TIMEOUT_S", "WsOut", "start_ws_server"]

log = logging.getLogger(__name__)

DEFAULT_ORIGINS = (
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
    "file://",
)
HELLO_TIMEOUT_S = 5.0


class WsOut:
    """A session's outbound side on a WebSocket, written by one task."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        #: "msgpack" or "json", set by the first frame received.
        self.encoding: str | None = None
        self.session: Session | None = None
        self._frames: deque[bytes | str] = deque()
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._task = asyncio.get_running_loop().create_task(self._writer())

    def send(self, msg: Mapping[str, Any]) -> None:
        if self._closing is not None:
            return
        encode = encode_msgpack if self.encoding == "msgpack" else encode_json_text
        frame: bytes | str
        try:
            frame = encode(msg)
        except InternalError as exc:
            frame = encode(error_message(msg.get("id"), exc))
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
    app: Sidecar,
    host: str,
    port: int,
    origins: Sequence[str],
    max_message_bytes: int,
) -> tuple[Server, str]:
    """Start serving; returns the server and its ``ws://host:port`` URL."""
    allowed: list[Origin | None] = [Origin(o) for o in origins]
    allowed.append(None)  # non-browser clients send no Origin; the token guards them

    async def handler(ws: ServerConnection) -> None:
        await _serve_connection(app, ws, max_message_bytes)

    server = await serve(
        handler,
        host,
        port,
        origins=allowed,
        # Frames up to twice the limit are read and refused with -32600 (the
        # connection stays open); larger ones close it (1009).
        max_size=2 * max_message_bytes,
        compression=None,
        ping_interval=20,
        ping_timeout=20,
        max_queue=64,
    )
    sock_port = next(iter(server.sockets)).getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return server, f"ws://{shown}:{sock_port}"


async def _serve_connection(app: Sidecar, ws: ServerConnection, limit: int) -> None:
    out = WsOut(ws)
    session = Session(app, out, transport="ws", authenticated=False)
    out.session = session
    app.sessions.add(session)
    loop = asyncio.get_running_loop()

    def hello_deadline() -> None:
        if not session.authenticated:
            out.close(CLOSE_UNAUTHORIZED, "no session.hello in time")

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
            if isinstance(frame, bytes):
                session.receive(decode_msgpack(frame, max_message_bytes=limit))
            else:
                session.receive(decode_json_text(frame, max_message_bytes=limit))
    except ConnectionClosed:
        pass
    finally:
        timer.cancel()
        app.sessions.discard(session)
        await session.close()
        await out.stop()
