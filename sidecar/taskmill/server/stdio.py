"""The stdio transport: JSON lines on stdin/stdout, each pipe on its own thread.

Reading stdin on a thread works on every OS (asyncio cannot read pipes under
Windows' Proactor loop), and writing stdout on a thread keeps a parent that
reads slowly from ever blocking the event loop. stdout carries protocol
messages only; end of file on stdin means the parent is gone.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from ..protocol.codec import encode_json_line
from ..protocol.messages import encode_reply

__all__ = ["LineWriter", "StdinReader"]

log = logging.getLogger(__name__)


class LineWriter:
    """Writes JSON lines to a binary stream from a dedicated thread.

    ``backlog()`` counts lines not yet written; ``on_writable`` runs on the
    event loop when the backlog drops to a low mark after being high.
    """

    LOW_WATER = 64

    def __init__(self, stream: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self.on_writable: Callable[[], None] | None = None
        self.broken = False
        self._thread = threading.Thread(target=self._run, name="taskmill-stdout", daemon=True)
        self._thread.start()

    def send(self, msg: Mapping[str, Any]) -> None:
        if self.broken:
            return
        line = encode_reply(msg, encode_json_line)
        with self._lock:
            self._pending += 1
        self._queue.put(line)

    def backlog(self) -> int:
        return self._pending

    def close(self, code: int = 1000, reason: str = "") -> None:
        # A pipe cannot be closed by a protocol error; the parent decides.
        return None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while True:  # write what is queued in one go, then flush once
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._write(batch)
                    return
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[bytes]) -> None:
        try:
            self._stream.write(b"".join(batch))
            self._stream.flush()
        except (OSError, ValueError):
            if not self.broken:
                log.warning("stdout is closed; dropping further output")
            self.broken = True
        with self._lock:
            before = self._pending
            self._pending -= len(batch)
            after = self._pending
        if before > self.LOW_WATER >= after and self.on_writable is not None:
            try:
                self._loop.call_soon_threadsafe(self.on_writable)
            except RuntimeError:  # the loop is closed
                pass

    def flush_and_stop(self, timeout: float = 5.0) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)


class StdinReader:
    """Reads stdin in chunks on a thread and hands them to the event loop.

    ``on_eof`` runs on the loop after the last data; ``on_eof_thread``, if
    given, runs on the reader thread right after scheduling it, so end of
    file is acted on even while task code blocks the loop.

    At most :data:`CHUNKS_IN_FLIGHT` chunks wait for the loop at once: while
    the loop is behind (blocked, or busy with a flood), the thread stops
    reading and the pipe pushes back on the writer, instead of the chunks
    piling up in memory.
    """

    CHUNK = 65536
    CHUNKS_IN_FLIGHT = 16

    def __init__(
        self,
        stream: BinaryIO,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[Any], None],
        on_eof: Callable[[], None],
        *,
        on_eof_thread: Callable[[], None] | None = None,
        parse: Callable[[bytes], Any] | None = None,
    ) -> None:
        self._stream = stream
        #: Run on the reader thread on each chunk (decoding JSON there keeps a
        #: 4 MiB line from holding the event loop); ``on_data`` gets its result.
        self._parse = parse
        self._loop = loop
        self._on_data = on_data
        self._on_eof = on_eof
        self._on_eof_thread = on_eof_thread
        self._room = threading.BoundedSemaphore(self.CHUNKS_IN_FLIGHT)
        self._thread = threading.Thread(target=self._run, name="taskmill-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        read = getattr(self._stream, "read1", self._stream.read)
        try:
            while True:
                self._room.acquire()
                data = read(self.CHUNK)
                if not data:
                    break
                item = data if self._parse is None else self._parse(data)
                self._loop.call_soon_threadsafe(self._deliver, item)
        except (OSError, ValueError) as exc:
            log.info("stdin closed: %s", exc)
        except RuntimeError:  # the loop closed under us
            return
        try:
            self._loop.call_soon_threadsafe(self._on_eof)
        except RuntimeError:
            return
        if self._on_eof_thread is not None:
            self._on_eof_thread()

    def _deliver(self, item: Any) -> None:
        try:
            self._on_data(item)
        finally:
            self._room.release()
