"""wskit's errors: mistakes of the local caller, faults of the peer, and the end of a connection.

See docs/architecture.md, "Errors".
"""

from __future__ import annotations

from typing import TypeVar

from .close import CloseCode

__all__ = [
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidArgument",
    "InvalidHandshake",
    "InvalidState",
    "KeepaliveTimeout",
    "LocalError",
    "MessageTooBig",
    "NegotiationError",
    "PayloadNotUTF8",
    "PolicyViolation",
    "ProtocolError",
    "RemoteError",
    "WSKitError",
    "without_traceback",
]

E = TypeVar("E", bound=BaseException)


class WSKitError(Exception):
    """Base class of every error wskit raises."""


class LocalError(WSKitError):
    """The local caller used the API wrongly; raised at once, never sent to the peer."""


class InvalidState(LocalError):
    """An operation is not allowed in the connection's current state (the message names it)."""


class InvalidArgument(LocalError, ValueError):
    """An argument the caller gave is out of range: a close code that may not be sent, a
    reason or ping payload too long. Also a ``ValueError``."""


class RemoteError(WSKitError):
    """The peer broke a rule; the connection is failed with ``close_code``."""

    close_code: int = CloseCode.PROTOCOL_ERROR

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if close_code is not None:
            self.close_code = close_code


class ProtocolError(RemoteError):
    """A framing or protocol rule of RFC 6455 / RFC 7692 was broken (close code 1002)."""

    close_code = CloseCode.PROTOCOL_ERROR


class PayloadNotUTF8(RemoteError):
    """A text message or close reason is not valid UTF-8 (RFC 6455 §8.1, close code 1007)."""

    close_code = CloseCode.INVALID_PAYLOAD


class MessageTooBig(RemoteError):
    """A frame or message exceeds the configured limit (RFC 6455 §7.4.1, close code 1009)."""

    close_code = CloseCode.MESSAGE_TOO_BIG


class PolicyViolation(RemoteError):
    """The peer broke a rule of this endpoint rather than of the RFC (close code 1008)."""

    close_code = CloseCode.POLICY_VIOLATION


class InvalidHandshake(WSKitError):
    """The opening handshake failed; ``status`` is the HTTP status to answer or that arrived.

    No close code: a WebSocket that never opened is refused over HTTP (RFC 6455 §4.2.2).
    """

    def __init__(
        self, reason: str, status: int = 400, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers or []


class NegotiationError(InvalidHandshake):
    """An extension or subprotocol negotiation failed."""


class ConnectionClosed(WSKitError):
    """The connection is closed; ``code`` and ``reason`` tell how (those received, 1006 when
    none came). Raised as one of its two subclasses, so "was it clean" is a type."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {int(code)} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectFailed(WSKitError, ConnectionError):
    """A client connection could not be opened; the message says why and, where it can, what
    to try. Not retried by the reconnecting client unless ``transient`` is true."""

    transient = False

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConnectionClosedOK(ConnectionClosed):
    """The closing handshake completed and the close was not an error: we closed, or the
    peer closed with 1000, 1001, no code, or an application code 4000-4999."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended badly: no closing handshake (1006), a failure (1002, 1007,
    1009...), or the peer closed with an error code."""


class KeepaliveTimeout(ConnectionClosedError, TimeoutError):
    """A keepalive ping went unanswered for ``ping_timeout``: the connection was failed with
    1011 (RFC 6455 §7.1.7). Also a ``TimeoutError``."""

    def __init__(self, reason: str = "keepalive ping timeout") -> None:
        super().__init__(CloseCode.INTERNAL_ERROR, reason)


def without_traceback(error: E) -> E:
    """``error`` with its traceback, and those of its causes, dropped: a kept error then holds
    no frames (nor their locals: buffers, the connection) alive until the cycle collector."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        todo += (exc.__cause__, exc.__context__)
    return error
