"""UTF-8 handling: RFC 6455 §5.6 (a text message's payload is UTF-8), §8.1 (an endpoint that
receives invalid UTF-8 in a text message MUST fail the connection, with 1007 per §7.4.1, and
may do so as soon as the bytes cannot be valid: checked here as a MUST of "fail fast"), and
RFC 3629 §4 (what is valid UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF).

Autobahn section 6, for wskit as server and as client: every sequence whole, split across two
fragments at every byte offset, and one byte per fragment; invalid text must fail at the
fragment (or the read) that holds the first bad byte, before the message ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .peer import BINARY, CONT, PING, PONG, TEXT, Peer, open_peer
from .tables import CASE_ARGS, cases
from .utf8_tables import INVALID, VALID, first_invalid

Play = Callable[..., None]
Run = Callable[..., Any]


async def alive(peer: Peer, tag: bytes = b"alive") -> None:
    """A Ping answered with nothing before its Pong: wskit has not failed, and sent nothing."""
    await peer.send(PING, tag)
    await peer.expect(PONG, tag)


@pytest.mark.parametrize(CASE_ARGS, cases(VALID.items()))
def test_valid_text_echoed(play: Play, role: str, case: bytes, loop_kind: str) -> None:
    """§5.6, RFC 3629: valid UTF-8, 4-byte characters and noncharacters included, is echoed
    byte for byte (Autobahn 6.1, 6.2, 6.5-6.7, 6.11, 6.22, 6.23)."""

    async def scenario(peer: Peer) -> None:
        await peer.send(TEXT, case)
        await peer.expect(TEXT, case)
        await peer.close_handshake()

    play(role, scenario)


SPLITTABLE = [(name, data) for name, data in VALID.items() if len(data) >= 2]


@pytest.mark.parametrize(CASE_ARGS, cases(SPLITTABLE))
def test_valid_text_split_at_every_byte(play: Play, role: str, case: bytes,
                                        loop_kind: str) -> None:
    """§5.4, §8.1: a character cut between fragments at any byte offset, or one byte per
    fragment, is still valid and echoed intact (Autobahn 6.2.2-6.2.4, 6.6)."""

    async def scenario(peer: Peer) -> None:
        for i in range(1, len(case)):
            await peer.send_raw(peer.frame(TEXT, case[:i], fin=False)
                                + peer.frame(CONT, case[i:]))
            await peer.expect(TEXT, case)
        last = len(case) - 1
        await peer.send_raw(b"".join(peer.frame(TEXT if i == 0 else CONT, case[i : i + 1],
                                                fin=i == last) for i in range(len(case))))
        await peer.expect(TEXT, case)
        await peer.close_handshake()

    play(role, scenario)


@pytest.mark.parametrize(CASE_ARGS, cases(INVALID.items()))
def test_invalid_text_fails_with_1007(play: Play, role: str, case: bytes,
                                      loop_kind: str) -> None:
    """§8.1: invalid UTF-8 in a text message fails the connection with 1007 and nothing is
    echoed (Autobahn 6.3.1, 6.8-6.21)."""

    async def scenario(peer: Peer) -> None:
        await peer.send(TEXT, case)
        await peer.expect_failure(1007)

    play(role, scenario)


def test_invalid_utf8_in_binary_is_echoed(play: Play, role: str) -> None:
    """§5.6: binary data is not UTF-8 checked."""

    async def scenario(peer: Peer) -> None:
        for data in INVALID.values():
            await peer.send(BINARY, data)
            await peer.expect(BINARY, data)
        await peer.close_handshake()

    play(role, scenario)


def _offsets(data: bytes) -> list[int]:
    """Every split offset for short sequences; around the first bad byte for long ones."""
    if len(data) <= 24:
        return list(range(1, len(data)))
    bad = first_invalid(data) or len(data) - 1
    return sorted({*range(1, 6), *range(max(1, bad - 2), min(len(data), bad + 3)), len(data) - 1})


@pytest.mark.parametrize(CASE_ARGS, cases(INVALID.items(), uvloop_every=12))
def test_invalid_text_split_at_every_byte_fails_fast(run: Run, role: str, case: bytes,
                                                     loop_kind: str) -> None:
    """§8.1, §5.4: the sequence split in two fragments at each offset: if the first fragment
    already holds a bad byte, 1007 comes before the second is sent; if not, the connection is
    still alive (a Ping is answered) and 1007 comes after the last fragment (Autobahn 6.3.2)."""

    async def one_split(i: int) -> None:
        async with open_peer(role) as peer:
            await peer.send(TEXT, case[:i], fin=False)
            if first_invalid(case[:i]) is None:
                await alive(peer)
                await peer.send(CONT, case[i:])
            await peer.expect_failure(1007)

    async def main() -> None:
        for i in _offsets(case):
            await one_split(i)

    run(main(), 60)


@pytest.mark.parametrize(CASE_ARGS, cases(INVALID.items(), uvloop_every=12))
def test_invalid_text_one_byte_per_fragment_fails_at_the_bad_byte(
        play: Play, role: str, case: bytes, loop_kind: str) -> None:
    """§8.1: one byte per fragment, each followed by a Ping: Pongs come back while the bytes
    so far can still be valid UTF-8; the fragment with the first bad byte gets 1007 at once
    (or the last fragment, for a sequence truncated at the end)."""
    bad = first_invalid(case)
    stop = len(case) - 1 if bad is None else bad

    async def scenario(peer: Peer) -> None:
        for i in range(stop + 1):
            await peer.send(TEXT if i == 0 else CONT, case[i : i + 1], fin=i == len(case) - 1)
            if i < stop:
                await alive(peer, b"%d" % i)
        await peer.expect_failure(1007)

    play(role, scenario)


#: Autobahn 6.4.1 / 6.4.2: valid first part, the part that makes it invalid, the rest.
FAIL_FAST = [
    ("U+110000-in-middle-fragment",
     ("κόσμε".encode(), b"\xf4\x90\x80\x80", b"edited")),
    ("U+110000-second-byte-alone",
     ("κόσμε".encode() + b"\xf4", b"\x90", b"\x80\x80edited")),
    ("surrogate-second-byte-alone",
     ("κόσμε".encode() + b"\xed", b"\xa0", b"\x80edited")),
    ("overlong-second-byte-alone",
     (b"abc\xe0", b"\x80", b"\x80edited")),
    ("stray-continuation-alone", (b"abc", b"\x80", b"def")),
]


@pytest.mark.parametrize(CASE_ARGS, cases(FAIL_FAST, uvloop_every=2))
def test_fail_fast_across_frames(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§8.1: three fragments; after the first the connection is alive, the second (FIN=0)
    makes the text invalid and must get 1007 before the third is sent (Autobahn 6.4.1, 6.4.2)."""
    part1, part2, part3 = case

    async def scenario(peer: Peer) -> None:
        await peer.send(TEXT, part1, fin=False)
        await alive(peer)
        await peer.send(CONT, part2, fin=False)
        await peer.expect_failure(1007)
        await peer.send(CONT, part3)

    play(role, scenario)


@pytest.mark.parametrize(CASE_ARGS, cases(FAIL_FAST, uvloop_every=2))
def test_fail_fast_inside_one_frame(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§8.1: the same bytes as three chops of ONE frame: the chop with the bad byte must get
    1007 before the frame is complete (Autobahn 6.4.3, 6.4.4)."""
    part1, part2, part3 = case

    async def scenario(peer: Peer) -> None:
        frame = peer.frame(TEXT, part1 + part2 + part3)
        cut1 = len(frame) - len(part2) - len(part3)
        cut2 = len(frame) - len(part3)
        await peer.send_raw(frame[:cut1])
        await peer.expect_open(0.05)
        await peer.send_raw(frame[cut1:cut2])
        await peer.expect_failure(1007)
        await peer.send_raw(frame[cut2:])

    play(role, scenario)


INSIDE_FRAME = ["header-bytewise", "in-continuation-frame", "bad-byte-in-first-64KiB-of-1MiB"]


@pytest.mark.parametrize(CASE_ARGS, cases([(v, v) for v in INSIDE_FRAME], uvloop_every=1))
def test_fail_fast_inside_one_frame_variants(play: Play, role: str, case: str,
                                             loop_kind: str) -> None:
    """§8.1 inside one frame: with the header (and mask key) arriving byte by byte, inside the
    final CONT frame of a fragmented text, and in a 1 MiB frame whose first read is bad."""

    async def scenario(peer: Peer) -> None:
        if case == "header-bytewise":
            frame = peer.frame(TEXT, b"abc\xf4\x90\x80\x80def")
            head = 6 if peer.masks else 2
            await peer.send_raw(frame[:head], chunk=1)
            await peer.send_raw(frame[head : head + 3], chunk=1)
            await peer.expect_open(0.02)
            await peer.send_raw(frame[head + 3 : head + 5])
            await peer.expect_failure(1007)
        elif case == "in-continuation-frame":
            await peer.send(TEXT, b"abc\xe2", fin=False)
            await alive(peer)
            frame = peer.frame(CONT, b"\x82\xac \xed\xa0\x80 rest")
            await peer.send_raw(frame[: len(frame) - 4])
            await peer.expect_failure(1007)
        else:
            data = b"x" * 1000 + b"\xc0\xaf" + b"y" * ((1 << 20) - 1002)
            frame = peer.frame(TEXT, data)
            await peer.send_raw(frame[: 64 << 10])
            await peer.expect_failure(1007)
            await peer.send_raw(frame[64 << 10 :])

    play(role, scenario, max_message_size=2 << 20)
