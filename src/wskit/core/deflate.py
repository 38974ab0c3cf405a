"""permessage-deflate (RFC 7692): negotiating its parameters, and compressing messages with them."""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass
from typing import Any, Protocol, cast

from .errors import LocalError, MessageTooBig, NegotiationError, ProtocolError
from .extensions import Extension, ExtensionFactory

__all__ = [
    "DEFAULT_SERVER_CLIENT_WINDOW_BITS",
    "DEFAULT_SERVER_WINDOW_BITS",
    "PerMessageDeflate",
    "PerMessageDeflateFactory",
    "compress_libraries",
    "deflate_memory_estimate",
]


class _Compressor(Protocol):
    def compress(self, data: Any, /) -> bytes: ...
    def flush(self, mode: int, /) -> bytes: ...


try:
    # ISA-L's deflate (the `isal` extra): several times faster than zlib at its levels 1-3,
    # for a ratio between zlib's levels 1 and 6 on JSON-sized messages.
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    _isal = None  # type: ignore[assignment]


try:
    # zlib-ng (the `zlib-ng` extra): zlib's API and output format. Its inflate takes some
    # 7-15% fewer instructions than the stdlib's on JSON-sized messages, with the same
    # output bound, so it inflates whenever it is installed; it compresses when chosen.
    from zlib_ng import zlib_ng as _zlib_ng
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    _zlib_ng = None  # type: ignore[assignment]

#: Who inflates: zlib-ng where installed (same results, fewer instructions), else zlib.
_inflate: Any = _zlib_ng if _zlib_ng is not None else zlib
#: What invalid compressed data raises, whoever inflates.
_INFLATE_ERRORS: tuple[type[Exception], ...] = (
    (zlib.error, cast("type[Exception]", _zlib_ng.error)) if _zlib_ng is not None
    else (zlib.error,))


def compress_libraries() -> tuple[str, ...]:
    """The deflate libraries this process can compress with: "zlib", and "isal" and
    "zlib-ng" where those extras are installed."""
    return ("zlib",) + (("isal",) if _isal is not None else ()) + (
        ("zlib-ng",) if _zlib_ng is not None else ())


def _isal_level(level: int) -> int:
    """ISA-L's level (0-3) for a zlib level (-1-9): 1-3 -> 1, default and 4-6 -> 2, 7-9 -> 3."""
    if level == 0:
        return 0
    if 1 <= level <= 3:
        return 1
    return 3 if level >= 7 else 2

#: The zlib level of a frame shared by a fan-out (``PerMessageDeflate.encode_shared``): its
#: cost is shared by every connection that takes it, so it is compressed as small as zlib can.
SHARED_LEVEL = 9

_NAME = "permessage-deflate"
_Params = list[tuple[str, "str | None"]]

#: The empty stored block that ends a sync flush; senders strip it and receivers put it back.
_TAIL = b"\x00\x00\xff\xff"
#: Up to this size a last frame is copied to append _TAIL and inflated in one call; larger
#: ones (and views of the parser's buffer) are inflated in two calls, without the copy.
_JOIN_MAX = 65536
#: What the peer may send after a deflate block with BFINAL set: the remnant of its empty
#: stored block (RFC 7692 §7.2.3.4), or nothing; both prefixes of the allowed trailer.
_AFTER_FINAL_BLOCK = (b"", b"\x00")
#: The only spellings of a window size: decimal 8..15 without leading zeros (RFC 7692 §7.1.2.1).
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}
_MAX_WINDOW_BITS = 15

#: A server's own compression window when not configured: 4 KiB of history instead of 32 KiB
#: (the choice of websockets, which the RFC's JSON-sized messages rarely miss).
DEFAULT_SERVER_WINDOW_BITS = 12
#: The window a server asks its clients to compress with, when they let it choose.
DEFAULT_SERVER_CLIENT_WINDOW_BITS = 12


def deflate_memory_estimate(window_bits: int, mem_level: int) -> int:
    """Bytes zlib documents for one compressor plus one decompressor with these settings.

    From zlib's ``zconf.h``: deflate takes ``(1 << (windowBits + 2)) + (1 << (memLevel + 9))``
    and inflate ``1 << windowBits``. zlib's fixed state (a few KiB for deflate, about 7 KiB
    for inflate) comes on top. A compressor asked for 8 window bits really uses 9 (see
    ``PerMessageDeflate``), so it is counted as such.
    """
    if not 8 <= window_bits <= _MAX_WINDOW_BITS:
        raise ValueError(f"window_bits must be between 8 and 15, not {window_bits}")
    if not 1 <= mem_level <= 9:
        raise ValueError(f"mem_level must be between 1 and 9, not {mem_level}")
    deflate_bits = max(window_bits, 9)
    return (1 << (deflate_bits + 2)) + (1 << (mem_level + 9)) + (1 << window_bits)


@functools.cache
def _window_9_fits_in_8(level: int, mem_level: int) -> bool:
    """Whether this zlib, asked for a 512-byte window, keeps its distances within 256 bytes.

    zlib refuses a raw 256-byte window (``wbits=-8``, since 1.2.9: its deflate is buggy with
    it). With a 512-byte window, zlib never matches further back than 512 - 262 = 250 bytes
    (``MAX_DIST`` in ``deflate.h``, shared by zlib-ng), so its output is decodable by a peer
    with a 256-byte window. That is a property of the implementation, not a documented
    promise, so it is checked once per process (about 2 ms) on input built to tempt
    distances of 251..511.
    """
    rng = random.Random(7692)
    probe = b"".join(rng.randbytes(period) * 4 for period in (251, 300, 384, 509))
    compressor = zlib.compressobj(level, zlib.DEFLATED, -9, mem_level)
    data = compressor.compress(probe) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # One output byte per call: zlib checks a distance against the window it keeps between
    # calls, but not against output it produced earlier in the same call.
    decompressor = zlib.decompressobj(wbits=-8)
    out = bytearray()
    try:
        while chunk := decompressor.decompress(data, 1):
            out += chunk
            data = decompressor.unconsumed_tail
    except zlib.error:
        return False
    return out == probe


def _new_compressor(
    window_bits: int, level: int, mem_level: int, library: str, history: bytes
) -> _Compressor:
    """A raw deflate stream primed with ``history``, the end of what the peer has inflated.

    Without history no dictionary at all, so zlib's output does not depend on whether a
    connection's compressor is new or has just been rebuilt.
    """
    strategy = zlib.Z_DEFAULT_STRATEGY
    if window_bits <= 8:
        # RFC 7692 §7.1.2.1: the peer decodes with a 256-byte window, which zlib cannot
        # compress with; use 512 bytes when this zlib keeps its distances under 256 (see
        # above), else run-length matches only (distance 1), which any window can decode, at
        # a cost in ratio. (The history is at most 256 bytes: within the peer's window.)
        window_bits = 9
        if not _window_9_fits_in_8(level, mem_level):
            strategy = zlib.Z_RLE
    elif library == "isal" and level != 0:
        isal_level = _isal_level(level)
        if history:
            return _isal.compressobj(
                isal_level, _isal.DEFLATED, -window_bits, mem_level, zdict=history
            )
        return _isal.compressobj(
            isal_level, _isal.DEFLATED, -window_bits, mem_level
        )
    # zlib-ng has zlib's API (it is used only for windows of 9 bits or more: the check above
    # is of zlib's deflate).
    lib: Any = _zlib_ng if library == "zlib-ng" and window_bits > 8 else zlib
    if history:
        return cast("_Compressor", lib.compressobj(
            level, zlib.DEFLATED, -window_bits, mem_level, strategy, history))
    return cast("_Compressor", lib.compressobj(
        level, zlib.DEFLATED, -window_bits, mem_level, strategy))


class _Window:
    """The last ``limit`` bytes of a stream of messages: what an LZ77 window holds.

    Kept as the messages themselves (appending is cheap) and joined only when read. The parts
    are a tuple, so connections that reach the same window in a fan-out share it.
    """

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: tuple[bytes, ...] = ()
        self.size = 0

    def add(self, data: bytes) -> None:
        # Up to twice the window is kept, then joined and cut to it: one short tuple per
        # message, and a join every window's worth, where trimming each time cost more.
        limit = self.limit
        size = self.size + len(data)
        if size < limit << 1:
            self.parts += (data,)
            self.size = size
        elif len(data) >= limit:
            self.parts, self.size = (data[-limit:],), limit
        else:
            joined = b"".join((*self.parts, data))[-limit:]
            self.parts, self.size = (joined,), len(joined)

    def value(self) -> bytes:
        parts = self.parts
        if len(parts) > 1:
            joined = b"".join(parts)[-self.limit :]
            self.parts, self.size = (joined,), len(joined)
            return joined
        return parts[0] if parts else b""

    def clear(self) -> None:
        self.parts, self.size = (), 0


class _Tail:
    """The last ``limit`` bytes of what the peer's messages inflated to: our window of them.

    Never shared (unlike ``_Window``), so one bytearray, trimmed once it holds twice the
    window: one copy of each message, where a tuple of parts costs a new tuple each time.
    """

    __slots__ = ("buf", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()

    def add(self, data: bytes | bytearray | memoryview) -> None:
        buf, limit = self.buf, self.limit
        if len(data) >= limit:
            buf[:] = data[-limit:]
            return
        buf += data
        if len(buf) >= limit << 1:
            del buf[:-limit]

    def value(self) -> bytes:
        return bytes(self.buf[-self.limit :])

    def clear(self) -> None:
        del self.buf[:]

    def compact(self) -> None:
        """Keep no more than the window (an idle connection's memory)."""
        if len(self.buf) > self.limit:
            self.buf = bytearray(self.value())


@functools.cache
def _fresh_state(params: tuple[object, ...]) -> object:
    """The token of an empty compression history for codecs with these parameters.

    Every connection starts there; connections that hold the same token have peers whose
    windows hold the same bytes, so a frame compressed for one of them is valid for all.
    """
    return object()


def _check_zlib_options(
    compress_level: int, mem_level: int, min_size: int, library: str = "auto"
) -> None:
    """The zlib tuning shared by the codec and its factory, checked once for both."""
    if not -1 <= compress_level <= 9:
        raise ValueError(f"compress_level must be between -1 and 9, not {compress_level}")
    if not 1 <= mem_level <= 9:
        raise ValueError(f"mem_level must be between 1 and 9, not {mem_level}")
    if min_size < 0:
        raise ValueError(f"min_size must not be negative, not {min_size}")
    if library not in ("auto", *compress_libraries()):
        raise ValueError(
            f"library must be 'auto' or one of {compress_libraries()}, not {library!r}"
        )


def _resolve_library(library: str) -> str:
    return ("isal" if _isal is not None else "zlib") if library == "auto" else library

def _check_window_bits(name: str, bits: int) -> None:
    if not 8 <= bits <= _MAX_WINDOW_BITS:
        raise ValueError(f"{name} must be between 8 and 15, not {bits}")


class PerMessageDeflate(Extension):
    """The permessage-deflate codec for one connection, with the negotiated parameters.

    "local" is this endpoint's compressor (its outgoing messages), "remote" the peer's, which
    this endpoint decompresses. zlib objects are created on first use and dropped after each
    message without context takeover. With context takeover, the codec also keeps the end of
    each direction's stream (what the LZ77 windows hold: at most 2**window_bits bytes), so
    ``park()`` can drop both zlib objects of an idle connection (some 40 KiB) and rebuild
    them later, primed with those bytes, as if they had never gone.

    ``library`` chooses who compresses: "zlib" (the standard library), "isal" (ISA-L, the
    ``isal`` extra; ``compress_level`` maps to its levels 0-3; the fewest instructions),
    "zlib-ng" (the ``zlib-ng`` extra; zlib's levels, fewer bytes than ISA-L for more
    instructions), or "auto": isal when it is installed. Decompression is zlib-ng's where
    installed, else zlib's: both honour the output bound that is relied on.
    """

    name = _NAME
    uses_rsv1 = True

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_level: int = 6,
        mem_level: int = 5,
        min_size: int = 32,
        library: str = "auto",
        uncompressed_fallback: bool = True,
    ) -> None:
        _check_window_bits("remote_max_window_bits", remote_max_window_bits)
        _check_window_bits("local_max_window_bits", local_max_window_bits)
        _check_zlib_options(compress_level, mem_level, min_size, library)
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.min_size = min_size
        self.library = _resolve_library(library)
        self.uncompressed_fallback = uncompressed_fallback
        self._compressor: _Compressor | None = None
        # Whether _compressor is encode_shared's (zlib at SHARED_LEVEL) rather than encode's.
        self._compressor_shared = False
        # zlib's decompressobj, or zlib-ng's (the same interface).
        self._decompressor: zlib._Decompress | None = None
        # The peer's window of our messages and ours of its messages, while context takeover
        # keeps them (RFC 7692 §7.1.1); None where each message starts from an empty one.
        self._sent = None if local_no_context_takeover else _Window(1 << local_max_window_bits)
        self._received = (
            None if remote_no_context_takeover else _Tail(1 << remote_max_window_bits)
        )
        # The state of the peer's window of our messages, as a token (see shared_encoding):
        # what frames compressed for another connection in the same state are valid here.
        self._state = _fresh_state((
            local_no_context_takeover, local_max_window_bits, compress_level, mem_level,
            min_size, self.library, uncompressed_fallback))
        # Whether a compressed message is half received (its decompressor must stay).
        self._in_message = False
        # Bytes received after a block with BFINAL set, in the current message; None before it.
        self._trailer: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    def encode(
        self, payload: bytes | bytearray | memoryview, compress: bool = True
    ) -> tuple[bytes, bool]:
        """Compress a whole outgoing message; returns (payload, RSV1 for its first frame).

        Messages shorter than ``min_size``, sent with ``compress=False``, or (with
        ``uncompressed_fallback``) that would not shrink, go out as they are with RSV1 clear
        (RFC 7692 §6: compression is per message) and leave the context untouched.
        """
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if not compress or size < self.min_size:
            return (payload if isinstance(payload, bytes) else bytes(payload)), False
        compressor = self._compressor
        sent = self._sent
        if compressor is None:
            compressor = self._compressor = _new_compressor(
                self.local_max_window_bits, self.compress_level, self.mem_level, self.library,
                sent.value() if sent is not None else b"",
            )
            self._compressor_shared = False
        # A sync flush ends the output on a byte boundary with an empty stored block,
        # 00 00 ff ff, which the sender removes (RFC 7692 §7.2.1). An empty message thus
        # compresses to a single 0x00 byte (RFC 7692 §7.2.3.6).
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.uncompressed_fallback and len(data) - len(_TAIL) >= size:
            # It did not shrink: sent as it is, it costs the peer nothing to inflate. The
            # compressor has taken the message into its window, which the peer's will not
            # hold: rebuild it from the bytes the peer does hold.
            self._compressor = None
            return (payload if isinstance(payload, bytes) else bytes(payload)), False
        if sent is None:
            # RFC 7692 §7.1.1.1, §7.1.1.2: without context takeover each message starts from
            # an empty window; dropping the compressor also frees its memory until the next.
            self._compressor = None
        else:
            sent.add(
                payload if isinstance(payload, bytes) else bytes(payload[-sent.limit :])
            )
            self._state = object()
        return data[: -len(_TAIL)], True

    def encode_shared(self, payload: bytes) -> tuple[bytes, bool]:
        """``encode`` for a frame that a fan-out shares: compressed by stdlib zlib at
        ``SHARED_LEVEL`` (smaller than the codec's own level, and paid once for all the
        connections in this state). The compressor stays for the next publication; this
        connection's own messages use it too until it is parked or dropped.
        """
        if len(payload) >= self.min_size and (
                not self._compressor_shared or self._compressor is None):
            sent = self._sent
            self._compressor = _new_compressor(
                self.local_max_window_bits, SHARED_LEVEL, self.mem_level, "zlib",
                sent.value() if sent is not None else b"",
            )
            self._compressor_shared = True
        return self.encode(payload, True)

    def shared_encoding(self) -> object:
        """The token of this connection's compression state, under which a compressed frame
        may be shared with the other connections in the same state (a fan-out).

        A frame is valid for a peer when it refers only to bytes that peer's decompressor
        holds (RFC 7692 §7.2.1 lets the sender choose how much of its window it uses). Every
        connection starts from the same state (an empty window, per set of parameters);
        each message it compresses itself moves it to a state of its own; one that takes a
        shared frame moves to the state of the connection that compressed it
        (``adopt_state``). So subscribers that receive only publications stay in one state,
        and each publication is compressed once, with context takeover's ratio. Without
        context takeover the state never changes (RFC 7692 §7.1.1).
        """
        return self._state

    def shared_state(self) -> object:
        """What ``adopt_state`` takes: the state this connection reached by ``encode``."""
        sent = self._sent
        if sent is None:
            return None
        return (self._state, sent.parts, sent.size)

    def adopt_state(self, state: object) -> None:
        """Move to ``state`` (from ``shared_state`` of a connection in the same state as
        this one, after a message this connection sends as that one compressed it).

        The peer's window now holds that message too, which this connection's compressor
        has not seen: it is dropped and rebuilt, from the window, at the next own message.
        """
        if state is None:
            return
        token, parts, size = cast("tuple[object, tuple[bytes, ...], int]", state)
        if token is self._state:
            return  # the message went out uncompressed: nothing changed
        sent = cast("_Window", self._sent)
        self._state, sent.parts, sent.size = token, parts, size
        self._compressor = None

    def park(self) -> None:
        """Drop the zlib objects of an idle connection; the next message rebuilds them.

        With context takeover they are rebuilt primed with the end of each stream, which the
        codec keeps, so the peer sees no difference. A message being received keeps its
        decompressor until it ends.
        """
        self._compressor = None
        if not self._in_message:
            self._decompressor = None
        if self._received is not None:
            self._received.compact()

    def decode(
        self, payload: bytes | bytearray | memoryview, rsv1: bool, fin: bool, max_length: int
    ) -> bytes | bytearray | memoryview:
        """Decompress one frame of a message whose first frame had ``rsv1``.

        Never produces more than ``max_length + 1`` bytes: past ``max_length`` it raises
        ``MessageTooBig`` at once, so a small frame cannot inflate into a large allocation.
        Invalid compressed data raises ``ProtocolError``.
        """
        if not rsv1:
            # RFC 7692 §6: a message whose first frame has RSV1 clear is not compressed.
            return payload
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._new_decompressor()
        allowance = max(max_length, 0)
        try:
            joined = (fin and self._trailer is None and isinstance(payload, bytes)
                      and len(payload) <= _JOIN_MAX)
            if joined:
                # The last (usually the only) frame, with 00 00 ff ff appended (RFC 7692
                # §7.2.2), in one call. Bounded (docs/architecture.md, rule 6): zlib stops
                # after allowance + 1 bytes.
                out = decompressor.decompress(cast("bytes", payload) + _TAIL, allowance + 1)
                self._check_size(len(out), allowance)
                if decompressor.eof:
                    # A block with BFINAL set ended the stream (§7.2.3.4): inside the frame
                    # (what followed it is checked below), or inside the appended bytes.
                    unused = decompressor.unused_data
                    self._trailer = unused[: -len(_TAIL)] if len(unused) >= len(_TAIL) else b""
            elif self._trailer is None:
                # Bounded (docs/architecture.md, rule 6): zlib stops after allowance + 1 bytes.
                out = decompressor.decompress(payload, allowance + 1)
                self._check_size(len(out), allowance)
                if decompressor.eof:
                    self._trailer = decompressor.unused_data
            else:
                out = b""
                self._trailer += payload
            if self._trailer is not None and self._trailer not in _AFTER_FINAL_BLOCK:
                # A block with BFINAL set ended the deflate stream (RFC 7692 §7.2.3.4): any
                # more data would be lost silently, so it is an error.
                self._end_message(reset=True)
                raise ProtocolError("data after the final block of a compressed message")
            if fin and self._trailer is None and not joined:
                # RFC 7692 §7.2.2: append 00 00 ff ff to the message before inflating it.
                more = decompressor.decompress(_TAIL, allowance - len(out) + 1)
                self._check_size(len(out) + len(more), allowance)
                if more:
                    out += more
                if decompressor.eof:
                    # The appended bytes completed a final block: what follows is ours.
                    self._trailer = b""
        except _INFLATE_ERRORS as exc:
            self._end_message(reset=True)
            raise ProtocolError(f"invalid compressed data: {exc}") from exc
        if self._received is not None and out:
            # What the peer's compressor may refer to next (a BFINAL stream clears it below).
            self._received.add(out)
        self._in_message = not fin
        if fin:
            # RFC 7692 §7.2.2: keep the window for the next message unless the peer agreed not
            # to use it; a stream ended by BFINAL cannot continue, so it restarts empty.
            self._end_message(reset=self.remote_no_context_takeover or self._trailer is not None)
        return out

    def decode_message(
        self, payload: bytes | bytearray | memoryview, max_length: int
    ) -> bytes | bytearray | memoryview:
        """``decode(payload, True, True, max_length)`` for a whole message in one final frame:
        the same output, state and errors, in fewer steps for a payload of bytes."""
        if (self._in_message or self._trailer is not None or type(payload) is not bytes
                or len(payload) > _JOIN_MAX):
            return self.decode(payload, True, True, max_length)
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._new_decompressor()
        allowance = max_length if max_length > 0 else 0
        try:
            # RFC 7692 §7.2.2: 00 00 ff ff appended, inflated in one call. Bounded
            # (docs/architecture.md, rule 6): zlib stops after allowance + 1 bytes.
            out = decompressor.decompress(payload + _TAIL, allowance + 1)
        except _INFLATE_ERRORS as exc:
            self._end_message(reset=True)
            raise ProtocolError(f"invalid compressed data: {exc}") from exc
        if len(out) > allowance:
            self._end_message(reset=True)
            raise MessageTooBig("message inflates beyond the limit")
        if decompressor.eof:
            # A block with BFINAL set (RFC 7692 §7.2.3.4): decode's checks of what follows.
            unused = decompressor.unused_data
            trailer = unused[: -len(_TAIL)] if len(unused) >= len(_TAIL) else b""
            self._end_message(reset=True)
            if trailer not in _AFTER_FINAL_BLOCK:
                raise ProtocolError("data after the final block of a compressed message")
            return out
        received = self._received
        if received is None:
            # RFC 7692 §7.2.2: the peer agreed not to use the window; the next starts empty.
            self._decompressor = None
        elif out:
            received.add(out)
        return out

    def _new_decompressor(self) -> zlib._Decompress:
        received = self._received
        history = received.value() if received is not None else b""
        decompressor = self._decompressor = cast("zlib._Decompress", (
            _inflate.decompressobj(wbits=-self.remote_max_window_bits, zdict=history)
            if history
            else _inflate.decompressobj(wbits=-self.remote_max_window_bits)
        ))
        return decompressor

    def _check_size(self, size: int, allowance: int) -> None:
        if size > allowance:
            self._end_message(reset=True)
            raise MessageTooBig("message inflates beyond the limit")

    def _end_message(self, *, reset: bool) -> None:
        self._trailer = None
        if reset:
            self._decompressor = None
            self._in_message = False
            if self._received is not None:
                self._received.clear()


@dataclass
class _Offer:
    """The parameters of one offer or response, checked for syntax (RFC 7692 §7)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    #: Whether client_max_window_bits is present, with or without a value.
    client_max_window_bits_present: bool = False
    client_max_window_bits: int | None = None


def _parse(params: _Params, *, response: bool) -> _Offer:
    """Check one offer's or response's parameters; raise NegotiationError when invalid.

    RFC 7692 §7: an offer or response is invalid if it has an unknown parameter, a parameter
    twice, or a value that is not allowed. Names are compared exactly, as the RFC spells them.
    """
    parsed = _Offer()
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"duplicate parameter {name} in {_NAME}")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                # RFC 7692 §7.1.1.1, §7.1.1.2: these parameters have no value.
                raise NegotiationError(f"{name} takes no value, got {value!r}")
            setattr(parsed, name, True)
        elif name == "server_max_window_bits":
            # RFC 7692 §7.1.2.1: always with a value, 8..15 without leading zeros.
            parsed.server_max_window_bits = _parse_window_bits(name, value)
        elif name == "client_max_window_bits":
            parsed.client_max_window_bits_present = True
            # RFC 7692 §7.1.2.2: may be bare in an offer, has a value in a response.
            if value is not None or response:
                parsed.client_max_window_bits = _parse_window_bits(name, value)
        else:
            raise NegotiationError(f"unknown parameter {name} in {_NAME}")
    return parsed


def _parse_window_bits(name: str, value: str | None) -> int:
    bits = _WINDOW_BITS.get(value) if value is not None else None
    if bits is None:
        raise NegotiationError(f"invalid {name} {value!r}: must be 8..15 without leading zeros")
    return bits


class PerMessageDeflateFactory(ExtensionFactory):
    """Negotiates permessage-deflate (RFC 7692 §7.1) for a client or a server.

    Defaults are lean for servers that hold many connections, as websockets chose: a
    server compresses with a 4 KiB window (``server_max_window_bits`` None means 12) and
    asks clients that allow it to do the same (``client_max_window_bits`` None means 12;
    ``False`` leaves clients free), and ``mem_level`` is 5 instead of zlib's 8. With a
    client that lets the server choose (browsers do), that is 36 KiB of zlib buffers per
    connection instead of 288 KiB with zlib's defaults (``deflate_memory_estimate``; about
    50 KiB against 310 KiB measured with zlib's fixed state), for a ratio a little worse:
    a feed of small JSON messages shrinks to 16.8% of its size instead of 15.3%.

    A client offers by default ``client_max_window_bits`` without a value, which lets the
    server limit the client's window (as browsers do); ``server_max_window_bits`` None
    asks nothing of the server. ``client_max_window_bits``: True offers it bare, an int
    offers that limit, False does not offer it.

    The ``*_no_context_takeover`` flags ask for, or impose, a fresh window for every message
    in that direction: less memory between messages, a worse ratio.
    """

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = None,
        compress_level: int = 6,
        mem_level: int = 5,
        min_size: int = 32,
        library: str = "auto",
        uncompressed_fallback: bool = True,
        is_client: bool,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        if isinstance(client_max_window_bits, int) and not isinstance(
            client_max_window_bits, bool
        ):
            _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_zlib_options(compress_level, mem_level, min_size, library)
        self.library = library
        self.uncompressed_fallback = uncompressed_fallback
        self.is_client = is_client
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.min_size = min_size
        #: Client: the limit to ask of the server, or None. Server: its own window.
        self.server_max_window_bits: int | None
        #: Client: True (offer bare), an int (offer it) or None (do not offer).
        #: Server: the limit to impose on clients that allow it, or None (no limit).
        self.client_max_window_bits: int | bool | None
        if is_client:
            self.server_max_window_bits = server_max_window_bits
            self.client_max_window_bits = (
                True
                if client_max_window_bits is None
                else None
                if client_max_window_bits is False
                else client_max_window_bits
            )
        else:
            if client_max_window_bits is True:
                raise ValueError("client_max_window_bits=True is only meaningful for a client")
            self.server_max_window_bits = (
                DEFAULT_SERVER_WINDOW_BITS if server_max_window_bits is None
                else server_max_window_bits
            )
            self.client_max_window_bits = (
                DEFAULT_SERVER_CLIENT_WINDOW_BITS
                if client_max_window_bits is None
                else None
                if client_max_window_bits is False
                else client_max_window_bits
            )

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflateFactory(is_client={self.is_client}, "
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits})"
        )

    def _codec(
        self, *, remote_nct: bool, local_nct: bool, remote_bits: int, local_bits: int
    ) -> PerMessageDeflate:
        return PerMessageDeflate(
            remote_no_context_takeover=remote_nct,
            local_no_context_takeover=local_nct,
            remote_max_window_bits=remote_bits,
            local_max_window_bits=local_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            min_size=self.min_size,
            library=self.library,
            uncompressed_fallback=self.uncompressed_fallback,
        )

    def _require_role(self, client: bool) -> None:
        if self.is_client != client:
            role = "client" if self.is_client else "server"
            raise LocalError(f"this {_NAME} factory is configured for a {role}")

    # Client side.

    def offer(self) -> tuple[str, _Params]:
        """The client's offer, its parameters in the order RFC 7692 §7.1 lists them."""
        self._require_role(client=True)
        params: _Params = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits is not None:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return _NAME, params

    def accept_response(self, params: _Params) -> PerMessageDeflate:
        """Check the server's response to ``offer()``; raise NegotiationError to fail."""
        self._require_role(client=True)
        # RFC 7692 §7: the client fails the connection on an invalid response.
        response = _parse(params, response=True)
        if self.server_no_context_takeover and not response.server_no_context_takeover:
            # RFC 7692 §7.1.1.1: the server accepts this parameter only by echoing it; a
            # response without it is a configuration the client did not agree to.
            raise NegotiationError("server did not accept server_no_context_takeover")
        if self.server_max_window_bits is not None:
            # RFC 7692 §7.1.2.1: accepted only by a response with the same or a smaller value.
            if response.server_max_window_bits is None:
                raise NegotiationError("server did not accept server_max_window_bits")
            if response.server_max_window_bits > self.server_max_window_bits:
                raise NegotiationError(
                    f"server_max_window_bits={response.server_max_window_bits} exceeds the "
                    f"{self.server_max_window_bits} offered"
                )
        local_bits = _MAX_WINDOW_BITS
        if response.client_max_window_bits is not None:
            if self.client_max_window_bits is None:
                # RFC 7692 §7.1.2.2: the server MUST NOT send it unless the client offered it.
                raise NegotiationError("server sent client_max_window_bits, which was not offered")
            local_bits = response.client_max_window_bits
        offered = self.client_max_window_bits
        if offered is not None and not isinstance(offered, bool):
            # The value offered is the client's own promise (RFC 7692 §7.1.2.2): it holds even
            # if the server answers with a larger one, which is therefore not an error.
            local_bits = min(local_bits, offered)
        return self._codec(
            remote_nct=response.server_no_context_takeover,
            # RFC 7692 §7.1.1.2: the server may impose it; the client may also keep its hint.
            local_nct=response.client_no_context_takeover or self.client_no_context_takeover,
            remote_bits=response.server_max_window_bits or _MAX_WINDOW_BITS,
            local_bits=local_bits,
        )

    # Server side.

    def accept_offer(
        self, offers: list[_Params]
    ) -> tuple[_Params, PerMessageDeflate] | None:
        """Accept the first valid offer; None declines them all (no compression).

        RFC 7692 §7: an invalid offer (unknown or repeated parameter, bad value) is declined,
        not an error: the connection goes on with the next offer or without compression.
        The HTTP header syntax itself is the handshake parser's to reject. Every valid offer
        is acceptable, since every window size (8 included) is supported.
        """
        self._require_role(client=False)
        for params in offers:
            try:
                offer = _parse(params, response=False)
            except NegotiationError:
                continue
            return self._accept(offer)
        return None

    def _accept(self, offer: _Offer) -> tuple[_Params, PerMessageDeflate]:
        response: _Params = []
        # RFC 7692 §7.1.1.1: accept the client's request by echoing it; the server may also
        # choose it on its own.
        local_nct = self.server_no_context_takeover or offer.server_no_context_takeover
        if local_nct:
            response.append(("server_no_context_takeover", None))
        # RFC 7692 §7.1.1.2: imposing it is the server's choice. A client that offers it has
        # promised not to use context takeover anyway, so making it binding costs that client
        # nothing and lets this server free its decompressor between messages.
        remote_nct = self.client_no_context_takeover or offer.client_no_context_takeover
        if remote_nct:
            response.append(("client_no_context_takeover", None))
        local_bits = self.server_max_window_bits or _MAX_WINDOW_BITS
        if offer.server_max_window_bits is not None:
            # RFC 7692 §7.1.2.1: answer with the same or a smaller value.
            local_bits = min(local_bits, offer.server_max_window_bits)
        if offer.server_max_window_bits is not None or local_bits < _MAX_WINDOW_BITS:
            # Unrequested, it still tells the client it may decompress with a smaller window.
            response.append(("server_max_window_bits", str(local_bits)))
        remote_bits = _MAX_WINDOW_BITS
        if offer.client_max_window_bits_present:
            # RFC 7692 §7.1.2.2: only when offered, with a value no larger than the offer's.
            # A value offered without our own limit is echoed, so the window we decompress
            # with is agreed by both sides rather than inferred from a hint.
            limits = [
                bits
                for bits in (self.client_max_window_bits, offer.client_max_window_bits)
                if bits is not None and not isinstance(bits, bool)
            ]
            if limits:
                remote_bits = min(limits)
                response.append(("client_max_window_bits", str(remote_bits)))
        return response, self._codec(
            remote_nct=remote_nct, local_nct=local_nct, remote_bits=remote_bits,
            local_bits=local_bits,
        )
