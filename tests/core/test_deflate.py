"""Tests of permessage-deflate (RFC 7692): the codec bytes in, bytes out, and its negotiation."""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import random
import types
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import deflate
from wskit.core.deflate import (
    PerMessageDeflate,
    PerMessageDeflateFactory,
    deflate_memory_estimate,
)
from wskit.core.errors import (
    LocalError,
    MessageTooBig,
    NegotiationError,
    ProtocolError,
)

HELLO = bytes.fromhex("f2 48 cd c9 c9 07 00")
HELLO_AGAIN = bytes.fromhex("f2 00 11 00 00")
BIG = 1 << 30

Params = list[tuple[str, str | None]]


@pytest.fixture(autouse=True, params=["one call", "two calls"])
def last_frame_inflation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with a last frame inflated together with the appended 00 00 ff ff and
    inflated apart from it (as frames above _JOIN_MAX and views are): the same results."""
    if request.param == "two calls":
        monkeypatch.setattr(deflate, "_JOIN_MAX", -1)


@pytest.fixture(autouse=True, params=["zlib", "zlib-ng"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with each inflater: stdlib zlib, and zlib-ng (the `zlib-ng` extra,
    part of the `test` extra: in CI its absence is a failure). Same results, same bounds."""
    if request.param == "zlib-ng":
        if os.environ.get("CI") == "true":
            __import__("zlib_ng")
        lib: Any = pytest.importorskip("zlib_ng.zlib_ng")
    else:
        lib = zlib
    monkeypatch.setattr(deflate, "_inflate", lib)


def codec(**overrides: Any) -> PerMessageDeflate:
    options: dict[str, Any] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
        "min_size": 0,
        # The exact bytes below are zlib's, always compressed: the other libraries and the
        # fallback to uncompressed messages have their own tests.
        "library": "zlib",
        "uncompressed_fallback": False,
    }
    options.update(overrides)
    return PerMessageDeflate(**options)


def decode_frames(ext: PerMessageDeflate, frames: list[bytes], max_length: int = BIG) -> bytes:
    """Decode a message frame by frame, giving each frame what is left of the allowance."""
    out = bytearray()
    for index, frame in enumerate(frames):
        piece = ext.decode(frame, True, index == len(frames) - 1, max_length - len(out))
        out += piece
    return bytes(out)


def raw_deflate(data: bytes, window_bits: int = 15) -> bytes:
    """Compress as an RFC 7692 sender does, independently of the code under test."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -window_bits, 9)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def strict_inflate(data: bytes, window_bits: int) -> bytes:
    """Inflate one output byte per call, so every distance is checked against the window.

    (Within one call zlib resolves back-references into the output of that same call
    without checking them against the window size.)
    """
    decompressor = zlib.decompressobj(wbits=-window_bits)
    out = bytearray()
    data += b"\x00\x00\xff\xff"
    while chunk := decompressor.decompress(data, 1):
        out += chunk
        data = decompressor.unconsumed_tail
    return bytes(out)


def far_repeats(period: int, count: int = 6, seed: int = 1) -> bytes:
    """Incompressible blocks repeated, so the only matches are ``period`` bytes back."""
    return random.Random(seed).randbytes(period) * count


class TestRfcExamples:
    """RFC 7692 §7.2.3: the examples of the RFC, byte for byte."""

    def test_hello_compresses_to_the_rfc_bytes(self) -> None:
        """§7.2.3.1: "Hello" in one compressed block."""
        assert codec().encode(b"Hello") == (HELLO, True)

    def test_hello_decodes(self) -> None:
        """§7.2.3.1: the unfragmented message."""
        assert codec().decode(HELLO, True, True, BIG) == b"Hello"

    def test_hello_decodes_fragmented(self) -> None:
        """§7.2.3.1: the same message in two frames, f2 48 cd and c9 c9 07 00."""
        assert decode_frames(codec(), [HELLO[:3], HELLO[3:]]) == b"Hello"

    def test_shared_window_encode(self) -> None:
        """§7.2.3.2: the second "Hello" refers back to the first."""
        ext = codec()
        assert ext.encode(b"Hello") == (HELLO, True)
        assert ext.encode(b"Hello") == (HELLO_AGAIN, True)

    def test_shared_window_decode(self) -> None:
        """§7.2.3.2: decoding the second message needs the first one's window."""
        ext = codec()
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"
        assert ext.decode(HELLO_AGAIN, True, True, BIG) == b"Hello"

    def test_block_with_no_compression(self) -> None:
        """§7.2.3.3: a stored block."""
        payload = bytes.fromhex("00 05 00 fa ff 48 65 6c 6c 6f 00")
        assert codec().decode(payload, True, True, BIG) == b"Hello"

    def test_block_with_bfinal(self) -> None:
        """§7.2.3.4: BFINAL set, followed by the remnant 0x00 of an empty stored block."""
        ext = codec()
        assert ext.decode(bytes.fromhex("f3 48 cd c9 c9 07 00 00"), True, True, BIG) == b"Hello"
        # The deflate stream has ended, so the next message starts a new one.
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"

    def test_block_with_bfinal_without_the_empty_block(self) -> None:
        """§7.2.3.4: a sender that omits the remnant byte is tolerated."""
        assert codec().decode(bytes.fromhex("f3 48 cd c9 c9 07 00"), True, True, BIG) == b"Hello"

    def test_block_with_bfinal_fragmented(self) -> None:
        """§7.2.3.4: the remnant byte may arrive in a later frame."""
        frames = [bytes.fromhex("f3 48 cd c9"), bytes.fromhex("c9 07 00"), b"", b"\x00"]
        assert decode_frames(codec(), frames) == b"Hello"

    @pytest.mark.parametrize(
        "frames",
        [
            [bytes.fromhex("f3 48 cd c9 c9 07 00") + HELLO],
            [bytes.fromhex("f3 48 cd c9 c9 07 00 00"), b"\x00"],
            [bytes.fromhex("f3 48 cd c9 c9 07 00 00 00"), b""],
            [bytes.fromhex("f3 48 cd c9 c9 07 00 01")],
        ],
    )
    def test_data_after_bfinal_is_an_error(self, frames: list[bytes]) -> None:
        """§7.2.3.4: nothing but the empty block may follow the final block; no silent loss."""
        ext = codec()
        with pytest.raises(ProtocolError, match="after the final block"):
            decode_frames(ext, frames)
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"

    @pytest.mark.parametrize("bfinal", [0, 1])
    def test_appended_tail_as_stored_content(self, bfinal: int) -> None:
        """§7.2.2: the appended 00 00 ff ff is compressed data like any other; here it is the
        content of a stored block whose header ends the payload."""
        ext = codec()
        payload = bytes([bfinal]) + bytes.fromhex("04 00 fb ff")
        assert ext.decode(payload, True, True, BIG) == b"\x00\x00\xff\xff"
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"

    def test_two_blocks_in_one_message(self) -> None:
        """§7.2.3.5: two deflate blocks, the first ended by a sync flush."""
        payload = bytes.fromhex("f2 48 05 00 00 00 ff ff ca c9 c9 07 00")
        assert codec().decode(payload, True, True, BIG) == b"Hello"

    def test_empty_message(self) -> None:
        """§7.2.3.6: an empty message compresses to a single 0x00 byte, and decodes back."""
        ext = codec()
        assert ext.encode(b"") == (b"\x00", True)
        assert ext.decode(b"\x00", True, True, 0) == b""


class TestContextTakeover:
    """RFC 7692 §7.1.1 and §7.2.2: keeping or resetting the window between messages."""

    def test_local_context_kept(self) -> None:
        ext = codec()
        first, _ = ext.encode(b"Hello")
        second, _ = ext.encode(b"Hello")
        assert first != second

    def test_local_context_reset(self) -> None:
        ext = codec(local_no_context_takeover=True)
        assert ext.encode(b"Hello") == (HELLO, True)
        assert ext.encode(b"Hello") == (HELLO, True)

    def test_remote_context_reset(self) -> None:
        """With no context takeover the window is empty, so a back-reference is invalid."""
        ext = codec(remote_no_context_takeover=True)
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"
        with pytest.raises(ProtocolError, match="invalid compressed data"):
            ext.decode(HELLO_AGAIN, True, True, BIG)

    def test_remote_context_kept_across_fragmented_messages(self) -> None:
        ext = codec()
        assert decode_frames(ext, [HELLO[:2], HELLO[2:]]) == b"Hello"
        assert decode_frames(ext, [HELLO_AGAIN[:1], b"", HELLO_AGAIN[1:]]) == b"Hello"

    def test_messages_round_trip_with_context(self) -> None:
        sender, receiver = codec(), codec()
        for index in range(20):
            message = b'{"event": "tick", "n": %d}' % index
            data, rsv1 = sender.encode(message)
            assert rsv1
            assert receiver.decode(data, True, True, BIG) == message


class TestWindowBits:
    """RFC 7692 §7.1.2: every window size from 8 to 15 bits, and its enforcement."""

    @pytest.mark.parametrize("bits", range(8, 16))
    @pytest.mark.parametrize("period", [100, 251, 300, 511, 1000, 5000, 40000])
    def test_round_trip(self, bits: int, period: int) -> None:
        sender = codec(local_max_window_bits=bits)
        receiver = codec(remote_max_window_bits=bits)
        message = far_repeats(period, count=3)
        for _ in range(2):
            data, _ = sender.encode(message)
            assert decode_frames(receiver, [data]) == message

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_sender_stays_within_its_window(self, bits: int) -> None:
        """RFC 7692 §7.1.2: the peer may decode with exactly the agreed window."""
        sender = codec(local_max_window_bits=bits)
        window = 1 << bits
        for period in (window - 7, window + 7, window * 3 // 2):
            message = far_repeats(period, count=2, seed=period)
            data, _ = sender.encode(message)
            assert strict_inflate(data, bits) == message

    @pytest.mark.parametrize("period", range(240, 520, 7))
    def test_window_8_is_decodable_by_a_256_byte_window(self, period: int) -> None:
        """zlib compresses with 512 bytes when asked for 256; its output must still fit."""
        message = far_repeats(period, seed=period)
        data, _ = codec(local_max_window_bits=8).encode(message)
        assert strict_inflate(data, 8) == message

    def test_strict_inflate_catches_a_larger_window(self) -> None:
        """The check above is meaningful: 10-bit output does not pass for 8 bits."""
        data = raw_deflate(far_repeats(300), window_bits=10)
        with pytest.raises(zlib.error, match="too far back"):
            strict_inflate(data, 8)

    def test_window_8_probe_passes_on_this_zlib(self) -> None:
        assert deflate._window_9_fits_in_8(6, 5)

    def test_window_8_probe_detects_far_distances(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A zlib whose 512-byte window reaches further back than 256 bytes is detected."""
        real = zlib.compressobj

        def wider(level: int, method: int, wbits: int, mem_level: int) -> Any:
            return real(level, method, -10, mem_level)

        monkeypatch.setattr(zlib, "compressobj", wider)
        assert not deflate._window_9_fits_in_8.__wrapped__(6, 5)

    def test_window_8_falls_back_to_run_lengths(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the distance guarantee, only distance-1 matches: decodable by any window."""
        monkeypatch.setattr(deflate, "_window_9_fits_in_8", lambda level, mem_level: False)
        message = far_repeats(300) + b"a" * 1000
        data, _ = codec(local_max_window_bits=8).encode(message)
        assert len(data) < len(message)
        assert strict_inflate(data, 8) == message

    def test_remote_window_is_enforced(self) -> None:
        """A peer that agreed to 9 bits and refers 1000 bytes back, into the previous
        message, is failed. (Within one call zlib also resolves references into the output
        it just produced, so only the window kept between calls is enforced.)"""
        block = far_repeats(1000, count=1)
        sender = codec(local_max_window_bits=15)
        receiver = codec(remote_max_window_bits=9)
        first, _ = sender.encode(block)
        second, _ = sender.encode(block)
        assert receiver.decode(first, True, True, BIG) == block
        with pytest.raises(ProtocolError, match="too far back"):
            receiver.decode(second, True, True, BIG)


class TestBypass:
    """RFC 7692 §6: compression is chosen per message; RSV1 clear means not compressed."""

    def test_compress_false(self) -> None:
        ext = codec()
        payload = b"x" * 1000
        data, rsv1 = ext.encode(payload, compress=False)
        assert data is payload
        assert not rsv1

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_below_min_size(self, kind: type) -> None:
        ext = codec(min_size=32)
        payload = kind(b"y" * 31)
        data, rsv1 = ext.encode(payload)
        assert (data, rsv1) == (b"y" * 31, False)
        assert type(data) is bytes

    def test_min_size_reached(self) -> None:
        data, rsv1 = codec(min_size=32).encode(memoryview(b"y" * 32))
        assert rsv1
        assert codec().decode(data, True, True, BIG) == b"y" * 32

    def test_bypass_leaves_the_context_untouched(self) -> None:
        ext = codec(min_size=4)
        assert ext.encode(b"Hello") == (HELLO, True)
        assert ext.encode(b"abc") == (b"abc", False)
        assert ext.encode(b"other", compress=False) == (b"other", False)
        assert ext.encode(bytearray(b"Hello")) == (HELLO_AGAIN, True)

    def test_uncompressed_message_is_returned_unchanged(self) -> None:
        ext = codec()
        payload = memoryview(b"plain")
        assert ext.decode(payload, False, True, 0) is payload
        # ...and does not disturb the window of compressed messages.
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"
        assert ext.decode(b"more", False, True, BIG) == b"more"
        assert ext.decode(HELLO_AGAIN, True, True, BIG) == b"Hello"


class _SpyDecompressor:
    """Wraps a zlib decompressor and records what each call was allowed and produced."""

    def __init__(self, real: Any, log: list[tuple[int, int]]) -> None:
        self._real = real
        self._log = log

    def decompress(self, data: Any, max_length: int = 0) -> bytes:
        out: bytes = self._real.decompress(data, max_length)
        self._log.append((max_length, len(out)))
        return out

    @property
    def eof(self) -> bool:
        return bool(self._real.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._real.unused_data)


@pytest.fixture
def inflate_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    log: list[tuple[int, int]] = []
    real = deflate._inflate.decompressobj
    spy = types.SimpleNamespace(
        decompressobj=lambda **kwargs: _SpyDecompressor(real(**kwargs), log))
    monkeypatch.setattr(deflate, "_inflate", spy)
    yield log


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """10 MiB of zeros, compressed to about 10 KiB."""
    data = raw_deflate(bytes(10 << 20))
    assert len(data) < 20 << 10
    return data


class TestLimits:
    """docs/architecture.md rule 6, RFC 6455 §10.4: inflating is bounded by the message limit."""

    LIMIT = 1 << 20

    def test_bomb_in_one_frame(self, bomb: bytes, inflate_log: list[tuple[int, int]]) -> None:
        with pytest.raises(MessageTooBig, match="inflates beyond the limit") as info:
            codec().decode(bomb, True, True, self.LIMIT)
        assert info.value.close_code == 1009
        assert inflate_log
        assert all(1 <= allowed <= self.LIMIT + 1 for allowed, _ in inflate_log)
        assert sum(produced for _, produced in inflate_log) <= self.LIMIT + 1

    def test_bomb_frame_by_frame(self, bomb: bytes, inflate_log: list[tuple[int, int]]) -> None:
        frames = [bomb[i : i + 1024] for i in range(0, len(bomb), 1024)]
        with pytest.raises(MessageTooBig):
            decode_frames(codec(), frames, self.LIMIT)
        assert sum(produced for _, produced in inflate_log) <= self.LIMIT + 1

    def test_exactly_at_the_limit(self) -> None:
        message = bytes(5000)
        data = raw_deflate(message)
        assert codec().decode(data, True, True, 5000) == message
        with pytest.raises(MessageTooBig):
            codec().decode(data, True, True, 4999)

    def test_limit_reached_by_the_final_tail(self) -> None:
        """Output that only the appended 00 00 ff ff releases is bounded too."""
        message = b"abc" * 100
        data = raw_deflate(message)
        ext = codec()
        assert decode_frames(ext, [data[:-1], data[-1:]], len(message)) == message
        with pytest.raises(MessageTooBig):
            decode_frames(codec(), [data[:-1], data[-1:]], len(message) - 1)

    @pytest.mark.parametrize("max_length", [0, -5])
    def test_no_allowance_left(self, max_length: int) -> None:
        """zlib reads a max_length of 0 as "unlimited"; the codec never passes it."""
        assert codec().decode(b"\x00", True, True, max_length) == b""
        with pytest.raises(MessageTooBig):
            codec().decode(raw_deflate(b"z"), True, True, max_length)

    def test_codec_recovers_after_too_big(self, bomb: bytes) -> None:
        ext = codec()
        with pytest.raises(MessageTooBig):
            ext.decode(bomb, True, True, self.LIMIT)
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"


class TestFragments:
    """RFC 7692 §6.2: a compressed message may be split across frames anywhere."""

    MESSAGE = b"The quick brown fox jumps over the lazy dog; the lazy dog sleeps."

    def test_every_split_point(self) -> None:
        data, _ = codec().encode(self.MESSAGE)
        for cut in range(len(data) + 1):
            assert decode_frames(codec(), [data[:cut], data[cut:]]) == self.MESSAGE

    def test_every_pair_of_split_points(self) -> None:
        data, _ = codec().encode(self.MESSAGE)
        for first in range(len(data) + 1):
            for second in range(first, len(data) + 1):
                frames = [data[:first], data[first:second], data[second:]]
                assert decode_frames(codec(), frames) == self.MESSAGE

    def test_one_byte_frames_with_buffer_types(self) -> None:
        data, _ = codec().encode(self.MESSAGE * 10)
        ext = codec()
        out = bytearray()
        for index in range(len(data)):
            frame = memoryview(bytearray(data[index : index + 1]))
            out += ext.decode(frame, True, index == len(data) - 1, BIG - len(out))
        assert out == self.MESSAGE * 10


class TestCorruptData:
    """RFC 7692 §7.2.2 and RFC 6455 §7.1.7: undecodable data fails the connection (1002)."""

    @pytest.mark.parametrize(
        "payload",
        [
            b"\xff\xff\xff\xff",  # BTYPE 11 is reserved
            b"\x07",  # BTYPE 11 again, BFINAL set
            bytes.fromhex("00 05 00 00 00 48 65 6c 6c 6f"),  # stored block, NLEN wrong
            bytes.fromhex("f2 00 11 00 00"),  # a back-reference with an empty window
        ],
    )
    def test_protocol_error(self, payload: bytes) -> None:
        ext = codec()
        with pytest.raises(ProtocolError, match="invalid compressed data") as info:
            ext.decode(payload, True, True, BIG)
        assert info.value.close_code == 1002
        # The failed context is dropped; a fresh message decodes.
        assert ext.decode(HELLO, True, True, BIG) == b"Hello"

    def test_error_in_a_later_frame(self) -> None:
        ext = codec()
        assert ext.decode(bytes.fromhex("00 05 00"), True, False, BIG) == b""
        with pytest.raises(ProtocolError, match="invalid stored block lengths"):
            ext.decode(bytes.fromhex("00 00 48 65 6c 6c 6f"), True, True, BIG)


def test_core_stays_sans_io() -> None:
    """docs/architecture.md, rule 1: no event loop, sockets, clocks or threads in the core."""
    tree = ast.parse(inspect.getsource(deflate))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "ssl", "time", "threading"}


class TestCodecConstruction:
    """Local misuse raises at once (docs/architecture.md, rule 4)."""

    @pytest.mark.parametrize(
        "overrides",
        [
            {"remote_max_window_bits": 7},
            {"local_max_window_bits": 16},
            {"compress_level": 10},
            {"compress_level": -2},
            {"mem_level": 0},
            {"mem_level": 10},
            {"min_size": -1},
        ],
    )
    def test_invalid(self, overrides: dict[str, int]) -> None:
        with pytest.raises(ValueError):
            codec(**overrides)

    def test_attributes_and_repr(self) -> None:
        ext = codec(remote_max_window_bits=9, local_no_context_takeover=True)
        assert ext.name == "permessage-deflate"
        assert ext.uses_rsv1
        assert (ext.remote_max_window_bits, ext.local_max_window_bits) == (9, 15)
        assert "remote_max_window_bits=9" in repr(ext)
        assert "local_no_context_takeover=True" in repr(ext)

    def test_compress_levels(self) -> None:
        message = b"level " * 100
        for level in range(-1, 10):
            data, _ = codec(compress_level=level, mem_level=1).encode(message)
            assert codec().decode(data, True, True, BIG) == message


class TestMemoryEstimate:
    """zlib's zconf.h: the memory of one compressor and one decompressor."""

    def test_zlib_defaults(self) -> None:
        assert deflate_memory_estimate(15, 8) == 128 * 1024 + 128 * 1024 + 32 * 1024

    def test_wskit_server_defaults(self) -> None:
        assert deflate_memory_estimate(12, 5) == 16 * 1024 + 16 * 1024 + 4 * 1024

    def test_window_8_compresses_with_9(self) -> None:
        assert deflate_memory_estimate(8, 1) == 2048 + 1024 + 256

    @pytest.mark.parametrize("args", [(7, 5), (16, 5), (12, 0), (12, 10)])
    def test_invalid(self, args: tuple[int, int]) -> None:
        with pytest.raises(ValueError):
            deflate_memory_estimate(*args)


def client(**options: Any) -> PerMessageDeflateFactory:
    return PerMessageDeflateFactory(is_client=True, **options)


def server(**options: Any) -> PerMessageDeflateFactory:
    return PerMessageDeflateFactory(is_client=False, **options)


def settings_of(ext: PerMessageDeflate) -> tuple[bool, bool, int, int]:
    """(remote no takeover, local no takeover, remote bits, local bits)."""
    return (
        ext.remote_no_context_takeover,
        ext.local_no_context_takeover,
        ext.remote_max_window_bits,
        ext.local_max_window_bits,
    )


_ABBREVIATIONS = {
    "snct": "server_no_context_takeover",
    "cnct": "client_no_context_takeover",
    "smwb": "server_max_window_bits",
    "cmwb": "client_max_window_bits",
}


def params(text: str) -> Params:
    """``"smwb=12; cmwb"`` gives server_max_window_bits=12, client_max_window_bits bare."""
    result: Params = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, value = item.partition("=")
        result.append((_ABBREVIATIONS[name], value if "=" in item else None))
    return result


INVALID_VALUES: list[str | None] = ["08", "16", "7", "abc", "", "9 ", "+9", "٩", None]


class TestClientOffer:
    """RFC 7692 §7.1: the parameters a client offers."""

    def test_default(self) -> None:
        assert client().offer() == ("permessage-deflate", [("client_max_window_bits", None)])

    def test_every_parameter(self) -> None:
        factory = client(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=10,
            client_max_window_bits=11,
        )
        assert factory.offer() == (
            "permessage-deflate",
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "10"),
                ("client_max_window_bits", "11"),
            ],
        )

    def test_bare_and_absent_client_max_window_bits(self) -> None:
        assert client(client_max_window_bits=True).offer()[1] == [
            ("client_max_window_bits", None)
        ]
        assert client(client_max_window_bits=False).offer()[1] == []

    def test_role_is_checked(self) -> None:
        with pytest.raises(LocalError, match="for a server"):
            server().offer()
        with pytest.raises(LocalError, match="for a server"):
            server().accept_response([])
        with pytest.raises(LocalError, match="for a client"):
            client().accept_offer([[]])

    def test_repr(self) -> None:
        assert "is_client=True" in repr(client())


class TestClientAcceptsResponse:
    """RFC 7692 §7 and §7.1.1.1-§7.1.2.2: the client checks the server's response."""

    def test_empty_response(self) -> None:
        ext = client().accept_response([])
        assert settings_of(ext) == (False, False, 15, 15)
        assert (ext.compress_level, ext.mem_level, ext.min_size) == (6, 5, 32)

    def test_server_chooses_everything(self) -> None:
        ext = client().accept_response(
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "10"),
                ("client_max_window_bits", "9"),
            ]
        )
        assert settings_of(ext) == (True, True, 10, 9)

    def test_client_no_context_takeover_is_kept_as_offered(self) -> None:
        ext = client(client_no_context_takeover=True).accept_response([])
        assert settings_of(ext) == (False, True, 15, 15)

    def test_requested_server_parameters_accepted(self) -> None:
        factory = client(server_no_context_takeover=True, server_max_window_bits=10)
        ext = factory.accept_response(
            [("server_no_context_takeover", None), ("server_max_window_bits", "10")]
        )
        assert settings_of(ext) == (True, False, 10, 15)
        ext = factory.accept_response(
            [("server_no_context_takeover", None), ("server_max_window_bits", "8")]
        )
        assert settings_of(ext) == (True, False, 8, 15)

    @pytest.mark.parametrize(
        ("response", "local_bits"),
        [([], 11), (params("cmwb=9"), 9), (params("cmwb=13"), 11)],
    )
    def test_offered_client_window_is_a_promise(self, response: Params, local_bits: int) -> None:
        ext = client(client_max_window_bits=11).accept_response(response)
        assert ext.local_max_window_bits == local_bits

    def test_client_window_8(self) -> None:
        ext = client().accept_response([("client_max_window_bits", "8")])
        assert ext.local_max_window_bits == 8
        data, _ = ext.encode(far_repeats(300))
        assert strict_inflate(data, 8) == far_repeats(300)

    @pytest.mark.parametrize(
        ("factory", "response", "reason"),
        [
            (client(), [("x_custom", None)], "unknown parameter"),
            (client(), [("Server_No_Context_Takeover", None)], "unknown parameter"),
            (
                client(),
                [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
                "duplicate",
            ),
            (client(), [("server_no_context_takeover", "1")], "takes no value"),
            (client(), [("client_no_context_takeover", "")], "takes no value"),
            (client(), [("client_max_window_bits", None)], "invalid client_max_window_bits"),
            (
                client(client_max_window_bits=False),
                [("client_max_window_bits", "10")],
                "not offered",
            ),
            (client(server_no_context_takeover=True), [], "server_no_context_takeover"),
            (client(server_max_window_bits=10), [], "did not accept server_max_window_bits"),
            (client(server_max_window_bits=10), [("server_max_window_bits", "11")], "exceeds"),
        ],
    )
    def test_invalid_response(
        self, factory: PerMessageDeflateFactory, response: Params, reason: str
    ) -> None:
        with pytest.raises(NegotiationError, match=reason) as info:
            factory.accept_response(response)
        assert info.value.status == 400

    @pytest.mark.parametrize("value", INVALID_VALUES)
    @pytest.mark.parametrize("name", ["server_max_window_bits", "client_max_window_bits"])
    def test_invalid_window_bits(self, name: str, value: str | None) -> None:
        with pytest.raises(NegotiationError, match=f"invalid {name}"):
            client().accept_response([(name, value)])


NO_LIMIT: dict[str, Any] = {"client_max_window_bits": False}


class TestServerAcceptsOffer:
    """RFC 7692 §7 and §7.1.1.1-§7.1.2.2: the server picks and answers an offer."""

    def test_empty_offer(self) -> None:
        response, ext = server().accept_offer([[]])  # type: ignore[misc]
        assert response == [("server_max_window_bits", "12")]
        assert settings_of(ext) == (False, False, 15, 12)
        assert ext.mem_level == 5

    @pytest.mark.parametrize(
        ("options", "offer", "response", "expected"),
        [
            # client_max_window_bits: only when offered, never above the offer (§7.1.2.2).
            ({}, "cmwb", "smwb=12; cmwb=12", (False, False, 12, 12)),
            ({}, "cmwb=10", "smwb=12; cmwb=10", (False, False, 10, 12)),
            ({}, "cmwb=14", "smwb=12; cmwb=12", (False, False, 12, 12)),
            (NO_LIMIT, "cmwb=10", "smwb=12; cmwb=10", (False, False, 10, 12)),
            (NO_LIMIT, "cmwb", "smwb=12", (False, False, 15, 12)),
            ({"client_max_window_bits": 9}, "", "smwb=12", (False, False, 15, 12)),
            # server_max_window_bits: the same or a smaller value (§7.1.2.1).
            ({}, "smwb=10", "smwb=10", (False, False, 15, 10)),
            ({}, "smwb=14", "smwb=12", (False, False, 15, 12)),
            ({}, "smwb=8", "smwb=8", (False, False, 15, 8)),
            ({"server_max_window_bits": 15}, "", "", (False, False, 15, 15)),
            ({"server_max_window_bits": 15}, "smwb=15", "smwb=15", (False, False, 15, 15)),
            # Context takeover, asked for or imposed (§7.1.1.1, §7.1.1.2).
            ({"server_max_window_bits": 15}, "snct", "snct", (False, True, 15, 15)),
            ({"server_max_window_bits": 15, "server_no_context_takeover": True}, "", "snct",
             (False, True, 15, 15)),
            ({"server_max_window_bits": 15}, "cnct", "cnct", (True, False, 15, 15)),
            ({"server_max_window_bits": 15, "client_no_context_takeover": True}, "", "cnct",
             (True, False, 15, 15)),
        ],
    )
    def test_accepted(
        self,
        options: dict[str, Any],
        offer: str,
        response: str,
        expected: tuple[bool, bool, int, int],
    ) -> None:
        result = server(**options).accept_offer([params(offer)])
        assert result is not None
        assert result[0] == params(response)
        assert settings_of(result[1]) == expected

    def test_server_window_8_is_honoured(self) -> None:
        result = server().accept_offer([params("smwb=8")])
        assert result is not None
        data, _ = result[1].encode(far_repeats(400))
        assert strict_inflate(data, 8) == far_repeats(400)

    def test_every_parameter(self) -> None:
        offer: Params = [
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "9"),
            ("client_max_window_bits", "11"),
        ]
        result = server(compress_level=1, mem_level=9, min_size=7).accept_offer([offer])
        assert result is not None
        assert result[0] == offer
        assert settings_of(result[1]) == (True, True, 11, 9)
        assert (result[1].compress_level, result[1].mem_level, result[1].min_size) == (1, 9, 7)

    @pytest.mark.parametrize(
        "invalid",
        [
            [("x_custom", None)],
            [("server_max_window_bits", "10"), ("server_max_window_bits", "10")],
            [("client_max_window_bits", None), ("client_max_window_bits", None)],
            [("server_no_context_takeover", "true")],
            [("client_no_context_takeover", "1")],
            *([("server_max_window_bits", value)] for value in INVALID_VALUES),
            *([("client_max_window_bits", value)] for value in INVALID_VALUES if value),
        ],
    )
    def test_invalid_offer_is_declined_for_the_next(self, invalid: Params) -> None:
        """§7: an invalid offer is declined, and the next acceptable one is taken."""
        assert server().accept_offer([invalid]) is None
        result = server().accept_offer([invalid, [("server_max_window_bits", "9")]])
        assert result is not None
        assert result[0] == [("server_max_window_bits", "9")]

    def test_first_acceptable_offer_wins(self) -> None:
        offers: list[Params] = [
            [("server_max_window_bits", "10")],
            [("server_max_window_bits", "9")],
        ]
        result = server().accept_offer(offers)
        assert result is not None
        assert result[0] == [("server_max_window_bits", "10")]

    def test_no_offer(self) -> None:
        assert server().accept_offer([]) is None


class TestFactoryConstruction:
    """Local misuse raises at once; None picks the documented role defaults."""

    @pytest.mark.parametrize(
        "options",
        [
            {"server_max_window_bits": 7},
            {"server_max_window_bits": 16},
            {"client_max_window_bits": 7},
            {"client_max_window_bits": 16},
            {"compress_level": 10},
            {"mem_level": 0},
            {"min_size": -1},
        ],
    )
    @pytest.mark.parametrize("is_client", [True, False])
    def test_invalid(self, options: dict[str, Any], is_client: bool) -> None:
        with pytest.raises(ValueError):
            PerMessageDeflateFactory(is_client=is_client, **options)

    def test_bare_client_window_is_for_clients_only(self) -> None:
        with pytest.raises(ValueError, match="only meaningful for a client"):
            server(client_max_window_bits=True)

    def test_defaults(self) -> None:
        assert (server().server_max_window_bits, server().client_max_window_bits) == (12, 12)
        assert (client().server_max_window_bits, client().client_max_window_bits) == (None, True)
        assert server(client_max_window_bits=False).client_max_window_bits is None
        assert server(server_max_window_bits=9).server_max_window_bits == 9
        assert client(client_max_window_bits=10).client_max_window_bits == 10


def handshake(
    client_factory: PerMessageDeflateFactory, server_factory: PerMessageDeflateFactory
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    name, offer = client_factory.offer()
    assert name == server_factory.name == "permessage-deflate"
    result = server_factory.accept_offer([offer])
    assert result is not None
    response, server_ext = result
    return client_factory.accept_response(response), server_ext


class TestEndToEnd:
    """RFC 7692 §7: what one side negotiates, the other side's codec decodes."""

    def test_defaults_both_ways(self) -> None:
        client_ext, server_ext = handshake(client(), server())
        assert settings_of(client_ext) == (False, False, 12, 12)
        assert settings_of(server_ext) == (False, False, 12, 12)
        message = b'{"type": "greeting", "text": "hello, world"}' * 3
        for sender, receiver in ((client_ext, server_ext), (server_ext, client_ext)):
            for _ in range(3):
                data, rsv1 = sender.encode(message)
                assert rsv1
                assert receiver.decode(data, True, True, BIG) == message

    @given(
        client_options=st.fixed_dictionaries(
            {
                "server_no_context_takeover": st.booleans(),
                "client_no_context_takeover": st.booleans(),
                "server_max_window_bits": st.none() | st.integers(8, 15),
                "client_max_window_bits": st.none() | st.booleans() | st.integers(8, 15),
            }
        ),
        server_options=st.fixed_dictionaries(
            {
                "server_no_context_takeover": st.booleans(),
                "client_no_context_takeover": st.booleans(),
                "server_max_window_bits": st.none() | st.integers(8, 15),
                "client_max_window_bits": st.none() | st.just(False) | st.integers(8, 15),
                "compress_level": st.integers(-1, 9),
                "mem_level": st.integers(1, 9),
                "min_size": st.integers(0, 64),
            }
        ),
        messages=st.lists(
            st.tuples(
                st.binary(max_size=2000) | st.sampled_from([b"", b"abc" * 300, bytes(3000)]),
                st.lists(st.integers(0, 4000), max_size=4),
                st.booleans(),
            ),
            min_size=1,
            max_size=6,
        ),
    )
    @settings(max_examples=200, deadline=None)
    def test_round_trip(
        self,
        client_options: dict[str, Any],
        server_options: dict[str, Any],
        messages: list[tuple[bytes, list[int], bool]],
    ) -> None:
        client_ext, server_ext = handshake(client(**client_options), server(**server_options))
        for index, (message, cuts, compress) in enumerate(messages):
            sender, receiver = (
                (client_ext, server_ext) if index % 2 else (server_ext, client_ext)
            )
            data, rsv1 = sender.encode(message, compress)
            points = sorted({min(cut, len(data)) for cut in cuts})
            bounds = [0, *points, len(data)]
            frames = [data[start:end] for start, end in itertools.pairwise(bounds)]
            out = bytearray()
            for position, frame in enumerate(frames):
                fin = position == len(frames) - 1
                out += receiver.decode(frame, rsv1, fin, len(message) - len(out))
            assert out == message
