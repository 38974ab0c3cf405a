"""Frames right behind the handshake: RFC 6455 §4.1 (once the client has the server's 101, it
is in the OPEN state and a server may send frames at once) and §4.2.2 (the server may send
frames right after its 101), with the rules of §5 applied to them as to any other.

A server such as Autobahn's fuzzing server writes the 101 response and its first frames in one
TCP segment, so wskit's client reads them in the same read as the handshake, before
``connect()`` has returned and before the application set its listeners. They must be handled
exactly as if they had come later: messages echoed in order, Pongs, and a Close or a failure
only after the echoes of the messages before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CLOSE, PING, PONG, TEXT, close_payload, encode, open_peer
from .tables import CASE_ARGS, cases

Run = Callable[..., Any]


def frame(opcode: int, data: bytes = b"", *, role: str, **kw: Any) -> bytes:
    # The peer of a wskit client is a server (no mask); of a wskit server, a client.
    return encode(opcode, data, mask=role == "server", **kw)


#: (frames sent with the handshake, what wskit answers: ("echo"|"pong", opcode, data) items,
#: then the close code it ends with: 1000 answered Close, 1002/1007 failure, None stays open).
EARLY: dict[str, Any] = {
    "text": ([(TEXT, b"Hello, world!", {})], [(TEXT, b"Hello, world!")], None),
    "binary-text-binary": ([(BINARY, b"\x01", {}), (TEXT, b"two", {}), (BINARY, b"\x03", {})],
                           [(BINARY, b"\x01"), (TEXT, b"two"), (BINARY, b"\x03")], None),
    "ping": ([(PING, b"early", {})], [(PONG, b"early")], None),
    # Pongs go out as the read is processed, before listeners answer its messages (§5.5.2:
    # "as soon as practical"), as with any read.
    "text-then-ping": ([(TEXT, b"first", {}), (PING, b"second", {})],
                       [(PONG, b"second"), (TEXT, b"first")], None),
    "close": ([(CLOSE, close_payload(1000), {})], [], 1000),
    "text-then-close": ([(TEXT, b"Hello World!", {}), (CLOSE, close_payload(1000), {})],
                        [(TEXT, b"Hello World!")], 1000),
    "text-then-rsv-then-ping": ([(TEXT, b"Hello, world!", {}), (TEXT, b"bad", {"rsv": 2}),
                                 (PING, b"after", {})], [(TEXT, b"Hello, world!")], 1002),
    "binary-then-reserved-opcode": ([(BINARY, b"\x00\x01", {}), (0xB, b"", {})],
                                    [(BINARY, b"\x00\x01")], 1002),
    "text-then-invalid-utf8": ([(TEXT, b"ok", {}), (TEXT, b"\xce\xba\xed\xa0\x80", {})],
                               [(TEXT, b"ok")], 1007),
}


@pytest.mark.parametrize(CASE_ARGS, cases(EARLY.items(), roles=("client",), uvloop_every=3))
def test_frames_in_the_handshake_segment(run: Run, role: str, case: Any, loop_kind: str) -> None:
    """§4.1, §5: frames in the same segment as the 101 are handled like any later frames:
    answers in order, the Close or failure after them (Autobahn's client runs)."""
    frames, answers, close = case
    early = b"".join(frame(op, data, role=role, **kw) for op, data, kw in frames)

    async def main() -> None:
        async with open_peer(role, early=early) as peer:
            for opcode, data in answers:
                await peer.expect(opcode, data)
            if close == 1000:
                await peer.expect_close(1000)
                await peer.finish_after_close(1000)
            elif close is not None:
                await peer.expect_failure(close)
            else:
                await peer.close_handshake()

    run(main())
