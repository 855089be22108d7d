"""The Lifeline ends the process within its bounds whatever the loop does.

The exit and the rescue are stand-ins; the threads and clocks are real (with
short bounds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from taskmill.server.lifeline import Lifeline


class Ended:
    def __init__(self) -> None:
        self.code: int | None = None
        self.event = threading.Event()
        self.rescued = 0

    def exit(self, code: int) -> None:
        self.code = code
        self.event.set()

    def rescue(self) -> int:
        self.rescued += 1
        return 2


def make(
    ended: Ended, call_on_loop: Callable[[Callable[[], None]], object], **kw: float
) -> Lifeline:
    return Lifeline(
        call_on_loop=call_on_loop,
        request_shutdown=lambda mode: None,
        rescue=ended.rescue,
        drain_timeout_s=kw.get("drain", 0.1),
        exit=ended.exit,
        loop_response_s=kw.get("response", 0.1),
        grace_s=kw.get("grace", 0.1),
    )


def test_a_loop_that_never_acts_ends_the_process_after_the_response_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ended = Ended()
    life = make(ended, lambda fn: None)  # the loop is blocked: callbacks never run
    life.begin("graceful", "parent gone")
    assert ended.event.wait(5)
    assert ended.code == 0 and ended.rescued == 1
    assert "blocks the event loop" in capsys.readouterr().err


def test_a_shutdown_that_overruns_the_drain_plus_grace_is_ended() -> None:
    ended = Ended()
    life = make(ended, lambda fn: fn())  # responsive loop, but the shutdown never finishes
    life.begin("graceful", "SIGTERM")
    assert ended.event.wait(5)
    assert ended.rescued == 1


def test_a_finished_shutdown_is_left_alone() -> None:
    ended = Ended()
    life = make(ended, lambda fn: fn(), drain=0.2)
    life.begin("graceful")
    life.finished.set()
    assert not ended.event.wait(0.6)


def test_a_failed_rescue_exits_1_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    ended = Ended()

    def broken() -> int:
        raise OSError("disk gone")

    life = make(ended, lambda fn: None)
    life._rescue = broken
    life.begin()
    assert ended.event.wait(5)
    assert ended.code == 1
    assert "the next start will" in capsys.readouterr().err


def test_it_arms_once() -> None:
    ended = Ended()
    calls: list[int] = []

    def call_on_loop(fn: Callable[[], None]) -> None:
        calls.append(1)
        fn()

    life = make(ended, call_on_loop, drain=0.2)
    life.begin()
    life.begin()
    life.finished.set()
    assert calls == [1, 1] and not ended.event.wait(0.5)
