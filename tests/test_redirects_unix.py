"""Redirects (RFC 9110 §15.4) against a real aiohttp server, and unix domain sockets both ways
(the App and ``serve --unix``; the client against aiohttp's and websockets' unix servers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cli_process import WAIT, python_env

import wskit


async def echo_headers(request: web.Request) -> web.WebSocketResponse:
    """Echo each text message, prefixed with what the request carried."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    auth = request.headers.get("Authorization", "-")
    async for message in ws:
        await ws.send_str(f"{message.data} {request.path} {auth} {request.host}")
    return ws


@contextlib.asynccontextmanager
async def aiohttp_server(routes: list[web.RouteDef], *, unix: str | None = None,
                         ssl: Any = None) -> AsyncIterator[int]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site: web.BaseSite
    if unix is not None:
        site = web.UnixSite(runner, unix)
    else:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl)
    await site.start()
    try:
        port = 0 if unix else runner.addresses[0][1]
        yield port
    finally:
        await runner.cleanup()


def redirect(status: int, location: str | None) -> Any:
    async def handler(request: web.Request) -> web.Response:
        headers = {"Location": location.format(port=request.url.port)} if location else {}
        return web.Response(status=status, headers=headers)

    return handler


async def exchange(url: str, **options: Any) -> tuple[str, str]:
    async with wskit.connect(url, compression=None, ping_interval=None, **options) as ws:
        ws.send("hi")
        answer = await ws.receive()
        assert isinstance(answer, str) and ws.url is not None
        return answer, ws.url


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_each_redirect_status_relative_and_absolute(run: Any, status: int) -> None:
    async def main() -> None:
        routes = [
            web.get("/ws", echo_headers),
            web.get("/relative", redirect(status, "ws")),
            web.get("/absolute", redirect(status, "ws://127.0.0.1:{port}/ws")),
            web.get("/http", redirect(status, "http://127.0.0.1:{port}/ws")),
        ]
        async with aiohttp_server(routes) as port:
            for start in ("relative", "absolute", "http"):
                answer, url = await exchange(f"ws://127.0.0.1:{port}/{start}")
                assert answer == f"hi /ws - 127.0.0.1:{port}"
                assert url == f"ws://127.0.0.1:{port}/ws"

    run(main())


def test_authorization_stays_on_its_host(run: Any) -> None:
    async def main() -> None:
        routes = [
            web.get("/ws", echo_headers),
            web.get("/same", redirect(302, "/ws")),
            web.get("/other", redirect(302, "ws://localhost:{port}/ws")),
        ]
        async with aiohttp_server(routes) as port:
            auth = {"Authorization": "Bearer token"}
            answer, _ = await exchange(f"ws://127.0.0.1:{port}/same", headers=auth)
            assert answer == f"hi /ws Bearer token 127.0.0.1:{port}"
            # "localhost" is another host by name: the credentials are not sent there.
            answer, url = await exchange(f"ws://127.0.0.1:{port}/other", headers=auth)
            assert answer == f"hi /ws - localhost:{port}"
            assert url == f"ws://localhost:{port}/ws"

    run(main())


def test_redirect_limit_loop_and_missing_location(run: Any) -> None:
    async def main() -> None:
        routes = [
            web.get("/ws", echo_headers),
            web.get("/loop", redirect(307, "/loop")),
            web.get("/nowhere", redirect(302, None)),
            web.get("/ftp", redirect(302, "ftp://127.0.0.1/")),
            web.get("/two", redirect(302, "/one")),
            web.get("/one", redirect(302, "/ws")),
        ]
        async with aiohttp_server(routes) as port:
            base = f"ws://127.0.0.1:{port}"
            with pytest.raises(wskit.InvalidHandshake) as info:
                await exchange(base + "/loop")
            assert str(info.value) == f"more than 10 redirects (the last to {base}/loop)"
            with pytest.raises(wskit.InvalidHandshake, match="more than 1 redirects"):
                await exchange(base + "/two", max_redirects=1)
            assert (await exchange(base + "/two", max_redirects=2))[1] == base + "/ws"
            with pytest.raises(wskit.InvalidHandshake) as info:
                await exchange(base + "/nowhere")
            assert str(info.value) == "HTTP 302 redirect without a Location header"
            with pytest.raises(wskit.InvalidHandshake, match="not a WebSocket URL"):
                await exchange(base + "/ftp")
            with pytest.raises(wskit.InvalidHandshake) as info:
                await exchange(base + "/loop", max_redirects=0)
            assert info.value.status == 307

    run(main())


def test_wss_to_ws_downgrade_is_refused(run: Any, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def main() -> None:
        routes = [web.get("/ws", echo_headers),
                  web.get("/down", redirect(301, "ws://127.0.0.1:{port}/ws")),
                  web.get("/up", redirect(301, "https://127.0.0.1:{port}/ws"))]
        async with aiohttp_server(routes, ssl=server_context) as port:
            with pytest.raises(wskit.InvalidHandshake) as info:
                await exchange(f"wss://127.0.0.1:{port}/down", ssl=client_context)
            assert str(info.value) == (
                f"HTTP 301 redirect from wss://127.0.0.1:{port}/down to ws://127.0.0.1:{port}/ws "
                "refused: it would leave TLS (wss:// to ws://)")
            _, url = await exchange(f"wss://127.0.0.1:{port}/up", ssl=client_context)
            assert url == f"wss://127.0.0.1:{port}/ws"

    run(main())


@pytest.fixture
def socket_path() -> Iterator[str]:
    # Short: a unix socket path is limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="wskit-") as folder:
        yield os.path.join(folder, "ws.sock")


def test_client_over_unix_to_aiohttp_and_websockets(run: Any, socket_path: str) -> None:
    from websockets.asyncio.server import ServerConnection, unix_serve

    async def main() -> None:
        async with aiohttp_server([web.get("/ws", echo_headers)], unix=socket_path):
            answer, url = await exchange("ws://localhost/ws", unix=socket_path)
            assert answer == "hi /ws - localhost"
            assert url == "ws://localhost/ws"

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                await ws.send(f"{message} {ws.request.path if ws.request else ''}")

        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)  # aiohttp leaves its socket file behind
        async with unix_serve(handler, socket_path):
            assert (await exchange("ws://any.host/path?q=1", unix=socket_path))[0] == (
                "hi /path?q=1")

    run(main())


def test_app_over_unix_with_the_websockets_client(run: Any, socket_path: str) -> None:
    from websockets.asyncio.client import unix_connect

    app = wskit.App(compression=None, ping_interval=None)
    app.websocket("echo", lambda req, ws: ws.on_text(lambda ws, text: ws.send(text.upper())))

    async def main() -> None:
        await app.start(unix=socket_path)
        try:
            async with unix_connect(socket_path, "ws://localhost/echo") as ws:
                await ws.send("over unix")
                assert await ws.recv() == "OVER UNIX"
            # And wskit's own client over the same socket.
            assert (await exchange("ws://localhost/echo", unix=socket_path))[0] == "HI"
        finally:
            await app.shutdown()

    run(main())


def test_serve_unix_from_the_command_line(run: Any, socket_path: str) -> None:
    import sys

    from websockets.asyncio.client import unix_connect

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wskit", "serve", "--unix", socket_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=python_env())
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
            assert line.decode().strip() == f"wskit serving on unix:{socket_path}"
            async with unix_connect(socket_path, "ws://localhost/echo") as ws:
                await ws.send("from the cli")
                assert await ws.recv() == "from the cli"
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), WAIT) == 0

    run(main())
