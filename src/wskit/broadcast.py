"""Sends one message to many connections, building the frame once and bounding slow peers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from .core.connection import State
from .core.errors import ConnectionClosed, InvalidState
from .core.frames import encode_frame
from .websocket import WebSocket

__all__ = ["SLOW_POLICIES", "FanOut", "SlowPolicy", "broadcast", "check_slow_policy"]

logger = logging.getLogger("wskit")

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

    Server-side connections share one frame built on first use (DESIGN.md §4); others
    (client side, or compressed with ``compress=True``) get their own encoding. A socket
    whose write buffer already holds more than ``max_buffered`` bytes is a slow subscriber:
    ``slow="drop"`` skips this message for it (``dropped``), ``slow="close"`` closes it
    with 1013, try again later (``closed``). Nothing is ever buffered without bound.
    """

    __slots__ = ("closed", "compress", "dropped", "max_buffered", "message", "opcode",
                 "payload", "sent", "shared", "slow")

    def __init__(
        self,
        message: str | bytes | bytearray | memoryview,
        *,
        compress: bool = False,
        max_buffered: int | None = DEFAULT_MAX_BUFFERED,
        slow: str = "close",
    ) -> None:
        check_slow_policy(slow)
        self.payload: bytes | bytearray | memoryview
        if isinstance(message, str):
            self.opcode, self.payload = 0x1, message.encode()
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self.opcode, self.payload = 0x2, message
        else:
            raise TypeError(f"takes str or bytes-like, not {type(message).__name__}")
        self.message = message
        self.compress = compress
        self.max_buffered = max_buffered
        self.slow = slow
        self.shared: bytes | None = None
        self.sent = self.dropped = self.closed = 0

    def send_to(self, sockets: Iterable[WebSocket]) -> None:
        """Write the message to every open socket of ``sockets``, updating the counters."""
        max_buffered = self.max_buffered
        compress = self.compress
        for ws in sockets:
            if ws.is_closed:
                continue
            if max_buffered is not None and ws.buffered_amount > max_buffered:
                if self.slow == "close":
                    if ws.state is State.OPEN:
                        logger.warning("closing slow subscriber %s (%d bytes queued) with 1013",
                                       ws.remote_address, ws.buffered_amount)
                        ws._start_close(1013, "too slow")
                        self.closed += 1
                else:
                    self.dropped += 1
                continue
            conn = ws._conn
            if conn.can_share_frame(compress):
                shared = self.shared
                if shared is None:
                    shared = self.shared = encode_frame(self.opcode, self.payload)
                ws._protocol.write(shared)
                self.sent += 1
                continue
            try:
                ws.send(self.message, compress=compress)
            except (ConnectionClosed, InvalidState):
                continue
            self.sent += 1


def broadcast(
    sockets: Iterable[WebSocket],
    message: str | bytes | bytearray | memoryview,
    *,
    compress: bool = False,
    max_buffered: int | None = DEFAULT_MAX_BUFFERED,
    slow: str = "close",
) -> int:
    """Send ``message`` to every open socket; returns how many it was written to.

    The frame is built once for all server-side connections. A socket with more than
    ``max_buffered`` bytes queued is slow: ``slow="close"`` closes it with 1013 (try again
    later), ``slow="drop"`` skips this message for it; the same words and limit as ``Hub``.
    """
    fan = FanOut(message, compress=compress, max_buffered=max_buffered, slow=slow)
    fan.send_to(sockets)
    return fan.sent
