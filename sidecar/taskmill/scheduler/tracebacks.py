"""Where task code failed: a short traceback of the app's own frames.

An exception in an executor reaches the developer as its event and history
record, often inside a Tauri app with no console. ``"KeyError: 'path'"``
alone does not say where; the full traceback is mostly taskmill's and
asyncio's frames. :func:`task_traceback` keeps the frames of the task's own
code (the innermost :data:`MAX_FRAMES`) and the exception line, bounded to
:data:`MAX_CHARS`, for the ``traceback`` field of failure events and records
and for the warning logged on stderr.
"""

from __future__ import annotations

import os
import traceback

__all__ = ["MAX_CHARS", "MAX_FRAMES", "task_traceback"]

#: Frames kept (the innermost ones: where it failed).
MAX_FRAMES = 12
#: Characters kept (the end: the frames nearest the failure and the error).
MAX_CHARS = 4000

_TASKMILL = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_RUNTIME = (
    os.sep + os.path.join("asyncio", ""),
    os.sep + os.path.join("concurrent", "futures", ""),
    os.sep + "threading.py",
    os.sep + "contextvars",
)


def _own(filename: str) -> bool:
    """True for frames of taskmill and of the runtime that runs the task."""
    return filename.startswith(_TASKMILL) or any(part in filename for part in _RUNTIME)


def task_traceback(exc: BaseException) -> str | None:
    """The task code's frames and the exception, or None when there are none
    (an error made by taskmill itself, e.g. no executor, a result that cannot
    be stored)."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not _own(f.filename)]
    if not user:
        return None
    text = "Traceback (most recent call last):\n"
    text += "".join(traceback.format_list(user[-MAX_FRAMES:]))
    text += "".join(traceback.format_exception_only(type(exc), exc))
    if len(text) > MAX_CHARS:
        text = "...\n" + text[-(MAX_CHARS - 4) :]
    return text.rstrip("\n")
