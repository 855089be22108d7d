"""Scheduler settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParams
from ..model import Priority, RetryPolicy
from ..resource import ThrottlePolicy
from .aging import AgingConfig

__all__ = ["Retention", "SchedulerConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How much history to keep: the newest ``max_count`` rows and/or ``max_age_ms``.

    Pruning runs on the first completion and then every ``prune_interval``
    completions, so its cost is spread thin.
    """

    max_count: int | None = 10_000
    max_age_ms: int | None = None
    prune_interval: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """Scheduler-wide settings. Every field has a desktop-friendly default.

    Attributes:
        max_concurrency: Tasks running at once (changeable at runtime).
        max_retries: Retries of a retryable failure when no policy says otherwise.
        retry: Default retry policy (its ``max_retries`` is replaced by ``max_retries``).
        default_priority: Priority of tasks with none given anywhere.
        poll_interval_ms: Longest sleep of the run loop between wake-ups.
        drain_timeout_ms: How long a graceful shutdown waits for running tasks.
        default_ttl_ms: TTL of tasks with none given anywhere (None: no TTL).
        synchronous: SQLite ``synchronous`` mode: "NORMAL" (fast; a power loss may
            lose the last commits) or "FULL" (every commit survives power loss).
        event_buffer: Events buffered per in-process subscription before ``lagged``.
        cancel_hook_timeout_ms: How long an ``on_cancel`` hook may run.
        preempt_priority: Submissions at or above (numerically at or below) this
            priority pause less urgent running work.
    """

    max_concurrency: int = 4
    max_retries: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    default_priority: int = Priority.NORMAL
    poll_interval_ms: int = 500
    drain_timeout_ms: int = 10_000
    default_ttl_ms: int | None = None
    expiry_sweep_interval_ms: int | None = 30_000
    retention: Retention = field(default_factory=Retention)
    synchronous: str = "NORMAL"
    busy_timeout_ms: int = 5_000
    event_buffer: int = 1024
    cancel_hook_timeout_ms: int = 30_000
    preempt_priority: int = Priority.REALTIME
    #: Priority aging; None (the default) keeps plain priority order.
    aging: AgingConfig | None = None
    #: Running tasks allowed per group without a limit of its own (0: no limit).
    default_group_concurrency: int = 0
    #: Weight of groups without one (and of ungrouped tasks) in fair scheduling.
    default_group_weight: float = 1.0
    #: Watch disk, network, CPU, memory and battery (psutil, on a thread) and
    #: hold back work whose IO budget does not fit or whose priority the
    #: pressure throttles. Off by default in the library; on in the sidecar.
    resource_monitoring: bool = False
    sample_interval_ms: int = 1000
    ewma_alpha: float = 0.3
    #: Network bandwidth for the "network" pressure source (bytes/s); turns monitoring on.
    bandwidth_limit_bps: float | None = None
    #: System memory in use (0..1) above which memory pressure rises.
    memory_threshold: float = 0.8
    #: Which priorities are held at which pressure.
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy.default)
    #: How often extrapolated progress is published for tasks that report none.
    progress_extrapolation_ms: int = 1000

    def __post_init__(self) -> None:
        if self.max_concurrency < 0:
            raise InvalidParams("max_concurrency must be >= 0", field="max_concurrency")
        if self.max_retries < 0:
            raise InvalidParams("max_retries must be >= 0", field="max_retries")
        if self.poll_interval_ms <= 0:
            raise InvalidParams("poll_interval_ms must be > 0", field="poll_interval_ms")
        if self.default_group_concurrency < 0:
            raise InvalidParams(
                "default_group_concurrency must be >= 0", field="default_group_concurrency"
            )
        if not self.default_group_weight > 0:
            raise InvalidParams("default_group_weight must be > 0", field="default_group_weight")
        if self.synchronous.upper() not in ("NORMAL", "FULL", "EXTRA", "OFF"):
            raise InvalidParams("synchronous must be NORMAL or FULL", field="synchronous")

    def evolve(self, **changes: Any) -> SchedulerConfig:
        return dataclasses.replace(self, **changes)
