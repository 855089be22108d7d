"""Small typed checkers, shared by method parameters and the configuration file.

A *check* is a function ``(value, field) -> T`` that returns the value in its
typed form or raises :class:`~taskmill.errors.InvalidParams` naming ``field``
(a dotted path such as ``tasks[3].retry.base_ms``). :class:`Fields` reads one
params object with them, refusing unknown members first.

The wire speaks JSON and the configuration file TOML, and each words a refused
value its own way (``must be at least 1, got a string`` on the wire,
``must be >= 1, got str`` in the file): the checks that differ take a
:class:`Wording`, and the config file (:mod:`taskmill.config`) turns their
``InvalidParams`` into its ``ConfigError`` in one place.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from .errors import InvalidParams
from .model import check_name, split_task_type

__all__ = [
    "INT64_MAX",
    "JSON",
    "MAX_ITEMS",
    "MAX_KEYS",
    "Check",
    "Fields",
    "Wording",
    "boolean",
    "boolean_check",
    "choice",
    "describe",
    "did_you_mean",
    "domain",
    "group",
    "integer",
    "join",
    "list_of",
    "non_negative",
    "number",
    "obj",
    "one_or_list",
    "str_map",
    "string",
    "string_map",
    "task_id",
    "task_type",
    "wrong_type",
]

T = TypeVar("T")
S = TypeVar("S", bound=str)
Check: TypeAlias = Callable[[Any, str], T]

INT64_MAX = 2**63 - 1


def describe(value: object) -> str:
    """The JSON type of ``value`` with its article: ``a string``, ``null``..."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Wording:
    """How a check words a value it refuses, where wire and config file differ."""

    #: The refused value's type, after "got".
    describe: Callable[[object], str] = describe
    #: A lower bound, "at least 1"; ``{}`` is the bound.
    at_least: str = "at least {}"
    #: An exclusive lower bound, "greater than 0".
    greater_than: str = "greater than {}"
    #: What a boolean is called.
    boolean: str = "a boolean"


JSON = Wording()
"""The wire's wording (the default)."""


def wrong_type(field: str, expected: str, value: object, words: Wording = JSON) -> InvalidParams:
    """The error for a value of the wrong type."""
    return InvalidParams(f"{field} must be {expected}, got {words.describe(value)}", field=field)


def did_you_mean(name: str, options: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top level."""
    return f"{path}.{key}" if path else key


def integer(minimum: int = 0, maximum: int = INT64_MAX, *, words: Wording = JSON) -> Check[int]:
    """An integer (never a boolean or a float) within ``minimum..maximum``."""

    def check(value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(field, "an integer", value, words)
        if not minimum <= value <= maximum:
            if maximum == INT64_MAX:
                bound = words.at_least.format(minimum)
            else:
                bound = f"within {minimum}..{maximum}"
            raise InvalidParams(f"{field} must be {bound}, got {value}", field=field)
        return value

    return check


def number(
    minimum: float,
    maximum: float = math.inf,
    *,
    exclusive_minimum: bool = False,
    words: Wording = JSON,
) -> Check[float]:
    """A finite number (integer or float, never a boolean) within a range."""

    def check(value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong_type(field, "a number", value, words)
        result = float(value)
        too_low = result <= minimum if exclusive_minimum else result < minimum
        if too_low or result > maximum or not math.isfinite(result):
            low = (words.greater_than if exclusive_minimum else words.at_least).format(
                f"{minimum:g}"
            )
            bound = low if maximum == math.inf else f"{low} and at most {maximum:g}"
            raise InvalidParams(f"{field} must be {bound}, got {value}", field=field)
        return result

    return check


def string(*, nonempty: bool = False, message: str | None = None) -> Check[str]:
    """A string, optionally required to be non-empty.

    Args:
        nonempty: Refuse ``""``.
        message: One message for every way the value can be wrong, with
            ``{field}`` for the field.
    """

    def check(value: Any, field: str) -> str:
        if not isinstance(value, str):
            if message is not None:
                raise InvalidParams(message.format(field=field), field=field)
            raise wrong_type(field, "a string", value)
        if nonempty and not value:
            text = message or "{field} must not be empty"
            raise InvalidParams(text.format(field=field), field=field)
        return value

    return check


def boolean_check(words: Wording = JSON) -> Check[bool]:
    """A boolean, refused values worded with ``words``."""

    def check(value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise wrong_type(field, words.boolean, value, words)
        return value

    return check


boolean = boolean_check()
"""A boolean."""


def choice(options: Collection[S], *, message: str | None = None) -> Check[S]:
    """One of the given strings (typed as they are: a tuple of a ``Literal``
    type gives a check of that type).

    Args:
        options: The strings accepted.
        message: The message for any other value, with ``{field}``.
    """
    listed = ", ".join(repr(o) for o in options)

    def check(value: Any, field: str) -> S:
        for option in options:
            if value == option and isinstance(value, str):
                return option
        if message is not None:
            raise InvalidParams(message.format(field=field), field=field)
        raise InvalidParams(f"{field} must be one of {listed}, got {value!r}", field=field)

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


def string_map(
    max_keys: int | None = MAX_KEYS, *, message: str | None = None
) -> Check[dict[str, str]]:
    """An object whose values are all strings (tags), at most ``max_keys`` of them.

    Args:
        max_keys: The most keys accepted; ``None`` for no limit.
        message: One message for every way the value can be wrong, with ``{field}``.
    """

    def refuse(field: str, error: InvalidParams) -> InvalidParams:
        if message is None:
            return error
        return InvalidParams(message.format(field=field), field=field)

    def check(value: Any, field: str) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise refuse(field, wrong_type(field, "an object of strings", value))
        if max_keys is not None and len(value) > max_keys:
            raise refuse(
                field,
                InvalidParams(
                    f"{field} has {len(value)} keys; at most {max_keys} are allowed", field=field
                ),
            )
        for key, item in value.items():
            if not isinstance(item, str):
                raise refuse(field, wrong_type(f"{field}.{key}", "a string", item))
        return dict(value)

    return check


str_map = string_map()
"""An object of strings (tags), at most :data:`MAX_KEYS` keys."""


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

non_negative = integer(0)
"""A count, a duration or an offset: a non-negative integer within 64 bits."""

group = string(nonempty=True)
"""A group name: any non-empty string."""


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
                message += did_you_mean(key, allowed)
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
