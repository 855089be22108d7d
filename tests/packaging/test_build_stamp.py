"""build/build.py's cache stamp covers every distribution the build can see:
installing, upgrading or reinstalling an app's dependency makes the next
build run (issue 17: it used to say "up to date")."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def build_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("taskmill_build_py", ROOT / "build" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path, as PYTHONPATH or a venv's site-packages would be."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def install(site: Path, version: str, record: str) -> None:
    """What pip leaves behind: the package and its dist-info (METADATA, RECORD)."""
    (site / "stampfixture").mkdir(exist_ok=True)
    (site / "stampfixture" / "__init__.py").write_text("")
    info = site / "stampfixture-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: Stamp_Fixture\nVersion: {version}\n"
    )
    (info / "RECORD").write_text(record)


def args(**changes: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "name": "stamp-test",
        "triple": "x86_64-unknown-linux-gnu",
        "app": [],
        "app_path": [],
        "hidden_import": [],
        "codesign_identity": None,
        "entitlements": None,
    }
    return argparse.Namespace(**{**base, **changes})


def test_every_visible_distribution_is_in_the_stamp(build_py: ModuleType, site: Path) -> None:
    before = build_py.inputs_hash(args(), [])
    assert "stamp-fixture" not in build_py.distributions()
    assert "pytest" in build_py.distributions()  # the tools count too (PyInstaller and hooks)

    install(site, "1.0", "stampfixture/__init__.py,sha256=a,0\n")
    installed = build_py.inputs_hash(args(), [])
    assert build_py.distributions()["stamp-fixture"][0] == "1.0"
    assert installed != before

    install(site, "1.1", "stampfixture/__init__.py,sha256=a,0\n")
    upgraded = build_py.inputs_hash(args(), [])
    assert upgraded not in (before, installed)

    install(site, "1.1", "stampfixture/__init__.py,sha256=b,0\n")  # same version, new files
    assert build_py.inputs_hash(args(), []) not in (before, installed, upgraded)


def test_hidden_imports_and_apps_are_in_the_stamp(build_py: ModuleType) -> None:
    plain = build_py.inputs_hash(args(), [])
    assert build_py.inputs_hash(args(hidden_import=["thumbkit"]), []) != plain
    assert build_py.inputs_hash(args(app=["thumbs.tasks:domain"]), []) != plain


def test_missing_module_is_read_from_the_import_error(build_py: ModuleType) -> None:
    why = "--app 'thumbs.tasks:domain': cannot import thumbs.tasks: No module named 'PIL.Image'"
    assert build_py.missing_module(why) == "PIL.Image"
    assert build_py.missing_module("thumbs has no domain") is None
