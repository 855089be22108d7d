"""Fixtures for the end-to-end suite: real sidecar processes, killed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import SidecarProcess, WsClient, child_env

Spawn = Callable[..., Awaitable[SidecarProcess]]
WsConnect = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start sidecars: ``await spawn("--ws", db=path, demo=True, env=None)``.

    Resource monitoring is off unless ``monitoring=True``: the host's disk and
    memory load (other tests, other processes) would otherwise hold normal and
    background tasks at random. Every process started is SIGKILLed (if still
    alive) and reaped at teardown.
    """
    started: list[SidecarProcess] = []

    async def start(
        *extra: str,
        db: Path | str | None = None,
        demo: bool = True,
        env: dict[str, str] | None = None,
        ready_timeout: float = 20.0,
        monitoring: bool = False,
    ) -> SidecarProcess:
        args = ["--stdio"]
        if demo:
            args.append("--demo")
        if not monitoring:
            args.append("--no-resource-monitoring")
        args += ["--db", str(db or tmp_path / "x.db"), *extra]
        sc = await SidecarProcess.start(*args, env=env or child_env(), ready_timeout=ready_timeout)
        started.append(sc)
        return sc

    yield start
    for sc in started:
        await sc.kill()


@pytest.fixture
async def sidecar(spawn: Spawn) -> SidecarProcess:
    """A sidecar with the demo domain, spoken to over stdio."""
    return await spawn()


@pytest.fixture
async def ws_sidecar(spawn: Spawn) -> SidecarProcess:
    """A sidecar serving stdio and WebSocket."""
    return await spawn("--ws")


@pytest.fixture
async def ws_connect() -> AsyncIterator[WsConnect]:
    """Open WebSocket clients: ``await ws_connect(sidecar, encoding=..., hello=True)``."""
    opened: list[WsClient] = []

    async def open_client(
        target: SidecarProcess | str,
        *,
        encoding: str = "msgpack",
        origin: str | None = None,
        hello: bool = True,
        token: str | None = None,
        rcvbuf: int | None = None,
    ) -> WsClient:
        url = target if isinstance(target, str) else target.ws_url
        client = await WsClient.connect(url, encoding=encoding, origin=origin, rcvbuf=rcvbuf)
        opened.append(client)
        if hello:
            if token is None:
                assert isinstance(target, SidecarProcess)
                token = target.ws_token
            await client.hello(token)
        return client

    yield open_client
    for c in opened:
        await c.close()


@pytest.fixture(params=["msgpack", "json"])
def encoding(request: Any) -> str:
    """Both WebSocket encodings."""
    return str(request.param)
