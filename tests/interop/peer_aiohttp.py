"""The aiohttp package as a client (ws_connect) and a server (WebSocketResponse)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from interop_support import (
    TLS,
    CommandTarget,
    Got,
    PeerClient,
    PeerServer,
    got,
    payload,
    run_command,
)

# aiohttp answers pings itself only inside receive() and then hides the pongs; the adapters
# turn autoping off to see pongs, and answer pings with aiohttp's own pong().
_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


def _close_code(data: Any) -> int | None:
    # aiohttp reports a Close frame without a code as code 0.
    return 1005 if not data else int(data)


class AiohttpClient(PeerClient):
    name = "aiohttp"
    sends_fragments = False  # no API for it
    modes = (None, "deflate", "window-9")  # it cannot ask for no context takeover
    echoes_close_code = False  # answers every Close with 1000

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.close_rcvd: tuple[int | None, str] | None = None

    async def connect(self, url: str, *, tls: TLS | None = None,
                      subprotocols: Sequence[str] = (), compression: str | None = None,
                      max_size: int = 1 << 20) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        compress = {None: 0, "deflate": 15, "window-9": 9}[compression]
        self.close_rcvd = None
        self.ws = await self.session.ws_connect(
            url, ssl=tls.client if tls else True, protocols=list(subprotocols),
            compress=compress, max_msg_size=max_size, autoping=False, autoclose=True)

    async def send(self, kind: str, size: int) -> None:
        assert self.ws is not None
        data = payload(kind, size)
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def send_text(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def _next(self, want_pong: bool = False) -> aiohttp.WSMessage:
        """The next message, answering pings; pongs are returned only when asked for."""
        assert self.ws is not None
        while True:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.PING:
                await self.ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                if want_pong:
                    return msg
            else:
                if msg.type is WSMsgType.CLOSE:
                    self.close_rcvd = (_close_code(msg.data), msg.extra or "")
                return msg

    async def receive(self) -> Got:
        msg = await self._next()
        assert msg.type in _DATA, f"expected a message, got {msg.type.name} {msg.data!r}"
        return got(msg.data)

    async def ping(self, data: bytes) -> bytes:
        assert self.ws is not None
        await self.ws.ping(data)
        msg = await self._next(want_pong=True)
        assert msg.type is WSMsgType.PONG, f"expected a pong, got {msg.type.name}"
        return bytes(msg.data)

    async def close(self, code: int | None, reason: str) -> tuple[int | None, str]:
        assert self.ws is not None and code is not None
        await self.ws.close(code=code, message=reason.encode())
        # close() reads up to the server's Close frame but keeps only its code.
        return self.ws.close_code, ""

    async def wait_closed(self, *, failed: bool = False) -> tuple[int | None, str]:
        msg = await self._next()
        assert msg.type is WSMsgType.CLOSE, f"expected a close, got {msg.type.name}"
        assert self.ws is not None
        await self.ws.close()
        assert self.close_rcvd is not None
        return self.close_rcvd

    async def negotiated(self) -> dict[str, Any]:
        assert self.ws is not None
        ws = self.ws
        return {
            "subprotocol": ws.protocol,
            "extensions": ["permessage-deflate"] if ws.compress else [],
            "params": {"window_bits": ws.compress, "no_context_takeover": ws.client_notakeover},
        }

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


class _Target(CommandTarget):
    def __init__(self, ws: web.WebSocketResponse, server: AiohttpServer) -> None:
        self.ws = ws
        self.server = server

    async def send_message(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def send_fragments(self, pieces: list[bytes], text: bool) -> None:
        raise AssertionError("aiohttp cannot send fragments")

    async def ping(self, data: bytes) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.server.pong_waiters.append(waiter)
        await self.ws.ping(data)
        assert await waiter == data

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())

    def info(self) -> dict[str, Any]:
        return {
            "subprotocol": self.ws.ws_protocol,
            "extensions": ["permessage-deflate"] if self.ws.compress else [],
        }


class AiohttpServer(PeerServer):
    name = "aiohttp"
    sends_fragments = False
    modes = (None, "deflate")  # its server takes what the client asks for
    prefers = "client"  # it walks the client's offer, not its own list
    echoes_close_code = False

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.tls: TLS | None = None
        self.port = 0
        self.received: list[Got] = []
        self.ping_payloads: list[bytes] = []
        self.pong_waiters: list[asyncio.Future[bytes]] = []
        self.close_rcvd: tuple[int | None, str] | None = None
        self.finished = asyncio.Event()

    async def start(self, *, tls: TLS | None = None, subprotocols: Sequence[str] = (),
                    compression: str | None = None, max_size: int = 1 << 20) -> None:
        assert compression in self.modes
        self.tls = tls

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(protocols=list(subprotocols), compress=bool(compression),
                                       max_msg_size=max_size, autoping=False)
            await ws.prepare(request)
            self.received, self.ping_payloads, self.close_rcvd = [], [], None
            self.finished.clear()
            target = _Target(ws, self)
            commands: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            commands.set_result(None)
            try:
                while True:  # not `async for`: it hides the CLOSE message and its reason
                    msg = await ws.receive()
                    if msg.type is WSMsgType.PING:
                        self.ping_payloads.append(msg.data)
                        await ws.pong(msg.data)
                    elif msg.type is WSMsgType.PONG:
                        if self.pong_waiters:
                            self.pong_waiters.pop(0).set_result(msg.data)
                    elif request.path == "/echo" and msg.type in _DATA:
                        self.received.append(got(msg.data))
                        await target.send_message(msg.data)
                    elif msg.type is WSMsgType.TEXT:
                        # A ping command waits for a pong that this loop has to read: it runs
                        # in a task. The others run here, in order (a close() from another
                        # task would make aiohttp drop the connection without the answer).
                        command = run_command(target, msg.data)
                        if json.loads(msg.data)["op"] == "ping":
                            commands = asyncio.ensure_future(self._after(commands, command))
                        else:
                            await commands
                            await command
                    elif msg.type is WSMsgType.CLOSE:  # autoclose has answered it
                        self.close_rcvd = (_close_code(msg.data), msg.extra or "")
                        break
                    elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
            finally:
                await commands
                if self.close_rcvd is None and ws.close_code is not None:
                    self.close_rcvd = (ws.close_code, "")
                self.finished.set()
            return ws

        app = web.Application()
        app.router.add_get("/echo", handler)
        app.router.add_get("/cmd", handler)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=tls.server if tls else None)
        await site.start()
        self.port = self.runner.addresses[0][1]

    @staticmethod
    async def _after(previous: asyncio.Future[None], command: Coroutine[Any, Any, None]) -> None:
        await previous
        await command

    def url(self, path: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{path}"

    async def messages(self) -> list[Got]:
        return list(self.received)

    async def pings(self) -> list[bytes]:
        return list(self.ping_payloads)

    async def close_seen(self) -> tuple[int | None, str]:
        await asyncio.wait_for(self.finished.wait(), 10)
        assert self.close_rcvd is not None
        return self.close_rcvd

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
