"""A client's per-message path in C (``_speedups.Sender`` masking each frame, ``Reader`` and
``BufferUpdated`` reading the server's unmasked frames) against the pure path, bytes in and
bytes out over a fake transport: every frame masked with a fresh key (RFC 6455 §5.3), checked
by unmasking it here, byte by byte, without wskit's own masking code."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from e2e import BINARY, CLOSE, PING, PONG, TEXT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fast_path import (  # noqa: F401 - send_impl: the autouse C / Python fixture
    MESSAGES,
    PURE_SEND,
    feed_buffered,
    open_socket,
    send_impl,
    server,
)

import wskit
from wskit.core.connection import Connection, Role, State


def unmask(wire: bytes) -> list[tuple[int, bytes, bytes]]:
    """Every frame of a client's stream as (b0, key, unmasked payload); asserts that each is
    masked and its length in the minimal encoding (§5.2)."""
    frames = []
    pos = 0
    while pos < len(wire):
        b0, b1 = wire[pos], wire[pos + 1]
        assert b1 & 0x80, "a client's frame must be masked (§5.3)"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(wire[pos:pos + 2], "big"), pos + 2
            assert n >= 126
        elif n == 127:
            n, pos = int.from_bytes(wire[pos:pos + 8], "big"), pos + 8
            assert n >= 0x10000
        key, pos = wire[pos:pos + 4], pos + 4
        body = wire[pos:pos + n]
        assert len(body) == n
        frames.append((b0, key, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        pos += n
    return frames


def payload_of(data: Any) -> tuple[int, bytes]:
    if isinstance(data, str):
        return 0x81, data.encode()
    return 0x82, bytes(data)


def client_socket() -> tuple[wskit.WebSocket, Any, Any]:
    return open_socket(Role.CLIENT)


class TestMaskedSends:
    @pytest.mark.parametrize("data", MESSAGES, ids=lambda d: f"{type(d).__name__}{len(d)}")
    def test_each_frame_masked_with_a_fresh_key(self, run: Any, data: Any) -> None:
        """§5.3: each frame masked with its own key; §5.2 minimal length; counted once each."""

        async def main() -> None:
            ws, proto, transport = client_socket()
            ws.send(data)
            ws.send(data)
            b0, payload = payload_of(data)
            (b0a, key_a, got_a), (b0b, key_b, got_b) = unmask(transport.wire)
            assert (b0a, got_a) == (b0b, got_b) == (b0, payload)
            assert key_a != key_b
            # A binary payload of LARGE_PAYLOAD or more goes as header and payload: the
            # header with the payload's first 64 KiB through writelines (two writes here),
            # then the rest; anything else as one write.
            large = not isinstance(data, str) and len(payload) > 65536
            assert len(transport.writes) == (6 if large else 2)
            assert proto.conn.messages_out == 2
            assert proto.bytes_out == len(transport.wire)

        run(main())

    def test_keys_differ_frame_after_frame(self, run: Any) -> None:
        """§5.3: a new key per frame, across a refill of the thread's pool of keys."""

        async def main() -> None:
            ws, _proto, transport = client_socket()
            for i in range(600):
                ws.send(b"%d" % i)
            frames = unmask(transport.wire)
            assert [p for _, _, p in frames] == [b"%d" % i for i in range(600)]
            keys = [k for _, k, _ in frames]
            assert all(a != b for a, b in itertools.pairwise(keys))
            assert len(set(keys)) > 590

        run(main())

    def test_the_c_path_takes_it(self, run: Any, send_impl: str,  # noqa: F811
                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """With the extension built, a client's send does not go through the pure methods."""
        calls: list[str] = []
        for name in ("send_text", "send_binary", "send_parts"):
            pure = getattr(Connection, name)
            monkeypatch.setattr(Connection, name, lambda self, *a, _p=pure, _n=name, **k: (
                calls.append(_n), _p(self, *a, **k))[1])

        async def main() -> None:
            ws, _proto, transport = client_socket()
            ws.send("t")
            ws.send(b"b")
            ws.send(memoryview(b"v"))
            assert [p for _, _, p in unmask(transport.wire)] == [b"t", b"b", b"v"]

        run(main())
        if send_impl == "c":
            assert calls == []
        else:
            assert calls == ["send_text", "send_binary", "send_binary"]

    def test_not_open_and_wrong_types(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = client_socket()
            with pytest.raises(UnicodeEncodeError):
                ws.send("\ud800")
            with pytest.raises(TypeError):
                ws.send(1)  # type: ignore[arg-type]
            assert transport.writes == [] and proto.conn.messages_out == 0
            ws.send("bye")
            proto.start_close(1000, "")
            count, out = proto.conn.messages_out, proto.bytes_out
            with pytest.raises(wskit.ConnectionClosed):
                ws.send("more")
            assert proto.conn.messages_out == count and proto.bytes_out == out
            assert [(b0, p) for b0, _, p in unmask(transport.wire)] == [
                (0x81, b"bye"), (0x88, b"\x03\xe8")]

        run(main())

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                              st.binary(max_size=300).map(bytearray),
                              st.binary(max_size=300).map(memoryview)), max_size=8))
    def test_the_same_messages_as_the_pure_path(self, run: Any, messages: list[Any]) -> None:
        """The C and pure sends put the same messages on the wire, each masked."""

        async def main() -> tuple[list[tuple[int, bytes]], int, int]:
            ws, proto, transport = client_socket()
            pure_ws, pure_proto, pure_transport = client_socket()
            for data in messages:
                ws.send(data)
                PURE_SEND(pure_ws, data)
            got = [(b0, p) for b0, _, p in unmask(transport.wire)]
            want = [(b0, p) for b0, _, p in unmask(pure_transport.wire)]
            assert got == want == [payload_of(d) for d in messages]
            assert proto.bytes_out == pure_proto.bytes_out == len(transport.wire)
            assert proto.conn.messages_out == pure_proto.conn.messages_out == len(messages)
            return got, len(transport.writes), len(pure_transport.writes)

        _, writes, pure_writes = run(main())
        assert writes == pure_writes


def echo(ws: wskit.WebSocket) -> None:
    ws.on_text(lambda ws, text: ws.send(text))
    ws.on_buffer(lambda ws, view: ws.send(view))


class TestClientReads:
    def test_round_trips_one_masked_write_per_read(self, run: Any) -> None:
        """The server's unmasked frames in (§5.1), the listeners' answers masked, in one
        write per read."""

        async def main() -> None:
            ws, proto, transport = client_socket()
            echo(ws)
            reads = [server(TEXT, b"x" * 32), server(BINARY, bytes(range(256)) * 4),
                     server(TEXT, "é".encode() * 100) + server(BINARY, b"")]
            for data in reads:
                proto.data_received(data)
            assert len(transport.writes) == 3
            assert [(b0, p) for b0, _, p in unmask(transport.wire)] == [
                (0x81, b"x" * 32), (0x82, bytes(range(256)) * 4),
                (0x81, "é".encode() * 100), (0x82, b"")]
            assert proto.conn.messages_in == 4 == proto.conn.messages_out
            assert proto.bytes_in == sum(map(len, reads))
            assert proto.bytes_out == len(transport.wire)

        run(main())

    def test_through_the_shared_buffer(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, transport = client_socket()
            echo(ws)
            feed_buffered(proto, server(TEXT, b"a" * 32) + server(BINARY, b"b" * 1024))
            feed_buffered(proto, server(PING, b"p") + server(TEXT, b"c"))
            assert [(b0, p) for b0, _, p in unmask(transport.wire)] == [
                (0x81, b"a" * 32), (0x82, b"b" * 1024), (0x8A, b"p"), (0x81, b"c")]
            assert proto.conn.messages_in == 3 == proto.conn.messages_out

        run(main())

    def test_a_masked_frame_from_the_server_fails_with_1002(self, run: Any) -> None:
        """§5.1: a client closes the connection when it receives a masked frame."""

        async def main() -> None:
            ws, proto, transport = client_socket()
            echo(ws)
            masked = bytes([0x81, 0x82]) + b"\x01\x02\x03\x04" + bytes([ord("h") ^ 1, ord("i") ^ 2])
            proto.data_received(server(TEXT, b"ok") + masked)
            assert proto.conn.state is not State.OPEN
            frames = [(b0, p[:2]) for b0, _, p in unmask(transport.wire)]
            assert frames == [(0x81, b"ok"), (0x88, (1002).to_bytes(2, "big"))]

        run(main())

    def test_a_close_from_the_server_after_messages(self, run: Any) -> None:
        """§5.5.1: the messages before the server's Close are answered ahead of ours."""

        async def main() -> None:
            ws, proto, transport = client_socket()
            echo(ws)
            proto.data_received(server(TEXT, b"last") + server(CLOSE, b"\x03\xe8"))
            assert [(b0, p) for b0, _, p in unmask(transport.wire)] == [
                (0x81, b"last"), (0x88, b"\x03\xe8")]
            assert proto.conn.state is not State.OPEN

        run(main())


def test_a_pong_is_masked_too(run: Any) -> None:
    async def main() -> None:
        _ws, proto, transport = client_socket()
        proto.data_received(server(PING, b"hi"))
        assert [(b0, p) for b0, _, p in unmask(transport.wire)] == [(0x80 | PONG, b"hi")]

    run(main())


def test_get_buffer_answers_as_the_pure_one(run: Any) -> None:
    """The room of each read: the shared buffer, or a large frame's own while it arrives."""
    from test_fast_path import PURE_GET_BUFFER

    async def main() -> None:
        ws, proto, transport = client_socket()
        echo(ws)
        rooms = []
        large = server(BINARY, b"L" * 200000)
        for data in [server(TEXT, b"a"), server(TEXT, b"bc")[:2], server(TEXT, b"bc")[2:],
                     large[:70000], large[70000:], server(TEXT, b"d")]:
            room = proto.get_buffer(-1)
            pure = PURE_GET_BUFFER(proto, -1)
            assert room is pure or (room.obj is pure.obj and len(room) == len(pure))
            rooms.append(room)
            room[:len(data)] = data
            proto.buffer_updated(len(data))
        assert rooms[0] is rooms[1] is rooms[-1]  # the thread's shared buffer
        assert [(b0, p) for b0, _, p in unmask(transport.wire)] == [
            (0x81, b"a"), (0x81, b"bc"), (0x82, b"L" * 200000), (0x81, b"d")]

    run(main())
