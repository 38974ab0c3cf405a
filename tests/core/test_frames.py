"""Bytes-level tests of ``wskit.core.frames``: parsing, encoding, close payloads (RFC 6455 §5)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import frames as frames_module
from wskit.core.errors import MessageTooBig, PayloadNotUTF8, ProtocolError, RemoteError
from wskit.core.frames import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    Frame,
    FrameParser,
    Opcode,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    valid_close_code_on_wire,
)

# Every test runs against the pure-Python frame functions and their C twins (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_impl")

KEY = bytes.fromhex("37fa213d")  # the masking key of the RFC 6455 §5.7 examples
BIG = 1 << 62

# -- a reference encoder written from the RFC, independent of the code under test ---------------


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
    length_bits: int | None = None,
) -> bytes:
    """RFC 6455 §5.2 by hand; ``length``/``length_bits`` forge the header for negative tests."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if key is not None else 0
    bits = length_bits or (7 if n < 126 else 16 if n < 65536 else 64)
    if bits == 7:
        head = bytes((b0, m | n))
    elif bits == 16:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + xor(payload, key)


def server_parser(max_size: int = BIG, allowed_rsv: int = 0) -> FrameParser:
    """A parser reading a client's frames (which must be masked)."""
    return FrameParser(expect_mask=True, max_size=max_size, allowed_rsv=allowed_rsv)


def client_parser(max_size: int = BIG, allowed_rsv: int = 0) -> FrameParser:
    """A parser reading a server's frames (which must not be masked)."""
    return FrameParser(expect_mask=False, max_size=max_size, allowed_rsv=allowed_rsv)


def parse_one(parser: FrameParser, data: bytes) -> Frame:
    got = parser.feed(data)
    assert len(got) == 1, got
    assert parser.buffered == 0
    return got[0]


@pytest.fixture
def fixed_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Make encode_frame mask with the RFC's example key, so its output can be compared."""
    monkeypatch.setattr(frames_module, "generate_mask", lambda: KEY)
    return KEY


# -- RFC 6455 §5.7 ---------------------------------------------------------------------------


class TestRFCExamples:
    """RFC 6455 §5.7: the example frames, byte for byte, both ways."""

    def test_unmasked_text(self) -> None:
        wire = bytes.fromhex("810548656c6c6f")
        assert encode_frame(Opcode.TEXT, b"Hello") == wire
        frame = parse_one(client_parser(), wire)
        assert frame == Frame(Opcode.TEXT, b"Hello")
        assert frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3)

    def test_masked_text(self, fixed_key: bytes) -> None:
        wire = bytes.fromhex("818537fa213d7f9f4d5158")
        assert encode_frame(Opcode.TEXT, b"Hello", mask=True) == wire
        assert parse_one(server_parser(), wire) == Frame(Opcode.TEXT, b"Hello")

    def test_fragmented_text(self) -> None:
        first, second = bytes.fromhex("010348656c"), bytes.fromhex("80026c6f")
        assert encode_frame(Opcode.TEXT, b"Hel", fin=False) == first
        assert encode_frame(Opcode.CONT, b"lo") == second
        got = client_parser().feed(first + second)
        assert got == [Frame(Opcode.TEXT, b"Hel", fin=False), Frame(Opcode.CONT, b"lo")]
        assert not got[0].fin and got[1].fin

    def test_unmasked_ping(self) -> None:
        wire = bytes.fromhex("890548656c6c6f")
        assert encode_frame(Opcode.PING, b"Hello") == wire
        assert parse_one(client_parser(), wire) == Frame(Opcode.PING, b"Hello")

    def test_masked_pong(self, fixed_key: bytes) -> None:
        wire = bytes.fromhex("8a8537fa213d7f9f4d5158")
        assert encode_frame(Opcode.PONG, b"Hello", mask=True) == wire
        assert parse_one(server_parser(), wire) == Frame(Opcode.PONG, b"Hello")

    def test_256_bytes_binary(self) -> None:
        payload = bytes(range(256))
        wire = encode_frame(Opcode.BINARY, payload)
        assert wire[:4] == bytes.fromhex("827e0100")
        assert wire[4:] == payload
        assert parse_one(client_parser(), wire) == Frame(Opcode.BINARY, payload)

    def test_64_kib_binary(self) -> None:
        payload = bytes(range(256)) * 256
        wire = encode_frame(Opcode.BINARY, payload)
        assert wire[:10] == bytes.fromhex("827f0000000000010000")
        assert wire[10:] == payload
        assert parse_one(client_parser(), wire) == Frame(Opcode.BINARY, payload)


class TestOpcodes:
    """RFC 6455 §5.2 and §11.8: the six defined opcodes; every reserved one fails (1002)."""

    @pytest.mark.parametrize("opcode", list(Opcode))
    @pytest.mark.parametrize("masked", [False, True])
    def test_every_opcode_round_trips(self, opcode: Opcode, masked: bool) -> None:
        wire = encode_frame(opcode, b"abc", mask=masked)
        assert wire[0] == 0x80 | opcode.value
        assert wire == raw_frame(opcode, b"abc", key=wire[2:6] if masked else None)
        parser = server_parser() if masked else client_parser()
        frame = parse_one(parser, wire)
        assert frame.opcode == opcode and bytes(frame.payload) == b"abc"

    def test_opcode_sets(self) -> None:
        assert {int(o) for o in DATA_OPCODES} == {0, 1, 2}
        assert {int(o) for o in CONTROL_OPCODES} == {8, 9, 10}

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    @pytest.mark.parametrize("fin", [True, False])
    def test_reserved_opcodes_fail(self, opcode: int, fin: bool) -> None:
        for parser, key in ((client_parser(), None), (server_parser(), KEY)):
            with pytest.raises(ProtocolError, match="opcode") as info:
                parser.feed(raw_frame(opcode, b"x", fin=fin, key=key))
            assert info.value.close_code == 1002

    def test_reserved_opcode_detected_from_the_first_byte_pair(self) -> None:
        # Nothing of the payload is needed to reject the frame.
        with pytest.raises(ProtocolError):
            client_parser().feed(bytes((0x83, 100)))


class TestPayloadLength:
    """RFC 6455 §5.2: 7-bit, 16-bit and 64-bit payload lengths, minimally encoded, top bit 0."""

    @pytest.mark.parametrize(
        ("n", "header"),
        [
            (0, "8200"),
            (1, "8201"),
            (125, "827d"),
            (126, "827e007e"),
            (127, "827e007f"),
            (65535, "827effff"),
            (65536, "827f0000000000010000"),
            (65537, "827f0000000000010001"),
        ],
    )
    def test_boundaries(self, n: int, header: str) -> None:
        payload = bytes(i % 251 for i in range(n))
        wire = encode_frame(Opcode.BINARY, payload)
        assert wire == bytes.fromhex(header) + payload
        assert parse_one(client_parser(), wire) == Frame(Opcode.BINARY, payload)

    @pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
    def test_boundaries_masked(self, n: int, fixed_key: bytes) -> None:
        payload = bytes(i % 253 for i in range(n))
        wire = encode_frame(Opcode.BINARY, payload, mask=True)
        assert wire == raw_frame(Opcode.BINARY, payload, key=KEY)
        assert wire[1] & 0x80
        assert parse_one(server_parser(), wire) == Frame(Opcode.BINARY, payload)

    @pytest.mark.parametrize("n", [0, 1, 125])
    def test_16_bit_length_below_126_fails(self, n: int) -> None:
        wire = raw_frame(Opcode.BINARY, b"x" * n, length_bits=16)
        with pytest.raises(ProtocolError, match="minimally"):
            client_parser().feed(wire)

    @pytest.mark.parametrize("n", [0, 125, 126, 65535])
    def test_64_bit_length_below_65536_fails(self, n: int) -> None:
        wire = raw_frame(Opcode.BINARY, b"x" * n, length_bits=64)
        with pytest.raises(ProtocolError, match="minimally"):
            client_parser().feed(wire)

    def test_minimal_16_and_64_bit_lengths_pass(self) -> None:
        assert (
            len(parse_one(client_parser(), raw_frame(2, b"x" * 126, length_bits=16)).payload) == 126
        )
        wire = raw_frame(2, b"x" * 65536, length_bits=64)
        assert len(parse_one(client_parser(), wire).payload) == 65536

    @pytest.mark.parametrize("length", [1 << 63, (1 << 63) | 65536, (1 << 64) - 1])
    def test_64_bit_top_bit_fails(self, length: int) -> None:
        # Only the 10 header bytes: the top bit is refused before any payload (and before the
        # size limit, which would give 1009 instead of 1002).
        header = bytes((0x82, 127)) + length.to_bytes(8, "big")
        with pytest.raises(ProtocolError, match="top bit") as info:
            client_parser(max_size=BIG).feed(header)
        assert info.value.close_code == 1002

    def test_largest_64_bit_length_is_refused_by_the_limit_not_the_top_bit(self) -> None:
        header = bytes((0x82, 127)) + ((1 << 63) - 1).to_bytes(8, "big")
        with pytest.raises(MessageTooBig):
            client_parser(max_size=1 << 20).feed(header)

    @pytest.mark.parametrize("bits", [16, 64])
    def test_extended_length_split_inside_the_header(self, bits: int) -> None:
        n = 300 if bits == 16 else 70000
        wire = raw_frame(Opcode.BINARY, b"z" * n)
        parser = client_parser()
        for i in range(1, 3 + bits // 8):  # every byte of the 4- or 10-byte header
            assert parser.feed(wire[i - 1 : i]) == []
            assert parser.buffered == i
        assert parser.feed(wire[2 + bits // 8 :]) == [Frame(Opcode.BINARY, b"z" * n)]
        assert parser.buffered == 0


class TestIncrementalParsing:
    """RFC 6455 §5.2: a frame is parsed the same however the byte stream is split."""

    STREAM_FRAMES = [
        (Opcode.TEXT, b"Hello", True),
        (Opcode.BINARY, b"", True),
        (Opcode.TEXT, "é€𝄞".encode(), False),
        (Opcode.PING, b"p" * 125, True),
        (Opcode.CONT, b"x" * 200, False),
        (Opcode.CONT, bytes(range(256)) * 300, True),
        (Opcode.PONG, b"", True),
        (Opcode.BINARY, b"b" * 126, True),
    ]

    def stream(self, masked: bool) -> tuple[bytes, list[Frame]]:
        wire = b"".join(
            raw_frame(op, p, fin=fin, key=bytes((i, 2 * i, 3, 255 - i)) if masked else None)
            for i, (op, p, fin) in enumerate(self.STREAM_FRAMES)
        )
        return wire, [Frame(op, p, fin=fin) for op, p, fin in self.STREAM_FRAMES]

    @pytest.mark.parametrize("masked", [False, True])
    def test_whole(self, masked: bool) -> None:
        wire, expected = self.stream(masked)
        parser = server_parser() if masked else client_parser()
        assert parser.feed(wire) == expected
        assert parser.buffered == 0

    @pytest.mark.parametrize("masked", [False, True])
    def test_byte_by_byte(self, masked: bool) -> None:
        wire, expected = self.stream(masked)
        parser = server_parser() if masked else client_parser()
        got: list[Frame] = []
        for i in range(len(wire)):
            got += parser.feed(wire[i : i + 1])
        assert got == expected
        assert parser.buffered == 0

    @pytest.mark.parametrize("seed", range(30))
    def test_random_splits(self, seed: int) -> None:
        rng = random.Random(seed)
        masked = seed % 2 == 1
        wire, expected = self.stream(masked)
        cuts = sorted(rng.sample(range(1, len(wire)), rng.randint(1, 40)))
        parser = server_parser() if masked else client_parser()
        got: list[Frame] = []
        for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            got += parser.feed(wire[a:b])
            assert parser.buffered == b - sum(
                len(raw_frame(f.opcode, bytes(f.payload), key=KEY if masked else None)) for f in got
            )
        assert got == expected

    def test_empty_feeds(self) -> None:
        parser = client_parser()
        assert parser.feed(b"") == []
        assert parser.feed(b"\x81") == []
        assert parser.feed(b"") == []
        assert parser.buffered == 1
        assert parser.feed(b"\x00") == [Frame(Opcode.TEXT, b"")]

    def test_bytes_after_a_close_frame_are_never_read(self) -> None:
        # RFC 6455 §5.5.1: nothing follows a Close frame; even garbage behind it is ignored.
        wire = raw_frame(Opcode.CLOSE, b"\x03\xe8") + raw_frame(Opcode.TEXT, b"late") + b"\xff"
        parser = client_parser()
        assert parser.feed(wire) == [Frame(Opcode.CLOSE, b"\x03\xe8")]
        assert parser.buffered == 0

    def test_frames_before_an_error_are_returned_and_the_error_kept(self) -> None:
        good = raw_frame(Opcode.TEXT, b"one") + raw_frame(Opcode.PING, b"two")
        parser = client_parser()
        got = parser.feed(good + raw_frame(0x3, b"bad") + raw_frame(Opcode.TEXT, b"never"))
        assert got == [Frame(Opcode.TEXT, b"one"), Frame(Opcode.PING, b"two")]
        assert isinstance(parser.error, ProtocolError)
        assert parser.buffered == 0
        with pytest.raises(ProtocolError) as info:
            parser.feed(raw_frame(Opcode.TEXT, b"more"))
        assert info.value is parser.error

    def test_an_error_in_the_first_frame_raises_at_once(self) -> None:
        parser = client_parser()
        with pytest.raises(ProtocolError):
            parser.feed(raw_frame(0x3, b"bad") + raw_frame(Opcode.TEXT, b"x"))
        assert parser.error is None

    def test_split_unmasked_payload_is_not_aliased_to_later_input(self) -> None:
        parser = client_parser()
        buf = bytearray(raw_frame(Opcode.BINARY, b"abcdef"))
        frame = parse_one(parser, bytes(buf))
        buf[2:] = b"XXXXXX"
        assert bytes(frame.payload) == b"abcdef"


class TestReservedBits:
    """RFC 6455 §5.2: RSV1-3 MUST be 0 unless a negotiated extension gives them a meaning."""

    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PING])
    def test_rsv_without_extension_fails(self, rsv: int, opcode: Opcode) -> None:
        with pytest.raises(ProtocolError, match="reserved") as info:
            client_parser().feed(raw_frame(opcode, b"x", rsv=rsv))
        assert info.value.close_code == 1002

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.CONT])
    def test_rsv1_allowed_by_extension(self, opcode: Opcode) -> None:
        frame = parse_one(client_parser(allowed_rsv=0x40), raw_frame(opcode, b"x", rsv=0x40))
        assert (frame.rsv1, frame.rsv2, frame.rsv3) == (True, False, False)

    @pytest.mark.parametrize("rsv", [0x20, 0x10])
    def test_other_rsv_still_fail_when_only_rsv1_is_allowed(self, rsv: int) -> None:
        with pytest.raises(ProtocolError):
            client_parser(allowed_rsv=0x40).feed(raw_frame(Opcode.TEXT, b"x", rsv=rsv))

    def test_all_rsv_bits_reported_when_allowed(self) -> None:
        for rsv, flags in (
            (0x20, (False, True, False)),
            (0x10, (False, False, True)),
            (0x70, (True, True, True)),
        ):
            frame = parse_one(client_parser(allowed_rsv=0x70), raw_frame(2, b"x", rsv=rsv))
            assert (frame.rsv1, frame.rsv2, frame.rsv3) == flags

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_rsv1_on_control_frame_fails_even_with_extension(self, opcode: int) -> None:
        # RFC 7692 §6.1: the "Per-Message Compressed" bit is for data frames only.
        with pytest.raises(ProtocolError, match="control"):
            client_parser(allowed_rsv=0x40).feed(raw_frame(opcode, b"", rsv=0x40))

    def test_encode_sets_rsv_bits(self) -> None:
        assert encode_frame(Opcode.TEXT, b"", rsv1=True)[0] == 0xC1
        assert encode_frame(Opcode.TEXT, b"", rsv2=True)[0] == 0xA1
        assert encode_frame(Opcode.TEXT, b"", rsv3=True)[0] == 0x91
        assert encode_frame(Opcode.TEXT, b"", fin=False, rsv1=True, rsv2=True, rsv3=True)[0] == 0x71


class TestControlFrames:
    """RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented."""

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_125_bytes_pass(self, opcode: int) -> None:
        payload = b"\x03\xe8" + b"r" * 123 if opcode == Opcode.CLOSE else b"p" * 125
        assert parse_one(client_parser(), raw_frame(opcode, payload)).payload == payload

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    @pytest.mark.parametrize("n", [126, 127, 65535, 65536])
    def test_longer_than_125_fails_from_the_header(self, opcode: int, n: int) -> None:
        header = raw_frame(opcode, b"", length=n)  # header only, no payload
        with pytest.raises(ProtocolError, match="125") as info:
            client_parser().feed(header)
        assert info.value.close_code == 1002

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_fragmented_control_frame_fails(self, opcode: int) -> None:
        with pytest.raises(ProtocolError, match="fragmented"):
            client_parser().feed(raw_frame(opcode, b"", fin=False))

    def test_control_frames_are_not_bound_by_the_message_limit(self) -> None:
        # The limit is on data; a 100-byte ping under a 10-byte limit is still a valid ping.
        parser = client_parser(max_size=10)
        assert parse_one(parser, raw_frame(Opcode.PING, b"p" * 100)).payload == b"p" * 100
        parser.max_size = 0
        assert parse_one(parser, raw_frame(Opcode.PONG, b"q" * 125)).payload == b"q" * 125


class TestMaskingRules:
    """RFC 6455 §5.1 and §5.3: clients mask every frame, servers never do; fresh keys."""

    def test_unmasked_frame_to_server_fails(self) -> None:
        with pytest.raises(ProtocolError, match="unmasked") as info:
            server_parser().feed(raw_frame(Opcode.TEXT, b"hi"))
        assert info.value.close_code == 1002

    def test_masked_frame_to_client_fails(self) -> None:
        with pytest.raises(ProtocolError, match="masked") as info:
            client_parser().feed(raw_frame(Opcode.TEXT, b"hi", key=KEY))
        assert info.value.close_code == 1002

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_rule_applies_to_control_frames(self, opcode: int) -> None:
        with pytest.raises(ProtocolError):
            server_parser().feed(raw_frame(opcode, b""))
        with pytest.raises(ProtocolError):
            client_parser().feed(raw_frame(opcode, b"", key=KEY))

    def test_each_frame_gets_a_fresh_key_from_generate_mask(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        keys = [bytes((i, i, i, i)) for i in range(1, 6)]
        monkeypatch.setattr(frames_module, "generate_mask", iter(keys).__next__)
        for key in keys:
            wire = encode_frame(Opcode.BINARY, b"payload", mask=True)
            assert wire[2:6] == key
            assert xor(wire[6:], key) == b"payload"

    def test_real_keys_vary(self) -> None:
        keys = {encode_frame(Opcode.TEXT, b"x", mask=True)[2:6] for _ in range(16)}
        assert len(keys) > 1

    def test_masked_memoryview_and_bytearray_payloads(self, fixed_key: bytes) -> None:
        for payload in (bytearray(b"abcdef"), memoryview(b"abcdef")):
            assert encode_frame(Opcode.BINARY, payload, mask=True) == raw_frame(
                Opcode.BINARY, b"abcdef", key=KEY
            )
            assert encode_frame(Opcode.BINARY, payload) == raw_frame(Opcode.BINARY, b"abcdef")


class TestSizeLimit:
    """RFC 6455 §10.4: a frame over the limit is refused from its declared length (1009)."""

    @pytest.mark.parametrize(("limit", "n"), [(10, 11), (125, 126), (1000, 65535), (65535, 65536)])
    @pytest.mark.parametrize("masked", [False, True])
    def test_header_alone_triggers_the_error(self, limit: int, n: int, masked: bool) -> None:
        header = raw_frame(Opcode.BINARY, b"", length=n)  # no mask key, no payload
        if masked:
            header = bytes((header[0], header[1] | 0x80)) + header[2:]
        parser = (server_parser if masked else client_parser)(max_size=limit)
        with pytest.raises(MessageTooBig) as info:
            parser.feed(header)
        assert info.value.close_code == 1009

    def test_header_fed_byte_by_byte_fails_at_its_last_length_byte(self) -> None:
        header = raw_frame(Opcode.TEXT, b"", length=70000)
        parser = client_parser(max_size=65536)
        for i in range(len(header) - 1):
            assert parser.feed(header[i : i + 1]) == []
        with pytest.raises(MessageTooBig):
            parser.feed(header[-1:])

    @pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536])
    def test_exactly_the_limit_passes(self, n: int) -> None:
        wire = raw_frame(Opcode.BINARY, b"a" * n, key=KEY)
        assert len(parse_one(server_parser(max_size=n), wire).payload) == n

    def test_limit_applies_to_continuations(self) -> None:
        with pytest.raises(MessageTooBig):
            client_parser(max_size=5).feed(raw_frame(Opcode.CONT, b"", length=6))

    @pytest.mark.parametrize("split", [False, True])
    def test_fragments_add_up(self, split: bool) -> None:
        parser = client_parser(max_size=10)
        first = raw_frame(Opcode.TEXT, b"a" * 6, fin=False) + raw_frame(Opcode.PING, b"p" * 50)
        second = raw_frame(Opcode.CONT, b"", fin=False, length=5)  # header only: 6 + 5 > 10
        if split:
            assert len(parser.feed(first)) == 2
            with pytest.raises(MessageTooBig, match="4 bytes left"):
                parser.feed(second)
        else:
            assert len(parser.feed(first + second)) == 2
            assert isinstance(parser.error, MessageTooBig)

    def test_fragments_up_to_the_limit_then_a_new_message_has_it_all(self) -> None:
        parser = client_parser(max_size=10)
        wire = (
            raw_frame(Opcode.BINARY, b"a" * 6, fin=False)
            + raw_frame(Opcode.CONT, b"b" * 4, fin=False)
            + raw_frame(Opcode.CONT, b"")
            + raw_frame(Opcode.TEXT, b"c" * 10)
            + raw_frame(Opcode.BINARY, b"d" * 9, fin=False)
        )
        for i in range(len(wire)):  # byte by byte: the count does not depend on the split
            parser.feed(wire[i : i + 1])
        with pytest.raises(MessageTooBig):
            parser.feed(raw_frame(Opcode.CONT, b"", length=2))

    def test_compressed_fragments_are_bounded_one_by_one(self) -> None:
        # RFC 7692 §6: with RSV1 the wire size says nothing of the decoded size, which the
        # connection checks; here each frame alone must fit.
        parser = client_parser(max_size=10, allowed_rsv=0x40)
        wire = raw_frame(Opcode.BINARY, b"a" * 10, fin=False, rsv=0x40) + raw_frame(
            Opcode.CONT, b"b" * 10
        )
        assert len(parser.feed(wire)) == 2
        with pytest.raises(MessageTooBig):
            parser.feed(raw_frame(Opcode.BINARY, b"", rsv=0x40, length=11))

    def test_a_changed_limit_applies_from_the_next_message(self) -> None:
        parser = client_parser(max_size=10)
        parser.max_size = 3
        with pytest.raises(MessageTooBig):
            parser.feed(raw_frame(Opcode.TEXT, b"abcd"))


ALLOWED_CODES = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))


class TestClosePayload:
    """RFC 6455 §5.5.1, §7.1.5, §7.4: the status code and UTF-8 reason of a Close frame."""

    def test_empty_means_1005(self) -> None:
        assert parse_close_payload(b"") == (1005, "")

    def test_one_byte_fails(self) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_close_payload(b"\x03")
        assert info.value.close_code == 1002

    def test_every_code_from_0_to_5000(self) -> None:
        for code in range(5001):
            wire = code.to_bytes(2, "big")
            allowed = code in ALLOWED_CODES
            assert valid_close_code_on_wire(code) is allowed, code
            if allowed:
                assert parse_close_payload(wire) == (code, "")
                assert parse_close_payload(wire + b"why") == (code, "why")
                assert encode_close_payload(code) == wire
                assert encode_close_payload(code, "why") == wire + b"why"
            else:
                with pytest.raises(ProtocolError, match="close code"):
                    parse_close_payload(wire)
                with pytest.raises(ValueError, match="close code"):
                    encode_close_payload(code)

    @pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
    def test_named_forbidden_codes(self, code: int) -> None:
        assert not valid_close_code_on_wire(code)
        with pytest.raises(ProtocolError):
            parse_close_payload(code.to_bytes(2, "big"))

    def test_utf8_reason(self) -> None:
        assert parse_close_payload(b"\x03\xe8" + "é€𝄞".encode()) == (1000, "é€𝄞")
        assert parse_close_payload(memoryview(b"\x0f\xa0ok")) == (4000, "ok")
        assert parse_close_payload(bytearray(b"\x03\xe9")) == (1001, "")

    @pytest.mark.parametrize(
        "bad", [b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"]
    )
    def test_invalid_utf8_reason(self, bad: bytes) -> None:
        with pytest.raises(PayloadNotUTF8) as info:
            parse_close_payload(b"\x03\xe8" + bad)
        assert info.value.close_code == 1007

    def test_encode_without_code(self) -> None:
        assert encode_close_payload(None) == b""
        with pytest.raises(ValueError, match="code"):
            encode_close_payload(None, "reason")

    def test_encode_reason_length_counts_utf8_bytes(self) -> None:
        assert len(encode_close_payload(1000, "a" * 123)) == 125
        with pytest.raises(ValueError, match="123"):
            encode_close_payload(1000, "a" * 124)
        assert encode_close_payload(1000, "é" * 61 + "a") == b"\x03\xe8" + ("é" * 61 + "a").encode()
        with pytest.raises(ValueError):
            encode_close_payload(1000, "é" * 62)  # 62 characters, 124 bytes

    def test_encode_refuses_unencodable_reason(self) -> None:
        with pytest.raises(ValueError):
            encode_close_payload(1000, "\ud800")


class TestFrameObject:
    """RFC 6455 §5.2: the parsed frame value (fields, equality, repr)."""

    def test_equality_compares_every_field_and_payload_bytes(self) -> None:
        base = Frame(Opcode.TEXT, b"x")
        assert base == Frame(Opcode.TEXT, memoryview(b"x"))
        assert base != Frame(Opcode.BINARY, b"x")
        assert base != Frame(Opcode.TEXT, b"y")
        assert base != Frame(Opcode.TEXT, b"x", fin=False)
        assert base != Frame(Opcode.TEXT, b"x", rsv1=True)
        assert base != Frame(Opcode.TEXT, b"x", rsv2=True)
        assert base != Frame(Opcode.TEXT, b"x", rsv3=True)
        assert base != "x"
        assert base.__eq__(object()) is NotImplemented

    def test_unhashable_and_repr(self) -> None:
        frame = Frame(Opcode.BINARY, b"abc", fin=False, rsv1=True, rsv3=True)
        with pytest.raises(TypeError):
            hash(frame)
        assert repr(frame) == "Frame(opcode=<Opcode.BINARY: 2>, len=3, fin=False, rsv=(101))"


# -- property tests ----------------------------------------------------------------------------


@st.composite
def frames_strategy(draw: st.DrawFn) -> tuple[int, bytes, bool, int, bool]:
    opcode = draw(st.sampled_from(sorted(int(o) for o in Opcode)))
    control = opcode >= 8
    payload = draw(st.binary(max_size=125 if control else 70000))
    fin = True if control else draw(st.booleans())
    rsv = 0 if control else draw(st.sampled_from([0, 0x10, 0x20, 0x40, 0x70]))
    mask = draw(st.booleans())
    return opcode, payload, fin, rsv, mask


class TestProperties:
    """RFC 6455 §5.2: encode then parse is the identity, however the stream is split."""

    @given(frames_strategy())
    @settings(max_examples=300, deadline=None)
    def test_encode_parse_identity(self, spec: tuple[int, bytes, bool, int, bool]) -> None:
        opcode, payload, fin, rsv, mask = spec
        wire = encode_frame(
            opcode,
            payload,
            fin=fin,
            rsv1=bool(rsv & 0x40),
            rsv2=bool(rsv & 0x20),
            rsv3=bool(rsv & 0x10),
            mask=mask,
        )
        n = len(payload)
        head = 2 + (0 if n < 126 else 2 if n < 65536 else 8)
        key = wire[head : head + 4] if mask else None
        assert wire == raw_frame(opcode, payload, fin=fin, rsv=rsv, key=key)
        parser = FrameParser(expect_mask=mask, max_size=len(payload), allowed_rsv=0x70)
        frame = parse_one(parser, wire)
        assert frame == Frame(
            opcode, payload, fin, bool(rsv & 0x40), bool(rsv & 0x20), bool(rsv & 0x10)
        )

    @given(st.lists(frames_strategy(), min_size=1, max_size=8), st.data())
    @settings(max_examples=150, deadline=None)
    def test_stream_in_random_chunks(
        self, specs: list[tuple[int, bytes, bool, int, bool]], data: st.DataObject
    ) -> None:
        mask = specs[0][4]
        # No Close frame in the middle: nothing behind one is read.
        specs = [s for s in specs if s[0] != Opcode.CLOSE] or specs[:1]
        wire = b"".join(
            encode_frame(
                op,
                p,
                fin=fin,
                rsv1=bool(r & 0x40),
                rsv2=bool(r & 0x20),
                rsv3=bool(r & 0x10),
                mask=mask,
            )
            for op, p, fin, r, _ in specs
        )
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=20)))
        parser = FrameParser(expect_mask=mask, max_size=BIG, allowed_rsv=0x70)
        got: list[Frame] = []
        for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            got += parser.feed(wire[a:b])
        assert got == [
            Frame(op, p, fin, bool(r & 0x40), bool(r & 0x20), bool(r & 0x10))
            for op, p, fin, r, _ in specs
        ]
        assert parser.buffered == 0

    @given(st.binary(max_size=300), st.booleans(), st.integers(0, 200))
    @settings(max_examples=300, deadline=None)
    def test_random_bytes_raise_only_remote_errors(
        self, junk: bytes, expect_mask: bool, max_size: int
    ) -> None:
        parser = FrameParser(expect_mask=expect_mask, max_size=max_size)
        try:
            for i in range(0, len(junk), 7):
                for frame in parser.feed(junk[i : i + 7]):
                    assert frame.opcode in {int(o) for o in Opcode}
                if parser.error is not None:
                    break
        except RemoteError as exc:
            assert exc.close_code in (1002, 1009)
