"""The fixed echo server that clients are measured against: parses headers, replays replies."""

from __future__ import annotations

import asyncio
import base64
import hashlib

from bench.common import BACKLOG, HOST, OP_CLOSE, mask, server_frame

# A client library is only measured fairly if its peer is much cheaper than it is. A real
# WebSocket server costs a syscall or more per message (picows writes each frame on its own),
# about as much as the fastest clients. This one reads frame headers only: the first frame of
# each (first byte, length) on a connection is unmasked and echoed for real, and its reply is
# then replayed for every later frame with the same header, without touching the payload, so
# a 1 MiB message costs a few bytes of parsing. All replies to one read go out in one write.
# It is a benchmark peer, not a WebSocket server: it assumes a client repeats its message.

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16384


class FixedEcho(asyncio.Protocol):
    """One connection: hand-made upgrade, then header-only echo with cached replies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.handshaking = True
        self.buf = bytearray()
        self.skip = 0  # payload bytes of a replayed frame still to arrive
        self.cache: dict[tuple[int, int], bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_HEAD:
                    self.transport.abort()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            data = bytes(self.buf[end + 4 :])
            self.buf = bytearray()
            self.handshaking = False
            key = ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            if not data:
                return
        n = len(data)
        pos = 0
        if self.skip:
            pos = min(self.skip, n)
            self.skip -= pos
            if pos == n:
                return
        if self.buf:
            self.buf += data[pos:] if pos else data
            data, pos, n = bytes(self.buf), 0, len(self.buf)
            self.buf = bytearray()
        out: list[bytes] = []
        cache = self.cache
        while n - pos >= 2:
            b0, ln = data[pos], data[pos + 1] & 0x7F
            hl = 6
            if ln == 126:
                hl = 8
                if n - pos < hl:
                    break
                ln = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif ln == 127:
                hl = 14
                if n - pos < hl:
                    break
                ln = int.from_bytes(data[pos + 2 : pos + 10], "big")
            reply = cache.get((b0, ln))
            if reply is not None:
                out.append(reply)
                end = pos + hl + ln
                if end > n:
                    self.skip = end - n
                    pos = n
                    break
                pos = end
                continue
            if n - pos < hl + ln:
                break  # a first-of-its-kind frame is echoed only once it is whole
            key = data[pos + hl - 4 : pos + hl]
            payload = mask(data[pos + hl : pos + hl + ln], key)
            op = b0 & 0x0F
            pos += hl + ln
            if op == OP_CLOSE:
                out.append(server_frame(OP_CLOSE, payload[:2]))
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            if op == 0x9:  # ping
                out.append(server_frame(0xA, payload))
            elif op in (0x1, 0x2) and b0 & 0x80:
                reply = server_frame(op, payload)
                cache[(b0, ln)] = reply
                out.append(reply)
        if pos < n:
            self.buf += data[pos:]
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))


async def serve_fixed(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(FixedEcho, HOST, port, backlog=BACKLOG)
    await asyncio.Event().wait()
