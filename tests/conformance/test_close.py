"""The closing handshake: RFC 6455 §5.5.1 (a Close body is empty or a 2-byte code and a UTF-8
reason; a Close is answered by a Close, echoing the code; nothing is sent after one's Close),
§7.1.1-§7.1.5 (the server closes TCP first; a client waits for it, within a timeout), §7.1.7
(failing the connection), §7.4.1-§7.4.2 (which codes may be sent: 1000-1003, 1007-1014 and
3000-4999; never 0-999, 1004-1006, 1015, 1016-2999 or 5000 and above) and §8.1 (the reason is
UTF-8, else 1007).

Autobahn section 7, for wskit as server and as client, including every code from 0 to 5000.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest

from .peer import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Peer,
    close_payload,
    finish,
    open_endpoint,
)
from .tables import CASE_ARGS, cases
from .utf8_tables import INVALID

Play = Callable[..., None]
Run = Callable[..., Any]


def valid_code(code: int) -> bool:
    """RFC 6455 §7.4.1/§7.4.2 and the IANA registry: the codes a peer may put in a Close."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


CODES = [0, 1, 999, *range(1000, 1017), 1100, 2000, 2999, 3000, 3001, 3999, 4000, 4001, 4998,
         4999, 5000, 5001, 65535]


def _code_table() -> list[tuple[str, int]]:
    return [(f"close-code-{code}-{'valid' if valid_code(code) else 'invalid'}", code)
            for code in CODES]


@pytest.mark.parametrize(CASE_ARGS, cases(_code_table()))
def test_close_code(play: Play, role: str, case: int, loop_kind: str) -> None:
    """§7.4: a valid code is echoed in the answering Close (then the server drops TCP, the
    client waits for it); an invalid one fails with 1002 (Autobahn 7.7.x, 7.9.x, 7.13.x)."""

    async def scenario(peer: Peer) -> None:
        if valid_code(case):
            await peer.close_handshake(case)
        else:
            await peer.send_close(case)
            await peer.expect_failure(1002)

    play(role, scenario)


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_every_close_code_0_to_5000(run: Run, role: str, loop_kind: str) -> None:
    """§7.4: every code from 0 to 5000, each on its own connection, 32 at a time."""

    async def one(endpoint: Any, code: int) -> None:
        peer = await endpoint.connect()
        try:
            if valid_code(code):
                await peer.close_handshake(code)
            else:
                await peer.send_close(code)
                await peer.expect_failure(1002)
        except AssertionError as exc:
            raise AssertionError(f"close code {code}: {exc}") from None
        finally:
            await finish(peer)

    async def main() -> None:
        async with open_endpoint(role) as endpoint:
            for start in range(0, 5001, 32):
                await asyncio.gather(*(one(endpoint, code)
                                       for code in range(start, min(start + 32, 5001))))

    run(main(), 90)


REASONS = [
    ("reason-ascii", b"bye"),
    ("reason-4-byte-characters", "adieu 😀 𐍈".encode()),
    ("reason-123-bytes", b"r" * 123),
    ("reason-123-bytes-multibyte", "é".encode() * 61 + b"x"),
]


@pytest.mark.parametrize(CASE_ARGS, cases(REASONS, uvloop_every=2))
def test_close_reason_accepted(play: Play, role: str, case: bytes, loop_kind: str) -> None:
    """§5.5.1: a code with a UTF-8 reason, up to the 125-byte control frame limit, is accepted;
    the code is echoed and wskit reports the reason (Autobahn 7.3.4, 7.3.5)."""

    async def scenario(peer: Peer) -> None:
        await peer.close_handshake(1000, case)
        assert peer.ws.close_reason == case.decode()

    play(role, scenario)


BAD_BODIES = [
    ("one-byte-body", (b"\x03", 1002)),
    ("reason-124-bytes-body-126", (close_payload(1000, b"r" * 124), 1002)),
    *((f"reason-invalid-utf8-{name}", (close_payload(1000, data), 1007))
      for name, data in INVALID.items()
      if name.startswith(("kosme", "overlong-2", "surrogate-U+D800", "U+110000", "byte-FF",
                          "continuation-80", "truncated-3-byte-after-2"))),
]


@pytest.mark.parametrize(CASE_ARGS, cases(BAD_BODIES, uvloop_every=3))
def test_bad_close_body_fails(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.5.1: a 1-byte body fails with 1002 (Autobahn 7.3.2), a body over 125 bytes with 1002
    (7.3.6), a reason that is not UTF-8 with 1007 (7.5.1)."""
    body, code = case

    async def scenario(peer: Peer) -> None:
        await peer.send(CLOSE, body)
        await peer.expect_failure(code)

    play(role, scenario)


def test_empty_close_answered_with_empty_close(play: Play, role: str) -> None:
    """§5.5.1, §7.1.5: a Close without a body is answered by one without a body; wskit reports
    1005 (Autobahn 7.3.1)."""

    async def scenario(peer: Peer) -> None:
        await peer.close_handshake(None)

    play(role, scenario)


AFTER_CLOSE = {
    # Autobahn 7.1.2-7.1.4: nothing after the peer's Close is processed.
    "close-twice": [(CLOSE, close_payload(1000))],
    "ping-after-close": [(PING, b"after")],
    "text-after-close": [(TEXT, b"after")],
    "binary-after-close": [(BINARY, b"after")],
    "pong-after-close": [(PONG, b"after")],
    "bad-frame-after-close": [(0x3, b"reserved opcode")],
    "invalid-utf8-after-close": [(TEXT, b"\xff")],
}


def _after_close_table() -> list[tuple[str, Any]]:
    return [(f"{name}-{mode}", (name, mode)) for name in AFTER_CLOSE
            for mode in ("one-write", "separate-writes")]


@pytest.mark.parametrize(CASE_ARGS, cases(_after_close_table(), uvloop_every=3))
def test_frames_after_close_ignored(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§5.5.1, §7.1.7: after the peer's Close, wskit answers it once and ignores everything
    that follows: no echo, no Pong, no second Close, no failure."""
    name, mode = case

    async def scenario(peer: Peer) -> None:
        close = peer.frame(CLOSE, close_payload(1000))
        after = b"".join(peer.frame(op, data) for op, data in AFTER_CLOSE[name])
        if mode == "one-write":
            await peer.send_raw(close + after)
            await peer.expect_close(1000)
        else:
            await peer.send_raw(close)
            await peer.expect_close(1000)
            await peer.send_raw(after)
        await peer.finish_after_close(1000)

    play(role, scenario)


def test_message_then_close_in_one_write(play: Play, role: str) -> None:
    """§5.5.1: a message followed by a Close in the same read is echoed before the Close
    answer (Autobahn 7.1.1 with both frames in one TCP segment)."""

    async def scenario(peer: Peer) -> None:
        await peer.send_raw(peer.frame(TEXT, b"Hello World!") + peer.frame(CLOSE,
                                                                          close_payload(1000)))
        await peer.expect(TEXT, b"Hello World!")
        await peer.expect_close(1000)
        await peer.finish_after_close(1000)

    play(role, scenario)


def test_big_message_text_close_ping(play: Play, role: str) -> None:
    """§5.5.1: 256 KiB, a text, a Close and a Ping back to back: both messages are echoed, then
    the Close is answered; the Ping after it gets no Pong (Autobahn 7.1.6, strict outcome)."""

    async def scenario(peer: Peer) -> None:
        big = b"BAsd7&jh23" * (256 * 1024 // 10)
        await peer.send_raw(peer.frame(TEXT, big) + peer.frame(TEXT, b"Hello World!")
                            + peer.frame(CLOSE, close_payload(1000)) + peer.frame(PING))
        await peer.expect(TEXT, big)
        await peer.expect(TEXT, b"Hello World!")
        await peer.expect_close(1000)
        await peer.finish_after_close(1000)

    play(role, scenario)


def start_close(peer: Peer, code: int = 1000, reason: str = "") -> asyncio.Future[None]:
    return asyncio.ensure_future(peer.ws.close(code, reason))


def test_wskit_initiated_close_answered(play: Play, role: str) -> None:
    """§7.1.2, §7.1.1: wskit's ``close()`` sends its Close; once answered, a server closes TCP at
    once, a client waits for the server to do so; both report the code."""

    async def scenario(peer: Peer) -> None:
        closing = start_close(peer, 4000, "done")
        frame = await peer.expect_close(4000)
        assert frame.payload[2:] == b"done"
        await peer.send_close(4000)
        if role == "client":
            await peer.expect_open(0.1)
        await peer.finish_after_close(4000)
        await asyncio.wait_for(closing, 1.0)

    play(role, scenario)


def test_peer_never_answers_close(play: Play, role: str) -> None:
    """§7.1.1, §7.1.7: a peer that never answers wskit's Close is dropped after close_timeout
    (0.3 s here), not before, not much later; wskit reports 1006."""

    async def scenario(peer: Peer) -> None:
        closing = start_close(peer)
        await peer.expect_close(1000)
        waited = await peer.expect_eof(within=1.5)
        assert 0.25 <= waited <= 1.0, f"dropped after {waited:.3f} s, close_timeout is 0.3 s"
        await asyncio.wait_for(closing, 1.0)
        await peer.wskit_closed(1006)

    play(role, scenario, close_timeout=0.3)


def test_client_waits_for_server_to_close_tcp(play: Play) -> None:
    """§7.1.1: after the closing handshake the client leaves closing TCP to the server (it
    does not drop first), and only after close_timeout does it drop a server that never does."""

    async def scenario(peer: Peer) -> None:
        await peer.send_close(1000)
        await peer.expect_close(1000)
        await peer.expect_open(0.15)
        waited = await peer.expect_eof(within=1.5)
        assert waited <= 0.5, f"dropped after {waited + 0.15:.3f} s, close_timeout is 0.3 s"
        await peer.wskit_closed(1000)

    play("client", scenario, close_timeout=0.3)


def test_server_closes_tcp_even_if_client_keeps_it(play: Play) -> None:
    """§7.1.1: the server closes TCP right after answering the client's Close, without waiting
    for the client (Autobahn's "the server should close the TCP connection")."""

    async def scenario(peer: Peer) -> None:
        await peer.send_close(1000)
        await peer.expect_close(1000)
        waited = await peer.expect_eof(within=1.0)
        assert waited < 0.2, f"server closed TCP after {waited:.3f} s"
        await peer.wskit_closed(1000)

    play("server", scenario, close_timeout=5.0)


def test_tcp_dropped_without_close(play: Play, role: str) -> None:
    """§7.1.5: a connection closed without a Close frame ends with 1006."""

    async def scenario(peer: Peer) -> None:
        await peer.send(TEXT, b"hi")
        await peer.expect(TEXT, b"hi")
        peer.wire.close()
        await peer.wskit_closed(1006)

    play(role, scenario)


def test_after_wskit_close_pings_answered_data_not(play: Play, role: str) -> None:
    """§5.5.1: once wskit has sent its Close it sends no data frame (no echo), but §5.5.2 still
    owes a Pong to a Ping ("unless it already received a Close frame"); the peer's Close then
    completes the handshake."""

    def quiet_echo(ws: Any) -> None:
        def echo(ws: Any, data: Any) -> None:
            with suppress(Exception):
                ws.send(data)

        ws.on_text(echo)
        ws.on_binary(echo)

    async def scenario(peer: Peer) -> None:
        start_close(peer, 1001)
        await peer.expect_close(1001)
        await peer.send_raw(peer.frame(TEXT, b"late") + peer.frame(PING, b"late")
                            + peer.frame(CLOSE, close_payload(1001)))
        await peer.expect(PONG, b"late")
        if role == "server":
            await peer.expect_eof()
        else:
            await peer.expect_open(0.05)
            peer.wire.close()
        await peer.wskit_closed(1001)

    play(role, scenario, setup=quiet_echo)


REPLIES = [
    ("reply-same-code", (close_payload(1000), None, 1000)),
    ("reply-other-code", (close_payload(4001, b"mine"), None, 4001)),
    ("reply-empty", (b"", None, 1005)),
    ("reply-invalid-code", (close_payload(1005), 1002, 1002)),
    ("reply-one-byte", (b"\x03", 1002, 1002)),
    ("reply-invalid-utf8-reason", (close_payload(1000, b"\xff"), 1007, 1007)),
]


@pytest.mark.parametrize(CASE_ARGS, cases(REPLIES, uvloop_every=3))
def test_reply_to_wskit_close(play: Play, role: str, case: Any, loop_kind: str) -> None:
    """§7.1.5, §7.1.6: after wskit's Close (1000), the code it reports is the one in the
    peer's answer (1005 for none); a bad answer fails the connection, and as wskit has already
    sent its Close it sends nothing more and drops TCP at once (§7.1.7)."""
    body, failure, reported = case

    async def scenario(peer: Peer) -> None:
        start_close(peer)
        await peer.expect_close(1000)
        await peer.send(CLOSE, body)
        if failure is not None or role == "server":
            await peer.expect_eof()
        else:
            await peer.expect_open(0.05)
            peer.wire.close()
        await peer.wskit_closed(reported)

    play(role, scenario)
