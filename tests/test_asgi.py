"""wskit.asgi under a real uvicorn: Starlette and FastAPI endpoints and raw ASGI apps, driven by
the ``websockets`` client and by raw sockets (ASGI WebSocket spec 2.4)."""

from __future__ import annotations

import asyncio
import signal
import struct
from typing import Any

import pytest
import websockets
from asgi_util import uvicorn_serving
from e2e import BINARY, CLOSE, PING, TEXT, WAIT, eventually, raw_client
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect as ws_connect

import wskit.asgi
from wskit.asgi import ClientDisconnected, UvicornWebSocketProtocol

Scope = dict[str, Any]


def client(url: str, **kwargs: Any) -> Any:
    """The ``websockets`` client without proxies from the environment or keepalive."""
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("ping_interval", None)
    return ws_connect(url, **kwargs)


async def refused(url: str, **kwargs: Any) -> Any:
    """Connect expecting an HTTP refusal; returns the response (status_code, headers, body)."""
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with client(url, **kwargs):
            pass
    return info.value.response


# -- Starlette and FastAPI ---------------------------------------------------------------------


async def starlette_echo(ws: WebSocket) -> None:
    offered = ws.scope["subprotocols"]
    await ws.accept(subprotocol=offered[0] if offered else None,
                    headers=[(b"x-echo", b"yes")])
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


def test_starlette_echo_text_bytes_subprotocol_headers(run: Any) -> None:
    app = Starlette(routes=[WebSocketRoute("/echo", starlette_echo)])

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port), client(
            f"ws://127.0.0.1:{port}/echo", subprotocols=["chat.v2", "chat.v1"]
        ) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["x-echo"] == "yes"
            assert ws.response.headers["server"] == "uvicorn"  # uvicorn's default headers
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            for message in ["h\u00e9llo \U0001f600", b"\x00\x01\xff", "", b""]:
                await ws.send(message)
                assert await ws.recv() == message

    run(main())


def test_fastapi_endpoint_with_path_and_query(run: Any) -> None:
    app = FastAPI()

    @app.websocket("/rooms/{room}")
    async def room(ws: FastAPIWebSocket, room: str, user: str = "anon") -> None:
        await ws.accept()
        await ws.send_json({"room": room, "user": user})
        async for text in ws.iter_text():
            await ws.send_text(f"{user}@{room}: {text}")

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port), client(
            f"ws://127.0.0.1:{port}/rooms/lobby?user=ada"
        ) as ws:
            assert await ws.recv() == '{"room":"lobby","user":"ada"}'
            await ws.send("hi")
            assert await ws.recv() == "ada@lobby: hi"

    run(main())


def test_starlette_close_before_accept_is_403(run: Any) -> None:
    seen: list[Any] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.close(code=1008)
        seen.append(await ws.receive())  # Starlette closed without reading the connect event
        seen.append(await ws.receive())

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/ws")
            assert response.status_code == 403
            await eventually(lambda: len(seen) == 2)
        assert seen == [{"type": "websocket.connect"},
                        {"type": "websocket.disconnect", "code": 1006, "reason": ""}]

    run(main())


def test_starlette_denial_response(run: Any) -> None:
    async def endpoint(ws: WebSocket) -> None:
        await ws.send_denial_response(
            PlainTextResponse("no token", status_code=401, headers={"WWW-Authenticate": "Bearer"})
        )

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/ws")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.body == b"no token"
        assert response.headers["content-length"] == "8"

    run(main())


def test_starlette_unknown_route_refused(run: Any) -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", starlette_echo)])

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/elsewhere")
        assert response.status_code == 403  # Starlette closes an unrouted WebSocket

    run(main())


# -- raw ASGI apps: the spec's messages one by one -----------------------------------------------


def test_scope_fields(run: Any) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            scope["state"]["db"] = "ready"
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert await receive() == {"type": "websocket.connect"}
        scopes.append(scope)
        scope["state"]["db"] = "changed by one connection"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with uvicorn_serving(app, root_path="/api", lifespan="on") as (_, port):
            for _ in range(2):
                async with client(
                    f"ws://127.0.0.1:{port}/a%20b/c?x=1&y=%20",
                    subprotocols=["one", "two"],
                    additional_headers={"X-Trace": "t1"},
                ) as ws:
                    await ws.wait_closed()
        scope = scopes[0]
        assert scope["type"] == "websocket"
        assert scope["asgi"]["spec_version"] == "2.4"
        assert scope["asgi"]["version"] == "3.0"
        assert scope["http_version"] == "1.1"
        assert scope["scheme"] == "ws"
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/a b/c"
        assert scope["raw_path"] == b"/api/a%20b/c"
        assert scope["query_string"] == b"x=1&y=%20"
        headers = dict(scope["headers"])
        assert headers[b"x-trace"] == b"t1"
        assert headers[b"host"] == f"127.0.0.1:{port}".encode()
        assert all(name == name.lower() for name, _ in scope["headers"])
        assert scope["subprotocols"] == ["one", "two"]
        assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
        assert scope["server"] == ("127.0.0.1", port)
        assert scope["extensions"] == {"websocket.http.response": {}}
        # Each connection gets its own shallow copy of the lifespan state.
        assert [s["state"]["db"] for s in scopes] == ["changed by one connection"] * 2
        assert scopes[0]["state"] is not scopes[1]["state"]

    run(main())


def test_state_is_a_copy_of_the_lifespan_state(run: Any) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["n"] = "startup"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        seen.append(scope["state"]["n"])
        scope["state"]["n"] = "changed"
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with uvicorn_serving(app, lifespan="on") as (_, port):
            for _ in range(2):
                await refused(f"ws://127.0.0.1:{port}/")
        assert seen == ["startup", "startup"]

    run(main())


def test_denial_response_in_several_bodies(run: Any) -> None:
    disconnects: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 400,
                    "headers": [(b"content-length", b"20"), (b"content-type", b"text/plain"),
                                (b"x-why", b"bad")]})
        await send({"type": "websocket.http.response.body", "body": b"x" * 10,
                    "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"y" * 10})
        disconnects.append(await receive())
        with pytest.raises(OSError):
            await send({"type": "websocket.accept"})

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/")
            await eventually(lambda: bool(disconnects))
        assert response.status_code == 400
        assert response.body == b"x" * 10 + b"y" * 10
        assert response.headers.get_all("content-length") == ["20"]
        assert response.headers["x-why"] == "bad"
        assert disconnects == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]

    run(main())


@pytest.mark.parametrize("case", ["invalid-status", "returns", "raises", "send-first",
                                  "bad-subprotocol", "reserved-header"])
def test_app_errors_before_accept_are_500(run: Any, case: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        if case == "invalid-status":
            await send({"type": "websocket.http.response.start", "status": 700})
        elif case == "raises":
            raise ValueError("the app broke")
        elif case == "send-first":
            await send({"type": "websocket.send", "text": "too early"})
        elif case == "bad-subprotocol":
            await send({"type": "websocket.accept", "subprotocol": "never-offered"})
        elif case == "reserved-header":
            await send({"type": "websocket.accept",
                        "headers": [(b"sec-websocket-protocol", b"x")]})

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/")
        assert response.status_code == 500

    run(main())


def test_denial_left_unfinished_is_sent_when_the_app_returns(run: Any) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain")]})

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/")
        assert response.status_code == 404

    run(main())


def test_second_response_start_raises(run: Any) -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        start = {"type": "websocket.http.response.start", "status": 404}
        await send(start)
        try:
            await send(start)
        except RuntimeError as exc:
            errors.append(str(exc))

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            response = await refused(f"ws://127.0.0.1:{port}/")
        assert response.status_code == 404
        assert errors and "websocket.http.response.body" in errors[0]

    run(main())


@pytest.mark.parametrize(("code", "reason"), [(None, None), (1000, "bye"), (4001, "custom"),
                                              (1001, None)])
def test_app_close_code_and_reason(run: Any, code: int | None, reason: str | None) -> None:
    after: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["text"] == "close please"
        message: dict[str, Any] = {"type": "websocket.close"}
        if code is not None:
            message["code"] = code
        if reason is not None:
            message["reason"] = reason
        await send(message)
        after.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "after close"})
        except OSError as exc:
            after.append(exc)

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port), client(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("close please")
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == (code or 1000)
            assert ws.close_reason == (reason or "")
            await eventually(lambda: len(after) == 2)
        assert after[0] == {"type": "websocket.disconnect", "code": code or 1000,
                            "reason": reason or ""}
        assert isinstance(after[1], ClientDisconnected)

    run(main())


def test_client_close_code_and_reason_reach_the_app(run: Any) -> None:
    received: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            async with client(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send(b"abc")
                await ws.close(1001, "custom reason")
            await eventually(lambda: len(received) == 2)
        assert received == [{"type": "websocket.receive", "bytes": b"abc"},
                            {"type": "websocket.disconnect", "code": 1001,
                             "reason": "custom reason"}]

    run(main())


def test_messages_before_the_close_are_still_received(run: Any) -> None:
    received: list[Any] = []
    go = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()  # the client's messages and Close wait in the server's buffers
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            async with client(f"ws://127.0.0.1:{port}/") as ws:
                for i in range(3):
                    await ws.send(f"m{i}")
                close = asyncio.ensure_future(ws.close())
                await asyncio.sleep(0.05)
                go.set()
                await close
            await eventually(lambda: len(received) == 4)
        assert [m.get("text") for m in received[:3]] == ["m0", "m1", "m2"]
        assert received[3] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}

    run(main())


def test_connection_lost_gives_1006_and_send_raises_oserror(run: Any) -> None:
    events: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:
            events.append(exc)

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            peer = await raw_client(port)
            peer.writer.transport.abort()  # no Close frame, no FIN: a reset
            await eventually(lambda: len(events) == 2)
        assert events[0] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        assert isinstance(events[1], ClientDisconnected) and events[1].code == 1006

    run(main())


def test_connection_lost_before_accept(run: Any) -> None:
    events: list[Any] = []
    accept = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await accept.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            events.append(exc)
        events.append(await receive())

    async def main() -> None:
        async with uvicorn_serving(app) as (server, port):
            peer = await raw_client(port, handshake=False)
            from e2e import upgrade_request

            peer.write(upgrade_request("/")[0])
            await eventually(lambda: bool(server.server_state.tasks))
            await peer.aclose()
            await eventually(lambda: not server.server_state.connections)
            accept.set()
            await eventually(lambda: len(events) == 2)
        assert isinstance(events[0], ClientDisconnected)
        assert events[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    run(main())


def test_server_shutdown_closes_with_1012(run: Any) -> None:
    received: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                received.append(message)
                return

    async def main() -> None:
        async with uvicorn_serving(app) as (server, port):
            ws = await client(f"ws://127.0.0.1:{port}/")
            server.should_exit = True
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1012
        assert received == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]

    run(main())


def test_server_shutdown_refuses_a_pending_request_with_503(run: Any) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        message = await receive()  # never accepted: the server stops meanwhile
        assert message["code"] == 1006

    async def main() -> None:
        async with uvicorn_serving(app) as (server, port):
            attempt = asyncio.ensure_future(refused(f"ws://127.0.0.1:{port}/"))
            await eventually(lambda: bool(server.server_state.tasks))
            server.should_exit = True
            response = await asyncio.wait_for(attempt, WAIT)
        assert response.status_code == 503

    run(main())


@pytest.mark.parametrize("case", ["returns-value", "raises", "double-accept"])
def test_app_errors_after_accept_close_with_1011(run: Any, case: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> Any:
        await receive()
        await send({"type": "websocket.accept"})
        if case == "returns-value":
            return 123
        if case == "raises":
            raise KeyError("boom")
        await send({"type": "websocket.accept"})
        return None

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port), client(f"ws://127.0.0.1:{port}/") as ws:
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1011

    run(main())


def test_app_returning_closes_normally(run: Any) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"last"})

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port), client(f"ws://127.0.0.1:{port}/") as ws:
            assert await ws.recv() == b"last"
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1000

    run(main())


def test_send_needs_exactly_one_of_bytes_and_text(run: Any) -> None:
    errors: list[Exception] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for bad in ({"type": "websocket.send"}, {"type": "websocket.send", "bytes": b"a",
                                                  "text": "a"},
                    {"type": "websocket.nonsense"}):
            try:
                await send(bad)
            except RuntimeError as exc:
                errors.append(exc)
        await send({"type": "websocket.send", "bytes": None, "text": "fine"})

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port), client(f"ws://127.0.0.1:{port}/") as ws:
            assert await ws.recv() == "fine"
        assert len(errors) == 3

    run(main())


# -- limits, compression, keepalive, backpressure -------------------------------------------------


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "bytes": message.get("bytes"),
                    "text": message.get("text")})


@pytest.mark.parametrize(("size", "max_size", "code"), [(10, 10, None), (11, 10, 1009),
                                                         (4 << 20, 4 << 20, None),
                                                         ((4 << 20) + 1, 4 << 20, 1009)])
def test_ws_max_size(run: Any, size: int, max_size: int, code: int | None) -> None:
    async def main() -> None:
        async with uvicorn_serving(echo_app, ws_max_size=max_size) as (_, port), client(
            f"ws://127.0.0.1:{port}/", max_size=None
        ) as ws:
            data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            await ws.send(data)
            if code is None:
                assert await ws.recv() == data
            else:
                with pytest.raises(websockets.exceptions.ConnectionClosedError):
                    await ws.recv()
                assert ws.close_code == code

    run(main())


@pytest.mark.parametrize("deflate", [True, False])
def test_ws_per_message_deflate(run: Any, deflate: bool) -> None:
    async def main() -> None:
        async with uvicorn_serving(echo_app, ws_per_message_deflate=deflate) as (_, port), client(
            f"ws://127.0.0.1:{port}/"
        ) as ws:
            extensions = ws.response.headers.get("sec-websocket-extensions", "")
            assert ("permessage-deflate" in extensions) is deflate
            text = "compressible " * 10_000
            await ws.send(text)
            assert await ws.recv() == text

    run(main())


def test_keepalive_pings_and_closes_a_silent_peer_with_1011(run: Any) -> None:
    async def main() -> None:
        async with uvicorn_serving(echo_app, ws_ping_interval=0.05,
                                   ws_ping_timeout=0.2) as (_, port):
            peer = await raw_client(port)  # completes the handshake, then never answers
            opcode, _ = await peer.recv()
            assert opcode == PING
            assert (await peer.recv_until_close())[0] == 1011
            await peer.aclose()

    run(main())


def test_keepalive_off_with_zero_interval(run: Any) -> None:
    async def main() -> None:
        async with uvicorn_serving(echo_app, ws_ping_interval=0.0) as (_, port):
            peer = await raw_client(port)
            peer.send(TEXT, b"still here")
            assert await peer.recv() == (TEXT, b"still here")  # no ping came first
            peer.send(CLOSE, struct.pack("!H", 1000))
            assert (await peer.recv_until_close())[0] == 1000
            await peer.aclose()

    run(main())


def test_backpressure_holds_the_app_while_the_client_does_not_read(run: Any) -> None:
    count = 400
    chunk = bytes(64 * 1024)
    sent: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(count):
            await send({"type": "websocket.send", "bytes": chunk})
            sent.append(i)
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with uvicorn_serving(app, ws_per_message_deflate=False) as (server, port):
            peer = await raw_client(port)  # reads nothing for now
            # Wait until the app stops making progress: its sends are held by drain().
            last = -1
            while len(sent) != last:
                last = len(sent)
                await asyncio.sleep(0.2)
            assert len(sent) < count  # 25 MiB were not buffered in the server
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, UvicornWebSocketProtocol)
            assert protocol.buffered_amount <= protocol.limits.write_limit + len(chunk) + 16
            received = 0
            while True:
                opcode, payload = await peer.recv()
                if opcode == CLOSE:
                    break
                assert opcode == BINARY and len(payload) == len(chunk)
                received += 1
            assert received == count
            await peer.aclose()

    run(main())


def test_many_messages_queued_while_the_app_is_busy_arrive_in_order(run: Any) -> None:
    got: list[str] = []
    go = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while len(got) < 500:
            got.append((await receive())["text"])
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with uvicorn_serving(app, ws_max_queue=4) as (server, port), client(
            f"ws://127.0.0.1:{port}/"
        ) as ws:
            sending = asyncio.ensure_future(
                asyncio.gather(*(ws.send(f"m{i}") for i in range(500))))
            # ws_max_queue messages wait for the app, then wskit stops reading the socket.
            (protocol,) = server.server_state.connections
            await eventually(lambda: not protocol.transport.is_reading())
            go.set()
            await sending
            await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert got == [f"m{i}" for i in range(500)]

    run(main())


def test_invalid_upgrade_is_refused_before_the_app_runs(run: Any) -> None:
    calls: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        calls.append(scope)

    async def main() -> None:
        async with uvicorn_serving(app) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            writer.close()
        assert head.startswith(b"HTTP/1.1 400")
        assert calls == []

    run(main())


def test_import_path_string_works_for_config(run: Any) -> None:
    async def main() -> None:
        async with uvicorn_serving(echo_app, ws="wskit.asgi:UvicornWebSocketProtocol") as (
            _, port
        ), client(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("via the import string")
            assert await ws.recv() == "via the import string"

    run(main())


def test_limits_from_config() -> None:
    import uvicorn

    config = uvicorn.Config(echo_app, ws_max_size=1234, ws_max_queue=7, ws_ping_interval=3.0,
                            ws_ping_timeout=4.0)
    limits = wskit.asgi.limits_from_config(config)
    assert (limits.max_message_size, limits.max_queue, limits.ping_interval,
            limits.ping_timeout, limits.open_timeout) == (1234, 7, 3.0, 4.0, None)


MAIN = '''
from fastapi import FastAPI, WebSocket

app = FastAPI()


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text.upper())
'''


def test_uvicorn_command_line_with_wskit(tmp_path: Any) -> None:
    """The app's code unchanged: ``uvicorn main:app --ws wskit.asgi:UvicornWebSocketProtocol``."""
    import subprocess
    import sys

    from cli_process import free_port, python_env, stop, wait_for_port

    (tmp_path / "main.py").write_text(MAIN)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--app-dir",
         str(tmp_path), "--ws", "wskit.asgi:UvicornWebSocketProtocol", "--lifespan", "off"],
        env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)

        async def main() -> None:
            async with client(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send("from the command line")
                assert await ws.recv() == "FROM THE COMMAND LINE"

        asyncio.run(main())
    finally:
        status = stop(proc)
    output = proc.stdout.read().decode() if proc.stdout else ""
    # uvicorn shuts down gracefully, then re-raises the signal it caught (its own choice).
    assert status in (0, -signal.SIGTERM), output
    assert "Finished server process" in output
    assert '127.0.0.1:' in output and '"WebSocket /echo" [accepted]' in output


def test_tls_scope_scheme_and_large_messages(run: Any, tmp_path: Any) -> None:
    """uvicorn serving TLS hands wskit an SSL transport: the scheme is wss, messages flow."""
    from tls_util import certificate_authority, client_context

    pem = tmp_path / "server.pem"
    certificate_authority().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(pem))
    schemes: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await echo_app(scope, receive, send)

    async def main() -> None:
        async with uvicorn_serving(app, ssl_certfile=str(pem), ssl_keyfile=str(pem)) as (
            _, port
        ), client(f"wss://127.0.0.1:{port}/", ssl=client_context(), max_size=None) as ws:
            for message in ("over TLS", bytes(range(256)) * 8192, "x" * 300_000):
                await ws.send(message)
                assert await ws.recv() == message
        assert schemes == ["wss"]

    run(main())


def test_frames_sent_before_the_app_accepts_are_kept(run: Any) -> None:
    """A client that does not wait for the 101 (RFC 6455 §4.1 says it should): its frames
    wait until the app accepts, then reach it in order."""
    from e2e import frame, upgrade_request

    got: list[Any] = []
    accept = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await accept.wait()
        await send({"type": "websocket.accept"})
        got.append(await receive())
        got.append(await receive())

    async def main() -> None:
        async with uvicorn_serving(app) as (server, port):
            peer = await raw_client(port, handshake=False)
            peer.write(upgrade_request("/")[0])
            await eventually(lambda: bool(server.server_state.tasks))  # uvicorn handed over
            peer.write(frame(TEXT, b"early") + frame(BINARY, b"\x00bird"))
            await asyncio.sleep(0.1)  # let them arrive before the app accepts
            accept.set()
            start, _ = await peer.read_head()
            assert start.startswith("HTTP/1.1 101")
            await eventually(lambda: len(got) == 2)
            await peer.aclose()
        assert got == [{"type": "websocket.receive", "text": "early"},
                       {"type": "websocket.receive", "bytes": b"\x00bird"}]

    run(main())


def test_malformed_subprotocol_list_is_refused_before_the_app_runs(run: Any) -> None:
    calls: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        calls.append(scope)

    async def main() -> None:
        from e2e import upgrade_request

        async with uvicorn_serving(app) as (_, port):
            peer = await raw_client(port, handshake=False)
            peer.write(upgrade_request("/", extra=[("Sec-WebSocket-Protocol", "a b, ;")])[0])
            status, _, _ = await peer.read_response()
            await peer.aclose()
        assert status == 400
        assert calls == []

    run(main())


@pytest.mark.parametrize("server_header", [True, False])
def test_default_headers_and_the_apps_own(run: Any, server_header: bool) -> None:
    """uvicorn's default headers (server, date) come first, then the app's, repeats kept."""
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept",
                    "headers": [(b"server", b"over-ridden"), (b"server", b"another-value"),
                                (b"x-app", b"1")]})
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with uvicorn_serving(app, server_header=server_header) as (_, port), client(
            f"ws://127.0.0.1:{port}/"
        ) as ws:
            headers = ws.response.headers
            first = ["uvicorn"] if server_header else []
            assert headers.get_all("server") == [*first, "over-ridden", "another-value"]
            assert "date" in headers and headers["x-app"] == "1"

    run(main())
