"""Small typed checkers for method parameters.

A *check* is a function ``(value, field) -> T`` that returns the value in its
typed form or raises :class:`~taskmill.errors.InvalidParams` naming ``field``
(a dotted path such as ``tasks[3].retry.base_ms``). :class:`Fields` reads one
params object with them, refusing unknown members first.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeAlias, TypeVar

from ..errors import InvalidParams
from ..model import check_name, split_task_type

T = TypeVar("T")
Check: TypeAlias = Callable[[Any, str], T]

INT64_MAX = 2**63 - 1


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def wrong_type(field: str, expected: str, value: object) -> InvalidParams:
    """The error for a value of the wrong JSON type."""
    return InvalidParams(f"{field} must be {expected}, got {_describe(value)}", field=field)


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top level."""
    return f"{path}.{key}" if path else key


def integer(minimum: int = 0, maximum: int = INT64_MAX) -> Check[int]:
    """An integer (never a boolean or a float) within ``minimum..maximum``."""

    def check(value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(field, "an integer", value)
        if not minimum <= value <= maximum:
            if maximum == INT64_MAX:
                bound = f"at least {minimum}"
            else:
                bound = f"within {minimum}..{maximum}"
            raise InvalidParams(f"{field} must be {bound}, got {value}", field=field)
        return value

    return check


def number(
    minimum: float, maximum: float = math.inf, *, exclusive_minimum: bool = False
) -> Check[float]:
    """A finite number (integer or float, never a boolean) within a range."""

    def check(value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong_type(field, "a number", value)
        result = float(value)
        too_low = result <= minimum if exclusive_minimum else result < minimum
        if too_low or result > maximum or not math.isfinite(result):
            low = f"greater than {minimum:g}" if exclusive_minimum else f"at least {minimum:g}"
            bound = low if maximum == math.inf else f"{low} and at most {maximum:g}"
            raise InvalidParams(f"{field} must be {bound}, got {value}", field=field)
        return result

    return check


def string(*, nonempty: bool = False) -> Check[str]:
    """A string, optionally required to be non-empty."""

    def check(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise wrong_type(field, "a string", value)
        if nonempty and not value:
            raise InvalidParams(f"{field} must not be empty", field=field)
        return value

    return check


def boolean(value: Any, field: str) -> bool:
    """A boolean."""
    if not isinstance(value, bool):
        raise wrong_type(field, "a boolean", value)
    return value


def choice(options: Collection[str]) -> Check[str]:
    """One of the given strings."""
    listed = ", ".join(repr(o) for o in options)

    def check(value: Any, field: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise InvalidParams(f"{field} must be one of {listed}, got {value!r}", field=field)
        return value

    return check


def obj(value: Any, field: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise wrong_type(field, "an object", value)
    return value


def task_type(value: Any, field: str) -> str:
    """A qualified ``domain::name`` task type."""
    if not isinstance(value, str):
        raise wrong_type(field, "a string 'domain::name'", value)
    split_task_type(value, field)
    return value


def domain(value: Any, field: str) -> str:
    """A domain name, ``[a-z0-9][a-z0-9_.-]*``."""
    if not isinstance(value, str):
        raise wrong_type(field, "a string", value)
    return check_name(value, field)


#: Items an array parameter may hold (a batch has its own, larger, limit).
#: Beyond this no request is sensible, and SQLite would refuse the query.
MAX_ITEMS = 10_000
#: Keys a string map (tags) may hold.
MAX_KEYS = 256


def str_map(value: Any, field: str) -> dict[str, str]:
    """An object whose values are all strings (tags), at most :data:`MAX_KEYS`."""
    if not isinstance(value, dict):
        raise wrong_type(field, "an object of strings", value)
    if len(value) > MAX_KEYS:
        raise InvalidParams(
            f"{field} has {len(value)} keys; at most {MAX_KEYS} are allowed", field=field
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise wrong_type(f"{field}.{key}", "a string", item)
    return dict(value)


def list_of(item: Check[T], max_items: int = MAX_ITEMS) -> Check[tuple[T, ...]]:
    """An array of at most ``max_items`` whose items all pass ``item``; errors
    name ``field[i]``."""

    def check(value: Any, field: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise wrong_type(field, "an array", value)
        if len(value) > max_items:
            raise InvalidParams(
                f"{field} has {len(value)} items; at most {max_items} are allowed", field=field
            )
        return tuple(item(v, f"{field}[{i}]") for i, v in enumerate(value))

    return check


def one_or_list(item: Check[T]) -> Check[tuple[T, ...]]:
    """A single value or an array of values, each passing ``item``."""
    many = list_of(item)

    def check(value: Any, field: str) -> tuple[T, ...]:
        if isinstance(value, list):
            return many(value, field)
        return (item(value, field),)

    return check


task_id = integer(0)
"""A task (or schedule) id: a non-negative integer within 64 bits."""


class Fields:
    """Reads typed fields out of one params object.

    Construction refuses any member not in ``allowed``, naming it (with a
    suggestion when it looks like a typo of an allowed one).

    Args:
        params: The object to read; must already be a dict.
        allowed: Every member this object may have.
        path: Where the object sits in the request, e.g. ``tasks[3]``; empty
            at the top level.
        hints: Extra advice keyed by unknown member name.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        allowed: Collection[str],
        *,
        path: str = "",
        hints: Mapping[str, str] | None = None,
    ) -> None:
        self.params = params
        self.path = path
        unknown = sorted(key for key in params if key not in allowed)
        if unknown:
            key = unknown[0]
            where = f" in {path}" if path else ""
            message = f"unknown field {key!r}{where}"
            if hints and key in hints:
                message += f" ({hints[key]})"
            else:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
            raise InvalidParams(message, field=join(path, key))

    def name(self, key: str) -> str:
        """The full path of member ``key``."""
        return join(self.path, key)

    def given(self, key: str) -> bool:
        """Whether ``key`` is present and not ``null``."""
        return self.params.get(key) is not None

    def required(self, key: str, check: Check[T]) -> T:
        """A member that must be present and not ``null``."""
        if key not in self.params:
            raise InvalidParams(f"missing field {self.name(key)!r}", field=self.name(key))
        value = self.params[key]
        if value is None:
            raise InvalidParams(f"{self.name(key)} must not be null", field=self.name(key))
        return check(value, self.name(key))

    def optional(self, key: str, check: Check[T]) -> T | None:
        """A member that may be absent or ``null`` (both read as ``None``)."""
        value = self.params.get(key)
        if value is None:
            return None
        return check(value, self.name(key))

    def nullable(self, key: str, check: Check[T]) -> T | None:
        """A member that must be present but may be ``null`` (e.g. "null removes")."""
        if key not in self.params:
            raise InvalidParams(
                f"missing field {self.name(key)!r} (null removes the setting)",
                field=self.name(key),
            )
        value = self.params[key]
        return None if value is None else check(value, self.name(key))
