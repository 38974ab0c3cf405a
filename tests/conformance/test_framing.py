"""Framing: RFC 6455 §5.2 (base framing, payload length encodings), §5.6 (text and binary data
frames), §5.1 and §5.3 (who masks), §5.4 (senders may split, receivers must reassemble reads).

Autobahn sections 1 (text and binary of every length class, delivered whole or in chops),
9 (big messages) and 10 (auto-fragmented delivery), for wskit as server and as client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CLOSE, PING, PONG, TEXT, Peer, close_payload
from .tables import CASE_ARGS, cases

Play = Callable[..., None]

LENGTHS = (0, 1, 125, 126, 127, 128, 65535, 65536)
KINDS = {"text": TEXT, "binary": BINARY}


def payload(opcode: int, n: int) -> bytes:
    """A payload whose bytes differ, so a slicing or masking bug shows (ASCII for text)."""
    if opcode == TEXT:
        return bytes(0x21 + i % 94 for i in range(n))
    return bytes(i * 7 % 256 for i in range(n))


def header_length(n: int, masked: bool) -> int:
    return 2 + (0 if n < 126 else 2 if n < 0x10000 else 8) + (4 if masked else 0)


async def deliver(peer: Peer, frame: bytes, n: int, delivery: str) -> None:
    """Write one frame as ``delivery`` says: whole, in 997-byte chops, byte by byte, or with
    its header byte by byte and the payload whole."""
    if delivery == "one-write":
        await peer.send_raw(frame)
    elif delivery == "chops-997":
        await peer.send_raw(frame, chunk=997)
    elif delivery == "bytewise":
        await peer.send_raw(frame, chunk=1)
    else:
        head = header_length(n, peer.masks)
        await peer.send_raw(frame[:head], chunk=1)
        await peer.send_raw(frame[head:])


def _echo_table() -> list[tuple[str, Any]]:
    table = []
    for kind, opcode in KINDS.items():
        for n in LENGTHS:
            deliveries = ["one-write", "chops-997", "header-bytewise"]
            if n <= 300:
                deliveries.append("bytewise")
            for delivery in deliveries:
                table.append((f"{kind}-{n}-{delivery}", (opcode, n, delivery)))
    return table


@pytest.mark.parametrize(CASE_ARGS, cases(_echo_table()))
def test_echo_every_length_class(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.2: 7-bit, 16-bit and 64-bit lengths at their boundaries, however the bytes arrive;
    the echo is one frame of the same opcode and payload, then a clean close."""
    opcode, n, delivery = case

    async def scenario(peer: Peer) -> None:
        data = payload(opcode, n)
        await deliver(peer, peer.frame(opcode, data), n, delivery)
        await peer.expect(opcode, data)
        await peer.close_handshake()

    play(role, scenario)


BIG = [
    ("text-1MiB", (TEXT, 1 << 20, None)),
    ("binary-1MiB", (BINARY, 1 << 20, None)),
    ("text-4MiB-in-64KiB-fragments", (TEXT, 4 << 20, 64 << 10)),
    ("binary-4MiB-in-4KiB-fragments", (BINARY, 4 << 20, 4 << 10)),
    ("text-16MiB", (TEXT, 16 << 20, None)),
    ("binary-16MiB", (BINARY, 16 << 20, None)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(BIG, uvloop_every=0))
def test_big_messages(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.2 64-bit lengths and §5.4 reassembly at Autobahn section 9 sizes (up to 16 MiB), with
    max_message_size raised to fit."""
    opcode, n, fragment = case

    async def scenario(peer: Peer) -> None:
        data = payload(opcode, n)
        if fragment is None:
            await peer.send(opcode, data)
        else:
            frames = []
            for i in range(0, n, fragment):
                frames.append(peer.frame(opcode if i == 0 else 0, data[i : i + fragment],
                                         fin=i + fragment >= n))
            await peer.send_raw(b"".join(frames))
        await peer.expect_message(opcode, data)
        await peer.close_handshake()

    play(role, scenario, max_message_size=16 << 20, timeout=60)


PIPELINE = [
    ("50-messages-one-write", (50, None)),
    ("50-messages-chops-7", (50, 7)),
    ("50-messages-bytewise", (50, 1)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(PIPELINE, uvloop_every=1))
def test_pipelined_messages(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.2: frames follow each other without delimiters; many messages in one read, or cut at
    arbitrary points, are all echoed in order."""
    count, chunk = case

    async def scenario(peer: Peer) -> None:
        messages = [(TEXT if i % 2 else BINARY, payload(TEXT, i * 3)) for i in range(count)]
        await peer.send_raw(b"".join(peer.frame(op, data) for op, data in messages), chunk=chunk)
        for op, data in messages:
            await peer.expect(op, data)
        await peer.close_handshake()

    play(role, scenario)


def _masking_table() -> list[tuple[str, Any]]:
    table = []
    for name, opcode, body in (("text", TEXT, b"hello"), ("binary", BINARY, b"\x00\xff"),
                               ("ping", PING, b"ping"), ("close", CLOSE, close_payload(1000))):
        table.append((f"wrong-mask-{name}", (opcode, body)))
    return table


@pytest.mark.parametrize(CASE_ARGS, cases(_masking_table(), uvloop_every=2))
def test_wrong_masking_fails(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.1: a server MUST close on an unmasked frame from its client, a client MUST close on
    a masked frame from its server; both with 1002 (§7.4.1) and nothing else sent."""
    opcode, body = case

    async def scenario(peer: Peer) -> None:
        await peer.send(opcode, body, mask=not peer.masks)
        await peer.expect_failure(1002)

    play(role, scenario)


def test_client_masking_keys_are_fresh(play: Play) -> None:
    """§5.3: the client picks a fresh masking key for each frame, "derived from a strong source
    of entropy": 200 frames, 200 different keys."""

    async def scenario(peer: Peer) -> None:
        for i in range(100):
            await peer.send(PING, b"%d" % i)
            await peer.expect(PONG, b"%d" % i)
            await peer.send(TEXT, b"%d" % i)
            await peer.expect(TEXT, b"%d" % i)
        assert len(set(peer.mask_keys)) == len(peer.mask_keys) == 200

    play("client", scenario)


NON_MINIMAL = [
    ("length-5-in-16-bits", (5, 2)),
    ("length-125-in-16-bits", (125, 2)),
    ("length-5-in-64-bits", (5, 8)),
    ("length-65535-in-64-bits", (65535, 8)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(NON_MINIMAL, uvloop_every=0))
def test_non_minimal_length_fails(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.2: "the minimal number of bytes MUST be used to encode the length"; wskit treats a
    frame that breaks it as a protocol error (1002)."""
    n, length_bytes = case

    async def scenario(peer: Peer) -> None:
        await peer.send(BINARY, bytes(n), length_bytes=length_bytes)
        await peer.expect_failure(1002)

    play(role, scenario)


def test_64_bit_length_with_top_bit_fails(play: Play, role: str) -> None:
    """§5.2: the most significant bit of a 64-bit length MUST be 0 (1002, before any payload)."""

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(peer.frame(BINARY, b"", length=1 << 63, length_bytes=8))
        await peer.expect_failure(1002)

    play(role, scenario)

