"""End-to-end tests of the WebSocket object: send, listeners, Streams, receive, ping, close."""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
from typing import Any

import pytest
from e2e import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    WAIT,
    close_payload,
    eventually,
    quiet_app,
    quiet_connect,
    raw_client,
    serving,
)

import wskit


def echo_app(**kwargs: Any) -> wskit.App:
    app = quiet_app(**kwargs)

    @app.websocket("echo")
    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: ws.send(text))
        ws.on_binary(lambda ws, data: ws.send(data))

    return app


class TestSend:
    """send(str) is a text frame, send(bytes-like) a binary one (RFC 6455 §5.6); misuse raises."""

    def test_text_and_binary_kinds(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                ws.send("héllo")
                ws.send(b"\x00\x01")
                ws.send(bytearray(b"ba"))
                ws.send(memoryview(b"xmvx")[1:3])
                ws.send("")
                ws.send(b"")
                got = [await ws.receive() for _ in range(6)]
                assert got == ["héllo", b"\x00\x01", b"ba", b"mv", "", b""]
                assert [type(m) for m in got] == [str, bytes, bytes, bytes, str, bytes]

        run(main())

    def test_wrong_type_raises_type_error(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                for bad in (1, None, {"a": 1}, ["x"], 1.5):
                    with pytest.raises(TypeError):
                        ws.send(bad)  # type: ignore[arg-type]
                ws.send("still open")
                assert await ws.receive() == "still open"

        run(main())

    def test_str_subclass_is_text(self, run: Any) -> None:
        class Name(str):
            pass

        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                ws.send(Name("sub"))
                assert await ws.receive() == "sub"

        run(main())

    def test_send_after_peer_closed_raises_with_code_and_reason(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("bye")
        async def bye(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await ws.close(4001, "go away")

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/bye")
                await ws.wait_closed()
                with pytest.raises(wskit.ConnectionClosed) as info:
                    ws.send("late")
                assert (info.value.code, info.value.reason) == (4001, "go away")
                with pytest.raises(wskit.ConnectionClosed) as info:
                    ws.send(b"late")
                assert info.value.code == 4001
                with pytest.raises(wskit.ConnectionClosed):
                    await ws.ping()
                with pytest.raises(wskit.ConnectionClosed):
                    await ws.drain()

        run(main())

    def test_send_after_own_close_raises_with_own_code(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")
                closing = asyncio.ensure_future(ws.close(4002, "done here"))
                await asyncio.sleep(0)
                # The Close frame is sent, the answer not yet read: sending is already refused.
                with pytest.raises(wskit.ConnectionClosed) as info:
                    ws.send("x")
                assert (info.value.code, info.value.reason) == (4002, "done here")
                await closing
                with pytest.raises(wskit.ConnectionClosed) as info:
                    ws.send("x")
                assert info.value.code == 4002

        run(main())

    def test_fragmented_send(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                ws.send_fragments(["ab", "cd", "é"])
                ws.send_fragments([b"\x01", b"\x02"])
                assert await ws.receive() == "abcdé"
                assert await ws.receive() == b"\x01\x02"

        run(main())


class TestListeners:
    """Each listener kind gets its message type; plain listeners run inline, async ones in order."""

    def test_every_kind(self, run: Any) -> None:
        async def main() -> None:
            got: list[Any] = []
            views: list[memoryview] = []
            app = quiet_app()

            @app.websocket("kinds")
            def kinds(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.send("t")
                ws.send(b"b")
                ws.send(b"view")

            async with serving(app) as base, quiet_connect(base + "/kinds") as ws:
                done = asyncio.get_running_loop().create_future()
                ws.on_text(lambda ws, text: got.append(("text", text)))

                def on_binary(ws: wskit.WebSocket, data: bytes) -> None:
                    got.append(("binary", data))
                    ws.on_buffer(on_buffer)

                def on_buffer(ws: wskit.WebSocket, view: memoryview) -> None:
                    assert isinstance(view, memoryview)
                    got.append(("buffer", bytes(view)))
                    views.append(view)
                    done.set_result(None)

                ws.on_binary(on_binary)
                await asyncio.wait_for(done, WAIT)
                assert got == [("text", "t"), ("binary", b"b"), ("buffer", b"view")]
                assert type(got[1][1]) is bytes
                # The view is valid only during the call: afterwards it is released.
                with pytest.raises(ValueError):
                    bytes(views[0])

        run(main())

    def test_every_kind_of_coroutine_function_is_awaited(self, run: Any) -> None:
        # A listener is a coroutine function when calling it makes a coroutine: async
        # functions, bound async methods, partials of them, objects with ``async __call__``
        # and (3.12+) functions marked with inspect.markcoroutinefunction.
        async def main() -> None:
            async def answer(tag: str, ws: wskit.WebSocket, text: str) -> None:
                await asyncio.sleep(0)
                ws.send(tag)

            class Caller:
                async def __call__(self, ws: wskit.WebSocket, text: str) -> None:
                    await answer("__call__", ws, text)

                async def method(self, ws: wskit.WebSocket, text: str) -> None:
                    await answer("method", ws, text)

            async def function(ws: wskit.WebSocket, text: str) -> None:
                await answer("function", ws, text)

            listeners: dict[str, Any] = {
                "function": function, "partial": functools.partial(answer, "partial"),
                "__call__": Caller(), "method": Caller().method,
            }
            if hasattr(inspect, "markcoroutinefunction"):
                def marked(ws: wskit.WebSocket, text: str) -> Any:
                    return answer("marked", ws, text)

                listeners["marked"] = inspect.markcoroutinefunction(marked)
            app = quiet_app()

            @app.websocket("a/{kind}")
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_text(listeners[req.params["kind"]])

            async with serving(app) as base:
                for kind in listeners:
                    async with quiet_connect(f"{base}/a/{kind}") as ws:
                        ws.send("go")
                        assert await asyncio.wait_for(ws.receive(), WAIT) == kind

        run(main())

    def test_ping_and_pong_listeners(self, run: Any) -> None:
        async def main() -> None:
            pings: list[bytes] = []
            app = quiet_app()

            @app.websocket("p")
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_ping(lambda ws, data: pings.append(data))

            async with serving(app) as base, quiet_connect(base + "/p") as ws:
                pongs: list[bytes] = []
                ws.on_pong(lambda ws, data: pongs.append(data))
                await ws.ping(b"abc")
                assert pings == [b"abc"]
                assert pongs == [b"abc"]

        run(main())

    def test_raw_ping_is_answered_and_reported(self, run: Any) -> None:
        async def main() -> None:
            seen: list[tuple[str, bytes]] = []
            app = quiet_app()

            @app.websocket("p")
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_ping(lambda ws, data: seen.append(("ping", data)))
                ws.on_pong(lambda ws, data: seen.append(("pong", data)))

            async with serving(app):
                peer = await raw_client(app.port, "/p")
                peer.send(PING, b"hi")
                assert await peer.recv() == (PONG, b"hi")
                peer.send(PONG, b"unsolicited")  # RFC 6455 §5.5.3: allowed, not answered
                peer.send(PING, b"2")
                assert await peer.recv() == (PONG, b"2")
                assert seen == [("ping", b"hi"), ("pong", b"unsolicited"), ("ping", b"2")]
                await peer.aclose()

        run(main())

    def test_plain_and_async_listeners_keep_order(self, run: Any) -> None:
        count = 200

        async def main() -> None:
            texts: list[str] = []
            blobs: list[bytes] = []
            active = 0
            overlapped = False
            finished = asyncio.get_running_loop().create_future()
            app = quiet_app()

            @app.websocket("burst")
            def burst(req: wskit.Request, ws: wskit.WebSocket) -> None:
                for i in range(count):
                    ws.send(str(i))
                    ws.send(i.to_bytes(2, "big"))

            async with serving(app) as base, quiet_connect(base + "/burst") as ws:
                ws.on_text(lambda ws, text: texts.append(text))

                async def slow(ws: wskit.WebSocket, data: bytes) -> None:
                    nonlocal active, overlapped
                    active += 1
                    overlapped = overlapped or active > 1
                    await asyncio.sleep(0)
                    blobs.append(data)
                    active -= 1
                    if len(blobs) == count:
                        finished.set_result(None)

                ws.on_binary(slow)
                await asyncio.wait_for(finished, WAIT)
                assert texts == [str(i) for i in range(count)]
                assert blobs == [i.to_bytes(2, "big") for i in range(count)]
                assert not overlapped

        run(main())

    def test_async_buffer_listener_gets_a_stable_view(self, run: Any) -> None:
        async def main() -> None:
            got = asyncio.get_running_loop().create_future()
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                async def on_buffer(ws: wskit.WebSocket, view: memoryview) -> None:
                    await asyncio.sleep(0)
                    got.set_result((type(view), bytes(view)))

                ws.on_buffer(on_buffer)
                ws.send(b"later")
                assert await asyncio.wait_for(got, WAIT) == (memoryview, b"later")

        run(main())


class TestReplacement:
    """Setting a listener replaces the previous one; queued messages go to a listener set later."""

    def test_new_listener_gets_subsequent_messages(self, run: Any) -> None:
        async def main() -> None:
            first: list[str] = []
            second: list[str] = []
            binary: list[Any] = []
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                got_one = asyncio.get_running_loop().create_future()

                def one(ws: wskit.WebSocket, text: str) -> None:
                    first.append(text)
                    # Replaced from inside the listener: the next message goes to the new one.
                    ws.on_text(lambda ws, text: second.append(text))
                    got_one.set_result(None)

                ws.on_text(one)
                ws.on_binary(lambda ws, data: binary.append(("binary", data)))
                # on_buffer shares the binary slot: it replaces on_binary.
                ws.on_buffer(lambda ws, view: binary.append(("buffer", bytes(view))))
                ws.send("a")
                ws.send("b")
                ws.send("c")
                ws.send(b"z")
                await asyncio.wait_for(got_one, WAIT)
                await eventually(lambda: len(second) == 2 and len(binary) == 1)
                assert first == ["a"]
                assert second == ["b", "c"]
                assert binary == [("buffer", b"z")]

        run(main())

    def test_queued_messages_flush_to_a_later_listener(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("early")
        def early(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.send("one")
            ws.send(b"bin-1")
            ws.send("two")
            ws.send(b"bin-2")
            ws.send("three")
            ws.send(b"marker")

        async def main() -> None:
            async with serving(app) as base, quiet_connect(base + "/early") as ws:
                blobs: list[bytes] = []
                texts: list[str] = []
                marker = asyncio.get_running_loop().create_future()

                def on_binary(ws: wskit.WebSocket, data: bytes) -> None:
                    blobs.append(data)
                    if data == b"marker":
                        marker.set_result(None)

                ws.on_binary(on_binary)
                await asyncio.wait_for(marker, WAIT)
                # The binary messages were all flushed in order; the texts are still queued.
                assert blobs == [b"bin-1", b"bin-2", b"marker"]
                ws.on_text(lambda ws, text: texts.append(text))
                assert texts == ["one", "two", "three"]

        run(main())


class TestCatchFinally:
    """An error calls every catch, then every finally_; a normal close only finally_ (§7.1.7)."""

    def test_replaced_handles_end_too(self, run: Any) -> None:
        """Issue 10, bug 1: what was attached to a handle whose listener was replaced since
        still runs, once, at the end: every catch first (with the error), then finally_."""
        app = quiet_app()

        @app.websocket("x")
        async def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await ws.close(1008, "go")

        async def main() -> None:
            calls: list[str] = []
            async with serving(app) as base:
                ws = await quiet_connect(base + "/x")
                ws.on_text(lambda ws, t: None).catch(lambda e: calls.append("catch 1")).finally_(
                    lambda: calls.append("finally 1"))
                ws.on_text(lambda ws, t: None).catch(lambda e: calls.append("catch 2")).finally_(
                    lambda: calls.append("finally 2"))
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                await eventually(lambda: len(calls) == 4)
                assert calls == ["catch 1", "catch 2", "finally 1", "finally 2"]
                await asyncio.sleep(0.01)
                assert len(calls) == 4  # exactly once

        run(main())

    def test_app_close_code_is_not_an_error(self, run: Any) -> None:
        """Issue 16: a clean close with an application code (4000-4999) is a ConnectionClosedOK;
        catch is not called, finally_ is."""
        app = quiet_app()

        @app.websocket("x")
        async def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await ws.close(4001, "room full")

        async def main() -> None:
            calls: list[Any] = []
            async with serving(app) as base:
                ws = await quiet_connect(base + "/x")
                ws.on_binary(lambda ws, d: None).catch(calls.append).finally_(
                    lambda: calls.append("finally"))
                with pytest.raises(wskit.ConnectionClosedOK) as raised:
                    await asyncio.wait_for(ws.receive(), WAIT)
                assert (raised.value.code, raised.value.reason) == (4001, "room full")
                await eventually(lambda: calls == ["finally"])
                assert ws.error is None

        run(main())

    def test_error_close_raises_connection_closed_error(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("x")
        async def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await ws.close(1011, "broken")

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/x")
                with pytest.raises(wskit.ConnectionClosedError) as raised:
                    await asyncio.wait_for(ws.receive(), WAIT)
                assert raised.value.code == wskit.CloseCode.INTERNAL_ERROR
                assert isinstance(ws.error, wskit.ConnectionClosedError)

        run(main())

    def test_protocol_error_from_peer(self, run: Any) -> None:
        async def main() -> None:
            calls: list[Any] = []
            closed = asyncio.get_running_loop().create_future()
            app = quiet_app()

            @app.websocket("strict")
            def strict(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_text(lambda ws, text: None).catch(
                    lambda error: calls.append(("text catch", error))
                ).finally_(lambda: calls.append("text finally"))
                ws.on_binary(lambda ws, data: None).catch(
                    lambda error: calls.append(("binary catch", error))
                ).finally_(lambda: closed.set_result(calls.append("binary finally")))

            async with serving(app):
                peer = await raw_client(app.port, "/strict")
                peer.write(b"\xff\xff garbage")  # reserved bits and an unknown opcode
                code, _ = await peer.recv_until_close()
                assert code == 1002
                assert await peer.at_eof()
                await asyncio.wait_for(closed, WAIT)
                kinds = [c[0] if isinstance(c, tuple) else c for c in calls]
                assert kinds == ["text catch", "binary catch", "text finally", "binary finally"]
                error = calls[0][1]
                assert isinstance(error, wskit.ProtocolError)
                assert error.close_code == 1002
                assert calls[1][1] is error
                await peer.aclose()

        run(main())

    def test_normal_close_calls_only_finally(self, run: Any) -> None:
        async def main() -> None:
            calls: list[str] = []
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")
                ws.on_text(lambda ws, text: None).catch(lambda e: calls.append("catch")).finally_(
                    lambda: calls.append("finally 1")
                ).finally_(lambda: calls.append("finally 2"))
                await ws.close()
                assert calls == ["finally 1", "finally 2"]
                assert ws.close_code == 1000
                assert ws.error is None

        run(main())

    def test_listener_that_raises_closes_with_1011(self, run: Any) -> None:
        async def main() -> None:
            calls: list[Any] = []
            done = asyncio.get_running_loop().create_future()
            app = quiet_app()

            @app.websocket("boom")
            def boom(req: wskit.Request, ws: wskit.WebSocket) -> None:
                def explode(ws: wskit.WebSocket, text: str) -> None:
                    raise RuntimeError(text)

                ws.on_text(explode).catch(lambda e: calls.append(e)).finally_(
                    lambda: done.set_result(None)
                )

            async with serving(app) as base:
                ws = await quiet_connect(base + "/boom")
                client_calls: list[Any] = []
                ws.on_binary(lambda ws, data: None).catch(client_calls.append)
                ws.send("kaboom")
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert ws.close_code == 1011
                await asyncio.wait_for(done, WAIT)
                assert len(calls) == 1
                assert isinstance(calls[0], RuntimeError)
                assert str(calls[0]) == "kaboom"
                # The client sees an abnormal close: its catch gets ConnectionClosed(1011).
                assert len(client_calls) == 1
                assert isinstance(client_calls[0], wskit.ConnectionClosed)
                assert client_calls[0].code == 1011

        run(main())

    def test_async_listener_that_raises_closes_with_1011(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()

            @app.websocket("boom")
            def boom(req: wskit.Request, ws: wskit.WebSocket) -> None:
                async def explode(ws: wskit.WebSocket, data: bytes) -> None:
                    await asyncio.sleep(0)
                    raise ValueError("async listener")

                ws.on_binary(explode)

            async with serving(app) as base:
                ws = await quiet_connect(base + "/boom")
                ws.send(b"x")
                with pytest.raises(wskit.ConnectionClosed) as info:
                    async for _ in ws:
                        pass
                assert info.value.code == 1011

        run(main())

    def test_catch_and_finally_may_be_coroutines(self, run: Any) -> None:
        async def main() -> None:
            calls: list[str] = []
            done = asyncio.get_running_loop().create_future()
            app = quiet_app()

            @app.websocket("x")
            async def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                await ws.close(1008, "server says no")

            async with serving(app) as base:
                ws = await quiet_connect(base + "/x")

                async def on_error(error: BaseException) -> None:
                    await asyncio.sleep(0)
                    calls.append(f"catch {error.code}")  # type: ignore[attr-defined]

                async def on_end() -> None:
                    calls.append("finally")
                    done.set_result(None)

                ws.on_text(lambda ws, t: None).catch(on_error).finally_(on_end)
                await asyncio.wait_for(done, WAIT)
                await eventually(lambda: len(calls) == 2)
                assert sorted(calls) == ["catch 1008", "finally"]

        run(main())

    def test_hook_that_raises_does_not_stop_the_others(self, run: Any) -> None:
        async def main() -> None:
            calls: list[str] = []
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")

                def bad() -> None:
                    raise RuntimeError("in finally")

                ws.on_text(lambda ws, t: None).finally_(bad).finally_(lambda: calls.append("ok"))
                await ws.close()
                assert calls == ["ok"]

        run(main())


class TestReceive:
    """receive() and ``async for`` read messages no listener took; iteration ends on 1000/1001."""

    def test_receive_and_iterate_until_normal_close(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("three")
        async def three(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.send("a")
            ws.send(b"b")
            ws.send("c")
            await ws.close(1001, "going")

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/three")
                got = [message async for message in ws]
                assert got == ["a", b"b", "c"]
                assert (ws.close_code, ws.close_reason) == (1001, "going")
                with pytest.raises(wskit.ConnectionClosed) as info:
                    await ws.receive()
                assert info.value.code == 1001

        run(main())

    def test_iteration_raises_on_abnormal_close(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()

            @app.websocket("drop")
            def drop(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.send("last words")
                ws._protocol.transport.close()  # type: ignore[union-attr]  # no Close frame

            async with serving(app) as base:
                ws = await quiet_connect(base + "/drop")
                got = []
                with pytest.raises(wskit.ConnectionClosed) as info:
                    async for message in ws:
                        got.append(message)
                assert got == ["last words"]
                assert info.value.code == 1006
                assert ws.close_code == 1006

        run(main())

    def test_concurrent_receivers_each_get_a_message(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                first = asyncio.ensure_future(ws.receive())
                second = asyncio.ensure_future(ws.receive())
                await asyncio.sleep(0)
                ws.send("1")
                ws.send("2")
                got = await asyncio.wait_for(asyncio.gather(first, second), WAIT)
                assert sorted(got) == ["1", "2"]

        run(main())

    def test_pending_receive_wakes_on_close(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")
                waiting = asyncio.ensure_future(ws.receive())
                await asyncio.sleep(0)
                await ws.close()
                with pytest.raises(wskit.ConnectionClosed) as info:
                    await asyncio.wait_for(waiting, WAIT)
                assert info.value.code == 1000

        run(main())

    def test_bounded_inbox_pauses_reading(self, run: Any) -> None:
        size = 256 * 1024
        count = 40

        async def main() -> None:
            server_ws: list[wskit.WebSocket] = []
            app = quiet_app(max_message_size=size)

            @app.websocket("flood")
            async def flood(req: wskit.Request, ws: wskit.WebSocket) -> None:
                server_ws.append(ws)
                for i in range(count):
                    ws.send(bytes([i]) * size)

            async with serving(app) as base:
                ws = await quiet_connect(base + "/flood", max_queue=2, max_message_size=size)
                await eventually(lambda: bool(server_ws))
                # The client stops reading once its inbox is full: the server's buffer backs up.
                await eventually(lambda: server_ws[0].buffered_amount > 0)
                assert len(ws._inbox or ()) <= 2 + 2
                assert ws._protocol._reading_paused
                for i in range(count):
                    message = await asyncio.wait_for(ws.receive(), WAIT)
                    assert message == bytes([i]) * size
                await asyncio.wait_for(server_ws[0].drain(), WAIT)
                await ws.close()

        run(main())


class TestBackpressure:
    """send() never blocks; drain() waits while the peer does not read; buffered_amount grows."""

    def test_drain_blocks_until_the_peer_reads(self, run: Any) -> None:
        async def main() -> None:
            opened: asyncio.Future[wskit.WebSocket] = asyncio.get_running_loop().create_future()
            app = quiet_app(write_limit=64 * 1024)

            @app.websocket("push")
            def push(req: wskit.Request, ws: wskit.WebSocket) -> None:
                # A small kernel buffer, so that little data fills it.
                sock = ws._protocol.transport.get_extra_info("socket")  # type: ignore[union-attr]
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
                opened.set_result(ws)

            async with serving(app):
                # The peer completes the handshake and then stops reading from its socket.
                peer = await raw_client(app.port, "/push")
                peer.writer.transport.pause_reading()
                ws = await asyncio.wait_for(opened, WAIT)
                chunk = b"x" * (64 * 1024)
                sent = 0
                while ws.buffered_amount <= 64 * 1024:
                    before = ws.buffered_amount
                    ws.send(chunk)  # never blocks
                    sent += 1
                    assert ws.buffered_amount > before or before == 0
                    assert sent < 1000, "the kernel never filled up"
                for _ in range(4):  # well above the low-water mark
                    before = ws.buffered_amount
                    ws.send(chunk)
                    sent += 1
                    assert ws.buffered_amount >= before + len(chunk)
                draining = asyncio.ensure_future(ws.drain())
                await asyncio.sleep(0.05)
                assert not draining.done()
                # Now the peer reads everything: drain returns.
                peer.writer.transport.resume_reading()
                await _read_binary(peer, sent, len(chunk))
                await asyncio.wait_for(draining, WAIT)
                assert ws.buffered_amount < 64 * 1024
                await peer.aclose()

        run(main())

    def test_drain_over_tls(self, run: Any) -> None:
        from tls_util import client_context, server_context

        async def main() -> None:
            opened: asyncio.Future[wskit.WebSocket] = asyncio.get_running_loop().create_future()
            app = quiet_app(write_limit=64 * 1024)
            app.websocket("push", lambda req, ws: opened.set_result(ws))
            async with serving(app, ssl=server_context()):
                peer = await raw_client(app.port, "/push", ssl=client_context())
                peer.writer.transport.set_read_buffer_limits(high=1024, low=0)
                peer.writer.transport.pause_reading()
                ws = await asyncio.wait_for(opened, WAIT)
                chunk = b"y" * (64 * 1024)
                sent = 0
                stop = False

                async def fill() -> None:
                    nonlocal sent
                    while not stop:
                        ws.send(chunk)
                        sent += 1
                        await ws.drain()

                filling = asyncio.ensure_future(fill())
                # A sender that respects drain() comes to a halt, with bytes still queued.
                last = -1
                while last != sent:
                    last = sent
                    await asyncio.sleep(0.05)
                    assert sent < 1000, "drain() never blocked"
                assert not filling.done()
                assert ws.buffered_amount > 0
                stop = True
                peer.writer.transport.resume_reading()
                await _read_binary(peer, sent, len(chunk))
                await asyncio.wait_for(filling, WAIT)
                await peer.aclose()

        run(main())

    def test_many_clients_at_once(self, run: Any) -> None:
        async def main() -> None:
            app = echo_app()
            async with serving(app) as base:
                async def one(i: int) -> list[Any]:
                    async with quiet_connect(base + "/echo") as ws:
                        for j in range(5):
                            ws.send(f"{i}.{j}")
                            ws.send(bytes([i % 256, j]))
                        return [await ws.receive() for _ in range(10)]

                results = await asyncio.wait_for(asyncio.gather(*map(one, range(60))), WAIT * 2)
                for i, got in enumerate(results):
                    assert got == [m for j in range(5) for m in (f"{i}.{j}", bytes([i % 256, j]))]
                await eventually(lambda: not app.connections)

        run(main())

    def test_drain_returns_at_once_when_nothing_is_queued(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                ws.send("small")
                await asyncio.wait_for(ws.drain(), WAIT)
                assert ws.buffered_amount == 0

        run(main())


async def _read_binary(peer: Any, count: int, size: int) -> None:
    for _ in range(count):
        opcode, payload = await peer.recv()
        assert (opcode, len(payload)) == (BINARY, size)


class TestPing:
    """ping() returns the round-trip time when the matching pong arrives (RFC 6455 §5.5.2-3)."""

    def test_round_trip_time(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                assert ws.latency is None
                rtt = await asyncio.wait_for(ws.ping(), WAIT)
                assert isinstance(rtt, float)
                assert 0 <= rtt < WAIT
                assert ws.latency == rtt
                rtts = await asyncio.gather(ws.ping(b"1"), ws.ping(b"2"), ws.ping())
                assert all(r >= 0 for r in rtts)
                with pytest.raises(ValueError):
                    await ws.ping(b"x" * 126)

        run(main())

    def test_pending_ping_fails_when_the_connection_closes(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()

            @app.websocket("mute")
            def mute(req: wskit.Request, ws: wskit.WebSocket) -> None:
                pass

            async with serving(app):
                peer = await raw_client(app.port, "/mute")
                server_ws = next(iter(app.connections))
                pinging = asyncio.ensure_future(server_ws.ping(b"q"))
                assert await peer.recv() == (PING, b"q")
                await peer.aclose()  # never answers
                with pytest.raises(wskit.ConnectionClosed) as info:
                    await asyncio.wait_for(pinging, WAIT)
                assert info.value.code == 1006

        run(main())


class TestClose:
    """Close codes and reasons travel both ways (RFC 6455 §7.4); close() is bounded in time."""

    @pytest.mark.parametrize("code", [1000, 1001, 1003, 3000, 4999])
    def test_client_closes(self, run: Any, code: int) -> None:
        async def main() -> None:
            seen = asyncio.get_running_loop().create_future()
            app = quiet_app()

            @app.websocket("c")
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_text(lambda ws, t: None).finally_(
                    lambda: seen.set_result((ws.close_code, ws.close_reason))
                )

            async with serving(app) as base:
                ws = await quiet_connect(base + "/c")
                await ws.close(code, "client reason")
                assert ws.is_closed
                assert ws.close_code == code  # the server echoes the code (RFC 6455 §5.5.1)
                assert await asyncio.wait_for(seen, WAIT) == (code, "client reason")

        run(main())

    @pytest.mark.parametrize("code", [1000, 1008, 4000])
    def test_server_closes(self, run: Any, code: int) -> None:
        app = quiet_app()

        @app.websocket("s")
        async def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await ws.close(code, "server reason")
            assert ws.close_code == code

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/s")
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert (ws.close_code, ws.close_reason) == (code, "server reason")
                assert ws.is_closed

        run(main())

    def test_close_is_idempotent_and_validates_the_code(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")
                with pytest.raises(ValueError):
                    await ws.close(1006)
                with pytest.raises(ValueError):
                    await ws.close(1000, "r" * 124)
                ws.send("still open")
                assert await ws.receive() == "still open"
                await asyncio.gather(ws.close(), ws.close())
                await ws.close()
                assert ws.close_code == 1000

        run(main())

    def test_close_times_out_when_the_peer_never_answers(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app(close_timeout=0.2)

            @app.websocket("deaf")
            def deaf(req: wskit.Request, ws: wskit.WebSocket) -> None:
                pass

            async with serving(app):
                peer = await raw_client(app.port, "/deaf")
                server_ws = next(iter(app.connections))
                await asyncio.wait_for(server_ws.close(1000, "bye"), WAIT)
                assert server_ws.is_closed
                assert server_ws.close_code == 1006  # no Close frame came back
                assert await peer.recv_until_close() == (1000, "bye")
                assert await peer.at_eof()
                await peer.aclose()

        run(main())

    def test_peer_close_without_status(self, run: Any) -> None:
        async def main() -> None:
            calls: list[str] = []
            app = quiet_app()

            @app.websocket("c")
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_text(lambda ws, t: None).catch(lambda e: calls.append("catch")).finally_(
                    lambda: calls.append(f"finally {ws.close_code}")
                )

            async with serving(app):
                peer = await raw_client(app.port, "/c")
                peer.send(TEXT, b"hi")
                peer.send(CLOSE)
                # RFC 6455 §5.5.1: the answer carries no code either; 1005 is not on the wire.
                assert await peer.recv() == (CLOSE, b"")
                assert await peer.at_eof()
                await eventually(lambda: len(calls) == 1)
                assert calls == ["finally 1005"]
                await peer.aclose()

        run(main())

    def test_peer_error_code_reaches_catch(self, run: Any) -> None:
        async def main() -> None:
            errors: list[BaseException] = []
            app = quiet_app()

            @app.websocket("c")
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.on_text(lambda ws, t: None).catch(errors.append)

            async with serving(app):
                peer = await raw_client(app.port, "/c")
                peer.send(CLOSE, close_payload(1011, "peer broke"))
                # The answer echoes the code and the reason (issue 10, RFC 6455 §5.5.1).
                assert await peer.recv() == (CLOSE, close_payload(1011, "peer broke"))
                await eventually(lambda: len(errors) == 1)
                assert isinstance(errors[0], wskit.ConnectionClosed)
                assert (errors[0].code, errors[0].reason) == (1011, "peer broke")
                await peer.aclose()

        run(main())


class TestAttributes:
    """request, subprotocol, extensions, remote_address, state and repr of a connection."""

    def test_server_side_request(self, run: Any) -> None:
        async def main() -> None:
            seen: dict[str, Any] = {}
            app = quiet_app(subprotocols=["chat.v2"])

            @app.websocket("rooms/{room}")
            def room(req: wskit.Request, ws: wskit.WebSocket) -> None:
                seen.update(
                    method=req.method, path=req.path, query=req.query, params=req.params,
                    header=req.headers.get("X-Trace"), remote=req.remote_address,
                    same=ws.request is req, subprotocol=ws.subprotocol,
                    extensions=ws.extensions, ws_remote=ws.remote_address,
                )

            async with serving(app) as base:
                url = base + "/rooms/lobby?user=ann&x=1"
                async with quiet_connect(url, headers={"X-Trace": "t-1"},
                                         subprotocols=["chat.v1", "chat.v2"]) as ws:
                    assert ws.subprotocol == "chat.v2"
                    assert ws.request is None
                    assert ws.extensions == []
                    assert ws.state is not None
                    assert "client" in repr(ws)
                    await eventually(lambda: bool(seen))
                    local = ws._protocol.transport.get_extra_info("sockname")  # type: ignore[union-attr]
            assert seen["method"] == "GET"
            assert seen["path"] == "/rooms/lobby"
            assert seen["query"] == {"user": "ann", "x": "1"}
            assert seen["params"] == {"room": "lobby"}
            assert seen["header"] == "t-1"
            assert seen["remote"] == local
            assert seen["ws_remote"] == local
            assert seen["same"] is True
            assert seen["subprotocol"] == "chat.v2"
            assert seen["extensions"] == []

        run(main())

    def test_request_headers_stay_readable_while_open(self, run: Any) -> None:
        """An open connection keeps its request headers compactly (issue 14): read from a
        listener long after the upgrade, they are what the before_upgrade hook saw."""

        async def main() -> None:
            at_upgrade: list[list[tuple[str, str]]] = []
            later: list[Any] = []
            app = quiet_app()

            def hook(req: wskit.Request) -> None:
                at_upgrade.append(req.headers.raw_items())

            @app.websocket("h", before_upgrade=hook)
            def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
                def on_text(ws: wskit.WebSocket, text: str) -> None:
                    headers = ws.request.headers
                    later.append((headers.raw_items(), headers.get("x-trace"),
                                  headers.get_all("X-Multi"), "X-TRACE" in headers,
                                  len(headers), ws.request.subprotocols))
                    ws.send(text)

                ws.on_text(on_text)

            headers = [("X-Trace", "t: 1"), ("X-Multi", "a"), ("x-multi", "b")]
            async with serving(app) as base, quiet_connect(base + "/h", headers=headers) as ws:
                ws.send("hi")
                assert await asyncio.wait_for(ws.receive(), WAIT) == "hi"
            pairs, trace, multi, present, count, subprotocols = later[0]
            assert pairs == at_upgrade[0]
            assert (trace, multi, present, count) == ("t: 1", ["a", "b"], True, len(pairs))
            assert subprotocols == []

        run(main())


class TestCompression:
    """The defaults negotiate permessage-deflate (RFC 7692) and messages still round-trip."""

    @staticmethod
    def app(**kwargs: Any) -> wskit.App:
        app = wskit.App(ping_interval=None, **kwargs)

        @app.websocket("echo")
        def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.on_text(lambda ws, text: ws.send(text))
            ws.on_binary(lambda ws, data: ws.send(data))

        return app

    def test_default_exchanges(self, run: Any) -> None:
        async def main() -> None:
            app = self.app()
            async with serving(app) as base, wskit.connect(base + "/echo") as ws:
                assert ws.extensions == ["permessage-deflate"]
                assert next(iter(app.connections)).extensions == ["permessage-deflate"]
                text = "wskit compresses " * 5000
                blob = bytes(range(256)) * 400
                for _ in range(3):  # the shared window carries over between messages
                    ws.send(text)
                    ws.send(blob)
                    ws.send("tiny")
                    ws.send(blob, compress=False)
                    assert await ws.receive() == text
                    assert await ws.receive() == blob
                    assert await ws.receive() == "tiny"
                    assert await ws.receive() == blob
                got: asyncio.Future[memoryview] = asyncio.get_running_loop().create_future()
                ws.on_buffer(lambda ws, view: got.set_result(bytes(view)))
                ws.send(blob)
                assert await asyncio.wait_for(got, WAIT) == blob

        run(main())

    def test_either_side_may_decline(self, run: Any) -> None:
        async def main() -> None:
            for server, client in ((self.app(), None), (self.app(compression=None), "deflate")):
                async with (
                    serving(server) as base,
                    wskit.connect(base + "/echo", compression=client) as ws,
                ):
                    assert ws.extensions == []
                    ws.send("plain")
                    assert await ws.receive() == "plain"

        run(main())

    def test_decompression_is_bounded(self, run: Any) -> None:
        async def main() -> None:
            async with serving(self.app(max_message_size=64 * 1024)) as base:
                ws = await wskit.connect(base + "/echo", max_message_size=16 << 20)
                ws.send(b"\x00" * (8 << 20))  # a few KiB on the wire, 8 MiB inflated
                with pytest.raises(wskit.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.receive(), WAIT)
                assert info.value.code == 1009

        run(main())

    def test_over_tls(self, run: Any) -> None:
        from tls_util import client_context, server_context

        async def main() -> None:
            async with (
                serving(self.app(), ssl=server_context()) as base,
                wskit.connect(base + "/echo", ssl=client_context()) as ws,
            ):
                assert ws.extensions == ["permessage-deflate"]
                ws.send("secret " * 1000)
                assert await ws.receive() == "secret " * 1000

        run(main())


class TestStreamAfterTheEnd:
    """A handle attached after the connection ended still reports it, like a settled future."""

    def test_late_catch_and_finally(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("x")
        async def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.send("left in the inbox")
            await ws.close(1008, "late")

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/x")
                await ws.wait_closed()
                calls: list[Any] = []
                texts: list[str] = []
                ws.on_text(lambda ws, t: texts.append(t)).catch(
                    lambda e: calls.append(("catch", e.code))  # type: ignore[attr-defined]
                ).finally_(lambda: calls.append("finally"))
                assert texts == ["left in the inbox"]  # queued messages are still delivered
                await eventually(lambda: len(calls) == 2)
                assert calls == [("catch", 1008), "finally"]

        run(main())


class TestCloseWithAFullInbox:
    """Closing reads the peer's Close even when unread messages have paused reading (§7.1.2)."""

    def test_close_completes_and_queued_messages_stay_readable(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("flood")
        def flood(req: wskit.Request, ws: wskit.WebSocket) -> None:
            for i in range(50):
                ws.send(f"m{i}")

        async def main() -> None:
            async with serving(app) as base:
                ws = await quiet_connect(base + "/flood", max_queue=2)
                await eventually(lambda: ws._protocol._reading_paused)
                await asyncio.wait_for(ws.close(), WAIT)
                assert ws.close_code == 1000  # the answer was read, not timed out (1006)
                got = [message async for message in ws]
                assert got == [f"m{i}" for i in range(len(got))]
                assert len(got) >= 2

        run(main())


class TestCancellation:
    """Cancelling one waiting call leaves the connection and other waiters intact."""

    def test_cancelled_receive_does_not_disturb_others(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                patient = asyncio.ensure_future(ws.receive())
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.receive(), 0.01)
                ws.send("for the patient one")
                assert await asyncio.wait_for(patient, WAIT) == "for the patient one"
                ws.send("next")
                assert await asyncio.wait_for(ws.receive(), WAIT) == "next"

        run(main())

    def test_cancelled_first_receiver_leaves_the_later_one_waiting(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base, quiet_connect(base + "/echo") as ws:
                first = asyncio.ensure_future(ws.receive())
                await asyncio.sleep(0)
                later = asyncio.ensure_future(ws.receive())
                await asyncio.sleep(0)
                first.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await first
                ws.send("for the later one")
                assert await asyncio.wait_for(later, WAIT) == "for the later one"

        run(main())

    def test_cancelled_ping_can_be_repeated(self, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            app.websocket("mute", lambda req, ws: None)
            async with serving(app):
                peer = await raw_client(app.port, "/mute")
                server_ws = next(iter(app.connections))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(server_ws.ping(b"same"), 0.01)
                pinging = asyncio.ensure_future(server_ws.ping(b"same"))
                assert await peer.recv() == (PING, b"same")
                assert await peer.recv() == (PING, b"same")
                peer.send(PONG, b"same")
                assert await asyncio.wait_for(pinging, WAIT) >= 0
                await peer.aclose()

        run(main())

    def test_cancelled_close_still_closes(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")
                closing = asyncio.ensure_future(ws.close(4003))
                await asyncio.sleep(0)  # the Close frame is sent
                closing.cancel()
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                assert ws.close_code == 4003

        run(main())

    def test_close_from_a_plain_listener(self, run: Any) -> None:
        async def main() -> None:
            async with serving(echo_app()) as base:
                ws = await quiet_connect(base + "/echo")
                ws.on_text(lambda ws, text: asyncio.ensure_future(ws.close(4004, text)))
                ws.send("from the listener")
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                # The echo server answers with our code and reason (issue 10).
                assert (ws.close_code, ws.close_reason) == (4004, "from the listener")
                assert ws.error is None

        run(main())


class TestAsyncListenersAtTheEnd:
    """Messages received before the close still reach coroutine listeners, before finally_."""

    def test_finally_after_the_queued_calls(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("five")
        async def five(req: wskit.Request, ws: wskit.WebSocket) -> None:
            for i in range(5):
                ws.send(str(i))
            await ws.close()

        async def main() -> None:
            events: list[str] = []
            done = asyncio.get_running_loop().create_future()
            async with serving(app) as base:
                ws = await quiet_connect(base + "/five")

                async def slow(ws: wskit.WebSocket, text: str) -> None:
                    await asyncio.sleep(0.01)
                    events.append(text)

                ws.on_text(slow).finally_(lambda: done.set_result(events.append("finally")))
                await asyncio.wait_for(done, WAIT)
                assert events == ["0", "1", "2", "3", "4", "finally"]

        run(main())

    def test_async_listener_failing_after_the_end_reaches_catch(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("one")
        async def one(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.send("x")
            await ws.close()

        async def main() -> None:
            calls: list[Any] = []
            done = asyncio.get_running_loop().create_future()
            async with serving(app) as base:
                ws = await quiet_connect(base + "/one")

                async def late(ws: wskit.WebSocket, text: str) -> None:
                    await ws.wait_closed()
                    ws.send("too late")  # raises ConnectionClosed

                ws.on_text(late).catch(calls.append).finally_(lambda: done.set_result(None))
                await asyncio.wait_for(done, WAIT)
                assert len(calls) == 1
                assert isinstance(calls[0], wskit.ConnectionClosed)
                assert ws.close_code == 1000

        run(main())
