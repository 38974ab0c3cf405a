"""wskit under uvicorn as its ASGI WebSocket protocol, against client peers (Chromium included):
a Starlette app serves the page, the echo and the closes; the peers cannot tell it is ASGI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgi_util import uvicorn_serving
from interop_peers import clients
from interop_support import (
    BIG_LIMIT,
    SIZES,
    TOO_BIG,
    UNICODE_TEXT,
    Got,
    PeerClient,
    close_reason,
    expect,
    got,
)
from peer_chromium import PAGE
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

pytestmark = pytest.mark.interop

Run = Callable[..., Any]
Factory = Callable[[], PeerClient]

#: The peers of the "ASGI (uvicorn)" column of MATRIX.md.
PEERS = clients(lambda cls: cls.name in ("websockets", "aiohttp", "chromium"))


class AsgiServer:
    """A Starlette app under uvicorn with wskit's ws protocol; records what its endpoints saw."""

    def __init__(self, **uvicorn_options: Any) -> None:
        self.options = uvicorn_options
        self.messages: list[Got] = []
        self.disconnects: list[dict[str, Any]] = []
        self.subprotocols: list[str | None] = []
        self.changed = asyncio.Event()
        routes = [
            Route("/page", lambda request: HTMLResponse(PAGE)),
            WebSocketRoute("/echo", self.echo),
            WebSocketRoute("/close/{code:int}", self.close),
            WebSocketRoute("/deny", self.deny),
        ]
        self.app = Starlette(routes=routes)
        self.port = 0
        self.uvicorn: Any = None

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def echo(self, ws: WebSocket) -> None:
        chosen = next((p for p in ("chat.v2", "chat.v1") if p in ws.scope["subprotocols"]), None)
        await ws.accept(subprotocol=chosen)
        self.subprotocols.append(chosen)
        can_send = True
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.append(message)
                self.changed.set()
                return
            data = message.get("text")
            data = message["bytes"] if data is None else data
            self.messages.append(got(data))
            # Messages right before the peer's Close are answered once the connection may be
            # gone: that send raises (an OSError, as ASGI 2.4 says), and receive goes on.
            if can_send:
                try:
                    if isinstance(data, str):
                        await ws.send_text(data)
                    else:
                        await ws.send_bytes(data)
                except WebSocketDisconnect:
                    can_send = False

    async def close(self, ws: WebSocket) -> None:
        code = ws.path_params["code"]
        await ws.accept()
        await ws.close(code, close_reason(code))

    async def deny(self, ws: WebSocket) -> None:
        await ws.close()

    async def disconnect(self) -> dict[str, Any]:
        while not self.disconnects:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)
        return self.disconnects.pop(0)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AsgiServer]:
        async with uvicorn_serving(self.app, **self.options) as (uvicorn_server, port):
            self.port = port
            self.uvicorn = uvicorn_server
            yield self


@contextlib.asynccontextmanager
async def peer_of(factory: Factory) -> AsyncIterator[PeerClient]:
    peer = factory()
    try:
        yield peer
    finally:
        await peer.aclose()


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_echo(run: Run, client: Factory, kind: str) -> None:
    """Every size around the length encodings, both ways, in order, through the ASGI app."""
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            for size in SIZES:
                await peer.send(kind, size)
            echoed = [await peer.receive() for _ in SIZES]
            expected = [expect(kind, size) for size in SIZES]
            assert echoed == expected
            assert server.messages == expected
            await peer.send_text(UNICODE_TEXT)
            assert await peer.receive() == got(UNICODE_TEXT)
            assert await peer.close(1000, "") == (1000, "")

    run(main())


#: Large messages through the ASGI app (the 16 MiB cases of wskit's own server are in
#: test_interop_server.py; a browser takes seconds to build and hash one).
LARGE = 4 * 1024 * 1024


@pytest.mark.parametrize("loop_kind", ["uvloop"])  # once per peer: the slow case
@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_big_messages_compressed(run: Run, client: Factory) -> None:
    """4 MiB both ways with permessage-deflate (uvicorn's ws_max_size raised)."""
    async def main() -> None:
        async with AsgiServer(ws_max_size=BIG_LIMIT).running() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"), compression="deflate", max_size=BIG_LIMIT)
            assert "permessage-deflate" in (await peer.negotiated())["extensions"]
            for kind in ("text", "binary"):
                await peer.send(kind, LARGE)
                assert await peer.receive() == expect(kind, LARGE)
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_close_from_peer_reaches_the_app(run: Run, client: Factory) -> None:
    """The peer's close code and reason arrive as the app's websocket.disconnect."""
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            for code in peer.close_codes:
                await peer.connect(server.url("/echo"))
                answer = await peer.close(code, close_reason(code))
                wire = 1005 if code is None else code
                assert await server.disconnect() == {
                    "type": "websocket.disconnect", "code": wire, "reason": close_reason(code)}
                assert answer[0] == wire or not peer.echoes_close_code

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_close_from_the_app_reaches_the_peer(run: Run, client: Factory) -> None:
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            for code in (1000, 1001, 1008, 1011, 3000, 4999):
                await peer.connect(server.url(f"/close/{code}"))
                assert await peer.wait_closed() == (code, close_reason(code))

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_messages_then_close(run: Run, client: Factory) -> None:
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            sent = [("text", 10), ("binary", 70000), ("text", 0), ("binary", 3)]
            for kind, size in sent:
                await peer.send(kind, size)
            await peer.close(3000, "after four")
            assert (await server.disconnect())["code"] == 3000
            assert server.messages == [expect(kind, size) for kind, size in sent]

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_subprotocol_chosen_by_the_app(run: Run, client: Factory) -> None:
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"), subprotocols=["chat.v1", "chat.v2"])
            assert (await peer.negotiated())["subprotocol"] == "chat.v2"
            assert server.subprotocols == ["chat.v2"]
            await peer.close(1000, "")

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_over_the_limit_is_1009(run: Run, client: Factory) -> None:
    """uvicorn's ws_max_size (1 MiB here): a bigger message fails the connection with 1009."""
    async def main() -> None:
        async with AsgiServer(ws_max_size=1 << 20).running() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"), max_size=BIG_LIMIT)
            await peer.send("binary", TOO_BIG)
            assert (await peer.wait_closed(failed=True))[0] == 1009
            assert (await server.disconnect())["code"] == 1009

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_close_before_accept_refuses(run: Run, client: Factory) -> None:
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            with pytest.raises(Exception, match=r"(?i)403|could not connect|forbidden|status"):
                await peer.connect(server.url("/deny"))

    run(main())


@pytest.mark.parametrize("client", PEERS, indirect=True)
def test_uvicorn_shutdown_is_1012(run: Run, client: Factory) -> None:
    async def main() -> None:
        async with AsgiServer().running() as server, peer_of(client) as peer:
            await peer.connect(server.url("/echo"))
            server.uvicorn.should_exit = True  # what Ctrl-C does
            # uvicorn closes the connection with 1012 (Service Restart) as it stops.
            assert (await peer.wait_closed())[0] == 1012
            assert (await server.disconnect())["code"] == 1012

    run(main())
