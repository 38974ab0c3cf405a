"""Large messages through the asyncio binding, on asyncio and uvloop, over loopback sockets:
read straight into the frame's buffer where the loop asks for one (asyncio's get_buffer),
echoed as header and payload without a copy; the bytes on the wire are RFC 6455 §5.2's."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from e2e import BINARY, TEXT, frame, quiet_app, raw_client, serving

import wskit
from wskit.aio.protocol import WebSocketProtocol
from wskit.core.connection import Connection

SIZES = [65_535, 65_536, 300_001, 1 << 20]


def echo_app(kind: str) -> wskit.App:
    app = quiet_app(max_message_size=4 << 20)

    @app.websocket("echo")
    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: ws.send(text))
        if kind == "buffer":
            # The view of the received frame, sent back as it is (valid during the call).
            ws.on_buffer(lambda ws, view: ws.send(view))
        elif kind == "bytearray":
            ws.on_binary(lambda ws, data: ws.send(bytearray(data)))
        else:
            ws.on_binary(lambda ws, data: ws.send(data))

    return app


@pytest.mark.parametrize("kind", ["buffer", "bytes", "bytearray"])
def test_large_echoes_are_whole_and_counted(run: Any, kind: str) -> None:
    """Each echo is the frame a server sends (§5.2: unmasked, minimal length), whatever the
    reads the client's writes become; bytes_out counts what the peer receives."""
    app = echo_app(kind)

    async def main() -> None:
        async with serving(app):
            peer = await raw_client(app.port, "/echo")
            before = app.stats()["bytes_out"]
            got = 0
            for size in SIZES:
                payload = os.urandom(size)
                wire = frame(BINARY, payload)
                # In pieces with pauses, so the server's reads split the frame.
                for start in range(0, len(wire), 200_000):
                    peer.write(wire[start : start + 200_000])
                    await asyncio.sleep(0)
                assert await peer.recv() == (BINARY, payload)
                got += size + (4 if size < 65536 else 10)
            peer.write(frame(TEXT, b"after"))
            assert await peer.recv() == (TEXT, b"after")
            assert app.stats()["bytes_out"] - before == got + 7
            await peer.aclose()

    run(main())


def test_two_large_frames_in_one_write(run: Any) -> None:
    """A read into a frame's room ends at the frame (§5.2): the next frame is parsed whole."""
    app = echo_app("buffer")

    async def main() -> None:
        async with serving(app):
            peer = await raw_client(app.port, "/echo")
            a, b = os.urandom(500_000), os.urandom(70_000)
            peer.write(frame(BINARY, a) + frame(BINARY, b) + frame(TEXT, b"t"))
            assert await peer.recv() == (BINARY, a)
            assert await peer.recv() == (BINARY, b)
            assert await peer.recv() == (TEXT, b"t")
            await peer.aclose()

    run(main())


def test_large_frames_are_read_into_their_buffer(run: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """On both loops most of a large frame is read into its own buffer: asyncio asks the
    protocol (a BufferedProtocol) for buffers; on uvloop, which calls data_received, a
    stand-in BufferedProtocol takes the transport while large frames arrive, then gives it
    back."""
    into: list[int] = []
    original = Connection.receive_into

    def spy(self: Connection, nbytes: int) -> Any:
        into.append(nbytes)
        return original(self, nbytes)

    monkeypatch.setattr(Connection, "receive_into", spy)
    made: list[tuple[WebSocketProtocol, asyncio.BaseTransport]] = []
    connection_made = WebSocketProtocol.connection_made

    def record(self: WebSocketProtocol, transport: asyncio.BaseTransport) -> None:
        made.append((self, transport))
        connection_made(self, transport)

    monkeypatch.setattr(WebSocketProtocol, "connection_made", record)
    app = echo_app("buffer")

    async def main() -> None:
        async with serving(app):
            peer = await raw_client(app.port, "/echo")
            ((protocol, transport),) = made
            for size in (1 << 20, 100_000, 1 << 20):
                payload = os.urandom(size)
                peer.write(frame(BINARY, payload))
                assert await peer.recv() == (BINARY, payload)
            # Small messages after them take the usual path: the first read after a large
            # frame goes into a spare buffer (the next large frame may start there), then the
            # transport is the WebSocketProtocol's again.
            for _ in range(2):
                peer.write(frame(TEXT, b"x") * 3)
                for _ in range(3):
                    assert await peer.recv() == (TEXT, b"x")
            assert transport.get_protocol() is protocol  # type: ignore[attr-defined]
            await peer.aclose()

    run(main())
    assert sum(into) >= (1 << 20), into


def test_large_echoes_over_tls(run: Any) -> None:
    """Over TLS the transport hands decrypted bytes to the same two read paths."""
    from tls_util import client_context, server_context

    app = echo_app("buffer")

    async def main() -> None:
        async with serving(app, ssl=server_context()):
            peer = await raw_client(app.port, "/echo", ssl=client_context())
            for size in (1 << 20, 70_000, 300_000):
                payload = os.urandom(size)
                wire = frame(BINARY, payload)
                for start in range(0, len(wire), 150_000):
                    peer.write(wire[start : start + 150_000])
                    await asyncio.sleep(0)
                assert await peer.recv() == (BINARY, payload)
            peer.write(frame(TEXT, b"after"))
            assert await peer.recv() == (TEXT, b"after")
            await peer.aclose()

    run(main())


class _Recording(asyncio.Transport):
    """A transport that records what it is handed (asyncio's writelines: it joins)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))


class _Gathering(_Recording):
    """A transport with a writelines of its own (uvloop's: one writev, no copy)."""

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", [bytes(d) for d in list_of_data]))


@pytest.mark.parametrize("kind", [_Recording, _Gathering])
def test_header_goes_with_the_payloads_first_bytes_then_the_rest(run: Any, kind: type) -> None:
    """A large frame's header goes out with the payload's first 64 KiB in one writelines
    where the transport gathers, else joined with its first 32 KiB in one write; then the
    rest in one write: never a header alone, never the whole payload copied."""
    from wskit.core.limits import Limits

    async def main() -> None:
        protocol = WebSocketProtocol(Limits(ping_interval=None))
        transport = kind()
        protocol.transport = transport
        header, payload = b"\x82\x7f" + (200_000).to_bytes(8, "big"), os.urandom(200_000)
        protocol.write_parts(header, payload)
        if kind is _Gathering:
            first, rest = payload[:65536], payload[65536:]
            assert transport.calls == [("writelines", [header, first]), ("write", rest)]
        else:
            first, rest = payload[:32768], payload[32768:]
            assert transport.calls == [("write", header + first), ("write", rest)]
        assert protocol.bytes_out == len(header) + len(payload)

    run(main())


@pytest.mark.parametrize("kind", [_Recording, _Gathering])
def test_a_header_never_goes_alone(run: Any, kind: type) -> None:
    """A payload of exactly 64 KiB goes with its header: in one call where the transport
    gathers, else in two writes of which the first holds the header (never 10 bytes alone)."""
    from wskit.core.limits import Limits

    async def main() -> None:
        protocol = WebSocketProtocol(Limits(ping_interval=None))
        transport = kind()
        protocol.transport = transport
        header, payload = b"\x82\x7f" + (65536).to_bytes(8, "big"), os.urandom(65536)
        protocol.write_parts(header, payload)
        if kind is _Gathering:
            assert transport.calls == [("writelines", [header, payload])]
        else:
            assert transport.calls == [("write", header + payload[:32768]),
                                       ("write", payload[32768:])]

    run(main())


@pytest.mark.parametrize("sizes", [
    [10, 200_000], [5, 100, 70_000, 3, 65_536, 9], [65_536, 65_536, 1], [40_000, 40_000],
    [10, 65_537], [10, 65_536], [30_000, 30_000, 30_000, 300_000, 20],
])
def test_gathered_frames_reach_the_wire_in_order(run: Any, sizes: list[int]) -> None:
    """However corked frames are cut into calls of a transport that gathers (uvloop's), the
    bytes are the same, in order; a call holds at most 64 KiB of small frames and 64 KiB of
    a large one (or is the rest of a large frame), and none is empty."""
    from wskit.core.limits import Limits

    async def main() -> None:
        protocol = WebSocketProtocol(Limits(ping_interval=None))
        transport = _Gathering()
        protocol.transport = transport
        frames = [os.urandom(n) for n in sizes]
        protocol._corked = list(frames)
        protocol._flush_corked()
        wire = b"".join(b"".join(d) if name == "writelines" else d
                        for name, d in transport.calls)
        assert wire == b"".join(frames)
        large = {f[65536:] for f in frames if len(f) > 65536}
        for name, d in transport.calls:
            data = b"".join(d) if name == "writelines" else d
            assert data
            assert len(data) <= 2 * 65536 or data in large

    run(main())
