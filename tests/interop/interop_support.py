"""Shared by the interop tests: payloads, message digests, the command protocol, wskit's side."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import wskit
from wskit.core.deflate import PerMessageDeflateFactory

# -- payloads -------------------------------------------------------------------------------
# Every peer builds the same payload from (kind, size), so no megabytes cross a pipe or a page
# boundary. node/payloads.js and the page in peer_chromium.py implement the same rules.

#: Repeated and cut to size for text: 1-, 2-, 3- and 4-byte UTF-8 sequences.
TEXT_UNIT = "wskit ✓ 😀 é € 𝄞 | "
#: A text with many 4-byte characters (outside the BMP, surrogate pairs in JS).
UNICODE_TEXT = "𝄞 music, 😀 smile, 🀄 mahjong, 𐍈 hwair, 🇫🇷 flag — wskit ✓ ñ € " * 4 + "😀" * 300

#: Sizes every pair exchanges, in bytes (text: bytes of UTF-8): around each length encoding.
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 65537)
BIG = 16 * 1024 * 1024
BIG_LIMIT = 32 * 1024 * 1024

#: Close codes an endpoint may send (RFC 6455 §7.4.1, IANA registry, private range).
CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999)
#: Ping payloads: empty, binary, the 125-byte maximum (RFC 6455 §5.5).
PING_PAYLOADS = (b"", b"\x00\xff ping \xfe", bytes(range(125)))
#: One byte over wskit's default message limit (1 MiB).
TOO_BIG = (1 << 20) + 1
#: What a browser's close() accepts.
BROWSER_CLOSE_CODES = (1000, 3000, 4000, 4999)


def close_reason(code: int | None) -> str:
    """A reason with non-ASCII text, so the reason's UTF-8 is checked on the way."""
    return "" if code is None else f"bye {code} ✓ 😀"


@functools.lru_cache(maxsize=64)
def payload(kind: str, size: int) -> str | bytes:
    """``text``: ``size`` bytes of UTF-8; ``binary``: a compressible pattern; ``noise``: not."""
    if kind == "text":
        unit = TEXT_UNIT.encode()
        raw = (unit * (size // len(unit) + 1))[:size]
        text = raw.decode("utf-8", "ignore")  # drops only a character cut at the end
        return text + "." * (size - len(text.encode()))
    if kind == "binary":
        return (bytes(range(251)) * (size // 251 + 1))[:size]
    if kind == "noise":
        out = bytearray(size)
        x = 2463534242
        for i in range(size):  # xorshift32: incompressible, and easy to repeat in JavaScript
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            out[i] = x & 0xFF
        return bytes(out)
    raise ValueError(kind)


def encoded(kind: str, size: int) -> bytes:
    data = payload(kind, size)
    return data.encode() if isinstance(data, str) else data


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """Cut ``data`` into pieces of these sizes (the last takes the rest)."""
    pieces, start = [], 0
    for n in sizes[:-1]:
        pieces.append(data[start:start + n])
        start += n
    pieces.append(data[start:])
    return pieces


#: Fragment layouts: empty fragments, 1-byte ones (cutting UTF-8 sequences), a 64 KiB one.
FRAGMENTS = ((0, 3, 0, 7, 1, 1, 1, 20), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10), (65536, 1, 100))


# -- digests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Got:
    """A message as summarised by whichever side received it: kind, bytes, SHA-256."""

    kind: str
    size: int
    sha: str
    text: str | None = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        return f"Got({self.kind}, {self.size} B, {self.sha[:12]})"


def got(message: str | bytes | bytearray | memoryview) -> Got:
    if isinstance(message, str):
        data = message.encode()
        return Got("text", len(data), hashlib.sha256(data).hexdigest(), message)
    data = bytes(message)
    return Got("binary", len(data), hashlib.sha256(data).hexdigest())


def expect(kind: str, size: int) -> Got:
    return got(payload(kind, size))


def got_from_json(obj: dict[str, Any] | None) -> Got | None:
    if obj is None:
        return None
    return Got(obj["kind"], obj["size"], obj["sha"], obj.get("text"))


# -- the command protocol -------------------------------------------------------------------
# Every server in the matrix serves /echo (echoes each message) and /cmd, where a client sends
# JSON text commands: send, send_text, fragments, ping (then the server answers "pong" once its
# ping has been answered), close, info (the server answers with what it negotiated).


class CommandTarget:
    """One server-side connection, as the command interpreter drives it."""

    async def send_message(self, data: str | bytes) -> None:
        raise NotImplementedError

    async def send_fragments(self, pieces: list[bytes], text: bool) -> None:
        raise NotImplementedError

    async def ping(self, data: bytes) -> None:
        """Send a ping and return once its pong arrived."""
        raise NotImplementedError

    async def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        raise NotImplementedError


async def run_command(target: CommandTarget, text: str) -> None:
    cmd = json.loads(text)
    op = cmd["op"]
    if op == "send":
        await target.send_message(payload(cmd["kind"], cmd["size"]))
    elif op == "send_text":
        await target.send_message(cmd["text"])
    elif op == "fragments":
        data = encoded(cmd["kind"], sum(cmd["sizes"]))
        await target.send_fragments(split(data, cmd["sizes"]), cmd["kind"] == "text")
    elif op == "ping":
        await target.ping(bytes.fromhex(cmd["payload"]))
        await target.send_message(json.dumps({"op": "pong", "payload": cmd["payload"]}))
    elif op == "close":
        await target.close(cmd["code"], cmd["reason"])
    elif op == "info":
        await target.send_message(json.dumps({"op": "info", **target.info()}))
    else:
        raise ValueError(f"unknown command {op!r}")


def cmd(op: str, **args: Any) -> str:
    return json.dumps({"op": op, **args})


# -- TLS ------------------------------------------------------------------------------------


@dataclass
class TLS:
    """A trustme CA, a certificate for 127.0.0.1 and localhost, and both contexts."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    #: PEM files, for the peers in other processes.
    ca_path: str
    cert_path: str
    key_path: str


# -- compression modes ----------------------------------------------------------------------
#: None: off; "deflate": the library's defaults; "no-takeover": both *_no_context_takeover;
#: "window-9": both windows limited to 9 bits (asked by a client, imposed by a server).
MODES = (None, "deflate", "no-takeover", "window-9")


def wskit_compression(mode: str | None, *, is_client: bool) -> Any:
    if mode is None or mode == "deflate":
        return mode
    if mode == "no-takeover":
        return PerMessageDeflateFactory(
            is_client=is_client, server_no_context_takeover=True, client_no_context_takeover=True)
    if mode == "window-9":
        return PerMessageDeflateFactory(
            is_client=is_client, server_max_window_bits=9, client_max_window_bits=9)
    raise ValueError(mode)


# -- wskit's server side --------------------------------------------------------------------


@dataclass
class ServerConn:
    """What the wskit server saw on one connection."""

    path: str
    subprotocol: str | None
    extensions: list[str]
    messages: list[Got] = field(default_factory=list)
    pings: list[bytes] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    closed: asyncio.Future[tuple[int | None, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    async def close_seen(self, timeout: float = 10.0) -> tuple[int | None, str]:
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)


class _WskitTarget(CommandTarget):
    def __init__(self, ws: wskit.WebSocket) -> None:
        self.ws = ws

    async def send_message(self, data: str | bytes) -> None:
        self.ws.send(data)

    async def send_fragments(self, pieces: list[bytes], text: bool) -> None:
        self.ws.send_fragments(pieces, text=text)

    async def ping(self, data: bytes) -> None:
        await self.ws.ping(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    def info(self) -> dict[str, Any]:
        return {"subprotocol": self.ws.subprotocol, "extensions": self.ws.extensions}


class WskitServer:
    """A wskit App with /echo, /cmd and (optionally) /page, recording each connection."""

    SUBPROTOCOLS = ("chat.v2", "chat.v1")

    def __init__(
        self,
        *,
        tls: TLS | None = None,
        compression: str | None = None,
        subprotocols: Sequence[str] = SUBPROTOCOLS,
        max_message_size: int = 1 << 20,
        page: str | None = None,
    ) -> None:
        self.tls = tls
        self.conns: list[ServerConn] = []
        self._new_conn = asyncio.Event()
        self.app = app = wskit.App(
            compression=wskit_compression(compression, is_client=False),
            subprotocols=subprotocols,
            max_message_size=max_message_size,
            ping_interval=None,
        )
        app.websocket("/echo", self._echo)
        app.websocket("/cmd", self._cmd)
        if page is not None:
            app.get("/page", lambda req: wskit.Response(page, content_type="text/html"))

    def _record(self, req: wskit.Request, ws: wskit.WebSocket) -> ServerConn:
        conn = ServerConn(req.path, ws.subprotocol, list(ws.extensions))
        self.conns.append(conn)
        self._new_conn.set()
        ws.on_ping(lambda ws, data: conn.pings.append(bytes(data)))
        return conn

    @staticmethod
    def _track(conn: ServerConn, ws: wskit.WebSocket, stream: wskit.Stream) -> None:
        def finished() -> None:
            if not conn.closed.done():
                conn.closed.set_result((ws.close_code, ws.close_reason))

        stream.catch(conn.errors.append).finally_(finished)

    def _echo(self, req: wskit.Request, ws: wskit.WebSocket) -> None:
        conn = self._record(req, ws)

        def echo(ws: wskit.WebSocket, message: str | bytes) -> None:
            conn.messages.append(got(message))
            ws.send(message)

        self._track(conn, ws, ws.on_text(echo))
        ws.on_binary(echo)

    def _cmd(self, req: wskit.Request, ws: wskit.WebSocket) -> None:
        conn = self._record(req, ws)
        target = _WskitTarget(ws)

        async def command(ws: wskit.WebSocket, text: str) -> None:
            await run_command(target, text)

        self._track(conn, ws, ws.on_text(command))

    async def __aenter__(self) -> WskitServer:
        await self.app.start("127.0.0.1", 0, ssl=self.tls.server if self.tls else None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.shutdown(timeout=5)

    def url(self, path: str) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://127.0.0.1:{self.app.port}{path}"

    def http_url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.app.port}{path}"

    async def conn(self, index: int = -1, timeout: float = 10.0) -> ServerConn:
        """The connection at ``index`` once it is open (-1: the latest one)."""
        async def wait() -> ServerConn:
            while not self.conns or (index >= 0 and len(self.conns) <= index):
                self._new_conn.clear()
                await self._new_conn.wait()
            return self.conns[index]

        return await asyncio.wait_for(wait(), timeout)


# -- a relay that counts bytes --------------------------------------------------------------


class CountingProxy:
    """A TCP relay in front of a server that counts the bytes going each way.

    It shows what reached the wire: whether compression compressed, in both directions.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.to_server = 0
        self.to_client = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> CountingProxy:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    def counts(self) -> tuple[int, int]:
        return self.to_server, self.to_client

    def check_compressed(self, before: tuple[int, int], on: bool) -> None:
        """After 4 x 64 KiB of repeated text each way: a few hundred bytes if compressed.

        (Text, whose period is short: the binary pattern repeats every 251 bytes, farther than
        zlib reaches back with a 9-bit window, 512 - 262 bytes.)
        """
        up, down = self.to_server - before[0], self.to_client - before[1]
        if on:
            assert up < 65536 and down < 65536, f"not compressed: {up} B up, {down} B down"
        else:
            assert up >= 4 * 65536 and down >= 4 * 65536, f"{up} B up, {down} B down"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            while data := await src.read(1 << 16):
                if up:
                    self.to_server += len(data)
                else:
                    self.to_client += len(data)
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            up_writer.close()


# -- small helpers --------------------------------------------------------------------------


async def gather_errors(checks: Sequence[tuple[str, Callable[[], Awaitable[None]]]]) -> list[str]:
    """Run labelled checks one after another; return the failures instead of stopping."""
    failures = []
    for label, check in checks:
        try:
            await check()
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")
    return failures


# -- the peers' side ------------------------------------------------------------------------


class PeerClient:
    """A client library driven through one interface; one connection at a time.

    ``receive`` answers pings while it waits (every peer does so by itself) and returns the
    next data message as a ``Got``; ``close`` starts the closing handshake and returns the
    code and reason the server answered with; ``wait_closed`` returns those of a close the
    server started (``failed``: wskit failed the connection, RFC 6455 §7.1.7, so a peer may
    call the close unclean). A Close frame without a code is reported as 1005.
    """

    name = "?"
    #: Codes its close() can send; None means a Close frame without a code.
    close_codes: tuple[int | None, ...] = CLOSE_CODES
    sends_fragments = True
    sends_pings = True
    #: Compression modes it can offer (see MODES).
    modes: tuple[str | None, ...] = (None,)
    #: Whether it answers a server's Close with the same code (RFC 6455 §5.5.1 "typically").
    echoes_close_code = True
    #: Whether it can send a text message that is not UTF-8 (to check wskit's 1007).
    sends_invalid_text = False
    #: Whether it fails the connection when it offered subprotocols and the server chose none
    #: (browsers must, per the WHATWG WebSocket standard; RFC 6455 lets a client go on).
    needs_subprotocol_answer = False

    async def connect(self, url: str, *, tls: TLS | None = None,
                      subprotocols: Sequence[str] = (), compression: str | None = None,
                      max_size: int = 1 << 20) -> None:
        raise NotImplementedError

    async def send(self, kind: str, size: int) -> None:
        raise NotImplementedError

    async def send_text(self, text: str) -> None:
        raise NotImplementedError

    async def send_fragments(self, kind: str, sizes: Sequence[int]) -> None:
        raise NotImplementedError

    async def send_invalid_text(self, data: bytes) -> None:
        """Send ``data`` (not UTF-8) as a text message."""
        raise NotImplementedError

    async def receive(self) -> Got:
        raise NotImplementedError

    async def ping(self, data: bytes) -> bytes:
        """Send a ping, return the payload of the pong that answered it."""
        raise NotImplementedError

    async def close(self, code: int | None, reason: str) -> tuple[int | None, str]:
        raise NotImplementedError

    async def wait_closed(self, *, failed: bool = False) -> tuple[int | None, str]:
        raise NotImplementedError

    async def negotiated(self) -> dict[str, Any]:
        """``subprotocol``, ``extensions`` (names) and, where the peer says, ``params``."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release everything (the connection if still open, processes, sessions)."""

    async def command(self, op: str, **args: Any) -> dict[str, Any] | None:
        """Send a /cmd command; for ping and info, return the server's JSON answer."""
        await self.send_text(cmd(op, **args))
        if op not in ("ping", "info"):
            return None
        answer = await self.receive()
        assert answer.text is not None, answer
        result: dict[str, Any] = json.loads(answer.text)
        return result


class PeerServer:
    """A server library serving /echo and /cmd (see ``run_command``), one at a time."""

    name = "?"
    close_codes: tuple[int, ...] = CLOSE_CODES
    sends_fragments = True
    modes: tuple[str | None, ...] = (None,)
    #: Subprotocol choice: "server" (its own order of preference) or "client" (the offer's).
    prefers = "server"
    echoes_close_code = True
    #: Whether it tells which pings it received.
    sees_pings = True
    #: Whether its /cmd understands send_raw_text (bytes that are not UTF-8, as a text message).
    sends_invalid_text = False

    async def start(self, *, tls: TLS | None = None, subprotocols: Sequence[str] = (),
                    compression: str | None = None, max_size: int = 1 << 20) -> None:
        raise NotImplementedError

    def url(self, path: str) -> str:
        raise NotImplementedError

    async def messages(self) -> list[Got]:
        """Every message the latest /echo connection received."""
        raise NotImplementedError

    async def pings(self) -> list[bytes]:
        """Payloads of the pings the latest connection received ([] if the peer can't tell)."""
        raise NotImplementedError

    async def close_seen(self) -> tuple[int | None, str]:
        """Code and reason of the Close frame the latest connection received."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError
