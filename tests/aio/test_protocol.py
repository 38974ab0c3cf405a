"""The asyncio binding (``wskit.aio.protocol``) over real loopback sockets, on asyncio and
uvloop: the receiver seam, the Close held for the application, keepalive, the TCP ending."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from e2e import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    WAIT,
    close_payload,
    eventually,
    frame,
    quiet_app,
    raw_client,
    serving,
)

import wskit
from wskit.aio.protocol import WebSocketProtocol
from wskit.core.connection import BinaryMessage, Event, Role, TextMessage
from wskit.core.limits import Limits


class Recorder:
    """A receiver that is not a WebSocket: the binding needs only the Receiver interface."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.ended: asyncio.Future[Exception | None] = (
            asyncio.get_running_loop().create_future())

    def receive_events(self, events: list[Event]) -> None:
        self.events += events

    def receive_messages(self, messages: list[str | bytes]) -> None:
        self.events += [TextMessage(m) if isinstance(m, str) else BinaryMessage(m)
                        for m in messages]

    def answers_pending(self) -> bool:
        return False

    def connection_ended(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(exc)


class NoHandshake(WebSocketProtocol):
    """Opens at the first byte, without HTTP: the frames follow as early bytes."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(Limits(ping_interval=None, close_timeout=1.0), Role.SERVER)
        self.recorder = recorder

    def handshake_data(self, data: bytes) -> None:
        self.open(self.recorder, [], data)
        self.feed_pending()


class TestReceiverSeam:
    def test_events_and_ending_through_the_interface(self, run: Any) -> None:
        """docs/architecture.md, Seams: the binding hands events to any Receiver; after the
        closing handshake the server closes TCP first (RFC 6455 §7.1.1, Connection.ending)."""

        async def main() -> None:
            recorder = Recorder()
            loop = asyncio.get_running_loop()
            server = await loop.create_server(lambda: NoHandshake(recorder), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frame(TEXT, b"hello") + frame(CLOSE, close_payload(1000, "bye")))
            answer = await asyncio.wait_for(reader.read(100), WAIT)
            assert answer == bytes((0x88, 5)) + b"\x03\xe8bye"  # code and reason echoed
            assert await asyncio.wait_for(reader.read(100), WAIT) == b""  # the server's FIN
            assert await asyncio.wait_for(recorder.ended, WAIT) is None
            texts = [e.data for e in recorder.events if isinstance(e, TextMessage)]
            assert texts == ["hello"]
            writer.close()
            server.close()
            await server.wait_closed()

        run(main())

    def test_closed_is_done_once_the_connection_is_lost(self, run: Any) -> None:
        """``closed`` is made only when asked for (issue 14), before or after the loss: done
        once connection_lost has come, pending until then."""

        async def main() -> None:
            protocols: list[NoHandshake] = []

            def make() -> NoHandshake:
                protocols.append(NoHandshake(Recorder()))
                return protocols[-1]

            loop = asyncio.get_running_loop()
            server = await loop.create_server(make, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            for ask_first in (True, False):
                opened = len(protocols)
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(frame(TEXT, b"x"))
                await eventually(lambda n=opened: len(protocols) > n
                                 and bool(protocols[-1].recorder.events))
                proto = protocols[-1]
                early = proto.closed if ask_first else None
                assert early is None or not early.done()
                writer.close()
                await asyncio.wait_for(proto.recorder.ended, WAIT)
                await asyncio.wait_for(proto.closed, WAIT)
                assert proto.closed.done() and (early is None or early is proto.closed)
            server.close()
            await server.wait_closed()

        run(main())


class TestCloseHeldForTheApplication:
    """RFC 6455 §5.5.1: the Close may wait until what is being sent is sent (issue 10, bug 2)."""

    def test_consumer_echoes_before_the_close(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("echo")
        async def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
            async for message in ws:
                ws.send(message)

        async def main() -> None:
            async with serving(app):
                peer = await raw_client(app.port, "/echo")
                peer.write(frame(TEXT, b"one") + frame(TEXT, b"two")
                           + frame(CLOSE, close_payload(1000)))
                assert await peer.recv() == (TEXT, b"one")
                assert await peer.recv() == (TEXT, b"two")
                assert await peer.recv() == (CLOSE, close_payload(1000))
                assert await peer.at_eof()
                await peer.aclose()

        run(main())

    def test_the_hold_is_bounded_by_close_timeout(self, run: Any) -> None:
        app = quiet_app(close_timeout=0.3)
        stuck = asyncio.Event()

        @app.websocket("slow")
        async def slow(req: wskit.Request, ws: wskit.WebSocket) -> None:
            await ws.receive()  # a reader that takes one message, then never comes back
            await stuck.wait()

        async def main() -> None:
            async with serving(app):
                peer = await raw_client(app.port, "/slow")
                peer.write(frame(TEXT, b"one") + frame(TEXT, b"two")
                           + frame(CLOSE, close_payload(1000)))
                # Answered anyway once close_timeout has passed (well within WAIT).
                assert await peer.recv() == (CLOSE, close_payload(1000))
                assert await peer.at_eof()
                await peer.aclose()
            stuck.set()

        run(main())

    def test_no_hold_without_a_reader(self, run: Any) -> None:
        """Messages nobody reads do not hold the Close: only a reader that is reading does."""
        app = quiet_app(close_timeout=30.0)
        app.websocket("quiet", lambda req, ws: None)

        async def main() -> None:
            async with serving(app):
                peer = await raw_client(app.port, "/quiet")
                peer.write(frame(TEXT, b"unread") + frame(CLOSE, close_payload(1000)))
                assert await peer.recv() == (CLOSE, close_payload(1000))
                await peer.aclose()

        run(main())


class TestCloseLog:
    def test_both_directions_are_logged(self, run: Any, caplog: Any) -> None:
        """Issue 10, bug 3: the server's close line shows the code and reason received and
        those it sent."""
        app = quiet_app()
        app.websocket("x", lambda req, ws: None)

        async def main() -> None:
            async with serving(app):
                peer = await raw_client(app.port, "/x")
                peer.send(CLOSE, close_payload(4001, "room full"))
                assert await peer.recv() == (CLOSE, close_payload(4001, "room full"))
                await eventually(lambda: not app.connections)
                await peer.aclose()

        with caplog.at_level(logging.INFO, logger="wskit"):
            run(main())
        lines = [r.getMessage() for r in caplog.records if "] closed " in r.getMessage()]
        assert lines and "received=4001 'room full'" in lines[-1], lines
        assert "sent=4001 'room full'" in lines[-1], lines


class TestKeepalive:
    def test_timeout_is_a_keepalive_error_with_1011(self, run: Any) -> None:
        """RFC 6455 §7.1.7: an unanswered keepalive ping fails the connection with 1011; the
        error is a KeepaliveTimeout (a ConnectionClosedError and a TimeoutError)."""

        async def main() -> None:
            errors: list[BaseException] = []
            app = quiet_app(ping_interval=0.05, ping_timeout=0.1, close_timeout=0.5)
            app.websocket("ka", lambda req, ws: ws.on_text(lambda ws, t: None).catch(
                errors.append))
            async with serving(app):
                peer = await raw_client(app.port, "/ka")  # reads, never answers pings
                assert (await peer.recv_until_close())[0] == 1011
                await eventually(lambda: len(errors) == 1)
                assert isinstance(errors[0], wskit.KeepaliveTimeout)
                assert errors[0].code == wskit.CloseCode.INTERNAL_ERROR
                await peer.aclose()

        run(main())


class TestCounters:
    """``bytes_out`` counts what the server writes once (app.stats(), ``Server.stats``)."""

    def test_bytes_out_is_what_the_peer_receives(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("echo")
        def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.on_text(lambda ws, text: ws.send(text) if text != "two" else (ws.send(text),
                                                                            ws.send(text)))
            ws.on_binary(lambda ws, data: ws.send(data))

        async def main() -> None:
            async with serving(app):
                peer = await raw_client(app.port, "/echo")
                got = 0
                before = app.stats()["bytes_out"]
                # Reads of whole messages (the fast path), one or two per read, one or two
                # answers each; then a ping and a fragmented message (the general path):
                # RFC 6455 §5.5.2 pong first, §5.4 fragments.
                for data, answers in (
                        (frame(TEXT, b"one"), [(TEXT, b"one")]),
                        (frame(TEXT, b"two"), [(TEXT, b"two")] * 2),
                        (frame(BINARY, b"b" * 300) + frame(TEXT, b"x"),
                         [(BINARY, b"b" * 300), (TEXT, b"x")]),
                        (frame(PING, b"p") + frame(TEXT, b"y"), [(PONG, b"p"), (TEXT, b"y")]),
                        (frame(TEXT, b"fr", fin=False) + frame(0x0, b"ag"), [(TEXT, b"frag")]),
                ):
                    peer.write(data)
                    for answer in answers:
                        assert await peer.recv() == answer
                        got += len(answer[1]) + (2 if len(answer[1]) < 126 else 4)
                    assert app.stats()["bytes_out"] - before == got
                stats = app.stats()
                assert (stats["messages_in"], stats["messages_out"]) == (6, 7)
                await peer.aclose()

        run(main())


def test_no_open_timeout_timer_is_left_once_no_handshake_is_pending(run: Any) -> None:
    """open_timeout bounds each opening handshake with one timer per loop; once the last
    pending handshake is over (upgraded or lost), that timer is cancelled: a live one costs
    every iteration of an asyncio loop its timeout computation until it fires."""
    from wskit.aio import shared

    class Transport:
        def set_write_buffer_limits(self, high: int | None = None,
                                    low: int | None = None) -> None:
            pass

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

        def is_closing(self) -> bool:
            return False

    async def main() -> None:
        limits = Limits(ping_interval=None, close_timeout=1.0)
        assert limits.open_timeout
        openings = shared.openings(asyncio.get_running_loop(), limits.open_timeout)
        first, second = NoHandshake(Recorder()), NoHandshake(Recorder())
        first.connection_made(Transport())  # type: ignore[arg-type]
        second.connection_made(Transport())  # type: ignore[arg-type]
        assert openings.timer is not None
        first.handshake_data(b"")
        assert openings.timer is not None  # the second one is still pending
        second.connection_lost(None)
        assert openings.timer is None and not openings.pending
        third = NoHandshake(Recorder())
        third.connection_made(Transport())  # type: ignore[arg-type]
        assert openings.timer is not None  # armed again for the next one
        third.handshake_data(b"")
        assert openings.timer is None

    run(main())
