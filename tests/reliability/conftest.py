"""Fixtures for the reliability suite: the end-to-end fixtures, plus artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

# The e2e fixtures (real sidecar processes, killed and reaped at teardown).
from tests.e2e.conftest import spawn, ws_connect

__all__ = ["artifacts", "spawn", "ws_connect"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root (gitignored), created on demand."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
