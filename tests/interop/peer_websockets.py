"""The websockets package (asyncio API) as a client and as a server, driven for the matrix."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import Sequence
from typing import Any

from interop_support import (
    TLS,
    CommandTarget,
    Got,
    PeerClient,
    PeerServer,
    got,
    payload,
    run_command,
    split,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)


def _compression(mode: str | None, client: bool) -> dict[str, Any]:
    factory = ClientPerMessageDeflateFactory if client else ServerPerMessageDeflateFactory
    if mode is None:
        return {"compression": None}
    if mode == "deflate":
        return {"compression": "deflate"}
    if mode == "no-takeover":
        return {"extensions": [factory(server_no_context_takeover=True,
                                       client_no_context_takeover=True)]}
    if mode == "window-9":
        return {"extensions": [factory(server_max_window_bits=9, client_max_window_bits=9)]}
    raise ValueError(mode)


def _params(ws: ClientConnection | ServerConnection) -> dict[str, Any]:
    for ext in ws.protocol.extensions:
        if isinstance(ext, PerMessageDeflate):
            return {
                "local_no_context_takeover": ext.local_no_context_takeover,
                "remote_no_context_takeover": ext.remote_no_context_takeover,
                "local_max_window_bits": ext.local_max_window_bits,
                "remote_max_window_bits": ext.remote_max_window_bits,
            }
    return {}


def _text_fragments(pieces: list[bytes]) -> list[str]:
    """websockets takes str fragments: a character cut in two moves to the next fragment."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    out = [decoder.decode(piece) for piece in pieces[:-1]]
    out.append(decoder.decode(pieces[-1], final=True))
    return out


def _close_of(ws: ClientConnection | ServerConnection) -> tuple[int | None, str]:
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        return None, ""
    return int(rcvd.code), rcvd.reason


class WebsocketsClient(PeerClient):
    name = "websockets"
    modes = (None, "deflate", "no-takeover", "window-9")

    def __init__(self) -> None:
        self.ws: ClientConnection | None = None

    async def connect(self, url: str, *, tls: TLS | None = None,
                      subprotocols: Sequence[str] = (), compression: str | None = None,
                      max_size: int = 1 << 20) -> None:
        self.ws = await connect(
            url, ssl=tls.client if tls else None, subprotocols=list(subprotocols) or None,
            max_size=max_size, ping_interval=None, **_compression(compression, True))

    async def send(self, kind: str, size: int) -> None:
        assert self.ws is not None
        await self.ws.send(payload(kind, size))

    async def send_text(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    async def send_fragments(self, kind: str, sizes: Sequence[int]) -> None:
        assert self.ws is not None
        data = payload(kind, sum(sizes))
        raw = data.encode() if isinstance(data, str) else data
        pieces = split(raw, sizes)
        await self.ws.send(_text_fragments(pieces) if kind == "text" else pieces)

    async def receive(self) -> Got:
        assert self.ws is not None
        return got(await self.ws.recv())

    async def ping(self, data: bytes) -> bytes:
        assert self.ws is not None
        waiter = await self.ws.ping(data)
        await waiter  # resolved by the pong carrying the same payload
        return data

    async def close(self, code: int | None, reason: str) -> tuple[int | None, str]:
        assert self.ws is not None
        assert code is not None, "websockets always sends a code"
        await self.ws.close(code, reason)
        return _close_of(self.ws)

    async def wait_closed(self, *, failed: bool = False) -> tuple[int | None, str]:
        assert self.ws is not None
        try:
            message = await self.ws.recv()
        except ConnectionClosed:
            pass
        else:
            raise AssertionError(f"expected a close, got a message {got(message)}")
        await self.ws.wait_closed()
        return _close_of(self.ws)

    async def negotiated(self) -> dict[str, Any]:
        assert self.ws is not None
        return {
            "subprotocol": self.ws.subprotocol,
            "extensions": [ext.name for ext in self.ws.protocol.extensions],
            "params": _params(self.ws),
        }

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class _Target(CommandTarget):
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    async def send_message(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def send_fragments(self, pieces: list[bytes], text: bool) -> None:
        await self.ws.send(_text_fragments(pieces) if text else pieces)

    async def ping(self, data: bytes) -> None:
        await (await self.ws.ping(data))

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    def info(self) -> dict[str, Any]:
        return {
            "subprotocol": self.ws.subprotocol,
            "extensions": [ext.name for ext in self.ws.protocol.extensions],
            "params": _params(self.ws),
        }


class WebsocketsServer(PeerServer):
    name = "websockets"
    modes = (None, "deflate", "no-takeover", "window-9")
    sees_pings = False

    def __init__(self) -> None:
        self.server: Server | None = None
        self.tls: TLS | None = None
        self.latest: ServerConnection | None = None
        self.received: list[Got] = []
        self.finished: asyncio.Event = asyncio.Event()

    async def _handler(self, ws: ServerConnection) -> None:
        self.latest = ws
        self.received = received = []
        self.finished.clear()
        path = ws.request.path if ws.request else ""
        try:
            if path == "/echo":
                async for message in ws:
                    received.append(got(message))
                    # The peer may have closed behind its messages: keep reading them.
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(message)
            elif path == "/cmd":
                target = _Target(ws)
                async for message in ws:
                    assert isinstance(message, str)
                    await run_command(target, message)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            self.finished.set()

    async def start(self, *, tls: TLS | None = None, subprotocols: Sequence[str] = (),
                    compression: str | None = None, max_size: int = 1 << 20) -> None:
        self.tls = tls
        supported = list(subprotocols)

        def select(connection: ServerConnection, offered: Sequence[str]) -> str | None:
            # Its documented rule is the server's order; without a match, go on without one
            # (its default refuses a client that offers none: not what the matrix tests).
            return next((p for p in supported if p in offered), None)

        self.server = await serve(
            self._handler, "127.0.0.1", 0, ssl=tls.server if tls else None,
            subprotocols=supported or None, select_subprotocol=select if supported else None,
            max_size=max_size, ping_interval=None, **_compression(compression, False))

    def url(self, path: str) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{port}{path}"

    async def messages(self) -> list[Got]:
        return list(self.received)

    async def pings(self) -> list[bytes]:
        return []  # websockets answers pings without telling

    async def close_seen(self) -> tuple[int | None, str]:
        await asyncio.wait_for(self.finished.wait(), 10)
        assert self.latest is not None
        return _close_of(self.latest)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
