"""Bytes <-> JSON values, without I/O.

Two encodings carry the same messages (protocol section 1):

* **JSON lines** (stdio, and WebSocket text frames without the line framing):
  compact UTF-8 JSON, one message per ``\\n``-terminated line.
* **MessagePack** (WebSocket binary frames): one message per frame.

Decoders never raise. Each input yields :class:`Decoded` (a JSON value, not
yet checked as a JSON-RPC envelope: that is :func:`taskmill.protocol.parse_message`)
or :class:`DecodeFailure` wrapping a :class:`~taskmill.errors.ParseError`
(-32700: not JSON, not MessagePack, invalid UTF-8, NaN, nested too deeply) or
:class:`~taskmill.errors.InvalidRequest` (-32600: over the size limit).
Decoded values hold only the JSON data model: ``None``, ``bool``, ``int``,
finite ``float``, ``str``, ``list`` and ``dict`` with ``str`` keys.

Typical use by a transport pump::

    decoder = LineDecoder(max_message_bytes=limit)
    for item in decoder.feed(chunk):
        match item:
            case Decoded(value):
                handle(parse_message(value))
            case DecodeFailure(error):
                write(encode_json_line(error_message(None, error)))
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack

from ..errors import InternalError, InvalidRequest, ParseError
from ..model import JSONValue

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DecodeFailure",
    "Decoded",
    "DecodedItem",
    "LineDecoder",
    "decode_json_text",
    "decode_msgpack",
    "encode_json_line",
    "encode_json_text",
    "encode_msgpack",
]

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest message accepted, in encoded bytes (``--max-message-bytes``)."""

DEFAULT_MAX_DEPTH = 256
"""Deepest nesting of arrays and objects accepted, counting the envelope.

Far below Python's recursion limit, so code that walks a decoded value
recursively (``json.dumps``, ``msgpack.packb``, hashing a payload) cannot
hit ``RecursionError``.
"""


@dataclass(frozen=True, slots=True)
class Decoded:
    """One successfully decoded JSON value."""

    value: JSONValue


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Input that could not be decoded; answer it with ``error`` and id ``null``."""

    error: ParseError | InvalidRequest


DecodedItem: TypeAlias = Decoded | DecodeFailure


def _too_large(size: int | None, limit: int) -> DecodeFailure:
    what = "message" if size is None else f"message of {size} bytes"
    return DecodeFailure(InvalidRequest(f"{what} exceeds the limit of {limit} bytes"))


def _parse_error(message: str) -> DecodeFailure:
    return DecodeFailure(ParseError(message))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


# A JSON escape of a UTF-16 surrogate; json.loads turns an unpaired one into
# a lone surrogate that no UTF-8 encoder (SQLite, the reply) accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _find_lone_surrogate(value: JSONValue) -> bool:
    """Whether any string (or key) in ``value`` holds an unpaired surrogate."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _check_depth(value: JSONValue, max_depth: int) -> str | None:
    """Return why ``value`` nests deeper than ``max_depth``, or None. Iterative."""
    if not isinstance(value, list | dict):
        return None
    stack: list[tuple[list[Any] | dict[str, Any], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            return f"nesting deeper than {max_depth} levels"
        items = container.values() if isinstance(container, dict) else container
        for item in items:
            if isinstance(item, list | dict):
                stack.append((item, depth + 1))
    return None


def _check_msgpack_value(value: Any, max_depth: int) -> str | None:
    """Return why ``value`` is outside the JSON data model, or None. Iterative."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool | int | str):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return "NaN and infinite numbers are not part of the JSON data model"
            continue
        if isinstance(item, list | dict):
            if depth + 1 > max_depth:
                return f"nesting deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        return "map keys must be strings"
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in item)
            continue
        if isinstance(item, bytes):
            return "binary values are not part of the JSON data model"
        return f"MessagePack {type(item).__name__} values are not part of the JSON data model"
    return None


def _decode_json(data: str | bytes, max_depth: int) -> DecodedItem:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _parse_error(f"invalid UTF-8 at byte {exc.start}")
    else:
        text = data
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        return _parse_error(f"invalid JSON: nesting deeper than {max_depth} levels")
    except json.JSONDecodeError as exc:
        return _parse_error(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:
        # NaN/Infinity, out-of-range floats, integers over the digit limit,
        # lone surrogates in bytes that passed UTF-8 decoding never reach here.
        return _parse_error(f"invalid JSON: {exc}")
    # A value nests at most as deep as it has brackets; skip the walk when cheap.
    if text.count("[") + text.count("{") > max_depth:
        reason = _check_depth(value, max_depth)
        if reason is not None:
            return _parse_error(f"invalid JSON: {reason}")
    if _SURROGATE_ESCAPE.search(text) and _find_lone_surrogate(value):
        return _parse_error("invalid JSON: unpaired UTF-16 surrogate escape in a string")
    return Decoded(value)


class LineDecoder:
    """Split a byte stream into JSON lines and decode each one.

    Lines may arrive split across chunks or several per chunk; ``\\r\\n`` endings
    are accepted and blank lines skipped. A line longer than the limit yields one
    :class:`~taskmill.errors.InvalidRequest` failure and is discarded up to its
    newline, so memory stays bounded by ``max_message_bytes`` whatever the peer
    sends.

    Args:
        max_message_bytes: Longest line accepted, without its line ending.
        max_depth: Deepest nesting of arrays and objects accepted.
    """

    def __init__(
        self,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self._buffer = bytearray()
        # True while skipping the rest of an over-long line.
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held until its newline arrives."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[DecodedItem]:
        """Consume a chunk of the stream.

        Args:
            data: Any number of bytes, possibly ending mid-line.

        Returns:
            One item per complete non-blank line in the chunk, in order, plus a
            failure for a line found to be too long before its end arrived.
        """
        items: list[DecodedItem] = []
        limit = self.max_message_bytes
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(b"\n", start)
            if newline < 0:
                if not self._discarding:
                    self._buffer += data[start:]
                    # One spare byte: a trailing "\r" may belong to the line ending.
                    if len(self._buffer) > limit + 1:
                        self._buffer.clear()
                        self._discarding = True
                        items.append(_too_large(None, limit))
                break
            if self._discarding:
                self._discarding = False
            elif self._buffer:
                self._buffer += data[start:newline]
                line = bytes(self._buffer)
                self._buffer.clear()
                self._decode_line(line, items)
            else:
                self._decode_line(data[start:newline], items)
            start = newline + 1
        return items

    def finish(self) -> list[DecodedItem]:
        """Decode a last line left without its newline at end of stream.

        Returns:
            The item for that line, if it is not blank, and resets the decoder.
        """
        items: list[DecodedItem] = []
        if self._buffer and not self._discarding:
            line = bytes(self._buffer)
            self._decode_line(line, items)
        self._buffer.clear()
        self._discarding = False
        return items

    def _decode_line(self, line: bytes, items: list[DecodedItem]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_message_bytes:
            items.append(_too_large(len(line), self.max_message_bytes))
            return
        if not line.strip(b" \t\r"):
            return
        items.append(_decode_json(line, self.max_depth))


def decode_json_text(
    text: str | bytes,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> DecodedItem:
    """Decode one JSON message, e.g. a WebSocket text frame.

    Args:
        text: The frame, as text or as UTF-8 bytes.
        max_message_bytes: Largest encoded size accepted.
        max_depth: Deepest nesting of arrays and objects accepted.

    Returns:
        The decoded value, or the failure to answer with.
    """
    if isinstance(text, str):
        # A str has at most 4 UTF-8 bytes per character: encode only when needed.
        if len(text) * 4 > max_message_bytes:
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > max_message_bytes:
                return _too_large(size, max_message_bytes)
    elif len(text) > max_message_bytes:
        return _too_large(len(text), max_message_bytes)
    return _decode_json(text, max_depth)


def decode_msgpack(
    frame: bytes,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> DecodedItem:
    """Decode one MessagePack message, e.g. a WebSocket binary frame.

    The frame must hold exactly one value of the JSON data model: string map
    keys only, no ``bin``, ``ext`` or timestamp values, no NaN or infinities.

    Args:
        frame: The frame's bytes.
        max_message_bytes: Largest frame accepted.
        max_depth: Deepest nesting of arrays and maps accepted.

    Returns:
        The decoded value, or the failure to answer with.
    """
    size = len(frame)
    if size > max_message_bytes:
        return _too_large(size, max_message_bytes)
    try:
        # Every length a header claims is bounded by the frame size, so a
        # hostile header cannot make the unpacker allocate more than that.
        value = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=size,
        )
    except UnicodeDecodeError as exc:
        return _parse_error(f"invalid MessagePack: string is not UTF-8 at byte {exc.start}")
    except msgpack.exceptions.StackError:
        return _parse_error(f"invalid MessagePack: nesting deeper than {max_depth} levels")
    except Exception as exc:  # msgpack raises ValueError/TypeError subclasses
        reason = str(exc) or type(exc).__name__
        return _parse_error(f"invalid MessagePack: {reason}")
    problem = _check_msgpack_value(value, max_depth)
    if problem is not None:
        return _parse_error(f"invalid MessagePack: {problem}")
    return Decoded(value)


def encode_json_text(msg: JSONValue) -> str:
    """Encode a message as compact JSON text, e.g. for a WebSocket text frame.

    Raises:
        InternalError: when the message holds something JSON cannot encode
            (NaN, a set, a non-string key...): a bug in the sender.
    """
    return _encode_json(msg)[0]


def encode_json_line(msg: JSONValue) -> bytes:
    """Encode a message as one ``\\n``-terminated UTF-8 JSON line.

    JSON escapes newlines inside strings, so the line holds no raw newline.

    Raises:
        InternalError: when the message cannot be encoded as JSON.
    """
    return _encode_json(msg)[1] + b"\n"


def _encode_json(msg: JSONValue) -> tuple[str, bytes]:
    try:
        text = json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InternalError(f"message cannot be encoded as JSON: {exc}") from exc
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from Python code, never from a decoded message):
        # escape it as \\uXXXX so the output stays valid UTF-8.
        text = json.dumps(msg, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        return text, text.encode("ascii")


def encode_msgpack(msg: JSONValue) -> bytes:
    """Encode a message as one MessagePack frame (``str`` as str, ``bytes`` as bin).

    Raises:
        InternalError: when the message holds something MessagePack cannot
            encode (an integer over 64 bits, a set...): a bug in the sender.
    """
    try:
        packed: bytes = msgpack.packb(msg, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InternalError(f"message cannot be encoded as MessagePack: {exc}") from exc
    return packed
