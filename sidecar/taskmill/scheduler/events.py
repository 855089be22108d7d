"""Typed events, filters, and bounded per-subscriber delivery.

The scheduler emits every event through an :class:`EventBus`. Emitting is a
synchronous, constant-time append to each matching subscription, so a slow
subscriber never slows dispatch: each subscription has a bounded buffer;
progress events are coalesced per task first (the latest value wins), and a
lifecycle event that finds the buffer full is dropped and counted, to be
reported as one ``lagged {missed}`` event at the point of the gap.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from ..filters import EventFilter
from ..model import EVENT_KINDS, SCHEDULER_EVENT_KINDS, TASK_EVENT_KINDS, TaskRecord

__all__ = [
    "EVENT_KINDS",
    "SCHEDULER_EVENT_KINDS",
    "TASK_EVENT_KINDS",
    "TERMINAL_KINDS",
    "Event",
    "EventBus",
    "EventFilter",
    "Subscription",
    "header",
]


#: Kinds after which a task emits nothing more under its id (unless re-run).
TERMINAL_KINDS = frozenset(
    {"completed", "dead_lettered", "cancelled", "superseded", "expired", "dependency_failed"}
)


class Event:
    """One event. ``data`` is the wire form without the subscription id."""

    __slots__ = ("at", "data", "domain", "kind", "seq", "tags", "task_id", "task_type")

    def __init__(
        self,
        seq: int,
        at: int,
        kind: str,
        data: dict[str, Any],
        task_id: int | None = None,
        task_type: str | None = None,
        domain: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.seq = seq
        self.at = at
        self.kind = kind
        self.data = data
        self.task_id = task_id
        self.task_type = task_type
        self.domain = domain
        self.tags = tags

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def __repr__(self) -> str:
        return f"Event({self.data!r})"

    @property
    def is_terminal(self) -> bool:
        """True when the task reached a final state with this event."""
        if self.kind == "failed":
            return not self.data.get("will_retry", False)
        return self.kind in TERMINAL_KINDS


def _unindex(index: dict[Any, dict[int, Subscription]], key: Any, sub_id: int) -> None:
    slot = index.get(key)
    if slot is not None:
        slot.pop(sub_id, None)
        if not slot:
            del index[key]


def header(rec: TaskRecord, effective_priority: int | None = None) -> dict[str, Any]:
    """The fields every task event carries."""
    return {
        "task_id": rec.id,
        "task_type": rec.task_type,
        "domain": rec.domain,
        "key": rec.key,
        "label": rec.label,
        "tags": dict(rec.tags),
        "base_priority": rec.priority,
        "effective_priority": (
            rec.effective_priority if effective_priority is None else effective_priority
        ),
        "parent_id": rec.parent_id,
    }


class Subscription:
    """A bounded, filtered stream of events; iterate it with ``async for``.

    Call :meth:`close` (or leave the ``async with`` block) to stop receiving.
    """

    def __init__(
        self,
        bus: EventBus,
        sub_id: int,
        flt: EventFilter,
        maxsize: int,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.id = sub_id
        self.filter = flt
        self.maxsize = maxsize
        self._bus = bus
        self._buf: deque[Event] = deque()
        self._missed = 0
        self._interval_s = flt.progress_interval_ms / 1000.0
        self._pending_progress: dict[int, Event] = {}
        self._last_progress: dict[int, float] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_ready = on_ready
        self.closed = False
        #: Total events dropped because the buffer was full.
        self.dropped = 0

    # -- producer side (called by the bus) -------------------------------

    def _offer(self, ev: Event) -> None:
        if ev.kind == "progress" and self._interval_s > 0:
            self._offer_progress(ev)
            return
        if ev.task_id is not None and ev.task_id in self._pending_progress:
            self._push(self._pending_progress.pop(ev.task_id))
        if ev.task_id is not None and ev.is_terminal:
            self._last_progress.pop(ev.task_id, None)
        self._push(ev)

    def _offer_progress(self, ev: Event) -> None:
        assert ev.task_id is not None
        now = time.monotonic()
        last = self._last_progress.get(ev.task_id)
        if ev.task_id not in self._pending_progress and (
            last is None or now - last >= self._interval_s
        ):
            self._last_progress[ev.task_id] = now
            self._push(ev)
            return
        self._pending_progress[ev.task_id] = ev
        if self._flush_handle is None:
            delay = self._interval_s if last is None else max(0.0, last + self._interval_s - now)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._flush_handle = loop.call_later(delay, self._flush_progress)

    def _flush_progress(self) -> None:
        self._flush_handle = None
        if self.closed or not self._pending_progress:
            return
        now = time.monotonic()
        due = [
            tid
            for tid in self._pending_progress
            if now - self._last_progress.get(tid, 0.0) >= self._interval_s - 0.001
        ]
        for tid in due:
            self._last_progress[tid] = now
            self._push(self._pending_progress.pop(tid))
        if self._pending_progress:
            soonest = min(self._last_progress.get(t, now) for t in self._pending_progress)
            delay = max(0.001, soonest + self._interval_s - now)
            self._flush_handle = asyncio.get_running_loop().call_later(delay, self._flush_progress)

    def _push(self, ev: Event) -> None:
        if len(self._buf) >= self.maxsize:
            self._missed += 1
            self.dropped += 1
            return
        if self._missed:
            # Room again: report the gap where it happened, then go on.
            if len(self._buf) + 1 >= self.maxsize:
                self._missed += 1
                self.dropped += 1
                return
            self._buf.append(self._bus._lagged(self._missed))
            self._missed = 0
        self._buf.append(ev)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._on_ready is not None:
            self._on_ready()

    # -- consumer side ---------------------------------------------------

    def get_nowait(self) -> Event | None:
        """The next buffered event, or None."""
        if self._buf:
            return self._buf.popleft()
        if self._missed:
            ev = self._bus._lagged(self._missed)
            self._missed = 0
            return ev
        return None

    def pending(self) -> int:
        return len(self._buf) + (1 if self._missed else 0)

    async def get(self, timeout: float | None = None) -> Event:
        """Wait for the next event.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            StopAsyncIteration: the subscription is closed and drained.
        """
        while True:
            ev = self.get_nowait()
            if ev is not None:
                return ev
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await self._waiter
                else:
                    async with asyncio.timeout(timeout):
                        await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; buffered events can still be read."""
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._wake()


class EventBus:
    """Numbers events and hands each to the subscriptions whose filter matches.

    Subscriptions are indexed by the narrowest thing their filter names (task
    ids, else task types, else domains; the rest are "broad"), so a task
    event is checked only against the subscriptions that could want it:
    10,000 ``waitFor`` subscriptions, each on one task id, cost an unrelated
    event nothing.
    """

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._seq = 0
        self._ids = itertools.count(1)
        self._subs: dict[int, Subscription] = {}
        self._by_task: dict[int, dict[int, Subscription]] = {}
        self._by_type: dict[str, dict[int, Subscription]] = {}
        self._by_domain: dict[str, dict[int, Subscription]] = {}
        self._broad: dict[int, Subscription] = {}
        #: How many subscriptions want each kind (None: those that want all):
        #: an event of a kind no one wants ends at one lookup.
        self._kinds: Counter[str | None] = Counter()

    def _slots(self, flt: EventFilter) -> list[dict[int, Subscription]]:
        """The index entries a filter lives in."""
        if flt.task_ids is not None:
            return [self._by_task.setdefault(t, {}) for t in flt.task_ids]
        if flt.task_types is not None:
            return [self._by_type.setdefault(t, {}) for t in flt.task_types]
        if flt.domains is not None:
            return [self._by_domain.setdefault(d, {}) for d in flt.domains]
        return [self._broad]

    @property
    def seq(self) -> int:
        """The seq of the last event emitted."""
        return self._seq

    def subscribe(
        self,
        flt: EventFilter | None = None,
        *,
        maxsize: int = 1024,
        on_ready: Callable[[], None] | None = None,
    ) -> Subscription:
        sub = Subscription(self, next(self._ids), flt or EventFilter(), max(2, maxsize), on_ready)
        self._subs[sub.id] = sub
        for slot in self._slots(sub.filter):
            slot[sub.id] = sub
        self._kinds.update((None,) if sub.filter.kinds is None else sub.filter.kinds)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def _remove(self, sub: Subscription) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        flt = sub.filter
        for kind in (None,) if flt.kinds is None else flt.kinds:
            self._kinds[kind] -= 1
            if self._kinds[kind] <= 0:
                del self._kinds[kind]
        if flt.task_ids is not None:
            for t in flt.task_ids:
                _unindex(self._by_task, t, sub.id)
        elif flt.task_types is not None:
            for name in flt.task_types:
                _unindex(self._by_type, name, sub.id)
        elif flt.domains is not None:
            for d in flt.domains:
                _unindex(self._by_domain, d, sub.id)
        else:
            self._broad.pop(sub.id, None)

    def _candidates(self, rec: TaskRecord) -> list[Subscription]:
        """Subscriptions that may want an event of this task (their filter decides)."""
        if not (self._by_task or self._by_type or self._by_domain):
            return list(self._broad.values())
        found: dict[int, Subscription] = dict(self._broad)
        for slot in (
            self._by_task.get(rec.id),
            self._by_type.get(rec.task_type),
            self._by_domain.get(rec.domain),
        ):
            if slot:
                found.update(slot)
        return list(found.values())

    def close_all(self) -> None:
        for sub in list(self._subs.values()):
            sub.close()

    def wants(self, kind: str) -> bool:
        """Whether any subscription may want events of ``kind`` (when not, the
        caller may skip building what the event would carry, and call
        :meth:`skip` to keep the sequence numbers as if it were emitted)."""
        return kind in self._kinds or None in self._kinds

    def skip(self) -> None:
        """Count an event nobody wants without building it."""
        self._seq += 1

    def emit(self, kind: str, rec: TaskRecord | None = None, /, **fields: Any) -> Event | None:
        """Emit an event; task events take the record their header is built from."""
        self._seq += 1
        if kind not in self._kinds and None not in self._kinds:
            return None  # no subscription wants this kind (or there is none)
        if rec is not None:
            targets = [
                s
                for s in self._candidates(rec)
                if s.filter.wants(kind, rec.id, rec.task_type, rec.domain, rec.tags)
            ]
        else:
            targets = [
                s
                for s in self._subs.values()
                if s.filter.wants(kind, None, None, None, None, fields.get("domain"))
            ]
        if not targets:
            return None
        at = self._now_ms()
        data: dict[str, Any] = {"seq": self._seq, "at": at, "kind": kind}
        if rec is not None:
            data.update(header(rec, fields.pop("effective_priority", None)))
            data.update(fields)
            ev = Event(self._seq, at, kind, data, rec.id, rec.task_type, rec.domain, rec.tags)
        else:
            data.update(fields)
            ev = Event(self._seq, at, kind, data)
        for sub in targets:
            sub._offer(ev)
        return ev

    def _lagged(self, missed: int) -> Event:
        # A lagged notice is not a scheduler event: it does not take a seq.
        at = self._now_ms()
        return Event(
            self._seq,
            at,
            "lagged",
            {"seq": self._seq, "at": at, "kind": "lagged", "missed": missed},
        )
