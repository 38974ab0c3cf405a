"""End-to-end tests of connect: URLs, handshake options, refusals, timeouts, keepalive, close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    WAIT,
    RawPeer,
    accept_upgrade,
    close_payload,
    eventually,
    frame,
    has_ipv6_loopback,
    quiet_app,
    quiet_connect,
    raw_server,
    serving,
)

import wskit


def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
    ws.on_text(lambda ws, text: ws.send(text))
    ws.on_binary(lambda ws, data: ws.send(data))


class TestConnect:
    """connect() opens ws:// URLs (RFC 6455 §3, §4.1) as ``await`` or ``async with``."""

    def test_await_and_async_with(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("echo", echo)

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/echo")
                ws.send("awaited")
                assert await ws.receive() == "awaited"
                await ws.close()
                async with quiet_connect(base + "/echo") as ws2:
                    ws2.send(b"with")
                    assert await ws2.receive() == b"with"
                assert ws2.is_closed
                assert ws2.close_code == 1000

        run(main())

    def test_async_with_closes_when_the_body_raises(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("echo", echo)

        async def main() -> None:
            async with serving(app) as base:
                with pytest.raises(KeyError):
                    async with quiet_connect(base + "/echo") as ws:
                        raise KeyError("body")
                assert ws.is_closed
                assert ws.close_code == 1000

        run(main())

    def test_headers_origin_subprotocols_and_query(self, run: Any) -> None:
        seen: dict[str, Any] = {}
        app = quiet_app(subprotocols=["b", "a"])

        @app.websocket("see")
        def see(req: wskit.Request, ws: wskit.WebSocket) -> None:
            seen.update(auth=req.headers.get_all("Authorization"), x=req.headers.get("X-One"),
                        origin=req.headers.get("Origin"), query=req.query,
                        host=req.headers.get("Host"))

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(
                    base + "/see?a=1&b=%20",
                    headers=[("Authorization", "Bearer t"), ("X-One", "1")],
                    origin="https://app.example", subprotocols=["a", "b"],
                )
                # The server's preference order wins among what the client offered.
                assert ws.subprotocol == "b"
                await ws.close()
                ws = await quiet_connect(base + "/see", headers={"X-One": "map"})
                assert ws.subprotocol is None
                assert seen["x"] == "map"
                await ws.close()
            assert seen["host"] == f"127.0.0.1:{app.port}"

        run(main())

    def test_offered_subprotocols_recorded(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                headers = await accept_upgrade(peer)
                peer.send(TEXT, headers.get("sec-websocket-protocol", "").encode())
                peer.send(TEXT, headers["host"].encode())
                await peer.recv_until_close()

            async with raw_server(handler) as port:
                ws = await quiet_connect(f"ws://127.0.0.1:{port}/x", subprotocols=["p1", "p2"])
                assert await ws.receive() == "p1, p2"
                assert await ws.receive() == f"127.0.0.1:{port}"
                # The server chose none of them: that is allowed (RFC 6455 §4.1).
                assert ws.subprotocol is None

        run(main())

    @pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
    def test_ipv6_literal(self, run: Any) -> None:
        seen: list[str | None] = []
        app = quiet_app()

        @app.websocket("six")
        def six(req: wskit.Request, ws: wskit.WebSocket) -> None:
            seen.append(req.headers.get("Host"))
            echo(req, ws)

        async def main() -> None:
            async with serving(app, host="::1") as base:
                assert base.startswith("ws://[::1]:")
                async with quiet_connect(base + "/six") as ws:
                    ws.send("over v6")
                    assert await ws.receive() == "over v6"
                    assert ws.remote_address[0] == "::1"
            assert seen == [f"[::1]:{app.port}"]

        run(main())

    @pytest.mark.parametrize(
        "url",
        ["http://127.0.0.1/", "ws://", "ws://127.0.0.1/#frag", "ws://127.0.0.1:notaport/", "x"],
    )
    def test_bad_urls(self, url: str, run: Any) -> None:
        async def main() -> None:
            with pytest.raises(ValueError):
                await quiet_connect(url)

        run(main())

    def test_backoff_checked_at_once(self) -> None:
        """connect() refuses a bad backoff at once, with the defaults' policy or another."""
        for bad in ({"backoff_initial": 0.0}, {"backoff_factor": 0.5},
                    {"backoff_max": 0.5}):
            with pytest.raises(ValueError, match="backoff"):
                wskit.connect("ws://127.0.0.1/", **bad)  # type: ignore[arg-type]
        assert wskit.connect("ws://127.0.0.1/", backoff_max=5.0) is not None
        client = wskit.connect("ws://127.0.0.1/", reconnect=True)
        assert client.policy.maximum == 60.0
        assert client.policy is not wskit.connect("ws://127.0.0.1/", reconnect=True).policy

    def test_ssl_context_needs_wss(self, run: Any) -> None:
        import ssl

        async def main() -> None:
            with pytest.raises(ValueError):
                await quiet_connect("ws://127.0.0.1:1/", ssl=ssl.create_default_context())

        run(main())

    def test_connection_refused(self, run: Any) -> None:
        async def main() -> None:
            async with raw_server(lambda peer: asyncio.sleep(0)) as port:
                pass  # the port is free again
            with pytest.raises(OSError):
                await quiet_connect(f"ws://127.0.0.1:{port}/")

        run(main())

    def test_frames_right_behind_the_101_are_kept(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                _, headers = await peer.read_head()
                from e2e import accept_value

                peer.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept_value(headers["sec-websocket-key"]).encode() + b"\r\n\r\n"
                    + frame(TEXT, b"first", mask=False) + frame(BINARY, b"second", mask=False)
                )
                await peer.recv_until_close()

            async with raw_server(handler) as port, quiet_connect(f"ws://127.0.0.1:{port}/") as ws:
                assert await ws.receive() == "first"
                assert await ws.receive() == b"second"

        run(main())


    @pytest.mark.parametrize("cut", [1, 20, 60, -2, -1])
    def test_a_101_in_pieces(self, run: Any, cut: int) -> None:
        """A 101 that comes in two reads goes through the response parser (the first read
        is not a whole head); the frames behind it are kept alike."""
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                _, headers = await peer.read_head()
                from e2e import accept_value

                head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                        + accept_value(headers["sec-websocket-key"]).encode() + b"\r\n\r\n")
                peer.write(head[:cut])
                await peer.writer.drain()
                await asyncio.sleep(0.05)
                peer.write(head[cut:] + frame(TEXT, b"first", mask=False))
                await peer.recv_until_close()

            async with raw_server(handler) as port, quiet_connect(f"ws://127.0.0.1:{port}/") as ws:
                assert await ws.receive() == "first"
                assert ws.response_headers.get("upgrade") == "websocket"

        run(main())

    def test_cancelled_while_opening(self, run: Any) -> None:
        """Cancelling the task that awaits connect() cancels it (no TimeoutError), and drops
        the connection."""
        async def main() -> None:
            ended = asyncio.Event()

            async def handler(peer: RawPeer) -> None:
                await peer.read_head()
                await peer.at_eof(timeout=WAIT)
                ended.set()

            async with raw_server(handler) as port:
                task = asyncio.ensure_future(quiet_connect(f"ws://127.0.0.1:{port}/",
                                                           open_timeout=WAIT))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.wait_for(ended.wait(), WAIT)

        run(main())


class TestRefusals:
    """A refused or broken handshake raises InvalidHandshake with the HTTP status (§4.1)."""

    @pytest.mark.parametrize("status", [400, 401, 404, 500])
    def test_status_is_reported(self, run: Any, status: int) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                await peer.read_head()
                peer.write(f"HTTP/1.1 {status} Nope\r\nContent-Length: 6\r\n\r\nreason".encode())
                await peer.at_eof()

            async with raw_server(handler) as port:
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(f"ws://127.0.0.1:{port}/")
                assert info.value.status == status
                assert str(status) in str(info.value)
                assert "reason" in str(info.value)

        run(main())

    def test_wrong_accept_key(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                await peer.read_head()
                peer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n")
                await peer.at_eof()

            async with raw_server(handler) as port:
                with pytest.raises(wskit.InvalidHandshake) as info:
                    await quiet_connect(f"ws://127.0.0.1:{port}/")
                assert info.value.status == 101

        run(main())

    def test_server_hangs_up_during_handshake(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                await peer.read_head()

            async with raw_server(handler) as port:
                with pytest.raises(ConnectionError):
                    await quiet_connect(f"ws://127.0.0.1:{port}/")

        run(main())

    def test_open_timeout_against_a_silent_server(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                await peer.at_eof(timeout=WAIT)  # accepts TCP, never answers

            async with raw_server(handler) as port:
                with pytest.raises(TimeoutError) as info:
                    await quiet_connect(f"ws://127.0.0.1:{port}/", open_timeout=0.1)
                assert "timed out after 0.1 s opening ws://127.0.0.1:" in str(info.value)
                assert "while waiting for the answer to the WebSocket handshake" in str(info.value)
                # The caller's task is not left cancelled (a timeout uncancels it).
                task = asyncio.current_task()
                assert task is not None and not getattr(task, "cancelling", lambda: 0)()

        run(main())


class TestClientClose:
    """The client's side of closing (RFC 6455 §7.1.1-4): echo, wait for TCP close, time out."""

    def test_server_initiated_close(self, run: Any) -> None:
        async def main() -> None:
            result: list[Any] = []

            async def handler(peer: RawPeer) -> None:
                await accept_upgrade(peer)
                peer.send(CLOSE, close_payload(4100, "server done"))
                result.append(await peer.recv())
                # The server closes TCP first (RFC 6455 §7.1.1).
                peer.writer.close()

            async with raw_server(handler) as port:
                ws = await quiet_connect(f"ws://127.0.0.1:{port}/")
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert (ws.close_code, ws.close_reason) == (4100, "server done")
                assert result == [(CLOSE, close_payload(4100, "server done"))]

        run(main())

    def test_close_times_out_when_the_server_never_answers(self, run: Any) -> None:
        async def main() -> None:
            frames: list[tuple[int, bytes]] = []

            async def handler(peer: RawPeer) -> None:
                await accept_upgrade(peer)
                frames.append(await peer.recv())
                await peer.at_eof()

            async with raw_server(handler) as port:
                ws = await quiet_connect(f"ws://127.0.0.1:{port}/", close_timeout=0.1)
                await asyncio.wait_for(ws.close(4000, "x"), WAIT)
                assert ws.is_closed
                assert ws.close_code == 1006
                assert frames == [(CLOSE, close_payload(4000, "x"))]

        run(main())

    def test_client_waits_a_bounded_time_for_the_server_to_close_tcp(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                await accept_upgrade(peer)
                await peer.recv()
                peer.send(CLOSE, close_payload(1000))
                await peer.at_eof()  # but never closes TCP itself

            async with raw_server(handler) as port:
                ws = await quiet_connect(f"ws://127.0.0.1:{port}/", close_timeout=0.1)
                await asyncio.wait_for(ws.close(), WAIT)
                assert ws.close_code == 1000
                assert ws.error is None

        run(main())

    def test_tcp_drop_is_1006(self, run: Any) -> None:
        async def main() -> None:
            async def handler(peer: RawPeer) -> None:
                await accept_upgrade(peer)
                peer.send(TEXT, b"bye")
                peer.writer.transport.abort()

            async with raw_server(handler) as port:
                ws = await quiet_connect(f"ws://127.0.0.1:{port}/")
                errors: list[BaseException] = []
                finals: list[str] = []
                ws.on_binary(lambda ws, b: None).catch(errors.append).finally_(
                    lambda: finals.append("finally"))
                assert await ws.receive() == "bye"
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert ws.close_code == 1006
                assert len(errors) == 1
                assert isinstance(errors[0], wskit.ConnectionClosed)
                assert errors[0].code == 1006
                assert finals == ["finally"]

        run(main())

    def test_masked_frame_from_server_is_1002(self, run: Any) -> None:
        async def main() -> None:
            got: list[tuple[int, str]] = []

            async def handler(peer: RawPeer) -> None:
                await accept_upgrade(peer)
                peer.write(frame(TEXT, b"masked", mask=True))  # RFC 6455 §5.1: servers don't
                got.append(await peer.recv_until_close())

            async with raw_server(handler) as port:
                ws = await quiet_connect(f"ws://127.0.0.1:{port}/")
                with pytest.raises(wskit.ProtocolError):
                    await asyncio.wait_for(_iterate(ws), WAIT)
                assert ws.close_code == 1002
                assert isinstance(ws.error, wskit.ProtocolError)
                await eventually(lambda: bool(got))
                assert got[0][0] == 1002

        run(main())


async def _iterate(ws: wskit.WebSocket) -> None:
    try:
        async for _ in ws:
            pass
    except wskit.ConnectionClosed:
        if ws.error is not None:
            raise ws.error from None
        raise


class TestClientKeepalive:
    """The client pings too and closes with 1011 a server that stops answering."""

    def test_unresponsive_server(self, run: Any) -> None:
        async def main() -> None:
            seen: list[int] = []

            async def handler(peer: RawPeer) -> None:
                await accept_upgrade(peer)
                while True:
                    opcode, payload = await peer.recv()
                    seen.append(opcode)
                    if opcode == CLOSE:
                        seen.append(int.from_bytes(payload[:2], "big"))
                        break

            async with raw_server(handler) as port:
                ws = await wskit.connect(f"ws://127.0.0.1:{port}/", compression=None,
                                         ping_interval=0.05, ping_timeout=0.1)
                errors: list[BaseException] = []
                ws.on_text(lambda ws, t: None).catch(errors.append)
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert seen[0] == PING
                assert seen[-2:] == [CLOSE, 1011]
                assert len(errors) == 1
                assert isinstance(errors[0], TimeoutError)
                assert isinstance(ws.error, TimeoutError)

        run(main())

    def test_keepalive_on_by_default(self, run: Any) -> None:
        async def main() -> None:
            ws = wskit.connect("ws://127.0.0.1:1/")
            assert ws.options.limits.ping_interval == 20.0
            assert ws.options.limits.ping_timeout == 20.0
            app = wskit.App()
            assert app.limits.ping_interval == 20.0

        run(main())


class TestSignature:
    """connect is a function that says what it returns (issue 16), typed for mypy --strict."""

    def test_inspect_signature_names_the_result(self) -> None:
        import inspect

        signature = inspect.signature(wskit.connect)
        assert signature.return_annotation == "Connect | ReconnectingWebSocket"
        assert "proxy" in signature.parameters and "reconnect" in signature.parameters
        assert inspect.isfunction(wskit.connect)

    def test_mypy_strict_sees_a_websocket(self, tmp_path: Any, monkeypatch: Any,
                                         mypy_cache: Any) -> None:
        from pathlib import Path

        from mypy import api

        snippet = tmp_path / "snippet.py"
        snippet.write_text(
            "import wskit\n\n\nasync def main() -> None:\n"
            "    ws = await wskit.connect('ws://x')\n    reveal_type(ws)\n"
            "    async with wskit.connect('ws://x') as ws2:\n        reveal_type(ws2)\n"
            "    async for ws3 in wskit.connect('ws://x'):\n        reveal_type(ws3)\n"
            "    client = await wskit.connect('ws://x', reconnect=True)\n"
            "    reveal_type(client)\n"
        )
        monkeypatch.setenv("MYPYPATH", str(Path(wskit.__file__).resolve().parents[1]))
        (tmp_path / "empty.ini").write_text("[mypy]\n")
        out, err, status = api.run(["--strict", "--config-file", str(tmp_path / "empty.ini"),
                                    "--cache-dir", str(mypy_cache), str(snippet)])
        revealed = [line.split("Revealed type is ")[1] for line in out.splitlines()
                    if "Revealed type" in line]
        assert revealed == ['"wskit.websocket.WebSocket"'] * 3 + [
            '"wskit.reconnect.ReconnectingWebSocket"'], out + err
        assert status == 0, out + err
