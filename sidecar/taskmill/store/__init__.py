"""SQLite persistence: schema, migrations and every query (the only place with SQL)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..filters import TaskFilter
    from .store import Store

__all__ = ["Store", "TaskFilter"]


def __getattr__(name: str) -> Any:
    where = {"Store": ".store", "TaskFilter": "..filters"}.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
