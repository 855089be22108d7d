"""The disk and network IO budget checks of the dispatch gate (semantics 1.8). Pure.

The observed, smoothed throughput stands in for capacity: over a window of
``window_s`` seconds the machine is assumed to move ``rate * window_s`` bytes
on each axis, and the expected IO of the running tasks plus the candidate
must fit within ``fraction`` of that.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from ..model import IoBudget
from .sampler import ResourceSnapshot

__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_WINDOW_S",
    "IoAxis",
    "disk_gate",
    "io_gate",
    "net_gate",
]

IoAxis: TypeAlias = Literal["disk_read", "disk_write", "net_rx", "net_tx"]

#: Seconds of observed throughput that count as capacity.
DEFAULT_WINDOW_S = 2.0
#: Share of that capacity the expected IO may fill.
DEFAULT_FRACTION = 0.8


def _fits(expected: int, rate_bps: float, window_s: float, fraction: float) -> bool:
    capacity = rate_bps * window_s
    # An axis with no observed throughput has no capacity to exceed.
    return capacity <= 0 or expected <= fraction * capacity


def disk_gate(
    candidate: IoBudget,
    running_total: IoBudget,
    resources: ResourceSnapshot,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    fraction: float = DEFAULT_FRACTION,
) -> IoAxis | None:
    """The disk check alone (``has_io_headroom``): the denying axis, or None.

    Admits when the smoothed read and write rates are both 0. Note that a
    candidate expecting no IO is still denied when the running tasks alone
    already exceed the budget.
    """
    read, write = resources.disk_read_bps, resources.disk_write_bps
    if read <= 0 and write <= 0:
        return None
    if not _fits(candidate.disk_read + running_total.disk_read, read, window_s, fraction):
        return "disk_read"
    if not _fits(candidate.disk_write + running_total.disk_write, write, window_s, fraction):
        return "disk_write"
    return None


def net_gate(
    candidate: IoBudget,
    running_total: IoBudget,
    resources: ResourceSnapshot,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    fraction: float = DEFAULT_FRACTION,
) -> IoAxis | None:
    """The network check alone (``has_net_io_headroom``): the denying axis, or None.

    Applies only when the candidate declares network IO and the smoothed rx
    and tx rates are not both 0.
    """
    if candidate.net_rx == 0 and candidate.net_tx == 0:
        return None
    rx, tx = resources.net_rx_bps, resources.net_tx_bps
    if rx <= 0 and tx <= 0:
        return None
    if not _fits(candidate.net_rx + running_total.net_rx, rx, window_s, fraction):
        return "net_rx"
    if not _fits(candidate.net_tx + running_total.net_tx, tx, window_s, fraction):
        return "net_tx"
    return None


def io_gate(
    candidate: IoBudget,
    running_total: IoBudget,
    running_count: int,
    resources: ResourceSnapshot,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    fraction: float = DEFAULT_FRACTION,
) -> IoAxis | None:
    """Whether ``candidate`` fits the IO budget: None to admit, else the denying axis.

    Args:
        candidate: The task's declared ``expected_io``.
        running_total: Sum of the running tasks' ``expected_io``.
        running_count: How many tasks are running. With none running the
            candidate is always admitted, so a task larger than any budget
            still runs eventually.
        resources: The latest smoothed snapshot.
        window_s: Seconds of observed throughput that count as capacity.
        fraction: Share of that capacity the expected IO may fill.
    """
    if running_count <= 0:
        return None
    denied = disk_gate(candidate, running_total, resources, window_s=window_s, fraction=fraction)
    if denied is None:
        denied = net_gate(candidate, running_total, resources, window_s=window_s, fraction=fraction)
    return denied
