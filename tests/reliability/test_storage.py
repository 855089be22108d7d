"""Storage faults (issue 10, part 3): full disk, locked database, corrupt or
foreign files, unreadable folders, and the WAL left behind by a kill.

Fault injection:

- **Disk full**: the database lives on a small tmpfs mounted for the test
  (root only; skipped, with the reason, where mounting is not permitted) and a
  ballast file fills it to the last page; deleting the ballast returns the space.
- **Locked**: another *process* holds ``BEGIN EXCLUSIVE`` on the database.
- **Unreadable/read-only folders**: permissions do not stop root, so as root
  the sidecar is started with ``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH`` and
  ``CAP_FOWNER`` dropped from its capability bounding set (``prctl`` in
  ``preexec_fn``): it is still uid 0 but file permissions now apply to it.
  (Switching to ``nobody`` is not an option here: the interpreter lives under
  ``/root``, which ``nobody`` cannot enter.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Exited, SidecarProcess, error_of, run_to_exit
from tests.reliability.common import wait_until

pytestmark = [pytest.mark.e2e]

MIB = 1 << 20
STORAGE_ERROR = -32007
#: A payload that needs ~900 KiB of new pages.
BIG = {"ms": 0, "pad": "z" * (900 * 1024)}


async def start(db: Path, *extra: str) -> SidecarProcess:
    return await SidecarProcess.start(
        "--stdio", "--demo", "--no-resource-monitoring", "--db", str(db), *extra
    )


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Disk full


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where``; always unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs to fill ({exc}); disk-full needs root or CAP_SYS_ADMIN")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill: {done.stderr.strip()} (needs root)")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """Write a ballast file until the file system is full; returns its path."""
    ballast = folder / "ballast"
    chunk = b"\xa5" * (64 * 1024)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (len(chunk), 4096, 1):
            while True:
                try:
                    if os.write(fd, chunk[:size]) < size:
                        break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return ballast


def wal_size(db: Path) -> int:
    """Bytes in the database's WAL file (0 when there is none)."""
    wal = Path(str(db) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_a_full_disk_refuses_writes_with_storage_error_keeps_queued_work_and_recovers(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "small", "6m") as mnt:
        db = mnt / "tasks.db"
        sc = await start(db, "--max-concurrency", "2")
        try:
            # Queued work: a paused group holds 40 tasks; two sleeps run.
            await sc.result("group.pause", {"group": "held"})
            queued = await sc.result(
                "task.submit_batch",
                {
                    "tasks": [
                        {"task_type": "demo::echo", "payload": {"i": i}, "group": "held"}
                        for i in range(40)
                    ]
                },
            )
            queued_ids = [o["id"] for o in queued["outcomes"]]
            sleepers = [
                await sc.submit("demo::sleep", {"ms": 1500, "steps": 3, "result": n})
                for n in range(2)
            ]
            for tid in sleepers:
                await sc.wait_status(tid, "running")

            ballast = fill(mnt)
            refusals = []
            for n in range(3):
                resp = await sc.call(
                    "task.submit",
                    {"task_type": "demo::sleep", "payload": BIG, "key": f"big{n}"},
                    timeout=30,
                )
                refusals.append(resp)
            for resp in refusals:
                assert error_of(resp) == (STORAGE_ERROR, "storage_error"), resp
                assert "full" in resp["error"]["message"], resp

            # The sleepers finish while the disk is full. Recording that needs
            # a few pages: it fails (the turn is retried with a backoff) unless
            # the WAL still had room from the refused writes. Either is fine.
            async def settled() -> str | None:
                if "dispatch turn failed" in sc.stderr_text():
                    return "a dispatch turn failed and is retried"
                recs = [await sc.result("task.get", {"id": t}) for t in sleepers]
                if all(r["status"] == "completed" for r in recs):
                    return "the completions fitted in the WAL"
                return None

            how = await wait_until(settled, 20, "the sleepers to finish")
            assert sc.proc.returncode is None
            listed = await sc.result("task.list", {"limit": 1000})
            by_id = {t["id"]: t for t in listed["tasks"]}
            for i, tid in enumerate(queued_ids):
                assert by_id[tid]["status"] == "paused" and by_id[tid]["payload"] == {"i": i}
            assert (await sc.result("task.lookup", {"task_type": "demo::sleep", "key": "big0"}))[
                "where"
            ] == "not_found"

            # Space returns: submissions and dispatch resume, nothing was lost.
            ballast.unlink()
            res = await sc.result(
                "task.submit",
                {"task_type": "demo::sleep", "payload": BIG, "key": "big-after"},
            )
            assert res["outcome"] == "inserted"
            await sc.result("group.resume", {"group": "held"})
            for tid in [*queued_ids, *sleepers, res["id"]]:
                await sc.wait_status(tid, "completed", timeout=30)
            for n, tid in enumerate(sleepers):
                assert (await sc.result("task.get", {"id": tid}))["result"] == n
            assert await sc.shutdown(30) == 0
            assert not [line for line in sc.stderr_lines if "Traceback" in line], sc.stderr_text()
        finally:
            await sc.kill()
        assert integrity(db) == "ok"
        print(
            f"disk full: {len(refusals)} submissions refused with -32007, 40 queued tasks "
            f"intact, running tasks finished ({how}), all done once space returned"
        )


# --------------------------------------------------------------------------
# Locked by another process

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


@pytest.mark.slow
async def test_a_database_locked_by_another_process_gives_storage_error_then_recovers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    sc = await start(db)
    holder = None
    try:
        first = await sc.submit("demo::echo", "before")
        await sc.wait_status(first, "completed")
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLD_LOCK,
            str(db),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert holder.stdout is not None and holder.stdin is not None
        async with asyncio.timeout(10):
            assert (await holder.stdout.readline()).strip() == b"locked"

        started = time.monotonic()
        pending = asyncio.ensure_future(
            sc.call("task.submit", {"task_type": "demo::echo", "payload": "during"}, timeout=30)
        )
        # While the write waits for the lock, the sidecar keeps answering.
        t0 = time.monotonic()
        assert (await sc.result("sidecar.info", timeout=5))["protocol"] == 1
        info_latency = time.monotonic() - t0
        resp = await pending
        waited = time.monotonic() - started
        assert error_of(resp) == (STORAGE_ERROR, "storage_error"), resp
        assert "locked" in resp["error"]["message"], resp
        assert 4.0 <= waited <= 12.0, waited
        assert info_latency < 2.0, info_latency

        holder.stdin.write(b"go\n")
        await holder.stdin.drain()
        async with asyncio.timeout(10):
            assert (await holder.stdout.readline()).strip() == b"released"
        after = await sc.submit("demo::echo", "after")
        await sc.wait_status(after, "completed")
        assert await sc.shutdown() == 0
        print(f"locked: -32007 after {waited:.1f}s, sidecar.info answered in {info_latency:.3f}s")
    finally:
        if holder is not None and holder.returncode is None:
            holder.kill()
            await holder.wait()
        await sc.kill()
    assert integrity(db) == "ok"


# --------------------------------------------------------------------------
# Corrupt, truncated, foreign and newer databases


@pytest.fixture
async def real_db(tmp_path: Path) -> Path:
    """A real taskmill database (queued tasks, several pages), cleanly closed."""
    db = tmp_path / "real" / "tasks.db"
    db.parent.mkdir()
    sc = await start(db)
    try:
        await sc.result("domain.pause", {"domain": "demo"})
        await sc.result(
            "task.submit_batch",
            {
                "tasks": [
                    {"task_type": "demo::echo", "payload": {"i": i, "pad": "p" * 400}}
                    for i in range(400)
                ]
            },
        )
        assert await sc.shutdown() == 0
    finally:
        await sc.kill()
    assert wal_size(db) == 0
    return db


def _truncate(p: Path) -> None:
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)


def _newer(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def _garbage_page(p: Path) -> None:
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.seek((size // 2) // 4096 * 4096)
        f.write(random.Random(7).randbytes(4096))


def _garbage_header(p: Path) -> None:
    with open(p, "r+b") as f:
        f.write(b"\0" * 100)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


DAMAGES = {
    "truncated": (_truncate, "malformed"),
    "newer-schema": (_newer, "newer"),
    "garbage-page": (_garbage_page, "malformed"),
    "garbage-header": (_garbage_header, "not a database"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_a_damaged_taskmill_database_exits_2_and_is_left_as_it_was(
    real_db: Path, damage: str
) -> None:
    fn, reason = DAMAGES[damage]
    db = real_db.with_name(f"{damage}.db")
    shutil.copy(real_db, db)
    fn(db)
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    done = await run_to_exit("--stdio", "--demo", "--db", str(db))
    assert done.code == 2, done
    assert done.stdout == b""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskmill-sidecar: "), done.stderr
    assert reason in lines[0], lines[0]
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert wal_size(db) == 0, "nothing may be written to the WAL"


async def test_an_empty_file_becomes_a_fresh_database(tmp_path: Path) -> None:
    # A zero-length file is a valid, empty SQLite database: it is adopted.
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    sc = await start(db)
    try:
        tid = await sc.submit("demo::echo", 1)
        await sc.wait_status(tid, "completed")
        assert await sc.shutdown() == 0
    finally:
        await sc.kill()


# --------------------------------------------------------------------------
# Unreadable and read-only folders

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def _drop_file_caps() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


async def run_confined(*args: str, timeout: float = 20) -> Exited:
    """Run the sidecar so that file permissions apply to it even as root."""
    drop = _drop_file_caps if os.geteuid() == 0 else None
    return await run_to_exit(*args, timeout=timeout, preexec_fn=drop)


def _can_confine(probe: Path) -> bool:
    probe.mkdir()
    probe.chmod(0)
    try:
        r = subprocess.run(
            [sys.executable, "-c", f"import os; os.listdir({str(probe)!r})"],
            preexec_fn=_drop_file_caps if os.geteuid() == 0 else None,
            capture_output=True,
            timeout=20,
        )
        return r.returncode != 0
    finally:
        probe.chmod(0o700)


@pytest.fixture
def confined(tmp_path: Path) -> None:
    if not _can_confine(tmp_path / "probe"):
        pytest.skip("cannot make file permissions apply to the sidecar (root without prctl)")


@pytest.mark.parametrize("case", ["unreadable-folder", "read-only-folder", "unreadable-file"])
async def test_a_folder_or_file_the_sidecar_may_not_use_exits_2(
    tmp_path: Path, real_db: Path, confined: None, case: str
) -> None:
    folder = tmp_path / case
    folder.mkdir()
    if case == "unreadable-folder":
        shutil.copy(real_db, folder / "tasks.db")
        mode, target = 0o000, folder
    elif case == "read-only-folder":
        # An existing database in a folder where the WAL cannot be created.
        shutil.copy(real_db, folder / "tasks.db")
        mode, target = 0o555, folder
    else:
        shutil.copy(real_db, folder / "tasks.db")
        mode, target = 0o000, folder / "tasks.db"
    db = folder / "tasks.db"
    before = db.read_bytes()
    old = stat.S_IMODE(target.stat().st_mode)
    target.chmod(mode)
    try:
        done = await run_confined("--stdio", "--demo", "--db", str(db))
    finally:
        target.chmod(old)
    assert done.code == 2, done
    assert done.stdout == b""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskmill-sidecar: "), done.stderr
    assert str(db) in lines[0] or "tasks.db" in lines[0], lines[0]
    assert db.read_bytes() == before
    # A new database in a read-only folder cannot be created either.
    if case == "read-only-folder":
        folder.chmod(0o555)
        try:
            fresh = await run_confined("--stdio", "--db", str(folder / "new.db"))
        finally:
            folder.chmod(0o755)
        assert fresh.code == 2 and fresh.stdout == b"", fresh
        assert not (folder / "new.db").exists()


# --------------------------------------------------------------------------
# A WAL left behind by a kill


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_every_acknowledged_submission_survives_a_kill_during_writes(
    tmp_path: Path, synchronous: str
) -> None:
    config = tmp_path / "taskmill.toml"
    config.write_text(f'[scheduler]\nsynchronous = "{synchronous}"\n')
    db = tmp_path / "tasks.db"
    rng = random.Random(11)
    acked: dict[str, int] = {}
    kills = 0
    wal_sizes = []
    for _ in range(5):
        sc = await start(db, "--config", str(config))
        try:
            await sc.result("domain.pause", {"domain": "demo"})  # keep them all queued

            async def writer(n: int, sc: SidecarProcess = sc, life: int = kills) -> None:
                i = 0
                while True:
                    key = f"w{life}-{n}-{i}"
                    res = await sc.result(
                        "task.submit",
                        {"task_type": "demo::echo", "payload": {"k": key}, "key": key},
                    )
                    acked[key] = res["id"]
                    i += 1

            writers = [asyncio.ensure_future(writer(n)) for n in range(8)]
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            wal_sizes.append(wal_size(db))
            sc.proc.kill()
            kills += 1
            for w in writers:
                w.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
        finally:
            await sc.kill()
    assert max(wal_sizes) > 0, "the kills never left a WAL behind"
    sc = await start(db, "--config", str(config))
    try:
        assert (await sc.result("sidecar.info"))["config"]["synchronous"] == synchronous
        listed = await sc.result("task.list", {"limit": 0})
        missing = []
        for key, tid in acked.items():
            found = await sc.result("task.lookup", {"task_type": "demo::echo", "key": key})
            if found["where"] == "not_found" or found["record"]["id"] != tid:
                missing.append(key)
        assert not missing, f"{len(missing)} acknowledged submissions lost: {missing[:10]}"
        assert listed["total"] >= len(acked)
        assert await sc.shutdown() == 0
    finally:
        await sc.kill()
    assert integrity(db) == "ok"
    print(
        f"WAL recovery ({synchronous}): {kills} kills during writes, {len(acked)} acknowledged "
        f"submissions all found, WAL at kill up to {max(wal_sizes)} bytes"
    )
