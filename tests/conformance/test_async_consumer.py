"""An application that reads with ``async for``: RFC 6455 §5.5.1 (a Close is answered "as soon
as practical", and an endpoint may delay it until what it is sending is sent) and §7.1.7.

The echo runs in a coroutine (``async for message in ws: ws.send(message)``), as in the README's
coroutine route, instead of plain listeners. Messages are echoed in order, also those that arrive
in the same read as the peer's Close, or as a frame that fails the connection: wskit holds its
Close until the coroutine has had them (bounded by close_timeout; issue 10, bug 2).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest

import wskit

from .peer import BINARY, CLOSE, PING, TEXT, Peer, close_payload
from .tables import CASE_ARGS, cases

Play = Callable[..., None]


async def async_echo(ws: wskit.WebSocket) -> None:
    with suppress(wskit.ConnectionClosed):
        async for message in ws:
            ws.send(message)


def test_async_echo_in_order(play: Play, role: str) -> None:
    """§5.6: messages read with ``async for`` are echoed in order, text and binary mixed."""

    async def scenario(peer: Peer) -> None:
        messages = [(TEXT if i % 3 else BINARY, b"message %d" % i) for i in range(30)]
        await peer.send_raw(b"".join(peer.frame(op, data) for op, data in messages))
        for op, data in messages:
            await peer.expect(op, data)
        await peer.close_handshake()

    play(role, scenario, setup=async_echo)


SAME_READ = [
    ("text-then-close", ([(TEXT, b"Hello World!", 0), (CLOSE, close_payload(1000), 0)], 1000)),
    ("text-then-reserved-bits", ([(TEXT, b"Hello, world!", 0), (TEXT, b"bad", 2),
                                  (PING, b"after", 0)], 1002)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(SAME_READ, uvloop_every=0))
def test_async_echo_before_close_in_same_read(play: Play, role: str, case: Any,
                                              loop_kind: str) -> None:
    """§5.5.1: a message and the Close (or a bad frame) in one read: the message is echoed
    before wskit's Close (Autobahn 7.1.1 and 3.2 when their frames share a TCP segment)."""
    frames, code = case

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(b"".join(peer.frame(op, data, rsv=rsv) for op, data, rsv in frames))
        await peer.expect(frames[0][0], frames[0][1])
        if code == 1000:
            await peer.expect_close(1000)
            await peer.finish_after_close(1000)
        else:
            await peer.expect_failure(code)

    play(role, scenario, setup=async_echo)
