"""The raw-socket peer of the conformance suite: hand-made handshakes, crafted frames, strict reads.

It checks RFC 6455 §4 (the opening handshake, done by hand on both sides), §5.1-§5.3 (what
wskit sends must be masked by a client, unmasked by a server, minimally encoded, with no
reserved bits) and §7 (when the TCP connection ends relative to the Close frame).

Nothing here uses wskit's own frame code: the peer encodes and parses frames itself, so a
bug in ``wskit.core.frames`` cannot hide behind the same bug in the test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import wskit

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "PING",
    "PONG",
    "ROLES",
    "TEXT",
    "Endpoint",
    "Frame",
    "Peer",
    "close_payload",
    "encode",
    "finish",
    "mask_payload",
    "open_endpoint",
    "open_peer",
]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN = {CONT, TEXT, BINARY, CLOSE, PING, PONG}
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The role wskit plays in a case: "server" (the peer is a raw client) or "client".
ROLES = ("server", "client")

#: How long the peer waits for a frame wskit owes it; only ever spent when a case fails.
FRAME_TIMEOUT = 3.0
#: How soon wskit must drop TCP once it has closed or failed the connection (§7.1.1, §7.1.7).
PROMPT_EOF = 1.0


def accept_key(key: str) -> str:
    """RFC 6455 §4.2.2 step 5.4, computed independently of wskit."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def mask_payload(data: bytes, key: bytes, offset: int = 0) -> bytes:
    """RFC 6455 §5.3 masking (its own inverse), fast enough for 16 MiB with big integers."""
    n = len(data)
    if n == 0:
        return b""
    rot = offset % 4
    key = key[rot:] + key[:rot]
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool,
    length: int | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """One frame exactly as told, rules broken on request.

    ``rsv`` is the 3-bit RSV1..RSV3 value (4 = RSV1); ``length`` declares a length other than
    the payload's; ``length_bytes`` (0, 2 or 8) forces an encoding of the length, even a
    non-minimal one.
    """
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode & 0x0F
    mbit = 0x80 if mask else 0
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 0x10000 else 8
    if length_bytes == 0:
        header = bytes((b0, mbit | n))
    elif length_bytes == 2:
        header = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + mask_payload(payload, key)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """A Close frame body; ``code=None`` gives the empty body."""
    if code is None:
        return reason
    return struct.pack("!H", code) + reason


@dataclass(frozen=True)
class Frame:
    """A frame as the peer read it from wskit (payload already unmasked)."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    def __repr__(self) -> str:
        names = {CONT: "CONT", TEXT: "TEXT", BINARY: "BINARY", CLOSE: "CLOSE", PING: "PING",
                 PONG: "PONG"}
        body = self.payload if len(self.payload) <= 40 else (
            self.payload[:20] + b"..." + self.payload[-8:])
        extra = "" if self.fin else " fin=0"
        extra += f" rsv={self.rsv}" if self.rsv else ""
        name = names.get(self.opcode, hex(self.opcode))
        return f"<{name} len={len(self.payload)} {body!r}{extra}>"


class EOF:
    """What the reader returns once wskit has closed the TCP connection."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset

    def __repr__(self) -> str:
        return "<EOF (reset)>" if self.reset else "<EOF>"


def parse_deflate(header: str) -> dict[str, str | None] | None:
    """The parameters of a permessage-deflate response header, or None if there is none."""
    for ext in header.split(","):
        name, *params = (part.strip() for part in ext.split(";"))
        if name == "permessage-deflate":
            parsed: dict[str, str | None] = {}
            for param in params:
                key, _, value = param.partition("=")
                parsed[key.strip()] = value.strip().strip('"') or None
            return parsed
    return None


class PeerDeflate:
    """The peer's own permessage-deflate codec (RFC 7692 §7), held strictly to the
    negotiated parameters: it inflates wskit's messages with the window wskit agreed to, and
    without context between messages when wskit agreed to that, so a breach shows."""

    def __init__(self, params: dict[str, str | None], *, peer_is_client: bool) -> None:
        own, other = ("client", "server") if peer_is_client else ("server", "client")
        self.own_bits = int(params.get(f"{own}_max_window_bits") or 15)
        self.own_reset = f"{own}_no_context_takeover" in params
        self.other_bits = int(params.get(f"{other}_max_window_bits") or 15)
        self.other_reset = f"{other}_no_context_takeover" in params
        self._compressor: Any = None
        self._decompressor: Any = None

    def compress(self, data: bytes, *, final_block: bool = False) -> bytes:
        """One message's compressed payload, its 00 00 ff ff tail removed (§7.2.1)."""
        if self._compressor is None:
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -max(self.own_bits, 9))
        if final_block:
            out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_FINISH)
            self._compressor = None
            return out
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        if self.own_reset:
            self._compressor = None
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.other_bits)
        # RFC 7692 §7.2.2: append the removed tail, then inflate.
        out = self._decompressor.decompress(data + b"\x00\x00\xff\xff")
        if self.other_reset:
            self._decompressor = None
        return bytes(out)


class Wire:
    """A raw non-blocking socket with a read buffer.

    Unlike asyncio streams, a failed write (wskit already dropped the connection) never throws
    away bytes wskit sent before it: the kernel still holds them, and reads return them first.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        #: None while open; then an ``EOF`` saying whether it was a reset.
        self.ended: EOF | None = None

    async def _fill(self) -> None:
        try:
            data = await self.loop.sock_recv(self.sock, 1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            self.ended = EOF(reset=True)
            return
        if not data:
            self.ended = EOF(reset=False)
        self.buffer += data

    async def read_exactly(self, n: int) -> bytes | None:
        """``n`` bytes, or None if the connection ended first (what was left stays buffered)."""
        while len(self.buffer) < n:
            if self.ended is not None:
                return None
            await self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def read_until(self, marker: bytes) -> bytes:
        while (at := self.buffer.find(marker)) < 0:
            if self.ended is not None:
                raise AssertionError(f"connection ended before {marker!r}: {bytes(self.buffer)!r}")
            await self._fill()
        data = bytes(self.buffer[: at + len(marker)])
        del self.buffer[: at + len(marker)]
        return data

    async def write(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    def close(self) -> None:
        # shutdown() sends the FIN even while the loop still polls the socket (uvloop).
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Peer:
    """One raw connection to wskit after the handshake: crafted frames out, checked frames in."""

    def __init__(
        self,
        role: str,
        wire: Wire,
        ws: wskit.WebSocket,
        *,
        deflate: PeerDeflate | None = None,
        handshake_headers: dict[str, str] | None = None,
    ) -> None:
        #: The role wskit plays: "server" or "client".
        self.role = role
        self.wire = wire
        #: wskit's own WebSocket object, to check what it reports.
        self.ws = ws
        #: Whether permessage-deflate was negotiated (RSV1 allowed on first data frames).
        #: The negotiated permessage-deflate, if any (RSV1 allowed on first data frames).
        self.deflate = deflate
        self.compressed = deflate is not None
        self.handshake_headers = handshake_headers or {}
        #: A peer acting as client masks; as server it does not (RFC 6455 §5.1).
        self.masks = role == "server"
        self.loop = asyncio.get_running_loop()
        self._pending: asyncio.Task[Frame | EOF] | None = None
        #: Loop time the Close frame from wskit arrived, and the time of the TCP close.
        self.close_at: float | None = None
        self.eof_at: float | None = None
        self.eof: EOF | None = None
        self.received: list[Frame] = []
        #: The masking keys of the frames wskit's client sent, in order.
        self.mask_keys: list[bytes] = []
        #: Whether a write found the connection already dropped by wskit.
        self.write_failed = False

    # -- sending -----------------------------------------------------------------------------

    def frame(self, opcode: int, payload: bytes = b"", **kw: Any) -> bytes:
        """Encode a frame masked as this side must (``mask=`` overrides it)."""
        kw.setdefault("mask", self.masks)
        return encode(opcode, payload, **kw)

    async def send(self, opcode: int, payload: bytes = b"", **kw: Any) -> None:
        await self.send_raw(self.frame(opcode, payload, **kw))

    async def send_raw(self, data: bytes, chunk: int | None = None) -> None:
        """Write bytes, at once or in ``chunk``-sized pieces each read by wskit on its own.

        Once wskit has dropped the connection, the rest is not sent (``write_failed`` tells);
        whether that was right is for the case's expectations to judge.
        """
        wire = self.wire
        try:
            if chunk is None:
                await wire.write(data)
                return
            for i in range(0, len(data), chunk):
                if self.eof is not None or wire.ended is not None:
                    self.write_failed = True
                    return
                await wire.write(data[i : i + chunk])
                # Let the loop run wskit's read of this piece before the next is written.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        except (ConnectionResetError, BrokenPipeError):
            self.write_failed = True

    async def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        await self.send(CLOSE, close_payload(code, reason))

    # -- receiving ---------------------------------------------------------------------------

    async def _read_frame(self) -> Frame | EOF:
        read = self.wire.read_exactly
        head = await read(2)
        if head is None:
            assert not self.wire.buffer, f"TCP closed inside a frame: {bytes(self.wire.buffer)!r}"
            assert self.wire.ended is not None
            return self.wire.ended
        b0, b1 = head
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._read_all(2))
            # RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
            assert n >= 126, f"wskit sent length {n} in a 16-bit field"
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._read_all(8))
            assert n >= 0x10000, f"wskit sent length {n} in a 64-bit field"
            assert not n >> 63, "wskit set the top bit of a 64-bit length"
        key = await self._read_all(4) if masked else b""
        payload = await self._read_all(n)
        # RFC 6455 §5.1 / §5.3: a client masks every frame, a server never does.
        if self.role == "client":
            assert masked, "wskit's client sent an unmasked frame (RFC 6455 §5.3)"
            self.mask_keys.append(key)
            payload = mask_payload(payload, key)
        else:
            assert not masked, "wskit's server sent a masked frame (RFC 6455 §5.1)"
        assert opcode in _KNOWN, f"wskit sent reserved opcode {opcode:#x}"
        if opcode >= 8:
            # RFC 6455 §5.5: control frames are final and carry at most 125 bytes.
            assert fin and n <= 125, f"wskit sent a bad control frame fin={fin} len={n}"
            assert rsv == 0, f"wskit set RSV={rsv} on a control frame"
        elif not (self.compressed and rsv == 4 and opcode != CONT):
            # RFC 6455 §5.2 / RFC 7692 §6: RSV1 only on a compressed message's first frame.
            assert rsv == 0, f"wskit set RSV={rsv} on a data frame"
        return Frame(opcode, payload, fin, rsv)

    async def _read_all(self, n: int) -> bytes:
        data = await self.wire.read_exactly(n)
        assert data is not None, f"TCP closed inside a frame: {bytes(self.wire.buffer)!r}"
        return data

    async def next(self, timeout: float = FRAME_TIMEOUT) -> Frame | EOF:
        """The next thing wskit sends: a frame, or EOF. Raises TimeoutError after ``timeout``.

        A read that times out is kept, so a later call gets its frame (nothing is lost).
        """
        if self.eof is not None:
            return self.eof
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read_frame())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            raise TimeoutError(f"nothing from wskit within {timeout} s")
        task, self._pending = self._pending, None
        item = task.result()
        now = self.loop.time()
        if isinstance(item, EOF):
            self.eof, self.eof_at = item, now
        else:
            self.received.append(item)
            if item.opcode == CLOSE:
                assert self.close_at is None, "wskit sent a second Close frame"
                self.close_at = now
                # RFC 6455 §5.5.1: a close body is empty or a code with a UTF-8 reason.
                assert len(item.payload) != 1, "wskit sent a 1-byte close body"
                item.payload[2:].decode()
        return item

    async def expect(self, opcode: int, payload: bytes | None = None, *,
                     timeout: float = FRAME_TIMEOUT) -> Frame:
        """The next frame must be a final frame of this opcode (and payload, if given)."""
        try:
            item = await self.next(timeout)
        except TimeoutError:
            raise AssertionError(
                f"expected {Frame(opcode, payload or b'')!r}, got nothing in {timeout} s") from None
        want = Frame(opcode, item.payload if payload is None else payload)
        assert isinstance(item, Frame), f"expected {want!r}, but wskit closed TCP: {item!r}"
        got = Frame(item.opcode, item.payload)
        if got != want:
            raise AssertionError(f"expected {want!r}, got {item!r}")
        assert item.fin, f"expected a final frame, got {item!r}"
        return item

    async def expect_message(self, opcode: int, payload: bytes) -> bool:
        """wskit echoes a message; it may fragment it, so frames are joined (RFC 6455 §5.4).
        Returns whether it came compressed (RSV1, RFC 7692 §6)."""
        first = await self.expect_frame_of(opcode)
        parts = [first.payload]
        last = first
        while not last.fin:
            last = await self.expect_frame_of(CONT)
            parts.append(last.payload)
        data = b"".join(parts)
        if first.rsv & 4:
            assert self.deflate is not None
            data = self.deflate.decompress(data)
        if data != payload:
            shown = Frame(opcode, data)
            raise AssertionError(f"expected echo {Frame(opcode, payload)!r}, got {shown!r}")
        return bool(first.rsv & 4)

    async def expect_frame_of(self, opcode: int) -> Frame:
        try:
            item = await self.next()
        except TimeoutError:
            raise AssertionError(f"expected a frame of opcode {opcode:#x}, got nothing") from None
        assert isinstance(item, Frame), f"expected opcode {opcode:#x}, but TCP closed: {item!r}"
        assert item.opcode == opcode, f"expected opcode {opcode:#x}, got {item!r}"
        return item

    async def expect_close(self, code: int | None, *, timeout: float = FRAME_TIMEOUT) -> Frame:
        """The next frame must be a Close with ``code`` (None: an empty body)."""
        try:
            item = await self.next(timeout)
        except TimeoutError:
            raise AssertionError(f"expected a Close {code}, got nothing in {timeout} s") from None
        assert isinstance(item, Frame), f"expected a Close {code}, but TCP closed: {item!r}"
        assert item.opcode == CLOSE, f"expected a Close {code}, got {item!r}"
        if code is None:
            assert item.payload == b"", f"expected an empty Close, got {item!r}"
        else:
            assert item.close_code == code, f"expected Close {code}, got {item.close_code}"
        return item

    async def expect_eof(self, within: float = PROMPT_EOF) -> float:
        """wskit must close TCP within ``within`` s, sending nothing more; returns when it did."""
        start = self.loop.time()
        try:
            item = await self.next(within)
        except TimeoutError:
            raise AssertionError(f"wskit did not close the TCP connection within {within} s") \
                from None
        assert isinstance(item, EOF), f"expected the TCP close, got {item!r}"
        assert self.eof_at is not None
        return self.eof_at - start

    async def expect_open(self, duration: float) -> None:
        """Nothing at all must arrive for ``duration`` s (wskit keeps the connection open)."""
        try:
            item = await self.next(duration)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence for {duration} s, got {item!r}")

    async def expect_failure(self, code: int) -> None:
        """RFC 6455 §7.1.7: wskit fails the connection: a Close ``code`` (nothing before
        it), then the TCP close, and reports ``code`` itself."""
        await self.expect_close(code)
        await self.expect_eof()
        assert self.eof is not None and self.eof_at is not None and self.close_at is not None
        # The TCP close follows the Close frame promptly, and as a FIN: a reset could make the
        # peer lose the Close frame (RFC 6455 §7.1.1: the TCP close is clean).
        assert self.eof_at - self.close_at <= PROMPT_EOF
        assert not self.eof.reset, "wskit reset the connection instead of closing it"
        await self.wskit_closed(code)

    async def wskit_closed(self, code: int | None, within: float = PROMPT_EOF) -> None:
        """wskit's WebSocket ends, reporting ``code``."""
        try:
            await asyncio.wait_for(self.ws.wait_closed(), within)
        except asyncio.TimeoutError:
            raise AssertionError(f"wskit's WebSocket not closed within {within} s") from None
        assert self.ws.close_code == code, f"wskit reports close code {self.ws.close_code}"
        error = self.ws.error
        # The peer's fault or the close itself may be the error: never a listener that failed.
        assert error is None or isinstance(error, (wskit.RemoteError, wskit.ConnectionClosed)), (
            f"wskit error: {error!r}")

    async def close_handshake(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """The peer starts a clean closing handshake (RFC 6455 §7.1.2, §5.5.1, §7.1.1):
        wskit answers with the same code; then the server drops TCP at once, while a client
        waits for its server to do so."""
        await self.send_close(code, reason)
        await self.expect_close(code)
        await self.finish_after_close(1005 if code is None else code)

    async def finish_after_close(self, code: int) -> None:
        """The closing handshake is complete: check who ends TCP (RFC 6455 §7.1.1)."""
        if self.role == "server":
            await self.expect_eof()
        else:
            self.wire.close()
        await self.wskit_closed(code)

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with suppress(BaseException):
                await self._pending
        self.wire.close()


def _echo(ws: wskit.WebSocket) -> None:
    ws.on_text(lambda ws, text: ws.send(text))
    ws.on_binary(lambda ws, data: ws.send(data))


async def _read_head(wire: Wire) -> tuple[str, dict[str, str]]:
    head = await asyncio.wait_for(wire.read_until(b"\r\n\r\n"), FRAME_TIMEOUT)
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class Endpoint:
    """A wskit echo endpoint of one role, and the raw side that connects to it.

    ``role="server"``: a wskit ``App`` serves ``/echo`` and ``connect()`` opens a hand-made
    client connection to it (offering ``offer`` as Sec-WebSocket-Extensions). ``role="client"``:
    a hand-made listener, and ``connect()`` runs ``wskit.connect`` against it (answering with
    ``answer`` as Sec-WebSocket-Extensions). Many connections can share one endpoint.
    """

    def __init__(self, role: str, *, compression: Any = None, offer: str | None = None,
                 answer: str | None = None,
                 setup: Callable[[wskit.WebSocket], Any] | None = None,
                 early: bytes = b"",
                 **options: Any) -> None:
        if role not in ROLES:
            raise ValueError(role)
        options.setdefault("close_timeout", 1.0)
        options.setdefault("ping_interval", None)
        self.role = role
        self.compression = compression
        self.offer = offer
        self.answer = answer
        self.setup = setup or _echo
        #: Frames written in the same write as the handshake (request or 101 response).
        self.early = early
        self.options = options
        self.app: wskit.App | None = None
        self.listener: socket.socket | None = None
        # The server's WebSocket of each raw connection, by the raw side's address.
        self._opened: dict[Any, asyncio.Future[wskit.WebSocket]] = {}
        # The raw server's side of each wskit client, by the client's address.
        self._accepted: dict[Any, asyncio.Future[tuple[Wire, dict[str, str]]]] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        if self.role == "server":
            app = self.app = wskit.App(compression=self.compression, **self.options)

            if inspect.iscoroutinefunction(self.setup):
                # A coroutine handler, e.g. one that reads with ``async for``.
                async def handler(req: Any, ws: wskit.WebSocket) -> None:
                    self._opened_future(tuple(ws.remote_address)).set_result(ws)
                    await self.setup(ws)  # type: ignore[misc]
            else:
                def handler(req: Any, ws: wskit.WebSocket) -> None:  # type: ignore[misc]
                    self.setup(ws)
                    self._opened_future(tuple(ws.remote_address)).set_result(ws)

            app.websocket("/echo", handler)

            await app.start("127.0.0.1", 0)
        else:
            listener = self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            listener.listen(100)
            listener.setblocking(False)

    def _opened_future(self, address: Any) -> asyncio.Future[wskit.WebSocket]:
        if address not in self._opened:
            self._opened[address] = asyncio.get_running_loop().create_future()
        return self._opened[address]

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.shutdown(timeout=1.0)
        for task in self._tasks:
            task.cancel()
        if self.listener is not None:
            self.listener.close()

    async def connect(self) -> Peer:
        if self.role == "server":
            return await self._connect_to_server()
        return await self._connect_client()

    async def _connect_to_server(self) -> Peer:
        assert self.app is not None
        loop = asyncio.get_running_loop()
        port = self.app.port
        wire = Wire(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            await loop.sock_connect(wire.sock, ("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
            )
            if self.offer is not None:
                request += f"Sec-WebSocket-Extensions: {self.offer}\r\n"
            await wire.write((request + "\r\n").encode() + self.early)
            status, headers = await _read_head(wire)
            # RFC 6455 §4.2.2: 101 and the accept value computed from our key.
            assert status.startswith("HTTP/1.1 101"), status
            assert headers.get("sec-websocket-accept") == accept_key(key), headers
            address = tuple(wire.sock.getsockname())
            ws = await asyncio.wait_for(self._opened_future(address), FRAME_TIMEOUT)
            del self._opened[address]
        except BaseException:
            wire.close()
            raise
        params = parse_deflate(headers.get("sec-websocket-extensions", ""))
        deflate = None if params is None else PeerDeflate(params, peer_is_client=True)
        return Peer("server", wire, ws, deflate=deflate, handshake_headers=headers)

    async def _accept(self) -> None:
        """Answer one wskit client, filing the connection under the client's address."""
        assert self.listener is not None
        sock, address = await asyncio.get_running_loop().sock_accept(self.listener)
        wire = Wire(sock)
        accepted = self._accepted_future(tuple(address))
        try:
            request, headers = await _read_head(wire)
            assert request.startswith("GET /echo HTTP/1.1"), request
            response = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n"
            )
            if self.answer is not None:
                response += f"Sec-WebSocket-Extensions: {self.answer}\r\n"
            await wire.write((response + "\r\n").encode() + self.early)
        except Exception as exc:
            wire.close()
            accepted.set_exception(exc)
            return
        accepted.set_result((wire, headers))

    def _accepted_future(self, address: Any) -> asyncio.Future[tuple[Wire, dict[str, str]]]:
        if address not in self._accepted:
            self._accepted[address] = asyncio.get_running_loop().create_future()
        return self._accepted[address]

    async def _connect_client(self) -> Peer:
        assert self.listener is not None
        port = self.listener.getsockname()[1]
        # One accept per connect; each files what it accepted under the client's address.
        self._tasks.add(asyncio.ensure_future(self._accept()))
        ws = await wskit.connect(f"ws://127.0.0.1:{port}/echo", compression=self.compression,
                                 open_timeout=FRAME_TIMEOUT, **self.options)
        # Listeners are set before the peer sends its first frame (same loop, no race).
        if inspect.iscoroutinefunction(self.setup):
            self._tasks.add(asyncio.ensure_future(self.setup(ws)))
        else:
            self.setup(ws)
        address = tuple(ws._protocol.transport.get_extra_info("sockname"))
        try:
            wire, headers = await asyncio.wait_for(self._accepted_future(address),
                                                   FRAME_TIMEOUT)
        except BaseException:
            ws._protocol.abort()
            raise
        finally:
            del self._accepted[address]
        deflate = None
        if ws.extensions:
            params = parse_deflate(self.answer or "")
            assert params is not None, (self.answer, ws.extensions)
            deflate = PeerDeflate(params, peer_is_client=False)
        return Peer("client", wire, ws, deflate=deflate, handshake_headers=headers)


async def finish(peer: Peer) -> None:
    """Release a peer's connection, and wskit's side with it."""
    await peer.aclose()
    ws = peer.ws
    if not ws.is_closed:
        ws._protocol.abort()
        with suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 1.0)


@asynccontextmanager
async def open_endpoint(role: str, **options: Any) -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(role, **options)
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.stop()


@asynccontextmanager
async def open_peer(role: str, **options: Any) -> AsyncIterator[Peer]:
    """A raw peer connected to a fresh wskit echo endpoint playing ``role`` (see ``Endpoint``;
    ``options`` go to ``App`` or ``connect``, like ``max_message_size`` or ``close_timeout``;
    keepalive pings are off)."""
    async with open_endpoint(role, **options) as endpoint:
        peer = await endpoint.connect()
        try:
            yield peer
        finally:
            await finish(peer)
