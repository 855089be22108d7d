"""JSON-RPC 2.0 messages: a closed union, a validating parser and wire builders.

:func:`parse_message` turns a decoded JSON value into one of :class:`Request`,
:class:`Notification`, :class:`Response` or :class:`ErrorResponse` (responses
arrive from remote workers answering ``worker.execute``). It checks only the
envelope; each method's ``params`` are checked by :mod:`taskmill.protocol.methods`.

The builders (:func:`request`, :func:`notification`, :func:`result_message`,
:func:`error_message`) return plain dicts ready for the codec;
:func:`encode_reply` encodes one, or the error reply that stands in for a
message the codec refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeGuard, TypeVar

from ..errors import InternalError, InvalidParams, InvalidRequest, TaskmillError
from ..model import JSONValue

__all__ = [
    "JSONRPC_VERSION",
    "PROTOCOL_VERSION",
    "ErrorResponse",
    "Message",
    "Notification",
    "Request",
    "RequestId",
    "Response",
    "encode_reply",
    "error_message",
    "notification",
    "parse_message",
    "request",
    "request_id_of",
    "result_message",
]

JSONRPC_VERSION = "2.0"

PROTOCOL_VERSION = 1
"""The wire contract version this package implements."""

Frame = TypeVar("Frame", bytes, str)

RequestId: TypeAlias = int | str | None
"""A request id: an integer or a string; ``None`` (JSON ``null``) only in replies
to requests whose id could not be read, or to requests that sent ``null``."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_RESULT_KEYS = frozenset({"jsonrpc", "id", "result"})
_ERROR_KEYS = frozenset({"jsonrpc", "id", "error"})
_ERROR_OBJECT_KEYS = frozenset({"code", "message", "data"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A call that expects a reply carrying the same ``id``."""

    id: RequestId
    method: str
    params: Mapping[str, JSONValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this message."""
        return request(self.id, self.method, self.params)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A call without ``id``: never answered, not even with an error."""

    method: str
    params: Mapping[str, JSONValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this message."""
        return notification(self.method, self.params)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A successful reply."""

    id: RequestId
    result: JSONValue

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this message."""
        return result_message(self.id, self.result)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse:
    """A failed reply. ``code`` need not be one of taskmill's: workers use -32010."""

    id: RequestId
    code: int
    message: str
    data: JSONValue = None

    @classmethod
    def from_exception(cls, id: RequestId, exc: TaskmillError) -> ErrorResponse:
        """The reply that reports ``exc``."""
        return cls(id=id, code=exc.code, message=exc.message, data=exc.to_data())

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this message (``data`` omitted when ``None``)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": JSONRPC_VERSION, "id": self.id, "error": error}


Message: TypeAlias = Request | Notification | Response | ErrorResponse


def request(id: RequestId, method: str, params: Mapping[str, JSONValue]) -> dict[str, Any]:
    """Build a request: ``{"jsonrpc":"2.0","id":..,"method":..,"params":{..}}``."""
    return {"jsonrpc": JSONRPC_VERSION, "id": id, "method": method, "params": dict(params)}


def notification(method: str, params: Mapping[str, JSONValue]) -> dict[str, Any]:
    """Build a notification: ``{"jsonrpc":"2.0","method":..,"params":{..}}``."""
    return {"jsonrpc": JSONRPC_VERSION, "method": method, "params": dict(params)}


def result_message(id: RequestId, result: JSONValue) -> dict[str, Any]:
    """Build a result: ``{"jsonrpc":"2.0","id":..,"result":..}``."""
    return {"jsonrpc": JSONRPC_VERSION, "id": id, "result": result}


def error_message(id: RequestId, exc: TaskmillError) -> dict[str, Any]:
    """Build the error reply for ``exc``.

    Returns:
        ``{"jsonrpc":"2.0","id":..,"error":{"code":..,"message":..,
        "data":{"kind":..,"field"?:..}}}``.
    """
    return {
        "jsonrpc": JSONRPC_VERSION,
        "id": id,
        "error": {"code": exc.code, "message": exc.message, "data": exc.to_data()},
    }


def encode_reply(msg: Mapping[str, Any], encode: Callable[[Mapping[str, Any]], Frame]) -> Frame:
    """Encode ``msg`` with ``encode``; a message the codec refuses (a value
    that is not JSON, a result over the size limit) is replaced by the error
    reply to its ``id``, so the peer waiting on it gets an answer.

    Args:
        msg: The message to send.
        encode: One of the codec's encoders.
    """
    try:
        return encode(msg)
    except InternalError as exc:
        return encode(error_message(msg.get("id"), exc))


def _valid_id(value: object) -> TypeGuard[RequestId]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64_MIN <= value <= _INT64_MAX
    return value is None or isinstance(value, str)


def request_id_of(obj: object) -> RequestId:
    """The id to answer a message with, even one :func:`parse_message` rejects.

    Returns:
        The message's ``id`` when it is a valid id, else ``None``.
    """
    if isinstance(obj, dict):
        value = obj.get("id")
        if _valid_id(value):
            return value
    return None


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(f"unexpected member {key!r} in a JSON-RPC {what}", field=key)


def _parse_id(obj: Mapping[str, Any]) -> RequestId:
    value = obj["id"]
    if not _valid_id(value):
        raise InvalidRequest("id must be a string, an integer within 64 bits or null", field="id")
    return value


def _parse_params(obj: Mapping[str, Any]) -> Mapping[str, JSONValue]:
    params = obj.get("params")
    if params is None:
        return {}
    if isinstance(params, dict):
        return params
    if isinstance(params, list):
        # Valid JSON-RPC, but taskmill takes parameters by name only.
        raise InvalidParams("params must be an object (by-name parameters)", field="params")
    raise InvalidRequest("params must be an object", field="params")


def _parse_error_object(value: object) -> tuple[int, str, JSONValue]:
    if not isinstance(value, dict):
        raise InvalidRequest("error must be an object", field="error")
    _check_keys(value, _ERROR_OBJECT_KEYS, "error object")
    code = value.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise InvalidRequest("error.code must be an integer", field="error.code")
    message = value.get("message")
    if not isinstance(message, str):
        raise InvalidRequest("error.message must be a string", field="error.message")
    return code, message, value.get("data")


def parse_message(obj: object) -> Message:
    """Check a decoded value against the JSON-RPC 2.0 envelope.

    A missing or ``null`` ``params`` is read as ``{}``. Members that JSON-RPC 2.0
    does not define are refused, so a misspelt ``"parms"`` cannot pass silently.

    Args:
        obj: A decoded JSON value (see :mod:`taskmill.protocol.codec`).

    Returns:
        The message. Its ``params`` are not checked against the method.

    Raises:
        InvalidRequest: when ``obj`` is not a JSON-RPC 2.0 message (including
            batches, which taskmill does not accept).
        InvalidParams: when ``params`` is an array (by-position parameters).
    """
    if not isinstance(obj, dict):
        if isinstance(obj, list):
            raise InvalidRequest("batch requests are not supported; send one message at a time")
        raise InvalidRequest("a JSON-RPC message must be an object")
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise InvalidRequest('jsonrpc must be "2.0"', field="jsonrpc")
    if "method" in obj:
        _check_keys(obj, _REQUEST_KEYS, "request")
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise InvalidRequest("method must be a non-empty string", field="method")
        request_id = _parse_id(obj) if "id" in obj else None
        params = _parse_params(obj)
        if "id" in obj:
            return Request(id=request_id, method=method, params=params)
        return Notification(method=method, params=params)
    if "result" in obj and "error" in obj:
        raise InvalidRequest("a response carries either result or error, not both")
    if "result" in obj or "error" in obj:
        is_error = "error" in obj
        _check_keys(obj, _ERROR_KEYS if is_error else _RESULT_KEYS, "response")
        if "id" not in obj:
            raise InvalidRequest("a response must carry an id", field="id")
        response_id = _parse_id(obj)
        if not is_error:
            return Response(id=response_id, result=obj["result"])
        code, message, data = _parse_error_object(obj["error"])
        return ErrorResponse(id=response_id, code=code, message=message, data=data)
    raise InvalidRequest("a JSON-RPC message needs a method, a result or an error")
