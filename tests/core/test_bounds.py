"""Bytes-in/bytes-out tests of what a hostile peer cannot grow in the core (DESIGN.md §6):
the payload buffer, fragments, the work of one ``receive_data``, what a closed connection keeps.
"""

from __future__ import annotations

import gc
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest

from wskit.core.connection import (
    BinaryMessage,
    Connection,
    Failed,
    Ping,
    Role,
    State,
    TextMessage,
)
from wskit.core.deflate import PerMessageDeflate
from wskit.core.errors import MessageTooBig, without_traceback
from wskit.core.frames import FrameParser

# Every test runs against the pure-Python frame functions and their C twins (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_impl")

KEY = bytes.fromhex("a1b2c3d4")
TEXT, BINARY, CONT, PING = 0x1, 0x2, 0x0, 0x9
MiB = 1 << 20


def deflate() -> PerMessageDeflate:
    return PerMessageDeflate(remote_no_context_takeover=False, local_no_context_takeover=False,
                             remote_max_window_bits=15, local_max_window_bits=15)


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
          masked: bool = False, length: int | None = None) -> bytes:
    """RFC 6455 §5.2, written here independently of wskit."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    return head + (KEY + mask(payload, KEY) if masked else payload)


def to_client(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    return frame(opcode, payload, **kw)  # type: ignore[arg-type]


def to_server(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    return frame(opcode, payload, masked=True, **kw)  # type: ignore[arg-type]


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def allocated() -> int:
    return tracemalloc.get_traced_memory()[0]


class TestPayloadBuffer:
    """RFC 6455 §10.4: a length in a header is a claim; memory follows the bytes that arrive."""

    def test_a_header_declaring_a_mebibyte_costs_what_arrived(self, traced: None) -> None:
        conns = [Connection(Role.CLIENT) for _ in range(50)]
        before = allocated()
        for conn in conns:
            # 10 bytes of header and 100 of payload, declaring 1 MiB - 1 (under the limit).
            assert conn.receive_data(frame(BINARY, bytes(100), length=MiB - 1)[: 10 + 100]) == []
        grown = allocated() - before
        # Fifty frames of 1 MiB allocated from their headers would be 50 MiB.
        assert grown < 50 * 4096, grown

    def test_the_buffer_grows_by_doubling_and_the_message_is_whole(self, traced: None) -> None:
        conn = Connection(Role.CLIENT)
        payload = bytes(range(256)) * (MiB // 256 - 1)
        data = frame(BINARY, payload)
        peaks = []
        for start in range(0, len(data), 64 * 1024):
            before = allocated()
            tracemalloc.reset_peak()
            events = conn.receive_data(data[start : start + 64 * 1024])
            peaks.append((start + 64 * 1024, tracemalloc.get_traced_memory()[1] - before))
        assert [bytes(e.data) for e in events] == [payload]  # type: ignore[attr-defined]
        for received, peak in peaks[:4]:
            # At most the doubled buffer plus the old one while copying: three times what came.
            assert peak <= 3 * received + 64 * 1024, (received, peak)

    def test_a_frame_cut_anywhere_over_many_feeds(self) -> None:
        conn = Connection(Role.SERVER)
        payload = bytes(range(256)) * 1024  # 256 KiB: assembled in place
        data = to_server(BINARY, payload) + to_server(TEXT, b"after")
        events = []
        for start in range(0, len(data), 7001):
            events += conn.receive_data(data[start : start + 7001])
        assert [type(e) for e in events] == [BinaryMessage, TextMessage]
        assert bytes(events[0].data) == payload  # type: ignore[attr-defined]
        assert events[1].data == "after"  # type: ignore[attr-defined]


class TestFragments:
    """RFC 6455 §5.4: a message may come in many frames, but not in unboundedly many."""

    def test_65536_fragments_are_one_message(self) -> None:
        conn = Connection(Role.SERVER)
        data = to_server(TEXT, b"a", fin=False) + to_server(CONT, b"b", fin=False) * 65534
        events = conn.receive_data(data + to_server(CONT, b"c"))
        while conn.events_pending:
            events += conn.receive_data(b"")
        assert [e.data for e in events] == ["a" + "b" * 65534 + "c"]  # type: ignore[attr-defined]

    @pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
    def test_more_than_max_fragments_fails_with_1009(self, role: Role) -> None:
        conn = Connection(role, max_fragments=1000)
        make = to_server if role is Role.SERVER else to_client
        data = make(BINARY, b"", fin=False) + make(CONT, b"", fin=False) * 1000
        events = conn.receive_data(data)
        while conn.events_pending:
            events += conn.receive_data(b"")
        assert isinstance(events[-1], Failed)
        assert events[-1].error.close_code == 1009
        assert conn.state is State.CLOSED

    def test_exactly_max_fragments_is_accepted(self) -> None:
        conn = Connection(Role.CLIENT, max_fragments=3)
        data = to_client(TEXT, b"x", fin=False) + to_client(CONT, b"y", fin=False)
        events = conn.receive_data(data + to_client(CONT, b"z"))
        assert [e.data for e in events] == ["xyz"]  # type: ignore[attr-defined]
        # The count starts again with the next message.
        events = conn.receive_data(data + to_client(CONT, b"z"))
        assert [e.data for e in events] == ["xyz"]  # type: ignore[attr-defined]

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_empty_fragments_cost_no_memory(self, traced: None, opcode: int) -> None:
        conn = Connection(Role.CLIENT)
        conn.receive_data(to_client(opcode, b"", fin=False))
        empty = to_client(CONT, b"", fin=False) * 10_000
        conn.receive_data(empty)
        before = allocated()
        for _ in range(5):
            conn.receive_data(empty)
            while conn.events_pending:
                conn.receive_data(b"")
        assert allocated() - before < 16 * 1024
        events = conn.receive_data(to_client(CONT, b"end"))
        assert [bytes(e.data, "utf-8") if isinstance(e.data, str) else bytes(e.data)  # type: ignore[attr-defined]
                for e in events] == [b"end"]

    def test_text_split_inside_a_character_by_empty_fragments(self) -> None:
        conn = Connection(Role.CLIENT)
        data = (to_client(TEXT, b"\xc3", fin=False) + to_client(CONT, b"", fin=False)
                + to_client(CONT, b"\xa9"))
        assert [e.data for e in conn.receive_data(data)] == ["é"]  # type: ignore[attr-defined]

    def test_empty_compressed_fragments(self) -> None:
        conn = Connection(Role.CLIENT, extensions=[deflate()],
                          max_fragments=500)
        body = zlib.compressobj(wbits=-15)
        payload = body.compress(b"hello") + body.flush(zlib.Z_SYNC_FLUSH)
        data = (to_client(TEXT, payload[:-4], fin=False, rsv1=True)
                + to_client(CONT, b"", fin=False) * 400 + to_client(CONT, b""))
        events = conn.receive_data(data)
        assert [e.data for e in events] == ["hello"]  # type: ignore[attr-defined]
        conn.receive_data(to_client(TEXT, b"", fin=False, rsv1=True)
                          + to_client(CONT, b"", fin=False) * 500)
        assert conn.state is State.CLOSED and conn.close_code == 1009


class TestBatch:
    """The work one ``receive_data`` hands out is bounded; the rest comes on the next calls."""

    @pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
    def test_at_most_max_batch_messages_per_call(self, role: Role) -> None:
        conn = Connection(role, max_batch_messages=100)
        make = to_server if role is Role.SERVER else to_client
        data = b"".join(make(TEXT, str(i).encode()) for i in range(1050))
        events = conn.receive_data(data)
        batches = [len(events)]
        while conn.events_pending:
            more = conn.receive_data(b"")
            batches.append(len(more))
            events += more
        assert [e.data for e in events] == [str(i) for i in range(1050)]  # type: ignore[attr-defined]
        assert max(batches) == 100 and len(batches) >= 11

    def test_input_fed_while_pending_comes_after(self) -> None:
        conn = Connection(Role.CLIENT, max_batch_messages=10)
        first = b"".join(to_client(TEXT, b"a%d" % i) for i in range(25))
        second = b"".join(to_client(TEXT, b"b%d" % i) for i in range(25))
        events = conn.receive_data(first)
        assert conn.events_pending
        events += conn.receive_data(second)  # fed early: it waits behind the rest
        while conn.events_pending:
            events += conn.receive_data(b"")
        assert [e.data for e in events] == (  # type: ignore[attr-defined]
            [f"a{i}" for i in range(25)] + [f"b{i}" for i in range(25)])

    def test_compressed_messages_are_bounded_in_bytes(self) -> None:
        """256 KiB messages of zeros deflate to a few hundred bytes each: one read holds many,
        but a call inflates at most max_batch_bytes of them (plus one message)."""
        conn = Connection(Role.CLIENT, extensions=[deflate()],
                          max_batch_bytes=MiB)
        compressor = zlib.compressobj(wbits=-15)
        one = compressor.compress(bytes(256 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        data = to_client(BINARY, one[:-4], rsv1=True) * 40
        sizes = []
        events = conn.receive_data(data)
        sizes.append(sum(len(e.data) for e in events))  # type: ignore[attr-defined]
        count = len(events)
        while conn.events_pending:
            events = conn.receive_data(b"")
            sizes.append(sum(len(e.data) for e in events))  # type: ignore[attr-defined]
            count += len(events)
        assert count == 40
        assert max(sizes) <= MiB

    def test_control_frames_do_not_count_as_messages(self) -> None:
        conn = Connection(Role.SERVER, max_batch_messages=2)
        data = to_server(PING, b"1") * 5 + to_server(TEXT, b"x") * 3
        events = conn.receive_data(data)
        assert [type(e) for e in events] == [Ping] * 5 + [TextMessage] * 2
        assert len(conn.data_to_send()) == 5 * 3  # five pongs
        assert conn.events_pending
        assert [type(e) for e in conn.receive_data(b"")] == [TextMessage]
        assert not conn.events_pending

    def test_a_bad_frame_behind_a_batch_fails_in_order(self) -> None:
        conn = Connection(Role.SERVER, max_batch_messages=3)
        data = to_server(TEXT, b"x") * 5 + frame(TEXT, b"unmasked")
        first = conn.receive_data(data)
        assert len(first) == 3 and conn.state is State.OPEN
        rest = conn.receive_data(b"")
        assert [type(e) for e in rest] == [TextMessage, TextMessage, Failed]
        assert conn.close_code == 1002
        assert not conn.events_pending

    def test_parser_batch(self) -> None:
        parser = FrameParser(expect_mask=False, max_size=MiB, batch=4)
        data = to_client(TEXT, b"a") * 10
        assert len(parser.feed_raw(data)) == 4 and parser.ready
        assert len(parser.feed_raw(b"")) == 4 and parser.ready
        assert len(parser.feed_raw(b"")) == 2 and not parser.ready
        with pytest.raises(ValueError):
            FrameParser(expect_mask=False, max_size=MiB, batch=0)
        with pytest.raises(ValueError):
            Connection(Role.CLIENT, max_fragments=0)


class TestRelease:
    """A closed connection holds nothing: no buffer, no traceback, no cycle."""

    def test_connection_lost_drops_the_buffers(self, traced: None) -> None:
        conn = Connection(Role.CLIENT, max_message_size=4 * MiB)
        before = allocated()
        conn.receive_data(to_client(BINARY, bytes(2 * MiB))[: MiB + 10])
        conn.receive_data(to_client(TEXT, b"x" * 1000, fin=False))
        assert allocated() - before > MiB
        conn.connection_lost()
        assert allocated() - before < 64 * 1024
        assert not conn.events_pending

    def test_failure_keeps_no_traceback(self) -> None:
        conn = Connection(Role.CLIENT, extensions=[deflate()],
                          max_message_size=1000)
        compressor = zlib.compressobj(wbits=-15)
        bomb = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        events = conn.receive_data(to_client(BINARY, bomb[:-4], rsv1=True))
        failed = events[-1]
        assert isinstance(failed, Failed) and failed.error.close_code == 1009
        error: BaseException | None = failed.error
        while error is not None:
            assert error.__traceback__ is None
            error = error.__cause__ or error.__context__

    def test_without_traceback_walks_causes(self) -> None:
        try:
            try:
                raise KeyError("inner")
            except KeyError as inner:
                raise MessageTooBig("outer") from inner
        except MessageTooBig as exc:
            error = exc
        assert error.__traceback__ is not None and error.__cause__ is not None
        assert without_traceback(error) is error
        assert error.__traceback__ is None and error.__cause__.__traceback__ is None

    def test_no_reference_cycle(self) -> None:
        gc.collect()
        gc.disable()
        try:
            conn = Connection(Role.SERVER, extensions=[deflate()],
                              max_message_size=100)
            conn.receive_data(to_server(TEXT, b"x" * 200))
            conn.connection_lost()
            del conn
            assert gc.collect() == 0
        finally:
            gc.enable()
