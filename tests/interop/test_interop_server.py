"""wskit's server against every client peer: data, fragments, pings, closes, TLS, compression."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from interop_peers import CLIENTS, SUBPROTOCOL_CASES, big_cases, clients, plain_and_deflate
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
    PeerClient,
    WskitServer,
    close_reason,
    expect,
    got,
)
from peer_chromium import PAGE

pytestmark = pytest.mark.interop

Run = Callable[..., Any]
Factory = Callable[[], PeerClient]


@contextlib.asynccontextmanager
async def peer_of(factory: Factory) -> AsyncIterator[PeerClient]:
    peer = factory()
    try:
        yield peer
    finally:
        await peer.aclose()


def wskit_server(**kwargs: Any) -> WskitServer:
    return WskitServer(page=PAGE, **kwargs)


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("client", clients(), indirect=True)
def test_echo(run: Run, client: Factory, kind: str) -> None:
    """Every size around the 7-, 16- and 64-bit length encodings, both ways, in order."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            for size in SIZES:
                await peer.send(kind, size)
            echoed = [await peer.receive() for _ in SIZES]
            expected = [expect(kind, size) for size in SIZES]
            assert echoed == expected, f"{peer.name} got back {echoed}"
            assert (await server.conn()).messages == expected
            assert await peer.close(1000, "") == (1000, "")

    run(main())


IN_PROCESS = clients(lambda cls: cls.__module__ != "peer_node" and cls.name != "chromium")


@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize("client", IN_PROCESS, indirect=True)
def test_concurrent_connections(run: Run, client: Factory, compression: str | None) -> None:
    """Ten connections at once, each with its own stream of messages, none mixed up."""
    async def one(server: WskitServer, index: int) -> None:
        async with peer_of(client) as peer:
            mode = compression if compression in peer.modes else None
            await peer.connect(server.url("/echo"), compression=mode)
            sizes = [1 + index, 65537, 125, 70000 + index, 126]
            for size in sizes:
                await peer.send("binary" if size % 2 else "text", size)
            for size in sizes:
                assert await peer.receive() == expect("binary" if size % 2 else "text", size)
            await peer.close(1000, "")

    async def main() -> None:
        async with wskit_server(compression=compression) as server:
            await asyncio.gather(*(one(server, i) for i in range(10)))
            assert len(server.conns) == 10

    run(main())


@pytest.mark.parametrize(("client", "compression", "loop_kind"), big_cases(CLIENTS),
                         indirect=["client"])
def test_16_mib(run: Run, client: Factory, compression: str | None) -> None:
    """16 MiB of text and of binary each way, the limits raised on both sides."""
    async def main() -> None:
        async with wskit_server(max_message_size=BIG_LIMIT, compression=compression) as server, \
                peer_of(client) as peer:
            mode = compression if compression in peer.modes else peer.modes[0]
            await peer.connect(server.url("/echo"), compression=mode, max_size=BIG_LIMIT)
            conn = await server.conn()
            assert conn.extensions == (["permessage-deflate"] if compression else [])
            for kind in ("text", "binary"):
                await peer.send(kind, BIG)
                assert await peer.receive() == expect(kind, BIG)
            assert conn.messages == [expect("text", BIG), expect("binary", BIG)]
            await peer.close(1000, "")

    run(main(), timeout=60)


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_unicode(run: Run, client: Factory) -> None:
    """Text with 4-byte UTF-8 characters (surrogate pairs in JavaScript) survives both ways."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            await peer.send_text(UNICODE_TEXT)
            echoed = await peer.receive()
            assert echoed == got(UNICODE_TEXT)
            assert echoed.text == UNICODE_TEXT
            assert (await server.conn()).messages == [got(UNICODE_TEXT)]
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("client", clients(), indirect=True)
def test_fragments_from_wskit(run: Run, client: Factory, kind: str) -> None:
    """send_fragments: empty fragments, fragments that cut UTF-8 sequences, a 64 KiB one."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/cmd"))
            for layout in FRAGMENTS:
                await peer.command("fragments", kind=kind, sizes=list(layout))
                assert await peer.receive() == expect(kind, sum(layout)), layout
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("client", clients(lambda cls: cls.sends_fragments), indirect=True)
def test_fragments_from_peer(run: Run, client: Factory, kind: str) -> None:
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            for layout in FRAGMENTS:
                await peer.send_fragments(kind, layout)
                assert await peer.receive() == expect(kind, sum(layout)), layout
            assert (await server.conn()).messages == [expect(kind, sum(x)) for x in FRAGMENTS]
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("client", clients(lambda cls: cls.sends_pings), indirect=True)
def test_ping_from_peer(run: Run, client: Factory) -> None:
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            for data in PING_PAYLOADS:
                assert await peer.ping(data) == data
            await peer.send("text", 5)  # and the connection still carries messages
            assert await peer.receive() == expect("text", 5)
            assert (await server.conn()).pings == list(PING_PAYLOADS)
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_ping_from_wskit(run: Run, client: Factory) -> None:
    """wskit's ``await ws.ping(data)`` returns once the peer's pong carries the same data."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/cmd"))
            for data in PING_PAYLOADS:
                answer = await peer.command("ping", payload=data.hex())
                assert answer == {"op": "pong", "payload": data.hex()}
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_close_from_peer(run: Run, client: Factory) -> None:
    """Each code the peer can send reaches wskit with its reason; wskit answers it."""
    async def main() -> None:
        failures = []
        async with wskit_server() as server, peer_of(client) as peer:
            for code in peer.close_codes:
                await peer.connect(server.url("/echo"))
                await peer.send("text", 3)
                assert await peer.receive() == expect("text", 3)
                answer = await peer.close(code, close_reason(code))
                seen = await (await server.conn()).close_seen()
                wire = 1005 if code is None else code
                if seen != (wire, close_reason(code)):
                    failures.append(f"peer sent {code}: wskit saw {seen}")
                if answer[0] != wire and (peer.echoes_close_code or answer[0] is None):
                    failures.append(f"peer sent {code}: wskit answered {answer}")
        assert not failures, failures

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_close_from_wskit(run: Run, client: Factory) -> None:
    """Each code wskit can send reaches the peer with its reason; the handshake completes."""
    async def main() -> None:
        failures = []
        async with wskit_server() as server, peer_of(client) as peer:
            for code in CLOSE_CODES:
                await peer.connect(server.url("/cmd"))
                await peer.command("close", code=code, reason=close_reason(code))
                seen = await peer.wait_closed()
                if seen != (code, close_reason(code)):
                    failures.append(f"wskit sent {code}: peer saw {seen}")
                answer = await (await server.conn()).close_seen()
                expected = code if peer.echoes_close_code else 1000
                if answer[0] != expected:
                    failures.append(f"wskit sent {code}: peer answered {answer}")
        assert not failures, failures

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_messages_then_close(run: Run, client: Factory) -> None:
    """Messages sent right before the Close frame all reach wskit, then the close does."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            sent = [("text", 10), ("binary", 70000), ("text", 0), ("binary", 3)]
            for kind, size in sent:
                await peer.send(kind, size)
            await peer.close(3000, "after four")
            conn = await server.conn()
            assert await conn.close_seen() == (3000, "after four")
            assert conn.messages == [expect(kind, size) for kind, size in sent]

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_shutdown(run: Run, client: Factory) -> None:
    """``app.shutdown()`` closes open connections with 1001 and its reason (RFC 6455 §7.4.1)."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            await peer.send("text", 5)
            assert await peer.receive() == expect("text", 5)
            # The peer reads while the server shuts down (some answer a Close only then).
            shutdown = asyncio.ensure_future(server.app.shutdown())
            assert await peer.wait_closed() == (1001, "server shutting down")
            await asyncio.wait_for(shutdown, 5)
            answer, _ = await (await server.conn()).close_seen()
            assert answer == (1001 if peer.echoes_close_code else 1000)

    run(main())


@pytest.mark.parametrize(("client", "compression"), plain_and_deflate(CLIENTS), indirect=["client"])
def test_too_big(run: Run, client: Factory, compression: str | None) -> None:
    """A message over max_message_size (1 MiB): wskit closes with 1009 and the peer hears it,
    also when it arrives compressed to a few kilobytes (the limit holds while inflating)."""
    async def main() -> None:
        async with wskit_server(compression=compression) as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"), compression=compression)
            await peer.send("text", TOO_BIG)
            code, _ = await peer.wait_closed(failed=True)
            assert code == 1009
            assert (await (await server.conn()).close_seen())[0] == 1009

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_too_big_tls(run: Run, client: Factory, tls: TLS) -> None:
    """The same over TLS, where a half-close is impossible: wskit closes the TCP connection
    behind its Close frame while the peer is still sending."""
    async def main() -> None:
        async with wskit_server(tls=tls) as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"), tls=tls)
            await peer.send("binary", 4 * TOO_BIG)
            code, _ = await peer.wait_closed(failed=True)
            assert code == 1009
            assert (await (await server.conn()).close_seen())[0] == 1009

    run(main())


@pytest.mark.parametrize("client", clients(lambda cls: cls.sends_invalid_text), indirect=True)
def test_invalid_utf8_from_peer(run: Run, client: Factory) -> None:
    """A text message that is not UTF-8: wskit closes with 1007 (RFC 6455 §8.1)."""
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            await peer.send_invalid_text(b"wskit \xed\xa0\x80 surrogate")
            code, _ = await peer.wait_closed(failed=True)
            assert code == 1007
            assert (await (await server.conn()).close_seen())[0] == 1007

    run(main())


@pytest.mark.parametrize(("offer", "chosen"), SUBPROTOCOL_CASES)
@pytest.mark.parametrize("client", clients(), indirect=True)
def test_subprotocol(run: Run, client: Factory, offer: list[str], chosen: str | None) -> None:
    """wskit picks by its own order (chat.v2, chat.v1); both ends agree on the choice.

    Without a shared subprotocol wskit goes on without one (RFC 6455 §4.2.2); clients bound
    by the WHATWG standard (browsers, and ws and websocket-client with them) then give up.
    """
    async def main() -> None:
        async with wskit_server() as server, peer_of(client) as peer:
            if offer and chosen is None and peer.needs_subprotocol_answer:
                with pytest.raises(Exception, match=r"(?i)protocol|could not connect|header"):
                    await peer.connect(server.url("/echo"), subprotocols=offer)
                assert (await server.conn()).subprotocol is None
                return
            await peer.connect(server.url("/echo"), subprotocols=offer)
            assert (await peer.negotiated())["subprotocol"] == chosen
            assert (await server.conn()).subprotocol == chosen
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("client", clients(), indirect=True)
def test_tls(run: Run, client: Factory, tls: TLS) -> None:
    """wss:// with a trustme certificate: messages, pings and the closing handshake."""
    async def main() -> None:
        async with wskit_server(tls=tls) as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"), tls=tls)
            for kind, size in [("text", 125), ("binary", 65537), ("text", 65537)]:
                await peer.send(kind, size)
                assert await peer.receive() == expect(kind, size)
            await peer.close(4000, close_reason(4000))
            assert await (await server.conn()).close_seen() == (4000, close_reason(4000))
            await peer.connect(server.url("/cmd"), tls=tls)
            assert await peer.command("ping", payload="ab") == {"op": "pong", "payload": "ab"}
            await peer.command("close", code=1001, reason="tls bye")
            assert await peer.wait_closed() == (1001, "tls bye")

    run(main())


def _compression_cases() -> list[Any]:
    return [pytest.param(name, server_mode, client_mode,
                         id=f"{name}-server_{server_mode or 'off'}-client_{client_mode or 'off'}")
            for name, cls in CLIENTS.items()
            for server_mode in MODES
            for client_mode in cls.modes]


def check_params(params: dict[str, Any], server_mode: str | None,
                 client_mode: str | None) -> None:
    """What the peer says was negotiated: wskit's server uses 12-bit windows unless asked for
    9 (by its own configuration or by the client), and no context takeover when either asks."""
    no_takeover = "no-takeover" in (server_mode, client_mode)
    bits = 9 if "window-9" in (server_mode, client_mode) else 12
    if "local_no_context_takeover" in params:  # websockets: local is the client
        assert params == {
            "local_no_context_takeover": no_takeover, "remote_no_context_takeover": no_takeover,
            "local_max_window_bits": bits, "remote_max_window_bits": bits,
        }
    elif "header" in params:  # ws, Chromium: the response header as received
        header = params["header"]
        assert ("server_no_context_takeover" in header) == no_takeover, header
        assert ("client_no_context_takeover" in header) == no_takeover, header
        assert f"server_max_window_bits={bits};" in header + ";", header
        assert f"client_max_window_bits={bits};" in header + ";", header
    elif "window_bits" in params:  # aiohttp: its own window and context takeover only
        assert params == {
            "window_bits": 9 if server_mode == "window-9" else 12,
            "no_context_takeover": server_mode == "no-takeover",
        }
    else:
        raise AssertionError(f"no parameters to check in {params}")


@pytest.mark.parametrize(("client", "server_mode", "client_mode"), _compression_cases(),
                         indirect=["client"])
def test_compression(run: Run, client: Factory, server_mode: str | None,
                     client_mode: str | None) -> None:
    """permessage-deflate on and off, with and without context takeover and 9-bit windows."""
    async def main() -> None:
        async with wskit_server(compression=server_mode) as server, peer_of(client) as peer, \
                CountingProxy(server.app.port) as proxy:
            await peer.connect(proxy.url("/echo"), compression=client_mode)
            on = server_mode is not None and client_mode is not None
            names = ["permessage-deflate"] if on else []
            negotiated = await peer.negotiated()
            assert negotiated["extensions"] == names, negotiated
            conn = await server.conn()
            assert conn.extensions == names
            if on:
                check_params(negotiated["params"], server_mode, client_mode)
            before = proxy.counts()
            for _ in range(4):
                await peer.send("text", 65536)
                assert await peer.receive() == expect("text", 65536)
            proxy.check_compressed(before, on)
            expected = [expect("text", 65536)] * 4
            for kind in ("text", "binary", "noise"):
                for size in (0, 1, 125, 126, 65536, 65537, 126, 126):  # repeats: context takeover
                    await peer.send(kind, size)
                    assert await peer.receive() == expect(kind, size), (kind, size)
                    expected.append(expect(kind, size))
            if peer.sends_fragments:
                for layout in FRAGMENTS:
                    await peer.send_fragments("text", layout)
                    assert await peer.receive() == expect("text", sum(layout)), layout
                    expected.append(expect("text", sum(layout)))
            assert conn.messages == expected
            await peer.close(1000, "")
            await peer.connect(server.url("/cmd"), compression=client_mode)
            for layout in FRAGMENTS:
                await peer.command("fragments", kind="binary", sizes=list(layout))
                assert await peer.receive() == expect("binary", sum(layout)), layout
            await peer.close(1000, "")

    run(main())
