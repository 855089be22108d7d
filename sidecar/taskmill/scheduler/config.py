"""Scheduler settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParams
from ..model import Priority, RetryPolicy
from ..resource import ThrottlePolicy
from .aging import AgingConfig

__all__ = ["IoSettings", "Retention", "SchedulerConfig"]

MIB = 1024 * 1024


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
class IoSettings:
    """How executors' own IO is paced (the ``io_*`` fields of :class:`SchedulerConfig`)."""

    #: Average disk latency (ms) to keep under while others use the disk; 0: no target.
    latency_target_ms: float = 0.0
    #: How often the disks are sampled for the target.
    sample_interval_ms: int = 100
    #: The least bytes/s background IO gets under the target.
    rate_floor_bps: float = 2 * MIB
    #: The most bytes/s it ever gets (None: unlimited); with no target, a fixed rate.
    rate_limit_bps: float | None = None
    #: Bytes ``ctx.io`` reads or writes per call to the OS (and per wait).
    chunk_bytes: int = 64 * 1024
    #: Bytes written to a file between two writeback steps (0: no bound).
    writeback_bytes: int = MIB
    #: Lower the OS IO priority of background-priority tasks' executor threads.
    background_priority: bool = True


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
    #: Average disk latency (ms) that executors' paced IO (``ctx.io``, the
    #: built-in ``fs`` and ``demo`` tasks) keeps under while other processes use
    #: the disk; with no one else on the disk it runs at full speed. Needs
    #: resource monitoring; 0 turns the target off.
    io_latency_target_ms: float = 0.22
    #: How often the disks are sampled for the latency target.
    io_sample_interval_ms: int = 100
    #: The least bytes/s paced IO gets under the latency target (a lower
    #: ``io_rate_limit_bps`` lowers it).
    io_rate_floor_bps: float = 2 * MIB
    #: The most bytes/s paced IO ever gets (None: unlimited); with no target, a fixed rate.
    io_rate_limit_bps: float | None = None
    #: Bytes ``ctx.io`` moves per call to the OS (and per wait for the pacer).
    io_chunk_bytes: int = 64 * 1024
    #: Bytes ``ctx.io`` writes to a file between two writeback steps, so the
    #: kernel never holds a large flush (0: no bound).
    io_writeback_bytes: int = MIB
    #: Lower the OS IO priority of background-priority tasks' executor threads
    #: (best-effort; see :mod:`taskmill.resource.ioprio`).
    io_background_priority: bool = True

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
        self._check_io()

    def _check_io(self) -> None:
        def positive(name: str, value: float) -> None:
            if isinstance(value, bool) or not value > 0:
                raise InvalidParams(f"{name} must be > 0, got {value!r}", field=name)

        if not self.io_latency_target_ms >= 0:
            raise InvalidParams(
                f"io_latency_target_ms must be >= 0, got {self.io_latency_target_ms!r}",
                field="io_latency_target_ms",
            )
        positive("io_sample_interval_ms", self.io_sample_interval_ms)
        positive("io_rate_floor_bps", self.io_rate_floor_bps)
        if self.io_rate_limit_bps is not None:
            positive("io_rate_limit_bps", self.io_rate_limit_bps)
        positive("io_chunk_bytes", self.io_chunk_bytes)
        if self.io_writeback_bytes < 0:
            raise InvalidParams(
                f"io_writeback_bytes must be >= 0, got {self.io_writeback_bytes!r}",
                field="io_writeback_bytes",
            )

    @property
    def io(self) -> IoSettings:
        """The ``io_*`` fields, together."""
        return IoSettings(
            latency_target_ms=self.io_latency_target_ms,
            sample_interval_ms=self.io_sample_interval_ms,
            rate_floor_bps=self.io_rate_floor_bps,
            rate_limit_bps=self.io_rate_limit_bps,
            chunk_bytes=self.io_chunk_bytes,
            writeback_bytes=self.io_writeback_bytes,
            background_priority=self.io_background_priority,
        )

    def evolve(self, **changes: Any) -> SchedulerConfig:
        return dataclasses.replace(self, **changes)
