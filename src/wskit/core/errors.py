"""The two error families of wskit: mistakes of the local caller and faults of the peer."""

from __future__ import annotations

__all__ = [
    "ConnectFailed",
    "ConnectionClosed",
    "InvalidHandshake",
    "InvalidState",
    "LocalError",
    "MessageTooBig",
    "NegotiationError",
    "PayloadNotUTF8",
    "ProtocolError",
    "RemoteError",
    "WSKitError",
]


class WSKitError(Exception):
    """Base class of every error wskit raises."""


class LocalError(WSKitError):
    """The local caller used the API wrongly; raised at once, never sent to the peer."""


class InvalidState(LocalError):
    """An operation is not allowed in the connection's current state (the message names it)."""


class RemoteError(WSKitError):
    """The peer broke a rule; the connection is failed with ``close_code``."""

    close_code: int = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if close_code is not None:
            self.close_code = close_code


class ProtocolError(RemoteError):
    """A framing or protocol rule of RFC 6455 / RFC 7692 was broken (close code 1002)."""

    close_code = 1002


class PayloadNotUTF8(RemoteError):
    """A text message or close reason is not valid UTF-8 (RFC 6455 §8.1, close code 1007)."""

    close_code = 1007


class MessageTooBig(RemoteError):
    """A frame or message exceeds the configured limit (RFC 6455 §7.4.1, close code 1009)."""

    close_code = 1009


class InvalidHandshake(RemoteError):
    """The opening handshake failed; ``status`` is the HTTP status to answer or that arrived."""

    def __init__(
        self, reason: str, status: int = 400, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(reason, close_code=1002)
        self.status = status
        self.headers = headers or []


class NegotiationError(InvalidHandshake):
    """An extension or subprotocol negotiation failed."""


class ConnectionClosed(WSKitError):
    """The connection is closed; ``code`` and ``reason`` tell how."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectFailed(WSKitError, ConnectionError):
    """A client connection could not be opened; the message says why and, where it can, what
    to try. Not retried by the reconnecting client unless ``transient`` is true."""

    transient = False

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
