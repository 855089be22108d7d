"""The sidecar's configuration file (``--config taskmill.toml``).

Every key is optional; times are milliseconds; priorities are integers or
names. An unknown key or a value of the wrong type raises :class:`ConfigError`
naming the key (with the nearest known key when there is one: ``unknown key
scheduler.max_concurency (did you mean 'max_concurrency'?)``), so a typo never
passes silently. The full schema is section 12 of docs/protocol.md;
taskmill.example.toml at the project root lists every key at its default.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from . import _checks as checks
from ._checks import Check
from .errors import InvalidParams
from .model import IoBudget, RetryPolicy, check_name, parse_priority
from .scheduler.config import Retention
from .scheduler.domain import Domain

__all__ = [
    "ConfigError",
    "FileConfig",
    "GroupSettings",
    "RateLimitSettings",
    "load_config",
    "parse_config",
    "parse_domain",
]


P = ParamSpec("P")
T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSettings:
    limit: int | None = None
    weight: float | None = None
    min_slots: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSettings:
    per_second: float
    burst: int | None = None


@dataclass(slots=True, kw_only=True)
class FileConfig:
    """What a configuration file declares."""

    #: ``[scheduler]`` values, validated, keyed as in the file.
    scheduler: dict[str, Any] = field(default_factory=dict)
    #: ``[scheduler.aging]`` (present means aging is on).
    aging: dict[str, int] | None = None
    retention: Retention | None = None
    groups: dict[str, GroupSettings] = field(default_factory=dict)
    rate_limits: dict[str, RateLimitSettings] = field(default_factory=dict)
    group_rate_limits: dict[str, RateLimitSettings] = field(default_factory=dict)
    domains: list[Domain] = field(default_factory=list)
    #: ``[app] modules``: ``MODULE:ATTR`` specs loaded like ``--app``.
    app_modules: list[str] = field(default_factory=list)
    #: ``[app] paths``: folders to import them from (relative to the file's folder).
    app_paths: list[str] = field(default_factory=list)


# The value checks are the wire's (taskmill._checks), worded for a TOML file;
# each public function turns their InvalidParams into a ConfigError once.
_TOML = checks.Wording(
    describe=lambda value: type(value).__name__,
    at_least=">= {}",
    greater_than="> {}",
    boolean="true or false",
)


def _int(minimum: int = 0) -> Check[int]:
    return checks.integer(minimum, words=_TOML)


_positive = checks.number(0, exclusive_minimum=True, words=_TOML)
_bool = checks.boolean_check(_TOML)
_str = checks.string(nonempty=True, message="{field} must be a non-empty string")
_str_map = checks.string_map(None, message="{field} must be a table of strings")
_ttl_from = checks.choice(
    ("submission", "first_attempt"), message="{field} must be 'submission' or 'first_attempt'"
)
_synchronous_option = checks.choice(
    ("NORMAL", "FULL"), message="{field} must be one of NORMAL, FULL"
)


def _synchronous(value: Any, key: str) -> str:
    return _synchronous_option(value.upper() if isinstance(value, str) else value, key)


def _unknown(key: str, name: str, known: Collection[str]) -> ConfigError:
    """``unknown key KEY``, with the nearest known name when one is close."""
    return ConfigError(f"unknown key {key}{checks.did_you_mean(name, known)}")


def _config_errors(parse: Callable[P, T]) -> Callable[P, T]:
    """Report the checks' ``InvalidParams`` as ``ConfigError`` (the message
    names the key)."""

    @functools.wraps(parse)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return parse(*args, **kwargs)
        except InvalidParams as exc:
            raise ConfigError(exc.message) from exc

    return wrapper


_RETRY_KEYS = ("max_retries", "backoff", "base_ms", "max_ms", "multiplier", "jitter")
_IO_KEYS = ("disk_read", "disk_write", "net_rx", "net_tx")


def _retry(v: Any, key: str) -> RetryPolicy:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{key} must be a table")
    for name in v:
        if name not in _RETRY_KEYS:
            raise _unknown(f"{key}.{name}", name, _RETRY_KEYS)
    return RetryPolicy.from_mapping(v, key)


def _io(v: Any, key: str) -> IoBudget:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{key} must be a table")
    for name in v:
        if name not in _IO_KEYS:
            raise _unknown(f"{key}.{name}", name, _IO_KEYS)
    return IoBudget.from_mapping(v, key)


def _table(
    value: Any, key: str, schema: Mapping[str, Check[Any]], *, extra: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a table")
    out: dict[str, Any] = {}
    for name, v in value.items():
        full = f"{key}.{name}"
        if name in extra:
            continue
        check = schema.get(name)
        if check is None:
            raise _unknown(full, name, set(schema) | extra)
        out[name] = check(v, full)
    return out


_SCHEDULER: dict[str, Check[Any]] = {
    "max_concurrency": _int(0),
    "max_retries": _int(0),
    "preempt_priority": parse_priority,
    "poll_interval_ms": _int(1),
    "drain_timeout_ms": _int(0),
    "default_ttl_ms": _int(1),
    "expiry_sweep_interval_ms": _int(1),
    "default_group_concurrency": _int(0),
    "default_group_weight": _positive,
    "resource_monitoring": _bool,
    "bandwidth_limit_bps": _positive,
    "default_priority": parse_priority,
    "synchronous": _synchronous,
    "io_latency_target_ms": checks.number(0, words=_TOML),
    "io_sample_interval_ms": _int(1),
    "io_rate_floor_bps": _positive,
    "io_rate_limit_bps": _positive,
    "io_chunk_bytes": _int(1),
    "io_writeback_bytes": _int(0),
    "io_background_priority": _bool,
}

_AGING: dict[str, Check[Any]] = {
    "grace_period_ms": _int(0),
    "aging_interval_ms": _int(1),
    "max_effective_priority": parse_priority,
    "urgent_threshold": parse_priority,
}

_RETENTION: dict[str, Check[Any]] = {
    "max_count": _int(0),
    "max_age_days": _positive,
    "prune_interval": _int(1),
}

_GROUP: dict[str, Check[Any]] = {
    "limit": _int(0),
    "weight": _positive,
    "min_slots": _int(0),
}

_RATE: dict[str, Check[Any]] = {"per_second": _positive, "burst": _int(1)}

_DOMAIN: dict[str, Check[Any]] = {
    "max_concurrency": _int(0),
    "default_priority": parse_priority,
    "default_ttl_ms": _int(1),
    "default_group": _str,
    "default_retry": _retry,
    "default_tags": _str_map,
}

_TYPE: dict[str, Check[Any]] = {
    "priority": parse_priority,
    "expected_io": _io,
    "ttl_ms": _int(1),
    "ttl_from": _ttl_from,
    "group": _str,
    "retry": _retry,
    "max_concurrency": _int(0),
    "tags": _str_map,
    "timeout_ms": _int(1),
}


def _str_list(v: Any, key: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise ConfigError(f"{key} must be a list of non-empty strings")
    return list(v)


def _app_specs(v: Any, key: str) -> list[str]:
    specs = _str_list(v, key)
    for spec in specs:
        module, sep, attr = spec.partition(":")
        if not sep or not module or not attr:
            raise ConfigError(f"{key}: {spec!r} is not MODULE:ATTR")
    return specs


_APP: dict[str, Check[Any]] = {"modules": _app_specs, "paths": _str_list}

_TOP = frozenset(
    {"scheduler", "retention", "groups", "rate_limits", "group_rate_limits", "domains", "app"}
)


@_config_errors
def parse_config(data: Mapping[str, Any]) -> FileConfig:
    """Validate a parsed TOML document.

    Raises:
        ConfigError: naming the first bad key.
    """
    for name in data:
        if name not in _TOP:
            raise _unknown(name, name, _TOP)
    cfg = FileConfig()
    if "app" in data:
        app = _table(data["app"], "app", _APP)
        cfg.app_modules = app.get("modules", [])
        cfg.app_paths = app.get("paths", [])
    if "scheduler" in data:
        sched = data["scheduler"]
        cfg.scheduler = _table(sched, "scheduler", _SCHEDULER, extra=frozenset({"aging"}))
        if isinstance(sched, Mapping) and "aging" in sched:
            cfg.aging = _table(sched["aging"], "scheduler.aging", _AGING)
    if "retention" in data:
        r = _table(data["retention"], "retention", _RETENTION)
        cfg.retention = Retention(
            max_count=r.get("max_count", None if "max_age_days" in r else 10_000),
            max_age_ms=int(r["max_age_days"] * 86_400_000) if "max_age_days" in r else None,
            prune_interval=r.get("prune_interval", 100),
        )
    for section, target in (("groups", cfg.groups),):
        for name, value in _named_tables(data, section):
            target[name] = GroupSettings(**_table(value, f"{section}.{name}", _GROUP))
    for section, rates in (
        ("rate_limits", cfg.rate_limits),
        ("group_rate_limits", cfg.group_rate_limits),
    ):
        for name, value in _named_tables(data, section):
            vals = _table(value, f"{section}.{name}", _RATE)
            if "per_second" not in vals:
                raise ConfigError(f"{section}.{name}.per_second is required")
            rates[name] = RateLimitSettings(**vals)
    for name, value in _named_tables(data, "domains"):
        cfg.domains.append(parse_domain(name, value))
    return cfg


def _named_tables(data: Mapping[str, Any], section: str) -> list[tuple[str, Any]]:
    if section not in data:
        return []
    value = data[section]
    if not isinstance(value, Mapping):
        raise ConfigError(f"{section} must be a table")
    return list(value.items())


@_config_errors
def parse_domain(name: str, value: Any) -> Domain:
    """Validate one ``[domains.NAME]`` table (its ``types`` included); also
    the schema of a type a remote worker declares inline.

    Raises:
        ConfigError: naming the first bad key (``domains.NAME.…``).
    """
    key = f"domains.{name}"
    check_name(name, key)
    d = _table(value, key, _DOMAIN, extra=frozenset({"types"}))
    domain = Domain(
        name,
        default_priority=d.get("default_priority"),
        default_retry=d.get("default_retry"),
        default_ttl_ms=d.get("default_ttl_ms"),
        default_group=d.get("default_group"),
        default_tags=d.get("default_tags"),
        max_concurrency=d.get("max_concurrency"),
    )
    types = value.get("types", {}) if isinstance(value, Mapping) else {}
    if not isinstance(types, Mapping):
        raise ConfigError(f"{key}.types must be a table")
    for tname, tvalue in types.items():
        tkey = f"{key}.types.{tname}"
        check_name(tname, tkey)
        t = _table(tvalue, tkey, _TYPE)
        domain.register(tname, None, source="config", **t)
    return domain


def load_config(path: str | Path) -> FileConfig:
    """Read and validate a TOML configuration file.

    Raises:
        ConfigError: the file is missing, not TOML, or has a bad key.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    cfg = parse_config(data)
    # [app] paths are relative to the file, not to the working directory.
    base = Path(path).resolve().parent
    cfg.app_paths = [str(base / p) for p in cfg.app_paths]
    return cfg
