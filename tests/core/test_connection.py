"""Bytes-in/bytes-out tests of ``wskit.core.connection.Connection`` for both roles (RFC 6455)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import frames as frames_module
from wskit.core import masking
from wskit.core.connection import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BinaryMessage,
    CloseReceived,
    Connection,
    Event,
    Failed,
    Ping,
    Pong,
    Role,
    State,
    TextMessage,
)
from wskit.core.errors import (
    InvalidState,
    MessageTooBig,
    PayloadNotUTF8,
    ProtocolError,
    RemoteError,
)
from wskit.core.extensions import Extension

# Every test runs against the pure-Python frame functions and their C twins (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_impl")

KEY = bytes.fromhex("37fa213d")  # what our side masks with (generate_mask is patched)
PEER_KEY = bytes.fromhex("a1b2c3d4")  # what a client peer masks with

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
ROLES = [Role.SERVER, Role.CLIENT]


@pytest.fixture(autouse=True)
def fixed_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our client masks with KEY, so every byte it writes can be compared exactly.

    The C build_masked_frame draws its keys in C; its pure twin asks generate_mask, so the
    messages are built with the twin here (and with the build_frame under test).
    """
    monkeypatch.setattr(frames_module, "generate_mask", lambda: KEY)
    monkeypatch.setattr(
        frames_module, "build_masked_frame", frames_module.build_masked_frame_python
    )


@pytest.fixture
def real_keys(monkeypatch: pytest.MonkeyPatch, frame_impl: str) -> None:
    """Fresh keys, from the implementation under test: C draws its own, the twin asks."""
    monkeypatch.setattr(frames_module, "generate_mask", masking.generate_mask)
    build = frames_module.build_masked_frame_python
    if frame_impl == "c":
        assert masking.speedups is not None  # (frame_impl skips "c" without a build)
        build = masking.speedups.build_masked_frame
    monkeypatch.setattr(frames_module, "build_masked_frame", build)


@pytest.fixture(params=ROLES, ids=["server", "client"])
def conn(request: pytest.FixtureRequest) -> Connection:
    return Connection(request.param)


# -- reference encoding and decoding, written from RFC 6455 §5.2 independently of wskit ----------


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def raw_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if key is not None else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    return head + (payload if key is None else key + xor(payload, key))


def incoming(
    conn: Connection,
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """A frame as ``conn``'s peer sends it: masked towards a server, unmasked towards a client."""
    key = PEER_KEY if conn.role is Role.SERVER else None
    return raw_frame(opcode, payload, fin=fin, rsv=rsv, key=key, length=length)


def header_only(conn: Connection, opcode: int, length: int, *, fin: bool = True) -> bytes:
    """Just the header bytes up to the length (no mask key, no payload)."""
    head = raw_frame(opcode, b"", fin=fin, length=length)
    if conn.role is Role.SERVER:
        head = bytes((head[0], head[1] | 0x80)) + head[2:]
    return head


def outgoing(
    role: Role, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
) -> bytes:
    """The exact bytes a connection of ``role`` writes (a client masks with KEY)."""
    return raw_frame(opcode, payload, fin=fin, rsv=rsv, key=KEY if role is Role.CLIENT else None)


def close_frame(role: Role, code: int | None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return outgoing(role, CLOSE, payload)


def read_frames(data: bytes) -> list[tuple[int, bool, int, bytes, bytes | None]]:
    """Parse frames we wrote: (opcode, fin, rsv, unmasked payload, masking key or None)."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        key = None
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame"
        pos += n
        out.append(
            (b0 & 0x0F, bool(b0 & 0x80), b0 & 0x70, xor(payload, key) if key else payload, key)
        )
    return out


def summary(event: Event) -> tuple[object, ...]:
    if isinstance(event, TextMessage):
        return ("text", event.data)
    if isinstance(event, BinaryMessage):
        return ("binary", bytes(event.data))
    if isinstance(event, Ping):
        return ("ping", event.data)
    if isinstance(event, Pong):
        return ("pong", event.data)
    if isinstance(event, CloseReceived):
        return ("close", event.code, event.reason)
    assert isinstance(event, Failed)
    return ("failed", event.error.close_code)


def feed(conn: Connection, data: bytes) -> list[tuple[object, ...]]:
    return [summary(e) for e in conn.receive_data(data)]


def assert_failed(conn: Connection, events: list[Event], code: int) -> None:
    """The connection failed with ``code``: exactly one Close frame with it is queued."""
    assert events, "no Failed event"
    last = events[-1]
    assert isinstance(last, Failed), events
    assert last.error.close_code == code
    assert conn.data_to_send() == close_frame(conn.role, code)
    assert conn.state is State.CLOSED
    assert conn.should_close_transport
    assert conn.close_sent
    assert conn.close_code == code
    assert conn.close_reason == last.error.reason
    # RFC 6455 §7.1.7: after a failure, further input is discarded.
    assert conn.receive_data(incoming(conn, TEXT, b"late")) == []
    assert conn.data_to_send() == b""


# -- messages ------------------------------------------------------------------------------------


class TestMessages:
    """RFC 6455 §5.6: text and binary data frames become messages, for both roles."""

    def test_text(self, conn: Connection) -> None:
        assert feed(conn, incoming(conn, TEXT, "héllo €𝄞".encode())) == [("text", "héllo €𝄞")]
        assert conn.data_to_send() == b""

    def test_binary(self, conn: Connection) -> None:
        events = conn.receive_data(incoming(conn, BINARY, b"\x00\xff" * 1000))
        assert len(events) == 1 and isinstance(events[0], BinaryMessage)
        assert bytes(events[0].data) == b"\x00\xff" * 1000
        assert repr(events[0]) == "BinaryMessage(len=2000)"

    def test_empty_messages(self, conn: Connection) -> None:
        data = incoming(conn, TEXT) + incoming(conn, BINARY)
        assert feed(conn, data) == [("text", ""), ("binary", b"")]

    def test_many_messages_in_one_chunk(self, conn: Connection) -> None:
        data = b"".join(incoming(conn, TEXT, str(i).encode()) for i in range(100))
        assert feed(conn, data) == [("text", str(i)) for i in range(100)]

    def test_byte_by_byte(self, conn: Connection) -> None:
        data = incoming(conn, TEXT, b"x" * 300) + incoming(conn, BINARY, b"y" * 70000)
        got: list[tuple[object, ...]] = []
        for i in range(len(data)):
            got += feed(conn, data[i : i + 1])
        assert got == [("text", "x" * 300), ("binary", b"y" * 70000)]

    def test_repr_of_events(self) -> None:
        assert repr(TextMessage("a" * 50)) == f"TextMessage({'a' * 40!r}, len=50)"
        assert repr(CloseReceived(1000, "bye")) == "CloseReceived(1000, 'bye')"
        assert repr(Failed(ProtocolError("bad"))) == "Failed(1002, 'bad')"

    def test_pong_event(self, conn: Connection) -> None:
        assert feed(conn, incoming(conn, PONG, b"rtt")) == [("pong", b"rtt")]
        assert conn.data_to_send() == b""

    def test_ping_is_answered(self, conn: Connection) -> None:
        # RFC 6455 §5.5.2 / §5.5.3: a Pong with the same application data.
        assert feed(conn, incoming(conn, PING, b"are you there")) == [("ping", b"are you there")]
        assert conn.data_to_send() == outgoing(conn.role, PONG, b"are you there")
        assert conn.data_to_send() == b""

    def test_ping_answer_exact_bytes_from_server(self) -> None:
        server = Connection(Role.SERVER)
        server.receive_data(bytes.fromhex("898537fa213d7f9f4d5158"))  # RFC 6455 §5.7 masked
        assert server.data_to_send() == bytes.fromhex("8a0548656c6c6f")

    def test_several_pongs_queue_in_order(self, conn: Connection) -> None:
        conn.receive_data(incoming(conn, PING, b"1") + incoming(conn, PING, b"2"))
        assert conn.data_to_send() == outgoing(conn.role, PONG, b"1") + outgoing(
            conn.role, PONG, b"2"
        )


class TestFragmentation:
    """RFC 6455 §5.4: fragments reassemble; control frames may be interleaved; order rules."""

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_many_fragments(self, conn: Connection, opcode: int) -> None:
        pieces = [bytes([65 + i % 26]) * (i % 7) for i in range(200)]
        data = incoming(conn, opcode, pieces[0], fin=False)
        data += b"".join(incoming(conn, CONT, p, fin=False) for p in pieces[1:-1])
        data += incoming(conn, CONT, pieces[-1])
        whole = b"".join(pieces)
        expected = ("text", whole.decode()) if opcode == TEXT else ("binary", whole)
        assert feed(conn, data) == [expected]
        # The next message starts clean.
        assert feed(conn, incoming(conn, opcode, b"next")) == [
            ("text", "next") if opcode == TEXT else ("binary", b"next")
        ]

    def test_fragments_in_separate_feeds(self, conn: Connection) -> None:
        assert feed(conn, incoming(conn, BINARY, b"ab", fin=False)) == []
        assert feed(conn, incoming(conn, CONT, b"", fin=False)) == []
        assert feed(conn, incoming(conn, CONT, b"cd")) == [("binary", b"abcd")]

    def test_ping_inside_a_fragmented_message_is_answered_at_once(self, conn: Connection) -> None:
        assert feed(conn, incoming(conn, TEXT, b"Hel", fin=False)) == []
        assert feed(conn, incoming(conn, PING, b"ping!")) == [("ping", b"ping!")]
        assert conn.data_to_send() == outgoing(conn.role, PONG, b"ping!")
        assert feed(conn, incoming(conn, PONG, b"p")) == [("pong", b"p")]
        assert feed(conn, incoming(conn, CONT, b"lo")) == [("text", "Hello")]

    def test_interleaved_control_frames_in_one_chunk(self, conn: Connection) -> None:
        data = (
            incoming(conn, BINARY, b"1", fin=False)
            + incoming(conn, PING, b"a")
            + incoming(conn, CONT, b"2", fin=False)
            + incoming(conn, PING, b"b")
            + incoming(conn, CONT, b"3")
        )
        assert feed(conn, data) == [("ping", b"a"), ("ping", b"b"), ("binary", b"123")]
        assert conn.data_to_send() == outgoing(conn.role, PONG, b"a") + outgoing(
            conn.role, PONG, b"b"
        )

    def test_continuation_without_start(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(incoming(conn, CONT, b"orphan")), 1002)

    def test_continuation_after_a_finished_message(self, conn: Connection) -> None:
        events = conn.receive_data(incoming(conn, TEXT, b"done") + incoming(conn, CONT, b"more"))
        assert summary(events[0]) == ("text", "done")
        assert_failed(conn, events, 1002)

    @pytest.mark.parametrize("first", [TEXT, BINARY])
    @pytest.mark.parametrize("second", [TEXT, BINARY])
    def test_new_data_frame_inside_a_fragmented_message(
        self, conn: Connection, first: int, second: int
    ) -> None:
        assert conn.receive_data(incoming(conn, first, b"a", fin=False)) == []
        assert_failed(conn, conn.receive_data(incoming(conn, second, b"b")), 1002)

    def test_server_failure_bytes(self) -> None:
        server = Connection(Role.SERVER)
        events = server.receive_data(raw_frame(CONT, b"x", key=PEER_KEY))
        assert server.data_to_send() == bytes.fromhex("880203ea")
        assert isinstance(events[0], Failed) and events[0].error.close_code == 1002
        assert isinstance(events[0].error, ProtocolError)


VALID_TEXT = "aé€𝄞z"  # 1-, 2-, 3- and 4-byte sequences

# (bytes, index of the first byte that makes the sequence invalid)
INVALID_UTF8 = [
    (b"\xed\xa0\x80", 1),  # U+D800, a surrogate
    (b"\xed\xbf\xbf", 1),  # U+DFFF, a surrogate
    (b"\xc0\xaf", 0),  # overlong "/"
    (b"\xc1\xbf", 0),  # overlong
    (b"\xe0\x80\xaf", 1),  # overlong "/" in 3 bytes
    (b"\xf0\x80\x80\xaf", 1),  # overlong "/" in 4 bytes
    (b"\xf4\x90\x80\x80", 1),  # U+110000, above U+10FFFF
    (b"\xf5\x80\x80\x80", 0),  # lead byte beyond U+10FFFF
    (b"\x80", 0),  # stray continuation byte
    (b"\xbf", 0),  # stray continuation byte
    (b"\xe2\x82a", 2),  # a sequence cut short by ASCII
    (b"\xff", 0),
]


class TestUTF8:
    """RFC 6455 §8.1 and §5.6: text must be UTF-8; fail (1007) as soon as it cannot be."""

    def test_every_split_of_valid_multibyte_text(self, conn: Connection) -> None:
        data = VALID_TEXT.encode()
        for i in range(len(data) + 1):
            frames = incoming(conn, TEXT, data[:i], fin=False) + incoming(conn, CONT, data[i:])
            assert feed(conn, frames) == [("text", VALID_TEXT)], i

    def test_every_three_way_split_fed_separately(self, conn: Connection) -> None:
        data = VALID_TEXT.encode()
        for i in range(len(data) + 1):
            for j in range(i, len(data) + 1):
                assert feed(conn, incoming(conn, TEXT, data[:i], fin=False)) == []
                assert feed(conn, incoming(conn, CONT, data[i:j], fin=False)) == []
                assert feed(conn, incoming(conn, CONT, data[j:])) == [("text", VALID_TEXT)]

    @pytest.mark.parametrize(("seq", "bad"), INVALID_UTF8, ids=lambda v: getattr(v, "hex", str)())
    def test_single_frame(self, conn: Connection, seq: bytes, bad: int) -> None:
        events = conn.receive_data(incoming(conn, TEXT, b"ab" + seq + b"cd"))
        assert_failed(conn, events, 1007)
        assert isinstance(events[-1], Failed) and isinstance(events[-1].error, PayloadNotUTF8)

    @pytest.mark.parametrize(("seq", "bad"), INVALID_UTF8, ids=lambda v: getattr(v, "hex", str)())
    @pytest.mark.parametrize("role", ROLES, ids=["server", "client"])
    def test_detected_at_the_first_bad_fragment(self, role: Role, seq: bytes, bad: int) -> None:
        data = b"ab" + seq + b"cd"
        bad_at = 2 + bad
        for i in range(len(data) + 1):
            conn = Connection(role)
            events = conn.receive_data(incoming(conn, TEXT, data[:i], fin=False))
            if i > bad_at:
                # The first fragment already holds the byte that makes the text invalid.
                assert_failed(conn, events, 1007)
                continue
            assert events == [], (seq, i)
            # The second fragment holds it; the message has not ended yet.
            events = conn.receive_data(incoming(conn, CONT, data[i:], fin=False))
            assert_failed(conn, events, 1007)

    def test_truncated_sequence_detected_at_the_end(self, conn: Connection) -> None:
        assert conn.receive_data(incoming(conn, TEXT, b"a\xe2\x82", fin=False)) == []
        assert_failed(conn, conn.receive_data(incoming(conn, CONT, b"")), 1007)

    def test_truncated_sequence_in_a_single_frame(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(incoming(conn, TEXT, b"a\xf0\x9f")), 1007)

    def test_binary_is_not_checked(self, conn: Connection) -> None:
        data = incoming(conn, BINARY, b"\xff", fin=False) + incoming(conn, CONT, b"\xed\xa0\x80")
        assert feed(conn, data) == [("binary", b"\xff\xed\xa0\x80")]

    def test_decoder_is_reset_between_messages(self, conn: Connection) -> None:
        data = incoming(conn, TEXT, b"\xe2", fin=False) + incoming(conn, CONT, b"\x82\xac")
        assert feed(conn, data + data) == [("text", "€"), ("text", "€")]


class TestMessageSize:
    """RFC 6455 §10.4 and §7.4.1: messages over the limit fail with 1009, checked early."""

    def test_single_frame_refused_from_its_declared_length(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=1000)
        events = conn.receive_data(header_only(conn, BINARY, 1001))
        assert_failed(conn, events, 1009)
        assert isinstance(events[-1], Failed) and isinstance(events[-1].error, MessageTooBig)

    def test_server_1009_bytes(self) -> None:
        server = Connection(Role.SERVER, max_message_size=1000)
        server.receive_data(bytes.fromhex("81fe03e9"))  # masked text header declaring 1001 bytes
        assert server.data_to_send() == bytes.fromhex("880203f1")

    def test_64_bit_declared_length(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(header_only(conn, TEXT, 1 << 40)), 1009)

    def test_exactly_the_limit(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=1000)
        assert feed(conn, incoming(conn, TEXT, b"x" * 1000)) == [("text", "x" * 1000)]

    def test_fragmented_total(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=1000)
        assert conn.receive_data(incoming(conn, BINARY, b"a" * 600, fin=False)) == []
        assert_failed(conn, conn.receive_data(incoming(conn, CONT, b"b" * 401)), 1009)

    def test_fragmented_total_in_one_chunk(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=1000)
        data = incoming(conn, TEXT, b"a" * 600, fin=False) + incoming(conn, CONT, b"b" * 401)
        assert_failed(conn, conn.receive_data(data), 1009)

    def test_continuation_refused_from_its_declared_length(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=1000)
        assert conn.receive_data(incoming(conn, BINARY, b"a" * 600, fin=False)) == []
        assert_failed(conn, conn.receive_data(header_only(conn, CONT, 401)), 1009)

    def test_fragmented_total_at_the_limit_then_full_limit_again(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=1000)
        data = incoming(conn, BINARY, b"a" * 600, fin=False) + incoming(conn, CONT, b"b" * 400)
        assert feed(conn, data) == [("binary", b"a" * 600 + b"b" * 400)]
        assert feed(conn, incoming(conn, BINARY, b"c" * 1000)) == [("binary", b"c" * 1000)]

    def test_nothing_left_after_a_full_first_fragment(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=10)
        assert feed(conn, incoming(conn, TEXT, b"0123456789", fin=False)) == []
        # Control frames do not count against the message limit.
        assert feed(conn, incoming(conn, PING, b"p" * 125)) == [("ping", b"p" * 125)]
        assert conn.data_to_send() == outgoing(conn.role, PONG, b"p" * 125)
        assert feed(conn, incoming(conn, CONT, b"", fin=False)) == []
        assert feed(conn, incoming(conn, CONT, b"")) == [("text", "0123456789")]

    def test_one_byte_over_after_a_full_first_fragment(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=10)
        assert conn.receive_data(incoming(conn, TEXT, b"0123456789", fin=False)) == []
        assert_failed(conn, conn.receive_data(incoming(conn, CONT, b"x")), 1009)

    def test_ping_larger_than_a_small_limit(self, conn: Connection) -> None:
        conn = Connection(conn.role, max_message_size=4)
        assert feed(conn, incoming(conn, PING, b"p" * 100)) == [("ping", b"p" * 100)]

    def test_default_and_invalid_limits(self) -> None:
        assert Connection(Role.SERVER).max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1 << 20
        for bad in (0, -1):
            with pytest.raises(ValueError):
                Connection(Role.SERVER, max_message_size=bad)


class TestFramingErrors:
    """RFC 6455 §5.1, §5.2, §5.5: framing errors fail the connection with 1002."""

    def test_unmasked_frame_to_server(self) -> None:
        server = Connection(Role.SERVER)
        assert_failed(server, server.receive_data(raw_frame(TEXT, b"hi")), 1002)

    def test_masked_frame_to_client(self) -> None:
        client = Connection(Role.CLIENT)
        assert_failed(client, client.receive_data(raw_frame(TEXT, b"hi", key=PEER_KEY)), 1002)

    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
    def test_reserved_bits(self, conn: Connection, rsv: int) -> None:
        assert_failed(conn, conn.receive_data(incoming(conn, TEXT, b"x", rsv=rsv)), 1002)

    @pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF])
    def test_unknown_opcode(self, conn: Connection, opcode: int) -> None:
        assert_failed(conn, conn.receive_data(incoming(conn, opcode, b"x")), 1002)

    def test_long_control_frame(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(header_only(conn, PING, 126)), 1002)

    def test_fragmented_control_frame(self, conn: Connection) -> None:
        assert_failed(conn, conn.receive_data(incoming(conn, PING, b"", fin=False)), 1002)

    def test_good_frames_before_a_bad_one_in_the_same_chunk_are_delivered(
        self, conn: Connection
    ) -> None:
        # The result must not depend on how the stream was split into chunks.
        data = incoming(conn, TEXT, b"one") + incoming(conn, PING, b"p") + incoming(conn, 0x3)
        whole = Connection(conn.role)
        events = whole.receive_data(data)
        assert [summary(e) for e in events] == [("text", "one"), ("ping", b"p"), ("failed", 1002)]
        assert whole.data_to_send() == outgoing(conn.role, PONG, b"p") + close_frame(
            conn.role, 1002
        )
        got: list[tuple[object, ...]] = []
        for i in range(len(data)):
            got += feed(conn, data[i : i + 1])
        assert got == [summary(e) for e in events]


class TestCloseHandshake:
    """RFC 6455 §5.5.1, §7.1: the closing handshake, started by either side."""

    def test_server_receives_close(self) -> None:
        server = Connection(Role.SERVER)
        events = feed(server, raw_frame(CLOSE, b"\x03\xe8bye", key=PEER_KEY))
        assert events == [("close", 1000, "bye")]
        # The code and the reason are echoed (issue 10: the reason used to be dropped).
        assert server.data_to_send() == bytes.fromhex("880503e8") + b"bye"
        assert (server.sent_code, server.sent_reason) == (1000, "bye")
        assert server.state is State.REMOTE_CLOSING
        assert server.should_close_transport  # RFC 6455 §7.1.1: the server closes TCP first
        assert server.close_sent
        assert (server.close_code, server.close_reason) == (1000, "bye")

    def test_client_receives_close(self) -> None:
        client = Connection(Role.CLIENT)
        assert feed(client, raw_frame(CLOSE, b"\x03\xe9")) == [("close", 1001, "")]
        assert client.data_to_send() == close_frame(Role.CLIENT, 1001)
        assert client.state is State.REMOTE_CLOSING
        assert not client.should_close_transport  # the client waits for the server's TCP close
        assert client.close_code == 1001

    def test_empty_close_gets_an_empty_reply(self, conn: Connection) -> None:
        assert feed(conn, incoming(conn, CLOSE)) == [("close", 1005, "")]
        assert conn.data_to_send() == close_frame(conn.role, None)
        assert conn.close_code == 1005

    def test_empty_close_reply_bytes_from_server(self) -> None:
        server = Connection(Role.SERVER)
        server.receive_data(raw_frame(CLOSE, b"", key=PEER_KEY))
        assert server.data_to_send() == b"\x88\x00"

    @pytest.mark.parametrize("role", ROLES, ids=["server", "client"])
    def test_local_close_then_peer_close(self, role: Role) -> None:
        conn = Connection(role)
        assert conn.send_close(1000, "done") == close_frame(role, 1000, b"done")
        assert conn.state is State.LOCAL_CLOSING
        assert conn.close_sent
        assert conn.close_code is None
        # Data may still arrive; a ping is still answered (RFC 6455 §5.5.2: a Pong is owed
        # unless a Close was received, and §5.5.1 forbids only data frames after our Close).
        assert feed(conn, incoming(conn, TEXT, b"late")) == [("text", "late")]
        assert feed(conn, incoming(conn, PING, b"x")) == [("ping", b"x")]
        assert conn.data_to_send() == outgoing(role, PONG, b"x")
        assert feed(conn, incoming(conn, CLOSE, b"\x03\xe8")) == [("close", 1000, "")]
        assert conn.data_to_send() == b""  # no second Close
        assert conn.state is State.CLOSED
        assert conn.close_code == 1000
        assert conn.should_close_transport is (role is Role.SERVER)

    def test_close_with_no_code(self, conn: Connection) -> None:
        assert conn.send_close(None) == close_frame(conn.role, None)
        assert conn.state is State.LOCAL_CLOSING

    def test_send_close_default_code(self, conn: Connection) -> None:
        assert conn.send_close() == close_frame(conn.role, 1000)

    @pytest.mark.parametrize(
        ("code", "reason"), [(1005, ""), (999, ""), (None, "why"), (1000, "x" * 124)]
    )
    def test_send_close_refuses_bad_arguments_and_stays_open(
        self, conn: Connection, code: int | None, reason: str
    ) -> None:
        with pytest.raises(ValueError):
            conn.send_close(code, reason)
        assert conn.state is State.OPEN and not conn.close_sent

    @pytest.mark.parametrize(
        ("payload", "code"),
        [
            (b"\x03", 1002),  # 1-byte payload
            (b"\x03\xe7", 1002),  # 999
            (b"\x03\xec", 1002),  # 1004
            (b"\x03\xed", 1002),  # 1005
            (b"\x03\xee", 1002),  # 1006
            (b"\x03\xf7", 1002),  # 1015
            (b"\x13\x88", 1002),  # 5000
            (b"\x03\xe8\xff", 1007),  # reason not UTF-8
            (b"\x03\xe8\xed\xa0\x80", 1007),
        ],
    )
    def test_invalid_close_payload(self, conn: Connection, payload: bytes, code: int) -> None:
        assert_failed(conn, conn.receive_data(incoming(conn, CLOSE, payload)), code)

    def test_invalid_close_while_closing_sends_nothing_more(self, conn: Connection) -> None:
        conn.send_close(1000)
        events = conn.receive_data(incoming(conn, CLOSE, b"\x03"))
        assert [summary(e) for e in events] == [("failed", 1002)]
        assert conn.data_to_send() == b""  # our Close is already out
        assert conn.state is State.CLOSED and conn.close_code == 1002

    def test_data_after_close_is_discarded(self, conn: Connection) -> None:
        data = incoming(conn, CLOSE, b"\x03\xe8") + incoming(conn, TEXT, b"x") + b"\xff\xff"
        assert feed(conn, data) == [("close", 1000, "")]
        assert conn.receive_data(incoming(conn, TEXT, b"later")) == []
        assert conn.receive_data(incoming(conn, PING, b"p")) == []
        assert conn.data_to_send() == close_frame(conn.role, 1000)

    def test_input_after_closed_is_discarded(self, conn: Connection) -> None:
        conn.send_close()
        conn.receive_data(incoming(conn, CLOSE))
        assert conn.state is State.CLOSED
        assert conn.receive_data(incoming(conn, PING, b"p")) == []
        assert conn.data_to_send() == b""

    def test_close_inside_a_fragmented_message(self, conn: Connection) -> None:
        data = incoming(conn, TEXT, b"part", fin=False) + incoming(conn, CLOSE, b"\x03\xe9")
        assert feed(conn, data) == [("close", 1001, "")]


class TestClosePending:
    """RFC 6455 §5.5.1: our Close may wait until the messages received before it are answered."""

    def test_answer_messages_before_the_close_reply(self, conn: Connection) -> None:
        data = (
            incoming(conn, TEXT, b"q")
            + incoming(conn, PING, b"p")
            + incoming(conn, CLOSE, b"\x03\xe8")
        )
        assert feed(conn, data) == [("text", "q"), ("ping", b"p"), ("close", 1000, "")]
        assert conn.state is State.REMOTE_CLOSING
        assert conn.close_pending
        # The pong goes out at once; the Close stays queued.
        assert conn.data_to_send(hold_close=True) == outgoing(conn.role, PONG, b"p")
        assert conn.data_to_send(hold_close=True) == b""
        assert conn.close_pending
        # Replies are allowed while our Close waits; nothing else is.
        assert conn.send_text("a") == outgoing(conn.role, TEXT, b"a")
        assert conn.send_binary(b"b") == outgoing(conn.role, BINARY, b"b")
        with pytest.raises(InvalidState, match="REMOTE_CLOSING"):
            conn.send_ping(b"x")
        with pytest.raises(InvalidState, match="REMOTE_CLOSING"):
            conn.send_fragment(b"x", first=True, fin=True)
        assert conn.data_to_send() == close_frame(conn.role, 1000)
        assert not conn.close_pending
        with pytest.raises(InvalidState, match="REMOTE_CLOSING"):
            conn.send_text("too late")

    def test_answer_messages_before_a_failure(self, conn: Connection) -> None:
        events = conn.receive_data(incoming(conn, BINARY, b"q") + incoming(conn, 0x3))
        assert [summary(e) for e in events] == [("binary", b"q"), ("failed", 1002)]
        assert conn.close_pending
        assert conn.data_to_send(hold_close=True) == b""
        assert conn.send_binary(b"a") == outgoing(conn.role, BINARY, b"a")
        assert conn.data_to_send() == close_frame(conn.role, 1002)
        with pytest.raises(InvalidState, match="CLOSED"):
            conn.send_binary(b"b")

    def test_hold_close_without_a_close(self, conn: Connection) -> None:
        conn.receive_data(incoming(conn, PING, b"1"))
        assert not conn.close_pending
        assert conn.data_to_send(hold_close=True) == outgoing(conn.role, PONG, b"1")
        assert conn.data_to_send(hold_close=True) == b""

    def test_no_close_pending_after_our_own_close(self, conn: Connection) -> None:
        conn.send_close()
        conn.receive_data(incoming(conn, TEXT, b"x") + incoming(conn, CLOSE))
        assert not conn.close_pending and conn.data_to_send() == b""
        with pytest.raises(InvalidState, match="CLOSED"):
            conn.send_text("x")

    def test_no_replies_once_the_transport_is_lost(self, conn: Connection) -> None:
        conn.receive_data(incoming(conn, TEXT, b"q") + incoming(conn, CLOSE))
        assert conn.close_pending
        conn.connection_lost()
        assert not conn.close_pending
        assert conn.data_to_send() == b""
        with pytest.raises(InvalidState, match="CLOSED"):
            conn.send_text("a")


class TestStates:
    """RFC 6455 §4 and §7: CONNECTING, OPEN, LOCAL_CLOSING, REMOTE_CLOSING, CLOSED."""

    SENDS = [
        ("send_text", ("x",), {}),
        ("send_binary", (b"x",), {}),
        ("send_fragment", (b"x",), {"first": True, "fin": False}),
        ("send_fragment", (b"x",), {"first": False, "fin": True}),
        ("send_ping", (), {}),
        ("send_pong", (), {}),
        ("send_close", (), {}),
    ]

    @staticmethod
    def in_state(role: Role, state: State) -> Connection:
        if state is State.CONNECTING:
            return Connection(role, state=State.CONNECTING)
        conn = Connection(role)
        if state is State.LOCAL_CLOSING:
            conn.send_close()
        elif state is State.REMOTE_CLOSING:
            conn.receive_data(incoming(conn, CLOSE))
        elif state is State.CLOSED:
            conn.connection_lost()
        conn.data_to_send()  # our Close, if any, is written
        assert conn.state is state
        assert not conn.close_pending
        return conn

    @pytest.mark.parametrize("role", ROLES, ids=["server", "client"])
    @pytest.mark.parametrize(
        "state", [State.CONNECTING, State.LOCAL_CLOSING, State.REMOTE_CLOSING, State.CLOSED]
    )
    def test_sending_in_a_wrong_state_names_the_state(self, role: Role, state: State) -> None:
        for name, args, kwargs in self.SENDS:
            conn = self.in_state(role, state)
            with pytest.raises(InvalidState, match=state.name):
                getattr(conn, name)(*args, **kwargs)
            assert conn.state is state

    def test_handshake_complete(self) -> None:
        conn = Connection(Role.CLIENT, state=State.CONNECTING)
        assert conn.state is State.CONNECTING
        conn.handshake_complete()
        assert conn.state is State.OPEN
        assert feed(conn, raw_frame(TEXT, b"hi")) == [("text", "hi")]
        with pytest.raises(InvalidState, match="OPEN"):
            conn.handshake_complete()

    def test_handshake_complete_installs_extensions(self) -> None:
        conn = Connection(Role.CLIENT, state=State.CONNECTING)
        conn.handshake_complete([Reverse()])
        assert feed(conn, raw_frame(TEXT, b"cba", rsv=0x40)) == [("text", "abc")]

    def test_extensions_only_when_open(self) -> None:
        with pytest.raises(ValueError):
            Connection(Role.CLIENT, state=State.CONNECTING, extensions=[Reverse()])

    def test_receive_data_while_connecting_is_a_local_error(self) -> None:
        conn = Connection(Role.SERVER, state=State.CONNECTING)
        with pytest.raises(InvalidState, match="CONNECTING"):
            conn.receive_data(raw_frame(TEXT, b"x", key=PEER_KEY))

    @pytest.mark.parametrize("role", ROLES, ids=["server", "client"])
    def test_connection_lost_without_close_is_1006(self, role: Role) -> None:
        for state in (State.OPEN, State.LOCAL_CLOSING):
            conn = Connection(role)
            if state is State.LOCAL_CLOSING:
                conn.send_close()
            conn.connection_lost()
            assert conn.state is State.CLOSED
            assert conn.close_code == 1006
            assert conn.receive_data(incoming(conn, TEXT, b"x")) == []

    def test_connection_lost_keeps_a_received_code(self, conn: Connection) -> None:
        conn.receive_data(incoming(conn, CLOSE, b"\x0f\xa0"))
        conn.connection_lost()
        assert conn.state is State.CLOSED and conn.close_code == 4000

    def test_connection_lost_keeps_a_failure_code(self, conn: Connection) -> None:
        conn.receive_data(incoming(conn, 0x3))
        conn.connection_lost()
        assert conn.close_code == 1002

    def test_fail_while_local_closing_keeps_close_sent(self, conn: Connection) -> None:
        conn.send_close(1001)
        events = conn.receive_data(incoming(conn, CONT, b"x"))
        assert [summary(e) for e in events] == [("failed", 1002)]
        assert conn.data_to_send() == b""
        assert conn.should_close_transport and conn.state is State.CLOSED


class TestSending:
    """RFC 6455 §5.1, §5.3, §5.4, §5.5: frames we write, masked by a client only."""

    def test_server_frames_are_unmasked(self) -> None:
        server = Connection(Role.SERVER)
        assert server.send_text("Hello") == bytes.fromhex("810548656c6c6f")
        assert server.send_binary(b"\x01\x02") == bytes.fromhex("82020102")
        assert server.send_ping(b"Hello") == bytes.fromhex("890548656c6c6f")
        assert server.send_pong(b"Hello") == bytes.fromhex("8a0548656c6c6f")
        assert server.send_close(1000) == bytes.fromhex("880203e8")

    def test_client_frames_exact_bytes(self) -> None:
        client = Connection(Role.CLIENT)
        assert client.send_text("Hello") == bytes.fromhex("818537fa213d7f9f4d5158")

    @pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536])
    def test_client_masks_with_a_fresh_key(self, real_keys: None, n: int) -> None:
        client = Connection(Role.CLIENT)
        payload = bytes(i % 256 for i in range(n))
        keys = set()
        for data in (payload, bytearray(payload), memoryview(payload)):
            ((opcode, fin, rsv, got, key),) = read_frames(client.send_binary(data))
            assert (opcode, fin, rsv, got) == (BINARY, True, 0, payload)
            assert key is not None and len(key) == 4
            keys.add(key)
        ((opcode, _, _, got, key),) = read_frames(client.send_text("é" * (n // 2)))
        assert (opcode, got) == (TEXT, ("é" * (n // 2)).encode()) and key is not None
        keys.add(key)
        assert len(keys) > 1  # four random 32-bit keys are all equal once in 2**96

    def test_every_client_frame_kind_is_masked(self, real_keys: None) -> None:
        client = Connection(Role.CLIENT)
        written = (
            client.send_ping(b"pi")
            + client.send_pong(b"po")
            + client.send_fragment("frag", first=True, fin=False, text=True)
            + client.send_fragment(b"ment", first=False, fin=True)
            + client.send_close(1001, "bye")
        )
        got = read_frames(written)
        assert [(op, fin, payload) for op, fin, _, payload, _ in got] == [
            (PING, True, b"pi"),
            (PONG, True, b"po"),
            (TEXT, False, b"frag"),
            (CONT, True, b"ment"),
            (CLOSE, True, b"\x03\xe9bye"),
        ]
        assert all(key is not None for *_, key in got)

    def test_client_pong_reply_and_close_reply_are_masked(self, real_keys: None) -> None:
        client = Connection(Role.CLIENT)
        client.receive_data(raw_frame(PING, b"x") + raw_frame(CLOSE, b"\x03\xe8"))
        got = read_frames(client.data_to_send())
        assert [(op, payload) for op, _, _, payload, _ in got] == [
            (PONG, b"x"),
            (CLOSE, b"\x03\xe8"),
        ]
        assert all(key is not None for *_, key in got)

    @pytest.mark.parametrize("method", ["send_ping", "send_pong"])
    def test_control_payload_limit(self, conn: Connection, method: str) -> None:
        send = getattr(conn, method)
        opcode = PING if method == "send_ping" else PONG
        assert send(b"p" * 125) == outgoing(conn.role, opcode, b"p" * 125)
        assert send() == outgoing(conn.role, opcode)
        with pytest.raises(ValueError, match="125"):
            send(b"p" * 126)
        assert conn.state is State.OPEN

    def test_binary_fragments(self, conn: Connection) -> None:
        data = (
            conn.send_fragment(b"a", first=True, fin=False)
            + conn.send_ping(b"!")
            + conn.send_fragment(memoryview(b"b"), first=False, fin=False)
            + conn.send_fragment(bytearray(b"c"), first=False, fin=True)
        )
        assert data == (
            outgoing(conn.role, BINARY, b"a", fin=False)
            + outgoing(conn.role, PING, b"!")
            + outgoing(conn.role, CONT, b"b", fin=False)
            + outgoing(conn.role, CONT, b"c")
        )
        # The message is finished: a whole message may follow.
        assert conn.send_text("next") == outgoing(conn.role, TEXT, b"next")

    def test_single_frame_via_send_fragment(self, conn: Connection) -> None:
        assert conn.send_fragment("é", first=True, fin=True, text=True) == outgoing(
            conn.role, TEXT, "é".encode()
        )
        assert conn.send_fragment(b"x", first=True, fin=True) == outgoing(conn.role, BINARY, b"x")

    def test_fragmentation_misuse_is_refused(self, conn: Connection) -> None:
        # RFC 6455 §5.4: messages may not interleave; a continuation needs a message.
        with pytest.raises(InvalidState, match="no message"):
            conn.send_fragment(b"x", first=False, fin=True)
        conn.send_fragment(b"a", first=True, fin=False)
        for send in (
            lambda: conn.send_text("x"),
            lambda: conn.send_binary(b"x"),
            lambda: conn.send_fragment(b"x", first=True, fin=True),
        ):
            with pytest.raises(InvalidState, match="fragmented message"):
                send()
        conn.send_fragment(b"b", first=False, fin=True)
        assert conn.send_binary(b"ok") == outgoing(conn.role, BINARY, b"ok")

    def test_close_may_interrupt_our_fragmented_message(self, conn: Connection) -> None:
        conn.send_fragment(b"a", first=True, fin=False)
        assert conn.send_close(1001) == close_frame(conn.role, 1001)
        with pytest.raises(InvalidState, match="LOCAL_CLOSING"):
            conn.send_fragment(b"b", first=False, fin=True)


# -- extensions ----------------------------------------------------------------------------------


class Reverse(Extension):
    """A test codec on RSV1: each frame's payload reversed; records decode calls."""

    name = "x-reverse"
    uses_rsv1 = True

    def __init__(self, inflate: int = 1, error: RemoteError | None = None) -> None:
        self.inflate = inflate
        self.error = error
        self.calls: list[tuple[bytes, bool, bool, int]] = []

    def encode(
        self, payload: bytes | bytearray | memoryview, compress: bool = True
    ) -> tuple[bytes, bool]:
        if not compress:
            return bytes(payload), False
        return bytes(payload)[::-1], True

    def decode(
        self, payload: bytes | bytearray | memoryview, rsv1: bool, fin: bool, max_length: int
    ) -> bytes:
        self.calls.append((bytes(payload), rsv1, fin, max_length))
        if self.error is not None:
            raise self.error
        return bytes(payload)[::-1] * self.inflate


class NoRsv(Reverse):
    uses_rsv1 = False


class TestExtensionHooks:
    """RFC 6455 §9 and RFC 7692 §6: an extension owns RSV1 and transforms data messages."""

    def test_rsv1_message_is_decoded(self, conn: Connection) -> None:
        ext = Reverse()
        conn = Connection(conn.role, extensions=[ext], max_message_size=100)
        assert feed(conn, incoming(conn, TEXT, b"olleh", rsv=0x40)) == [("text", "hello")]
        assert ext.calls == [(b"olleh", True, True, 100)]

    def test_uncompressed_message_bypasses_the_codec(self, conn: Connection) -> None:
        ext = Reverse()
        conn = Connection(conn.role, extensions=[ext])
        assert feed(conn, incoming(conn, BINARY, b"abc")) == [("binary", b"abc")]
        assert ext.calls == []

    def test_fragmented_compressed_message(self, conn: Connection) -> None:
        ext = Reverse()
        conn = Connection(conn.role, extensions=[ext], max_message_size=100)
        data = incoming(conn, BINARY, b"ba", fin=False, rsv=0x40) + incoming(conn, CONT, b"dc")
        assert feed(conn, data) == [("binary", b"abcd")]
        assert ext.calls == [(b"ba", True, False, 100), (b"dc", True, True, 98)]

    def test_rsv1_on_a_continuation_fails(self, conn: Connection) -> None:
        conn = Connection(conn.role, extensions=[Reverse()])
        data = incoming(conn, BINARY, b"a", fin=False, rsv=0x40) + incoming(
            conn, CONT, b"b", rsv=0x40
        )
        assert_failed(conn, conn.receive_data(data), 1002)

    def test_rsv1_without_an_rsv1_extension_fails(self, conn: Connection) -> None:
        conn = Connection(conn.role, extensions=[NoRsv()])
        assert_failed(conn, conn.receive_data(incoming(conn, TEXT, b"a", rsv=0x40)), 1002)

    def test_decoded_size_is_limited(self, conn: Connection) -> None:
        conn = Connection(conn.role, extensions=[Reverse(inflate=50)], max_message_size=100)
        events = conn.receive_data(incoming(conn, BINARY, b"abc", rsv=0x40))
        assert_failed(conn, events, 1009)

    def test_codec_errors_fail_the_connection(self, conn: Connection) -> None:
        ext = Reverse(error=ProtocolError("corrupt stream"))
        conn = Connection(conn.role, extensions=[ext])
        assert_failed(conn, conn.receive_data(incoming(conn, BINARY, b"x", rsv=0x40)), 1002)
        assert conn.close_reason == "corrupt stream"

    def test_sending_through_the_codec(self, conn: Connection) -> None:
        conn = Connection(conn.role, extensions=[Reverse()])
        assert conn.send_text("abc") == outgoing(conn.role, TEXT, b"cba", rsv=0x40)
        assert conn.send_binary(b"abc", compress=False) == outgoing(conn.role, BINARY, b"abc")
        # Fragments are sent uncompressed.
        assert conn.send_fragment(b"ab", first=True, fin=True) == outgoing(conn.role, BINARY, b"ab")

    def test_one_extension_at_most(self) -> None:
        with pytest.raises(ValueError):
            Connection(Role.SERVER, extensions=[Reverse(), Reverse()])
        conn = Connection(Role.SERVER, extensions=[Reverse()])
        conn.set_extensions([])
        assert_failed(conn, conn.receive_data(incoming(conn, TEXT, b"a", rsv=0x40)), 1002)


# -- property tests ------------------------------------------------------------------------------


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        yield data[a:b]


messages_strategy = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=6
)


class TestProperties:
    """RFC 6455 §5.4 and §7.1.7: random fragmentations reassemble; garbage never raises."""

    @given(messages_strategy, st.sampled_from(ROLES), st.data())
    @settings(max_examples=200, deadline=None)
    def test_random_fragmentation_reassembles(
        self, messages: list[str | bytes], role: Role, data: st.DataObject
    ) -> None:
        conn = Connection(role)
        wire = b""
        expected: list[tuple[object, ...]] = []
        pongs = b""
        for message in messages:
            payload = message.encode() if isinstance(message, str) else message
            # Byte positions, so text is split inside multi-byte characters too.
            cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=6)))
            pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
            for i, piece in enumerate(pieces):
                opcode = (TEXT if isinstance(message, str) else BINARY) if i == 0 else CONT
                fin = i == len(pieces) - 1
                wire += incoming(conn, opcode, piece, fin=fin)
                if fin:
                    expected.append(
                        ("text", message) if isinstance(message, str) else ("binary", message)
                    )
                if data.draw(st.booleans()):
                    ping = data.draw(st.binary(max_size=125))
                    wire += incoming(conn, PING, ping)
                    expected.append(("ping", ping))
                    pongs += outgoing(role, PONG, ping)
        got: list[tuple[object, ...]] = []
        for chunk in chunks(wire, data.draw(st.lists(st.integers(0, len(wire)), max_size=30))):
            got += feed(conn, chunk)
        assert got == expected
        assert conn.data_to_send() == pongs
        assert conn.state is State.OPEN and conn.parser.buffered == 0

    @given(
        st.binary(max_size=400),
        st.sampled_from(ROLES),
        st.lists(st.integers(0, 400), max_size=30),
        st.sampled_from([8, 200, DEFAULT_MAX_MESSAGE_SIZE]),
    )
    @settings(max_examples=400, deadline=None)
    def test_random_bytes_never_raise(
        self, junk: bytes, role: Role, cuts: list[int], limit: int
    ) -> None:
        check_stream(role, junk, cuts, limit)

    @given(
        messages_strategy,
        st.sampled_from(ROLES),
        st.lists(
            st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)),
            min_size=1,
            max_size=5,
        ),
        st.lists(st.integers(0, 3000), max_size=30),
        st.sampled_from([8, 200, DEFAULT_MAX_MESSAGE_SIZE]),
        st.booleans(),
    )
    @settings(max_examples=400, deadline=None)
    def test_mutated_valid_streams_never_raise(
        self,
        messages: list[str | bytes],
        role: Role,
        mutations: list[tuple[int, int, int]],
        cuts: list[int],
        limit: int,
        closing: bool,
    ) -> None:
        probe = Connection(role)
        wire = bytearray()
        for i, message in enumerate(messages):
            if isinstance(message, str):
                payload = message.encode()
                wire += incoming(probe, TEXT, payload[:3], fin=False) + incoming(
                    probe, CONT, payload[3:]
                )
            else:
                wire += incoming(probe, BINARY, message)
            wire += incoming(probe, PING, bytes([i]))
        wire += incoming(probe, CLOSE, b"\x03\xe8")
        for pos, value, kind in mutations:
            pos %= len(wire) + 1
            if kind == 0 and pos < len(wire):
                wire[pos] = value  # replace
            elif kind == 1:
                wire[pos:pos] = bytes((value,))  # insert
            else:
                del wire[pos : pos + 1 + value % 3]  # delete
        check_stream(role, bytes(wire), cuts, limit, closing=closing)


def check_stream(
    role: Role, stream: bytes, cuts: list[int], limit: int, closing: bool = False
) -> None:
    """Feed ``stream`` whole and in chunks: nothing raises, and both runs agree."""
    results: list[tuple[object, ...]] = []
    for parts in (
        [stream],
        list(chunks(stream, cuts)),
        [stream[i : i + 1] for i in range(len(stream))],
    ):
        conn = Connection(role, max_message_size=limit)
        if closing:
            conn.send_close(1000)
        got: list[tuple[object, ...]] = []
        for part in parts:
            events = conn.receive_data(part)
            got += [summary(e) for e in events]
            if events and isinstance(events[-1], Failed):
                assert conn.state is State.CLOSED and conn.should_close_transport
        failures = [i for i, e in enumerate(got) if e[0] == "failed"]
        closes = [i for i, e in enumerate(got) if e[0] == "close"]
        # At most one terminal event, and nothing after it.
        assert len(failures) + len(closes) <= 1
        if failures or closes:
            assert (failures or closes)[0] == len(got) - 1
            assert conn.state in (State.CLOSED, State.REMOTE_CLOSING)
        for e in got:
            if e[0] == "failed":
                assert e[1] in (1002, 1007, 1009)
            elif e[0] == "text":
                assert isinstance(e[1], str)
        results.append((got, conn.data_to_send(), conn.state, conn.close_code))
    # However the stream was split: the same events, the same bytes out, the same end.
    assert results[1] == results[0]
    assert results[2] == results[0]


def test_random_seeds_smoke() -> None:
    """RFC 6455 §5.4: a fixed-seed soak across roles, with random splits of random messages."""
    rng = random.Random(1234)
    for _ in range(200):
        role = rng.choice(ROLES)
        conn = Connection(role, max_message_size=rng.choice([50, 1000]))
        wire = b""
        for _ in range(rng.randint(1, 5)):
            n = rng.randint(0, 60)
            wire += incoming(conn, BINARY, bytes(rng.getrandbits(8) for _ in range(n)), fin=False)
            wire += incoming(conn, CONT, b"")
        cuts = [rng.randint(0, len(wire)) for _ in range(5)]
        check_stream(role, wire, cuts, conn.max_message_size)
