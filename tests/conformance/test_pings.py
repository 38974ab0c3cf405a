"""Pings and pongs: RFC 6455 §5.5 (control frames: at most 125 bytes), §5.5.2 (a Ping is answered
by a Pong with the same application data, as soon as practical), §5.5.3 (an unsolicited Pong is
not answered; a Pong answers the Ping with identical data).

Autobahn section 2, for wskit as server and as client. A message echoed after each ignored frame
proves that nothing was sent for it (the stream is ordered), without waiting on a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CONT, PING, PONG, TEXT, Peer
from .tables import CASE_ARGS, cases

Play = Callable[..., None]


def data(n: int, seed: int = 0) -> bytes:
    return bytes((seed + i * 13) % 256 for i in range(n))


async def sentinel(peer: Peer) -> None:
    """Echo of a text message: proves nothing else was sent before it."""
    await peer.send(TEXT, b"sentinel")
    await peer.expect(TEXT, b"sentinel")


SIZES = [(f"ping-{n}-bytes", n) for n in (0, 1, 2, 10, 64, 100, 124, 125)]


@pytest.mark.parametrize(CASE_ARGS, cases(SIZES, uvloop_every=4))
def test_ping_answered_with_same_payload(play: Play, role: str, case: Any,
                                         loop_kind: str) -> None:
    """§5.5.2: the Pong carries exactly the Ping's application data (binary, every byte value)."""

    async def scenario(peer: Peer) -> None:
        body = data(case)
        await peer.send(PING, body)
        await peer.expect(PONG, body)
        await sentinel(peer)
        await peer.close_handshake()

    play(role, scenario)


def _ordered_table() -> list[tuple[str, Any]]:
    return [
        ("pings-0-to-125-bytes-one-write", (list(range(126)), None)),
        ("10-pings-one-write", ([10] * 10, None)),
        ("10-pings-bytewise", ([10] * 10, 1)),
        ("ping-125-bytewise", ([125], 1)),
        ("ping-125-chops-3", ([125], 3)),
    ]


@pytest.mark.parametrize(CASE_ARGS, cases(_ordered_table(), uvloop_every=2))
def test_pings_all_answered_in_order(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.5.2: every Ping of a burst is answered, in order, however the bytes arrive (Autobahn
    2.6, 2.10, 2.11; wskit does not skip to the last one)."""
    sizes, chunk = case

    async def scenario(peer: Peer) -> None:
        bodies = [data(n, seed=i) for i, n in enumerate(sizes)]
        await peer.send_raw(b"".join(peer.frame(PING, b) for b in bodies), chunk=chunk)
        for body in bodies:
            await peer.expect(PONG, body)
        await sentinel(peer)
        await peer.close_handshake()

    play(role, scenario)


TOO_LONG = [
    ("ping-126-bytes", (PING, 126, None)),
    ("ping-127-bytes", (PING, 127, None)),
    ("ping-65536-bytes-64-bit-length", (PING, 65536, None)),
    ("pong-126-bytes", (PONG, 126, None)),
    ("ping-126-bytes-bytewise", (PING, 126, 1)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(TOO_LONG, uvloop_every=2))
def test_control_frame_over_125_bytes_fails(play: Play, role: str, case: Any,
                                            loop_kind: str) -> None:
    """§5.5: control frames MUST have a payload of at most 125 bytes: 1002, no Pong (Autobahn
    2.5)."""
    opcode, n, chunk = case

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(peer.frame(opcode, data(n)), chunk=chunk)
        await peer.expect_failure(1002)

    play(role, scenario)


UNSOLICITED = [
    ("pong-empty", [b""]),
    ("pong-with-payload", [b"unsolicited"]),
    ("pong-125-bytes", [data(125)]),
    ("3-pongs", [b"a", b"b", b"c"]),
]


@pytest.mark.parametrize(CASE_ARGS, cases(UNSOLICITED, uvloop_every=2))
def test_unsolicited_pong_ignored(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.5.3: an unsolicited Pong needs no response (Autobahn 2.7, 2.8)."""

    async def scenario(peer: Peer) -> None:
        for body in case:
            await peer.send(PONG, body)
        await sentinel(peer)
        await peer.close_handshake()

    play(role, scenario)


def test_unsolicited_pong_then_ping(play: Play, role: str) -> None:
    """§5.5.3 and §5.5.2: a Pong then a Ping in one write: only the Ping is answered (2.9)."""

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(peer.frame(PONG, b"unsolicited") + peer.frame(PING, b"solicited"))
        await peer.expect(PONG, b"solicited")
        await sentinel(peer)
        await peer.close_handshake()

    play(role, scenario)


INTERLEAVED = [
    ("ping-between-text-fragments", (TEXT, [PING])),
    ("ping-between-binary-fragments", (BINARY, [PING])),
    ("pong-between-text-fragments", (TEXT, [PONG])),
    ("ping-pong-ping-between-fragments", (TEXT, [PING, PONG, PING])),
]


@pytest.mark.parametrize(CASE_ARGS, cases(INTERLEAVED, uvloop_every=2))
def test_control_frames_between_fragments(play: Play, role: str, case: Any,
                                          loop_kind: str) -> None:
    """§5.4: control frames MAY be injected in the middle of a fragmented message; Pings are
    answered at once (the Pong comes before the echo), Pongs are ignored (Autobahn 5.6-5.8)."""
    opcode, controls = case

    async def scenario(peer: Peer) -> None:
        wire = peer.frame(opcode, b"frag1-", fin=False)
        for i, control in enumerate(controls):
            wire += peer.frame(control, b"ctl%d" % i)
        wire += peer.frame(CONT, b"frag2", fin=True)
        await peer.send_raw(wire)
        for i, control in enumerate(controls):
            if control == PING:
                await peer.expect(PONG, b"ctl%d" % i)
        await peer.expect(opcode, b"frag1-frag2")
        await peer.close_handshake()

    play(role, scenario)


def test_wskit_ping_resolved_by_matching_pong(play: Play, role: str) -> None:
    """§5.5.2, §5.5.3: ``ws.ping()`` sends a Ping and completes on the Pong with the same data;
    a Pong with other data does not complete it."""

    async def scenario(peer: Peer) -> None:
        waiter = asyncio.ensure_future(peer.ws.ping(b"rtt"))
        await peer.expect(PING, b"rtt")
        await peer.send(PONG, b"other")
        await sentinel(peer)
        assert not waiter.done()
        await peer.send(PONG, b"rtt")
        rtt = await asyncio.wait_for(waiter, 1.0)
        assert rtt >= 0
        await peer.close_handshake()

    play(role, scenario)
