"""Sends one message to many connections, building the frame once and bounding slow peers."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .core.errors import ConnectionClosed, InvalidState
from .core.frames import encode_frame
from .websocket import WebSocket

__all__ = ["broadcast"]

logger = logging.getLogger("wskit")


def broadcast(
    sockets: Iterable[WebSocket],
    message: str | bytes | bytearray | memoryview,
    *,
    compress: bool = False,
    max_buffered: int | None = 1 << 20,
    slow: str = "close",
) -> int:
    """Send ``message`` to every open socket; returns how many it was written to.

    Server-side connections share one frame built once (DESIGN.md §4); others (client side,
    or compressed with ``compress=True``) get their own encoding. A socket whose write buffer
    already holds more than ``max_buffered`` bytes is a slow subscriber: with ``slow="close"``
    it is closed with 1013 (try again later), with ``slow="skip"`` it misses this message.
    Nothing is ever buffered without bound.
    """
    if slow not in ("close", "skip"):
        raise ValueError("slow must be 'close' or 'skip'")
    payload: bytes | bytearray | memoryview
    if isinstance(message, str):
        opcode, payload = 0x1, message.encode()
    elif isinstance(message, (bytes, bytearray, memoryview)):
        opcode, payload = 0x2, message
    else:
        raise TypeError(f"broadcast() takes str or bytes-like, not {type(message).__name__}")
    shared: bytes | None = None
    sent = 0
    for ws in sockets:
        if ws.is_closed:
            continue
        if max_buffered is not None and ws.buffered_amount > max_buffered:
            if slow == "close":
                logger.warning("closing slow subscriber %s (%d bytes queued) with 1013",
                               ws.remote_address, ws.buffered_amount)
                ws._start_close(1013, "too slow")
            continue
        conn = ws._conn
        if conn.can_share_frame(compress):
            if shared is None:
                shared = encode_frame(opcode, payload)
            ws._protocol.write(shared)
            sent += 1
            continue
        try:
            ws.send(message, compress=compress)
        except (ConnectionClosed, InvalidState):
            continue
        sent += 1
    return sent
