"""Params of the session and sidecar methods: ``session.hello``,
``sidecar.info`` and ``sidecar.shutdown`` (protocol section 5.1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from ... import _checks as checks
from ..._checks import Fields
from ...errors import InvalidParams
from ..messages import PROTOCOL_VERSION

__all__ = [
    "SHUTDOWN_MODES",
    "NoParams",
    "SessionHelloParams",
    "ShutdownMode",
    "ShutdownParams",
    "parse_no_params",
    "parse_session_hello",
    "parse_shutdown",
]

ShutdownMode: TypeAlias = Literal["graceful", "hard"]
SHUTDOWN_MODES: tuple[ShutdownMode, ...] = ("graceful", "hard")


@dataclass(frozen=True, slots=True, kw_only=True)
class NoParams:
    """Methods without parameters: ``sidecar.info``, ``scheduler.pause``,
    ``scheduler.resume``, ``scheduler.metrics``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHelloParams:
    """``session.hello``. The token is checked by the WebSocket transport only."""

    protocol: int
    token: str | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownParams:
    """``sidecar.shutdown``: ``timeout_ms`` overrides the drain timeout."""

    mode: ShutdownMode = "graceful"
    timeout_ms: int | None = None


def parse_no_params(params: Mapping[str, Any]) -> NoParams:
    """Params of a method that takes none: only ``{}`` is accepted."""
    Fields(params, ())
    return NoParams()


def parse_session_hello(params: Mapping[str, Any]) -> SessionHelloParams:
    """``session.hello {token?, protocol, client?}``; ``protocol`` must be 1.

    Raises:
        InvalidParams: naming ``protocol`` for any version but 1.
    """
    fields = Fields(params, ("token", "protocol", "client"))
    protocol = fields.required("protocol", checks.integer(0))
    if protocol != PROTOCOL_VERSION:
        raise InvalidParams(
            f"unsupported protocol {protocol}; this sidecar speaks protocol {PROTOCOL_VERSION}",
            field="protocol",
        )
    return SessionHelloParams(
        protocol=protocol,
        token=fields.optional("token", checks.string()),
        client=fields.optional("client", checks.string()),
    )


def parse_shutdown(params: Mapping[str, Any]) -> ShutdownParams:
    """``sidecar.shutdown {mode?: "graceful"|"hard", timeout_ms?}``."""
    fields = Fields(params, ("mode", "timeout_ms"))
    return ShutdownParams(
        mode=fields.optional("mode", checks.choice(SHUTDOWN_MODES)) or "graceful",
        timeout_ms=fields.optional("timeout_ms", checks.non_negative),
    )
