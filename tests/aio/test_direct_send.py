"""The C path's own send() on a plain socket transport (``WebSocketProtocol._send_fd``, the first
step of that transport's write) against the pure path's ``transport.write``, over a real socket
pair on asyncio and uvloop: the same bytes in the same order, also when the socket's buffer is
full and the rest goes through the transport (RFC 6455 §5.2, §5.3 masked by a client)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from e2e import BINARY, TEXT
from test_client_fast_path import unmask
from test_fast_path import (  # noqa: F401 - send_impl: the autouse C / Python fixture
    Bare,
    FakeTransport,
    send_impl,
    server,
)

import wskit
from wskit.aio.writes import socket_fd
from wskit.core.connection import Role
from wskit.core.limits import Limits


async def open_pair(role: Role) -> tuple[wskit.WebSocket, Bare, socket.socket]:
    """A WebSocket opened without HTTP on one end of a socket pair; the other end raw."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    limits = Limits(ping_interval=None, close_timeout=1.0, write_limit=1 << 24)
    _, proto = await loop.create_connection(lambda: Bare(limits, role), sock=ours)
    ws = wskit.WebSocket(proto, None, None, [])
    proto.open(ws, [])
    return ws, proto, peer


async def read_exactly(peer: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < n:
        chunk = await loop.sock_recv(peer, n - len(got))
        assert chunk, "the connection ended early"
        got += chunk
    return bytes(got)


def test_the_socket_of_plain_transports_only(run: Any) -> None:
    async def main() -> None:
        _ws, proto, peer = await open_pair(Role.CLIENT)
        try:
            assert proto.transport is not None
            assert socket_fd(proto.transport) == proto.transport.get_extra_info("socket").fileno()
            assert socket_fd(FakeTransport()) == -1  # type: ignore[arg-type]
        finally:
            proto.transport.abort()  # type: ignore[union-attr]
            peer.close()

    run(main())


def test_a_full_socket_buffer_keeps_the_order(run: Any) -> None:
    """Frames beyond what the socket takes go through the transport, after what was sent."""

    async def main() -> None:
        ws, proto, peer = await open_pair(Role.CLIENT)
        try:
            payloads = [bytes([i]) * 60000 for i in range(40)]  # 2.4 MB, far past the buffer
            for payload in payloads:
                ws.send(payload)
            ws.send("end")
            assert proto.transport is not None
            assert proto.transport.get_write_buffer_size() > 0  # the rest waits in it
            wire = await read_exactly(peer, proto.bytes_out)
            assert [(b0, p) for b0, _, p in unmask(wire)] == (
                [(0x82, p) for p in payloads] + [(0x81, b"end")])
        finally:
            proto.transport.abort()  # type: ignore[union-attr]
            peer.close()

    run(main())


def test_round_trips_through_the_reader(run: Any) -> None:
    """The server's frames in, the listener's answers out masked, read by read."""

    async def main() -> None:
        ws, proto, peer = await open_pair(Role.CLIENT)
        ws.on_text(lambda ws, text: ws.send(text))
        ws.on_buffer(lambda ws, view: ws.send(view))
        loop = asyncio.get_running_loop()
        try:
            sent = 0
            for i in range(50):
                message = server(TEXT, b"t%d" % i) if i % 2 else server(BINARY, bytes(1024))
                await loop.sock_sendall(peer, message)
                size = 6 + len(message) - 2 if len(message) < 128 else 8 + len(message) - 4
                wire = await read_exactly(peer, size)
                sent += len(wire)
                ((b0, _, payload),) = unmask(wire)
                assert (b0, payload) == ((0x81, b"t%d" % i) if i % 2 else (0x82, bytes(1024)))
            assert proto.bytes_out == sent and proto.conn.messages_out == 50
        finally:
            proto.transport.abort()  # type: ignore[union-attr]
            peer.close()

    run(main())


def test_a_server_on_a_socket(run: Any) -> None:
    """A server's unmasked frames take the same send."""

    async def main() -> None:
        ws, proto, peer = await open_pair(Role.SERVER)
        try:
            ws.send("hello")
            ws.send(b"\x00" * 300)
            want = server(TEXT, b"hello") + server(BINARY, b"\x00" * 300)
            assert await read_exactly(peer, len(want)) == want
        finally:
            proto.transport.abort()  # type: ignore[union-attr]
            peer.close()

    run(main())


def test_the_c_path_sends_itself(run: Any, loop_kind: str, send_impl: str) -> None:  # noqa: F811
    """With the extension built, nothing buffered: no call of the transport's write (asyncio's
    transport takes an instance attribute, so the calls are counted there)."""

    async def main() -> int:
        ws, proto, peer = await open_pair(Role.CLIENT)
        transport: Any = proto.transport
        calls: list[int] = []
        if loop_kind == "asyncio":
            write = transport.write
            transport.write = lambda data: (calls.append(len(data)), write(data))[0]
        try:
            for i in range(10):
                ws.send(b"%d" % i)
                await read_exactly(peer, 7)
            return len(calls)
        finally:
            transport.abort()
            peer.close()

    calls = run(main())
    if loop_kind == "asyncio":
        assert calls == (0 if send_impl == "c" else 10)
