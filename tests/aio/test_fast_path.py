"""The per-message path of a server in C (``_speedups.Reader``, ``WebSocketProtocol.data_received``
to the plain listeners; ``_speedups.Sender``, ``WebSocket.send``), bytes in and bytes out over
a fake transport, against the pure path: the same frames (RFC 6455 §5.2,
§5.6), the same counters, the same corking, and every case it does not take handed to the
pure method unchanged (§5.4 no message inside our own fragmented one, §5.5.1 nothing after
our Close). A client's path (§5.3, masked) is tested in test_client_fast_path.py."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from typing import Any

import pytest
from e2e import BINARY, CLOSE, PING, PONG, TEXT, frame

import wskit
from wskit.aio.protocol import WebSocketProtocol
from wskit.core import masking
from wskit.core.connection import Connection, Role, State
from wskit.core.errors import ConnectionClosed, InvalidState
from wskit.core.frames import encode_frame
from wskit.core.limits import Limits

IN_CI = os.environ.get("CI", "").lower() == "true"
_SENDER = getattr(masking.speedups, "Sender", None)
_READER = getattr(masking.speedups, "Reader", None)
#: The pure WebSocket.send and data_received (the C ones keep them as their fallback).
PURE_SEND = (_SENDER and wskit.WebSocket.send.fallback) or wskit.WebSocket.send  # type: ignore[attr-defined]
PURE_READ = ((_READER and WebSocketProtocol.data_received.fallback)  # type: ignore[attr-defined]
             or WebSocketProtocol.data_received)
PURE_UPDATED = ((_READER and WebSocketProtocol.buffer_updated.fallback)  # type: ignore[attr-defined]
                or WebSocketProtocol.buffer_updated)
PURE_GET_BUFFER = ((_READER and WebSocketProtocol.get_buffer.fallback)  # type: ignore[attr-defined]
                   or WebSocketProtocol.get_buffer)


@pytest.fixture(autouse=True, params=["python", "c"])
def send_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with the pure ``WebSocket.send`` and ``data_received``, and with their C
    twins."""
    if request.param == "c":
        if _SENDER is None or _READER is None:
            message = "wskit._speedups is not built (no C compiler at install time)"
            if IN_CI:
                pytest.fail(f"{message}, but CI=true, where the C build is required")
            pytest.skip(message)
        assert type(vars(wskit.WebSocket)["send"]) is _SENDER
        assert type(vars(WebSocketProtocol)["data_received"]) is _READER
        assert type(vars(WebSocketProtocol)["buffer_updated"]).__name__ == "BufferUpdated"
        assert type(vars(WebSocketProtocol)["get_buffer"]).__name__ == "GetBuffer"
    else:
        monkeypatch.setattr(wskit.WebSocket, "send", PURE_SEND)
        monkeypatch.setattr(WebSocketProtocol, "data_received", PURE_READ)
        monkeypatch.setattr(WebSocketProtocol, "buffer_updated", PURE_UPDATED)
        monkeypatch.setattr(WebSocketProtocol, "get_buffer", PURE_GET_BUFFER)
    return str(request.param)


class FakeTransport:
    """Records every write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.protocol: Any = None

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    @property
    def wire(self) -> bytes:
        return b"".join(self.writes)


class Bare(WebSocketProtocol):
    """A protocol opened without HTTP."""

    def handshake_data(self, data: bytes) -> None:  # pragma: no cover - never CONNECTING
        raise AssertionError("opened directly")


class Logging(Bare):
    """A protocol whose write is its own: the C send must not go around it."""

    __slots__ = ("logged",)

    def write(self, data: bytes) -> None:
        self.logged.append(data)
        super().write(data)


def open_socket(role: Role = Role.SERVER, cls: type[Bare] = Bare,
                ) -> tuple[wskit.WebSocket, Bare, FakeTransport]:
    proto = cls(Limits(ping_interval=None, close_timeout=1.0), role)
    transport = FakeTransport()
    transport.protocol = proto
    proto.connection_made(transport)  # type: ignore[arg-type]
    ws = wskit.WebSocket(proto, None, None, [])
    proto.open(ws, [])
    return ws, proto, transport


def server(opcode: int, payload: bytes) -> bytes:
    return encode_frame(opcode, payload, mask=False)


MESSAGES: list[Any] = [
    "", "x" * 32, "héllo wörld ✓", "\U0001f600" * 40, "a" * 125, "a" * 126, "b" * 65535,
    "c" * 65536, b"", b"\x00\xff" * 512, bytearray(b"ba"), memoryview(b"xmvx")[1:3],
    memoryview(bytearray(b"q" * 70000)),
]


def expected_frame(data: Any) -> bytes:
    if isinstance(data, str):
        return server(TEXT, data.encode())
    return server(BINARY, bytes(data))


class TestFrames:
    @pytest.mark.parametrize("data", MESSAGES, ids=lambda d: f"{type(d).__name__}{len(d)}")
    def test_outside_a_read_one_write_each(self, run: Any, data: Any) -> None:
        """§5.2, §5.6: str is one final text frame, a bytes-like object one final binary
        frame, minimal length encoding; counted once each in messages_out and bytes_out."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            before = proto.bytes_out
            ws.send(data)
            ws.send(data)
            # (A binary payload of LARGE_PAYLOAD or more goes as header and payload: the
            # header with the payload's first 64 KiB, gathered, then the rest.)
            assert transport.wire == expected_frame(data) * 2
            assert len(transport.writes) == (6 if len(expected_frame(data)) > 65546
                                             and not isinstance(data, str) else 2)
            assert proto.conn.messages_out == 2
            assert proto.bytes_out - before == 2 * len(expected_frame(data))

        run(main())

    def test_listener_sends_are_one_write_after_the_read(self, run: Any) -> None:
        """What listeners send during a read is corked: one write, in send order."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            ws.on_text(lambda ws, text: (ws.send(text), ws.send(text.encode())))
            proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"bb"))
            assert transport.writes == [server(TEXT, b"a") + server(BINARY, b"a")
                                        + server(TEXT, b"bb") + server(BINARY, b"bb")]
            assert proto.conn.messages_out == 4
            assert proto.bytes_out == len(transport.wire)

        run(main())

    def test_a_listener_that_sends_many_messages(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            ws.on_text(lambda ws, text: [ws.send(f"{text}{i}") for i in range(500)])
            proto.data_received(frame(TEXT, b"m"))
            assert transport.wire == b"".join(server(TEXT, f"m{i}".encode())
                                              for i in range(500))
            assert proto.conn.messages_out == 500
            assert proto.bytes_out == len(transport.wire)

        run(main())

    def test_sends_to_another_connection_are_corked_until_the_read_ends(
            self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            other, other_proto, other_t = open_socket()
            ws.on_text(lambda ws, text: (other.send(text), other.send(b"2")))
            proto.data_received(frame(TEXT, b"1"))
            assert other_t.writes == [server(TEXT, b"1") + server(BINARY, b"2")]
            assert other_proto.conn.messages_out == 2
            assert other_proto.bytes_out == len(other_t.wire)
            assert transport.writes == []

        run(main())


class TestWhatThePurePathTakes:
    def test_keyword_compress(self, run: Any) -> None:
        async def main() -> None:
            ws, _, transport = open_socket()
            ws.send("a", compress=False)
            ws.send(b"b", compress=True)
            assert transport.writes == [server(TEXT, b"a"), server(BINARY, b"b")]

        run(main())

    def test_not_open_raises_and_sends_nothing(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, _transport = open_socket()
            ws.send("bye")
            proto.start_close(1000, "")
            count, out = proto.conn.messages_out, proto.bytes_out
            with pytest.raises(ConnectionClosed):
                ws.send("more")
            assert proto.conn.messages_out == count and proto.bytes_out == out

        run(main())

    def test_answer_before_the_peers_close_of_the_same_read(self, run: Any) -> None:
        """§5.5.1: a listener answers the messages that came before the peer's Close."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            ws.on_text(lambda ws, text: ws.send(text))
            proto.data_received(frame(TEXT, b"last") + frame(0x8, b"\x03\xe8"))
            assert transport.wire == server(TEXT, b"last") + server(0x8, b"\x03\xe8")
            assert proto.conn.state is not State.OPEN
            assert proto.conn.messages_out == 1

        run(main())

    def test_inside_our_own_fragmented_message_raises(self, run: Any) -> None:
        """§5.4: no message inside our own fragmented one."""

        async def main() -> None:
            ws, proto, _transport = open_socket()
            proto.write(proto.conn.send_fragment("a", first=True, fin=False, text=True))
            with pytest.raises(InvalidState):
                ws.send("b")
            assert proto.conn.messages_out == 0

        run(main())

    def test_lone_surrogate_raises_and_counts_nothing(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            with pytest.raises(UnicodeEncodeError):
                ws.send("\ud800")
            assert transport.writes == [] and proto.conn.messages_out == 0
            assert proto.bytes_out == 0

        run(main())

    def test_non_contiguous_memoryview_and_wrong_types(self, run: Any) -> None:
        async def main() -> None:
            ws, _proto, transport = open_socket()
            view = memoryview(b"abcdef")[::2]
            try:
                PURE_SEND(ws, view)
            except Exception as exc:  # what the pure path does, the C one does
                with pytest.raises(type(exc)):
                    ws.send(view)
            else:
                ws.send(view)
                assert transport.writes[0] == transport.writes[1]
            with pytest.raises(TypeError):
                ws.send(1)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                ws.send()  # type: ignore[call-arg]

            class Text(str):
                pass

            ws.send(Text("sub"))
            assert transport.writes[-1] == server(TEXT, b"sub")

        run(main())

    def test_a_protocol_with_its_own_write_is_called(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket(cls=Logging)
            proto.logged = []  # type: ignore[attr-defined]
            ws.send("x")
            assert proto.logged == [server(TEXT, b"x")]  # type: ignore[attr-defined]
            assert transport.writes == [server(TEXT, b"x")]

        run(main())

    def test_a_connection_subclass_takes_the_pure_path(self, run: Any) -> None:
        class Counting(Connection):
            __slots__ = ("texts",)

            def send_text(self, text: str, *, compress: bool = True) -> bytes:
                self.texts += 1
                return super().send_text(text, compress=compress)

        async def main() -> None:
            ws, proto, transport = open_socket()
            conn = Counting(Role.SERVER)
            conn.texts = 0
            proto.conn = ws._conn = conn
            ws.send("x")
            assert conn.texts == 1 and transport.writes == [server(TEXT, b"x")]

        run(main())

    def test_after_the_end_the_detached_protocol_takes_it(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, _transport = open_socket()
            proto.connection_lost(None)
            with pytest.raises(ConnectionClosed):
                ws.send("late")

        run(main())


def echo(ws: wskit.WebSocket) -> None:
    ws.on_text(lambda ws, text: ws.send(text))
    ws.on_buffer(lambda ws, view: ws.send(view))


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return server(CLOSE, code.to_bytes(2, "big") + reason)


class TestReads:
    """What a read does, whichever path takes it (RFC 6455 §5.4-§5.6, §8.1)."""

    def test_round_trips_count_every_byte_and_message(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            echo(ws)
            before = proto.bytes_in
            reads = [frame(TEXT, b"x" * 32), frame(BINARY, bytes(range(256)) * 4),
                     frame(TEXT, "é".encode() * 100), frame(BINARY, b"")]
            for data in reads:
                proto.data_received(data)
            assert transport.writes == [server(TEXT, b"x" * 32),
                                        server(BINARY, bytes(range(256)) * 4),
                                        server(TEXT, "é".encode() * 100), server(BINARY, b"")]
            conn = proto.conn
            assert conn.messages_in == 4 and conn.messages_out == 4
            assert proto.bytes_in - before == sum(map(len, reads))
            assert proto.bytes_out == len(transport.wire)
            assert proto._corked is None and proto._cork.depth == 0

        run(main())

    def test_many_messages_in_one_read_one_write(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            echo(ws)
            proto.data_received(b"".join(frame(TEXT, b"%d" % i) for i in range(100)))
            assert transport.writes == [b"".join(server(TEXT, b"%d" % i) for i in range(100))]
            assert proto.conn.messages_in == 100 == proto.conn.messages_out

        run(main())

    def test_fragments_and_interleaved_controls(self, run: Any) -> None:
        """§5.4: a fragmented message with a ping inside; §5.5.2 the pong goes out first."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            echo(ws)
            proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"he", fin=False)
                                + frame(PING, b"p") + frame(0x0, b"llo") + frame(BINARY, b"b"))
            assert transport.wire == (server(PONG, b"p") + server(TEXT, b"a")
                                      + server(TEXT, b"hello") + server(BINARY, b"b"))
            assert proto.conn.messages_in == 3 == proto.conn.messages_out
            # A read cut inside a frame, then its rest.
            whole = frame(TEXT, b"cut here")
            proto.data_received(whole[:5])
            proto.data_received(whole[5:] + frame(TEXT, b"next"))
            assert transport.wire.endswith(server(TEXT, b"cut here") + server(TEXT, b"next"))
            assert proto.conn.messages_in == 5
            assert proto.bytes_out == len(transport.wire)

        run(main())

    def test_invalid_utf8_fails_with_1007_after_the_good_ones(self, run: Any) -> None:
        """§8.1: invalid UTF-8 in a text message fails the connection with 1007."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            got: list[str] = []
            ws.on_text(lambda ws, text: (got.append(text), ws.send(text)))
            proto.data_received(frame(TEXT, b"ok") + frame(TEXT, b"\xff\xfe") + frame(TEXT, b"z"))
            assert got == ["ok"]
            assert transport.wire.startswith(server(TEXT, b"ok") + server(CLOSE, b"\x03\xef"))
            assert proto.conn.state is not State.OPEN

        run(main())

    def test_the_peers_close_in_the_middle_of_a_batch(self, run: Any) -> None:
        """§5.5.1: the messages before the Close are answered before ours; none after it."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            got: list[str] = []
            ws.on_text(lambda ws, text: (got.append(text), ws.send(text)))
            proto.data_received(frame(TEXT, b"1") + frame(TEXT, b"2")
                                + frame(CLOSE, b"\x03\xe8") + frame(TEXT, b"3"))
            assert got == ["1", "2"]
            assert transport.wire == server(TEXT, b"1") + server(TEXT, b"2") + close_frame(1000)

        run(main())

    def test_a_listener_that_raises_closes_with_1011(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            got: list[str] = []
            caught: list[BaseException] = []

            def listener(ws: wskit.WebSocket, text: str) -> None:
                got.append(text)
                ws.send(text)
                if text == "boom":
                    raise RuntimeError("listener failed")

            ws.on_text(listener).catch(caught.append)
            proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"boom") + frame(TEXT, b"c"))
            assert got == ["a", "boom"]  # the rest of the read is not delivered
            assert transport.wire == (server(TEXT, b"a") + server(TEXT, b"boom")
                                      + close_frame(1011, b"internal error"))
            assert isinstance(ws.error, RuntimeError)
            assert proto._corked is None and proto._cork.depth == 0
            proto.connection_lost(None)
            await asyncio.sleep(0)
            assert len(caught) == 1 and isinstance(caught[0], RuntimeError)

        run(main())

    def test_a_base_exception_goes_through_uncorked(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, _transport = open_socket()

            def listener(ws: wskit.WebSocket, text: str) -> None:
                ws.send(text)
                raise KeyboardInterrupt

            ws.on_text(listener)
            with pytest.raises(KeyboardInterrupt):
                proto.data_received(frame(TEXT, b"a"))
            assert proto._corked is None and proto._cork.depth == 0

        run(main())

    def test_a_listener_that_closes(self, run: Any) -> None:
        """§7.1.2: our Close goes after what the listeners sent; nothing after it."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            got: list[str] = []

            def listener(ws: wskit.WebSocket, text: str) -> None:
                got.append(text)
                if ws.state is State.OPEN:
                    ws.send(text)
                    proto.start_close(1000, "bye")

            ws.on_text(listener)
            proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"b"))
            assert got == ["a", "b"]
            assert transport.wire == server(TEXT, b"a") + close_frame(1000, b"bye")
            assert proto.conn.messages_out == 1
            proto.data_received(frame(CLOSE, b"\x03\xe8"))
            assert transport.closing

        run(main())

    def test_coroutine_listeners_and_the_inbox_get_the_rest(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            texts: list[str] = []

            async def on_text(ws: wskit.WebSocket, text: str) -> None:
                texts.append(text)
                ws.send(text.upper())

            ws.on_text(on_text)  # binary messages have no listener: the inbox
            proto.data_received(frame(TEXT, b"a") + frame(BINARY, b"1") + frame(TEXT, b"b"))
            assert await ws.receive() == b"1"
            for _ in range(5):
                await asyncio.sleep(0)
            assert texts == ["a", "b"]
            assert transport.wire == server(TEXT, b"A") + server(TEXT, b"B")
            assert proto.conn.messages_in == 3

        run(main())

    def test_a_listener_that_sets_another(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, _transport = open_socket()
            got: list[tuple[str, str]] = []

            def second(ws: wskit.WebSocket, text: str) -> None:
                got.append(("second", text))

            def first(ws: wskit.WebSocket, text: str) -> None:
                got.append(("first", text))
                ws.on_text(second)

            ws.on_text(first)
            proto.data_received(frame(TEXT, b"1") + frame(TEXT, b"2") + frame(TEXT, b"3"))
            assert got == [("first", "1"), ("second", "2"), ("second", "3")]

        run(main())

    def test_on_buffer_views_are_released_after_the_call(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            views: list[memoryview] = []
            seen: list[bytes] = []

            def on_buffer(ws: wskit.WebSocket, view: memoryview) -> None:
                assert type(view) is memoryview and view.readonly
                seen.append(bytes(view))
                views.append(view)
                ws.send(view)

            ws.on_buffer(on_buffer)
            proto.data_received(frame(BINARY, b"one") + frame(BINARY, b"two"))
            assert seen == [b"one", b"two"]
            for view in views:
                with pytest.raises(ValueError):
                    bytes(view)  # released
            assert transport.wire == server(BINARY, b"one") + server(BINARY, b"two")

        run(main())

    def test_on_buffer_view_exported_further_is_left_to_the_listener(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, _transport = open_socket()
            kept: list[memoryview] = []

            def on_buffer(ws: wskit.WebSocket, view: memoryview) -> None:
                kept.append(memoryview(view))  # an export of the view: it cannot be released

            ws.on_buffer(on_buffer)
            proto.data_received(frame(BINARY, b"kept"))
            assert bytes(kept[0]) == b"kept"
            proto.data_received(frame(BINARY, b"more"))
            assert [bytes(v) for v in kept] == [b"kept", b"more"]

        run(main())

    def test_on_buffer_listener_raising_releases_its_view(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            views: list[memoryview] = []

            def on_buffer(ws: wskit.WebSocket, view: memoryview) -> None:
                views.append(view)
                raise ValueError("bad")

            ws.on_buffer(on_buffer)
            proto.data_received(frame(BINARY, b"x") + frame(BINARY, b"y"))
            assert len(views) == 1
            with pytest.raises(ValueError):
                bytes(views[0])
            assert isinstance(ws.error, ValueError)
            assert transport.wire == close_frame(1011, b"internal error")

        run(main())

    def test_a_listener_feeding_another_connection(self, run: Any) -> None:
        """A listener that hands bytes to another connection's protocol: that read writes
        its own frames at its end; the outer one writes once after its listeners."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            other, other_proto, other_t = open_socket()
            echo(other)
            ws.on_text(lambda ws, text: (other_proto.data_received(frame(TEXT, text.encode())),
                                         ws.send(text)))
            proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"b"))
            assert transport.writes == [server(TEXT, b"a") + server(TEXT, b"b")]
            assert other_t.writes == [server(TEXT, b"a"), server(TEXT, b"b")]

        run(main())


def feed_buffered(proto: WebSocketProtocol, data: bytes) -> None:
    """As asyncio's transports read: into get_buffer's memory, then buffer_updated."""
    while data:
        room = proto.get_buffer(-1)
        n = min(len(room), len(data))
        room[:n] = data[:n]
        proto.buffer_updated(n)
        data = data[n:]


class TestBufferedReads:
    """asyncio's reads into the shared buffer (get_buffer / buffer_updated)."""

    def test_messages_through_the_shared_buffer(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            echo(ws)
            before = proto.bytes_in
            data = frame(TEXT, b"a" * 32) + frame(BINARY, b"b" * 1024)
            feed_buffered(proto, data)
            whole = frame(TEXT, b"split")
            feed_buffered(proto, whole[:3])
            feed_buffered(proto, whole[3:] + frame(PING, b"p"))
            assert transport.writes == [server(TEXT, b"a" * 32) + server(BINARY, b"b" * 1024),
                                        server(PONG, b"p") + server(TEXT, b"split")]
            assert proto.bytes_in - before == len(data) + len(whole) + len(frame(PING, b"p"))
            assert proto.conn.messages_in == 3 == proto.conn.messages_out

        run(main())

    def test_a_large_frame_into_its_own_buffer(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = open_socket()
            echo(ws)
            payload = bytes(range(256)) * 2048  # 512 KiB, more than the shared buffer
            data = frame(BINARY, payload) + frame(TEXT, b"after")
            feed_buffered(proto, data[:1000])
            feed_buffered(proto, data[1000:])
            assert transport.wire == server(BINARY, payload) + server(TEXT, b"after")
            assert proto.conn.messages_in == 2
            assert proto.bytes_in == len(data)

        run(main())


def test_the_method_looks_like_the_pure_one() -> None:
    import inspect

    send = wskit.WebSocket.send
    assert inspect.signature(send) == inspect.signature(PURE_SEND)
    assert send.__doc__ == PURE_SEND.__doc__ and send.__name__ == "send"
    read = WebSocketProtocol.data_received
    assert inspect.signature(read) == inspect.signature(PURE_READ)


def test_reads_and_sends_do_not_leak(run: Any, send_impl: str) -> None:
    async def main() -> None:
        ws, proto, transport = open_socket()
        echo(ws)
        read = frame(TEXT, b"x" * 32) + frame(BINARY, b"y" * 1024)
        texts = ["x" * 32, "é" * 20]
        view = memoryview(b"y" * 1024)

        def burst() -> None:
            for _ in range(2000):
                for text in texts:
                    ws.send(text)
                ws.send(view)
                ws.send(b"z")
                proto.data_received(read)
            transport.writes.clear()

        burst()
        tracemalloc.start()
        try:
            burst()
            first = tracemalloc.get_traced_memory()[0]
            for _ in range(5):
                burst()
            grown = tracemalloc.get_traced_memory()[0] - first
        finally:
            tracemalloc.stop()
        assert grown < 64 * 1024, grown

    run(main())
