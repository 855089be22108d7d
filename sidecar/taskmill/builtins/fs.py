"""The ``fs`` domain: file work real apps need, confined to allowed roots.

It is off unless the sidecar is given ``--fs-root DIR`` (repeatable). Every
path is resolved (symlinks included) and must stay inside one of the roots,
so ``..``, absolute paths elsewhere and symlinks pointing out are refused.

- ``fs::hash {path, algorithm?: "sha256"}`` -> ``{digest, size, algorithm, path}``
- ``fs::copy {src, dst, overwrite?: false}`` -> ``{bytes}`` (temp file, then rename)
- ``fs::scan {root, pattern?: "*", hash?: false}`` -> ``{files, bytes}``; with
  ``hash`` it spawns one ``fs::hash`` child per file and finalize returns the
  digests.

Every byte ``hash`` and ``copy`` read or write goes through ``ctx.io`` (the
scheduler's pacer, steered by the latency target, and a bounded dirty
backlog), so they never make the user's own disk use wait.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import TaskError
from ..scheduler.context import TaskContext
from ..scheduler.domain import Domain

__all__ = ["FsRoots", "fs_domain"]

_CHUNK = 1 << 20
_ALGORITHMS = ("sha256", "sha1", "md5", "blake2b", "sha512")


class FsRoots:
    """The directories the ``fs`` executors may touch."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]]) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]

    def resolve(self, value: Any, field: str, *, must_exist: bool = True) -> Path:
        """Resolve a payload path and check it stays inside a root.

        Raises:
            TaskError: permanent, naming the field, when it escapes or is missing.
        """
        if not isinstance(value, str) or not value or "\0" in value:
            raise TaskError.permanent(f"payload.{field} must be a non-empty path string")
        raw = Path(value)
        if not raw.is_absolute():
            if len(self.roots) != 1:
                raise TaskError.permanent(
                    f"payload.{field}: relative paths need exactly one --fs-root"
                )
            raw = self.roots[0] / raw
        real = Path(os.path.realpath(raw))
        if not any(real == r or r in real.parents for r in self.roots):
            raise TaskError.permanent(f"payload.{field}: {value!r} is outside the allowed roots")
        if must_exist and not real.exists():
            raise TaskError.permanent(f"payload.{field}: {value!r} does not exist")
        return real


def _obj(payload: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise TaskError.permanent(f"{name}: the payload must be an object")
    return payload


def fs_domain(roots: Sequence[str | os.PathLike[str]]) -> Domain:
    """The ``fs`` domain confined to ``roots``."""
    allowed = FsRoots(roots)
    d = Domain("fs", state={FsRoots: allowed})

    def hash_file(payload: Any, ctx: TaskContext) -> Any:
        p = _obj(payload, "fs::hash")
        path = allowed.resolve(p.get("path"), "path")
        algorithm = p.get("algorithm", "sha256")
        if algorithm not in _ALGORITHMS:
            raise TaskError.permanent(f"payload.algorithm must be one of {', '.join(_ALGORITHMS)}")
        if not path.is_file():
            raise TaskError.permanent(f"payload.path: {p['path']!r} is not a regular file")
        h = hashlib.new(algorithm)
        size = path.stat().st_size
        done = 0
        with path.open("rb") as f:
            while chunk := ctx.io.read_sync(f, _CHUNK):
                h.update(chunk)
                done += len(chunk)
                ctx.progress.report_fraction(done, size)
        return {"digest": h.hexdigest(), "size": done, "algorithm": algorithm, "path": str(path)}

    def copy_file(payload: Any, ctx: TaskContext) -> Any:
        p = _obj(payload, "fs::copy")
        src = allowed.resolve(p.get("src"), "src")
        dst = allowed.resolve(p.get("dst"), "dst", must_exist=False)
        overwrite = p.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise TaskError.permanent("payload.overwrite must be a boolean")
        if not src.is_file():
            raise TaskError.permanent(f"payload.src: {p['src']!r} is not a regular file")
        if dst.exists() and not overwrite:
            raise TaskError.permanent(f"payload.dst: {p['dst']!r} exists (overwrite is false)")
        if not dst.parent.is_dir():
            raise TaskError.permanent(f"payload.dst: the folder of {p['dst']!r} does not exist")
        size = src.stat().st_size
        tmp = dst.with_name(f".{dst.name}.taskmill-{ctx.task_id}.part")
        done = 0
        try:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                while chunk := ctx.io.read_sync(fin, _CHUNK):
                    ctx.io.write_sync(fout, chunk)
                    done += len(chunk)
                    ctx.progress.report_fraction(done, size)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, dst)
        finally:
            ctx.io.remove_sync(tmp, missing_ok=True)  # left only by a failure
        return {"bytes": done}

    class Scan:
        """Walks a tree; with ``hash``, one ``fs::hash`` child per file."""

        async def execute(self, payload: Any, ctx: TaskContext) -> Any:
            p = _obj(payload, "fs::scan")
            root = allowed.resolve(p.get("root"), "root")
            pattern = p.get("pattern", "*")
            if not isinstance(pattern, str):
                raise TaskError.permanent("payload.pattern must be a string")
            if not root.is_dir():
                raise TaskError.permanent(f"payload.root: {p['root']!r} is not a folder")
            files, total = await asyncio.to_thread(_walk, root, pattern, ctx)
            if p.get("hash"):
                for path in files:
                    await ctx.spawn_child("fs::hash", {"path": path})
            return {"files": files, "bytes": total}

        async def finalize(self, payload: Any, memo: Any, ctx: TaskContext) -> Any:
            digests = {
                c["result"]["path"]: c["result"]["digest"]
                for c in ctx.children
                if c["status"] == "completed" and isinstance(c["result"], dict)
            }
            return {"files": len(memo["files"]), "bytes": memo["bytes"], "digests": digests}

    d.register("hash", hash_file)
    d.register("copy", copy_file)
    d.register("scan", Scan())
    return d


def _walk(root: Path, pattern: str, ctx: TaskContext) -> tuple[list[str], int]:
    files: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        ctx.check_cancelled()
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_symlink() or not fnmatch.fnmatch(name, pattern):
                continue
            files.append(str(full))
            total += full.stat().st_size
    return files, total
