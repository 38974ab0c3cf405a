"""End-to-end test helpers: a running App on loopback, raw-socket peers, a tiny frame codec."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any

import wskit

# The values of RFC 6455 written out independently of the library under test.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA

#: A generous bound for things that should happen at once on loopback.
WAIT = 5.0


def quiet_app(**kwargs: Any) -> wskit.App:
    """An App without compression or keepalive unless asked: most tests are about other things."""
    kwargs.setdefault("compression", None)
    kwargs.setdefault("ping_interval", None)
    return wskit.App(**kwargs)


def quiet_connect(url: str, **kwargs: Any) -> Any:
    """``wskit.connect`` without compression or keepalive unless asked."""
    kwargs.setdefault("compression", None)
    kwargs.setdefault("ping_interval", None)
    return wskit.connect(url, **kwargs)


@asynccontextmanager
async def serving(app: wskit.App, *, ssl: Any = None, host: str = "127.0.0.1",
                  scheme: str | None = None) -> AsyncIterator[str]:
    """Start ``app`` on an ephemeral port; yields the base URL; shuts it down afterwards."""
    await app.start(host, 0, ssl=ssl)
    shown = f"[{host}]" if ":" in host else host
    scheme = scheme or ("wss" if ssl is not None else "ws")
    try:
        yield f"{scheme}://{shown}:{app.port}"
    finally:
        await app.shutdown(timeout=2.0)


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` is true, polling each loop iteration (bounded by ``timeout``)."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
          rsv: int = 0) -> bytes:
    """Encode one frame by hand (RFC 6455 §5.2); clients mask, servers do not."""
    head = bytearray([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + unmask(payload, key)


def unmask(payload: bytes, key: bytes) -> bytes:
    """XOR with the repeated 4-byte key (RFC 6455 §5.3), as one big-integer operation."""
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


class RawPeer:
    """One side of a TCP connection driven by hand: HTTP heads and frames, no library code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, mask: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.mask = mask

    # -- HTTP ------------------------------------------------------------------------------

    async def read_head(self) -> tuple[str, dict[str, str]]:
        """The start line and the header fields (names lower-cased) of the next HTTP head."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    async def read_response(self) -> tuple[int, dict[str, str], bytes]:
        start, headers = await self.read_head()
        status = int(start.split(" ")[1])
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), WAIT) if length else b""
        return status, headers, body

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    # -- frames ----------------------------------------------------------------------------

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> None:
        self.writer.write(frame(opcode, payload, fin=fin, mask=self.mask, rsv=rsv))

    async def recv(self, timeout: float = WAIT) -> tuple[int, bytes]:
        """The next frame's opcode and (unmasked) payload."""
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            key = await self.reader.readexactly(4) if b1 & 0x80 else b""
            payload = await self.reader.readexactly(n)
            if key:
                payload = unmask(payload, key)
            return b0 & 0x0F, payload

        return await asyncio.wait_for(read(), timeout)

    async def recv_until_close(self, timeout: float = WAIT) -> tuple[int, str]:
        """Skip frames (pings, messages) until a Close; returns its code and reason."""
        while True:
            opcode, payload = await self.recv(timeout)
            if opcode == CLOSE:
                if not payload:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def at_eof(self, timeout: float = WAIT) -> bool:
        """Read what is left until the peer closes the TCP connection; True at EOF."""
        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        with suppress(ConnectionResetError):
            await asyncio.wait_for(drain(), timeout)
        return True

    async def aclose(self) -> None:
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()


def upgrade_request(path: str = "/", host: str = "127.0.0.1", key: str | None = None,
                    extra: Iterable[tuple[str, str]] = (), *, method: str = "GET",
                    omit: Iterable[str] = ()) -> tuple[bytes, str]:
    """A client's opening handshake written by hand; returns the bytes and the key."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    fields = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"), *extra]
    skip = {name.lower() for name in omit}
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{n}: {v}" for n, v in fields if n.lower() not in skip]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


async def raw_client(port: int, path: str = "/", *, host: str = "127.0.0.1",
                     extra: Iterable[tuple[str, str]] = (), handshake: bool = True,
                     ssl: Any = None) -> RawPeer:
    """A raw client; with ``handshake`` it completes the opening handshake (101 checked)."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
    peer = RawPeer(reader, writer, mask=True)
    if handshake:
        request, key = upgrade_request(path, extra=extra)
        peer.write(request)
        start, headers = await peer.read_head()
        assert start.startswith("HTTP/1.1 101"), start
        assert headers["sec-websocket-accept"] == accept_value(key)
    return peer


async def http_get(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw HTTP request and read the response (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = RawPeer(reader, writer, mask=True)
    try:
        peer.write(request)
        return await peer.read_response()
    finally:
        await peer.aclose()


@asynccontextmanager
async def raw_server(
    handler: Callable[[RawPeer], Awaitable[None]], *, host: str = "127.0.0.1"
) -> AsyncIterator[int]:
    """A TCP server whose connections ``handler`` drives by hand; yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer(reader, writer, mask=False)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(peer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def accept_upgrade(peer: RawPeer, extra: str = "") -> dict[str, str]:
    """Read a client's upgrade request and answer 101 by hand; returns the request headers."""
    _, headers = await peer.read_head()
    peer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_value(headers['sec-websocket-key'])}\r\n{extra}\r\n"
        ).encode()
    )
    return headers


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
