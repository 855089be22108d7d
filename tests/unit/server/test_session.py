"""A Session needs only a Host and a method table: no Sidecar, no transport."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from taskmill.protocol.codec import Decoded
from taskmill.protocol.params.session import ShutdownMode
from taskmill.protocol.params.tasks import IdParams, parse_id
from taskmill.protocol.params.workers import WorkerProgressParams, parse_worker_progress
from taskmill.server.session import Call, Methods, Sessions, bind, bind_notification


class NoWorkers:
    async def channel_closed(self, channel: object) -> None:
        return None


class FakeHost:
    def __init__(self) -> None:
        self.scheduler: Any = SimpleNamespace()
        self.workers: Any = NoWorkers()
        self.token = "t0k3n"
        self.closing = False
        self.shutdowns: list[tuple[ShutdownMode, int | None]] = []

    def info(self) -> dict[str, Any]:
        return {"version": "test"}

    def request_shutdown(
        self, mode: ShutdownMode = "graceful", timeout_ms: int | None = None
    ) -> None:
        self.shutdowns.append((mode, timeout_ms))

    def declare_type(self, task_type: str, config: Mapping[str, Any], source: str) -> None:
        raise AssertionError("not used")


class Out:
    def __init__(self) -> None:
        self.sent: list[Mapping[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, msg: Mapping[str, Any]) -> None:
        self.sent.append(msg)

    def backlog(self) -> int:
        return 0

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


async def get(call: Call, params: IdParams) -> dict[str, object]:
    return {"id": params.id, "host": call.host.info()["version"]}


progress: list[tuple[Call, WorkerProgressParams]] = []


def on_progress(call: Call, params: WorkerProgressParams) -> None:
    progress.append((call, params))


TABLE: Methods = {
    "task.get": bind(parse_id, get),
    "worker.progress": bind_notification(parse_worker_progress, on_progress),
}


async def exchange(host: FakeHost, *messages: dict[str, Any]) -> list[Mapping[str, Any]]:
    out = Out()
    session = Sessions(host, TABLE).open(out, transport="stdio", authenticated=True)
    for msg in messages:
        session.receive(Decoded({"jsonrpc": "2.0", **msg}))
    for _ in range(5):
        await asyncio.sleep(0)
    await session.close()
    return out.sent


async def test_a_request_reaches_its_handler_with_a_call() -> None:
    sent = await exchange(FakeHost(), {"id": 1, "method": "task.get", "params": {"id": 7}})
    assert sent == [{"jsonrpc": "2.0", "id": 1, "result": {"id": 7, "host": "test"}}]


async def test_unknown_method_suggests_a_near_name() -> None:
    (reply,) = await exchange(FakeHost(), {"id": 1, "method": "task.gett", "params": {}})
    assert reply["error"]["code"] == -32601
    assert "did you mean 'task.get'?" in reply["error"]["message"]


async def test_a_notification_method_sent_as_a_request_is_not_available() -> None:
    msg = {"id": 2, "method": "worker.progress", "params": {"task_id": 1, "percent": 0.5}}
    (reply,) = await exchange(FakeHost(), msg)
    assert reply["error"]["code"] == -32601
    assert "not available" in reply["error"]["message"]


async def test_a_closing_host_refuses_other_methods() -> None:
    host = FakeHost()
    host.closing = True
    (reply,) = await exchange(host, {"id": 3, "method": "task.get", "params": {"id": 1}})
    assert reply["error"]["data"]["kind"] == "shutting_down"


async def test_notifications_are_acted_on_at_once_and_never_answered() -> None:
    progress.clear()
    sent = await exchange(
        FakeHost(),
        {"method": "worker.progress", "params": {"task_id": 4, "percent": 0.25}},
        {"method": "worker.progress", "params": {"task_id": 4, "percent": 2}},  # refused
        {"method": "task.get", "params": {"id": 1}},  # a request method: ignored
    )
    assert sent == []
    assert [p.percent for _, p in progress] == [0.25]
