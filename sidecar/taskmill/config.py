"""The sidecar's configuration file (``--config taskmill.toml``).

Every key is optional; times are milliseconds; priorities are integers or
names. An unknown key or a value of the wrong type raises :class:`ConfigError`
naming the key (with the nearest known key when there is one: ``unknown key
scheduler.max_concurency (did you mean 'max_concurrency'?)``), so a typo never
passes silently. The full schema is section 12 of docs/protocol.md;
taskmill.example.toml at the project root lists every key at its default.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidParams
from .model import IoBudget, RetryPolicy, check_name, parse_priority
from .scheduler.config import Retention
from .scheduler.domain import Domain

__all__ = ["ConfigError", "FileConfig", "GroupSettings", "RateLimitSettings", "load_config"]


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


Check = Callable[[Any, str], Any]


def _int(minimum: int = 0) -> Check:
    def check(v: Any, key: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} must be an integer, got {type(v).__name__}")
        if v < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {v}")
        return v

    return check


def _number(minimum: float = 0.0, *, positive: bool = False) -> Check:
    def check(v: Any, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{key} must be a number, got {type(v).__name__}")
        if v < minimum or (positive and v <= 0):
            raise ConfigError(f"{key} must be {'> 0' if positive else f'>= {minimum}'}, got {v}")
        return float(v)

    return check


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {type(v).__name__}")
    return v


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key} must be a non-empty string")
    return v


def _priority(v: Any, key: str) -> int:
    try:
        return parse_priority(v, key)
    except InvalidParams as exc:
        raise ConfigError(exc.message) from exc


def _unknown(key: str, name: str, known: Any) -> ConfigError:
    """``unknown key KEY``, with the nearest known name when one is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {key}{hint}")


_RETRY_KEYS = ("max_retries", "backoff", "base_ms", "max_ms", "multiplier", "jitter")
_IO_KEYS = ("disk_read", "disk_write", "net_rx", "net_tx")


def _retry(v: Any, key: str) -> RetryPolicy:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{key} must be a table")
    for name in v:
        if name not in _RETRY_KEYS:
            raise _unknown(f"{key}.{name}", name, _RETRY_KEYS)
    try:
        return RetryPolicy.from_mapping(v, key)
    except InvalidParams as exc:
        raise ConfigError(exc.message.replace("unknown field", f"unknown key in {key}:")) from exc


def _io(v: Any, key: str) -> IoBudget:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{key} must be a table")
    for name in v:
        if name not in _IO_KEYS:
            raise _unknown(f"{key}.{name}", name, _IO_KEYS)
    try:
        return IoBudget.from_mapping(v, key)
    except InvalidParams as exc:
        raise ConfigError(f"{exc.field or key}: {exc.message}") from exc


def _ttl_from(v: Any, key: str) -> str:
    if v not in ("submission", "first_attempt"):
        raise ConfigError(f"{key} must be 'submission' or 'first_attempt'")
    return str(v)


def _table(
    value: Any, key: str, schema: Mapping[str, Check], *, extra: frozenset[str] = frozenset()
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


_SCHEDULER: dict[str, Check] = {
    "max_concurrency": _int(0),
    "max_retries": _int(0),
    "preempt_priority": _priority,
    "poll_interval_ms": _int(1),
    "drain_timeout_ms": _int(0),
    "default_ttl_ms": _int(1),
    "expiry_sweep_interval_ms": _int(1),
    "default_group_concurrency": _int(0),
    "default_group_weight": _number(positive=True),
    "resource_monitoring": _bool,
    "bandwidth_limit_bps": _number(positive=True),
    "default_priority": _priority,
    "synchronous": lambda v, k: _choice(v, k, ("NORMAL", "FULL")),
}

_AGING: dict[str, Check] = {
    "grace_period_ms": _int(0),
    "aging_interval_ms": _int(1),
    "max_effective_priority": _priority,
    "urgent_threshold": _priority,
}

_RETENTION: dict[str, Check] = {
    "max_count": _int(0),
    "max_age_days": _number(positive=True),
    "prune_interval": _int(1),
}

_GROUP: dict[str, Check] = {
    "limit": _int(0),
    "weight": _number(positive=True),
    "min_slots": _int(0),
}

_RATE: dict[str, Check] = {"per_second": _number(positive=True), "burst": _int(1)}

_DOMAIN: dict[str, Check] = {
    "max_concurrency": _int(0),
    "default_priority": _priority,
    "default_ttl_ms": _int(1),
    "default_group": _str,
    "default_retry": _retry,
    "default_tags": lambda v, k: _str_map(v, k),
}

_TYPE: dict[str, Check] = {
    "priority": _priority,
    "expected_io": _io,
    "ttl_ms": _int(1),
    "ttl_from": _ttl_from,
    "group": _str,
    "retry": _retry,
    "max_concurrency": _int(0),
    "tags": lambda v, k: _str_map(v, k),
    "timeout_ms": _int(1),
}


def _choice(v: Any, key: str, options: tuple[str, ...]) -> str:
    if not isinstance(v, str) or v.upper() not in options:
        raise ConfigError(f"{key} must be one of {', '.join(options)}")
    return v.upper()


def _str_map(v: Any, key: str) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(
        isinstance(a, str) and isinstance(b, str) for a, b in v.items()
    ):
        raise ConfigError(f"{key} must be a table of strings")
    return dict(v)


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


_APP: dict[str, Check] = {"modules": _app_specs, "paths": _str_list}

_TOP = frozenset(
    {"scheduler", "retention", "groups", "rate_limits", "group_rate_limits", "domains", "app"}
)


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
        cfg.domains.append(_domain(name, value))
    return cfg


def _named_tables(data: Mapping[str, Any], section: str) -> list[tuple[str, Any]]:
    if section not in data:
        return []
    value = data[section]
    if not isinstance(value, Mapping):
        raise ConfigError(f"{section} must be a table")
    return list(value.items())


def _domain(name: str, value: Any) -> Domain:
    key = f"domains.{name}"
    try:
        check_name(name, key)
    except InvalidParams as exc:
        raise ConfigError(exc.message) from exc
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
        try:
            check_name(tname, tkey)
        except InvalidParams as exc:
            raise ConfigError(exc.message) from exc
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
