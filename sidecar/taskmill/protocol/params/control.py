"""Params of the control methods: the scheduler, domains, groups, rate
limits, recurring schedules and pressure (protocol section 5.3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ... import _checks as checks
from ..._checks import Fields
from ...errors import InvalidParams

__all__ = [
    "DomainParams",
    "DomainSetMaxConcurrencyParams",
    "GroupParams",
    "GroupPauseParams",
    "GroupSetValueParams",
    "GroupSetWeightParams",
    "OptionalDomainParams",
    "PressureSetParams",
    "RateLimitSetParams",
    "RateLimitTargetParams",
    "SetMaxConcurrencyParams",
    "parse_domain",
    "parse_domain_set_max_concurrency",
    "parse_group",
    "parse_group_pause",
    "parse_group_set_value",
    "parse_group_set_weight",
    "parse_optional_domain",
    "parse_pressure_set",
    "parse_rate_limit_remove",
    "parse_rate_limit_set",
    "parse_set_max_concurrency",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionalDomainParams:
    """``scheduler.snapshot`` and ``recurring.list``: ``None`` means every domain."""

    domain: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMaxConcurrencyParams:
    """``scheduler.set_max_concurrency``."""

    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainParams:
    """``domain.pause`` and ``domain.resume``."""

    domain: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainSetMaxConcurrencyParams:
    """``domain.set_max_concurrency``: ``value=None`` removes the limit."""

    domain: str
    value: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupParams:
    """``group.resume``."""

    group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPauseParams:
    """``group.pause``: with ``duration_ms`` the group resumes by itself."""

    group: str
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSetValueParams:
    """``group.set_limit`` and ``group.set_min_slots``: ``None`` removes the setting."""

    group: str
    value: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSetWeightParams:
    """``group.set_weight``: ``None`` restores the default weight."""

    group: str
    weight: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitTargetParams:
    """``rate_limit.remove``: exactly one of ``task_type`` and ``group`` is set."""

    task_type: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSetParams:
    """``rate_limit.set``: exactly one of ``task_type`` and ``group`` is set."""

    per_second: float
    task_type: str | None = None
    group: str | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PressureSetParams:
    """``pressure.set``: ``value=None`` removes the source."""

    source: str
    value: float | None


# --------------------------------------------------------------------------
# Scheduler and domains
# --------------------------------------------------------------------------


def parse_optional_domain(params: Mapping[str, Any]) -> OptionalDomainParams:
    """``{domain?}``: ``scheduler.snapshot`` and ``recurring.list``."""
    fields = Fields(params, ("domain",))
    return OptionalDomainParams(domain=fields.optional("domain", checks.domain))


def parse_set_max_concurrency(params: Mapping[str, Any]) -> SetMaxConcurrencyParams:
    """``scheduler.set_max_concurrency {value}``: a non-negative integer."""
    fields = Fields(params, ("value",))
    return SetMaxConcurrencyParams(value=fields.required("value", checks.non_negative))


def parse_domain(params: Mapping[str, Any]) -> DomainParams:
    """``{domain}``: ``domain.pause`` and ``domain.resume``."""
    return DomainParams(domain=Fields(params, ("domain",)).required("domain", checks.domain))


def parse_domain_set_max_concurrency(params: Mapping[str, Any]) -> DomainSetMaxConcurrencyParams:
    """``domain.set_max_concurrency {domain, value}``: ``value`` >= 0 or null (removes)."""
    fields = Fields(params, ("domain", "value"))
    return DomainSetMaxConcurrencyParams(
        domain=fields.required("domain", checks.domain),
        value=fields.nullable("value", checks.non_negative),
    )


# --------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------


def parse_group(params: Mapping[str, Any]) -> GroupParams:
    """``{group}``: ``group.resume``."""
    return GroupParams(group=Fields(params, ("group",)).required("group", checks.group))


def parse_group_pause(params: Mapping[str, Any]) -> GroupPauseParams:
    """``group.pause {group, duration_ms?}``."""
    fields = Fields(params, ("group", "duration_ms"))
    return GroupPauseParams(
        group=fields.required("group", checks.group),
        duration_ms=fields.optional("duration_ms", checks.non_negative),
    )


def parse_group_set_value(params: Mapping[str, Any]) -> GroupSetValueParams:
    """``{group, value}``: ``group.set_limit`` and ``group.set_min_slots``.

    ``value`` is a non-negative integer or null (removes the setting).
    """
    fields = Fields(params, ("group", "value"))
    return GroupSetValueParams(
        group=fields.required("group", checks.group),
        value=fields.nullable("value", checks.non_negative),
    )


def parse_group_set_weight(params: Mapping[str, Any]) -> GroupSetWeightParams:
    """``group.set_weight {group, weight}``: an integer >= 1 or null (default weight)."""
    fields = Fields(params, ("group", "weight"))
    return GroupSetWeightParams(
        group=fields.required("group", checks.group),
        weight=fields.nullable("weight", checks.integer(1)),
    )


# --------------------------------------------------------------------------
# Rate limits and pressure
# --------------------------------------------------------------------------


def _rate_limit_target(fields: Fields) -> tuple[str | None, str | None]:
    task_type = fields.optional("task_type", checks.task_type)
    group = fields.optional("group", checks.group)
    if task_type is None and group is None:
        raise InvalidParams("give exactly one of task_type or group", field="task_type")
    if task_type is not None and group is not None:
        raise InvalidParams("give exactly one of task_type or group, not both", field="group")
    return task_type, group


def parse_rate_limit_set(params: Mapping[str, Any]) -> RateLimitSetParams:
    """``rate_limit.set {task_type? xor group?, per_second, burst?}``.

    ``per_second`` is a number > 0; ``burst`` an integer >= 1.

    Raises:
        InvalidParams: when neither or both of ``task_type`` and ``group`` are given.
    """
    fields = Fields(params, ("task_type", "group", "per_second", "burst"))
    task_type, group = _rate_limit_target(fields)
    return RateLimitSetParams(
        task_type=task_type,
        group=group,
        per_second=fields.required("per_second", checks.number(0, exclusive_minimum=True)),
        burst=fields.optional("burst", checks.integer(1)),
    )


def parse_rate_limit_remove(params: Mapping[str, Any]) -> RateLimitTargetParams:
    """``rate_limit.remove {task_type? xor group?}``."""
    task_type, group = _rate_limit_target(Fields(params, ("task_type", "group")))
    return RateLimitTargetParams(task_type=task_type, group=group)


def parse_pressure_set(params: Mapping[str, Any]) -> PressureSetParams:
    """``pressure.set {source, value}``: ``value`` 0..1 or null (removes the source)."""
    fields = Fields(params, ("source", "value"))
    return PressureSetParams(
        source=fields.required("source", checks.string(nonempty=True)),
        value=fields.nullable("value", checks.number(0, 1)),
    )
