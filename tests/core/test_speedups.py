"""The C frame functions against their pure-Python twins: same frames, state, errors (§5.2)."""

from __future__ import annotations

import array
import contextlib
import gc
import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import frames, masking
from wskit.core.connection import BinaryMessage, Connection, Role, State, TextMessage
from wskit.core.errors import RemoteError
from wskit.core.frames import FrameParser, RawFrame

KEY = bytes.fromhex("37fa213d")
Parse = Callable[[FrameParser, bytes, list[RawFrame], bool], int]
Build = Callable[[int, Any, Any], bytes]


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def outcome(parse: Parse, data: bytes, *, expect_mask: bool, allowed_rsv: int, max_size: int,
            decode: bool, msg_left: int | None = None, msg_rsv1: int = 0) -> tuple[Any, ...]:
    """Everything a parse call shows: frames (with payload types), position or error, state."""
    parser = FrameParser(expect_mask=expect_mask, max_size=max_size, allowed_rsv=allowed_rsv)
    if msg_left is not None:
        parser.msg_left = msg_left
        parser.msg_rsv1 = msg_rsv1
    out: list[RawFrame] = []
    try:
        result: Any = parse(parser, data, out, decode)
    except RemoteError as exc:
        result = (type(exc), str(exc), exc.close_code)
    frames_seen = [(b0, type(payload), payload) for b0, payload in out]
    state = (parser.need, parser.partial, parser.msg_left, parser.msg_rsv1)
    return frames_seen, result, state


def header(b0: int, length: int, key: bytes | None, bits: int) -> bytes:
    """A header with the length in 7, 16 or 64 bits, minimal or not (for negative cases)."""
    m = 0x80 if key is not None else 0
    if bits == 7:
        head = bytes((b0, m | (length & 0x7F)))
    elif bits == 16:
        head = bytes((b0, m | 126)) + (length & 0xFFFF).to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + length.to_bytes(8, "big")
    return head + (key or b"")


@st.composite
def frame_bytes(draw: st.DrawFn) -> bytes:
    """One frame, mostly well formed; headers, masks, lengths and UTF-8 vary."""
    b0 = draw(st.one_of(st.sampled_from([0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8A, 0xC1,
                                         0xC2, 0x41, 0x40]), st.integers(0, 255)))
    kind = draw(st.sampled_from(["text", "utf8-ish", "bytes", "close"]))
    if kind == "text":
        payload = draw(st.text(max_size=40)).encode()
    elif kind == "utf8-ish":
        payload = draw(st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xed\xa0\x80", b"\xf4\x90",
                                                 b"\xe2\x82", b"\xac", b"\xc0\xaf", b"\xff"]),
                                max_size=12))
        payload = b"".join(payload)
    elif kind == "close":
        payload = draw(st.integers(0, 5000)).to_bytes(2, "big") + draw(st.binary(max_size=4))
    else:
        payload = draw(st.binary(max_size=300))
    key = draw(st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
    n = len(payload)
    minimal = 7 if n < 126 else 16 if n < 0x10000 else 64
    bits = draw(st.sampled_from([minimal, minimal, minimal, 7, 16, 64]))
    length = draw(st.one_of(st.just(n), st.just(n), st.integers(0, 1 << 64 - 1)))
    body = xor(payload, key) if key is not None else payload
    return header(b0, length, key, bits) + body


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(frame_bytes(), max_size=6)))
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


parser_settings = st.fixed_dictionaries({
    "expect_mask": st.booleans(),
    "allowed_rsv": st.sampled_from([0, 0x40, 0x70]),
    "max_size": st.sampled_from([0, 1, 5, 125, 126, 300, 1 << 20, 1 << 62, 1 << 70]),
    "decode": st.booleans(),
    "msg_left": st.one_of(st.none(), st.integers(-2, 400)),
    "msg_rsv1": st.sampled_from([0, 0x40]),
})


class TestParseFrames:
    """RFC 6455 §5.2: the C parser finds the same frames and errors as the pure one."""

    @given(st.binary(max_size=200), parser_settings)
    @settings(max_examples=600, deadline=None)
    def test_random_bytes_like_python(self, c_parse: Parse, data: bytes,
                                      cfg: dict[str, Any]) -> None:
        assert outcome(c_parse, data, **cfg) == outcome(frames.parse_frames_python, data, **cfg)

    @given(streams(), parser_settings)
    @settings(max_examples=600, deadline=None)
    def test_frame_streams_like_python(self, c_parse: Parse, data: bytes,
                                       cfg: dict[str, Any]) -> None:
        assert outcome(c_parse, data, **cfg) == outcome(frames.parse_frames_python, data, **cfg)

    @given(streams(), st.booleans(), st.lists(st.integers(0, 400), max_size=5))
    @settings(max_examples=300, deadline=None)
    def test_feed_raw_in_chunks_like_python(self, c_parse: Parse, data: bytes,
                                            expect_mask: bool, cuts: list[int]) -> None:
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        parts = [data[a:b] for a, b in itertools.pairwise(bounds)]
        results = []
        for parse in (c_parse, frames.parse_frames_python):
            with pytest.MonkeyPatch.context() as m:
                m.setattr(frames, "parse_frames", parse)
                parser = FrameParser(expect_mask=expect_mask, max_size=1000, allowed_rsv=0x40)
                seen: list[Any] = []
                for part in parts:
                    try:
                        seen += parser.feed_raw(part)
                    except RemoteError as exc:
                        seen.append(str(exc))
                        break
                    seen.append((parser.buffered, parser.partial, repr(parser.error)))
                results.append(seen)
        assert results[0] == results[1]

    @pytest.mark.parametrize("n", [0, 1, 7, 8, 125, 126, 1024, 1025, 65535, 65536, 70000])
    @pytest.mark.parametrize("masked", [False, True])
    def test_text_decoded_only_when_whole_and_uncompressed(self, c_parse: Parse, n: int,
                                                           masked: bool) -> None:
        """§5.6: a final text frame without RSV bits comes as str; others as bytes."""
        text = ("é" * n)[: n // 2] + "x" * (n - 2 * (n // 2))
        payload = text.encode()
        key = KEY if masked else None
        for parse in (c_parse, frames.parse_frames_python):
            for b0, kind in ((0x81, str), (0x01, bytes), (0xC1, bytes), (0x82, bytes)):
                minimal = 7 if len(payload) < 126 else 16 if len(payload) < 0x10000 else 64
                body = xor(payload, KEY) if masked else payload
                data = header(b0, len(payload), key, minimal) + body
                parser = FrameParser(expect_mask=masked, max_size=1 << 20, allowed_rsv=0x40)
                out: list[RawFrame] = []
                assert parse(parser, data, out, True) == len(data)
                assert out == [(b0, text if kind is str else payload)]
                assert type(out[0][1]) is kind

    @pytest.mark.parametrize("bad", [b"\xff", b"a\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                     b"ok\xe2\x82"])
    @pytest.mark.parametrize("masked", [False, True])
    def test_invalid_utf8_stays_bytes(self, c_parse: Parse, bad: bytes, masked: bool) -> None:
        """§8.1: invalid text is left as bytes, for the connection to fail with 1007."""
        data = header(0x81, len(bad), KEY if masked else None, 7) + (
            xor(bad, KEY) if masked else bad)
        parser = FrameParser(expect_mask=masked, max_size=100)
        out: list[RawFrame] = []
        assert c_parse(parser, data, out, True) == len(data)
        assert out == [(0x81, bad)]

    @pytest.mark.parametrize("data", ["\x81\x00", memoryview(b"\x81\x00"),
                                      memoryview(bytearray(b"\x81\x00\x00\x00"))[::2], 7])
    def test_bad_data_like_python(self, c_parse: Parse, data: Any) -> None:
        """Only bytes or a writable C-contiguous buffer can be parsed."""
        messages = []
        for parse in (c_parse, frames.parse_frames_python):
            with pytest.raises(TypeError) as error:
                parse(FrameParser(expect_mask=False, max_size=10), data, [], True)
            messages.append(str(error.value))
        assert messages[0] == messages[1]

    def test_bad_arguments(self, c_parse: Parse) -> None:
        parser = FrameParser(expect_mask=False, max_size=10)
        with pytest.raises(TypeError):
            c_parse(parser, b"\x81\x00", (), True)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c_parse(parser, b"\x81\x00", [])  # type: ignore[call-arg]
        with pytest.raises(AttributeError):
            c_parse(object(), b"\x81\x00", [], True)  # type: ignore[arg-type]


def messages_outcome(parse: Callable[..., Any], data: bytes, *args: Any) -> Any:
    result = parse(data, *args)
    return result if result is None else [(type(m), m) for m in result]


@st.composite
def message_streams(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Reads as they mostly come: whole messages, masked or not, sometimes something else."""
    masked = draw(st.booleans())
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 5)) == 0:
            parts.append(draw(frame_bytes()))
            continue
        b0 = draw(st.sampled_from([0x81, 0x82]))
        if b0 == 0x81:
            payload = draw(st.text(max_size=300)).encode()
        else:
            payload = draw(st.binary(max_size=300))
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        minimal = 7 if len(payload) < 126 else 16
        parts.append(header(b0, len(payload), key, minimal)
                     + (xor(payload, key) if key is not None else payload))
    data = b"".join(parts)
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data, masked


message_limits = st.tuples(st.sampled_from([0, 1, 125, 300, 1 << 20, 1 << 70]),
                           st.sampled_from([1, 2, 3, 1024]),
                           st.sampled_from([1, 3, 100, 301, 1 << 20]))


class TestParseMessages:
    """The fast path of a read (``frames.parse_messages``): the same in C and Python, and
    only ever what the general path (``Connection.receive_data``) would deliver."""

    @given(message_streams(), message_limits)
    @settings(max_examples=500, deadline=None)
    def test_like_python(self, c_messages: Callable[..., Any], stream: tuple[bytes, bool],
                         limits: tuple[int, int, int]) -> None:
        data, masked = stream
        for expect_mask in (masked, not masked):
            args = (expect_mask, *limits)
            assert messages_outcome(c_messages, data, *args) == messages_outcome(
                frames.parse_messages_python, data, *args)

    @given(message_streams(), message_limits)
    @settings(max_examples=300, deadline=None)
    def test_only_what_the_general_path_delivers(self, c_messages: Callable[..., Any],
                                                 stream: tuple[bytes, bool],
                                                 limits: tuple[int, int, int]) -> None:
        data, masked = stream
        max_size, max_frames, max_bytes = limits
        for parse in (c_messages, frames.parse_messages_python):
            with pytest.MonkeyPatch.context() as m:
                m.setattr(frames, "parse_messages", parse)
                role = Role.SERVER if masked else Role.CLIENT
                fast = Connection(role, max_message_size=max_size or 1,
                                  max_batch_messages=max_frames, max_batch_bytes=max_bytes)
                general = Connection(role, max_message_size=max_size or 1,
                                     max_batch_messages=max_frames, max_batch_bytes=max_bytes)
                messages = fast.receive_messages(data)
                if messages is None:
                    continue
                events = general.receive_data(data)
                assert [(type(e), e.data) for e in events] == [  # type: ignore[attr-defined]
                    (TextMessage if type(m) is str else BinaryMessage, m) for m in messages]
                assert [type(m) for m in messages] == [  # str for text, bytes for binary
                    str if type(e) is TextMessage else bytes for e in events]
                assert not general.events_pending and not general.data_to_send()
                assert fast.messages_in == general.messages_in == len(messages)
                assert general.state is State.OPEN

    @pytest.mark.parametrize("masked", [False, True])
    def test_whole_messages_take_the_fast_path(self, c_messages: Callable[..., Any],
                                               masked: bool) -> None:
        key = KEY if masked else None
        texts = ["", "hé", "x" * 125, "y" * 126, "z" * 70000]
        data = b""
        for text in texts:
            payload = text.encode()
            bits = 7 if len(payload) < 126 else 16 if len(payload) < 0x10000 else 64
            data += header(0x81, len(payload), key, bits) + (
                xor(payload, KEY) if masked else payload)
        data += header(0x82, 3, key, 7) + (xor(b"bin", KEY) if masked else b"bin")
        for parse in (c_messages, frames.parse_messages_python):
            assert parse(data, masked, 1 << 20, 6, 1 << 20) == [*texts, b"bin"]
            # Budgets as receive_data's: six frames, and the bytes before the last one.
            assert parse(data, masked, 1 << 20, 5, 1 << 20) is None
            before_last = sum(len(t) for t in texts)
            assert parse(data, masked, 1 << 20, 6, before_last + 1) is not None
            assert parse(data, masked, 1 << 20, 6, before_last) is None
            # Anything else: the general path.
            assert parse(data, not masked, 1 << 20, 6, 1 << 20) is None
            assert parse(data, masked, 69999, 6, 1 << 20) is None
            assert parse(data[:-1], masked, 1 << 20, 6, 1 << 20) is None
            assert parse(b"", masked, 1 << 20, 6, 1 << 20) is None
            with pytest.raises(TypeError):
                parse(bytearray(data), masked, 1 << 20, 6, 1 << 20)


def in_place_outcome(parse: Parse, data: bytes, **cfg: Any) -> tuple[Any, ...]:
    """``outcome`` for a writable copy of ``data``: views instead of bytes, and the buffer."""
    buf = bytearray(data)
    parser = FrameParser(expect_mask=cfg["expect_mask"], max_size=cfg["max_size"],
                         allowed_rsv=cfg["allowed_rsv"])
    out: list[RawFrame] = []
    try:
        result: Any = parse(parser, buf, out, cfg["decode"])  # type: ignore[arg-type]
    except RemoteError as exc:
        result = (type(exc), str(exc))
    seen = [(b0, type(p), p if isinstance(p, str) else bytes(p)) for b0, p in out]
    state = (parser.need, parser.partial, parser.msg_left, parser.msg_rsv1)
    return seen, result, state, bytes(buf)


class TestParseInPlace:
    """From a writable buffer (a large frame's assembly): unmasked in place, payloads as views."""

    @given(streams(), parser_settings)
    @settings(max_examples=400, deadline=None)
    def test_like_python(self, c_parse: Parse, data: bytes, cfg: dict[str, Any]) -> None:
        cfg = {k: v for k, v in cfg.items() if k not in ("msg_left", "msg_rsv1")}
        c_result = in_place_outcome(c_parse, data, **cfg)
        assert c_result == in_place_outcome(frames.parse_frames_python, data, **cfg)
        # The same frames as from bytes, whatever the payload's container.
        from_bytes = outcome(c_parse, data, **cfg)
        assert [(b0, p if isinstance(p, str) else bytes(p)) for b0, _, p in from_bytes[0]] == [
            (b0, p) for b0, _, p in c_result[0]]

    @pytest.mark.parametrize("masked", [False, True])
    def test_payload_is_a_view_unmasked_in_place(self, c_parse: Parse, masked: bool) -> None:
        payload = os.urandom(1000)
        key = KEY if masked else None
        frame = header(0x82, len(payload), key, 16) + (xor(payload, KEY) if masked else payload)
        for parse in (c_parse, frames.parse_frames_python):
            buf = bytearray(frame)
            out: list[RawFrame] = []
            parse(FrameParser(expect_mask=masked, max_size=1 << 20), buf, out, True)
            ((_, view),) = out
            assert type(view) is memoryview and view.obj is buf and view == payload
            assert buf[-len(payload):] == payload


def large_frame(payload: bytes, opcode: int = 0x82, fin: bool = True) -> bytes:
    """A masked frame, as a client sends it."""
    b0 = opcode | (0x80 if fin else 0)
    bits = 7 if len(payload) < 126 else 16 if len(payload) < 0x10000 else 64
    return header(b0, len(payload), KEY, bits) + xor(payload, KEY)


@pytest.mark.usefixtures("frame_impl")
class TestLargeFrames:
    """A large frame over several reads is assembled in one reused buffer (RFC 6455 §5.2)."""

    def feed(self, parser: FrameParser, data: bytes, step: int) -> list[RawFrame]:
        got: list[RawFrame] = []
        for i in range(0, len(data), step):
            got += [(b0, p if isinstance(p, str) else bytes(p))
                    for b0, p in parser.feed_raw(data[i : i + step])]
        return got

    @pytest.mark.parametrize("step", [1000, 65536, 70000, 300000])
    def test_split_anywhere_same_frames(self, step: int) -> None:
        big = os.urandom(200_000)
        text = ("é" * 40_000).encode()
        stream = (large_frame(b"small") + large_frame(big) + large_frame(text, 0x1)
                  + large_frame(big[:70000], 0x2, fin=False) + large_frame(big[:5], 0x0)
                  + large_frame(b"tail"))
        expected = [(0x82, b"small"), (0x82, big), (0x81, text.decode()),
                    (0x02, big[:70000]), (0x80, big[:5]), (0x82, b"tail")]
        parser = FrameParser(expect_mask=True, max_size=1 << 20)
        assert self.feed(parser, stream, step) == expected
        assert parser.buffered == 0 and parser.error is None

    def test_payload_view_valid_until_next_feed_and_kept_if_held(self) -> None:
        parser = FrameParser(expect_mask=True, max_size=1 << 20)
        first, second = os.urandom(100_000), os.urandom(100_000)
        wire = large_frame(first)
        assert parser.feed_raw(wire[:50_000]) == []
        (_, held), = parser.feed_raw(wire[50_000:])
        assert type(held) is memoryview and held == first
        # The next large frame may not reuse a buffer whose view is still held.
        wire = large_frame(second)
        parser.feed_raw(wire[:50_000])
        (_, view), = parser.feed_raw(wire[50_000:])
        assert view == second and held == first
        assert view.obj is not held.obj

    def test_released_buffer_serves_the_next_large_frame(self) -> None:
        frames._spare.clear()
        parser = FrameParser(expect_mask=True, max_size=1 << 20)
        wire = large_frame(os.urandom(100_000))
        parser.feed_raw(wire[:50_000])
        (_, view), = parser.feed_raw(wire[50_000:])
        buf_id = id(view.obj)  # (holding the buffer itself would keep it from reuse)
        del view
        parser.release()
        assert parser.lent is None and [id(b) for b in frames._spare] == [buf_id]
        parser.feed_raw(wire[:50_000])
        assert frames._spare == []
        (_, view), = parser.feed_raw(wire[50_000:])
        assert id(view.obj) == buf_id
        del view
        parser.release()
        parser.release()  # nothing lent: nothing to do
        assert [id(b) for b in frames._spare] == [buf_id]

    def test_error_behind_a_large_frame_is_kept(self) -> None:
        big = os.urandom(80_000)
        wire = large_frame(big) + b"\x83\x80" + KEY
        parser = FrameParser(expect_mask=True, max_size=1 << 20)
        assert parser.feed_raw(wire[:40_000]) == []
        got = parser.feed_raw(wire[40_000:])
        assert [(b0, bytes(p)) for b0, p in got] == [(0x82, big)]  # type: ignore[arg-type]
        assert str(parser.error) == "unknown opcode 0x3"
        with pytest.raises(RemoteError):
            parser.feed_raw(b"")


class TestBuildFrame:
    """RFC 6455 §5.2, §5.3: the C encoder writes the same bytes as the pure one."""

    @given(st.integers(0, 255), st.binary(max_size=300),
           st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
    @settings(max_examples=500, deadline=None)
    def test_like_python(self, c_build: Build, b0: int, payload: bytes,
                         key: bytes | None) -> None:
        assert c_build(b0, payload, key) == frames.build_frame_python(b0, payload, key)

    @pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536, 70001])
    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_lengths_and_buffer_types(self, c_build: Build, n: int, kind: type) -> None:
        payload = kind(os.urandom(n))
        for key in (None, KEY, bytearray(KEY), memoryview(KEY)):
            expected = frames.build_frame_python(0x82, payload, key)
            assert c_build(0x82, payload, key) == expected
            assert type(c_build(0x82, payload, key)) is bytes

    def test_counts_bytes_of_wide_formats(self, c_build: Build) -> None:
        payload = array.array("i", range(50))  # 200 bytes: a 16-bit length, not 50
        expected = frames.build_frame_python(0x82, payload, None)  # type: ignore[arg-type]
        assert expected[1] == 126 and c_build(0x82, payload, None) == expected

    @pytest.mark.parametrize(("args", "error"), [
        ((256, b"", None), ValueError),
        ((-1, b"", None), ValueError),
        ((1 << 80, b"", None), ValueError),
        (("x", b"", None), TypeError),
        ((0x81, "text", None), TypeError),
        ((0x81, memoryview(b"abcdef")[::2], None), TypeError),
        ((0x81, b"", b"abc"), ValueError),
        ((0x81, b"", b"abcde"), ValueError),
        ((0x81, b"", "abcd"), TypeError),
    ])
    def test_errors_like_python(self, c_build: Build, args: tuple[Any, ...],
                                error: type[Exception]) -> None:
        with pytest.raises(error) as c_error:
            c_build(*args)
        with pytest.raises(error) as py_error:
            frames.build_frame_python(*args)
        if error is ValueError or "bytes-like" in str(py_error.value):
            assert str(c_error.value) == str(py_error.value)


def masked_parts(frame: bytes) -> tuple[int, bytes, bytes]:
    """(b0, key, unmasked payload) of one masked frame, read by the RFC 6455 §5.2 layout."""
    n = frame[1] & 0x7F
    assert frame[1] & 0x80  # the MASK bit
    start = 2 if n < 126 else 4 if n == 126 else 10
    key = frame[start : start + 4]
    return frame[0], key, xor(frame[start + 4 :], key) if len(frame) < 4096 else b""


@pytest.fixture(scope="module")
def c_masked() -> Callable[..., bytes]:
    """The compiled build_masked_frame."""
    function = getattr(masking.speedups, "build_masked_frame", None)
    if function is None:
        pytest.skip("wskit._speedups is not built")
    return function  # type: ignore[no-any-return]


class TestBuildMaskedFrame:
    """RFC 6455 §5.3: a client's frame in one C call, the bytes of build_frame with its key."""

    @given(st.integers(0, 255), st.one_of(st.binary(max_size=300), st.text(max_size=100)))
    @settings(max_examples=500, deadline=None)
    def test_like_build_frame_with_the_same_key(self, c_masked: Callable[..., bytes], b0: int,
                                                payload: bytes | str) -> None:
        frame = c_masked(b0, payload)
        data = payload.encode() if isinstance(payload, str) else payload
        _, key, _ = masked_parts(frame)
        assert frame == frames.build_frame_python(b0, data, key)

    def test_pure_twin_uses_generate_mask(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(frames, "build_frame", frames.build_frame_python)
        monkeypatch.setattr(frames, "generate_mask", lambda: KEY)
        # RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        assert frames.build_masked_frame_python(0x81, "Hello") == bytes.fromhex(
            "818537fa213d7f9f4d5158")
        assert frames.build_masked_frame_python(0x82, b"Hello") == bytes.fromhex(
            "828537fa213d7f9f4d5158")

    @pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536, 70001])
    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, "ascii", "text"])
    def test_lengths_and_payload_types(self, c_masked: Callable[..., bytes], n: int,
                                       kind: Any) -> None:
        if kind == "ascii":
            payload: Any = "a" * n
        elif kind == "text":
            payload = ("é" * n)[: n // 2]  # n // 2 two-byte characters: n or n - 1 bytes
        else:
            payload = kind(os.urandom(n))
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        frame = c_masked(0x82, payload)
        assert type(frame) is bytes
        start = 2 if len(data) < 126 else 4 if len(data) < 0x10000 else 10
        key = frame[start : start + 4]
        assert frame == frames.build_frame_python(0x82, data, key)

    def test_a_fresh_key_per_frame(self, c_masked: Callable[..., bytes]) -> None:
        # 3 x 256 frames cross the C pool's refill boundary (1 KiB, 256 keys) at least twice.
        keys = [masked_parts(c_masked(0x81, "x"))[1] for _ in range(3 * 256)]
        assert len(set(keys)) > 760  # 768 random 32-bit keys: a repeat once in ~15,000 runs
        blocks = [b"".join(keys[i : i + 256]) for i in (0, 256, 512)]
        assert len(set(blocks)) == 3  # no refill hands out the bytes of the last pool again

    @pytest.mark.parametrize(("args", "error"), [
        ((256, b""), ValueError),
        ((-1, "x"), ValueError),
        ((1 << 80, b""), ValueError),
        (("x", b""), TypeError),
        ((0x81, 5), TypeError),
        ((0x81, None), TypeError),
        ((0x81, memoryview(b"abcdef")[::2]), TypeError),
        ((0x81, "\ud800"), UnicodeEncodeError),
        ((256, "\ud800"), UnicodeEncodeError),  # the text is encoded first, in both
    ])
    def test_errors_like_python(self, c_masked: Callable[..., bytes], args: tuple[Any, ...],
                                error: type[Exception]) -> None:
        with pytest.raises(error) as c_error:
            c_masked(*args)
        with pytest.raises(error) as py_error:
            frames.build_masked_frame_python(*args)
        if error is not TypeError or "bytes-like" in str(py_error.value):
            assert str(c_error.value) == str(py_error.value)

    def test_wrong_argument_count(self, c_masked: Callable[..., bytes]) -> None:
        with pytest.raises(TypeError):
            c_masked(0x81)
        with pytest.raises(TypeError):
            c_masked(0x81, b"", None)

    def test_the_default_is_the_compiled_one(self, c_masked: Callable[..., bytes]) -> None:
        assert frames.build_masked_frame is c_masked


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leaks(c_parse: Parse, c_build: Build) -> None:
    """60,000 rounds of each path, errors included, leave the process size where it was.

    One leaked object per round (48 bytes at least) would be 2.8 MiB, above the bound."""
    text = header(0x81, 5, KEY, 7) + xor(b"hello", KEY)
    bad_text = header(0x81, 2, KEY, 7) + xor(b"\xc0\xaf", KEY)
    big = header(0x82, 3000, KEY, 16) + os.urandom(3000)
    frag = header(0x01, 3, KEY, 7) + xor(b"abc", KEY) + header(0x80, 1, KEY, 7) + b"x"
    inputs = [text * 3, bad_text, big, frag, text[:5], b"\x83\x80", text + b"\x81\x00",
              header(0x82, 50, KEY, 7)]

    def once() -> None:
        for data in inputs:
            parser = FrameParser(expect_mask=True, max_size=2000)
            with contextlib.suppress(RemoteError):
                c_parse(parser, data, [], True)
            parser = FrameParser(expect_mask=True, max_size=2000)
            with contextlib.suppress(RemoteError):
                c_parse(parser, bytearray(data), [], True)  # type: ignore[arg-type]
        c_build(0x81, b"hello", None)
        c_build(0x82, b"x" * 300, KEY)
        with contextlib.suppress(ValueError):
            c_build(0x81, b"", b"abc")

    for _ in range(5_000):
        once()
    gc.collect()
    before = rss_kib()
    for _ in range(60_000):
        once()
    gc.collect()
    assert rss_kib() - before < 2048


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_parse_messages_does_not_leak(c_messages: Callable[..., Any]) -> None:
    """100,000 rounds of the fast path, each outcome included, leave the process size."""
    text = header(0x81, 5, KEY, 7) + xor(b"hello", KEY)
    inputs = [text * 3, header(0x81, 2, KEY, 7) + xor(b"\xc0\xaf", KEY),
              header(0x82, 3000, KEY, 16) + os.urandom(3000), text[:5], text + b"\x89\x80"]

    def once() -> None:
        for data in inputs:
            c_messages(data, True, 2000, 3, 2000)
            c_messages(data, True, 2000, 3, 4)

    for _ in range(10_000):
        once()
    gc.collect()
    before = rss_kib()
    for _ in range(100_000):
        once()
    gc.collect()
    assert rss_kib() - before < 2048


def c_masked_key() -> bytes:
    function = getattr(masking.speedups, "build_masked_frame", None)
    if function is None:
        pytest.skip("wskit._speedups is not built")
    return masked_parts(function(0x82, b""))[1]


def c_mask_key() -> bytes:
    function = getattr(masking.speedups, "mask_key", None)
    if function is None:
        pytest.skip("wskit._speedups is not built")
    return function()  # type: ignore[no-any-return]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("draw", [masking.generate_mask_python, c_mask_key, c_masked_key],
                         ids=["python", "c-mask_key", "c-build_masked_frame"])
def test_forked_child_draws_fresh_mask_keys(draw: Callable[[], bytes]) -> None:
    """RFC 6455 §5.3: keys come from a pool of CSPRNG bytes, which a forked child must not
    share with its parent (else both would mask with the same keys)."""
    draw()  # the pool is filled now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, b"".join(draw() for _ in range(8)))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64)
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = b"".join(draw() for _ in range(8))
    assert len(child) == len(parent) == 32
    assert child != parent
    assert bytes(4) not in (child[i : i + 4] for i in range(0, 32, 4))


def test_threads_draw_keys_of_their_own() -> None:
    """Each thread has its own C pool: keys drawn at once in two threads are never shared."""
    draw = getattr(masking.speedups, "mask_key", None)
    if draw is None:
        pytest.skip("wskit._speedups is not built")
    results: list[list[bytes]] = [[], []]

    def work(out: list[bytes]) -> None:
        out.extend(draw() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blocks = [b"".join(out[i : i + 256]) for out in results for i in range(0, 2000 - 255, 256)]
    assert len(set(blocks)) == len(blocks)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_build_masked_frame_does_not_leak(c_masked: Callable[..., bytes]) -> None:
    """100,000 rounds of each payload kind and error leave the process size where it was."""
    def once() -> None:
        c_masked(0x81, "hello")
        c_masked(0x81, "héllo")
        c_masked(0x82, b"x" * 300)
        c_masked(0x82, bytearray(200))
        with contextlib.suppress(ValueError):
            c_masked(300, "héllo")
        with contextlib.suppress(UnicodeEncodeError):
            c_masked(0x81, "\ud800")

    for _ in range(10_000):
        once()
    gc.collect()
    before = rss_kib()
    for _ in range(100_000):
        once()
    gc.collect()
    assert rss_kib() - before < 2048
