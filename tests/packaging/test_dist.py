"""The Python distribution others depend on (issue 17): ``python -m build``
makes an sdist and a wheel (the wheel built from the sdist, so the sdist is
complete), and each installs into a clean venv, outside this repository, where
``taskmill-sidecar --version`` and a stdio exchange work and ``import
taskmill`` comes from the venv.

Installing needs the runtime dependencies from the package index (pip's cache
makes a rerun quick). ``make test-package`` runs this file; a plain pytest run
skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

import taskmill

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TASKMILL_TEST_PACKAGING"),
        reason="builds and installs the distribution: run `make test-package`",
    ),
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def test_the_wheel_holds_the_package_data_and_nothing_else(dist: Path) -> None:
    wheel = only(list(dist.glob("*.whl")))
    assert wheel.name == f"taskmill-{taskmill.__version__}-py3-none-any.whl"
    info = f"taskmill-{taskmill.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert "taskmill/py.typed" in names
    assert "taskmill/store/migrations/0001_initial.sql" in names
    assert {n.split("/")[0] for n in names} == {"taskmill", info}
    assert "License-Expression: MIT" in metadata
    assert f"{info}/licenses/LICENSE" in names or f"{info}/LICENSE" in names
    assert "taskmill-sidecar = taskmill.cli:main" in entry_points


def test_the_sdist_holds_the_documents(dist: Path) -> None:
    sdist = only(list(dist.glob("*.tar.gz")))
    top = f"taskmill-{taskmill.__version__}"
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
    for doc in ("LICENSE", "CHANGELOG.md", "README.md", "taskmill.example.toml", "pyproject.toml"):
        assert f"{top}/{doc}" in names, doc
    assert f"{top}/sidecar/taskmill/store/migrations/0001_initial.sql" in names
    assert not any(n.startswith((f"{top}/tests/", f"{top}/bench/", f"{top}/build/")) for n in names)


def venv_with(artifact: Path, where: Path) -> Path:
    """A clean venv (no system site-packages) with ``artifact`` pip-installed."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    bindir = where / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "-q", str(artifact)],
        check=True,
        timeout=600,
    )
    return bindir


def stdio_exchange(sidecar: Path, cwd: Path) -> list[dict[str, Any]]:
    """Ready line, an echo task and its completion, then a clean exit on stdin EOF."""
    subscribe = {"filter": {"kinds": ["completed"]}}
    submit = {"task_type": "demo::echo", "payload": {"n": 1}}
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": subscribe},
        {"jsonrpc": "2.0", "id": 2, "method": "task.submit", "params": submit},
    ]
    proc = subprocess.Popen(
        [str(sidecar), "--stdio", "--demo", "--db", str(cwd / "t.db"), "--no-resource-monitoring"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        messages: list[dict[str, Any]] = [json.loads(proc.stdout.readline())]
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        while not any(m.get("params", {}).get("kind") == "completed" for m in messages):
            line = proc.stdout.readline()
            assert line, f"stdout closed; stderr: {proc.stderr.read() if proc.stderr else ''}"
            messages.append(json.loads(line))
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0
        return messages
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installs_into_a_clean_venv_and_runs(dist: Path, tmp_path: Path, kind: str) -> None:
    artifact = only(list(dist.glob("*.whl" if kind == "wheel" else "*.tar.gz")))
    bindir = venv_with(artifact, tmp_path / "venv")
    scratch = tmp_path / "elsewhere"
    scratch.mkdir()

    version = subprocess.run(
        [str(bindir / "taskmill-sidecar"), "--version"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=scratch,
    )  # fmt: skip
    assert version.returncode == 0
    assert version.stdout.strip() == f"taskmill {taskmill.__version__}"  # on stdout

    where = subprocess.run(
        [str(bindir / "python"), "-c", "import taskmill; print(taskmill.__file__)"],
        capture_output=True, text=True, check=True, timeout=TIMEOUT, cwd=scratch,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(tmp_path / "venv"), where

    messages = stdio_exchange(bindir / "taskmill-sidecar", scratch)
    assert messages[0]["method"] == "sidecar.ready"
    done = next(m for m in messages if m.get("params", {}).get("kind") == "completed")
    assert done["params"]["result"] == {"n": 1}
