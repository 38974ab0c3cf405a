"""Sends one message to many connections, building the frame once and bounding slow peers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from .core.connection import PreparedFrame
from .websocket import WebSocket, send_prepared_to

__all__ = ["SLOW_POLICIES", "FanOut", "SlowPolicy", "broadcast", "check_slow_policy"]

#: What to do with a subscriber whose write buffer is over its limit.
SlowPolicy = Literal["drop", "close"]
SLOW_POLICIES: tuple[str, ...] = ("drop", "close")
#: The default limit of queued bytes past which a subscriber counts as slow.
DEFAULT_MAX_BUFFERED = 1 << 20


def check_slow_policy(slow: str) -> None:
    """Raise ValueError unless ``slow`` is one of SLOW_POLICIES."""
    if slow not in SLOW_POLICIES:
        raise ValueError(f"slow must be 'drop' or 'close', not {slow!r}")


class FanOut:
    """One message prepared once for many connections, with counters of what happened.

    Built on the prepared-frame seam (docs/architecture.md, "Seams"): a ``PreparedFrame`` is
    shared by the server-side connections, with ``compress=True`` compressed once for those
    in the same compression state (``Extension.shared_encoding``: all that received the
    same messages); client-side connections mask their own copy. A socket
    whose write buffer already holds more than ``max_buffered`` bytes is a slow subscriber:
    ``slow="drop"`` skips this message for it (``dropped``), ``slow="close"`` closes it
    with 1013, try again later (``closed``). Nothing is ever buffered without bound.
    """

    __slots__ = ("closed", "compress", "dropped", "frame", "max_buffered", "sent", "slow")

    def __init__(
        self,
        message: str | bytes | bytearray | memoryview | PreparedFrame,
        *,
        compress: bool = False,
        max_buffered: int | None = DEFAULT_MAX_BUFFERED,
        slow: str = "close",
    ) -> None:
        check_slow_policy(slow)
        self.frame = message if isinstance(message, PreparedFrame) else PreparedFrame(message)
        self.compress = compress
        self.max_buffered = max_buffered
        self.slow = slow
        self.sent = self.dropped = self.closed = 0

    def send_to(self, sockets: Iterable[WebSocket]) -> None:
        """Write the message to every open socket of ``sockets``, updating the counters."""
        sent, dropped, closed = send_prepared_to(sockets, self.frame, self.compress,
                                                 self.max_buffered, self.slow)
        self.sent += sent
        self.dropped += dropped
        self.closed += closed


def broadcast(
    sockets: Iterable[WebSocket],
    message: str | bytes | bytearray | memoryview | PreparedFrame,
    *,
    compress: bool = False,
    max_buffered: int | None = DEFAULT_MAX_BUFFERED,
    slow: str = "close",
) -> int:
    """Send ``message`` to every open socket; returns how many it was written to.

    The frame is built once for all server-side connections. A socket with more than
    ``max_buffered`` bytes queued is slow: ``slow="close"`` closes it with 1013 (try again
    later), ``slow="drop"`` skips this message for it; the same words and limit as ``Hub``.

    Args:
        sockets: The WebSockets to send to; those not open are skipped.
        message: ``str`` for text, bytes-like for binary, or a ``PreparedFrame``.
        compress: Compress with permessage-deflate where it was negotiated (once for the
            connections in the same compression state, e.g. those that received only
            the same publications).
        max_buffered: Bytes already queued beyond which a socket is slow; None: no limit.
        slow: ``"close"`` or ``"drop"``, what to do with a slow socket.

    Returns:
        How many sockets the message was written to.

    Raises:
        ValueError: ``slow`` is neither ``"close"`` nor ``"drop"``.
    """
    fan = FanOut(message, compress=compress, max_buffered=max_buffered, slow=slow)
    fan.send_to(sockets)
    return fan.sent
