"""End-to-end tests of App: handlers, upgrade hooks, rejections, HTTP routes, TLS, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Any

import pytest
from e2e import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    WAIT,
    eventually,
    frame,
    http_get,
    quiet_app,
    quiet_connect,
    raw_client,
    serving,
    upgrade_request,
)
from tls_util import client_context, server_context

import wskit


def listen_echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
    ws.on_text(lambda ws, text: ws.send(text))
    ws.on_binary(lambda ws, data: ws.send(data))


class TestHandlers:
    """Handlers run at the upgrade; the connection outlives them; a raising handler means 1011."""

    def test_both_registration_forms_and_connection_outlives_handler(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("plain", listen_echo)

        @app.websocket("/decorated/")
        async def decorated(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await asyncio.sleep(0)
            listen_echo(req, ws)

        async def main() -> None:
            async with serving(app) as base:
                for path in ("/plain", "/decorated", "/decorated/"):
                    async with quiet_connect(base + path) as ws:
                        for i in range(3):
                            ws.send(f"{path} {i}")
                            assert await asyncio.wait_for(ws.receive(), WAIT) == f"{path} {i}"
                    assert ws.close_code == 1000

        run(main())

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_handler_that_raises_closes_with_1011(
        self, run: Any, kind: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = quiet_app()

        def sync_handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            raise RuntimeError("setup failed")

        async def async_handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("setup failed")

        app.websocket("h", sync_handler if kind == "sync" else async_handler)

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/h")
                with pytest.raises(wskit.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.receive(), WAIT)
                assert info.value.code == 1011
                assert ws.close_code == 1011

        with caplog.at_level(logging.ERROR, logger="wskit"):
            run(main())
        logged = [r for r in caplog.records if r.exc_info and "setup failed" in str(r.exc_info[1])]
        assert len(logged) == 1  # logged once, with its traceback

    def test_async_handler_may_own_the_connection(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("loop")
        async def loop(req: wskit.Request, ws: wskit.WebSocket) -> None:
            async for message in ws:
                ws.send(message)
            ws_done.set_result(ws.close_code)

        ws_done: asyncio.Future[int] = None  # type: ignore[assignment]

        async def main() -> None:
            nonlocal ws_done
            ws_done = asyncio.get_running_loop().create_future()
            async with serving(app) as base:
                async with quiet_connect(base + "/loop") as ws:
                    ws.send("a")
                    ws.send(b"b")
                    assert await ws.receive() == "a"
                    assert await ws.receive() == b"b"
                assert await asyncio.wait_for(ws_done, WAIT) == 1000

        run(main())

    def test_frames_right_behind_the_handshake_are_delivered(self, run: Any) -> None:
        app = quiet_app()
        got: list[str] = []
        app.websocket("sync", lambda req, ws: ws.on_text(lambda ws, t: got.append(t)))

        @app.websocket("async")
        async def later(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await asyncio.sleep(0.01)
            ws.on_text(lambda ws, t: got.append(t))

        async def main() -> None:
            async with serving(app):
                for path in ("/sync", "/async"):
                    peer = await raw_client(app.port, handshake=False)
                    request, _ = upgrade_request(path)
                    peer.write(request + frame(TEXT, path.encode()) + frame(TEXT, b"+1"))
                    status, _, _ = await peer.read_response()
                    assert status == 101
                    await eventually(lambda: len(got) == 2)
                    assert got == [path, "+1"]
                    got.clear()
                    await peer.aclose()

        run(main())

    def test_connections_are_tracked(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("e", listen_echo)

        async def main() -> None:
            async with serving(app) as base:
                first = await quiet_connect(base + "/e")
                second = await quiet_connect(base + "/e")
                await eventually(lambda: len(app.connections) == 2)
                assert all(isinstance(ws, wskit.WebSocket) for ws in app.connections)
                await first.close()
                await eventually(lambda: len(app.connections) == 1)
                await second.close()
                await eventually(lambda: not app.connections)

        run(main())


class TestRejections:
    """Refusals with the right HTTP status: 403, 404, 426, 400, 405 (RFC 6455 §4.2.1-2)."""

    @staticmethod
    def app() -> wskit.App:
        app = quiet_app(origins=["https://good.example"])
        app.websocket("ws", listen_echo)
        app.get("page", lambda req: "hello")
        return app

    def test_unknown_path_is_404(self, run: Any) -> None:
        async def main() -> None:
            async with serving(self.app()) as base:
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(base + "/nowhere", origin="https://good.example")
                assert info.value.status == 404
                assert "404" in str(info.value)

        run(main())

    def test_origin_allowlist(self, run: Any) -> None:
        async def main() -> None:
            async with serving(self.app()) as base:
                for origin in ("https://evil.example", None):
                    with pytest.raises(wskit.InvalidHandshake) as info:
                        await quiet_connect(base + "/ws", origin=origin)
                    assert info.value.status == 403
                async with quiet_connect(base + "/ws", origin="https://good.example") as ws:
                    ws.send("in")
                    assert await ws.receive() == "in"

        run(main())

    def test_origin_allowlist_may_accept_clients_without_origin(self, run: Any) -> None:
        app = quiet_app(origins=["https://good.example", None])
        app.websocket("ws", listen_echo)

        async def main() -> None:
            async with serving(app) as base:
                async with quiet_connect(base + "/ws") as ws:
                    ws.send("no origin")
                    assert await ws.receive() == "no origin"
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(base + "/ws", origin="https://evil.example")
                assert info.value.status == 403

        run(main())

    def test_plain_get_on_websocket_route_is_426(self, run: Any) -> None:
        async def main() -> None:
            app = self.app()
            async with serving(app):
                status, headers, body = await http_get(
                    app.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                assert status == 426
                assert headers["upgrade"].lower() == "websocket"
                assert body

        run(main())

    @pytest.mark.parametrize(
        ("change", "status"),
        [
            ({"extra": [("Sec-WebSocket-Key", "again")]}, 400),  # two keys
            ({"key": "short"}, 400),
            ({"omit": ["Connection"]}, 400),
            ({"omit": ["Sec-WebSocket-Version"]}, 426),
            ({"extra": [("Content-Length", "3")]}, 400),
            ({"method": "POST"}, 405),
        ],
    )
    def test_bad_upgrade_requests(self, run: Any, change: dict[str, Any], status: int) -> None:
        async def main() -> None:
            app = self.app()
            async with serving(app):
                request, _ = upgrade_request(
                    "/ws", extra=[("Origin", "https://good.example"), *change.get("extra", [])],
                    key=change.get("key"), omit=change.get("omit", ()),
                    method=change.get("method", "GET"),
                )
                got, headers, _ = await http_get(app.port, request)
                assert got == status
                assert headers["connection"] == "close"
                assert not app.connections

        run(main())

    @pytest.mark.parametrize(
        ("request_bytes", "status"),
        [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /ws HTTP/1.0\r\nHost: x\r\n\r\n", 505),
            (b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
            (b"POST /page HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ],
    )
    def test_malformed_requests(self, run: Any, request_bytes: bytes, status: int) -> None:
        async def main() -> None:
            app = self.app()
            async with serving(app):
                got, headers, _ = await http_get(app.port, request_bytes)
                assert got == status
                if status == 405:
                    assert headers["allow"] == "GET"

        run(main())

    def test_refusal_while_the_client_still_sends(self, run: Any) -> None:
        async def main() -> None:
            app = self.app()
            async with serving(app):
                for _ in range(3):
                    peer = await raw_client(app.port, handshake=False)
                    # Header fields far over the limit: refused (431) before they are all sent.
                    peer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 << 20))
                    # The client can finish writing (no reset) and then read the answer.
                    await asyncio.wait_for(peer.writer.drain(), WAIT)
                    status, _, _ = await peer.read_response()
                    assert status == 431
                    assert await peer.at_eof()
                    await peer.aclose()

        run(main())

    def test_max_connections_is_503(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(max_connections=1)
            app.websocket("e", listen_echo)
            async with serving(app) as base:
                first = await quiet_connect(base + "/e")
                for _ in range(3):
                    with pytest.raises(wskit.InvalidHandshake) as info:
                        await quiet_connect(base + "/e")
                    assert info.value.status == 503
                await first.close()
                await eventually(lambda: not app.connections)
                async with quiet_connect(base + "/e") as again:
                    again.send("room again")
                    assert await again.receive() == "room again"

        run(main())

    def test_silent_client_is_dropped_after_open_timeout(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(open_timeout=0.1)
            app.websocket("e", listen_echo)
            async with serving(app):
                peer = await raw_client(app.port, handshake=False)
                peer.write(b"GET /e HTTP/1.1\r\n")  # and never the rest
                assert await peer.at_eof()
                await peer.aclose()

        run(main())

    def test_open_timeout_drops_each_silent_client_and_spares_the_upgraded(
        self, run: Any
    ) -> None:
        """The loop's handshakes share one timer (issue 14): silent clients accepted one
        after another are each dropped, and a connection upgraded meanwhile outlives them
        all (its handshake left the sweep at the upgrade)."""
        async def main() -> None:
            app = quiet_app(open_timeout=0.2)
            app.websocket("e", listen_echo)
            async with serving(app) as base:
                silent = []
                for _ in range(3):
                    peer = await raw_client(app.port, handshake=False)
                    peer.write(b"GET /e HTTP/1.1\r\n")
                    silent.append(peer)
                    await asyncio.sleep(0.05)
                async with quiet_connect(base + "/e") as ws:
                    for peer in silent:
                        assert await peer.at_eof()
                        await peer.aclose()
                    late = await raw_client(app.port, handshake=False)
                    assert await late.at_eof()  # a later one is timed too
                    await late.aclose()
                    ws.send("still open")
                    assert await asyncio.wait_for(ws.receive(), WAIT) == "still open"

        run(main())

    def test_message_too_big_is_1009(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(max_message_size=1000)
            app.websocket("e", listen_echo)
            async with serving(app) as base:
                ws = await quiet_connect(base + "/e")
                ws.send(b"x" * 1000)
                assert await ws.receive() == b"x" * 1000
                ws.send(b"x" * 1001)
                with pytest.raises(wskit.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.receive(), WAIT)
                assert info.value.code == 1009

        run(main())


class TestBeforeUpgrade:
    """The before_upgrade hook may refuse with a Response, add headers, choose a subprotocol."""

    def test_refuse_with_a_response(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("ws", listen_echo)

        @app.before_upgrade
        def check(req: wskit.Request) -> wskit.Response | None:
            if req.query.get("token") != "secret":
                return wskit.Response("bad token", status=401,
                                      headers=[("WWW-Authenticate", "Bearer")])
            return None

        async def main() -> None:
            async with serving(app) as base:
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(base + "/ws?token=nope")
                assert info.value.status == 401
                assert "bad token" in str(info.value)
                assert ("WWW-Authenticate", "Bearer") in info.value.headers
                async with quiet_connect(base + "/ws?token=secret") as ws:
                    ws.send("let in")
                    assert await ws.receive() == "let in"

        run(main())

    def test_add_headers_and_choose_subprotocol(self, run: Any) -> None:
        app = quiet_app(subprotocols=["v1", "v2"])
        app.websocket("ws", listen_echo)

        @app.before_upgrade
        def hook(req: wskit.Request) -> None:
            req.response_headers.append(("X-Served-By", "hook"))
            assert req.subprotocols == ["v1", "v2", "v3"]
            req.subprotocol = "v3"

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/ws", subprotocols=["v1", "v2", "v3"])
                assert ws.subprotocol == "v3"
                assert ws.response_headers.get("X-Served-By") == "hook"
                await ws.close()

        run(main())

    def test_async_hook(self, run: Any) -> None:
        app = quiet_app()
        got: list[str] = []
        app.websocket("ws", lambda req, ws: ws.on_text(lambda ws, t: got.append(t)))

        @app.before_upgrade
        async def hook(req: wskit.Request) -> wskit.Response | None:
            await asyncio.sleep(0.01)
            if "deny" in req.query:
                return wskit.Response("denied", status=403)
            req.response_headers.append(("X-Async", "yes"))
            return None

        async def main() -> None:
            async with serving(app) as base:
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(base + "/ws?deny")
                assert info.value.status == 403
                # A frame sent while the hook runs is kept for the connection.
                peer = await raw_client(app.port, handshake=False)
                request, _ = upgrade_request("/ws")
                peer.write(request + frame(TEXT, b"early"))
                status, headers, _ = await peer.read_response()
                assert status == 101
                assert headers["x-async"] == "yes"
                await eventually(lambda: got == ["early"])
                await peer.aclose()

        run(main())

    @pytest.mark.parametrize("fault", ["raises", "async raises", "bad subprotocol", "bad header"])
    def test_broken_hook_is_500(self, run: Any, fault: str) -> None:
        app = quiet_app()
        app.websocket("ws", listen_echo)

        @app.before_upgrade
        def hook(req: wskit.Request) -> Any:
            if fault == "raises":
                raise RuntimeError("hook bug")
            if fault == "bad subprotocol":
                req.subprotocol = "never-offered"
            if fault == "bad header":
                req.response_headers.append(("Sec-WebSocket-Accept", "forged"))
            if fault == "async raises":
                async def fail() -> None:
                    raise RuntimeError("async hook bug")

                return fail()
            return None

        async def main() -> None:
            async with serving(app) as base:
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(base + "/ws")
                assert info.value.status == 500
                assert not app.connections

        run(main())


class TestHttpRoutes:
    """Plain HTTP GET routes return a small Response (a page, a health check)."""

    def test_responses(self, run: Any) -> None:
        app = quiet_app()
        app.get("/", lambda req: wskit.Response("<h1>hi</h1>", content_type="text/html"))
        app.get("health", lambda req: "ok")
        app.get("raw", lambda req: b"\x00\x01")

        @app.get("items/{item}")
        async def item(req: wskit.Request) -> wskit.Response:
            await asyncio.sleep(0)
            return wskit.Response(f"{req.params['item']} {req.query.get('q')}",
                                  headers=[("X-Item", "1")])

        async def main() -> None:
            async with serving(app):
                status, headers, body = await http_get(
                    app.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (status, body) == (200, b"<h1>hi</h1>")
                assert headers["content-type"] == "text/html"
                status, headers, body = await http_get(
                    app.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (status, body) == (200, b"ok")
                assert headers["content-type"].startswith("text/plain")
                status, headers, body = await http_get(
                    app.port, b"GET /raw HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (status, body) == (200, b"\x00\x01")
                assert headers["content-type"] == "application/octet-stream"
                status, headers, body = await http_get(
                    app.port, b"GET /items/caf%C3%A9?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (status, body.decode()) == (200, "café 1")
                assert headers["x-item"] == "1"

        run(main())

    @pytest.mark.parametrize("fault", ["raises", "async raises", "wrong type", "bad header"])
    def test_broken_handler_is_500(self, run: Any, fault: str) -> None:
        app = quiet_app()

        async def async_fail(req: wskit.Request) -> str:
            raise RuntimeError("async bug")

        def handler(req: wskit.Request) -> Any:
            if fault == "raises":
                raise RuntimeError("bug")
            if fault == "async raises":
                return async_fail(req)
            if fault == "wrong type":
                return 42
            return wskit.Response("x", headers=[("Content-Length", "99")])

        app.get("h", handler)

        async def main() -> None:
            async with serving(app):
                status, _, _ = await http_get(app.port, b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n")
                assert status == 500

        run(main())


class TestKeepalive:
    """The server pings idle clients and closes with 1011 those that stop answering."""

    def test_unresponsive_client_is_closed_with_1011(self, run: Any) -> None:
        async def main() -> None:
            errors: list[BaseException] = []
            app = quiet_app(ping_interval=0.05, ping_timeout=0.1, close_timeout=0.5)
            app.websocket(
                "ka", lambda req, ws: ws.on_text(lambda ws, t: None).catch(errors.append)
            )
            async with serving(app):
                peer = await raw_client(app.port, "/ka")  # reads, but never answers pings
                opcode, _ = await peer.recv()
                assert opcode == PING
                assert (await peer.recv_until_close())[0] == 1011
                assert await peer.at_eof()
                await eventually(lambda: len(errors) == 1)
                assert isinstance(errors[0], TimeoutError)
                await peer.aclose()

        run(main())

    def test_responsive_client_stays_connected(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(ping_interval=0.02, ping_timeout=0.05)
            app.websocket("ka", listen_echo)
            async with serving(app) as base, quiet_connect(base + "/ka") as ws:
                await eventually(lambda: len(app.connections) == 1)
                server_ws = next(iter(app.connections))
                pongs = 0

                def count(ws: wskit.WebSocket, data: bytes) -> None:
                    nonlocal pongs
                    pongs += 1

                server_ws.on_pong(count)
                await eventually(lambda: pongs >= 4)
                assert server_ws.latency is not None
                ws.send("alive")
                assert await ws.receive() == "alive"

        run(main())

    def test_raw_peer_answering_pings_stays_connected(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(ping_interval=0.02, ping_timeout=0.05)
            app.websocket("ka", listen_echo)
            async with serving(app):
                peer = await raw_client(app.port, "/ka")
                for _ in range(5):
                    opcode, payload = await peer.recv()
                    assert opcode == PING
                    peer.send(PONG, payload)
                peer.send(TEXT, b"still here")
                while (frame_ := await peer.recv())[0] == PING:
                    peer.send(PONG, frame_[1])
                assert frame_ == (TEXT, b"still here")
                await peer.aclose()

        run(main())


class TestShutdown:
    """shutdown() and SIGTERM close every connection with 1001 (RFC 6455 §7.4.1), bounded."""

    def test_clients_see_1001(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            await app.start("127.0.0.1", 0)
            base = f"ws://127.0.0.1:{app.port}"
            clients = [await quiet_connect(base + "/e") for _ in range(3)]
            await eventually(lambda: len(app.connections) == 3)
            ends = [asyncio.ensure_future(_drain(ws)) for ws in clients]
            await asyncio.wait_for(app.shutdown(), WAIT)
            assert not app.connections
            assert await asyncio.wait_for(asyncio.gather(*ends), WAIT) == [[], [], []]
            for ws in clients:
                assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
            with pytest.raises(OSError):
                await quiet_connect(base + "/e")

        run(main())

    def test_shutdown_is_bounded_when_a_client_never_answers(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(close_timeout=0.2)
            app.websocket("e", listen_echo)
            await app.start("127.0.0.1", 0)
            deaf = await raw_client(app.port, "/e")
            await eventually(lambda: len(app.connections) == 1)
            server_ws = next(iter(app.connections))
            calls: list[Any] = []
            server_ws.on_text(lambda ws, t: None).finally_(lambda: calls.append("finally"))
            await asyncio.wait_for(app.shutdown(), WAIT)
            assert not app.connections
            assert calls == ["finally"]
            assert (await deaf.recv_until_close())[0] == 1001
            assert await deaf.at_eof()
            await deaf.aclose()

        run(main())

    def test_shutdown_aborts_pending_handshakes(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            await app.start("127.0.0.1", 0)
            slow = await raw_client(app.port, handshake=False)
            slow.write(b"GET /e HTTP/1.1\r\n")
            await eventually(lambda: bool(app._protocols))
            await asyncio.wait_for(app.shutdown(), WAIT)
            assert await slow.at_eof()
            await slow.aclose()

        run(main())

    def test_serve_until_sigterm(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            serving_task = asyncio.ensure_future(
                app.serve("127.0.0.1", 0, handle_signals=True)
            )
            await eventually(lambda: bool(app._servers))
            ws = await quiet_connect(f"ws://127.0.0.1:{app.port}/e")
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(serving_task, WAIT)
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1001

        run(main())

    def test_serve_until_stop(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            serving_task = asyncio.ensure_future(app.serve("127.0.0.1", 0))
            await eventually(lambda: bool(app._servers))
            ws = await quiet_connect(f"ws://127.0.0.1:{app.port}/e")
            app.stop()
            await asyncio.wait_for(serving_task, WAIT)
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1001

        run(main())


class TestRun:
    """app.run() serves in its own loop until SIGINT, then shuts down gracefully (1001)."""

    def test_run_until_sigint(self, run: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        script = (
            "import wskit\n"
            "app = wskit.App(compression=None)\n"
            "app.websocket('e', lambda req, ws: ws.on_text(lambda ws, t: ws.send(t)))\n"
            f"app.run('127.0.0.1', {port})\n"
        )

        async def main() -> None:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
            try:
                ws = None
                for _ in range(200):
                    try:
                        ws = await quiet_connect(f"ws://127.0.0.1:{port}/e")
                        break
                    except OSError:
                        await asyncio.sleep(0.02)
                assert ws is not None, "the server did not start"
                ws.send("ping")
                assert await asyncio.wait_for(ws.receive(), WAIT) == "ping"
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert ws.close_code == 1001
                assert await asyncio.wait_for(proc.wait(), WAIT) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

        run(main())


    def test_wskit_run_picks_the_loop(self, loop_kind: str) -> None:
        async def main() -> str:
            app = quiet_app()
            app.websocket("e", listen_echo)
            async with serving(app) as base, quiet_connect(base + "/e") as ws:
                ws.send("via wskit.run")
                assert await ws.receive() == "via wskit.run"
            return type(asyncio.get_running_loop()).__module__

        module = wskit.run(main(), use_uvloop=loop_kind == "uvloop")
        assert module.startswith("uvloop" if loop_kind == "uvloop" else "asyncio")


async def _drain(ws: wskit.WebSocket) -> list[Any]:
    return [message async for message in ws]


class TestTLS:
    """wss:// with certificates from a throwaway CA (trustme); the default context verifies."""

    def test_echo_over_tls(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            async with serving(app, ssl=server_context()) as base:
                for url in (base + "/e", f"wss://localhost:{app.port}/e"):
                    async with quiet_connect(url, ssl=client_context()) as ws:
                        ws.send("secret")
                        ws.send(b"\x00" * 100_000)
                        assert await ws.receive() == "secret"
                        assert await ws.receive() == b"\x00" * 100_000
                        assert ws._protocol.transport.get_extra_info("ssl_object") is not None  # type: ignore[union-attr]
                    assert ws.close_code == 1000

        run(main())

    def test_default_context_rejects_an_untrusted_certificate(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            async with serving(app, ssl=server_context()) as base:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await quiet_connect(base + "/e")

        run(main())

    def test_hostname_is_checked(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            async with serving(app, ssl=server_context()) as base:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await quiet_connect(base + "/e", ssl=client_context(),
                                        server_hostname="other.example")

        run(main())

    def test_shutdown_over_tls(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            await app.start("127.0.0.1", 0, ssl=server_context())
            ws = await quiet_connect(f"wss://127.0.0.1:{app.port}/e", ssl=client_context())
            await asyncio.wait_for(app.shutdown(), WAIT)
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1001

        run(main())


class TestRawProtocol:
    """Frame-level behaviour against a hand-driven client (RFC 6455 §5, §7)."""

    def test_unmasked_client_frame_is_1002(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            async with serving(app):
                peer = await raw_client(app.port, "/e")
                peer.write(frame(TEXT, b"naked", mask=False))  # RFC 6455 §5.1
                assert await peer.recv() == (CLOSE, b"\x03\xea")
                assert await peer.at_eof()
                await peer.aclose()

        run(main())

    def test_invalid_utf8_is_1007(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("e", listen_echo)
            async with serving(app):
                peer = await raw_client(app.port, "/e")
                peer.send(TEXT, b"\xff\xfe")
                assert (await peer.recv_until_close())[0] == 1007
                await peer.aclose()

        run(main())


class TestFailWhileThePeerSends:
    """Failing a connection while the peer is still sending does not reset it (§7.1.7)."""

    @pytest.mark.parametrize("size", [2 << 20, 8 << 20])
    def test_peer_reads_the_close_frame_of_a_too_big_message(self, run: Any, size: int) -> None:
        async def main() -> None:
            app = quiet_app(max_message_size=1 << 20)
            app.websocket("e", listen_echo)
            async with serving(app):
                for _ in range(3):
                    peer = await raw_client(app.port, "/e")
                    peer.send(TEXT, b"a" * size)  # refused from its header, 1009
                    # The whole message can still be written: the server does not reset the
                    # connection under the sender's feet, and its Close frame can be read.
                    await asyncio.wait_for(peer.writer.drain(), WAIT)
                    code, _ = await peer.recv_until_close()
                    assert code == 1009
                    await peer.aclose()

        run(main())


class TestRefusalsAreLogged:
    """Every refused upgrade is logged at INFO, as the README's Logging section says."""

    def test_404_426_405_and_a_hook(self, run: Any, caplog: pytest.LogCaptureFixture) -> None:
        app = quiet_app()
        app.websocket("ws", listen_echo,
                      before_upgrade=lambda req: wskit.Response("no", status=401))
        app.get("page", lambda req: "page")

        async def main() -> None:
            async with serving(app):
                for request, status in [
                    (upgrade_request("/nowhere")[0], 404),
                    (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426),
                    (b"POST /page HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
                    (upgrade_request("/ws")[0], 401),
                ]:
                    assert (await http_get(app.port, request))[0] == status

        with caplog.at_level(logging.INFO, logger="wskit"):
            run(main())
        refused = [r.getMessage() for r in caplog.records
                   if r.levelno == logging.INFO and "] refusing" in r.getMessage()]
        assert len(refused) == 4, refused
        for message, status in zip(refused, ["404", "426", "405", "401"], strict=True):
            assert f": {status} " in message and "127.0.0.1" in message, message
        assert "/nowhere" in refused[0] and "before_upgrade" in refused[3]


def test_an_idle_shutdown_waits_for_no_timer(run: Any) -> None:
    """With nothing open, shutdown() finishes in a few loop iterations: no timeout is
    waited for (iterations are counted, not seconds; issue 16's prompt idle shutdown)."""

    async def main() -> None:
        app = quiet_app()
        app.websocket("ws", listen_echo)
        await app.start("127.0.0.1", 0)
        assert (await http_get(app.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 426
        task = asyncio.ensure_future(app.shutdown())
        for _ in range(50):
            if task.done():
                break
            await asyncio.sleep(0)
        assert task.done(), "an idle shutdown waited for a timer"
        await task

    run(main())
