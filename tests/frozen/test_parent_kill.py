"""A SIGKILLed host must not leave the frozen sidecar behind.

tests/frozen/host.py plays the app: it spawns the sidecar with pipes and
``--parent-pid``, reports the ready line, and sleeps. The test SIGKILLs it,
then times how long the sidecar takes to exit: for onefile both the
bootloader (the pid the host launched) and the real interpreter (the ``pid``
of the ready line), and the bootloader must remove its ``_MEI`` folder.

- ``stdin_eof``: the host held the sidecar's stdin; its death closes the pipe.
- ``watchdog``: someone else (this test) holds stdin open, so only the
  parent-pid watchdog (polls every 0.5 s) can notice.
- ``busy``: as ``stdin_eof``, with a long task running and
  ``--drain-timeout-ms 500`` (the default drain would wait up to 10 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.frozen.conftest import frozen_exe

HOST = Path(__file__).with_name("host.py")
LIMIT_S = 2.0


def gone(pid: int) -> bool:
    """Exited (a zombie counts: whoever adopted it may not reap it at once)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and _MEI checks are POSIX")
@pytest.mark.parametrize("how", ["stdin_eof", "watchdog", "busy"])
@pytest.mark.parametrize("kind", ["onedir", "onefile"])
def test_sidecar_exits_when_its_host_is_killed(kind: str, how: str, tmp_path: Path) -> None:
    exe = frozen_exe(kind)
    args = [sys.executable, str(HOST), exe, str(tmp_path / "t.db")]
    held_r, held_w = os.pipe()
    if how == "watchdog":
        args += ["--stdin-fd", str(held_r)]
    elif how == "busy":
        args.append("--busy")
    host = subprocess.Popen(args, stdout=subprocess.PIPE, pass_fds=(held_r,))
    os.close(held_r)
    pids: list[int] = []
    try:
        assert host.stdout is not None
        report = json.loads(host.stdout.readline())
        real, launched = report["ready"]["pid"], report["launched"]
        pids = sorted({real, launched})
        assert (real == launched) == (kind == "onedir")
        mei = psutil.Process(real).environ().get("_PYI_APPLICATION_HOME_DIR")
        assert (mei is not None) == (kind == "onefile")

        killed_at = time.monotonic()
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        while not all(gone(p) for p in pids) and time.monotonic() - killed_at < 10:
            time.sleep(0.01)
        took = time.monotonic() - killed_at
        print(f"\n{kind}/{how}: the sidecar exited {took:.2f} s after its host was killed")
        assert all(gone(p) for p in pids), f"still running after {took:.1f} s: {pids}"
        assert took < LIMIT_S
        if mei is not None:
            assert not os.path.exists(mei), f"the bootloader left {mei} behind"
    finally:
        os.close(held_w)
        for p in pids:
            if not gone(p):
                os.kill(p, signal.SIGKILL)
        if host.poll() is None:
            host.kill()
            host.wait()
