"""Opcodes: RFC 6455 §5.2 (opcodes 0x3-0x7 are reserved for further non-control frames, 0xB-0xF
for further control frames; an unknown opcode MUST fail the connection) and §7.1.7 (Close 1002,
then TCP closed).

Autobahn section 4, for wskit as server and as client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .peer import CONT, PING, TEXT, Peer
from .tables import CASE_ARGS, cases

Play = Callable[..., None]

RESERVED = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]

VARIANTS = {
    # Autobahn 4.x.1: the frame alone, no payload.
    "alone": lambda op: ([], (op, b"", True), []),
    # 4.x.2: with a payload.
    "with-payload": lambda op: ([], (op, b"reserved opcode payload", True), []),
    # 4.x.3: after a valid message, followed by a Ping.
    "between-text-and-ping": lambda op: ([(TEXT, b"Hello, world!", True)], (op, b"", True),
                                         [(PING, b"after", True)]),
    # 4.x.4: the same, with a payload.
    "with-payload-between-text-and-ping": lambda op: (
        [(TEXT, b"Hello, world!", True)], (op, b"reserved", True), [(PING, b"after", True)]),
    # Inside a fragmented message (a reserved opcode is no continuation).
    "inside-fragmented-message": lambda op: ([(TEXT, b"frag", False)], (op, b"x", True),
                                             [(CONT, b"ment", True)]),
    # With FIN clear: for 0xB-0xF this would also be a fragmented control frame.
    "fin-0": lambda op: ([], (op, b"x", False), []),
}


def _table() -> list[tuple[str, Any]]:
    return [(f"opcode-{op:#x}-{name}", (op, name)) for name in VARIANTS for op in RESERVED]


@pytest.mark.parametrize(CASE_ARGS, cases(_table()))
def test_reserved_opcode_fails_with_1002(play: Play, role: str, case: Any,
                                         loop_kind: str) -> None:
    """§5.2: a reserved opcode fails the connection with 1002; a complete message before it is
    echoed, a Ping after it is not answered."""
    op, name = case
    before, bad, after = VARIANTS[name](op)

    async def scenario(peer: Peer) -> None:
        wire = b"".join(peer.frame(o, d, fin=f) for o, d, f in before)
        wire += peer.frame(bad[0], bad[1], fin=bad[2])
        wire += b"".join(peer.frame(o, d, fin=f) for o, d, f in after)
        await peer.send_raw(wire)
        for o, d, f in before:
            if f and o == TEXT:
                await peer.expect(TEXT, d)
        await peer.expect_failure(1002)

    play(role, scenario)
