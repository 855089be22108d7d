"""Token buckets for rate limits per task type and per group.

A bucket holds up to ``burst`` tokens, starts full, and refills continuously
at ``per_second``. Admitting a task costs one token from each bucket that
applies (its type's and its group's); both are checked before either is
taken. A limited task is deferred to the moment its next token is due, so the
rest of the queue keeps moving. Pure: time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParams

__all__ = ["TokenBucket", "check_and_take"]


@dataclass(slots=True)
class TokenBucket:
    per_second: float
    burst: int
    tokens: float
    updated_ms: int

    @classmethod
    def new(cls, per_second: float, burst: int | None, now_ms: int) -> TokenBucket:
        if not per_second > 0 or math.isinf(per_second):
            raise InvalidParams("per_second must be a positive number", field="per_second")
        b = burst if burst is not None else max(1, math.ceil(per_second))
        if b < 1:
            raise InvalidParams("burst must be >= 1", field="burst")
        return cls(per_second, b, float(b), now_ms)

    def refill(self, now_ms: int) -> None:
        if now_ms > self.updated_ms:
            self.tokens = min(
                float(self.burst), self.tokens + (now_ms - self.updated_ms) * self.per_second / 1000
            )
            self.updated_ms = now_ms

    def reconfigure(self, per_second: float, burst: int | None, now_ms: int) -> None:
        """Change the rate in place: refill first, then clamp to the new burst."""
        fresh = TokenBucket.new(per_second, burst, now_ms)
        self.refill(now_ms)
        self.per_second, self.burst = fresh.per_second, fresh.burst
        self.tokens = min(self.tokens, float(self.burst))

    def next_token_ms(self, now_ms: int) -> int:
        """When the next whole token is available (``now_ms`` if one is)."""
        self.refill(now_ms)
        if self.tokens >= 1.0:
            return now_ms
        return now_ms + max(1, math.ceil((1.0 - self.tokens) * 1000 / self.per_second))

    def available(self, now_ms: int) -> float:
        self.refill(now_ms)
        return self.tokens

    def to_dict(self, scope: str, kind: str, now_ms: int) -> dict[str, Any]:
        return {
            "scope": scope,
            "scope_kind": kind,
            "per_second": self.per_second,
            "burst": self.burst,
            "available_tokens": round(self.available(now_ms), 3),
        }


def check_and_take(buckets: list[TokenBucket], now_ms: int) -> int | None:
    """Take one token from every bucket, or none: returns None when admitted,
    else the epoch ms at which all of them will have a token."""
    due = max((b.next_token_ms(now_ms) for b in buckets), default=now_ms)
    if due > now_ms:
        return due
    for b in buckets:
        b.tokens -= 1.0
    return None
