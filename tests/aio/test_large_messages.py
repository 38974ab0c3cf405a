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


def test_asyncio_reads_into_the_frame(run: Any, loop_kind: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On asyncio (a BufferedProtocol), most of a large frame is read into its own buffer."""
    into: list[int] = []
    original = Connection.receive_into

    def spy(self: Connection, nbytes: int) -> Any:
        into.append(nbytes)
        return original(self, nbytes)

    monkeypatch.setattr(Connection, "receive_into", spy)
    app = echo_app("buffer")

    async def main() -> None:
        async with serving(app):
            peer = await raw_client(app.port, "/echo")
            payload = os.urandom(1 << 20)
            peer.write(frame(BINARY, payload))
            assert await peer.recv() == (BINARY, payload)
            await peer.aclose()

    run(main())
    if loop_kind == "asyncio":
        assert sum(into) >= (1 << 20) // 2, into
    else:
        assert into == []  # uvloop calls data_received: its own buffer, then ours
