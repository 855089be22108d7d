"""The fs built-ins (``--fs-root DIR``): hash, copy, scan, confined to the roots."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import Spawn
from tests.e2e.harness import SidecarProcess, error_of, run_to_exit, write_file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
async def fs(spawn: Spawn, root: Path) -> SidecarProcess:
    sc = await spawn("--fs-root", str(root))
    await sc.subscribe(domains=["fs"])
    return sc


async def test_fs_types_are_declared_with_a_root(fs: SidecarProcess) -> None:
    info = {t["task_type"]: t for t in (await fs.result("sidecar.info"))["task_types"]}
    for name in ("fs::hash", "fs::copy", "fs::scan"):
        assert info[name]["executor"] == "python" and info[name]["domain"] == "fs"


async def test_hash_gives_digest_size_and_records_the_read(fs: SidecarProcess, root: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    f = write_file(root / "sub" / "big.bin", data)
    tid = await fs.submit("fs::hash", {"path": str(f)})
    done = await fs.wait_done(tid)
    assert done["kind"] == "completed", done
    res = done["result"]
    assert res["digest"] == hashlib.sha256(data).hexdigest()
    assert res["size"] == len(data) and res["algorithm"] == "sha256"
    rec = await fs.result("task.get", {"id": tid})
    assert rec["actual_io"]["disk_read"] == len(data)
    hist = await fs.result("history.list", {"task_type": "fs::hash"})
    assert hist["tasks"][0]["actual_io"]["disk_read"] == len(data)
    # A relative path is taken from the (single) root; another algorithm works too.
    t2 = await fs.submit("fs::hash", {"path": "sub/big.bin", "algorithm": "md5"})
    assert (await fs.wait_done(t2))["result"]["digest"] == hashlib.md5(data).hexdigest()


async def test_copy_writes_dst_and_respects_overwrite(fs: SidecarProcess, root: Path) -> None:
    data = os.urandom(200_000)
    src = write_file(root / "a.bin", data)
    dst = root / "copy" / "b.bin"
    dst.parent.mkdir()
    tid = await fs.submit("fs::copy", {"src": str(src), "dst": str(dst)})
    done = await fs.wait_done(tid)
    assert done["kind"] == "completed" and done["result"] == {"bytes": len(data)}
    assert dst.read_bytes() == data
    rec = await fs.result("task.get", {"id": tid})
    assert rec["actual_io"]["disk_read"] == len(data)
    assert rec["actual_io"]["disk_write"] == len(data)
    # The destination exists now: refused without overwrite (permanently), dst untouched.
    write_file(src, b"new content")
    t2 = await fs.submit("fs::copy", {"src": str(src), "dst": str(dst)})
    failed = await fs.wait_done(t2)
    assert failed["kind"] == "failed" and failed["retryable"] is False
    assert "exists" in failed["error"]
    assert dst.read_bytes() == data
    t3 = await fs.submit("fs::copy", {"src": str(src), "dst": str(dst), "overwrite": True})
    assert (await fs.wait_done(t3))["kind"] == "completed"
    assert dst.read_bytes() == b"new content"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["b.bin"], "no temp file left"


async def test_scan_with_hash_spawns_children_and_finalize_returns_digests(
    fs: SidecarProcess, root: Path
) -> None:
    files = {
        root / "photos" / "a.jpg": b"aaa" * 1000,
        root / "photos" / "2024" / "b.jpg": b"bbb" * 2000,
        root / "docs" / "c.txt": b"c",
    }
    for path, data in files.items():
        write_file(path, data)
    tid = await fs.submit("fs::scan", {"root": str(root), "hash": True})
    done = await fs.wait_done(tid, timeout=20)
    assert done["kind"] == "completed", done
    res = done["result"]
    assert res["files"] == 3
    assert res["bytes"] == sum(len(d) for d in files.values())
    expected = {str(p.resolve()): hashlib.sha256(d).hexdigest() for p, d in files.items()}
    assert res["digests"] == expected
    children = [e for e in fs.events if e.get("parent_id") == tid and e["kind"] == "completed"]
    assert len(children) == 3
    assert {e["task_type"] for e in children} == {"fs::hash"}
    # Only matching files with a pattern, and without hash no children.
    t2 = await fs.submit("fs::scan", {"root": str(root), "pattern": "*.jpg"})
    r2 = (await fs.wait_done(t2))["result"]
    assert sorted(Path(p).name for p in r2["files"]) == ["a.jpg", "b.jpg"]
    assert not [e for e in fs.events if e.get("parent_id") == t2]


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
async def test_paths_outside_the_root_fail_permanently(
    fs: SidecarProcess, root: Path, tmp_path: Path, where: str
) -> None:
    outside = write_file(tmp_path / "outside" / "secret.txt", b"secret")
    if where == "dotdot":
        path = "../outside/secret.txt"
    elif where == "absolute":
        path = str(outside)
    else:
        link = root / "innocent.txt"
        link.symlink_to(outside)
        path = str(link)
    tid = await fs.submit("fs::hash", {"path": path})
    ev = await fs.wait_done(tid)
    assert ev["kind"] == "failed", ev
    assert ev["retryable"] is False and ev["will_retry"] is False
    assert "outside" in ev["error"]
    rec = await fs.result("task.get", {"id": tid})
    assert rec["status"] == "failed" and rec["retry_count"] == 0
    assert not [e for e in fs.events if e.get("task_id") == tid and e.get("will_retry")]
    # Copying out of (or into) the root is refused the same way.
    inside = write_file(root / "in.txt", b"in")
    t2 = await fs.submit("fs::copy", {"src": str(inside), "dst": str(tmp_path / "stolen.txt")})
    assert (await fs.wait_done(t2))["kind"] == "failed"
    assert not (tmp_path / "stolen.txt").exists()


async def test_without_fs_root_the_fs_types_are_not_declared(sidecar: SidecarProcess) -> None:
    info = await sidecar.result("sidecar.info")
    assert not [t for t in info["task_types"] if t["domain"] == "fs"]
    resp = await sidecar.error("task.submit", {"task_type": "fs::hash", "payload": {"path": "x"}})
    assert error_of(resp) == (-32003, "unknown_task_type")


async def test_fs_root_that_is_not_a_folder_exits_2(tmp_path: Path) -> None:
    done = await run_to_exit(
        "--stdio", "--db", str(tmp_path / "x.db"), "--fs-root", str(tmp_path / "missing")
    )
    assert done.code == 2
    assert "--fs-root" in done.stderr
