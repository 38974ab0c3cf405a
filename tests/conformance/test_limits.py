"""Limits: RFC 6455 §10.4 (an endpoint limits frame and message sizes, to protect itself) and
§7.4.1 (1009: a message too big to process), with ``max_message_size=1024``.

A frame that declares too big a payload is refused from its header alone, before its payload is
sent; a fragmented message is refused at the fragment that crosses the limit, before it ends.
Control frames (at most 125 bytes) do not count. For wskit as server and as client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CONT, PING, PONG, TEXT, Peer
from .tables import CASE_ARGS, cases

Play = Callable[..., None]

LIMIT = 1024
KINDS = {"text": TEXT, "binary": BINARY}


def body(n: int) -> bytes:
    return bytes(0x30 + i % 10 for i in range(n))


async def alive(peer: Peer, tag: bytes = b"alive") -> None:
    await peer.send(PING, tag)
    await peer.expect(PONG, tag)


def _within_table() -> list[tuple[str, Any]]:
    table = []
    for kind, opcode in KINDS.items():
        table += [
            (f"{kind}-exactly-at-limit", (opcode, [LIMIT])),
            (f"{kind}-at-limit-in-16-fragments", (opcode, [64] * 16)),
            (f"{kind}-at-limit-with-empty-fragments", (opcode, [0, LIMIT, 0])),
            (f"{kind}-at-limit-1024-one-byte-fragments", (opcode, [1] * LIMIT)),
        ]
    return table


@pytest.mark.parametrize(CASE_ARGS, cases(_within_table(), uvloop_every=3))
def test_message_at_limit_echoed(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§10.4: a message of exactly max_message_size bytes, whole or fragmented, is accepted."""
    opcode, sizes = case

    async def scenario(peer: Peer) -> None:
        data = body(sum(sizes))
        frames, at = [], 0
        for i, size in enumerate(sizes):
            frames.append(peer.frame(opcode if i == 0 else CONT, data[at : at + size],
                                     fin=i == len(sizes) - 1))
            at += size
        await peer.send_raw(b"".join(frames))
        await peer.expect(opcode, data)
        await peer.close_handshake()

    play(role, scenario, max_message_size=LIMIT)


def test_limit_is_per_message(play: Play, role: str) -> None:
    """§10.4: the limit bounds each message, not the connection: 20 messages of 1000 bytes."""

    async def scenario(peer: Peer) -> None:
        for i in range(20):
            await peer.send(BINARY, body(1000 + i % 24))
            await peer.expect(BINARY, body(1000 + i % 24))
        await peer.close_handshake()

    play(role, scenario, max_message_size=LIMIT)


DECLARED = [
    ("declared-1025-16-bit", (LIMIT + 1, None)),
    ("declared-65536-64-bit", (65536, None)),
    ("declared-1GiB", (1 << 30, None)),
    ("declared-2-pow-62", (1 << 62, None)),
    ("declared-1025-header-bytewise", (LIMIT + 1, 1)),
]


def _declared_table() -> list[tuple[str, Any]]:
    return [(f"{kind}-{name}", (opcode, n, chunk)) for kind, opcode in KINDS.items()
            for name, (n, chunk) in DECLARED]


@pytest.mark.parametrize(CASE_ARGS, cases(_declared_table(), uvloop_every=3))
def test_too_big_frame_refused_from_its_header(play: Play, role: str, case: Any,
                                               loop_kind: str) -> None:
    """§10.4, §7.4.1: only the header (and mask key) of a frame declaring more than the limit
    is sent: wskit fails with 1009 without waiting for the payload."""
    opcode, n, chunk = case

    async def scenario(peer: Peer) -> None:
        header = peer.frame(opcode, b"", length=n)
        await peer.send_raw(header, chunk=chunk)
        await peer.expect_failure(1009)

    play(role, scenario, max_message_size=LIMIT)


def test_too_big_frame_sent_whole(play: Play, role: str) -> None:
    """§10.4: one byte over the limit, sent whole: 1009, nothing echoed."""

    async def scenario(peer: Peer) -> None:
        await peer.send(TEXT, body(LIMIT + 1))
        await peer.expect_failure(1009)

    play(role, scenario, max_message_size=LIMIT)


OVER_IN_FRAGMENTS = [
    ("16x64-then-1-byte", ([64] * 16, 1)),
    ("1000-then-25", ([1000], 25)),
    ("1024-one-byte-fragments-then-1", ([1] * LIMIT, 1)),
    ("empty-fragments-then-1025", ([0, 0], LIMIT + 1)),
    ("1-then-1024", ([1], LIMIT)),
]


def _over_table() -> list[tuple[str, Any]]:
    return [(f"{kind}-{name}", (opcode, *plan)) for kind, opcode in KINDS.items()
            for name, plan in OVER_IN_FRAGMENTS]


@pytest.mark.parametrize(CASE_ARGS, cases(_over_table(), uvloop_every=3))
def test_fragmented_message_over_limit_fails_at_the_crossing_fragment(
        play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§10.4, §7.4.1: fragments up to the limit are taken (the connection answers a Ping);
    the header of the fragment that crosses the limit gets 1009, before the message ends."""
    opcode, sizes, crossing = case

    async def scenario(peer: Peer) -> None:
        frames = [peer.frame(opcode if i == 0 else CONT, body(size), fin=False)
                  for i, size in enumerate(sizes)]
        await peer.send_raw(b"".join(frames))
        await alive(peer)
        await peer.send_raw(peer.frame(CONT, b"", fin=False, length=crossing))
        await peer.expect_failure(1009)

    play(role, scenario, max_message_size=LIMIT)


def test_control_frames_do_not_count(play: Play, role: str) -> None:
    """§5.5, §10.4: with a 100-byte limit, a 125-byte Ping is answered, and Pings between the
    fragments of a 100-byte message do not push it over the limit."""

    async def scenario(peer: Peer) -> None:
        await peer.send(PING, body(125))
        await peer.expect(PONG, body(125))
        wire = peer.frame(TEXT, body(50), fin=False) + peer.frame(PING, body(125))
        wire += peer.frame(CONT, body(50)[:50], fin=True)
        await peer.send_raw(wire)
        await peer.expect(PONG, body(125))
        await peer.expect(TEXT, body(50) + body(50))
        await peer.close_handshake()

    play(role, scenario, max_message_size=100)


def test_too_big_frame_while_the_peer_keeps_sending(play: Play, role: str) -> None:
    """§7.1.7, §7.1.1: the peer writes a whole 4 MiB frame over a 1024-byte limit: wskit's
    1009 Close still reaches it, followed by a clean TCP close (FIN, not a reset that could
    destroy the Close in flight)."""

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(peer.frame(BINARY, body(4 << 20)))
        await peer.expect_failure(1009)

    play(role, scenario, max_message_size=LIMIT)
