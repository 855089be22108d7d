"""Priority aging: a task that waits long enough becomes more urgent.

Off by default. When on, a pending task's effective priority is
``base - promotions``, where ``promotions`` is one per ``aging_interval_ms``
of waiting beyond ``grace_period_ms`` (time spent paused does not count). A
promotion never goes past ``max_effective_priority``, and a task already more
urgent than that ceiling is never demoted. The stored priority never changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParams

__all__ = ["AgingConfig", "effective_priority"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgingConfig:
    """Aging settings (times in milliseconds, priorities 0..255).

    Attributes:
        urgent_threshold: Tasks whose effective priority reaches this level or
            better bypass weighted fairness (they still obey the gate).
    """

    grace_period_ms: int = 300_000
    aging_interval_ms: int = 60_000
    max_effective_priority: int = 64
    urgent_threshold: int | None = None

    def __post_init__(self) -> None:
        if self.aging_interval_ms <= 0:
            raise InvalidParams("aging_interval_ms must be > 0", field="aging.aging_interval_ms")
        if self.grace_period_ms < 0:
            raise InvalidParams("grace_period_ms must be >= 0", field="aging.grace_period_ms")
        if not 0 <= self.max_effective_priority <= 255:
            raise InvalidParams(
                "max_effective_priority must be within 0..255",
                field="aging.max_effective_priority",
            )
        if self.urgent_threshold is not None and not 0 <= self.urgent_threshold <= 255:
            raise InvalidParams(
                "urgent_threshold must be within 0..255", field="aging.urgent_threshold"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "grace_period_ms": self.grace_period_ms,
            "aging_interval_ms": self.aging_interval_ms,
            "max_effective_priority": self.max_effective_priority,
            "urgent_threshold": self.urgent_threshold,
        }


def effective_priority(
    base: int, created_at: int, pause_duration_ms: int, now: int, aging: AgingConfig | None
) -> int:
    """The priority a task competes with at ``now``."""
    if aging is None or base <= aging.max_effective_priority:
        return base
    age = now - created_at - pause_duration_ms
    waited = age - aging.grace_period_ms
    if waited < aging.aging_interval_ms:
        return base
    return max(aging.max_effective_priority, base - waited // aging.aging_interval_ms)
