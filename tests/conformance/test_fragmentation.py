"""Fragmentation: RFC 6455 §5.4 (a message is one frame with FIN, or a TEXT/BINARY frame without
FIN, zero or more CONT frames without FIN and a CONT frame with FIN; control frames MAY come in
between and MUST NOT be fragmented; fragments of different messages MUST NOT interleave),
§5.5 (control frames are not fragmented) and §7.1.7 (a broken rule fails with 1002).

Autobahn section 5 (and 10.1 for long auto-fragmented messages), for wskit as server and as
client, each sequence delivered in one write, frame by frame and byte by byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CLOSE, CONT, PING, PONG, TEXT, Peer, close_payload
from .tables import CASE_ARGS, cases

Play = Callable[..., None]

#: How a valid message is split: the sizes of its fragments.
PLANS = {
    "2-fragments": [5, 6],
    "3-fragments": [4, 4, 3],
    "10-fragments": [1] * 10 + [1],
    "empty-first-fragment": [0, 11],
    "empty-last-fragment": [11, 0],
    "empty-middle-fragment": [5, 0, 6],
    "all-fragments-empty": [0, 0, 0],
    "125-126-127-byte-fragments": [125, 126, 127],
    "200-one-byte-fragments": [1] * 200,
}

DELIVERIES = ("one-write", "frame-wise", "bytewise")


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    parts, at = [], 0
    for size in sizes:
        parts.append(data[at : at + size])
        at += size
    return parts


def fragment_frames(peer: Peer, opcode: int, parts: list[bytes]) -> list[bytes]:
    last = len(parts) - 1
    return [peer.frame(opcode if i == 0 else CONT, part, fin=i == last)
            for i, part in enumerate(parts)]


async def deliver(peer: Peer, frames: list[bytes], delivery: str) -> None:
    if delivery == "one-write":
        await peer.send_raw(b"".join(frames))
    else:
        for frame in frames:
            await peer.send_raw(frame, chunk=1 if delivery == "bytewise" else None)


def _valid_table() -> list[tuple[str, Any]]:
    table = []
    for kind, opcode in (("text", TEXT), ("binary", BINARY)):
        for plan in PLANS:
            for delivery in DELIVERIES:
                if delivery == "bytewise" and sum(PLANS[plan]) > 300:
                    continue
                table.append((f"{kind}-{plan}-{delivery}", (opcode, plan, delivery)))
    return table


@pytest.mark.parametrize(CASE_ARGS, cases(_valid_table()))
def test_fragmented_message_reassembled(play: Play, role: str, case: Any,
                                        loop_kind: str) -> None:
    """§5.4: the fragments of a message, empty ones included, make one message, echoed whole
    (Autobahn 5.3-5.5)."""
    opcode, plan, delivery = case
    sizes = PLANS[plan]

    async def scenario(peer: Peer) -> None:
        data = bytes(0x41 + i % 26 for i in range(sum(sizes)))
        await deliver(peer, fragment_frames(peer, opcode, split(data, sizes)), delivery)
        await peer.expect(opcode, data)
        await peer.close_handshake()

    play(role, scenario)


def test_long_message_auto_fragmented(play: Play, role: str) -> None:
    """§5.4: 64 KiB of text in 1300-byte fragments, as a browser may send it (Autobahn 10.1.1)."""

    async def scenario(peer: Peer) -> None:
        data = b"*" * 65536
        await peer.send_raw(b"".join(fragment_frames(peer, TEXT, split(data, [1300] * 51))))
        await peer.expect(TEXT, data)
        await peer.close_handshake()

    play(role, scenario)


@pytest.mark.parametrize("delivery", ["one-write", "frame-wise", "bytewise"])
def test_pings_between_five_fragments(play: Play, role: str, delivery: str) -> None:
    """§5.4, §5.5.2: a Ping between each fragment is answered at once, before the message
    completes, and the message is still echoed whole (Autobahn 5.19, 5.20)."""

    async def scenario(peer: Peer) -> None:
        parts = [b"fragment%d" % i for i in range(1, 6)]
        for i, part in enumerate(parts):
            frame = peer.frame(TEXT if i == 0 else CONT, part, fin=i == 4)
            await deliver(peer, [frame], delivery)
            if i < 4:
                await deliver(peer, [peer.frame(PING, b"pongme %d!" % i)], delivery)
                await peer.expect(PONG, b"pongme %d!" % i)
                await asyncio.sleep(0.02)
        await peer.expect(TEXT, b"".join(parts))
        await peer.close_handshake()

    play(role, scenario)


def test_close_between_fragments_discards_the_message(play: Play, role: str) -> None:
    """§5.5.1, §7.1.2: a Close in the middle of a fragmented message is answered; the
    unfinished message is dropped and the fragment after the Close is ignored (Autobahn 7.1.5)."""

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(peer.frame(TEXT, b"fragment1", fin=False)
                            + peer.frame(CLOSE, close_payload(1000))
                            + peer.frame(CONT, b"fragment2", fin=True))
        await peer.expect_close(1000)
        await peer.finish_after_close(1000)

    play(role, scenario)


#: Sequences that break §5.4 / §5.5: (complete messages echoed first, the frames to send).
BROKEN: dict[str, Any] = {
    # Autobahn 5.1, 5.2: fragmented control frames.
    "ping-in-2-fragments": ([], [(PING, b"frag1", False), (CONT, b"frag2", True)]),
    "pong-in-2-fragments": ([], [(PONG, b"frag1", False), (CONT, b"frag2", True)]),
    "close-with-fin-0": ([], [(CLOSE, close_payload(1000), False), (CONT, b"", True)]),
    "ping-fin-0-inside-text-message": ([], [(TEXT, b"a", False), (PING, b"p", False),
                                            (CONT, b"b", True)]),
    # 5.9-5.14: a continuation with nothing to continue.
    "continuation-fin-1-without-start": ([], [(CONT, b"non-continuation payload", True),
                                              (TEXT, b"Hello, world!", True)]),
    "continuation-fin-0-without-start": ([], [(CONT, b"non-continuation payload", False),
                                              (TEXT, b"Hello, world!", True)]),
    "continuation-after-complete-message": ([b"done"], [(TEXT, b"done", True),
                                                        (CONT, b"more", True)]),
    "empty-continuation-without-start": ([], [(CONT, b"", True)]),
    # 5.15: a good fragmented message, then a continuation without start.
    "fragmented-message-then-stray-continuation": (
        [b"fragment1fragment2"],
        [(TEXT, b"fragment1", False), (CONT, b"fragment2", True), (CONT, b"fragment3", False),
         (TEXT, b"fragment4", True)]),
    # 5.16, 5.17: the same pattern twice.
    "stray-continuations-repeated": ([], [(CONT, b"fragment1", False), (TEXT, b"fragment2", False),
                                          (CONT, b"fragment3", True)] * 2),
    "stray-final-continuations-repeated": ([], [(CONT, b"fragment1", True),
                                                (TEXT, b"fragment2", False),
                                                (CONT, b"fragment3", True)] * 2),
    # 5.18: a new message inside a fragmented one.
    "text-inside-fragmented-text": ([], [(TEXT, b"fragment1", False), (TEXT, b"fragment2", True)]),
    "binary-inside-fragmented-text": ([], [(TEXT, b"fragment1", False),
                                           (BINARY, b"fragment2", True)]),
    "text-inside-fragmented-binary": ([], [(BINARY, b"fragment1", False),
                                           (TEXT, b"fragment2", True)]),
    "text-fin-0-inside-fragmented-text": ([], [(TEXT, b"a", False), (CONT, b"b", False),
                                               (TEXT, b"c", False), (CONT, b"d", True)]),
}


def _broken_table() -> list[tuple[str, Any]]:
    return [(f"{name}-{delivery}", (name, delivery)) for name in BROKEN for delivery in DELIVERIES]


@pytest.mark.parametrize(CASE_ARGS, cases(_broken_table()))
def test_broken_fragmentation_fails_with_1002(play: Play, role: str, case: Any,
                                              loop_kind: str) -> None:
    """§5.4, §5.5: each broken sequence fails the connection with 1002; only the complete
    messages before the broken frame are echoed (Autobahn 5.1, 5.2, 5.9-5.18)."""
    name, delivery = case
    echoes, sequence = BROKEN[name]

    async def scenario(peer: Peer) -> None:
        frames = [peer.frame(op, data, fin=fin) for op, data, fin in sequence]
        await deliver(peer, frames, delivery)
        for data in echoes:
            await peer.expect(TEXT, data)
        await peer.expect_failure(1002)

    play(role, scenario)
