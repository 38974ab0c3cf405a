"""Reserved bits: RFC 6455 §5.2 (RSV1, RSV2, RSV3 MUST be 0 unless an extension defines them; a
receiver MUST fail the connection otherwise) and §7.1.7 (failing: Close 1002, then TCP closed).

Autobahn section 3, with every RSV combination on every kind of frame, for wskit as server and
as client (no extension negotiated). A valid message before the bad frame is echoed; a Ping
after it is never answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CLOSE, CONT, PING, PONG, TEXT, Peer, close_payload
from .tables import CASE_ARGS, cases

Play = Callable[..., None]

RSV_NAMES = {1: "rsv3", 2: "rsv2", 3: "rsv2-rsv3", 4: "rsv1", 5: "rsv1-rsv3", 6: "rsv1-rsv2",
             7: "rsv1-rsv2-rsv3"}

#: The bad frame for each kind: (frames before it, opcode, payload, fin).
KINDS: dict[str, Any] = {
    "text": ([], TEXT, b"bad", True),
    "binary": ([], BINARY, b"\x00\x01", True),
    "ping": ([], PING, b"ping", True),
    "pong": ([], PONG, b"pong", True),
    "close": ([], CLOSE, close_payload(1000), True),
    "first-fragment": ([], TEXT, b"frag", False),
    "continuation": ([(TEXT, b"frag", False)], CONT, b"ment", True),
    "empty-text": ([], TEXT, b"", True),
}


def _table() -> list[tuple[str, Any]]:
    table = []
    for kind in KINDS:
        for rsv, name in RSV_NAMES.items():
            table.append((f"{name}-on-{kind}", (kind, rsv, "one-write")))
    for delivery in ("frame-wise", "bytewise"):
        for rsv, name in RSV_NAMES.items():
            table.append((f"{name}-on-text-{delivery}", ("text", rsv, delivery)))
    return table


@pytest.mark.parametrize(CASE_ARGS, cases(_table()))
def test_reserved_bits_fail_with_1002(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.2: a non-zero RSV without a negotiated extension fails the connection with 1002; the
    message before it is echoed first, nothing is sent after the Close (Autobahn 3.1-3.7)."""
    kind, rsv, delivery = case
    before, opcode, body, fin = KINDS[kind]

    async def scenario(peer: Peer) -> None:
        frames = [peer.frame(TEXT, b"Hello, world!")]
        frames += [peer.frame(op, data, fin=f) for op, data, f in before]
        frames.append(peer.frame(opcode, body, fin=fin, rsv=rsv))
        frames.append(peer.frame(PING, b"after"))
        if delivery == "one-write":
            await peer.send_raw(b"".join(frames))
            await peer.expect(TEXT, b"Hello, world!")
        else:
            chunk = 1 if delivery == "bytewise" else None
            await peer.send_raw(frames[0], chunk=chunk)
            await peer.expect(TEXT, b"Hello, world!")
            for frame in frames[1:]:
                await peer.send_raw(frame, chunk=chunk)
        await peer.expect_failure(1002)

    play(role, scenario)
