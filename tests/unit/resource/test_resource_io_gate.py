"""The disk and network IO budget checks."""

from __future__ import annotations

import pytest

from taskmill.model import IoBudget
from taskmill.resource import ResourceSnapshot, disk_gate, io_gate, net_gate

MB = 1_000_000
WRITING = ResourceSnapshot(disk_write_bps=10 * MB)  # cap 20 MB, 80 % = 16 MB
TASK = IoBudget(disk_write=5 * MB)


def running(n: int, per_task: IoBudget = TASK) -> tuple[IoBudget, int]:
    total = IoBudget()
    for _ in range(n):
        total = total + per_task
    return total, n


def test_admits_as_many_tasks_as_the_budget_allows() -> None:
    admitted = 0
    while io_gate(TASK, *running(admitted), WRITING) is None:
        admitted += 1
        assert admitted < 100
    # 0 running: always; 5 MB, 10 MB running: fits (10, 15 <= 16); 15 MB: 20 > 16.
    assert admitted == 3
    assert io_gate(TASK, *running(0), WRITING) is None
    assert io_gate(TASK, *running(1), WRITING) is None
    assert io_gate(TASK, *running(2), WRITING) is None
    assert io_gate(TASK, *running(3), WRITING) == "disk_write"


def test_exact_budget_is_admitted() -> None:
    assert io_gate(TASK, IoBudget(disk_write=11 * MB), 1, WRITING) is None  # 16 MB == 80 %
    assert io_gate(TASK, IoBudget(disk_write=11 * MB + 1), 1, WRITING) == "disk_write"


def test_nothing_running_always_admits() -> None:
    huge = IoBudget(disk_read=10**12, disk_write=10**12, net_rx=10**12, net_tx=10**12)
    busy = ResourceSnapshot(disk_read_bps=1.0, disk_write_bps=1.0, net_rx_bps=1.0, net_tx_bps=1.0)
    assert io_gate(huge, IoBudget(), 0, busy) is None


def test_idle_disk_admits() -> None:
    assert io_gate(TASK, IoBudget(disk_write=10**12), 3, ResourceSnapshot()) is None


def test_axis_with_zero_rate_has_no_capacity_to_exceed() -> None:
    reading = ResourceSnapshot(disk_read_bps=10 * MB)  # write rate 0
    assert disk_gate(IoBudget(disk_write=10**12), IoBudget(), reading) is None
    assert disk_gate(IoBudget(disk_read=17 * MB), IoBudget(), reading) == "disk_read"


def test_zero_io_candidate_denied_when_running_tasks_exceed_budget() -> None:
    assert io_gate(IoBudget(), IoBudget(disk_write=17 * MB), 2, WRITING) == "disk_write"


def test_net_gate_applies_only_to_net_declaring_tasks() -> None:
    net_busy = ResourceSnapshot(net_tx_bps=5 * MB)  # cap 10 MB, 80 % = 8 MB
    over = IoBudget(net_tx=9 * MB)
    assert io_gate(over, IoBudget(), 1, net_busy) == "net_tx"
    assert io_gate(IoBudget(net_tx=8 * MB), IoBudget(), 1, net_busy) is None
    assert io_gate(IoBudget(net_tx=4 * MB), IoBudget(net_tx=5 * MB), 1, net_busy) == "net_tx"
    # A candidate without net IO skips the net check, whatever is running.
    assert io_gate(IoBudget(), IoBudget(net_tx=50 * MB), 1, net_busy) is None
    # Net rates both 0: no check.
    assert net_gate(over, IoBudget(net_tx=50 * MB), ResourceSnapshot()) is None
    assert net_gate(IoBudget(net_rx=9 * MB), IoBudget(), ResourceSnapshot(net_rx_bps=5 * MB)) == (
        "net_rx"
    )


def test_disk_checked_before_net() -> None:
    both = ResourceSnapshot(disk_read_bps=MB, net_rx_bps=MB)
    task = IoBudget(disk_read=10 * MB, net_rx=10 * MB)
    assert io_gate(task, IoBudget(), 1, both) == "disk_read"


@pytest.mark.parametrize(
    ("window_s", "fraction", "expected"), [(2.0, 0.8, None), (1.0, 0.5, "disk_write")]
)
def test_window_and_fraction(window_s: float, fraction: float, expected: str | None) -> None:
    task = IoBudget(disk_write=6 * MB)
    out = io_gate(task, IoBudget(), 1, WRITING, window_s=window_s, fraction=fraction)
    assert out == expected
