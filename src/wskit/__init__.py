"""wskit: a fast, strict WebSocket library for asyncio with a Vapor-style API."""

from __future__ import annotations

from .broadcast import broadcast
from .client import connect
from .core.close import CloseCode
from .core.connection import PreparedFrame
from .core.errors import (
    ConnectFailed,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidArgument,
    InvalidHandshake,
    InvalidState,
    KeepaliveTimeout,
    LocalError,
    MessageTooBig,
    NegotiationError,
    PayloadNotUTF8,
    ProtocolError,
    RemoteError,
    WSKitError,
)
from .core.limits import Limits
from .core.proxy import ProxyError
from .hub import Hub, HubError
from .loop import run
from .reconnect import ReconnectingWebSocket
from .request import Request
from .response import Response
from .resume import Positions
from .routes import Routes
from .server import App
from .websocket import Stream, WebSocket

__version__ = "0.1.0"

__all__ = [
    "App",
    "CloseCode",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Hub",
    "HubError",
    "InvalidArgument",
    "InvalidHandshake",
    "InvalidState",
    "KeepaliveTimeout",
    "Limits",
    "LocalError",
    "MessageTooBig",
    "NegotiationError",
    "PayloadNotUTF8",
    "Positions",
    "PreparedFrame",
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
