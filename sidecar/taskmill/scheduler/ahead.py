"""Claimed ahead: tasks claimed beyond the free slots, started as slots free.

A turn (record what finished, claim what starts) is one transaction on the
database thread, and a commit costs about as much as recording 50 tasks. If
each finishing task had to wait for a turn before the next could start, a
queue of short tasks would run one commit per task (measured: ~600 tasks/s at
concurrency 1). So a turn claims a small window of tasks ahead of the free
slots; they wait here, in (effective priority, id) order, and start the
moment a slot frees, while the run loop records the finished ones in batches.

The window is sized by how long runs take: about :data:`HORIZON_S` of work
for every slot, at most :data:`WINDOW_MAX` tasks, and none at all while runs
take longer than the horizon (a queue of long tasks gains nothing and its
tasks would only look claimed for longer), and none with weighted fair
groups, whose shares are computed over the slots of each claim. Claimed ahead is still claimed in
the database (``running``, its ``dispatch_count`` counted): a crash puts them
back to pending like any run, and the queries show them as ``pending`` until
they start. Whatever changes what may start (a pause, a limit, a weight, a
more urgent submission) releases them back to pending, or lets the urgent
task in ahead of them.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator

from ..model import TaskRecord
from ..store.rows import Claimed

__all__ = ["HORIZON_S", "WINDOW_MAX", "Ahead", "window"]

#: Seconds of work claimed ahead for each slot.
HORIZON_S = 0.02
#: At most this many tasks wait claimed ahead.
WINDOW_MAX = 256


def window(max_concurrency: int, mean_run_s: float | None) -> int:
    """How many tasks to keep claimed ahead of the free slots.

    ``mean_run_s`` is the recent mean run time (None before any run ended).
    """
    if mean_run_s is None or max_concurrency <= 0:
        return 0
    n = int(max_concurrency * HORIZON_S / max(mean_run_s, 1e-6))
    return min(WINDOW_MAX, n) if n >= 2 else 0


class Ahead:
    """Claimed tasks waiting for a slot, most urgent first."""

    def __init__(self) -> None:
        # (effective priority, id, arrival, claimed): a task released and
        # claimed again has a stale entry too; arrival keeps them apart.
        self._heap: list[tuple[int, int, int, Claimed]] = []
        self._by_id: dict[int, Claimed] = {}
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._by_id

    def __iter__(self) -> Iterator[Claimed]:
        return iter(self._by_id.values())

    def hold(self, claimed: Claimed) -> None:
        rec = claimed.record
        self._by_id[rec.id] = claimed
        self._arrivals += 1
        heapq.heappush(self._heap, (rec.effective_priority, rec.id, self._arrivals, claimed))

    def pop(self) -> Claimed | None:
        """The most urgent waiting task (and forget it), or None."""
        while self._heap:
            _, task_id, _, claimed = heapq.heappop(self._heap)
            if self._by_id.get(task_id) is claimed:
                del self._by_id[task_id]
                return claimed
        return None

    def discard(self, task_id: int) -> Claimed | None:
        """Forget one waiting task (cancelled, say); the heap skips it later."""
        claimed = self._by_id.pop(task_id, None)
        self._compact()
        return claimed

    def release(self, which: Callable[[TaskRecord], bool] | None = None) -> list[Claimed]:
        """Take out the waiting tasks ``which`` selects (all by default)."""
        out = [c for c in self._by_id.values() if which is None or which(c.record)]
        for c in out:
            del self._by_id[c.record.id]
        self._compact()
        return out

    def least_urgent(self) -> int | None:
        """The largest effective priority waiting (None when empty)."""
        if not self._by_id:
            return None
        return max(c.record.effective_priority for c in self._by_id.values())

    def by_domain(self) -> Counter[str]:
        return Counter(c.record.domain for c in self._by_id.values())

    def _compact(self) -> None:
        if not self._by_id:
            self._heap.clear()
        elif len(self._heap) > 2 * len(self._by_id) + 64:
            self._heap = [e for e in self._heap if self._by_id.get(e[1]) is e[3]]
            heapq.heapify(self._heap)
