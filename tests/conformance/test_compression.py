"""Compression: RFC 7692 §7 (negotiating permessage-deflate and its parameters), §7.1.1 and
§7.1.2 (context takeover and window sizes, which both sides must keep to), §7.2 (compressed
payloads: tail removed, RSV1 on the first frame only, uncompressed messages allowed), §6.1
(RSV1 on a control frame or a continuation, or without negotiation, fails with 1002) and
RFC 6455 §10.4 (a message inflating past max_message_size fails with 1009).

Autobahn sections 12 (messages of many sizes, compressed) and 13 (the same under each set of
negotiated parameters), for wskit as server (``App(compression="deflate")``) and as client
(``connect(compression="deflate")``). The peer inflates wskit's messages with exactly the
window and context that were agreed.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CONT, PING, PONG, TEXT, Peer
from .tables import CASE_ARGS, cases

Play = Callable[..., None]

#: The wskit client offers "permessage-deflate; client_max_window_bits"; the raw server answers.
DEFAULT_ANSWER = "permessage-deflate"


def deflate_options(role: str, negotiation: str | None = None) -> dict[str, Any]:
    if role == "server":
        return {"compression": "deflate", "offer": negotiation or "permessage-deflate"}
    return {"compression": "deflate", "answer": negotiation or DEFAULT_ANSWER}


async def send_compressed(peer: Peer, opcode: int, data: bytes, *, fragments: int = 1,
                          final_block: bool = False) -> None:
    assert peer.deflate is not None, "permessage-deflate was not negotiated"
    payload = peer.deflate.compress(data, final_block=final_block)
    size = max(1, -(-len(payload) // fragments))
    parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    last = len(parts) - 1
    await peer.send_raw(b"".join(
        peer.frame(opcode if i == 0 else CONT, part, fin=i == last, rsv=4 if i == 0 else 0)
        for i, part in enumerate(parts)))


def text_payload(n: int, seed: int = 0) -> bytes:
    words = [b"alpha", b"beta", b"gamma", "δέλτα".encode(), b"epsilon", "😀".encode()]
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    # Cut on a character boundary.
    return bytes(out[:n]).decode("utf-8", "ignore").encode()


def binary_payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072]


def _sizes_table() -> list[tuple[str, Any]]:
    return [(f"{kind}-{n}-bytes-x10", (kind, n)) for kind in ("text", "binary") for n in SIZES]


@pytest.mark.parametrize(CASE_ARGS, cases(_sizes_table(), uvloop_every=4))
def test_compressed_echo(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """RFC 7692 §7.2: ten compressed messages of each size, in one connection (so the context
    carries over), each echoed intact; wskit's replies inflate with the agreed window
    (Autobahn 12.1-12.5)."""
    kind, n = case
    opcode = TEXT if kind == "text" else BINARY

    async def scenario(peer: Peer) -> None:
        for i in range(10):
            data = text_payload(n, i) if kind == "text" else binary_payload(n, i)
            await send_compressed(peer, opcode, data)
            compressed = await peer.expect_message(opcode, data)
            # wskit sends messages under 32 bytes as they are (RFC 7692 §6 allows it), and
            # those that would not shrink: random bytes never do.
            assert compressed == (n >= 32 and kind == "text"), f"compressed: {compressed}"
        await peer.close_handshake()

    play(role, scenario, **deflate_options(role))


SERVER_OFFERS = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_max_window_bits=9",
    "permessage-deflate; client_max_window_bits=15",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=15",
    # RFC 7692 §7.1.2.1: 8 is a valid window; wskit must stay within 256 bytes.
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    "server_max_window_bits=9; client_max_window_bits=9",
    "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10",
    "permessage-deflate; unknown_parameter, permessage-deflate; client_max_window_bits",
]

CLIENT_ANSWERS = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits=9",
    "permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; client_max_window_bits=15",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=12",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    "server_max_window_bits=9; client_max_window_bits=9",
]


def _label(header: str) -> str:
    return header.replace("permessage-deflate", "pmd").replace("; ", "+").replace(", ", "/") \
        .replace("_max_window_bits", "-bits").replace("_no_context_takeover", "-nct")


def _negotiation_table() -> list[Any]:
    params = []
    for role, headers in (("server", SERVER_OFFERS), ("client", CLIENT_ANSWERS)):
        for header in headers:
            for loop_kind in ("asyncio", "uvloop") if header == headers[0] else ("asyncio",):
                suffix = "-uvloop" if loop_kind == "uvloop" else ""
                params.append(pytest.param(role, header, loop_kind,
                                           id=f"{role}-{_label(header)}{suffix}"))
    return params


@pytest.mark.parametrize(CASE_ARGS, _negotiation_table())
def test_negotiated_parameters_kept(play: Play, role: str, case: str, loop_kind: str) -> None:
    """RFC 7692 §7.1: each offer (server role) or answer (client role) is negotiated; then
    both directions keep to it: the peer compresses as agreed and inflates wskit's messages
    with the agreed window, dropping its context when wskit agreed not to use it
    (Autobahn 13.1-13.7)."""

    async def scenario(peer: Peer) -> None:
        assert peer.deflate is not None, f"not negotiated: {peer.handshake_headers}"
        if role == "server":
            # RFC 7692 §7.1.2.1: a server_max_window_bits offer is answered with no more.
            asked = "server_max_window_bits=9" in case
            assert not asked or peer.deflate.other_bits <= 9, peer.handshake_headers
        for i in range(6):
            # The binary repeats 2000 bytes back (beyond small windows) and 100 bytes back,
            # so it shrinks with any window and is sent compressed.
            data = (text_payload(3000, i) if i % 2
                    else binary_payload(2000, i) * 2 + binary_payload(100, i) * 20)
            opcode = TEXT if i % 2 else BINARY
            await send_compressed(peer, opcode, data)
            # wskit compresses what it sends (above its 32-byte minimum), so the window and
            # context it agreed to are put to the test.
            assert await peer.expect_message(opcode, data), "wskit's echo was not compressed"
        await peer.send(TEXT, b"uncompressed")
        await peer.expect_message(TEXT, b"uncompressed")
        await peer.close_handshake()

    play(role, scenario, **deflate_options(role, case))


VALID_VARIANTS = {
    # RFC 7692 §6: RSV1 clear means the message is not compressed, even when negotiated.
    "uncompressed-message": lambda peer: peer.send(TEXT, b"plain text, not compressed"),
    "compressed-in-5-fragments": lambda peer: send_compressed(peer, TEXT, text_payload(5000),
                                                              fragments=5),
    "compressed-in-1-byte-fragments": lambda peer: send_compressed(peer, BINARY, b"a" * 300,
                                                                   fragments=10_000),
    # §7.2.3.4: a sender may end the deflate stream with a final block.
    "final-block-bfinal": lambda peer: send_compressed(peer, TEXT, text_payload(500),
                                                       final_block=True),
}

EXPECTED = {
    "uncompressed-message": (TEXT, b"plain text, not compressed"),
    "compressed-in-5-fragments": (TEXT, text_payload(5000)),
    "compressed-in-1-byte-fragments": (BINARY, b"a" * 300),
    "final-block-bfinal": (TEXT, text_payload(500)),
}


@pytest.mark.parametrize(CASE_ARGS, cases([(k, k) for k in VALID_VARIANTS], uvloop_every=2))
def test_compressed_message_variants(play: Play, role: str, case: str, loop_kind: str) -> None:
    """RFC 7692 §6, §7.2: uncompressed messages, compressed messages in fragments (RSV1 on the
    first only), a stream ended by BFINAL: all echoed, and the connection goes on."""

    async def scenario(peer: Peer) -> None:
        await VALID_VARIANTS[case](peer)
        opcode, data = EXPECTED[case]
        await peer.expect_message(opcode, data)
        await send_compressed(peer, TEXT, b"next message " * 10)
        await peer.expect_message(TEXT, b"next message " * 10)
        await peer.close_handshake()

    play(role, scenario, **deflate_options(role))


def _rsv_on_continuation(peer: Peer) -> bytes:
    assert peer.deflate is not None
    payload = peer.deflate.compress(b"hello hello hello hello")
    return (peer.frame(TEXT, payload[:5], fin=False, rsv=4)
            + peer.frame(CONT, payload[5:], rsv=4))


def _corrupt(peer: Peer) -> bytes:
    return peer.frame(BINARY, b"\xff\xff\xff\xff garbage", rsv=4)


def _after_final_block(peer: Peer) -> bytes:
    data = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = data.compress(b"abc") + data.flush(zlib.Z_FINISH)
    return peer.frame(BINARY, payload + b"extra bytes", rsv=4)


def _bad_utf8(peer: Peer) -> bytes:
    assert peer.deflate is not None
    return peer.frame(TEXT, peer.deflate.compress(b"valid then \xed\xa0\x80 invalid"), rsv=4)


BROKEN = {
    # RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
    "rsv1-on-continuation": (_rsv_on_continuation, 1002),
    # §6.1 and RFC 6455 §5.5: never on a control frame.
    "rsv1-on-ping": (lambda peer: peer.frame(PING, b"ping", rsv=4), 1002),
    "rsv1-on-close": (lambda peer: peer.frame(0x8, b"\x03\xe8", rsv=4), 1002),
    # RFC 6455 §5.2: permessage-deflate defines RSV1 only.
    "rsv2-on-text": (lambda peer: peer.frame(TEXT, b"x", rsv=2), 1002),
    "rsv1-rsv3-on-text": (lambda peer: peer.frame(TEXT, b"x", rsv=5), 1002),
    # Data that does not inflate; data after the final block.
    "corrupt-deflate-data": (_corrupt, 1002),
    "data-after-final-block": (_after_final_block, 1002),
    # RFC 6455 §8.1 after inflating.
    "invalid-utf8-once-inflated": (_bad_utf8, 1007),
}


@pytest.mark.parametrize(CASE_ARGS, cases([(k, k) for k in BROKEN], uvloop_every=3))
def test_broken_compressed_frames_fail(play: Play, role: str, case: str, loop_kind: str) -> None:
    """RFC 7692 §6.1: misplaced reserved bits fail with 1002; data that cannot be inflated
    fails with 1002 (a protocol error: RFC 7692 names no code); inflated text that is not
    UTF-8 fails with 1007."""
    build, code = BROKEN[case]

    async def scenario(peer: Peer) -> None:
        await send_compressed(peer, TEXT, b"first message " * 5)
        await peer.expect_message(TEXT, b"first message " * 5)
        await peer.send_raw(build(peer))
        await peer.expect_failure(code)

    play(role, scenario, **deflate_options(role))


def test_rsv1_without_negotiation_fails(play: Play, role: str) -> None:
    """RFC 7692 §6.1, RFC 6455 §5.2: without permessage-deflate negotiated (the peer offered
    it, wskit has compression=None), a compressed frame with RSV1 fails with 1002."""

    async def scenario(peer: Peer) -> None:
        assert peer.deflate is None
        data = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = data.compress(b"hello") + data.flush(zlib.Z_SYNC_FLUSH)
        await peer.send_raw(peer.frame(TEXT, payload[:-4], rsv=4))
        await peer.expect_failure(1002)

    options = {"offer": "permessage-deflate"} if role == "server" else {}
    play(role, scenario, compression=None, **options)


BOMBS = [
    ("bomb-16MiB-of-zeros-one-frame", (16 << 20, 1)),
    ("bomb-16MiB-of-zeros-in-64-fragments", (16 << 20, 64)),
    ("just-over-limit-1MiB-plus-1", ((1 << 20) + 1, 1)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(BOMBS, uvloop_every=3))
def test_compression_bomb_fails_with_1009(play: Play, role: str, case: Any,
                                          loop_kind: str) -> None:
    """RFC 6455 §10.4, §7.4.1 with the default 1 MiB limit: a small compressed message that
    inflates past the limit fails with 1009 (when fragmented: at the fragment that crosses)."""
    n, fragments = case

    async def scenario(peer: Peer) -> None:
        assert peer.deflate is not None
        payload = peer.deflate.compress(b"\x00" * n)
        size = -(-len(payload) // fragments)
        parts = [payload[i : i + size] for i in range(0, len(payload), size)]
        frames = [peer.frame(BINARY if i == 0 else CONT, part, fin=i == len(parts) - 1,
                             rsv=4 if i == 0 else 0) for i, part in enumerate(parts)]
        if fragments == 1:
            await peer.send_raw(frames[0])
        else:
            # The limit is crossed about 1/16 of the way: the rest must not be needed.
            await peer.send_raw(b"".join(frames[: len(frames) // 2]))
        await peer.expect_failure(1009)

    play(role, scenario, **deflate_options(role))


def test_compressed_message_at_the_limit(play: Play, role: str) -> None:
    """RFC 6455 §10.4: a compressed message inflating to exactly max_message_size is taken."""

    async def scenario(peer: Peer) -> None:
        data = b"\x00" * (1 << 20)
        await send_compressed(peer, BINARY, data)
        await peer.expect_message(BINARY, data)
        await peer.close_handshake()

    play(role, scenario, **deflate_options(role))


def test_ping_between_compressed_fragments(play: Play, role: str) -> None:
    """RFC 6455 §5.4 with RFC 7692: a Ping between the fragments of a compressed message is
    answered first, and the message still inflates whole."""

    async def scenario(peer: Peer) -> None:
        assert peer.deflate is not None
        data = text_payload(2000)
        payload = peer.deflate.compress(data)
        half = len(payload) // 2
        await peer.send_raw(peer.frame(TEXT, payload[:half], fin=False, rsv=4)
                            + peer.frame(PING, b"between")
                            + peer.frame(CONT, payload[half:]))
        await peer.expect(PONG, b"between")
        await peer.expect_message(TEXT, data)
        await peer.close_handshake()

    play(role, scenario, **deflate_options(role))
