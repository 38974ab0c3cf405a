"""Corking in the binding (``wskit.aio.protocol``), bytes in and bytes out over fake transports:
what the listeners of one read write to any connection reaches its transport in one write at
the end of that read, in send order; buffered amounts count corked bytes; the byte counters
count each byte once. RFC 6455 §5.4 and §5.5.1 (frames in order, nothing after our Close)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from e2e import TEXT, frame

import wskit
import wskit.websocket
from wskit.aio import protocol as protocol_module
from wskit.aio import writes
from wskit.aio.protocol import WebSocketProtocol
from wskit.broadcast import FanOut
from wskit.core import masking
from wskit.core.connection import Role
from wskit.core.limits import Limits

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True, params=["python", "c"])
def fan_out_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with the pure fan-out loop and uncorking, and with their C twins
    (_speedups.fan_out and flush_corked)."""
    if request.param == "c":
        function = getattr(masking.speedups, "fan_out", None)
        if function is None:
            message = "wskit._speedups.fan_out is not built (no C compiler at install time)"
            if IN_CI:
                pytest.fail(f"{message}, but CI=true, where the C build is required")
            pytest.skip(message)
        flush = masking.speedups.flush_corked  # type: ignore[union-attr]
    else:
        function = None
        flush = protocol_module.flush_corked_python
    monkeypatch.setattr(wskit.websocket, "compiled_fan_out", function)
    monkeypatch.setattr(protocol_module, "flush_corked", flush)
    return str(request.param)


class FakeTransport:
    """Records every write; its buffer keeps what it is told the kernel did not take."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.unsent = 0  # bytes of the writes so far that stay in the "buffer"
        self.closing = False
        self.taken = True  # whether the kernel takes everything written

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if not self.taken:
            self.unsent += len(data)

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

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
    """A server-side protocol opened without HTTP."""

    def handshake_data(self, data: bytes) -> None:  # pragma: no cover - never CONNECTING
        raise AssertionError("opened directly")


def open_socket() -> tuple[wskit.WebSocket, Bare, FakeTransport]:
    proto = Bare(Limits(ping_interval=None, close_timeout=1.0), Role.SERVER)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    ws = wskit.WebSocket(proto, None, None, [])
    proto.open(ws, [])
    return ws, proto, transport


def server_text(text: str) -> bytes:
    return frame(TEXT, text.encode(), mask=False)


class TestCorking:
    def test_fan_out_of_one_read_is_one_write_per_subscriber(self, run: Any) -> None:
        """Three publications in one read: each subscriber gets one write with three frames."""

        async def main() -> None:
            pub, pub_proto, pub_t = open_socket()
            subs = [open_socket() for _ in range(3)]
            sockets = [pub] + [ws for ws, _, _ in subs]
            pub.on_text(lambda ws, text: wskit.broadcast(sockets, text))
            pub_proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"bb") + frame(TEXT, b"c"))
            expected = server_text("a") + server_text("bb") + server_text("c")
            for _, _, transport in subs:
                assert transport.writes == [expected]
            # The publisher, a subscriber too, gets its own in its read's single write.
            assert pub_t.writes == [expected]

        run(main())

    def test_a_subscribers_own_frames_keep_their_order(self, run: Any) -> None:
        """A listener writes to another connection directly and through a fan-out: the frames
        reach it in send order, in one write after the listeners of the read."""

        async def main() -> None:
            pub, pub_proto, _ = open_socket()
            sub, _, sub_t = open_socket()

            def on_text(ws: wskit.WebSocket, text: str) -> None:
                sub.send("before " + text)
                wskit.broadcast([sub], text)
                sub.send("after " + text)
                assert sub_t.writes == []  # corked until the read is over

            pub.on_text(on_text)
            pub_proto.data_received(frame(TEXT, b"1") + frame(TEXT, b"2"))
            assert sub_t.writes == [b"".join(server_text(t) for t in (
                "before 1", "1", "after 1", "before 2", "2", "after 2"))]
            # Outside a read, a write goes out at once.
            sub.send("later")
            assert sub_t.writes[-1] == server_text("later")

        run(main())

    def test_writes_outside_a_read_are_not_delayed(self, run: Any) -> None:
        async def main() -> None:
            subs = [open_socket() for _ in range(2)]
            assert wskit.broadcast([ws for ws, _, _ in subs], "now") == 2
            for _, _, transport in subs:
                assert transport.writes == [server_text("now")]

        run(main())

    def test_closing_a_corked_connection_writes_its_frames_first(self, run: Any) -> None:
        """RFC 6455 §5.5.1: nothing after our Close; what was corked goes before it."""

        async def main() -> None:
            pub, pub_proto, _ = open_socket()
            sub, sub_proto, sub_t = open_socket()

            def on_text(ws: wskit.WebSocket, text: str) -> None:
                wskit.broadcast([sub], text)
                sub_proto.start_close(1001, "")
                assert wskit.broadcast([sub], "gone") == 0  # no data after our Close
                sub_proto.close_transport()  # hands the corked frames over, then closes
                assert sub_t.closing

            pub.on_text(on_text)
            pub_proto.data_received(frame(TEXT, b"last"))
            assert sub_t.writes == [server_text("last") + bytes((0x88, 2)) + b"\x03\xe9"]

        run(main())

    def test_byte_counters_count_each_byte_once(self, run: Any) -> None:
        """bytes_out is what was handed to the transport, listener replies included once."""

        async def main() -> None:
            ws, proto, transport = open_socket()
            ws.on_text(lambda ws, text: ws.send(text))
            proto.data_received(frame(TEXT, b"hello") + frame(TEXT, b"again"))
            assert transport.wire == server_text("hello") + server_text("again")
            assert proto.bytes_out == len(transport.wire)

            other, other_proto, other_t = open_socket()
            ws.on_text(lambda ws, text: wskit.broadcast([ws, other], text))
            proto.data_received(frame(TEXT, b"x"))
            assert proto.bytes_out == len(transport.wire)
            assert other_proto.bytes_out == len(other_t.wire) == len(server_text("x"))

        run(main())


class TestBufferedWhileCorked:
    @pytest.mark.parametrize("policy", ["drop", "close"])
    def test_corked_bytes_count_toward_max_buffered(self, run: Any, policy: str) -> None:
        """A subscriber whose kernel takes nothing is slow once what was written to it, corked
        or handed over, passes max_buffered: the same decision as without corking."""

        async def main() -> None:
            pub, pub_proto, _ = open_socket()
            slow, _, slow_t = open_socket()
            fast, _, fast_t = open_socket()
            slow_t.taken = False
            text = "y" * 100  # a 102-byte frame
            results: list[int] = []

            def on_text(ws: wskit.WebSocket, _text: str) -> None:
                results.append(wskit.broadcast([slow, fast], text, max_buffered=250,
                                               slow=policy))

            pub.on_text(on_text)
            pub_proto.data_received(b"".join(frame(TEXT, b"go") for _ in range(4)))
            # 102, 204 pass; the third finds 306 > 250 queued (corked, then handed over).
            assert results == [2, 2, 2, 1]
            assert fast_t.wire == server_text(text) * 4
            assert slow_t.wire.startswith(server_text(text) * 3)
            if policy == "close":
                assert slow.state.name == "LOCAL_CLOSING"
            else:
                assert slow.state.name == "OPEN"
                assert slow_t.wire == server_text(text) * 3

        run(main())

    def test_buffered_amount_includes_corked_frames(self, run: Any) -> None:
        async def main() -> None:
            pub, pub_proto, _ = open_socket()
            sub, _, sub_t = open_socket()
            sub_t.taken = False
            seen: list[int] = []

            def on_text(ws: wskit.WebSocket, text: str) -> None:
                wskit.broadcast([sub], text, max_buffered=None)
                seen.append(sub.buffered_amount)

            pub.on_text(on_text)
            pub_proto.data_received(frame(TEXT, b"abc"))
            assert seen == [len(server_text("abc"))]

        run(main())


def test_no_cork_is_left_behind_by_a_failing_listener(run: Any) -> None:
    """A listener that raises closes its connection (1011); the others' frames still go."""

    async def main() -> None:
        pub, pub_proto, _ = open_socket()
        sub, _, sub_t = open_socket()

        def on_text(ws: wskit.WebSocket, text: str) -> None:
            wskit.broadcast([sub], text)
            raise RuntimeError("boom")

        pub.on_text(on_text)
        pub_proto.data_received(frame(TEXT, b"z"))
        assert sub_t.writes == [server_text("z")]
        sub.send("next")
        assert sub_t.writes[-1] == server_text("next")
        await asyncio.sleep(0)

    run(main())


class TestWhatTheLoopHandsOn:
    """Each socket the shared frame cannot go to as it is takes WebSocket.send_prepared's path,
    with the same outcome whichever loop (pure or C) runs."""

    def test_counters_and_outcomes(self, run: Any) -> None:
        async def main() -> None:
            from wskit.stats import ServerStats

            stats = ServerStats()
            plain, plain_proto, plain_t = open_socket()
            slow, _, slow_t = open_socket()
            slow.stats = stats
            slow_t.taken = False
            slow_t.unsent = 1000
            gone, gone_proto, gone_t = open_socket()
            gone_proto.connection_lost(None)
            fragmenting, frag_proto, frag_t = open_socket()
            frag_t.writes.clear()
            frag_proto.write(frag_proto.conn.send_fragment("par", first=True, fin=False,
                                                            text=True))
            sockets = [plain, slow, gone, fragmenting]
            fan = FanOut("hi", max_buffered=500, slow="drop")
            fan.send_to(sockets)
            assert (fan.sent, fan.dropped, fan.closed) == (1, 1, 0)
            assert stats.slow["dropped"] == 1
            assert plain_t.writes == [server_text("hi")]
            assert plain_proto.conn.messages_out == 1
            assert plain_proto.bytes_out == len(server_text("hi"))
            assert slow_t.writes == [] and gone_t.writes == []
            assert len(frag_t.writes) == 1  # only its own first fragment (RFC 6455 §5.4)
            fan = FanOut("bye", max_buffered=500, slow="close")
            fan.send_to(sockets)
            assert (fan.sent, fan.dropped, fan.closed) == (1, 0, 1)
            assert stats.slow["closed"] == 1
            assert slow.state.name == "LOCAL_CLOSING"
            assert slow_t.wire == bytes((0x88, 10)) + b"\x03\xf5too slow"  # 1013

        run(main())

    def test_client_sockets_mask_their_own_copy(self, run: Any) -> None:
        """RFC 6455 §5.3: a client masks every frame with a fresh key; never the shared one."""

        async def main() -> None:
            proto = Bare(Limits(ping_interval=None, close_timeout=1.0), Role.CLIENT)
            transport = FakeTransport()
            proto.connection_made(transport)  # type: ignore[arg-type]
            ws = wskit.WebSocket(proto, None, None, [])
            proto.open(ws, [])
            assert wskit.broadcast([ws, ws], "hey") == 2
            first, second = transport.writes
            assert first[0] == 0x81 and first[1] == 0x80 | 3 and len(first) == 2 + 4 + 3
            key, payload = first[2:6], first[6:]
            assert bytes(b ^ key[i % 4] for i, b in enumerate(payload)) == b"hey"
            assert proto.conn.messages_out == 2
            assert proto.bytes_out == len(first) + len(second)

        run(main())


def test_a_failing_write_leaves_no_connection_corked(run: Any) -> None:
    """One subscriber's transport raises at the end of the read: the others get their frames,
    the error is raised once they have, and no connection stays corked."""

    async def main() -> None:
        pub, pub_proto, _ = open_socket()
        subs = [open_socket() for _ in range(3)]

        def broken(data: bytes) -> None:
            raise RuntimeError("handler is closed")

        subs[1][2].write = broken  # type: ignore[method-assign]
        # A closing transport is skipped (nothing can go out of it).
        subs[2][2].closing = True
        pub.on_text(lambda ws, text: wskit.broadcast([ws for ws, _, _ in subs], text))
        with pytest.raises(RuntimeError, match="handler is closed"):
            pub_proto.data_received(frame(TEXT, b"a") + frame(TEXT, b"b"))
        assert subs[0][2].writes == [server_text("a") + server_text("b")]
        assert subs[2][2].writes == []
        for _, proto, _ in subs:
            assert proto._corked is None
        subs[0][0].send("c")
        assert subs[0][2].writes[-1] == server_text("c")

    run(main())


class JoiningTransport(FakeTransport):
    """A transport whose writelines is asyncio's own (before 3.12 it joins into one copy)."""

    writelines = asyncio.WriteTransport.writelines  # type: ignore[assignment]


def greedy_runs(frames: list[bytes], limit: int) -> list[bytes]:
    """What ``write_runs`` writes, computed independently: frames packed in order into runs of
    at most ``limit`` bytes, a frame larger than that alone."""
    writes: list[bytes] = []
    run: list[bytes] = []
    for data in frames:
        if run and (sum(map(len, run)) + len(data) > limit or len(data) > limit):
            writes.append(b"".join(run))
            run = []
        run.append(data)
        if len(data) > limit:
            writes.append(data)
            run = []
    if run:
        writes.append(b"".join(run))
    return writes


class TestRunsOverTheJoinLimit:
    """More corked bytes than the join limit on a transport without a writelines of its own:
    written in runs of at most the limit, not one write per frame (a system call per message
    on asyncio's transport); bytes in send order either way."""

    def test_a_read_of_many_1k_messages_is_answered_in_runs(self, run: Any) -> None:
        async def main() -> None:
            ws, proto, _ = open_socket()
            transport = JoiningTransport()
            proto.transport = transport  # type: ignore[assignment]
            ws.on_binary(lambda ws, data: ws.send(data))
            payloads = [bytes([i]) * 1024 for i in range(100)]
            proto.data_received(b"".join(frame(0x2, p) for p in payloads))
            frames = [b"\x82\x7e\x04\x00" + p for p in payloads]
            assert transport.writes == greedy_runs(frames, 64 * 1024)
            assert len(transport.writes) == 2

        run(main())

    def test_fanned_out_frames_over_the_limit_go_in_runs(self, run: Any) -> None:
        async def main() -> None:
            pub, pub_proto, _ = open_socket()
            sub, sub_proto, _ = open_socket()
            transport = JoiningTransport()
            sub_proto.transport = transport  # type: ignore[assignment]
            pub.on_binary(lambda ws, data: wskit.broadcast([sub], data))
            sizes = [30_000, 30_000, 30_000, 70_000, 10, 20]
            payloads = [bytes([i]) * n for i, n in enumerate(sizes)]
            pub_proto.data_received(b"".join(frame(0x2, p) for p in payloads))
            wire = b"".join(transport.writes)
            # 30,000 + 30,000 fit in one run; the third starts the next; 70,000 goes alone.
            assert [len(w) for w in transport.writes] == [
                2 * (30_000 + 4), 30_000 + 4, 70_000 + 10, 10 + 2 + 20 + 2]
            got = []
            rest = wire
            while rest:
                n = rest[1] & 0x7F
                head = 2
                if n == 126:
                    n, head = int.from_bytes(rest[2:4], "big"), 4
                elif n == 127:
                    n, head = int.from_bytes(rest[2:10], "big"), 10
                got.append(rest[head:head + n])
                rest = rest[head + n:]
            assert got == payloads

        run(main())


@pytest.mark.parametrize("sizes", [
    [], [1], [70_000], [64 * 1024], [64 * 1024, 1], [1, 64 * 1024], [40_000, 40_000, 40_000],
    [10] * 10_000, [100, 70_000, 100, 100, 70_000],
])
def test_write_runs_packs_greedily(sizes: list[int]) -> None:
    frames = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    transport = JoiningTransport()
    writes.write_runs(transport, frames, 64 * 1024)  # type: ignore[arg-type]
    assert transport.writes == greedy_runs(frames, 64 * 1024)
    assert b"".join(transport.writes) == b"".join(frames)
