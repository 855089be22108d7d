"""Fixtures for the store's unit tests: a fresh, migrated database per test."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from taskmill.store.schema import open_connection


@pytest.fixture
def conn(db_path: str) -> Iterator[sqlite3.Connection]:
    """A real file (``db_path`` of tests/conftest.py) in WAL mode, as the scheduler opens it."""
    c = open_connection(db_path)
    try:
        yield c
    finally:
        c.close()
