"""The wire contract as test data: one table for every suite that needs it.

Written from the contract (docs/protocol.md sections 2, 5, 6 and 8), not
from the code, so that a test comparing the two means something:

- :data:`PARAMS`: every method a peer may call on the sidecar, in the
  contract's order, with its smallest valid params (only required members:
  the unit tests drop each one in turn and expect it to be named);
- :data:`NOTIFICATIONS`: the methods peers send without an ``id``;
- :data:`SIDECAR_TO_CLIENT`: what the sidecar sends (requests and
  notifications), which a client never calls;
- :data:`ERROR_KINDS`: error code to ``data.kind``;
- :data:`TASK_HEADER` and :data:`EVENT_FIELDS`: the members of each event
  kind beyond the envelope (``subscription, seq, at, kind``; task events also
  carry the header).

``tests/contract.json`` holds the same data for other languages (bridge_js);
``python -m tests.contract`` rewrites it and ``tests/unit/test_contract.py``
fails when it is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "ERROR_KINDS",
    "EVENT_ENVELOPE",
    "EVENT_FIELDS",
    "JSON_PATH",
    "NOTIFICATIONS",
    "PARAMS",
    "SCHEDULER_EVENT_KINDS",
    "SIDECAR_TO_CLIENT",
    "TASK_EVENT_KINDS",
    "TASK_HEADER",
    "as_json",
]

JSON_PATH = Path(__file__).with_name("contract.json")

PARAMS: dict[str, dict[str, Any]] = {
    "session.hello": {"protocol": 1},
    "sidecar.info": {},
    "sidecar.shutdown": {},
    "task.submit": {"task_type": "demo::echo"},
    "task.submit_batch": {"tasks": []},
    "task.get": {"id": 1},
    "task.lookup": {"task_type": "demo::echo", "key": "k"},
    "task.list": {},
    "task.cancel": {"id": 1},
    "task.cancel_where": {"domain": "demo"},
    "task.set_priority": {"id": 1, "priority": 0},
    "task.retry_dead_letter": {"id": 1},
    "history.list": {},
    "history.stats": {"task_type": "demo::echo"},
    "dependencies.get": {"id": 1},
    "tags.values": {"key": "k"},
    "tags.keys": {"prefix": ""},
    "scheduler.snapshot": {},
    "scheduler.pause": {},
    "scheduler.resume": {},
    "scheduler.set_max_concurrency": {"value": 4},
    "scheduler.metrics": {},
    "domain.pause": {"domain": "demo"},
    "domain.resume": {"domain": "demo"},
    "domain.set_max_concurrency": {"domain": "demo", "value": None},
    "group.pause": {"group": "g"},
    "group.resume": {"group": "g"},
    "group.set_limit": {"group": "g", "value": None},
    "group.set_weight": {"group": "g", "weight": None},
    "group.set_min_slots": {"group": "g", "value": None},
    "rate_limit.set": {"task_type": "demo::echo", "per_second": 10},
    "rate_limit.remove": {"group": "g"},
    "recurring.list": {},
    "recurring.pause": {"id": 1},
    "recurring.resume": {"id": 1},
    "recurring.cancel": {"id": 1},
    "pressure.set": {"source": "call", "value": 0.5},
    "events.subscribe": {},
    "events.unsubscribe": {"subscription": 3},
    "worker.register": {"task_types": ["uploads::put"]},
    "worker.unregister": {"worker": "w1"},
    "worker.progress": {"task_id": 1, "percent": 0.5},
    "worker.io": {"task_id": 1},
    "worker.spawn_child": {"task_id": 1, "task_type": "demo::sleep"},
}

NOTIFICATIONS = ("worker.progress", "worker.io")

SIDECAR_TO_CLIENT = ("worker.execute", "worker.cancel", "event", "sidecar.ready")

ERROR_KINDS: dict[int, str] = {
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
    -32001: "unauthorized",
    -32002: "not_found",
    -32003: "unknown_task_type",
    -32004: "invalid_state",
    -32005: "payload_too_large",
    -32006: "shutting_down",
    -32007: "storage_error",
    -32008: "limit_exceeded",
}

EVENT_ENVELOPE = ("subscription", "seq", "at", "kind")

TASK_HEADER = (
    "task_id",
    "task_type",
    "domain",
    "key",
    "label",
    "tags",
    "base_priority",
    "effective_priority",
    "parent_id",
)

TASK_EVENT_KINDS = (
    "submitted",
    "dispatched",
    "progress",
    "completed",
    "failed",
    "dead_lettered",
    "preempted",
    "cancelled",
    "superseded",
    "expired",
    "waiting",
    "unblocked",
    "dependency_failed",
    "recurring_skipped",
    "recurring_completed",
)

SCHEDULER_EVENT_KINDS = (
    "paused",
    "resumed",
    "domain_paused",
    "domain_resumed",
    "group_paused",
    "group_resumed",
    "group_weight_changed",
    "shutdown",
    "lagged",
    "pressure",
)

EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "submitted": ("outcome",),
    "dispatched": ("attempt",),
    "progress": ("percent", "message", "reported"),
    "completed": ("duration_ms", "result"),
    "failed": ("error", "retryable", "will_retry", "retry_after_ms", "attempt"),
    "dead_lettered": ("error", "retry_count"),
    "preempted": ("by_task_id",),
    "cancelled": ("reason",),
    "superseded": ("new_task_id",),
    "expired": ("age_ms",),
    "waiting": ("children_count",),
    "unblocked": (),
    "dependency_failed": ("failed_dependency",),
    "recurring_skipped": ("reason",),
    "recurring_completed": ("occurrences",),
    "paused": (),
    "resumed": (),
    "domain_paused": ("domain",),
    "domain_resumed": ("domain",),
    "group_paused": ("group", "pending", "running"),
    "group_resumed": ("group", "resumed"),
    "group_weight_changed": ("group", "previous", "weight"),
    "shutdown": ("mode",),
    "lagged": ("missed",),
    "pressure": ("pressure", "breakdown"),
}
"""Members each event kind carries besides the envelope (and, for task
events, the :data:`TASK_HEADER`). ``failed`` and ``dead_lettered`` may also
carry ``traceback``; some kinds carry more than the contract names
(``recurring_completed`` has ``next_task_id``)."""


def as_json() -> str:
    """The contract as ``tests/contract.json`` holds it."""
    data = {
        "comment": "Generated from tests/contract.py (python -m tests.contract); do not edit.",
        "params": PARAMS,
        "notifications": list(NOTIFICATIONS),
        "sidecar_to_client": list(SIDECAR_TO_CLIENT),
        "error_kinds": {str(code): kind for code, kind in ERROR_KINDS.items()},
        "event_envelope": list(EVENT_ENVELOPE),
        "task_header": list(TASK_HEADER),
        "task_event_kinds": list(TASK_EVENT_KINDS),
        "scheduler_event_kinds": list(SCHEDULER_EVENT_KINDS),
        "event_fields": {kind: list(fields) for kind, fields in EVENT_FIELDS.items()},
    }
    return json.dumps(data, indent=2) + "\n"


if __name__ == "__main__":
    JSON_PATH.write_text(as_json())
    print(f"wrote {JSON_PATH}")
