"""wskit's client against every server peer: data, fragments, pings, closes, TLS, compression."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from interop_peers import SERVERS, SUBPROTOCOL_CASES, big_cases, plain_and_deflate, servers
from interop_support import (
    BIG,
    BIG_LIMIT,
    CLOSE_CODES,
    FRAGMENTS,
    MODES,
    PING_PAYLOADS,
    SIZES,
    TLS,
    TOO_BIG,
    UNICODE_TEXT,
    CountingProxy,
    PeerServer,
    WskitServer,
    close_reason,
    cmd,
    encoded,
    expect,
    got,
    payload,
    split,
    wskit_compression,
)

import wskit

pytestmark = pytest.mark.interop

Run = Callable[..., Any]
Factory = Callable[[], PeerServer]


@contextlib.asynccontextmanager
async def serving(factory: Factory, **options: Any) -> AsyncIterator[PeerServer]:
    peer = factory()
    try:
        await peer.start(**options)
        yield peer
    finally:
        await peer.stop()


async def connect(url: str, *, compression: str | None = None, tls: TLS | None = None,
                  **kwargs: Any) -> wskit.WebSocket:
    return await wskit.connect(
        url, compression=wskit_compression(compression, is_client=True),
        ssl=tls.client if tls else None, ping_interval=None, **kwargs)


async def command(ws: wskit.WebSocket, op: str, **args: Any) -> Any:
    """A /cmd command; for ping and info, the server's JSON answer."""
    ws.send(cmd(op, **args))
    if op in ("ping", "info"):
        answer = await ws.receive()
        assert isinstance(answer, str), answer
        return json.loads(answer)
    return None


async def received(ws: wskit.WebSocket) -> Any:
    return got(await ws.receive())


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("server", servers(), indirect=True)
def test_echo(run: Run, server: Factory, kind: str) -> None:
    """Every size around the 7-, 16- and 64-bit length encodings, both ways, in order."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/echo"))
            for size in SIZES:
                ws.send(payload(kind, size))
            echoed = [await received(ws) for _ in SIZES]
            expected = [expect(kind, size) for size in SIZES]
            assert echoed == expected
            assert await peer.messages() == expected
            await ws.close(1000)
            assert ws.close_code == 1000

    run(main())


@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize("server", servers(), indirect=True)
def test_concurrent_connections(run: Run, server: Factory, compression: str | None) -> None:
    """Ten wskit clients at once, each with its own stream of messages, none mixed up."""
    async def one(peer: PeerServer, index: int) -> None:
        mode = compression if compression in peer.modes else None
        ws = await connect(peer.url("/echo"), compression=mode)
        sizes = [1 + index, 65537, 125, 70000 + index, 126]
        for size in sizes:
            ws.send(payload("binary" if size % 2 else "text", size))
        for size in sizes:
            assert await received(ws) == expect("binary" if size % 2 else "text", size)
        await ws.close()

    async def main() -> None:
        async with serving(server, compression=compression) as peer:
            await asyncio.gather(*(one(peer, i) for i in range(10)))

    run(main())


@pytest.mark.parametrize(("server", "compression", "loop_kind"), big_cases(SERVERS),
                         indirect=["server"])
def test_16_mib(run: Run, server: Factory, compression: str | None) -> None:
    """16 MiB of text and of binary each way, the limits raised on both sides."""
    async def main() -> None:
        async with serving(server, compression=compression, max_size=BIG_LIMIT) as peer:
            ws = await connect(peer.url("/echo"), compression=compression,
                               max_message_size=BIG_LIMIT)
            assert ws.extensions == (["permessage-deflate"] if compression else [])
            for kind in ("text", "binary"):
                ws.send(payload(kind, BIG))
                assert await received(ws) == expect(kind, BIG)
            assert await peer.messages() == [expect("text", BIG), expect("binary", BIG)]
            await ws.close()

    run(main(), timeout=60)


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_unicode(run: Run, server: Factory) -> None:
    """Text with 4-byte UTF-8 characters (surrogate pairs in JavaScript) survives both ways."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/echo"))
            ws.send(UNICODE_TEXT)
            assert await ws.receive() == UNICODE_TEXT
            assert await peer.messages() == [got(UNICODE_TEXT)]
            await ws.close()

    run(main())


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("server", servers(), indirect=True)
def test_fragments_from_wskit(run: Run, server: Factory, kind: str) -> None:
    """send_fragments: empty fragments, fragments that cut UTF-8 sequences, a 64 KiB one."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/echo"))
            for layout in FRAGMENTS:
                data = encoded(kind, sum(layout))
                ws.send_fragments(split(data, layout), text=kind == "text")
                assert await received(ws) == expect(kind, sum(layout)), layout
            assert await peer.messages() == [expect(kind, sum(x)) for x in FRAGMENTS]
            await ws.close()

    run(main())


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("server", servers(lambda cls: cls.sends_fragments), indirect=True)
def test_fragments_from_peer(run: Run, server: Factory, kind: str) -> None:
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/cmd"))
            for layout in FRAGMENTS:
                await command(ws, "fragments", kind=kind, sizes=list(layout))
                assert await received(ws) == expect(kind, sum(layout)), layout
            await ws.close()

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_ping_from_wskit(run: Run, server: Factory) -> None:
    """``await ws.ping(data)`` returns the round-trip time once the peer's pong arrived."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/echo"))
            for data in PING_PAYLOADS:
                rtt = await ws.ping(data)
                assert 0 <= rtt < 5
            ws.send("after pings")
            assert await ws.receive() == "after pings"
            if peer.sees_pings:
                assert await peer.pings() == list(PING_PAYLOADS)
            await ws.close()

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_ping_from_peer(run: Run, server: Factory) -> None:
    """wskit answers the peer's pings with the same payload (RFC 6455 §5.5.3)."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/cmd"))
            pings: list[bytes] = []
            ws.on_ping(lambda ws, data: pings.append(bytes(data)))
            for data in PING_PAYLOADS:
                answer = await command(ws, "ping", payload=data.hex())
                assert answer == {"op": "pong", "payload": data.hex()}
            assert pings == list(PING_PAYLOADS)
            await ws.close()

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_close_from_wskit(run: Run, server: Factory) -> None:
    """Each code wskit can send reaches the peer with its reason; the handshake completes."""
    async def main() -> None:
        failures = []
        async with serving(server) as peer:
            for code in CLOSE_CODES:
                ws = await connect(peer.url("/echo"))
                ws.send("x")
                assert await ws.receive() == "x"
                await ws.close(code, close_reason(code))
                seen = await peer.close_seen()
                if seen != (code, close_reason(code)):
                    failures.append(f"wskit sent {code}: peer saw {seen}")
                expected = code if peer.echoes_close_code else 1000
                if ws.close_code != expected:
                    failures.append(f"wskit sent {code}: peer answered {ws.close_code}")
        assert not failures, failures

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_close_from_peer(run: Run, server: Factory) -> None:
    """Each code the peer can send reaches wskit with its reason; wskit answers it."""
    async def main() -> None:
        failures = []
        async with serving(server) as peer:
            for code in peer.close_codes:
                ws = await connect(peer.url("/cmd"))
                await command(ws, "close", code=code, reason=close_reason(code))
                await ws.wait_closed()
                if (ws.close_code, ws.close_reason) != (code, close_reason(code)):
                    failures.append(f"peer sent {code}: wskit saw {ws.close_code} "
                                    f"{ws.close_reason!r}")
                answer = await peer.close_seen()
                if answer[0] != code:
                    failures.append(f"peer sent {code}: wskit answered {answer}")
        assert not failures, failures

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_messages_then_close(run: Run, server: Factory) -> None:
    """Messages sent right before wskit's Close frame all reach the peer, then the close."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/echo"))
            sent = [("text", 10), ("binary", 70000), ("text", 0), ("binary", 3)]
            for kind, size in sent:
                ws.send(payload(kind, size))
            await ws.close(3000, "after four")
            assert await peer.close_seen() == (3000, "after four")
            assert await peer.messages() == [expect(kind, size) for kind, size in sent]

    run(main())


@pytest.mark.parametrize(("server", "compression"), plain_and_deflate(SERVERS), indirect=["server"])
def test_too_big(run: Run, server: Factory, compression: str | None) -> None:
    """A message over max_message_size (1 MiB): wskit's client closes with 1009 and the peer
    hears it, also when it arrives compressed (the limit holds while inflating)."""
    async def main() -> None:
        async with serving(server, compression=compression) as peer:
            ws = await connect(peer.url("/cmd"), compression=compression)
            await command(ws, "send", kind="text", size=TOO_BIG)
            await ws.wait_closed()
            assert ws.close_code == 1009
            assert isinstance(ws.error, wskit.MessageTooBig)
            assert (await peer.close_seen())[0] == 1009

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_too_big_tls(run: Run, server: Factory, tls: TLS) -> None:
    """The same over TLS, where wskit cannot half-close the connection after its Close."""
    async def main() -> None:
        async with serving(server, tls=tls) as peer:
            ws = await connect(peer.url("/cmd"), tls=tls)
            await command(ws, "send", kind="binary", size=4 * TOO_BIG)
            await ws.wait_closed()
            assert ws.close_code == 1009
            assert (await peer.close_seen())[0] == 1009

    run(main())


@pytest.mark.parametrize("server", servers(lambda cls: cls.sends_invalid_text), indirect=True)
def test_invalid_utf8_from_peer(run: Run, server: Factory) -> None:
    """A text message that is not UTF-8: wskit's client closes with 1007 (RFC 6455 §8.1)."""
    async def main() -> None:
        async with serving(server) as peer:
            ws = await connect(peer.url("/cmd"))
            await command(ws, "send_raw_text", hex=b"wskit \xed\xa0\x80 surrogate".hex())
            await ws.wait_closed()
            assert ws.close_code == 1007
            assert isinstance(ws.error, wskit.PayloadNotUTF8)
            assert (await peer.close_seen())[0] == 1007

    run(main())


@pytest.mark.parametrize(("offer", "chosen"), SUBPROTOCOL_CASES)
@pytest.mark.parametrize("server", servers(), indirect=True)
def test_subprotocol(run: Run, server: Factory, offer: list[str], chosen: str | None) -> None:
    """The peer serves chat.v2 and chat.v1; both ends agree on its choice."""
    async def main() -> None:
        async with serving(server, subprotocols=WskitServer.SUBPROTOCOLS) as peer:
            expected = chosen
            if peer.prefers == "client":
                expected = next((p for p in offer if p in WskitServer.SUBPROTOCOLS), None)
            ws = await connect(peer.url("/cmd"), subprotocols=offer)
            assert ws.subprotocol == expected
            assert (await command(ws, "info"))["subprotocol"] == expected
            await ws.close()

    run(main())


@pytest.mark.parametrize("server", servers(), indirect=True)
def test_tls(run: Run, server: Factory, tls: TLS) -> None:
    """wss:// verified against the trustme CA: messages, pings and the closing handshake."""
    async def main() -> None:
        async with serving(server, tls=tls) as peer:
            assert peer.url("/echo").startswith("wss://")
            ws = await connect(peer.url("/echo"), tls=tls)
            for kind, size in [("text", 125), ("binary", 65537), ("text", 65537)]:
                ws.send(payload(kind, size))
                assert await received(ws) == expect(kind, size)
            await ws.ping(b"tls")
            await ws.close(4000, close_reason(4000))
            assert await peer.close_seen() == (4000, close_reason(4000))
            ws = await connect(peer.url("/cmd"), tls=tls)
            assert await command(ws, "ping", payload="ab") == {"op": "pong", "payload": "ab"}
            await command(ws, "close", code=1001, reason="tls bye")
            await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1001, "tls bye")

    run(main())


def parameters(header: str | None) -> dict[str, str | None]:
    """The parameters of a one-extension response header: ``{name: value or None}``."""
    assert header is not None
    name, *params = (part.strip() for part in header.split(";"))
    assert name == "permessage-deflate", header
    return {key.strip(): value.strip() if sep else None
            for key, sep, value in (param.partition("=") for param in params)}


def _compression_cases() -> list[Any]:
    return [pytest.param(name, server_mode, client_mode,
                         id=f"{name}-server_{server_mode or 'off'}-client_{client_mode or 'off'}")
            for name, cls in SERVERS.items()
            for server_mode in cls.modes
            for client_mode in MODES]


@pytest.mark.parametrize(("server", "server_mode", "client_mode"), _compression_cases(),
                         indirect=["server"])
def test_compression(run: Run, server: Factory, server_mode: str | None,
                     client_mode: str | None) -> None:
    """permessage-deflate on and off, with and without context takeover and 9-bit windows."""
    async def main() -> None:
        async with serving(server, compression=server_mode) as peer, \
                CountingProxy(int(urlsplit(peer.url("/")).port or 0)) as proxy:
            ws = await connect(proxy.url("/echo"), compression=client_mode)
            on = server_mode is not None and client_mode is not None
            names = ["permessage-deflate"] if on else []
            assert ws.extensions == names
            if on:
                params = parameters(ws.response_headers.get("Sec-WebSocket-Extensions"))
                if client_mode == "no-takeover":  # asked by wskit: granted
                    assert "server_no_context_takeover" in params, params
                if client_mode == "window-9":
                    assert int(params["server_max_window_bits"] or 15) <= 9, params
                if server_mode == "no-takeover":  # imposed by the peer
                    assert "client_no_context_takeover" in params, params
                if server_mode == "window-9":
                    assert params["client_max_window_bits"] == "9", params
            before = proxy.counts()
            for _ in range(4):
                ws.send(payload("text", 65536))
                assert await received(ws) == expect("text", 65536)
            proxy.check_compressed(before, on)
            expected = [expect("text", 65536)] * 4
            for kind in ("text", "binary", "noise"):
                for size in (0, 1, 125, 126, 65536, 65537, 126, 126):  # repeats: context takeover
                    ws.send(payload(kind, size))
                    assert await received(ws) == expect(kind, size), (kind, size)
                    expected.append(expect(kind, size))
            for layout in FRAGMENTS:
                ws.send_fragments(split(encoded("text", sum(layout)), layout), text=True)
                assert await received(ws) == expect("text", sum(layout)), layout
                expected.append(expect("text", sum(layout)))
            assert await peer.messages() == expected
            await ws.close()
            ws = await connect(peer.url("/cmd"), compression=client_mode)
            assert (await command(ws, "info"))["extensions"] == names
            if peer.sends_fragments:
                for layout in FRAGMENTS:
                    await command(ws, "fragments", kind="binary", sizes=list(layout))
                    assert await received(ws) == expect("binary", sum(layout)), layout
            await ws.close()

    run(main())
