"""permessage-deflate's fast paths (RFC 7692): parked codecs, the fallback to uncompressed
messages, and ISA-L as the compressor; bytes in, bytes out against an independent zlib."""

from __future__ import annotations

import os
import random
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import deflate
from wskit.core.connection import Connection, Role
from wskit.core.deflate import PerMessageDeflate, PerMessageDeflateFactory, compress_libraries
from wskit.core.frames import encode_frame

BIG = 1 << 30
TAIL = b"\x00\x00\xff\xff"
JSON = [
    (b'{"type":"trade","seq":%d,"sym":"ALPHA%d","px":%d.25,"qty":%d,"side":"buy"}'
     % (i, i % 7, 100 + i * 13 % 900, i * 37 % 5000)) * 3
    for i in range(40)
]


def _require_isal() -> None:
    # The `isal` extra is part of the `test` extra: in CI its absence is a failure.
    if os.environ.get("CI") == "true":
        __import__("isal")
    elif "isal" not in compress_libraries():
        pytest.skip("the isal extra is not installed")


@pytest.fixture
def needs_isal() -> None:
    _require_isal()


def _require_zlib_ng() -> None:
    # The `zlib-ng` extra is part of the `test` extra too.
    if os.environ.get("CI") == "true":
        __import__("zlib_ng")
    elif "zlib-ng" not in compress_libraries():
        pytest.skip("the zlib-ng extra is not installed")


@pytest.fixture(params=["zlib", "isal", "zlib-ng"])
def library(request: pytest.FixtureRequest) -> str:
    if request.param == "isal":
        _require_isal()
    if request.param == "zlib-ng":
        _require_zlib_ng()
    return str(request.param)


def codec(**overrides: Any) -> PerMessageDeflate:
    options: dict[str, Any] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 12,
        "local_max_window_bits": 12,
    }
    options.update(overrides)
    return PerMessageDeflate(**options)


class Peer:
    """The receiving end as RFC 7692 §7.2.2 describes it, on plain zlib: one raw inflate
    stream per direction for the whole connection (context takeover), fed only by the
    messages that had RSV1 set."""

    def __init__(self, window_bits: int) -> None:
        self.window_bits = window_bits
        self.inflate = zlib.decompressobj(wbits=-window_bits)

    def receive(self, data: bytes, rsv1: bool) -> bytes:
        if not rsv1:
            return data
        # One byte of output per call, so every distance is checked against the window kept
        # between calls (within one call zlib resolves them into its own fresh output).
        out = bytearray()
        data += TAIL
        while chunk := self.inflate.decompress(data, 1):
            out += chunk
            data = self.inflate.unconsumed_tail
        return bytes(out)


class TestPark:
    """Parking drops the zlib objects; the streams go on as if they had never gone."""

    def test_parked_sender_stays_in_step_with_the_peer(self, library: str) -> None:
        sender, peer = codec(library=library), Peer(12)
        for message in JSON:
            data, rsv1 = sender.encode(message)
            assert rsv1
            assert peer.receive(data, rsv1) == message
            sender.park()
            assert sender._compressor is None

    def test_parking_keeps_the_ratio(self, library: str) -> None:
        """The rebuilt compressor refers to earlier messages just as the live one did."""
        live, parked = codec(library=library), codec(library=library)
        live_bytes = parked_bytes = 0
        for message in JSON:
            live_bytes += len(live.encode(message)[0])
            parked_bytes += len(parked.encode(message)[0])
            parked.park()
        fresh_bytes = sum(len(codec(library=library).encode(m)[0]) for m in JSON)
        assert parked_bytes < 0.6 * fresh_bytes
        assert parked_bytes <= 1.05 * live_bytes

    def test_parked_receiver_inflates_references_to_earlier_messages(self) -> None:
        """A peer with context takeover refers back into earlier messages (§7.2.3.2)."""
        compressor = zlib.compressobj(9, zlib.DEFLATED, -12, 9)
        receiver = codec()
        for message in JSON:
            data = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            assert len(data) < len(message) / 3
            assert receiver.decode(data, True, True, BIG) == message
            receiver.park()
            assert receiver._decompressor is None

    def test_history_is_the_window(self) -> None:
        """Only the last 2**bits bytes are kept: what the peer's window can refer to."""
        compressor = zlib.compressobj(9, zlib.DEFLATED, -9, 9)
        sender, receiver = codec(local_max_window_bits=9), codec(remote_max_window_bits=9)
        for message in [b"x" * 700, *JSON[:5], bytes(range(256)) * 3, *JSON[5:9]]:
            data = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            assert receiver.decode(data, True, True, BIG) == message
            receiver.park()
            _, rsv1 = sender.encode(message)
            sender.park()
            assert rsv1
        assert receiver._received is not None and sender._sent is not None
        assert len(receiver._received.value()) == 512 == len(sender._sent.value())
        assert receiver._received.value() == (b"".join(JSON[5:9]))[-512:]

    def test_fragmented_message_keeps_its_decompressor(self) -> None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
        message = b"".join(JSON[:4])
        data = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        receiver = codec()
        first = receiver.decode(data[:50], True, False, BIG)
        receiver.park()
        assert receiver._decompressor is not None
        rest = receiver.decode(data[50:], True, True, BIG)
        assert first + rest == message
        receiver.park()
        assert receiver._decompressor is None
        again = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert len(again) < 20  # all of it a reference into the previous message
        assert receiver.decode(again, True, True, BIG) == message

    def test_final_block_empties_the_window(self) -> None:
        """§7.2.3.4: after a block with BFINAL set the next message starts a new stream."""
        receiver = codec()
        finished = zlib.compressobj(6, zlib.DEFLATED, -12)
        data = finished.compress(JSON[0]) + finished.flush(zlib.Z_FINISH)
        assert receiver.decode(data, True, True, BIG) == JSON[0]
        assert receiver._received is not None and receiver._received.value() == b""
        receiver.park()
        fresh = zlib.compressobj(6, zlib.DEFLATED, -12)
        data = (fresh.compress(JSON[1]) + fresh.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert receiver.decode(data, True, True, BIG) == JSON[1]

    def test_no_context_takeover_keeps_no_history(self) -> None:
        ext = codec(local_no_context_takeover=True, remote_no_context_takeover=True)
        data, _ = ext.encode(JSON[0])
        assert ext._sent is None and ext._received is None and ext._compressor is None
        assert ext.decode(data, True, True, BIG) == JSON[0]
        assert ext._decompressor is None
        ext.park()

    @given(
        messages=st.lists(
            st.tuples(
                st.sampled_from(JSON) | st.binary(max_size=600),
                st.booleans(),  # park after this message
                st.integers(0, 3),  # cuts: frames of the compressed message
            ),
            min_size=1, max_size=12,
        ),
        bits=st.integers(8, 15),
        library=st.sampled_from(compress_libraries()),
        fallback=st.booleans(),
    )
    @settings(max_examples=150, deadline=None)
    def test_round_trip(self, messages: list[tuple[bytes, bool, int]], bits: int,
                        library: str, fallback: bool) -> None:
        sender = codec(local_max_window_bits=bits, library=library,
                       uncompressed_fallback=fallback, min_size=0)
        receiver = codec(remote_max_window_bits=bits)
        peer = Peer(bits)
        for message, park, cuts in messages:
            data, rsv1 = sender.encode(message)
            assert peer.receive(data, rsv1) == message
            size = max(1, len(data) // (cuts + 1))
            frames = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
            out = b"".join(
                bytes(receiver.decode(f, rsv1, i == len(frames) - 1, BIG))
                for i, f in enumerate(frames)
            )
            assert out == message
            if park:
                sender.park()
                receiver.park()


class TestUncompressedFallback:
    """RFC 7692 §6: a message may go out uncompressed; one that would grow does."""

    def test_incompressible_message_is_sent_as_it_is(self, library: str) -> None:
        sender, peer = codec(library=library), Peer(12)
        noise = bytearray(random.Random(6).randbytes(800))
        data, rsv1 = sender.encode(noise)
        assert (data, rsv1) == (bytes(noise), False)
        assert type(data) is bytes
        # The peer never saw the noise in its window, and the next message must not refer
        # to it: the compressor is rebuilt from the bytes the peer holds.
        for message in [bytes(noise), *JSON[:3]]:
            data, rsv1 = sender.encode(message)
            assert peer.receive(data, rsv1) == message

    def test_off_compresses_everything(self) -> None:
        noise = random.Random(6).randbytes(800)
        data, rsv1 = codec(uncompressed_fallback=False).encode(noise)
        assert rsv1 and len(data) > len(noise)

    def test_message_that_shrinks_is_compressed(self) -> None:
        data, rsv1 = codec().encode(JSON[0])
        assert rsv1 and len(data) < len(JSON[0])


class TestLibraries:
    """Who compresses: zlib, or ISA-L when installed; decompression is always zlib's."""

    def test_zlib_is_always_there(self) -> None:
        assert compress_libraries()[0] == "zlib"
        assert codec(library="zlib").library == "zlib"

    def test_auto_prefers_isal(self, needs_isal: None) -> None:
        assert compress_libraries()[:2] == ("zlib", "isal")
        assert codec().library == "isal"
        assert PerMessageDeflateFactory(is_client=False).library == "auto"

    def test_auto_without_isal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(deflate, "_isal", None)
        monkeypatch.setattr(deflate, "_zlib_ng", None)
        assert compress_libraries() == ("zlib",)
        assert codec().library == "zlib"
        for library in ("isal", "zlib-ng"):
            with pytest.raises(ValueError, match="library must be"):
                codec(library=library)

    def test_zlib_ng_is_chosen_not_automatic(self) -> None:
        _require_zlib_ng()
        assert "zlib-ng" in compress_libraries()
        assert codec(library="zlib-ng").library == "zlib-ng"
        assert codec().library != "zlib-ng"

    @pytest.mark.parametrize("library", ["zlib_ng", "", "ISAL"])
    def test_unknown_library(self, library: str) -> None:
        with pytest.raises(ValueError, match="library must be"):
            codec(library=library)
        with pytest.raises(ValueError, match="library must be"):
            PerMessageDeflateFactory(is_client=True, library=library)

    @pytest.mark.parametrize(
        ("level", "isal_level"),
        [(-1, 2), (0, 0), (1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2), (7, 3), (8, 3), (9, 3)],
    )
    def test_isal_levels(self, level: int, isal_level: int) -> None:
        assert deflate._isal_level(level) == isal_level

    @pytest.mark.parametrize("level", range(-1, 10))
    @pytest.mark.parametrize("bits", range(8, 16))
    def test_isal_output_stays_within_the_window(
        self, needs_isal: None, level: int, bits: int
    ) -> None:
        """Distances beyond 2**bits would fail a peer with that window (§7.1.2.1)."""
        rng = random.Random(bits)
        message = b"".join(rng.randbytes(period) * 3 for period in (200, 300, 600, 5000))
        sender, peer = codec(library="isal", local_max_window_bits=bits,
                             compress_level=level), Peer(bits)
        for _ in range(2):
            data, rsv1 = sender.encode(message)
            assert peer.receive(data, rsv1) == message

    @pytest.mark.parametrize("level", range(-1, 10))
    @pytest.mark.parametrize("bits", range(8, 16))
    def test_zlib_ng_output_stays_within_the_window(self, level: int, bits: int) -> None:
        """The same for zlib-ng (a 256-byte window is zlib's, as without it)."""
        _require_zlib_ng()
        rng = random.Random(bits)
        message = b"".join(rng.randbytes(period) * 3 for period in (200, 300, 600, 5000))
        sender, peer = codec(library="zlib-ng", local_max_window_bits=bits,
                             compress_level=level), Peer(bits)
        for _ in range(2):
            data, rsv1 = sender.encode(message)
            assert peer.receive(data, rsv1) == message

    def test_level_0_is_zlib_stored_blocks(self, needs_isal: None) -> None:
        """zlib's level 0 means no compression; ISA-L's 0 compresses, so zlib keeps it."""
        data, rsv1 = codec(library="isal", compress_level=0,
                           uncompressed_fallback=False).encode(JSON[0])
        assert rsv1 and len(data) > len(JSON[0])

    def test_factory_passes_its_choices_on(self) -> None:
        factory = PerMessageDeflateFactory(is_client=False, library="zlib",
                                           uncompressed_fallback=False)
        accepted = factory.accept_offer([[]])
        assert accepted is not None
        ext = accepted[1]
        assert (ext.library, ext.uncompressed_fallback) == ("zlib", False)


def test_connection_parks_its_extension() -> None:
    """Connection.park (called by the binding after each read) reaches the codec."""
    from wskit.core.connection import Connection, Role

    ext = codec()
    conn = Connection(Role.SERVER, extensions=[ext])
    frame = conn.send_text(JSON[0].decode())
    assert frame[0] == 0xC1 and ext._compressor is not None
    conn.park()
    assert ext._compressor is None
    Connection(Role.SERVER).park()  # without an extension: nothing to do


def _codec(nct: bool, bits: int) -> PerMessageDeflate:
    return PerMessageDeflate(remote_no_context_takeover=nct, local_no_context_takeover=False,
                             remote_max_window_bits=bits, local_max_window_bits=bits)


def _peer_payloads(texts: list[bytes], bits: int, nct: bool, kinds: list[int]) -> list[bytes]:
    """What a peer sends: sync-flushed messages (00 00 ff ff removed, RFC 7692 §7.2.1), some
    ended by a BFINAL block (§7.2.3.4), some damaged, some with bytes after BFINAL."""
    out = []
    c = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
    for text, kind in zip(texts, kinds, strict=False):
        if nct:
            c = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
        if kind == 1:  # BFINAL: the stream ends; the next message starts a new one
            data = c.compress(text) + c.flush(zlib.Z_FINISH)
            c = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
        else:
            data = (c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        if kind == 2:
            data = b"\xff" + data[1:]
        elif kind == 3:
            data += b"\x01\x02"
        out.append(data)
    return out


def _outcome(call: Any) -> Any:
    try:
        return ("ok", bytes(call()))
    except Exception as exc:  # the exception is what is compared
        return ("error", type(exc), str(exc))


class TestDecodeMessage:
    """``decode_message`` is the twin of ``decode(payload, True, True, max_length)`` (RFC 7692
    §7.2.2): the same output, errors and state after each message."""

    @settings(max_examples=150, deadline=None)
    @given(
        texts=st.lists(st.binary(max_size=600) | st.sampled_from(JSON), min_size=1,
                       max_size=12),
        kinds=st.lists(st.sampled_from([0, 0, 0, 0, 1, 2, 3]), min_size=12, max_size=12),
        nct=st.booleans(), bits=st.sampled_from([8, 9, 12, 15]),
        limit=st.sampled_from([0, 50, 300, BIG]), park=st.lists(st.booleans(), min_size=12,
                                                                max_size=12),
    )
    def test_same_as_decode(self, texts: list[bytes], kinds: list[int], nct: bool, bits: int,
                            limit: int, park: list[bool]) -> None:
        general, fast = _codec(nct, bits), _codec(nct, bits)
        for payload, parked in zip(_peer_payloads(texts, bits, nct, kinds), park, strict=False):
            expected = _outcome(lambda p=payload: general.decode(p, True, True, limit))
            assert _outcome(lambda p=payload: fast.decode_message(p, limit)) == expected
            if parked:
                general.park()
                fast.park()
        # The same state: the next message inflates alike, from the same window.
        last = _peer_payloads([JSON[0]], bits, True, [0])[0]
        assert _outcome(lambda: fast.decode_message(last, BIG)) == _outcome(
            lambda: general.decode(last, True, True, BIG))

    def test_a_view_or_a_large_payload_takes_decode(self) -> None:
        codec, other = _codec(False, 15), _codec(False, 15)
        text = random.Random(1).randbytes(200_000)
        payload = _peer_payloads([text], 15, False, [0])[0]
        assert len(payload) > deflate._JOIN_MAX
        assert codec.decode_message(memoryview(payload), BIG) == text
        assert other.decode_message(payload, BIG) == text

    def test_inside_a_message_takes_decode(self) -> None:
        codec = _codec(False, 15)
        payload = _peer_payloads([JSON[1]], 15, False, [0])[0]
        first = codec.decode(payload[:5], True, False, BIG)
        assert first + codec.decode_message(payload[5:], BIG) == JSON[1]


class TestReceiveWindow:
    """The receive side's window (``_Tail``) and the send side's (``_Window``) keep the last
    ``limit`` bytes of the stream, whatever the sizes of the messages."""

    @given(st.lists(st.binary(max_size=3000), max_size=30), st.sampled_from([256, 512, 4096]))
    def test_last_bytes(self, chunks: list[bytes], limit: int) -> None:
        tail, window = deflate._Tail(limit), deflate._Window(limit)
        stream = b""
        for chunk in chunks:
            tail.add(chunk)
            window.add(chunk)
            stream += chunk
            assert tail.value() == stream[-limit:] == window.value()
            assert len(tail.buf) < 2 * limit and window.size < 2 * limit
        tail.compact()
        assert tail.value() == stream[-limit:] and len(tail.buf) <= limit


def _events(conn: Connection, wire: bytes) -> list[Any]:
    out = []
    for event in conn.receive_data(wire):
        data = getattr(event, "data", None)
        out.append((type(event).__name__, data if data is None else bytes(
            data.encode() if isinstance(data, str) else data)))
    return out


class TestWholeCompressedMessages:
    """A whole compressed message in one final frame (RFC 7692 §6, §7.2.2) takes
    ``receive_data``'s short branch: the same events, close codes and window as the same
    message in two fragments, which takes the general one (``_data_frame``)."""

    @settings(max_examples=100, deadline=None)
    @given(
        texts=st.lists(st.binary(max_size=400) | st.sampled_from(JSON), min_size=1,
                       max_size=8),
        kinds=st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=8, max_size=8),
        text=st.booleans(), limit=st.sampled_from([100, 1000, 1 << 20]),
    )
    def test_same_as_fragments(self, texts: list[bytes], kinds: list[int], text: bool,
                               limit: int) -> None:
        if text:
            texts = [t.decode("latin-1").encode() if i % 3 else t for i, t in enumerate(texts)]
        payloads = _peer_payloads(texts, 15, False, kinds)
        opcode = 0x1 if text else 0x2
        whole = b"".join(encode_frame(opcode, p, rsv1=True, mask=True) for p in payloads)
        split = b"".join(
            encode_frame(opcode, p[:1], fin=False, rsv1=True, mask=True)
            + encode_frame(0x0, p[1:], mask=True) for p in payloads)
        conns = []
        for _ in range(2):
            conns.append(Connection(Role.SERVER, max_message_size=limit,
                                    extensions=[_codec(False, 15)]))
        got, expected = _events(conns[0], whole), _events(conns[1], split)
        assert got == expected
        assert conns[0].close_code == conns[1].close_code
        assert conns[0].data_to_send() == conns[1].data_to_send()
