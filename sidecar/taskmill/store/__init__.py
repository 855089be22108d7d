"""SQLite persistence: schema, migrations and every query (the only place with SQL)."""

from .db import TaskFilter
from .store import Store

__all__ = ["Store", "TaskFilter"]
