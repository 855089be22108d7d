"""Method parameters: every method, unknown/missing fields, types, ranges, rules."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.errors import InvalidParams, MethodNotFound
from taskmill.model import IoBudget, Recurring, RetryPolicy, Status, Submission
from taskmill.protocol import (
    DEFAULT_LIST_LIMIT,
    EVENT_KINDS,
    METHODS,
    NOTIFICATION_METHODS,
    SCHEDULER_EVENT_KINDS,
    TASK_EVENT_KINDS,
    CancelWhereParams,
    DomainSetMaxConcurrencyParams,
    ErrorResponse,
    EventFilter,
    EventsSubscribeParams,
    ExecuteCompleted,
    ExecuteFailed,
    GroupSetValueParams,
    IdParams,
    NoParams,
    PressureSetParams,
    RateLimitSetParams,
    RateLimitTargetParams,
    Response,
    SessionHelloParams,
    ShutdownParams,
    SpawnChildParams,
    SubmitBatchParams,
    TaskListParams,
    WorkerIoParams,
    WorkerProgressParams,
    WorkerRegisterParams,
    WorkerTaskType,
    event_notification,
    parse_execute_outcome,
    parse_params,
    worker_cancel_notification,
    worker_execute_request,
)
from taskmill.protocol.params.control import GroupPauseParams
from taskmill.protocol.params.tasks import HistoryListParams, TaskSetPriorityParams
from tests import contract

# The smallest valid params of every method (only required members).
MINIMAL = contract.PARAMS


def invalid(method: str, params: dict[str, Any]) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        parse_params(method, params)
    assert info.value.code == -32602
    assert info.value.kind == "invalid_params"
    return info.value


def test_method_table_covers_the_contract():
    assert set(METHODS) == set(contract.PARAMS)
    assert set(contract.NOTIFICATIONS) == NOTIFICATION_METHODS


@pytest.mark.parametrize("method", sorted(MINIMAL))
def test_minimal_params_are_accepted(method: str):
    parse_params(method, MINIMAL[method])


@pytest.mark.parametrize("method", sorted(MINIMAL))
def test_unknown_field_is_named(method: str):
    err = invalid(method, {**MINIMAL[method], "bogus_field": 1})
    assert err.field == "bogus_field"
    assert "unknown field 'bogus_field'" in err.message


@pytest.mark.parametrize(
    ("method", "key"),
    [
        (method, key)
        for method, params in sorted(MINIMAL.items())
        for key in params
        # "at least one of" rules are tested on their own below.
        if method not in ("task.cancel_where", "rate_limit.remove")
    ],
)
def test_missing_required_field_is_named(method: str, key: str):
    rest = {k: v for k, v in MINIMAL[method].items() if k != key}
    err = invalid(method, rest)
    assert err.field == key
    assert key in err.message


def test_unknown_method():
    with pytest.raises(MethodNotFound) as info:
        parse_params("task.sumbit", {})
    assert info.value.code == -32601
    assert "task.submit" in info.value.message


def test_typo_suggests_the_field():
    err = invalid("task.submit", {"task_type": "a::b", "priorty": 3})
    assert err.field == "priorty"
    assert err.message == "unknown field 'priorty' (did you mean 'priority'?)"


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "1", None, [1], {"id": 1}, -1, 2**63])
def test_ids_must_be_integers(value: Any):
    err = invalid("task.get", {"id": value})
    assert err.field == "id"


def test_bool_error_message_says_boolean():
    assert "boolean" in invalid("task.cancel", {"id": True}).message


def test_id_params():
    assert parse_params("task.get", {"id": 0}) == IdParams(id=0)
    assert parse_params("recurring.cancel", {"id": 2**63 - 1}) == IdParams(id=2**63 - 1)


# ---------------------------------------------------------------- task.submit


def test_submit_builds_a_submission():
    sub = parse_params(
        "task.submit",
        {
            "task_type": "uploads::put",
            "payload": {"path": "/x", "n": [1, 2.5, None]},
            "key": "k1",
            "label": "Upload x",
            "priority": "high",
            "group": "s3://bucket",
            "tags": {"album": "a"},
            "ttl_ms": 60000,
            "ttl_from": "first_attempt",
            "run_after_ms": 100,
            "depends_on": [1, 2],
            "on_dependency_failure": "ignore",
            "expected_io": {"net_tx": 5000},
            "retry": {"max_retries": 5, "backoff": "exponential", "base_ms": 10, "max_ms": 1000},
            "recurring": {"interval_ms": 1000, "max_occurrences": 3, "initial_delay_ms": 0},
            "on_duplicate": "supersede",
            "parent_id": 9,
            "fail_fast": True,
        },
    )
    assert sub == Submission(
        task_type="uploads::put",
        payload={"path": "/x", "n": [1, 2.5, None]},
        key="k1",
        label="Upload x",
        priority=64,
        group="s3://bucket",
        tags={"album": "a"},
        ttl_ms=60000,
        ttl_from="first_attempt",
        run_after_ms=100,
        depends_on=(1, 2),
        on_dependency_failure="ignore",
        expected_io=IoBudget(net_tx=5000),
        retry=RetryPolicy(max_retries=5, backoff="exponential", base_ms=10, max_ms=1000),
        recurring=Recurring(interval_ms=1000, max_occurrences=3, initial_delay_ms=0),
        on_duplicate="supersede",
        parent_id=9,
        fail_fast=True,
    )


def test_submit_defaults():
    sub = parse_params("task.submit", {"task_type": "demo::echo"})
    assert sub == Submission(task_type="demo::echo")
    assert sub.on_duplicate == "skip"
    assert sub.priority is None


def test_submit_nulls_mean_not_given():
    params = {"task_type": "demo::echo", "priority": None, "group": None, "retry": None}
    assert parse_params("task.submit", params) == Submission(task_type="demo::echo")


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(0, 0), (255, 255), ("realtime", 0), ("normal", 128), ("background", 192), ("idle", 255)],
)
def test_submit_priority(priority: Any, expected: int):
    sub = parse_params("task.submit", {"task_type": "a::b", "priority": priority})
    assert isinstance(sub, Submission)
    assert sub.priority == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", -1),
        ("priority", 256),
        ("priority", True),
        ("priority", 1.5),
        ("priority", "urgent"),
        ("task_type", "nodomain"),
        ("task_type", "Demo::x"),
        ("task_type", 5),
        ("key", 5),
        ("key", ""),
        ("label", 5),
        ("group", 1),
        ("tags", ["a"]),
        ("tags", {"a": 1}),
        ("ttl_ms", -1),
        ("ttl_ms", 1.5),
        ("ttl_from", "never"),
        ("run_after_ms", -5),
        ("run_after_ms", True),
        ("run_at", "tomorrow"),
        ("depends_on", 3),
        ("depends_on", [1, "2"]),
        ("depends_on", [True]),
        ("on_dependency_failure", "explode"),
        ("on_duplicate", "replace"),
        ("parent_id", -1),
        ("fail_fast", 1),
        ("expected_io", {"disk_read": -1}),
        ("expected_io", {"cpu": 1}),
        ("expected_io", 5),
        ("retry", {"max_retries": True}),
        ("retry", {"backoff": "random"}),
        ("retry", {"max_retry": 3}),
        ("retry", "3"),
        ("recurring", {"interval_ms": 0}),
        ("recurring", {}),
        ("recurring", {"interval_ms": 10, "max_occurrences": 0}),
        ("recurring", {"interval_ms": 10, "every": 1}),
        ("recurring", 10),
    ],
)
def test_submit_rejects(field: str, value: Any):
    err = invalid("task.submit", {"task_type": "a::b", field: value})
    assert err.field is not None
    assert err.field.split(".")[0].split("[")[0] == field


def test_submit_nested_fields_are_named_by_path():
    assert invalid("task.submit", {"task_type": "a::b", "tags": {"x": 1}}).field == "tags.x"
    assert invalid("task.submit", {"task_type": "a::b", "depends_on": [1, -2]}).field == (
        "depends_on[1]"
    )
    err = invalid("task.submit", {"task_type": "a::b", "retry": {"base_ms": -1}})
    assert err.field == "retry.base_ms"
    err = invalid("task.submit", {"task_type": "a::b", "recurring": {"interval_ms": 0}})
    assert err.field == "recurring.interval_ms"


def test_submit_retry_accepts_model_extras():
    sub = parse_params(
        "task.submit",
        {"task_type": "a::b", "retry": {"max_retries": 1, "multiplier": 3, "jitter": True}},
    )
    assert isinstance(sub, Submission)
    assert sub.retry == RetryPolicy(max_retries=1, multiplier=3.0, jitter=True)


def test_submit_run_after_and_run_at_are_exclusive():
    err = invalid("task.submit", {"task_type": "a::b", "run_after_ms": 1, "run_at": 2})
    assert err.field == "run_at"
    sub = parse_params("task.submit", {"task_type": "a::b", "run_after_ms": 1, "run_at": None})
    assert isinstance(sub, Submission)
    assert sub.run_after_ms == 1


def test_submit_payload_is_any_json_and_not_size_checked():
    for payload in (None, 1, "x", [1, {"a": None}], {"big": "x" * (2 * 1024 * 1024)}):
        sub = parse_params("task.submit", {"task_type": "a::b", "payload": payload})
        assert isinstance(sub, Submission)
        assert sub.payload == payload


def test_submit_task_type_required():
    err = invalid("task.submit", {"payload": 1})
    assert err.field == "task_type"
    assert "missing" in err.message


# ---------------------------------------------------------------- task.submit_batch


def test_submit_batch():
    out = parse_params(
        "task.submit_batch",
        {"tasks": [{"task_type": "a::b"}, {"task_type": "a::c", "priority": "idle"}]},
    )
    assert out == SubmitBatchParams(
        tasks=(Submission(task_type="a::b"), Submission(task_type="a::c", priority=255))
    )


def test_submit_batch_names_item_fields():
    tasks: list[Any] = [{"task_type": "a::b"}] * 3 + [{"task_type": "a::b", "priority": 999}]
    assert invalid("task.submit_batch", {"tasks": tasks}).field == "tasks[3].priority"
    err = invalid("task.submit_batch", {"tasks": [{"task_type": "a::b", "priorty": 1}]})
    assert err.field == "tasks[0].priorty"
    assert "'priorty'" in err.message
    assert invalid("task.submit_batch", {"tasks": [5]}).field == "tasks[0]"
    assert invalid("task.submit_batch", {"tasks": [{}]}).field == "tasks[0].task_type"
    err = invalid("task.submit_batch", {"tasks": [{"task_type": "a::b", "retry": {"x": 1}}]})
    assert err.field == "tasks[0].retry.x"
    assert invalid("task.submit_batch", {"tasks": {"task_type": "a::b"}}).field == "tasks"


# ---------------------------------------------------------------- listing and filters


def test_task_list_defaults_and_filters():
    assert parse_params("task.list", {}) == TaskListParams()
    assert TaskListParams().limit == DEFAULT_LIST_LIMIT == 100
    out = parse_params(
        "task.list",
        {
            "status": ["pending", "running"],
            "domain": "uploads",
            "task_type": "uploads::put",
            "group": "g",
            "tags": {"a": "b"},
            "tag_prefix": "al",
            "limit": 0,
            "offset": 10,
        },
    )
    assert out == TaskListParams(
        status=(Status.PENDING, Status.RUNNING),
        domain="uploads",
        task_type="uploads::put",
        group="g",
        tags={"a": "b"},
        tag_prefix="al",
        limit=0,
        offset=10,
    )
    single = parse_params("task.list", {"status": "paused"})
    assert isinstance(single, TaskListParams)
    assert single.status == (Status.PAUSED,)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 1001}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "completed"}, "status"),
        ({"status": ["pending", "nope"]}, "status[1]"),
        ({"domain": "Bad Domain"}, "domain"),
        ({"task_type": "x"}, "task_type"),
    ],
)
def test_task_list_rejects(params: dict[str, Any], field: str):
    assert invalid("task.list", params).field == field


def test_history_list():
    out = parse_params("history.list", {"status": "dead_letter", "limit": 1000, "key": "k"})
    assert isinstance(out, HistoryListParams)
    assert out.status == (Status.DEAD_LETTER,)
    assert invalid("history.list", {"status": "pending"}).field == "status"
    assert invalid("history.list", {"limit": 5000}).field == "limit"
    assert invalid("history.list", {"domain": "x"}).field == "domain"


def test_cancel_where_needs_a_filter():
    assert invalid("task.cancel_where", {}).kind == "invalid_params"
    invalid("task.cancel_where", {"tags": {}})
    invalid("task.cancel_where", {"tag_prefix": ""})
    invalid("task.cancel_where", {"domain": None})
    assert parse_params("task.cancel_where", {"tags": {"a": "b"}}) == CancelWhereParams(
        tags={"a": "b"}
    )
    assert parse_params("task.cancel_where", {"status": "running"}) == CancelWhereParams(
        status=(Status.RUNNING,)
    )
    assert invalid("task.cancel_where", {"status": "failed"}).field == "status"


def test_set_priority():
    out = parse_params("task.set_priority", {"id": 3, "priority": "background"})
    assert isinstance(out, TaskSetPriorityParams)
    assert out.priority == 192
    assert invalid("task.set_priority", {"id": 3, "priority": 300}).field == "priority"
    assert invalid("task.set_priority", {"id": 3}).field == "priority"


def test_events_subscribe_filter():
    assert parse_params("events.subscribe", {}) == EventsSubscribeParams()
    assert EventFilter().progress_interval_ms == 100
    out = parse_params(
        "events.subscribe",
        {
            "filter": {
                "kinds": ["completed", "progress", "lagged"],
                "domains": ["demo"],
                "task_types": ["demo::sleep"],
                "task_ids": [1, 2],
                "tags": {"a": "b"},
                "progress_interval_ms": 0,
            }
        },
    )
    assert out == EventsSubscribeParams(
        filter=EventFilter(
            kinds=frozenset({"completed", "progress", "lagged"}),
            domains=frozenset({"demo"}),
            task_types=frozenset({"demo::sleep"}),
            task_ids=frozenset({1, 2}),
            tags={"a": "b"},
            progress_interval_ms=0,
        )
    )


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        ({"kinds": ["completed", "finished"]}, "filter.kinds[1]"),
        ({"kinds": "completed"}, "filter.kinds"),
        ({"task_ids": [True]}, "filter.task_ids[0]"),
        ({"progress_interval_ms": -1}, "filter.progress_interval_ms"),
        ({"domains": ["UP"]}, "filter.domains[0]"),
        ({"task_types": ["bad"]}, "filter.task_types[0]"),
        ({"tags": {"a": 1}}, "filter.tags.a"),
        ({"kind": ["completed"]}, "filter.kind"),
    ],
)
def test_events_subscribe_rejects(filter_: dict[str, Any], field: str):
    assert invalid("events.subscribe", {"filter": filter_}).field == field


def test_events_subscribe_filter_members_at_top_level_get_a_hint():
    err = invalid("events.subscribe", {"kinds": ["completed"]})
    assert err.field == "kinds"
    assert "filter" in err.message


def test_event_kinds_match_the_contract():
    assert set(contract.EVENT_FIELDS) == EVENT_KINDS
    assert set(contract.TASK_EVENT_KINDS) == TASK_EVENT_KINDS
    assert set(contract.SCHEDULER_EVENT_KINDS) == SCHEDULER_EVENT_KINDS


# ---------------------------------------------------------------- scheduler controls


def test_null_removes_needs_the_field_present():
    assert parse_params("group.set_limit", {"group": "g", "value": None}) == GroupSetValueParams(
        group="g", value=None
    )
    assert invalid("group.set_limit", {"group": "g"}).field == "value"
    assert invalid("group.set_limit", {"group": "g", "value": -1}).field == "value"
    assert invalid("group.set_min_slots", {"group": "g", "value": 1.5}).field == "value"
    assert parse_params(
        "domain.set_max_concurrency", {"domain": "demo", "value": 0}
    ) == DomainSetMaxConcurrencyParams(domain="demo", value=0)
    assert invalid("group.set_weight", {"group": "g", "weight": 0}).field == "weight"
    assert invalid("group.set_weight", {"group": "", "weight": 1}).field == "group"


def test_scheduler_set_max_concurrency():
    assert invalid("scheduler.set_max_concurrency", {"value": None}).field == "value"
    assert invalid("scheduler.set_max_concurrency", {"value": -1}).field == "value"
    assert invalid("scheduler.set_max_concurrency", {"value": "4"}).field == "value"


def test_group_pause_duration():
    out = parse_params("group.pause", {"group": "g", "duration_ms": 500})
    assert isinstance(out, GroupPauseParams)
    assert out.duration_ms == 500
    assert invalid("group.pause", {"group": "g", "duration_ms": -1}).field == "duration_ms"


def test_rate_limit_xor():
    assert parse_params("rate_limit.set", {"group": "g", "per_second": 0.5, "burst": 2}) == (
        RateLimitSetParams(group="g", per_second=0.5, burst=2)
    )
    assert invalid("rate_limit.set", {"per_second": 1}).field == "task_type"
    both = {"task_type": "a::b", "group": "g", "per_second": 1}
    assert invalid("rate_limit.set", both).field == "group"
    assert invalid("rate_limit.remove", {}).field == "task_type"
    assert invalid("rate_limit.remove", {"task_type": "a::b", "group": "g"}).field == "group"
    assert parse_params("rate_limit.remove", {"task_type": "a::b"}) == RateLimitTargetParams(
        task_type="a::b"
    )


@pytest.mark.parametrize("per_second", [0, -1, True, "10", float("inf")])
def test_rate_limit_per_second_positive(per_second: Any):
    assert invalid("rate_limit.set", {"group": "g", "per_second": per_second}).field == (
        "per_second"
    )


def test_rate_limit_burst():
    assert invalid("rate_limit.set", {"group": "g", "per_second": 1, "burst": 0}).field == "burst"


def test_pressure_set():
    assert parse_params("pressure.set", {"source": "call", "value": 1}) == PressureSetParams(
        source="call", value=1.0
    )
    assert parse_params("pressure.set", {"source": "call", "value": None}) == PressureSetParams(
        source="call", value=None
    )
    for bad in (1.01, -0.1, True, "0.5"):
        assert invalid("pressure.set", {"source": "call", "value": bad}).field == "value"
    assert invalid("pressure.set", {"source": "call"}).field == "value"
    assert invalid("pressure.set", {"source": "", "value": 0}).field == "source"


def test_no_params_methods():
    for method in ("sidecar.info", "scheduler.pause", "scheduler.resume", "scheduler.metrics"):
        assert parse_params(method, {}) == NoParams()
        assert invalid(method, {"x": 1}).field == "x"


def test_tags_and_domains():
    assert invalid("tags.keys", {}).field == "prefix"
    assert invalid("tags.values", {"key": "k", "domain": "Nope!"}).field == "domain"
    assert invalid("domain.pause", {"domain": "demo::x"}).field == "domain"
    assert invalid("scheduler.snapshot", {"domain": 5}).field == "domain"


# ---------------------------------------------------------------- session and sidecar


def test_session_hello():
    assert parse_params("session.hello", {"token": "t", "protocol": 1, "client": "app/1"}) == (
        SessionHelloParams(protocol=1, token="t", client="app/1")
    )
    assert invalid("session.hello", {"protocol": 2}).field == "protocol"
    assert invalid("session.hello", {"protocol": True}).field == "protocol"
    assert invalid("session.hello", {"token": "t"}).field == "protocol"
    assert invalid("session.hello", {"protocol": 1, "token": 5}).field == "token"


def test_sidecar_shutdown():
    assert parse_params("sidecar.shutdown", {}) == ShutdownParams(mode="graceful")
    assert parse_params("sidecar.shutdown", {"mode": "hard", "timeout_ms": 0}) == (
        ShutdownParams(mode="hard", timeout_ms=0)
    )
    assert invalid("sidecar.shutdown", {"mode": "now"}).field == "mode"
    assert invalid("sidecar.shutdown", {"timeout_ms": -1}).field == "timeout_ms"


# ---------------------------------------------------------------- workers


def test_worker_register():
    out = parse_params(
        "worker.register",
        {
            "task_types": ["uploads::put", {"task_type": "uploads::get", "config": {"a": 1}}],
            "concurrency": 2,
        },
    )
    assert out == WorkerRegisterParams(
        task_types=(
            WorkerTaskType(task_type="uploads::put"),
            WorkerTaskType(task_type="uploads::get", config={"a": 1}),
        ),
        concurrency=2,
    )
    assert invalid("worker.register", {"task_types": []}).field == "task_types"
    assert invalid("worker.register", {"task_types": ["a::b", "a::b"]}).field == "task_types[1]"
    assert invalid("worker.register", {"task_types": ["bad"]}).field == "task_types[0]"
    assert invalid("worker.register", {"task_types": [{"config": {}}]}).field == (
        "task_types[0].task_type"
    )
    assert invalid("worker.register", {"task_types": [{"task_type": "a::b", "x": 1}]}).field == (
        "task_types[0].x"
    )
    assert invalid("worker.register", {"task_types": ["a::b"], "concurrency": 0}).field == (
        "concurrency"
    )


def test_worker_notifications():
    assert parse_params("worker.progress", {"task_id": 1, "percent": 1, "message": "ok"}) == (
        WorkerProgressParams(task_id=1, percent=1.0, message="ok")
    )
    assert invalid("worker.progress", {"task_id": 1, "percent": 1.5}).field == "percent"
    assert parse_params("worker.io", {"task_id": 1, "disk_read": 10, "net_tx": 5}) == (
        WorkerIoParams(task_id=1, io=IoBudget(disk_read=10, net_tx=5))
    )
    assert invalid("worker.io", {"task_id": 1, "disk_read": -1}).field == "disk_read"
    assert invalid("worker.io", {"task_id": 1, "cpu": 1}).field == "cpu"


def test_worker_spawn_child():
    out = parse_params("worker.spawn_child", {"task_id": 7, "task_type": "a::b", "priority": 1})
    assert out == SpawnChildParams(
        task_id=7, submission=Submission(task_type="a::b", priority=1, parent_id=7)
    )
    err = invalid("worker.spawn_child", {"task_id": 7, "task_type": "a::b", "parent_id": 3})
    assert err.field == "parent_id"
    assert "task_id" in err.message
    assert invalid("worker.spawn_child", {"task_type": "a::b"}).field == "task_id"


def test_execute_outcome():
    assert parse_execute_outcome(Response(id="s-1", result={"result": [1]})) == (
        ExecuteCompleted(result=[1])
    )
    assert parse_execute_outcome(Response(id="s-1", result={"result": None})) == (
        ExecuteCompleted(result=None)
    )
    # The docs say a result is {"result": value}: {} is malformed, not a success.
    assert isinstance(parse_execute_outcome(Response(id="s-1", result={})), ExecuteFailed)
    malformed = parse_execute_outcome(Response(id="s-1", result=5))
    assert isinstance(malformed, ExecuteFailed)
    assert malformed.retryable
    failed = parse_execute_outcome(
        ErrorResponse(
            id="s-1",
            code=-32010,
            message="disk full",
            data={"retryable": False, "retry_after_ms": 5},
        )
    )
    assert failed == ExecuteFailed(
        message="disk full", retryable=False, retry_after_ms=5, code=-32010
    )
    odd = parse_execute_outcome(
        ErrorResponse(id="s-1", code=1, message="x", data={"retryable": "no"})
    )
    assert odd == ExecuteFailed(message="x", retryable=True, code=1)


def test_outbound_builders():
    assert worker_execute_request("s-9", worker="w1", task={"id": 1}, attempt=1) == {
        "jsonrpc": "2.0",
        "id": "s-9",
        "method": "worker.execute",
        "params": {"worker": "w1", "task": {"id": 1}, "attempt": 1},
    }
    assert worker_cancel_notification(3, "preempted") == {
        "jsonrpc": "2.0",
        "method": "worker.cancel",
        "params": {"task_id": 3, "reason": "preempted"},
    }
    with pytest.raises(ValueError, match="reason"):
        worker_cancel_notification(3, "bored")  # type: ignore[arg-type]  # not a CancelReason, on purpose
    assert event_notification({"subscription": 1, "kind": "paused"})["method"] == "event"
