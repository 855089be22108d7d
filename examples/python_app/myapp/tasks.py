"""The ``photos`` domain: an app's own executors, loaded by the sidecar with

    python -m taskmill --app myapp.tasks:domain --app-path examples/python_app

or bundled into a custom frozen sidecar with build/build.py ``--app``.

- ``photos::hash {path}``: SHA-256 of a file, read in chunks.
- ``photos::thumbnail {path, out?, max_side?: 128}``: scales a binary PPM
  (P6, RGB) or PGM (P5, grey) image down with a box filter, in pure Python, and
  writes the thumbnail in the same format (default ``<path stem>.thumb.<ext>``).

Both are plain functions, so the sidecar runs them in a worker thread; both
report progress, record the bytes they read and write (the scheduler's IO
accounting and ``history.stats`` use these), and stop when cancelled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from taskmill import Domain, IoBudget, RetryPolicy, TaskContext, TaskError

domain = Domain("photos", default_priority="normal", default_retry=RetryPolicy(max_retries=2))

CHUNK = 256 * 1024


def _path(payload: Any, key: str = "path") -> Path:
    if not isinstance(payload, dict) or not isinstance(payload.get(key), str):
        raise TaskError.permanent(f"payload.{key} must be a file path")
    path = Path(payload[key])
    if not path.is_file():
        raise TaskError.permanent(f"{path} is not a file")
    return path


@domain.task("hash", priority="background", expected_io=IoBudget(disk_read=8 << 20))
def hash_file(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    path = _path(payload)
    size = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            ctx.check_cancelled()
            digest.update(chunk)
            done += len(chunk)
            ctx.record_read_bytes(len(chunk))
            ctx.progress.report_fraction(done, size, f"{done >> 10} KiB")
    return {"sha256": digest.hexdigest(), "size": size}


def _read_pnm(data: bytes) -> tuple[str, int, int, int, bytes]:
    """Parse a binary PGM/PPM header: (magic, width, height, channels, pixels)."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":  # a comment runs to the end of the line
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    magic, width, height, maxval = fields[0].decode(), *map(int, fields[1:])
    if magic not in ("P5", "P6") or maxval != 255:
        raise TaskError.permanent("only 8-bit binary PGM (P5) and PPM (P6) images are supported")
    channels = 3 if magic == "P6" else 1
    pixels = data[pos + 1 : pos + 1 + width * height * channels]
    if len(pixels) != width * height * channels:
        raise TaskError.permanent("the image is truncated")
    return magic, width, height, channels, pixels


@domain.task("thumbnail", priority="normal", max_concurrency=2)
def thumbnail(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    src = _path(payload)
    max_side = payload.get("max_side", 128)
    if not isinstance(max_side, int) or not 1 <= max_side <= 4096:
        raise TaskError.permanent("payload.max_side must be an integer within 1..4096")
    data = src.read_bytes()
    ctx.record_read_bytes(len(data))
    magic, w, h, ch, px = _read_pnm(data)
    step = max(1, -(-max(w, h) // max_side))  # ceil: each output pixel averages step x step
    tw, th = max(1, w // step), max(1, h // step)
    out = bytearray()
    for ty in range(th):
        ctx.check_cancelled()
        for tx in range(tw):
            for c in range(ch):
                total = 0
                for y in range(ty * step, ty * step + step):
                    row = (y * w + tx * step) * ch + c
                    total += sum(px[row : row + step * ch : ch])
                out.append(total // (step * step))
        ctx.progress.report_fraction(ty + 1, th, f"row {ty + 1}/{th}")
    dest = Path(payload.get("out") or src.with_suffix(".thumb" + src.suffix))
    header = f"{magic}\n{tw} {th}\n255\n".encode()
    dest.write_bytes(header + out)
    ctx.record_write_bytes(len(header) + len(out))
    return {"path": str(dest), "width": tw, "height": th, "source": [w, h]}
