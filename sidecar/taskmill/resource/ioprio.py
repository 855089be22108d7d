"""The operating system's IO priority for one thread: best-effort, a cheap complement.

:func:`background_io` lowers the IO priority of the calling thread for the
duration of a ``with`` block and puts back what it was:

- **Linux**: ``ioprio_set(IOPRIO_WHO_PROCESS, 0, BE/7)`` (the lowest level
  of the best-effort class; ``0`` is the calling thread). Not the idle class:
  an idle-class thread can starve while it holds a file system lock that the
  foreground then waits for.
- **macOS**: ``setiopolicy_np(IOPOL_TYPE_DISK, IOPOL_SCOPE_THREAD,
  IOPOL_THROTTLE)``.
- **Windows**: ``SetThreadPriority(GetCurrentThread(),
  THREAD_MODE_BACKGROUND_BEGIN)`` (lowers CPU and IO priority), ended by
  ``THREAD_MODE_BACKGROUND_END``.

Whether the device honours it is another matter: the Linux IO schedulers
``bfq`` and ``mq-deadline`` do, ``none`` does not, and a virtual disk's host
may ignore it altogether. On the virtual disk taskmill's benchmark ran on,
it changed nothing measurable; pacing the bytes (:mod:`.pacer`) is what
protects the foreground. A call that fails is logged once and the block runs
as it would have.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import platform
import sys
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = [
    "DarwinIoPriority",
    "IoPriority",
    "LinuxIoPriority",
    "WindowsIoPriority",
    "background_io",
    "platform_io_priority",
]

log = logging.getLogger(__name__)

# Linux <linux/ioprio.h>
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_BE = 2
IOPRIO_BACKGROUND = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7
#: (ioprio_set, ioprio_get) system call numbers by machine.
LINUX_SYSCALLS = {
    "x86_64": (251, 252),
    "amd64": (251, 252),
    "i386": (289, 290),
    "i686": (289, 290),
    "aarch64": (30, 31),
    "arm64": (30, 31),
    "riscv64": (30, 31),
    "armv7l": (314, 315),
    "armv6l": (314, 315),
}

# macOS <sys/resource.h>
IOPOL_TYPE_DISK = 0
IOPOL_SCOPE_THREAD = 1
IOPOL_THROTTLE = 3

# Windows <processthreadsapi.h>
THREAD_MODE_BACKGROUND_BEGIN = 0x00010000
THREAD_MODE_BACKGROUND_END = 0x00020000


class IoPriority(Protocol):
    """Lowers the calling thread's IO priority and restores it."""

    def lower(self) -> object:
        """Lower it; return what :meth:`restore` needs (None: nothing changed)."""
        ...

    def restore(self, token: object) -> None: ...


class LinuxIoPriority:
    """``ioprio_set``/``ioprio_get`` through ``syscall(2)``.

    Args:
        libc: An object with ``syscall(number, *args) -> int`` (ctypes libc).
        numbers: ``(ioprio_set, ioprio_get)`` for this machine.
    """

    def __init__(self, libc: Any, numbers: tuple[int, int]) -> None:
        self._libc = libc
        self._set, self._get = numbers

    def lower(self) -> object:
        old = int(self._libc.syscall(self._get, IOPRIO_WHO_PROCESS, 0))
        if old < 0:
            raise OSError(ctypes.get_errno(), "ioprio_get failed")
        if old == IOPRIO_BACKGROUND:
            return None
        if self._libc.syscall(self._set, IOPRIO_WHO_PROCESS, 0, IOPRIO_BACKGROUND) != 0:
            raise OSError(ctypes.get_errno(), "ioprio_set failed")
        return old

    def restore(self, token: object) -> None:
        if isinstance(token, int):
            self._libc.syscall(self._set, IOPRIO_WHO_PROCESS, 0, token)


class DarwinIoPriority:
    """``getiopolicy_np``/``setiopolicy_np`` for the calling thread.

    Args:
        libc: An object with ``getiopolicy_np`` and ``setiopolicy_np`` (ctypes libc).
    """

    def __init__(self, libc: Any) -> None:
        self._libc = libc

    def lower(self) -> object:
        old = int(self._libc.getiopolicy_np(IOPOL_TYPE_DISK, IOPOL_SCOPE_THREAD))
        if old < 0:
            raise OSError(ctypes.get_errno(), "getiopolicy_np failed")
        if old == IOPOL_THROTTLE:
            return None
        if self._libc.setiopolicy_np(IOPOL_TYPE_DISK, IOPOL_SCOPE_THREAD, IOPOL_THROTTLE) != 0:
            raise OSError(ctypes.get_errno(), "setiopolicy_np failed")
        return old

    def restore(self, token: object) -> None:
        if isinstance(token, int):
            self._libc.setiopolicy_np(IOPOL_TYPE_DISK, IOPOL_SCOPE_THREAD, token)


class WindowsIoPriority:
    """``SetThreadPriority`` with the background mode flags.

    Args:
        kernel32: An object with ``GetCurrentThread`` and ``SetThreadPriority``.
    """

    def __init__(self, kernel32: Any) -> None:
        self._k = kernel32

    def lower(self) -> object:
        handle = self._k.GetCurrentThread()
        if not self._k.SetThreadPriority(handle, THREAD_MODE_BACKGROUND_BEGIN):
            # ERROR_THREAD_MODE_ALREADY_BACKGROUND among others: nothing to undo.
            return None
        return True

    def restore(self, token: object) -> None:
        if token is True:
            self._k.SetThreadPriority(self._k.GetCurrentThread(), THREAD_MODE_BACKGROUND_END)


def platform_io_priority() -> IoPriority | None:
    """The backend for this platform, or None where there is none."""
    try:
        if sys.platform.startswith("linux"):
            numbers = LINUX_SYSCALLS.get(platform.machine().lower())
            if numbers is None:
                return None
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            return LinuxIoPriority(libc, numbers)
        if sys.platform == "darwin":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            return DarwinIoPriority(libc)
        if sys.platform == "win32":
            return WindowsIoPriority(ctypes.WinDLL("kernel32"))  # type: ignore[attr-defined,unused-ignore]
    except (OSError, AttributeError):
        log.debug("no IO priority on this platform", exc_info=True)
    return None


class _State:
    backend: IoPriority | None = None
    loaded = False
    warned = False


@contextlib.contextmanager
def background_io(backend: IoPriority | None = None) -> Iterator[None]:
    """Run the block with the calling thread's IO priority lowered (best-effort).

    Args:
        backend: The platform's (:func:`platform_io_priority`) when omitted.
    """
    if backend is None:
        if not _State.loaded:
            _State.backend = platform_io_priority()
            _State.loaded = True
        backend = _State.backend
    if backend is None:
        yield
        return
    try:
        token = backend.lower()
    except OSError:
        if not _State.warned:
            _State.warned = True
            log.info("cannot lower the IO priority of executor threads", exc_info=True)
        token = None
    try:
        yield
    finally:
        if token is not None:
            backend.restore(token)
