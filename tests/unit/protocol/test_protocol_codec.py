"""The codec: JSON lines and MessagePack, bytes in, values or failures out."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from taskmill.errors import InternalError, InvalidRequest, ParseError
from taskmill.protocol import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_BYTES,
    Decoded,
    DecodedItem,
    DecodeFailure,
    LineDecoder,
    decode_json_text,
    decode_msgpack,
    encode_json_line,
    encode_json_text,
    encode_msgpack,
)
from tests.unit.protocol.protocol_strategies import json_values, messages


def values(items: list[DecodedItem]) -> list[Any]:
    assert all(isinstance(i, Decoded) for i in items), items
    return [i.value for i in items if isinstance(i, Decoded)]


def errors(items: list[DecodedItem]) -> list[type]:
    return [type(i.error) for i in items if isinstance(i, DecodeFailure)]


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


# ---------------------------------------------------------------- JSON lines


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=8), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_json_lines_round_trip_however_chunked(msgs: list[dict[str, Any]], sizes: list[int]):
    stream = b"".join(encode_json_line(m) for m in msgs)
    decoder = LineDecoder()
    items: list[DecodedItem] = []
    for chunk in chunked(stream, sizes):
        items.extend(decoder.feed(chunk))
    assert decoder.finish() == []
    assert values(items) == msgs


@given(json_values)
def test_json_line_is_one_compact_line(value: Any):
    line = encode_json_line(value)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == value


def test_encode_json_line_is_compact_utf8():
    assert encode_json_line({"a": [1, 2], "é": "line\nbreak"}) == (
        '{"a":[1,2],"é":"line\\nbreak"}\n'.encode()
    )


def test_encode_json_text_has_no_newline():
    assert encode_json_text({"a": 1}) == '{"a":1}'


def test_encode_lone_surrogate_stays_valid_utf8():
    line = encode_json_line({"s": "\ud800"})
    assert line == b'{"s":"\\ud800"}\n'
    line.decode("utf-8")


def test_encode_nan_is_an_internal_error():
    with pytest.raises(InternalError):
        encode_json_line({"x": float("nan")})
    with pytest.raises(InternalError):
        encode_json_line({"x": {1, 2}})


def test_split_and_coalesced_lines():
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":') == []
    assert decoder.buffered == 5
    assert values(decoder.feed(b'1}\n{"b":2}\n{"c"')) == [{"a": 1}, {"b": 2}]
    assert values(decoder.feed(b":3}\n")) == [{"c": 3}]
    assert decoder.buffered == 0


def test_crlf_and_blank_lines():
    decoder = LineDecoder()
    items = decoder.feed(b'{"a":1}\r\n\r\n\n   \n\t\r\n[2]\r')
    assert values(items) == [{"a": 1}]
    assert values(decoder.feed(b"\n")) == [[2]]


def test_cr_split_from_lf_across_chunks_at_the_limit():
    decoder = LineDecoder(max_message_bytes=5)
    assert decoder.feed(b"[1,2]\r") == []
    assert values(decoder.feed(b"\n")) == [[1, 2]]


def test_finish_decodes_a_last_line_without_newline():
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":1}') == []
    assert values(decoder.finish()) == [{"a": 1}]
    assert decoder.finish() == []


def test_invalid_json_is_a_parse_error_and_reading_continues():
    decoder = LineDecoder()
    items = decoder.feed(b'not json\n{"ok":true}\n{"a":\n')
    assert errors(items) == [ParseError, ParseError]
    assert [i.value for i in items if isinstance(i, Decoded)] == [{"ok": True}]


def test_invalid_utf8_is_a_parse_error():
    items = LineDecoder().feed(b'{"a":"\xff\xfe"}\n[1]\n')
    assert errors(items) == [ParseError]
    assert isinstance(items[1], Decoded)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a":-Infinity}', "1e400", "[-1e999]"])
def test_nan_and_infinity_are_refused(text: str):
    (item,) = LineDecoder().feed(text.encode() + b"\n")
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, ParseError)
    assert isinstance(decode_json_text(text), DecodeFailure)


def test_huge_integer_is_a_parse_error():
    assert isinstance(decode_json_text("1" * 5000), DecodeFailure)


def test_floats_and_ints_keep_their_type():
    item = decode_json_text("[1, 1.0, -0.5, 12345678901234567890, 1e-7]")
    assert isinstance(item, Decoded)
    assert item.value == [1, 1.0, -0.5, 12345678901234567890, 1e-7]
    assert [type(v) for v in item.value] == [int, float, float, int, float]


def test_unpaired_surrogate_escape_is_refused_but_pairs_pass():
    assert isinstance(decode_json_text('["\\ud800"]'), DecodeFailure)
    assert isinstance(decode_json_text('{"\\udc00":1}'), DecodeFailure)
    item = decode_json_text('["\\ud83d\\ude00", "\\\\ud800"]')
    assert isinstance(item, Decoded)
    assert item.value == ["\U0001f600", "\\ud800"]


def test_oversize_complete_line_is_invalid_request_and_dropped():
    decoder = LineDecoder(max_message_bytes=10)
    items = decoder.feed(b'["0123456789"]\n[1]\n')
    assert errors(items) == [InvalidRequest]
    assert isinstance(items[1], Decoded)
    assert items[1].value == [1]


def test_oversize_partial_line_is_discarded_without_buffering():
    decoder = LineDecoder(max_message_bytes=16)
    items = decoder.feed(b"[" + b"1," * 10)
    assert errors(items) == [InvalidRequest]
    assert decoder.buffered == 0
    for _ in range(1000):
        assert decoder.feed(b"1," * 100) == []
        assert decoder.buffered == 0
    # The rest of the long line is skipped; the next line decodes normally.
    assert values(decoder.feed(b'1]\n{"next":1}\n')) == [{"next": 1}]


def test_line_of_exactly_the_limit_passes():
    decoder = LineDecoder(max_message_bytes=7)
    assert values(decoder.feed(b'{"a":1}\r\n')) == [{"a": 1}]
    assert errors(decoder.feed(b'{"a":12}\n')) == [InvalidRequest]


def test_default_limit_is_4_mib():
    assert DEFAULT_MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    assert LineDecoder().max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES


def test_deeply_nested_json_is_a_parse_error():
    deep = "[" * 100_000 + "]" * 100_000
    (item,) = LineDecoder().feed(deep.encode() + b"\n")
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, ParseError)
    assert isinstance(decode_json_text(deep), DecodeFailure)
    assert isinstance(decode_json_text("[" * 100_000), DecodeFailure)
    assert isinstance(decode_json_text('{"a":' * 100_000), DecodeFailure)


def test_nesting_limit_is_exact():
    ok = "[" * DEFAULT_MAX_DEPTH + "]" * DEFAULT_MAX_DEPTH
    too_deep = "[" + ok + "]"
    assert isinstance(decode_json_text(ok), Decoded)
    item = decode_json_text(too_deep)
    assert isinstance(item, DecodeFailure)
    assert "nesting" in item.error.message


def test_brackets_in_strings_do_not_count_as_nesting():
    item = decode_json_text(json.dumps({"s": "[" * 10_000}))
    assert isinstance(item, Decoded)


def test_decode_json_text_accepts_str_and_bytes_and_checks_size():
    assert decode_json_text('{"a":1}') == Decoded({"a": 1})
    assert decode_json_text(b'{"a":1}') == Decoded({"a": 1})
    big = json.dumps(["é" * 100])
    item = decode_json_text(big, max_message_bytes=150)
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, InvalidRequest)
    assert isinstance(decode_json_text(big.encode(), max_message_bytes=150), DecodeFailure)


# ---------------------------------------------------------------- MessagePack


@given(messages())
def test_msgpack_round_trip(msg: dict[str, Any]):
    assert decode_msgpack(encode_msgpack(msg)) == Decoded(msg)


def test_msgpack_uses_str_and_bin_types():
    assert encode_msgpack({"a": "é"}) == msgpack.packb({"a": "é"}, use_bin_type=True)
    assert encode_msgpack(b"\x00") == b"\xc4\x01\x00"


def test_msgpack_unencodable_is_internal_error():
    with pytest.raises(InternalError):
        encode_msgpack({"big": 2**70})


@pytest.mark.parametrize(
    "frame",
    [
        b"",  # nothing
        b"\xc1",  # never-used byte
        b"\x01\x02",  # two values
        b"\x92\x01",  # truncated array
        b"\xa2\xff\xfe",  # string that is not UTF-8
        b"\x81\x01\x02",  # int map key
        b"\x81\x91\x01\x02",  # array map key
        b"\x81\xc4\x01a\x01",  # bin map key
        b"\xc4\x01a",  # bin value
        b"\xd4\x01\x00",  # ext value
        msgpack.packb(msgpack.Timestamp(1, 0)),  # timestamp
        msgpack.packb(float("nan")),
        msgpack.packb([float("inf")]),
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
        b"\xdb\xff\xff\xff\xff",  # string claiming 4 GiB
        b"\x91" * 100_000 + b"\xc0",  # deep nesting
        b"\x91" * (DEFAULT_MAX_DEPTH + 1) + b"\xc0",
    ],
)
def test_bad_msgpack_is_a_parse_error(frame: bytes):
    item = decode_msgpack(frame)
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, ParseError)


def test_msgpack_nesting_at_the_limit_passes():
    assert isinstance(decode_msgpack(b"\x91" * DEFAULT_MAX_DEPTH + b"\xc0"), Decoded)


def test_msgpack_oversize_frame_is_invalid_request():
    item = decode_msgpack(encode_msgpack(["x" * 100]), max_message_bytes=50)
    assert isinstance(item, DecodeFailure)
    assert isinstance(item.error, InvalidRequest)


def test_msgpack_keeps_floats_and_ints():
    item = decode_msgpack(encode_msgpack([1, 1.0, 2**64 - 1, -(2**63)]))
    assert isinstance(item, Decoded)
    assert [type(v) for v in item.value] == [int, float, int, int]
