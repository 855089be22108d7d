"""The JSON-RPC 2.0 envelope: parse_message and the wire builders."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from taskmill.errors import InvalidParams, InvalidRequest, NotFound, PayloadTooLarge
from taskmill.protocol import (
    ErrorResponse,
    Notification,
    Request,
    Response,
    error_message,
    notification,
    parse_message,
    request,
    request_id_of,
    result_message,
)
from tests.unit.protocol.protocol_strategies import messages


def test_request():
    msg = parse_message({"jsonrpc": "2.0", "id": 7, "method": "task.get", "params": {"id": 1}})
    assert msg == Request(id=7, method="task.get", params={"id": 1})


def test_missing_or_null_params_is_empty_object():
    assert parse_message({"jsonrpc": "2.0", "id": "a", "method": "m"}) == Request(
        id="a", method="m", params={}
    )
    assert parse_message({"jsonrpc": "2.0", "id": 1, "method": "m", "params": None}) == Request(
        id=1, method="m", params={}
    )


def test_notification_has_no_id():
    msg = parse_message({"jsonrpc": "2.0", "method": "worker.progress", "params": {}})
    assert msg == Notification(method="worker.progress", params={})


def test_null_id_is_a_request_not_a_notification():
    msg = parse_message({"jsonrpc": "2.0", "id": None, "method": "m"})
    assert isinstance(msg, Request)
    assert msg.id is None


def test_responses_from_workers():
    assert parse_message({"jsonrpc": "2.0", "id": "s-9", "result": {"result": 1}}) == Response(
        id="s-9", result={"result": 1}
    )
    assert parse_message({"jsonrpc": "2.0", "id": "s-9", "result": None}) == Response(
        id="s-9", result=None
    )
    err = {"code": -32010, "message": "boom", "data": {"retryable": True}}
    assert parse_message({"jsonrpc": "2.0", "id": "s-9", "error": err}) == ErrorResponse(
        id="s-9", code=-32010, message="boom", data={"retryable": True}
    )


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ([], None),
        ([{"jsonrpc": "2.0", "id": 1, "method": "m"}], None),
        ("x", None),
        (None, None),
        ({"id": 1, "method": "m"}, "jsonrpc"),
        ({"jsonrpc": "1.0", "id": 1, "method": "m"}, "jsonrpc"),
        ({"jsonrpc": 2.0, "id": 1, "method": "m"}, "jsonrpc"),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, "method"),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, "method"),
        ({"jsonrpc": "2.0", "id": True, "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": [1], "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": 2**64, "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "params": 5}, "params"),
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "params": "x"}, "params"),
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "parms": {}}, "parms"),
        ({"jsonrpc": "2.0", "id": 1}, None),
        ({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {}}, None),
        ({"jsonrpc": "2.0", "result": 1}, "id"),
        ({"jsonrpc": "2.0", "id": 1, "result": 1, "method_x": 1}, "method_x"),
        ({"jsonrpc": "2.0", "id": 1, "error": "bad"}, "error"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": "m"}}, "error.code"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": True, "message": "m"}}, "error.code"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1}}, "error.message"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "m", "x": 1}}, "x"),
    ],
)
def test_invalid_envelopes(obj: object, field: str | None):
    with pytest.raises(InvalidRequest) as info:
        parse_message(obj)
    assert info.value.code == -32600
    assert info.value.field == field


def test_positional_params_are_invalid_params():
    with pytest.raises(InvalidParams) as info:
        parse_message({"jsonrpc": "2.0", "id": 1, "method": "m", "params": [1, 2]})
    assert info.value.field == "params"


@given(messages())
def test_every_well_formed_message_parses_and_round_trips(msg: dict[str, Any]):
    parsed = parse_message(msg)
    expected = dict(msg)
    if isinstance(parsed, Request | Notification):
        expected.setdefault("params", {})
    if isinstance(parsed, ErrorResponse) and msg["error"].get("data", 0) is None:
        # "data": null and no data are the same; to_dict() omits it.
        expected["error"] = {k: v for k, v in msg["error"].items() if k != "data"}
    assert parsed.to_dict() == expected


def test_request_id_of():
    assert request_id_of({"id": 5, "method": 1}) == 5
    assert request_id_of({"id": "s-1"}) == "s-1"
    assert request_id_of({"id": True}) is None
    assert request_id_of({"id": 1.5}) is None
    assert request_id_of({"id": 2**64}) is None
    assert request_id_of([1]) is None
    assert request_id_of("x") is None


def test_builders():
    assert request(7, "task.get", {"id": 1}) == {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "task.get",
        "params": {"id": 1},
    }
    assert notification("event", {"seq": 1}) == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"seq": 1},
    }
    assert result_message(7, {"outcome": "inserted", "id": 3}) == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"outcome": "inserted", "id": 3},
    }


def test_error_message_carries_kind_and_field():
    assert error_message(7, InvalidParams("unknown field 'priorty'", field="priorty")) == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {
            "code": -32602,
            "message": "unknown field 'priorty'",
            "data": {"kind": "invalid_params", "field": "priorty"},
        },
    }
    assert error_message(None, NotFound("no task 3"))["error"] == {
        "code": -32002,
        "message": "no task 3",
        "data": {"kind": "not_found"},
    }


def test_error_response_from_exception():
    response = ErrorResponse.from_exception(3, PayloadTooLarge("too big"))
    assert response.to_dict() == error_message(3, PayloadTooLarge("too big"))
    assert parse_message(response.to_dict()) == response


def test_error_response_without_data_omits_it():
    assert ErrorResponse(id=1, code=-32010, message="x").to_dict() == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32010, "message": "x"},
    }


def test_public_api_is_the_union_of_module_lists():
    import taskmill.protocol as protocol
    from taskmill.protocol import codec, messages, methods

    modules = (codec, messages, methods)
    assert set(protocol.__all__) == {n for m in modules for n in m.__all__}
    assert len(protocol.__all__) == len(set(protocol.__all__))
    for name in protocol.__all__:
        assert hasattr(protocol, name), name
