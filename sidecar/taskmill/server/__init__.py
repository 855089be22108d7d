"""Transports (stdio, WebSocket), sessions and remote workers; no SQL here."""

from .app import Sidecar, SidecarOptions

__all__ = ["Sidecar", "SidecarOptions"]
