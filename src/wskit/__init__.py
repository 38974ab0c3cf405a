"""wskit: a fast, strict WebSocket library for asyncio with a Vapor-style API."""

from __future__ import annotations

from .broadcast import broadcast
from .client import connect
from .core.errors import (
    ConnectFailed,
    ConnectionClosed,
    InvalidHandshake,
    InvalidState,
    LocalError,
    MessageTooBig,
    NegotiationError,
    PayloadNotUTF8,
    ProtocolError,
    RemoteError,
    WSKitError,
)
from .core.proxy import ProxyError
from .hub import Hub, HubError
from .loop import run
from .reconnect import ReconnectingWebSocket
from .request import Request
from .response import Response
from .routes import Routes
from .server import App
from .websocket import Stream, WebSocket

__version__ = "0.1.0"

__all__ = [
    "App",
    "ConnectFailed",
    "ConnectionClosed",
    "Hub",
    "HubError",
    "InvalidHandshake",
    "InvalidState",
    "LocalError",
    "MessageTooBig",
    "NegotiationError",
    "PayloadNotUTF8",
    "ProtocolError",
    "ProxyError",
    "ReconnectingWebSocket",
    "RemoteError",
    "Request",
    "Response",
    "Routes",
    "Stream",
    "WSKitError",
    "WebSocket",
    "__version__",
    "broadcast",
    "connect",
    "run",
]
