"""The command as a newcomer meets it (issue 17): ``--help`` and ``--version``
on stdout, ``--check`` to try app modules without starting anything, app
modules named in the config file, and a near name suggested for a mistyped
task type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import taskmill

ROOT = Path(__file__).resolve().parents[2]
PYTHON_APP = ROOT / "examples" / "python_app"
TIMEOUT = 60


def sidecar(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskmill", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        timeout=TIMEOUT,
    )


def test_help_and_version_print_on_stdout(tmp_path: Path) -> None:
    version = sidecar("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (
        0,
        f"taskmill {taskmill.__version__}\n",
        "",
    )
    usage = sidecar("--help", cwd=tmp_path)
    assert usage.returncode == 0 and usage.stderr == ""
    assert usage.stdout.startswith("usage: taskmill-sidecar")
    assert "--check" in usage.stdout


def test_check_loads_the_apps_and_opens_no_database(tmp_path: Path) -> None:
    ok = sidecar(
        "--check", "--demo", "--app", "myapp.tasks:domain", "--app-path", str(PYTHON_APP),
        cwd=tmp_path,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "photos::thumbnail" in ok.stdout and "demo::sleep" in ok.stdout
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "broken.py").write_text("import thumbkit_not_installed\n")
    bad = sidecar("--check", "--app", "broken:domain", "--app-path", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "No module named 'thumbkit_not_installed'" in bad.stderr


def test_config_app_modules_are_loaded_relative_to_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    rel = os.path.relpath(PYTHON_APP, conf)  # ../../..: relative to the file, not the cwd
    (conf / "taskmill.toml").write_text(
        f'[app]\nmodules = ["myapp.tasks:domain"]\npaths = [{json.dumps(str(rel))}]\n'
    )
    ok = sidecar("--check", "--config", str(conf / "taskmill.toml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "photos::hash" in ok.stdout


def test_an_unknown_task_type_suggests_the_nearest(tmp_path: Path) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "task.submit",
        "params": {"task_type": "demo::slep", "payload": {}},
    }
    res = sidecar(
        "--stdio", "--demo", "--db", str(tmp_path / "t.db"), "--no-resource-monitoring",
        cwd=tmp_path, stdin=json.dumps(request) + "\n",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    answer = next(m for m in map(json.loads, res.stdout.splitlines()) if m.get("id") == 1)
    assert answer["error"]["code"] == -32003
    message = "unknown task type 'demo::slep' (did you mean 'demo::sleep'?)"
    assert answer["error"]["message"] == message
