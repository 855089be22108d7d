"""Hostile input: every input yields a value, a message or a documented error.

Like the fuzz targets of websockets and msgpack-javascript, these only let the
protocol's own errors escape: ParseError, InvalidRequest, InvalidParams and
MethodNotFound (all TaskmillError subclasses). Anything else is a bug.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings, strategies as st

from taskmill.errors import InvalidParams, InvalidRequest, MethodNotFound, ParseError
from taskmill.protocol import (
    METHODS,
    SUBMIT_FIELDS,
    Decoded,
    DecodedItem,
    DecodeFailure,
    LineDecoder,
    Notification,
    Request,
    decode_json_text,
    decode_msgpack,
    encode_json_line,
    encode_msgpack,
    parse_message,
    parse_params,
)
from tests.unit.protocol.protocol_strategies import json_objects, json_values

ENVELOPE_ERRORS = (InvalidRequest, InvalidParams)
PARAMS_ERRORS = (InvalidParams, MethodNotFound)

# Names the parsers know, so generated params often get past the unknown-field check.
FIELD_NAMES = sorted(
    SUBMIT_FIELDS
    | {
        "id", "tasks", "status", "domain", "limit", "offset", "tags", "tag_prefix", "token",
        "protocol", "client", "mode", "timeout_ms", "key", "prefix", "value", "group",
        "weight", "duration_ms", "per_second", "burst", "source", "filter", "subscription",
        "task_types", "concurrency", "worker", "task_id", "percent", "message", "disk_read",
        "net_tx", "kinds", "domains", "task_ids", "progress_interval_ms",
    }
)  # fmt: skip

# Values close to what the parsers accept, plus anything at all.
near_values: st.SearchStrategy[Any] = (
    st.sampled_from(
        [0, 1, -1, 255, 256, 2**63, 0.5, 1.5, True, None, "", "demo::echo", "high",
         "pending", "graceful", "completed", [], [1], ["demo::echo"], {}]
    )
    | json_values
)  # fmt: skip

params_objects = st.dictionaries(st.sampled_from(FIELD_NAMES), near_values, max_size=5) | (
    json_objects
)


def check_item(item: DecodedItem) -> None:
    assert isinstance(item, Decoded | DecodeFailure)
    if isinstance(item, DecodeFailure):
        assert isinstance(item.error, ParseError | InvalidRequest)
        return
    try:
        msg = parse_message(item.value)
    except ENVELOPE_ERRORS:
        return
    if isinstance(msg, Request | Notification):
        try:
            parse_params(msg.method, msg.params)
        except PARAMS_ERRORS:
            pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.integers(1, 32))
def test_arbitrary_bytes_never_escape(data: bytes, chunk: int):
    decoder = LineDecoder(max_message_bytes=64)
    for i in range(0, len(data), chunk):
        for item in decoder.feed(data[i : i + chunk]):
            check_item(item)
    for item in decoder.finish():
        check_item(item)
    check_item(decode_msgpack(data))
    check_item(decode_json_text(data))
    check_item(decode_json_text(data.decode("utf-8", "replace")))


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_values_never_escape(value: Any):
    check_item(Decoded(value))
    check_item(decode_json_text(json.dumps(value)))
    check_item(decode_msgpack(encode_msgpack(value)))
    for item in LineDecoder().feed(encode_json_line(value)):
        check_item(item)


@settings(max_examples=300)
@given(st.sampled_from(sorted(METHODS)), params_objects)
def test_arbitrary_params_raise_only_invalid_params(method: str, params: dict[str, Any]):
    try:
        parse_params(method, params)
    except InvalidParams as exc:
        assert exc.field is not None
        assert exc.message


@settings(max_examples=100)
@given(st.lists(params_objects, max_size=4))
def test_arbitrary_batches_raise_only_invalid_params(tasks: list[dict[str, Any]]):
    try:
        parse_params("task.submit_batch", {"tasks": tasks})
    except InvalidParams as exc:
        assert exc.field is not None
        assert exc.field.startswith("tasks")


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "x"]),
        near_values,
        max_size=5,
    )
)
def test_arbitrary_envelopes_never_escape(obj: dict[str, Any]):
    check_item(Decoded(obj))


@settings(max_examples=100)
@given(st.binary(max_size=100))
def test_arbitrary_msgpack_never_escapes(data: bytes):
    # Valid msgpack prefixes with random bodies reach deeper into the unpacker.
    for prefix in (b"\x81", b"\x91", b"\xdc\x00\x05", b"\xc7\x05\x01", b"\xd6\xff"):
        check_item(decode_msgpack(prefix + data))


def test_deep_nesting_everywhere_is_a_parse_error():
    depth = 100_000
    frames = [
        ("[" * depth + "]" * depth).encode(),
        ("[" * depth).encode(),
        ('{"a":' * depth + "1" + "}" * depth).encode(),
    ]
    for frame in frames:
        (item,) = LineDecoder(max_message_bytes=10 * depth).feed(frame + b"\n")
        assert isinstance(item, DecodeFailure)
        assert isinstance(item.error, ParseError)
        item = decode_json_text(frame, max_message_bytes=10 * depth)
        assert isinstance(item, DecodeFailure)
        assert isinstance(item.error, ParseError)
    for packed in (b"\x91" * depth + b"\xc0", b"\x81\xa1a" * depth + b"\xc0"):
        item = decode_msgpack(packed)
        assert isinstance(item, DecodeFailure)
        assert isinstance(item.error, ParseError)


def test_deep_value_inside_a_valid_request_is_refused():
    head = {"jsonrpc": "2.0", "id": 1, "method": "task.submit"}
    text = json.dumps(head)[:-1] + ',"params":{"task_type":"demo::echo","payload":'
    text += "[" * 5000 + "1" + "]" * 5000 + "}}"
    item = decode_json_text(text)
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, ParseError)
    # The same in MessagePack: a map whose "params" nests 5000 arrays deep.
    packed = msgpack.packb({"jsonrpc": "2.0", "id": 1}, use_bin_type=True)
    packed = b"\x83" + packed[1:] + msgpack.packb("params") + b"\x91" * 5000 + b"\x01"
    item = decode_msgpack(packed)
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, ParseError)
