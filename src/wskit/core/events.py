"""What a connection reports (``Connection.receive_data``): messages, pings, pongs, the
peer's Close, a failure; re-exported by ``core.connection``."""

from __future__ import annotations

from .errors import RemoteError

__all__ = ["BinaryMessage", "CloseReceived", "Event", "Failed", "Ping", "Pong", "TextMessage"]


class Event:
    """Base class of what ``Connection.receive_data`` reports."""

    __slots__ = ()


class TextMessage(Event):
    """A complete text message."""

    __slots__ = ("data",)

    def __init__(self, data: str) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"TextMessage({self.data[:40]!r}, len={len(self.data)})"


class BinaryMessage(Event):
    """A complete binary message; ``data`` may be a memoryview valid until the next feed."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"BinaryMessage(len={len(self.data)})"


class Ping(Event):
    """A ping arrived; the pong is already queued in ``data_to_send``."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Pong(Event):
    """A pong arrived (solicited or not)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class CloseReceived(Event):
    """The peer sent a valid Close frame; ``code`` is 1005 when it had none. Our answer (the
    same code and reason) is queued in ``data_to_send``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"CloseReceived({self.code}, {self.reason!r})"


class Failed(Event):
    """The peer broke a rule; a Close frame with ``error.close_code`` is queued and the
    transport must be closed (RFC 6455 §7.1.7)."""

    __slots__ = ("error",)

    def __init__(self, error: RemoteError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Failed({self.error.close_code}, {self.error.reason!r})"
