"""The database lock: one scheduler per database, released with its holder."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from taskmill.errors import DatabaseInUse, StorageError
from taskmill.store.lock import DatabaseLock, holder_of, lock_path_for


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_url(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    first = DatabaseLock.acquire(db)
    try:
        first.describe(ws="ws://127.0.0.1:4242")
        with pytest.raises(DatabaseInUse) as info:
            DatabaseLock.acquire(db)  # a second open file description: refused
        err = info.value
        assert err.holder_pid == os.getpid() and err.holder_ws == "ws://127.0.0.1:4242"
        assert err.code == -32007 and db in err.message and f"pid {os.getpid()}" in err.message
        assert json.loads(Path(lock_path_for(db)).read_text()) == {
            "pid": os.getpid(),
            "ws": "ws://127.0.0.1:4242",
            "token": None,
        }
        assert os.stat(lock_path_for(db)).st_mode & 0o777 == 0o600
        assert holder_of(db) == (os.getpid(), "ws://127.0.0.1:4242", None)
    finally:
        first.release()
    assert holder_of(db) is None
    second = DatabaseLock.acquire(db)  # released: the next one gets it
    assert second.held
    second.release()
    second.release()  # idempotent
    assert not second.held
    assert Path(lock_path_for(db)).exists(), "the file stays (see the module docs)"


def test_of_simultaneous_takers_exactly_one_wins(tmp_path: Path) -> None:
    db = str(tmp_path / "race.db")
    barrier = threading.Barrier(8)
    won: list[DatabaseLock] = []
    lost: list[DatabaseInUse] = []

    def take() -> None:
        barrier.wait()
        try:
            won.append(DatabaseLock.acquire(db))
        except DatabaseInUse as exc:
            lost.append(exc)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    won[0].release()


def test_a_folder_that_cannot_hold_the_lock_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot create the lock file"):
        DatabaseLock.acquire(str(tmp_path / "no" / "such" / "x.db"))
