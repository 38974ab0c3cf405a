"""Large frames without copies: read straight into the frame's buffer (``FrameParser.room``,
``Connection.receive_buffer``) and sent as header and payload (``frames.frame_parts``,
``Connection.send_parts``), bytes-in/bytes-out against what RFC 6455 §5.2-§5.4 says."""

from __future__ import annotations

import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import frames
from wskit.core.connection import BinaryMessage, Connection, Failed, Role, TextMessage
from wskit.core.deflate import PerMessageDeflate
from wskit.core.errors import PolicyViolation
from wskit.core.frames import FrameBuffer, FrameParser, build_frame_python, frame_parts

# Every test runs against the pure-Python frame functions and their C twins (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_impl")

KEY = bytes.fromhex("a1b2c3d4")
MiB = 1 << 20


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes, *, masked: bool = True, fin: bool = True) -> bytes:
    """RFC 6455 §5.2, written here independently of wskit."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    return head + (KEY + mask(payload, KEY) if masked else payload)


def read_into(conn: Connection, wire: bytes, step: int) -> tuple[list[object], list[int]]:
    """Feed ``wire`` as a binding that reads into ``receive_buffer()`` when offered does:
    reads of at most ``step`` bytes; returns the events and the size of each room used."""
    events: list[object] = []
    rooms: list[int] = []
    pos = 0
    while pos < len(wire):
        room = conn.receive_buffer()
        if room is None:
            chunk = wire[pos : pos + step]
            events += conn.receive_data(chunk)
        else:
            rooms.append(len(room))
            chunk = wire[pos : pos + min(step, len(room))]
            room[: len(chunk)] = chunk
            del room  # (as asyncio's transport drops it after the read)
            events += conn.receive_into(len(chunk))
        pos += len(chunk)
    return events, rooms


class TestFrameParts:
    """``frame_parts`` is ``build_frame`` in two pieces: the same bytes on the wire (§5.2)."""

    @given(st.integers(0, 255), st.binary(max_size=300).map(lambda b: b * 300),
           st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
           st.sampled_from(["bytes", "bytearray", "memoryview", "frame buffer"]))
    @settings(max_examples=60, deadline=None)
    def test_same_bytes_as_build_frame(self, b0: int, payload: bytes, key: bytes | None,
                                       kind: str) -> None:
        data: bytes | bytearray | memoryview = {
            "bytes": payload, "bytearray": bytearray(payload),
            "memoryview": memoryview(bytearray(payload)),
            "frame buffer": memoryview(FrameBuffer(payload)),
        }[kind]
        header, rest = frame_parts(b0, data, key)
        assert type(header) is bytes
        assert header + bytes(rest) == build_frame_python(b0, payload, key)
        assert header + bytes(rest) == frames.build_frame(b0, payload, key)

    def test_bytes_and_frame_buffers_are_not_copied(self) -> None:
        payload = os.urandom(100_000)
        assert frame_parts(0x82, payload, None)[1] is payload
        buf = FrameBuffer(b"\0" * 14 + payload)
        view = memoryview(buf)[14:]
        rest = frame_parts(0x82, view, None)[1]
        assert type(rest) is memoryview and rest.obj is buf and rest == payload
        # A view released after the call (on_buffer's) leaves the part written later intact.
        view.release()
        assert bytes(rest) == payload

    def test_other_buffers_are_copied(self) -> None:
        """What the caller changes after sending does not reach the wire."""
        data = bytearray(os.urandom(100_000))
        sent = bytes(data)
        for given_ in (data, memoryview(data)):
            rest = frame_parts(0x82, given_, None)[1]
            data[0] ^= 0xFF
            assert bytes(rest) == sent
            data[0] ^= 0xFF

    def test_masked_payload_is_a_masked_copy(self) -> None:
        """RFC 6455 §5.3: the key follows the length; the payload is XOR-ed with it."""
        payload = os.urandom(70_000)
        header, rest = frame_parts(0x82, payload, KEY)
        assert header == bytes((0x82, 0x80 | 127)) + len(payload).to_bytes(8, "big") + KEY
        assert bytes(rest) == mask(payload, KEY)

    def test_errors_as_build_frame(self) -> None:
        for args in ((256, b"x", None), (0x82, b"x", b"abc"), (0x82, "text", None),
                     (0x82, memoryview(b"abcd")[::2], None)):
            with pytest.raises((ValueError, TypeError)) as ours:
                frame_parts(*args)  # type: ignore[arg-type]
            with pytest.raises((ValueError, TypeError)) as theirs:
                build_frame_python(*args)  # type: ignore[arg-type]
            assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


class TestRoom:
    """Reading a large frame straight into its buffer: the same messages, memory that follows
    the bytes that arrived (RFC 6455 §10.4), never a byte of the next frame."""

    @pytest.mark.parametrize("step", [1000, 65536, 100_000, 256 * 1024])
    def test_same_messages_as_receive_data(self, step: int) -> None:
        big = os.urandom(300_000)
        text = ("é" * 100_000).encode()
        wire = (frame(0x2, big) + frame(0x1, text) + frame(0x2, b"small")
                + frame(0x2, big[:70_000], fin=False) + frame(0x0, big[:5]))
        conn = Connection(Role.SERVER)
        events, rooms = read_into(conn, wire, step)
        assert [type(e) for e in events] == [BinaryMessage, TextMessage, BinaryMessage,
                                             BinaryMessage]
        assert [bytes(e.data) if type(e) is BinaryMessage else e.data  # type: ignore[attr-defined]
                for e in events] == [big, text.decode(), b"small", big[:70_000] + big[:5]]
        if step >= 65536:
            assert rooms, "a large frame was read into its own buffer"
        assert conn.parser.buffered == 0 and conn.messages_in == 4

    def test_room_ends_at_the_frame(self) -> None:
        """RFC 6455 §5.2: the frame's length says where the next one starts; a read into the
        room never takes the next frame's bytes."""
        payload = os.urandom(200_000)
        conn = Connection(Role.SERVER)
        wire = frame(0x2, payload)
        assert conn.receive_data(wire[:150_000]) == []
        room = conn.receive_buffer()
        assert room is not None and len(room) == len(wire) - 150_000
        room[:] = wire[150_000:]
        del room
        (event,) = conn.receive_into(len(wire) - 150_000)
        assert type(event) is BinaryMessage and bytes(event.data) == payload
        assert conn.receive_buffer() is None  # between frames: the shared buffer

    def test_no_room_before_enough_has_arrived(self) -> None:
        conn = Connection(Role.SERVER)
        wire = frame(0x2, bytes(MiB))
        assert conn.receive_data(wire[:1000]) == []
        assert conn.receive_buffer() is None  # a read of a few bytes would cost a call each
        assert conn.receive_data(wire[1000:200_000]) == []
        assert conn.receive_buffer() is not None

    def test_memory_follows_what_arrived(self) -> None:
        """RFC 6455 §10.4: a header declaring 1 MiB costs nothing until its bytes come; the
        buffer grows when less than a read's room (64 KiB) is left, to double its size: at
        most twice what arrived plus two reads' room."""
        frames._spare.clear()
        conn = Connection(Role.SERVER)
        payload = bytes(range(256)) * (MiB // 256)
        wire = frame(0x2, payload)
        tracemalloc.start()
        try:
            conn.receive_data(wire[:70_000])
            received = 70_000
            while received < len(wire):
                room = conn.receive_buffer()
                assert room is not None
                # What the buffer holds at least: what came and the room offered.
                assert received + len(room) <= 2 * (received + 64 * 1024), (received, len(room))
                n = min(len(room), 100_000)
                room[:n] = wire[received : received + n]
                del room
                events = conn.receive_into(n)
                received += n
            assert tracemalloc.get_traced_memory()[1] <= 3 * len(wire)
        finally:
            tracemalloc.stop()
        assert [bytes(e.data) for e in events] == [payload]  # type: ignore[attr-defined]

    def test_invalid_utf8_fails_as_it_arrives(self) -> None:
        """RFC 6455 §8.1: a text frame fails at its first invalid byte, before its end."""
        conn = Connection(Role.SERVER)
        wire = frame(0x1, b"a" * 100_000 + b"\xff" + b"a" * 200_000)
        conn.receive_data(wire[:70_000])
        room = conn.receive_buffer()
        assert room is not None
        room[:50_000] = wire[70_000:120_000]
        del room
        (event,) = conn.receive_into(50_000)
        assert type(event) is Failed and event.error.close_code == 1007

    def test_filled_beyond_the_room_is_refused(self) -> None:
        parser = FrameParser(expect_mask=True, max_size=MiB)
        wire = frame(0x2, bytes(200_000))
        parser.feed_raw(wire[:100_000])
        room = parser.room()
        assert room is not None
        with pytest.raises(ValueError):
            parser.filled(len(room) + 1)
        with pytest.raises(ValueError):
            FrameParser(expect_mask=True, max_size=MiB).filled(1)

    def test_no_room_after_a_close_or_while_a_batch_is_held(self) -> None:
        conn = Connection(Role.SERVER)
        conn.receive_data(frame(0x2, bytes(200_000))[:100_000])
        assert conn.receive_buffer() is not None
        conn.fail(PolicyViolation("test"))
        assert conn.receive_buffer() is None


class TestSendParts:
    """``send_parts`` writes the frames ``send_binary`` and ``send_text`` write (§5.2, §5.3)."""

    @pytest.mark.parametrize("payload", [b"", b"x" * 125, os.urandom(70_000), "é" * 40_000])
    def test_server_frames(self, payload: bytes | str) -> None:
        a, b = Connection(Role.SERVER), Connection(Role.SERVER)
        header, rest = a.send_parts(payload)
        expected = (b.send_text(payload) if isinstance(payload, str)
                    else b.send_binary(payload))
        assert header + bytes(rest) == expected
        assert a.messages_out == b.messages_out == 1

    def test_client_frames_are_masked_with_a_fresh_key(self) -> None:
        """RFC 6455 §5.3: a fresh key for every frame, the payload masked with it."""
        conn = Connection(Role.CLIENT)
        payload = os.urandom(70_000)
        keys = set()
        for _ in range(3):
            header, rest = conn.send_parts(payload)
            assert header[:10] == bytes((0x82, 0x80 | 127)) + len(payload).to_bytes(8, "big")
            key = header[10:14]
            keys.add(key)
            assert mask(bytes(rest), key) == payload
        assert len(keys) == 3

    def test_compressed_as_send_binary(self) -> None:
        """RFC 7692 §6: RSV1 on a compressed message; the same encoding as send_binary."""
        def compressing() -> Connection:
            return Connection(Role.SERVER, extensions=[PerMessageDeflate(
                remote_no_context_takeover=False, local_no_context_takeover=False,
                remote_max_window_bits=15, local_max_window_bits=15)])

        a, b = compressing(), compressing()
        payload = b"abc" * 30_000
        for _ in range(2):  # the second under context takeover
            header, rest = a.send_parts(payload)
            assert header[0] == 0xC2
            assert header + bytes(rest) == b.send_binary(payload)

    def test_refused_when_not_open(self) -> None:
        conn = Connection(Role.SERVER)
        conn.fail(PolicyViolation("test"))
        with pytest.raises(Exception, match="state"):
            conn.send_parts(b"x" * 70_000)


class TestSpareBetweenFrames:
    """After a large frame the next read may go into a spare buffer: a large frame starting
    there is assembled in it, anything else is parsed as from any read (RFC 6455 §5.2)."""

    def spare_offered(self) -> tuple[Connection, memoryview]:
        frames._spare.clear()
        conn = Connection(Role.SERVER)
        wire = frame(0x2, bytes(200_000))
        events, _ = read_into(conn, wire, 100_000)
        assert len(events) == 1
        del events
        conn.parser.release()  # (the binding does, once the listeners are done)
        room = conn.receive_buffer()
        assert room is not None and len(room) >= 200_000
        return conn, room

    @pytest.mark.parametrize("cut", [20, 150_000, None])
    def test_a_large_frame_starts_in_the_spare(self, cut: int | None) -> None:
        conn, room = self.spare_offered()
        payload = os.urandom(180_000)
        wire = frame(0x2, payload) + frame(0x1, b"after")
        n = len(wire) if cut is None else cut
        room[:n] = wire[:n]
        del room
        events = conn.receive_into(n)
        rest, _ = read_into(conn, wire[n:], 100_000)
        events += rest
        assert [bytes(e.data) if type(e) is BinaryMessage else e.data  # type: ignore[attr-defined]
                for e in events] == [payload, "after"]

    def test_small_frames_in_the_spare(self) -> None:
        conn, room = self.spare_offered()
        wire = frame(0x1, b"one") + frame(0x2, b"two") + frame(0x2, bytes(300))[:100]
        room[: len(wire)] = wire
        del room
        events = conn.receive_into(len(wire))
        assert [e.data for e in events] == ["one", b"two"]  # type: ignore[attr-defined]
        assert len(frames._spare) == 1  # given back
        (event,) = conn.receive_data(frame(0x2, bytes(300))[100:])
        assert bytes(event.data) == bytes(300)  # type: ignore[attr-defined]

    def test_a_bad_header_in_the_spare_fails(self) -> None:
        """RFC 6455 §5.1: a client's frames are masked; an unmasked one fails with 1002."""
        conn, room = self.spare_offered()
        wire = frame(0x2, bytes(70_000), masked=False)
        room[:100] = wire[:100]
        del room
        (event,) = conn.receive_into(100)
        assert type(event) is Failed and event.error.close_code == 1002
        assert conn.receive_buffer() is None
