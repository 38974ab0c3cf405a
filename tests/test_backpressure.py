"""The asyncio binding under a peer that does not read, floods or leaves: reading pauses while
the write buffer is full, pongs are bounded (1008), each read hands out bounded work, and a
closed connection is freed by reference counting alone (DESIGN.md §6)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from raw_peer import BINARY, PING, TEXT, RawClient, client_frame, until

import wskit
from wskit.aio.protocol import WRITE


def app_with(handler: Callable[[wskit.Request, wskit.WebSocket], Any], **limits: Any) -> wskit.App:
    app = wskit.App(compression=None, ping_interval=None, **limits)
    app.websocket("/", handler)
    return app


def test_reading_pauses_while_the_peer_does_not_read(run: Callable[..., Any]) -> None:
    """An echo to a peer that sends 1 MiB messages and never reads: the server stops reading
    at its high-water mark, so its buffer holds at most write_limit plus one read's echoes;
    once the peer reads, every message comes back, in order."""
    size, count, limit = 256 * 1024, 120, 64 * 1024
    sockets: list[wskit.WebSocket] = []

    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        sockets.append(ws)
        ws.on_binary(lambda ws, data: ws.send(data))

    async def main() -> None:
        app = app_with(echo, write_limit=limit, max_message_size=1 << 20)
        await app.start("127.0.0.1", 0)
        client = await RawClient.open(app.port, rcvbuf=16 * 1024)
        payloads = [bytes([i % 256]) * size for i in range(count)]
        sender = asyncio.ensure_future(_send_all(client, payloads))
        await until(lambda: bool(sockets) and bool(sockets[0]._protocol._pause_reasons & WRITE),
                    "the server pauses reading")
        highest = 0
        for _ in range(20):  # the server stays paused: its buffer does not grow
            highest = max(highest, sockets[0].buffered_amount)
            await asyncio.sleep(0.01)
        assert highest <= limit + 256 * 1024 + size, highest
        assert not sender.done()  # the peer cannot send the rest: TCP pushes back
        for i in range(count):
            opcode, payload = await client.read_frame()
            assert (opcode, payload) == (BINARY, payloads[i])
        await sender
        client.writer.close()
        await app.shutdown(timeout=1.0)

    run(main(), timeout=60)


async def _send_all(client: RawClient, payloads: list[bytes]) -> None:
    for payload in payloads:
        client.writer.write(client_frame(BINARY, payload))
        await client.writer.drain()


def test_pings_while_the_peer_does_not_read_are_cut_with_1008(run: Callable[..., Any]) -> None:
    """RFC 6455 §5.5.2 asks for a pong per ping; a peer that pings without reading gets them
    until write_limit bytes of pongs wait behind a full buffer, then a Close with 1008."""
    sockets: list[wskit.WebSocket] = []

    async def main() -> None:
        app = app_with(lambda req, ws: sockets.append(ws), write_limit=4096)
        await app.start("127.0.0.1", 0)
        client = await RawClient.open(app.port, rcvbuf=4096)
        await until(lambda: bool(sockets), "the connection opens")
        server_sock = sockets[0]._protocol.transport.get_extra_info("socket")
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ping = client_frame(PING, b"p" * 125)
        client.writer.write(ping * 20_000)  # 2.6 MB of pings, 2.5 MB of pongs
        await sockets[0].wait_closed()
        assert sockets[0].close_code == 1008
        assert isinstance(sockets[0].error, wskit.RemoteError)
        code, counts = await client.read_until_close()
        assert code == 1008 and counts.get(0xA, 0) < 20_000
        client.writer.close()
        await app.shutdown(timeout=1.0)

    run(main(), timeout=60)


def test_one_read_hands_out_bounded_work(run: Callable[..., Any]) -> None:
    """2,000 messages in one write: between two batches of max_batch_messages the loop runs
    other callbacks (here, a marker scheduled by the first message); none is lost or reordered."""
    seen: list[str] = []
    marker: list[int] = []

    def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
        def on_text(ws: wskit.WebSocket, text: str) -> None:
            if not seen:
                asyncio.get_running_loop().call_soon(lambda: marker.append(len(seen)))
            seen.append(text)

        ws.on_text(on_text)

    async def main() -> None:
        app = app_with(handler, max_batch_messages=10)
        await app.start("127.0.0.1", 0)
        client = await RawClient.open(app.port)
        client.writer.write(b"".join(client_frame(TEXT, b"%d" % i) for i in range(2000)))
        await until(lambda: len(seen) == 2000, "every message arrives")
        assert seen == [str(i) for i in range(2000)]
        assert marker and marker[0] <= 10, marker
        client.writer.close()
        await app.shutdown(timeout=1.0)

    run(main(), timeout=60)


def test_a_closed_connection_is_freed_without_the_collector(
    run: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A connection failed with 1009 (a listener closure over the socket, a catch, a finally_,
    a listener error): once closed, reference counting alone frees the WebSocket and its
    protocol; gc is disabled throughout."""
    # The log capture keeps each record's traceback (and its frames) for the report.
    caplog.set_level(logging.CRITICAL, logger="wskit")
    refs: list[weakref.ref[Any]] = []

    def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
        refs.append(weakref.ref(ws))
        refs.append(weakref.ref(ws._protocol))
        ws.on_text(lambda _, text: ws.send(text)).catch(lambda e: ws.latency).finally_(
            lambda: ws.close_code)
        ws.on_binary(lambda _, data: 1 / 0)

    async def main() -> None:
        app = app_with(handler, max_message_size=1000)
        await app.start("127.0.0.1", 0)
        for payload in (b"x" * 2000, b""):  # 1009, then a listener that raises (1011)
            client = await RawClient.open(app.port)
            client.writer.write(client_frame(TEXT if payload else BINARY, payload))
            code, _ = await client.read_until_close()
            assert code == (1009 if payload else 1011)
            client.writer.close()
            await until(lambda: not app.connections, "the server closes it")
        await asyncio.sleep(0.05)  # let the loop drop its handles of the closed transports
        await app.shutdown(timeout=1.0)

    gc.collect()
    gc.disable()
    try:
        run(main(), timeout=30)
        alive = [ref() for ref in refs if ref() is not None]
        assert alive == [], alive
    finally:
        gc.enable()


def test_a_full_inbox_holds_back_the_rest_of_a_read(run: Callable[..., Any]) -> None:
    """Nobody calls receive(): the inbox takes max_queue messages plus the batch that filled it,
    and the rest of the read waits undecoded; receive() then gets all 200, in order."""
    sockets: list[wskit.WebSocket] = []

    async def main() -> None:
        app = app_with(lambda req, ws: sockets.append(ws), max_queue=4, max_batch_messages=10)
        await app.start("127.0.0.1", 0)
        client = await RawClient.open(app.port)
        client.writer.write(b"".join(client_frame(TEXT, b"%d" % i) for i in range(200)))
        await until(lambda: bool(sockets) and len(sockets[0]._inbox or ()) >= 4,
                    "the inbox fills")
        for _ in range(20):
            await asyncio.sleep(0)
        assert 4 <= len(sockets[0]._inbox or ()) <= 4 + 10
        got = [await sockets[0].receive() for _ in range(200)]
        assert got == [str(i) for i in range(200)]
        client.writer.close()
        await app.shutdown(timeout=1.0)

    run(main(), timeout=30)


@pytest.mark.parametrize("limit_name", ["max_fragments", "max_batch_messages",
                                        "max_batch_bytes"])
def test_limits_refuse_nonsense(limit_name: str) -> None:
    with pytest.raises(ValueError):
        wskit.App(**{limit_name: 0})
