"""One compression per publication under context takeover (RFC 7692 §7.2.1, §7.1.1): frames
shared by connections in the same compression state, checked against independent zlib peers."""

from __future__ import annotations

import random
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core.connection import Connection, PreparedFrame, Role
from wskit.core.deflate import SHARED_LEVEL, PerMessageDeflate, compress_libraries

TAIL = b"\x00\x00\xff\xff"
RNG = random.Random(7692)
JSON = [
    (b'{"type":"trade","seq":%d,"sym":"ALPHA%d","px":%d.25,"qty":%d,"side":"buy"}'
     % (i, RNG.randrange(100), RNG.randrange(1000), RNG.randrange(5000))) * 4
    for i in range(60)
]


@pytest.fixture(params=compress_libraries())
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def server(library: str = "zlib", *, bits: int = 12, nct: bool = False,
           **options: Any) -> Connection:
    codec = PerMessageDeflate(
        remote_no_context_takeover=False, local_no_context_takeover=nct,
        remote_max_window_bits=15, local_max_window_bits=bits, library=library, **options)
    return Connection(Role.SERVER, extensions=[codec])


def codec_of(conn: Connection) -> PerMessageDeflate:
    ext = conn._extension
    assert isinstance(ext, PerMessageDeflate)
    return ext


class Peer:
    """A client's receiving side as RFC 7692 §7.2.2 says, on plain zlib: one raw inflate
    stream for the whole connection (context takeover), fed the messages with RSV1 set."""

    def __init__(self, window_bits: int = 12) -> None:
        self.inflate = zlib.decompressobj(wbits=-window_bits)

    def receive(self, frame: bytes) -> bytes:
        assert frame[0] & 0x80  # FIN: one frame per message
        length, pos = frame[1] & 0x7F, 2
        if length == 126:
            length, pos = int.from_bytes(frame[2:4], "big"), 4
        data = frame[pos:]
        assert len(data) == length
        if not frame[0] & 0x40:
            return data
        # One byte of output per call: every distance is then checked against the window
        # kept between calls (within one call zlib resolves it against its fresh output).
        out = bytearray()
        data += TAIL
        while chunk := self.inflate.decompress(data, 1):
            out += chunk
            data = self.inflate.unconsumed_tail
        return bytes(out)


def publish(conns: list[Connection], message: bytes) -> tuple[list[bytes], int]:
    """Each connection's frame for one publication, and how many compressions it took."""
    prepared = PreparedFrame(message)
    frames = [c.send_prepared(prepared, compress=True) for c in conns]
    return frames, len(prepared._encoded)


class TestSharedUnderContextTakeover:
    def test_one_compression_per_publication(self, library: str) -> None:
        conns = [server(library) for _ in range(5)]
        peers = [Peer() for _ in conns]
        # Context takeover's ratio, at the shared level: what one zlib stream would send.
        alone = zlib.compressobj(SHARED_LEVEL, zlib.DEFLATED, -12, 5)
        for message in JSON:
            frames, compressions = publish(conns, message)
            assert compressions == 1
            assert all(f is frames[0] for f in frames)
            assert all(p.receive(f) == message for p, f in zip(peers, frames, strict=True))
            expected = alone.compress(message) + alone.flush(zlib.Z_SYNC_FLUSH)
            assert frames[0][2:] == expected[:-4]

    def test_own_messages_between_publications(self, library: str) -> None:
        """An own message moves a connection to a state of its own; its compressor, dropped
        when it took shared frames, is rebuilt from what the peer holds."""
        conns = [server(library) for _ in range(3)]
        peers = [Peer() for _ in conns]
        for i, message in enumerate(JSON):
            frames, compressions = publish(conns, message)
            assert [p.receive(f) for p, f in zip(peers, frames, strict=True)] == [message] * 3
            if i % 5 == 4:
                assert compressions == 2  # conns[0] left the others' state at i - 1
            own = JSON[(i * 7) % len(JSON)][::-1]
            if i % 5 == 3:
                frame = conns[0].send_text(own.decode())
                assert peers[0].receive(frame) == own

    def test_own_message_refers_back_into_shared_ones(self, library: str) -> None:
        """The rebuilt compressor is primed with the publications: an own message like them
        compresses as small as with a compressor that had sent them itself."""
        shared, alone = server(library), server(library)
        other = server(library)
        for message in JSON[:20]:
            publish([other, shared], message)
            alone.send_text(message.decode())
        assert codec_of(shared)._compressor is None
        mine, theirs = shared.send_text(JSON[0].decode()), alone.send_text(JSON[0].decode())
        assert len(mine) <= 1.05 * len(theirs)
        assert len(mine) < len(JSON[0]) / 5

    def test_connections_that_left_the_group_compress_alone(self, library: str) -> None:
        conns = [server(library) for _ in range(4)]
        peers = [Peer() for _ in conns]
        for c, p in zip(conns[2:], peers[2:], strict=True):
            assert p.receive(c.send_text("own " * 30)) == b"own " * 30
        frames, compressions = publish(conns, JSON[0])
        assert compressions == 3  # the untouched pair shares, the other two each compress
        assert frames[0] is frames[1] and frames[2] is not frames[3]
        assert all(p.receive(f) == JSON[0] for p, f in zip(peers, frames, strict=True))

    def test_uncompressed_publication_keeps_the_state(self, library: str) -> None:
        """A message that does not shrink goes out plain (RFC 7692 §6): the peer's window
        does not change, so the compressors stay, and the next publication is shared."""
        conns = [server(library) for _ in range(3)]
        peers = [Peer() for _ in conns]
        frames, _ = publish(conns, JSON[0])
        for p, f in zip(peers, frames, strict=True):
            p.receive(f)
        noise = random.Random(1).randbytes(300)
        frames, compressions = publish(conns, noise)
        assert compressions == 1 and not frames[0][0] & 0x40
        assert all(p.receive(f) == noise for p, f in zip(peers, frames, strict=True))
        frames, compressions = publish(conns, JSON[1])
        assert compressions == 1
        assert all(p.receive(f) == JSON[1] for p, f in zip(peers, frames, strict=True))

    def test_parameters_that_differ_do_not_share(self, library: str) -> None:
        conns = [server(library, bits=12), server(library, bits=12), server(library, bits=9),
                 server(library, bits=12, nct=True), server(library, bits=12, nct=True),
                 server(library, bits=12, compress_level=1)]
        peers = [Peer(12), Peer(12), Peer(9), Peer(12), Peer(12), Peer(12)]
        for message in JSON[:10]:
            frames, compressions = publish(conns, message)
            assert compressions == 4
            assert frames[0] is frames[1] and frames[3] is frames[4]
            assert all(p.receive(f) == message for p, f in zip(peers, frames, strict=True))

    def test_small_window_is_respected(self, library: str) -> None:
        """RFC 7692 §7.1.2.1: with server_max_window_bits=8 the peer keeps 256 bytes."""
        conns = [server(library, bits=8) for _ in range(2)]
        peers = [Peer(8) for _ in conns]
        for message in JSON[:10]:
            frames, _ = publish(conns, message)
            assert all(p.receive(f) == message for p, f in zip(peers, frames, strict=True))

    def test_compressor_of_a_connection_that_takes_a_shared_frame_goes(
        self, library: str
    ) -> None:
        """Whoever comes first compresses: the others' compressors have not seen that
        message, which their peers now hold, so their next own message must not use them."""
        conns = [server(library) for _ in range(3)]
        peers = [Peer() for _ in conns]
        for i, message in enumerate(JSON[:30]):
            order = conns[i % 3:] + conns[: i % 3]
            frames, compressions = publish(order, message)
            assert compressions == 1
            for conn, frame in zip(order, frames, strict=True):
                assert peers[conns.index(conn)].receive(frame) == message
        for conn, peer in zip(conns, peers, strict=True):
            assert codec_of(conn)._compressor is None or conn is conns[29 % 3]
            own = JSON[40]
            assert peer.receive(conn.send_binary(own)) == own

    def test_small_publications_build_no_compressor(self, library: str) -> None:
        """Under ``min_size`` a publication goes out plain (RFC 7692 §6), with nothing built."""
        conns = [server(library, nct=nct) for nct in (False, True)]
        frames, compressions = publish(conns, b"tiny")
        assert frames == [b"\x82\x04tiny"] * 2 and compressions == 2
        assert all(codec_of(c)._compressor is None for c in conns)

    def test_parked_connections_stay_in_the_group(self, library: str) -> None:
        conns = [server(library) for _ in range(3)]
        peers = [Peer() for _ in conns]
        for i, message in enumerate(JSON[:20]):
            codec_of(conns[i % 3]).park()
            frames, compressions = publish(conns, message)
            assert compressions == 1
            assert all(p.receive(f) == message for p, f in zip(peers, frames, strict=True))


_OPS = st.lists(st.tuples(st.sampled_from(["publish", "own", "park"]),
                          st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
                          st.integers(0, len(JSON) - 1)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, library=st.sampled_from(compress_libraries()))
def test_any_mix_of_shared_and_own_messages_decodes(
    ops: list[tuple[str, list[int], int]], library: str
) -> None:
    """Publications to any subset in any order, own messages and parking: every peer
    inflates exactly what was sent, and a publication costs one compression per distinct
    state among its recipients."""
    conns = [server(library) for _ in range(4)]
    peers = [Peer() for _ in conns]
    for op, targets, index in ops:
        if op == "publish":
            states = {codec_of(conns[i]).shared_encoding() for i in targets}
            frames, compressions = publish([conns[i] for i in targets], JSON[index])
            assert compressions == len(states)
            for i, frame in zip(targets, frames, strict=True):
                assert peers[i].receive(frame) == JSON[index]
        elif op == "own":
            for i in targets:
                own = JSON[index][: 40 + 10 * i]
                assert peers[i].receive(conns[i].send_binary(own)) == own
        else:
            for i in targets:
                codec_of(conns[i]).park()
