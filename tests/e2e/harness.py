"""Drive real sidecar processes over stdio and WebSocket (protocol: /work/shared/protocol.md).

:class:`SidecarProcess` spawns ``python -m taskmill`` with asyncio, reads the
``sidecar.ready`` line, correlates responses by id and collects ``event``
notifications. :class:`WsClient` speaks to the sidecar's WebSocket in
MessagePack (binary frames) or JSON (text frames) and can act as a remote
worker (it queues the ``worker.execute`` requests the sidecar sends).

Everything waits on messages or conditions with deadlines; nothing sleeps and
hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = float(os.environ.get("TASKMILL_E2E_TIMEOUT", "10"))
STREAM_LIMIT = 64 * 1024 * 1024

Message = dict[str, Any]
Pred = Callable[[Message], bool]


def sidecar_cmd(*args: str) -> list[str]:
    """The command line of a sidecar started with ``args``."""
    return [sys.executable, "-m", "taskmill", *args]


#: Bytecode of the sidecars' modules, cached outside the source tree: with
#: PYTHONDONTWRITEBYTECODE every start would compile the whole package again.
PYCACHE = os.path.join(tempfile.gettempdir(), "taskmill-e2e-pycache")


def child_env(extra: dict[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a sidecar child: ours, minus TASKMILL_TOKEN, plus ``extra``."""
    env = dict(os.environ)
    env.pop("TASKMILL_TOKEN", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    for name in drop:
        env.pop(name, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def error_of(resp: Message) -> tuple[int | None, str | None]:
    """``(code, data.kind)`` of an error response (``(None, None)`` for a result)."""
    err = resp.get("error") or {}
    return err.get("code"), (err.get("data") or {}).get("kind")


def error_field(resp: Message) -> str | None:
    return ((resp.get("error") or {}).get("data") or {}).get("field")


class RpcError(AssertionError):
    """A call expected to succeed answered an error."""

    def __init__(self, method: str, response: Message) -> None:
        super().__init__(f"{method} failed: {response.get('error')}")
        self.response = response
        self.code, self.kind = error_of(response)


class _Inbox:
    """Responses by id, events, sidecar requests and other messages, with waiting."""

    def __init__(self) -> None:
        self.pending: dict[Any, asyncio.Future[Message]] = {}
        self.events: list[Message] = []
        self.requests: list[Message] = []
        self.other: list[Message] = []
        self.all: list[Message] = []
        self.closed = False
        self._cond = asyncio.Condition()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def expect(self, rid: Any) -> asyncio.Future[Message]:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        return fut

    async def deliver(self, msg: Message) -> None:
        self.all.append(msg)
        method = msg.get("method")
        if method is None and "id" in msg and msg["id"] in self.pending:
            fut = self.pending.pop(msg["id"])
            if not fut.done():
                fut.set_result(msg)
        elif method == "event":
            self.events.append(msg["params"])
        elif method is not None and "id" in msg:
            self.requests.append(msg)
        else:
            self.other.append(msg)
        async with self._cond:
            self._cond.notify_all()

    async def mark_closed(self) -> None:
        self.closed = True
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the connection closed before answering"))
        self.pending.clear()
        async with self._cond:
            self._cond.notify_all()

    async def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``check()`` returns something truthy; return it."""
        try:
            async with asyncio.timeout(timeout):
                async with self._cond:
                    while True:
                        value = check()
                        if value:
                            return value
                        if self.closed:
                            raise AssertionError(f"connection closed while waiting for {what}")
                        await self._cond.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None

    async def next_other(self, n: int, timeout: float, what: str) -> Message:
        """``other[n]`` once it has arrived (``n``: ``len(other)`` taken before sending)."""
        await self.wait_for(lambda: len(self.other) > n, timeout, what)
        return self.other[n]


class _Rpc:
    """Request helpers shared by the stdio and WebSocket clients."""

    inbox: _Inbox

    async def _send(self, msg: Message) -> None:
        raise NotImplementedError

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = TIMEOUT
    ) -> Message:
        """Send a request; return the whole response (result or error)."""
        rid = self.inbox.next_id()
        fut = self.inbox.expect(rid)
        msg: Message = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        await self._send(msg)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            self.inbox.pending.pop(rid, None)
            raise AssertionError(f"no answer to {method} within {timeout}s") from None

    async def result(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = TIMEOUT
    ) -> Any:
        resp = await self.call(method, params, timeout=timeout)
        if "error" in resp:
            raise RpcError(method, resp)
        return resp["result"]

    async def error(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = TIMEOUT
    ) -> Message:
        """Call expecting an error; return the response."""
        resp = await self.call(method, params, timeout=timeout)
        assert "error" in resp, f"{method} {params} should have failed, got {resp}"
        return resp

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self._send({"jsonrpc": "2.0", "method": method, "params": params})

    async def submit(self, task_type: str, payload: Any = None, **params: Any) -> int:
        """``task.submit``; returns the id (asserting inserted unless told otherwise)."""
        params = {"task_type": task_type, "payload": payload, **params}
        res = await self.result("task.submit", params)
        return int(res["id"])

    async def subscribe(self, **flt: Any) -> int:
        params = {"filter": flt} if flt else {}
        return int((await self.result("events.subscribe", params))["subscription"])

    # -- events ------------------------------------------------------------

    @property
    def events(self) -> list[Message]:
        return self.inbox.events

    async def wait_event(self, pred: Pred, timeout: float = TIMEOUT) -> Message:
        """The first event (already received or coming) matching ``pred``."""

        def check() -> Message | None:
            for ev in self.inbox.events:
                if pred(ev):
                    return ev
            return None

        result: Message = await self.inbox.wait_for(check, timeout, "an event")
        return result

    async def wait_task_event(self, task_id: int, *kinds: str, timeout: float = TIMEOUT) -> Message:
        return await self.wait_event(
            lambda e: e.get("task_id") == task_id and e.get("kind") in kinds, timeout
        )

    async def wait_done(self, task_id: int, timeout: float = TIMEOUT) -> Message:
        """The terminal event of a task (completed, failed without retry, ...)."""

        def terminal(e: Message) -> bool:
            if e.get("task_id") != task_id:
                return False
            if e["kind"] == "failed":
                return not e.get("will_retry")
            return e["kind"] in (
                "completed",
                "cancelled",
                "dead_lettered",
                "superseded",
                "expired",
                "dependency_failed",
            )

        return await self.wait_event(terminal, timeout)

    async def wait_count(self, pred: Pred, n: int, timeout: float = TIMEOUT) -> list[Message]:
        def check() -> list[Message] | None:
            found = [e for e in self.inbox.events if pred(e)]
            return found if len(found) >= n else None

        result: list[Message] = await self.inbox.wait_for(check, timeout, f"{n} events")
        return result

    async def wait_status(
        self, task_id: int, *statuses: str, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """Poll ``task.get`` (between events) until the task is in one of ``statuses``."""
        async with asyncio.timeout(timeout):
            while True:
                rec: dict[str, Any] = await self.result("task.get", {"id": task_id})
                if rec["status"] in statuses:
                    return rec
                await asyncio.sleep(0.02)


class SidecarProcess(_Rpc):
    """A sidecar child process spoken to over stdio (JSON lines)."""

    def __init__(self, proc: asyncio.subprocess.Process, args: Sequence[str]) -> None:
        self.proc = proc
        self.args = list(args)
        self.inbox = _Inbox()
        self.ready: dict[str, Any] = {}
        self.stderr_lines: list[str] = []
        self.bad_lines: list[bytes] = []
        self._readers: list[asyncio.Task[None]] = []
        self._exited = False

    @classmethod
    async def start(
        cls,
        *args: str,
        env: dict[str, str] | None = None,
        ready_timeout: float = 20.0,
        cwd: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> SidecarProcess:
        """Spawn ``python -m taskmill ARGS`` and wait for ``sidecar.ready``.

        ``preexec_fn`` runs in the child before exec (POSIX only), e.g. to set
        resource limits.
        """
        proc = await asyncio.create_subprocess_exec(
            *sidecar_cmd(*args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env or child_env(),
            cwd=cwd,
            limit=STREAM_LIMIT,
            preexec_fn=preexec_fn,
        )
        sc = cls(proc, args)
        sc._readers.append(asyncio.get_running_loop().create_task(sc._read_stderr()))
        try:
            async with asyncio.timeout(ready_timeout):
                assert proc.stdout is not None
                line = await proc.stdout.readline()
            if not line:
                code = await sc.wait_exit(5)
                raise AssertionError(
                    f"sidecar exited ({code}) before sidecar.ready: {sc.stderr_text()}"
                )
            first = json.loads(line)
            assert first.get("method") == "sidecar.ready", f"first line was {first}"
            assert "id" not in first, first
            sc.ready = first["params"]
        except BaseException:
            await sc.kill()
            raise
        sc._readers.append(asyncio.get_running_loop().create_task(sc._read_stdout()))
        return sc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return str(self.ready["transports"]["ws"]["url"])

    @property
    def ws_token(self) -> str | None:
        token = self.ready["transports"]["ws"]["token"]
        return None if token is None else str(token)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.bad_lines.append(line)
                    continue
                await self.inbox.deliver(msg)
        finally:
            await self.inbox.mark_closed()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            self.stderr_lines.append(line.decode("utf-8", "replace"))

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    async def send_raw(self, data: bytes | str) -> None:
        """Write bytes to stdin as they are (add the newline yourself)."""
        if isinstance(data, str):
            data = data.encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def _send(self, msg: Message) -> None:
        await self.send_raw(json.dumps(msg).encode() + b"\n")

    async def wait_other(self, pred: Pred, timeout: float = TIMEOUT) -> Message:
        """A message that is neither an event nor the answer to one of our calls."""

        def check() -> Message | None:
            for m in self.inbox.other:
                if pred(m):
                    return m
            return None

        result: Message = await self.inbox.wait_for(check, timeout, "a message")
        return result

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit; returns its exit code."""
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
                for t in self._readers:
                    await t
        except TimeoutError:
            raise AssertionError(
                f"sidecar {self.pid} did not exit within {timeout}s; stderr: {self.stderr_text()}"
            ) from None
        self._exited = True
        return code

    async def kill(self) -> None:
        """SIGKILL if still running, and reap (teardown)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await self.proc.wait()
        for t in self._readers:
            if not t.done():
                t.cancel()
            with contextlib.suppress(BaseException):
                await t
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        self._exited = True

    async def shutdown(self, timeout: float = TIMEOUT) -> int:
        """Close stdin (graceful shutdown) and wait for exit."""
        self.close_stdin()
        return await self.wait_exit(timeout)


@dataclass
class Exited:
    """A sidecar run to completion without talking to it."""

    code: int
    stdout: bytes
    stderr: str


async def run_to_exit(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 20,
    preexec_fn: Callable[[], None] | None = None,
) -> Exited:
    """Run ``python -m taskmill ARGS`` with stdin closed; return exit code and output.

    ``preexec_fn`` runs in the child before exec (POSIX only).
    """
    proc = await asyncio.create_subprocess_exec(
        *sidecar_cmd(*args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or child_env(),
        preexec_fn=preexec_fn,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Exited(proc.returncode, out, err.decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------


class WsClient(_Rpc):
    """A WebSocket client of the sidecar.

    ``encoding="msgpack"`` sends binary MessagePack frames, ``"json"`` text
    JSON frames. Received frames are decoded by their own type, and the type
    of each is recorded in ``frame_types`` so tests can check the sidecar
    answers in the connection's encoding.
    """

    def __init__(self, ws: ClientConnection, encoding: str) -> None:
        assert encoding in ("msgpack", "json")
        self.ws = ws
        self.encoding = encoding
        self.inbox = _Inbox()
        self.frame_types: list[str] = []
        self.undecodable: list[bytes | str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        encoding: str = "msgpack",
        origin: str | None = None,
        timeout: float = TIMEOUT,
        rcvbuf: int | None = None,
    ) -> WsClient:
        """Connect (no hello). ``rcvbuf`` shrinks the socket's receive buffer, so a
        client that stops reading pushes back on the server sooner."""
        kwargs: dict[str, Any] = {
            "max_size": None,
            "compression": None,
            "open_timeout": timeout,
            "ping_interval": None,
        }
        if origin is not None:
            kwargs["origin"] = origin
        if rcvbuf is not None:
            parsed = urlsplit(url)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parsed.hostname, parsed.port))
            kwargs["sock"] = sock
        ws = await connect(url, **kwargs)
        return cls(ws, encoding)

    async def _read(self) -> None:
        try:
            while True:
                await self._reading.wait()
                frame = await self.ws.recv()
                self.frame_types.append("binary" if isinstance(frame, bytes) else "text")
                try:
                    if isinstance(frame, bytes):
                        msg = msgpack.unpackb(frame, raw=False)
                    else:
                        msg = json.loads(frame)
                except Exception:
                    self.undecodable.append(frame)
                    continue
                await self.inbox.deliver(msg)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            self.close_code = rcvd.code if rcvd is not None else None
            self.close_reason = rcvd.reason if rcvd is not None else None
        finally:
            self.closed.set()
            await self.inbox.mark_closed()

    def pause_reading(self) -> None:
        """Stop reading frames (TCP and library buffers fill up, then the server's)."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def encode(self, msg: Message) -> bytes | str:
        if self.encoding == "msgpack":
            packed: bytes = msgpack.packb(msg, use_bin_type=True)
            return packed
        return json.dumps(msg)

    async def send_frame(self, frame: bytes | str) -> None:
        await self.ws.send(frame)

    async def _send(self, msg: Message) -> None:
        await self.ws.send(self.encode(msg))

    async def hello(self, token: str | None, client: str = "e2e/1") -> dict[str, Any]:
        result: dict[str, Any] = await self.result(
            "session.hello", {"token": token, "protocol": 1, "client": client}
        )
        return result

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait until the server closed the connection; return the close code."""
        try:
            async with asyncio.timeout(timeout):
                await self.closed.wait()
        except TimeoutError:
            raise AssertionError(f"the connection was not closed within {timeout}s") from None
        return self.close_code

    # -- remote worker side -------------------------------------------------

    async def next_request(
        self, method: str = "worker.execute", timeout: float = TIMEOUT, *, taken: set[Any]
    ) -> Message:
        """The first request from the sidecar with ``method`` whose id is not in ``taken``."""

        def check() -> Message | None:
            for r in self.inbox.requests:
                if r.get("method") == method and r["id"] not in taken:
                    return r
            return None

        req: Message = await self.inbox.wait_for(check, timeout, f"a {method} request")
        taken.add(req["id"])
        return req

    async def wait_notification(
        self, method: str, pred: Pred | None = None, timeout: float = TIMEOUT
    ) -> Message:
        def check() -> Message | None:
            for m in self.inbox.other:
                if m.get("method") == method and (pred is None or pred(m["params"])):
                    return m
            return None

        result: Message = await self.inbox.wait_for(check, timeout, f"a {method} notification")
        return result

    async def respond(self, rid: Any, result: Any) -> None:
        await self._send({"jsonrpc": "2.0", "id": rid, "result": result})

    async def respond_error(self, rid: Any, code: int, message: str, data: Any = None) -> None:
        err: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        await self._send({"jsonrpc": "2.0", "id": rid, "error": err})

    async def close(self) -> None:
        self._reading.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.ws.close()
        if not self._reader.done():
            self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def write_file(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


__all__ = [
    "TIMEOUT",
    "Exited",
    "RpcError",
    "SidecarProcess",
    "WsClient",
    "child_env",
    "error_field",
    "error_of",
    "run_to_exit",
    "sidecar_cmd",
    "write_file",
]
