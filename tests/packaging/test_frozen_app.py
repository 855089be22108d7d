"""Freezing your own tasks (issue 17): ``build/build.py --app`` with an app that
needs a third-party package.

- The package missing: the build fails within seconds, naming it, before
  PyInstaller runs.
- The package installed where the build's Python sees it: the same command
  (no ``--force``) builds, and the frozen binary runs the task with no
  ``--app`` on its command line (the apps are frozen in as its defaults).
- A package imported by a computed name (invisible to PyInstaller): the
  build fails after PyInstaller, because the built binary cannot import the
  app (``--check``), naming the module and ``--hidden-import``; with
  ``--hidden-import`` it builds and runs.

The fixture package (``fixtures/thumbkit``, standing in for Pillow) is
pip-installed into a scratch folder put on ``PYTHONPATH`` for the builds, so
the shared venv is never changed. The builds go to build/cache/test-out and
are cached like any other (about 10 s each when they run; ``make
test-frozen-apps`` runs this file).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.frozen.conftest import Sidecar

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "build.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
APPS = FIXTURES / "apps"
OUT = ROOT / "build" / "cache" / "test-out"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TASKMILL_TEST_FROZEN_APPS"),
        reason="builds frozen binaries: run `make test-frozen-apps`",
    ),
]


def build(*args: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run build.py; ``site`` (the installed package) goes on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, str(BUILD), "--out", str(OUT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder; ``install(site)`` pip-installs thumbkit into it."""
    return tmp_path_factory.mktemp("site")


def install(site: Path, scratch: Path) -> None:
    """pip-install the fixture package (from a copy: setuptools builds in-tree)."""
    source = scratch / "thumbkit-src"
    shutil.copytree(FIXTURES / "thumbkit", source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), source],
        check=True,
        timeout=300,
    )


def run_task(exe: str, db: Path, task_type: str, payload: Any) -> dict[str, Any]:
    """Start the binary with no --app, run one task, return its terminal event."""
    sc = Sidecar(exe, "--db", str(db), "--no-resource-monitoring")
    try:
        assert task_type in sc.ready["params"]["task_types"], sc.ready
        sc.call("events.subscribe", filter={"kinds": ["completed", "failed", "dead_lettered"]})
        task_id = sc.call("task.submit", task_type=task_type, payload=payload)["id"]
        event = sc.next(lambda m: m.get("method") == "event" and m["params"]["task_id"] == task_id)
        assert sc.close() == 0
        return dict(event["params"])
    finally:
        sc.kill()


def test_missing_package_fails_the_build_then_installed_it_runs_frozen(
    site: Path, tmp_path: Path
) -> None:
    app = ["--app", "thumbs.tasks:domain", "--app-path", str(APPS), "--name", "thumbs-test"]

    started = time.monotonic()
    failed = build(*app)
    took = time.monotonic() - started
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout == ""
    assert "No module named 'thumbkit'" in failed.stderr, failed.stderr
    assert "install the package that provides 'thumbkit'" in failed.stderr, failed.stderr
    assert "building onedir" not in failed.stderr, "failed before PyInstaller ran"
    assert took < 30, took

    install(site, tmp_path)
    built = build(*app, site=site)  # the same command: no --force
    assert built.returncode == 0, built.stderr
    exe = built.stdout.strip()
    assert Path(exe).is_file(), built.stdout

    # The frozen binary loads the app without --app, from any folder.
    check = subprocess.run(
        [exe, "--check"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert check.returncode == 0, check.stderr
    assert "thumbs::fit" in check.stdout
    event = run_task(exe, tmp_path / "t.db", "thumbs::fit", {"width": 640, "height": 480})
    assert event["kind"] == "completed", event
    assert event["result"] == {"width": 256, "height": 192, "thumbkit": "1.2.0"}


def test_a_module_pyinstaller_cannot_see_fails_the_build_until_hidden_import(
    site: Path, tmp_path: Path
) -> None:
    if not any(site.iterdir()):
        install(site, tmp_path)
    app = ["--app", "lazythumbs.tasks:domain", "--app-path", str(APPS), "--name", "lazy-test"]

    failed = build(*app, site=site)
    assert failed.returncode == 1, failed.stderr
    assert "building onedir" in failed.stderr  # it imports here: PyInstaller ran
    assert "cannot load its apps" in failed.stderr, failed.stderr
    assert "No module named 'thumbkit'" in failed.stderr
    assert "--hidden-import thumbkit" in failed.stderr
    assert failed.stdout == ""  # no path: scripts doing exe=$(build.py) see nothing

    built = build(*app, "--hidden-import", "thumbkit", site=site)
    assert built.returncode == 0, built.stderr
    exe = built.stdout.strip()
    event = run_task(exe, tmp_path / "t.db", "lazythumbs::fit", {"width": 100, "height": 400})
    assert event["kind"] == "completed", event
    assert event["result"] == {"width": 64, "height": 256, "backend": "thumbkit"}
