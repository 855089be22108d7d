"""Clocks that task code cannot stop: the process ends when it must.

Task code can block the event loop (a CPU loop, ``time.sleep`` in a
coroutine) and ignore cancellation. A shutdown that waits on the loop would
then never end, and a parent that died would leave the sidecar behind. So the
clocks live on threads:

- When shutdown is requested (a signal, stdin EOF, the parent gone,
  ``sidecar.shutdown``), :meth:`Lifeline.begin` arms a deadline thread. If
  the event loop does not act on the request within :data:`LOOP_RESPONSE_S`,
  or the whole shutdown is not over within the drain timeout plus
  :data:`GRACE_S`, the thread ends the process itself: running tasks go back
  to pending through a fresh database connection (the state a clean
  shutdown leaves), one line goes to stderr, and the process exits.
- The parent watchdog polls the parent's pid on its own thread and calls
  :meth:`Lifeline.begin`, so a blocked loop cannot hide the parent's death.

Signal handlers are installed with :func:`signal.signal`, not the loop's
``add_signal_handler``: Python runs them between bytecodes of the main
thread, even while a coroutine spins, so a SIGTERM always arms the deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..protocol.params.session import ShutdownMode

__all__ = ["GRACE_S", "LOOP_RESPONSE_S", "Lifeline"]

log = logging.getLogger(__name__)

#: Seconds the event loop has to act on a shutdown request before the
#: process ends without it.
LOOP_RESPONSE_S = 1.0

#: Seconds a shutdown may take beyond the drain timeout (stopping executions,
#: recording outcomes, closing the database) before the process ends anyway.
GRACE_S = 3.0

#: How often the parent watchdog looks for its parent.
PARENT_POLL_S = 0.25


class Lifeline:
    """Ends the process within a bound once shutdown starts, whatever the loop does.

    Args:
        call_on_loop: Schedules a callable on the event loop from any thread
            (``loop.call_soon_threadsafe``).
        request_shutdown: ``(mode) -> None``, run on the loop.
        rescue: Puts running tasks back to pending without the loop; returns
            how many (or raises).
        drain_timeout_s: The configured drain timeout.
        exit: How to end the process (``os._exit``; tests pass their own).
    """

    def __init__(
        self,
        *,
        call_on_loop: Callable[[Callable[[], None]], object],
        request_shutdown: Callable[[ShutdownMode], None],
        rescue: Callable[[], int],
        drain_timeout_s: float,
        exit: Callable[[int], object] = os._exit,
        loop_response_s: float = LOOP_RESPONSE_S,
        grace_s: float = GRACE_S,
    ) -> None:
        self._call_on_loop = call_on_loop
        self._request_shutdown = request_shutdown
        self._rescue = rescue
        self._exit = exit
        self.drain_timeout_s = drain_timeout_s
        self.loop_response_s = loop_response_s
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._armed = False
        self._acted = threading.Event()
        #: Set once the process is about to exit on its own (a clean shutdown).
        self.finished = threading.Event()

    def begin(
        self, mode: ShutdownMode = "graceful", why: str = "", timeout_s: float | None = None
    ) -> None:
        """Request a shutdown from any thread (or a signal handler) and arm the deadline."""
        self._arm(why, timeout_s)

        def on_loop() -> None:
            self._acted.set()
            self._request_shutdown(mode)

        try:
            self._call_on_loop(on_loop)
        except RuntimeError:  # the loop is closed: the process is exiting anyway
            self._acted.set()

    def acted(self) -> None:
        """The loop itself started the shutdown (``sidecar.shutdown``): it is responsive."""
        self._acted.set()

    def _arm(self, why: str, timeout_s: float | None) -> None:
        with self._lock:
            if self._armed:
                return
            self._armed = True
        drain = self.drain_timeout_s if timeout_s is None else timeout_s
        threading.Thread(
            target=self._deadline, args=(why, drain), name="taskmill-deadline", daemon=True
        ).start()

    def arm(self, why: str, timeout_s: float | None = None) -> None:
        """Arm the deadline for a shutdown the loop started itself."""
        self._acted.set()
        self._arm(why, timeout_s)

    def _deadline(self, why: str, drain_s: float) -> None:
        started = time.monotonic()
        if not self._acted.wait(self.loop_response_s):
            self._end(
                f"shutting down ({why or 'requested'}), but task code blocks the event "
                f"loop: it did not respond within {self.loop_response_s:g} s"
            )
            return
        left = drain_s + self.grace_s - (time.monotonic() - started)
        if not self.finished.wait(max(0.0, left)):
            self._end(
                f"shutdown did not finish within the drain timeout ({drain_s:g} s) plus "
                f"{self.grace_s:g} s: task code ignores cancellation"
            )

    def _end(self, reason: str) -> None:
        code = 0
        try:
            count = self._rescue()
            tail = f"; {count} running task(s) put back to pending"
        except Exception as exc:  # the next start recovers them instead
            code = 1
            tail = f"; could not put running tasks back to pending ({exc}): the next start will"
        try:
            sys.stderr.write(f"taskmill-sidecar: {reason}{tail}; exiting\n")
            sys.stderr.flush()
        finally:
            self._exit(code)

    def watch_parent(self, pid: int) -> threading.Thread:
        """Shut down when process ``pid`` is gone (polled on a thread of its own)."""
        import psutil

        def watch() -> None:
            while not self.finished.wait(PARENT_POLL_S):
                if not psutil.pid_exists(pid):
                    log.info("parent process %d is gone", pid)
                    self.begin("graceful", f"parent process {pid} is gone")
                    return

        thread = threading.Thread(target=watch, name="taskmill-parent-watchdog", daemon=True)
        thread.start()
        return thread

    def install_signals(self) -> None:
        """SIGTERM, SIGINT and SIGHUP shut down gracefully (main thread only)."""
        names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK")
        for name in names:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # not the main thread, or not on this OS
                pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.begin("graceful", signal.Signals(signum).name)
