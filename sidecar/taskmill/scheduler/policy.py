"""Scheduling decisions as pure functions of state and ``now``.

Nothing here awaits, reads a clock or touches the database: the run loop
passes in what it knows and applies what comes back. That keeps every rule
(defaults, dedup keys, retry and backoff, gate checks, when to wake) testable
with plain values and a fake clock.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidParams, PayloadTooLarge, TaskError
from ..model import IoBudget, RetryPolicy, Submission, TaskRecord, parse_priority
from ..store.rows import NewTask
from .config import SchedulerConfig
from .domain import TypeRegistry

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_RESULT_BYTES",
    "FailureDecision",
    "decide_failure",
    "dedup_key",
    "describe_error",
    "encode_payload",
    "encode_result",
    "next_wake_ms",
    "policy_from_json",
    "resolve_submission",
]

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 256 * 1024
MAX_TAGS = 32
MAX_TAG_KEY_BYTES = 64
MAX_TAG_VALUE_BYTES = 256
MAX_KEY_CHARS = 1024
MAX_LABEL_CHARS = 1024


# Made once: json.dumps with any option builds a new encoder per call (about
# 1 us of the 3 a small payload took).
_ENCODERS = {
    sort: json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort
    )
    for sort in (False, True)
}


def _dumps(value: Any, *, sort_keys: bool = False) -> str:
    return _ENCODERS[sort_keys].encode(value)


@functools.lru_cache(maxsize=256)
def _default_policy(retry: RetryPolicy, max_retries: int) -> RetryPolicy:
    return dataclasses.replace(retry, max_retries=max_retries)


@functools.lru_cache(maxsize=1024)
def _policy_json(policy: RetryPolicy) -> str:
    return _dumps(policy.to_dict())


_LONG_NUMBER = re.compile(r"\d{19}")
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1


def _check_integers(value: Any, text: str, field_name: str) -> None:
    """Refuse integers MessagePack cannot carry (outside -2**63..2**64-1).

    Only a value whose JSON has a run of 19 digits can hold one, so most
    values are cleared by one regex search.
    """
    if not _LONG_NUMBER.search(text):
        return
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool) and not INT_MIN <= v <= INT_MAX:
            raise InvalidParams(
                f"{field_name} holds the integer {str(v)[:30]}..., outside -2**63..2**64-1 "
                "(send it as a string)",
                field=field_name,
            )


def _encode(value: Any, field_name: str, what: str, *, sort_keys: bool = False) -> str:
    """JSON text of a value of the JSON data model, with every way to fail named.

    Raises:
        InvalidParams: not a JSON value, nested too deep, or holding a lone
            surrogate (which no UTF-8 file or socket can carry).
    """
    try:
        text = _dumps(value, sort_keys=sort_keys)
    except RecursionError as exc:
        raise InvalidParams(f"{what} is nested too deeply to store", field=field_name) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"{what} is not a JSON value: {exc}", field=field_name) from exc
    if not text.isascii():  # O(1): CPython knows
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidParams(
                f"{what} holds a lone surrogate ({exc.object[exc.start : exc.end]!r}), "
                "which is not valid UTF-8",
                field=field_name,
            ) from exc
    return text


def encode_payload(payload: Any, field_name: str = "payload") -> tuple[str, str]:
    """Encode a payload as stored JSON and as canonical JSON (for the dedup key).

    Raises:
        InvalidParams: the value is not of the JSON data model.
        PayloadTooLarge: it is over 1 MiB encoded.
    """
    text = _encode(payload, field_name, field_name)
    if len(text) > MAX_PAYLOAD_BYTES // 4 and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"{field_name} is {len(text.encode())} bytes encoded; the limit is "
            f"{MAX_PAYLOAD_BYTES} (1 MiB)",
            field=field_name,
        )
    _check_integers(payload, text, field_name)
    canonical = _dumps(payload, sort_keys=True) if isinstance(payload, dict | list) else text
    return text, canonical


def encode_result(result: Any) -> str:
    """Encode an executor's return value for history.

    Raises:
        InvalidParams: not of the JSON data model (nested too deeply, a lone
            surrogate, an object JSON cannot hold, an integer out of range).
        PayloadTooLarge: over 256 KiB encoded.
    """
    if result is None:
        return "null"  # most executors return nothing
    text = _encode(result, "result", "the result")
    size = len(text) if text.isascii() else len(text.encode())
    if size > MAX_RESULT_BYTES:
        raise PayloadTooLarge(
            f"the result is {size} bytes encoded; the limit is {MAX_RESULT_BYTES} (256 KiB)",
            field="result",
        )
    _check_integers(result, text, "result")
    return text


def dedup_key(task_type: str, key: str | None, canonical_payload: str) -> str:
    """The dedup key: the explicit key, else the SHA-256 hex of the qualified
    type and the canonical payload. Keys are unique per task type."""
    if key is not None:
        return key
    return hashlib.sha256(f"{task_type}:{canonical_payload}".encode()).hexdigest()


def _check_tags(tags: Mapping[str, str], field_name: str = "tags") -> dict[str, str]:
    """Validate a tag map: at most 32, keys 1..64 bytes, values up to 256 bytes."""
    if len(tags) > MAX_TAGS:
        raise InvalidParams(f"at most {MAX_TAGS} tags per task, got {len(tags)}", field=field_name)
    out: dict[str, str] = {}
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidParams("tag keys and values must be strings", field=field_name)
        if not k or len(k.encode()) > MAX_TAG_KEY_BYTES:
            raise InvalidParams(
                f"tag key {k[:20]!r} must be 1..{MAX_TAG_KEY_BYTES} bytes",
                field=f"{field_name}.{k}",
            )
        if len(v.encode()) > MAX_TAG_VALUE_BYTES:
            raise InvalidParams(
                f"tag {k!r} value must be at most {MAX_TAG_VALUE_BYTES} bytes",
                field=f"{field_name}.{k}",
            )
        out[k] = v
    return out


#: Longest duration and latest timestamp accepted (about 100 years in ms), and
#: the largest byte count: far inside SQLite's 64-bit integers even after adding now.
MAX_DURATION_MS = 100 * 365 * 24 * 3600 * 1000
MAX_TIMESTAMP_MS = 2 * MAX_DURATION_MS
MAX_BYTES = 1 << 60


def _non_negative(value: int | None, field_name: str, limit: int = MAX_DURATION_MS) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidParams(f"{field_name} must be an integer within 0..{limit}", field=field_name)
    return value


_NO_IO = IoBudget()


def resolve_submission(
    sub: Submission,
    registry: TypeRegistry,
    config: SchedulerConfig,
    now: int,
    *,
    parent: TaskRecord | None = None,
) -> NewTask:
    """Apply defaults (per call > type > domain > scheduler) and validate.

    Raises:
        UnknownTaskType: the type is not declared.
        InvalidParams: a field is out of range (the error names it).
        PayloadTooLarge: the payload is over 1 MiB.
    """
    tt = registry.get(sub.task_type)
    domain = registry.domains[tt.domain]
    payload_json, canonical = encode_payload(sub.payload)
    if sub.key is not None and (
        not isinstance(sub.key, str) or not sub.key or len(sub.key) > MAX_KEY_CHARS
    ):
        raise InvalidParams(
            f"key must be a non-empty string of at most {MAX_KEY_CHARS} characters", field="key"
        )
    if sub.label is not None and len(sub.label) > MAX_LABEL_CHARS:
        raise InvalidParams(f"label must be at most {MAX_LABEL_CHARS} characters", field="label")
    key = dedup_key(tt.qualified, sub.key, canonical)

    if sub.priority is not None:
        priority = parse_priority(sub.priority)
    elif tt.priority is not None:
        priority = tt.priority
    elif domain.default_priority is not None:
        priority = domain.default_priority
    else:
        priority = config.default_priority
    if parent is not None and sub.priority is None:
        # A child never waits behind its own, more urgent parent.
        priority = min(priority, parent.effective_priority)

    retry = sub.retry or tt.retry or domain.default_retry
    max_retries = retry.max_retries if retry is not None else config.max_retries
    policy = retry or _default_policy(config.retry, config.max_retries)

    tags: dict[str, str] = {}
    if parent is not None or domain.default_tags or tt.tags or sub.tags:
        if parent is not None:
            tags.update(parent.tags)
        tags.update(domain.default_tags)
        tags.update(tt.tags)
        if sub.tags:
            if not isinstance(sub.tags, Mapping):
                raise InvalidParams("tags must be an object of strings", field="tags")
            tags.update(sub.tags)
        tags = _check_tags(tags)

    group = sub.group if sub.group is not None else (tt.group or domain.default_group)
    if group is not None and (not isinstance(group, str) or not group or len(group) > 256):
        raise InvalidParams(
            "group must be a non-empty string of at most 256 characters", field="group"
        )

    ttl_ms = _non_negative(sub.ttl_ms, "ttl_ms")
    ttl_from = sub.ttl_from or tt.ttl_from or "submission"
    if ttl_ms is None:
        ttl_ms = tt.ttl_ms if tt.ttl_ms is not None else domain.default_ttl_ms
    if ttl_ms is None:
        ttl_ms = config.default_ttl_ms
    expires_at: int | None = None
    if parent is not None and sub.ttl_ms is None and parent.expires_at is not None:
        # Children inherit what is left of the parent's TTL.
        remaining = parent.expires_at - now
        if remaining > 0 and (ttl_ms is None or remaining < ttl_ms):
            ttl_ms, ttl_from = remaining, "submission"
    if ttl_ms is not None and ttl_from == "submission":
        expires_at = now + ttl_ms

    run_after_ms = _non_negative(sub.run_after_ms, "run_after_ms")
    run_at = _non_negative(sub.run_at, "run_at", MAX_TIMESTAMP_MS)
    if run_after_ms is not None and run_at is not None:
        raise InvalidParams("give run_after_ms or run_at, not both", field="run_at")
    run_after = now + run_after_ms if run_after_ms else run_at

    recurring_interval: int | None = None
    recurring_max: int | None = None
    if sub.recurring is not None:
        if sub.parent_id is not None:
            raise InvalidParams("a recurring task cannot be a child", field="recurring")
        if not 0 < sub.recurring.interval_ms <= MAX_DURATION_MS:
            raise InvalidParams(
                f"recurring.interval_ms must be within 1..{MAX_DURATION_MS}",
                field="recurring.interval_ms",
            )
        _non_negative(sub.recurring.initial_delay_ms, "recurring.initial_delay_ms")
        recurring_interval = sub.recurring.interval_ms
        recurring_max = sub.recurring.max_occurrences
        if sub.recurring.initial_delay_ms and run_after is None:
            run_after = now + sub.recurring.initial_delay_ms

    expected_io = sub.expected_io or tt.expected_io or _NO_IO
    if expected_io is not _NO_IO:
        for axis, n in expected_io.to_dict().items():
            _non_negative(n, f"expected_io.{axis}", MAX_BYTES)
    depends_on = list(sub.depends_on or [])
    for i, dep in enumerate(depends_on):
        if isinstance(dep, bool) or not isinstance(dep, int):
            raise InvalidParams("depends_on must list task ids", field=f"depends_on[{i}]")

    return NewTask(
        task_type=tt.qualified,
        domain=tt.domain,
        key=key,
        label=sub.label if sub.label is not None else (sub.key or tt.qualified),
        priority=priority,
        payload_json=payload_json,
        payload=sub.payload,
        group=group,
        tags=tags,
        parent_id=sub.parent_id,
        fail_fast=True if sub.fail_fast is None else bool(sub.fail_fast),
        max_retries=max_retries,
        retry_policy_json=_policy_json(policy),
        expected_io=expected_io,
        ttl_ms=ttl_ms,
        ttl_from=ttl_from,
        expires_at=expires_at,
        run_after=run_after,
        on_dep_failure=sub.on_dependency_failure or "cancel",
        depends_on=depends_on,
        recurring_interval_ms=recurring_interval,
        recurring_max=recurring_max,
        on_duplicate=sub.on_duplicate,
    )


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What to do after a failed attempt."""

    #: "retry", "failed" (permanent) or "dead_letter" (retries exhausted).
    kind: Literal["retry", "failed", "dead_letter"]
    message: str
    retryable: bool
    delay_ms: int

    @property
    def will_retry(self) -> bool:
        return self.kind == "retry"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TaskError):
        return exc.message
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if not isinstance(exc, Exception):
        message += " (raised by task code; it ends this attempt, not the scheduler)"
    return message


def decide_failure(
    exc: BaseException,
    retry_count: int,
    max_retries: int,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> FailureDecision:
    """Retry, fail or dead-letter after ``exc``.

    Any error is retryable but a permanent :class:`TaskError` and the
    ``SystemExit`` / ``KeyboardInterrupt`` of task code that meant to end the
    program (running it again would do so again).
    """
    message = describe_error(exc)
    if isinstance(exc, TaskError):
        retryable = exc.retryable
    else:
        retryable = not isinstance(exc, SystemExit | KeyboardInterrupt)
    if not retryable:
        return FailureDecision("failed", message, False, 0)
    if retry_count >= max_retries:
        return FailureDecision("dead_letter", message, True, 0)
    override = exc.retry_after_ms if isinstance(exc, TaskError) else None
    delay = override if override is not None else policy.delay_ms(retry_count, rng)
    return FailureDecision("retry", message, True, max(0, int(delay)))


def policy_from_json(text: str | None, fallback: RetryPolicy) -> RetryPolicy:
    """The retry policy stored with a task (parsed once per distinct text)."""
    if not text:
        return fallback
    parsed = _parse_policy(text)
    return parsed if parsed is not None else fallback


@functools.lru_cache(maxsize=1024)
def _parse_policy(text: str) -> RetryPolicy | None:
    try:
        return RetryPolicy.from_mapping(json.loads(text))
    except (ValueError, InvalidParams):
        return None


def next_wake_ms(now: int, next_due: int | None, poll_interval_ms: int) -> int:
    """How long the run loop may sleep: until the next due task, at most one poll interval."""
    if next_due is None:
        return poll_interval_ms
    return max(0, min(poll_interval_ms, next_due - now))
