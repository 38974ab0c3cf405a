"""RFC 6455 §5 frames: opcodes, the incremental frame parser, frame encoding and close payloads."""

from __future__ import annotations

import struct
import sys
from enum import IntEnum

from .close import CloseCode, valid_on_wire
from .errors import InvalidArgument, MessageTooBig, PayloadNotUTF8, ProtocolError, RemoteError
from .masking import apply_mask, speedups
from .masking import generate_mask as generate_mask  # looked up here, by Connection too

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "LARGE_PAYLOAD",
    "Frame",
    "FrameBuffer",
    "FrameParser",
    "Opcode",
    "RawFrame",
    "build_frame",
    "build_frame_python",
    "encode_close_payload",
    "encode_frame",
    "frame_parts",
    "parse_close_payload",
    "parse_frames",
    "parse_frames_python",
    "parse_messages",
    "parse_messages_python",
    "valid_close_code_on_wire",
]


class Opcode(IntEnum):
    """The opcodes RFC 6455 §5.2 defines; every other value is reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)

_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack
_UNPACK_16 = struct.Struct("!H").unpack_from
_UNPACK_64 = struct.Struct("!Q").unpack_from

Payload = bytes | bytearray | memoryview
#: A parsed frame as ``(first header byte, payload)``: FIN, RSV and opcode bits as sent.
RawFrame = tuple[int, "bytes | str | memoryview"]

# A frame this large (header included) that arrives over several reads is assembled in one
# buffer, unmasked in place, and its payload handed out as a view, instead of a list of
# chunks joined at the end and unmasked into a copy. With the copies, each large message took
# three fresh blocks of its size, which glibc returns to the system between messages, so each
# came back as page faults (2 ms per MiB measured, ten times the copying itself). A buffer
# whose views are all gone is kept for the next large frame (at most _SPARE_MAX of them, for
# every connection together).
_LARGE_FRAME = 64 * 1024
_SPARE_MAX = 2
#: Payloads from this size on are sent as a header and the payload (``frame_parts``), not one
#: bytes object: the copy of the payload behind its header costs more than a second write.
LARGE_PAYLOAD = 64 * 1024
#: The least room ``FrameParser.room`` offers for a read straight into a large frame: less,
#: and the read goes through the connection's shared read buffer (a copy) while the frame's
#: buffer grows by doubling as before; reads of a few bytes would cost a system call each.
_ROOM_MIN = 64 * 1024
_spare: list[FrameBuffer] = []
_refcount = getattr(sys, "getrefcount", None)  # CPython's; elsewhere buffers are not kept
#: Frames one ``feed`` returns at most; the rest of the input waits in the parser (``ready``),
#: so a read of tiny frames never becomes an unbounded list (DESIGN.md §6).
DEFAULT_BATCH_FRAMES = 1024


class FrameBuffer(bytearray):
    """The buffer a large frame is assembled in (a bytearray): the payload views the parser
    hands out are views of one. The parser writes into it only while nothing else refers to
    it, so such a view may be written to a transport without a copy (``frame_parts``)."""

    __slots__ = ()


def _take_spare(size: int) -> FrameBuffer | None:
    """A spare buffer of at least ``size`` bytes that nothing else refers to, or None."""
    if _refcount is not None:
        # A spare is free once nothing but this list refers to it: a transport may still hold
        # a view of it, queued to be written (the payload of an echo, sent without a copy).
        for _ in range(len(_spare)):
            try:
                buf = _spare.pop()  # one atomic step, so two threads never take the same buffer
            except IndexError:
                break
            if _refcount(buf) == 2 and len(buf) >= size:  # (2: this name, the argument)
                return buf
            _spare.insert(0, buf)  # still in use (or too small): kept for a later frame
    return None


def _start_buffer(first: memoryview) -> FrameBuffer:
    """The assembly buffer of a large frame, holding what arrived so far: a spare buffer if one
    is free, else exactly these bytes. It grows as the rest arrives (``_feed_large``,
    ``FrameParser.room``), never to the length the header declares at once: a header costs
    nothing until its bytes come."""
    buf = _take_spare(len(first))
    if buf is None:
        return FrameBuffer(first)
    # Through a memoryview: a bytearray's slice assignment from any other type copies the
    # bytes into a temporary bytearray first, two copies instead of one.
    memoryview(buf)[: len(first)] = first
    return buf


class Frame:
    """One parsed frame; ``payload`` is already unmasked."""

    __slots__ = ("fin", "opcode", "payload", "rsv1", "rsv2", "rsv3")

    def __init__(
        self,
        opcode: int,
        payload: Payload,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
    ) -> None:
        self.opcode = opcode
        self.payload = payload
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.opcode, bytes(self.payload), self.fin, self.rsv1, self.rsv2, self.rsv3) == (
            other.opcode,
            bytes(other.payload),
            other.fin,
            other.rsv1,
            other.rsv2,
            other.rsv3,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Frame(opcode={self.opcode!r}, len={len(self.payload)}, fin={self.fin}, "
            f"rsv=({self.rsv1:d}{self.rsv2:d}{self.rsv3:d}))"
        )


def encode_frame(
    opcode: int,
    payload: Payload,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool = False,
) -> bytes:
    """Serialise one frame into a single bytes object (one ``write`` per frame)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    if rsv3:
        b0 |= 0x10
    # RFC 6455 §5.3: a fresh, unpredictable key for every frame.
    return build_frame(b0, payload, generate_mask() if mask else None)


def build_frame_python(b0: int, payload: Payload, key: bytes | None, /) -> bytes:
    """Return the frame with first header byte ``b0`` (FIN, RSV, opcode), masked with ``key``
    (4 bytes) unless it is None: header, key and payload in one bytes object.

    ``payload`` is any C-contiguous bytes-like object (``TypeError`` otherwise); a ``b0``
    outside 0-255 or a key that is not 4 bytes raises ``ValueError``.
    """
    if not 0 <= b0 <= 0xFF:
        raise ValueError(f"b0 must be in range(0, 256), got {b0}")
    if type(payload) is not bytes:
        payload = _byte_view(payload)
    header = _header(b0, len(payload), key)
    if key is not None:
        return header + key + apply_mask(payload, key)
    return header + payload


def _header(b0: int, n: int, key: bytes | None) -> bytes:
    """The header of a frame of ``n`` payload bytes, without its mask key (checked here)."""
    mask_bit = 0x80 if key is not None else 0
    # RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
    if n < 126:
        header = bytes((b0, n | mask_bit))
    elif n < 0x10000:
        header = _PACK_16(b0, 126 | mask_bit, n)
    else:
        header = _PACK_64(b0, 127 | mask_bit, n)
    if key is not None and len(key) != 4:
        raise ValueError(f"key must be 4 bytes, got {len(key)}")
    return header


def frame_parts(b0: int, payload: Payload, key: bytes | None, /) -> tuple[bytes, Payload]:
    """The frame ``build_frame(b0, payload, key)`` returns, as two parts: its header (with the
    mask key) and the bytes that follow it. Written one after the other (the binding gathers
    the header with the payload's first bytes), a large payload goes out without being copied
    behind its header.

    The second part is ``payload`` itself when its bytes cannot change before they are
    written: ``bytes``, or a view of a received large frame (its ``FrameBuffer``, which the
    parser writes again only once nothing refers to it). Any other buffer is copied (masked
    with ``key`` when given), so that later changes of the caller's buffer do not reach the
    wire. The same arguments and errors as ``build_frame``.
    """
    if not 0 <= b0 <= 0xFF:
        raise ValueError(f"b0 must be in range(0, 256), got {b0}")
    view: Payload = payload
    if type(payload) is not bytes:
        view = _byte_view(payload)
    header = _header(b0, len(view), key)
    if key is not None:
        return header + key, apply_mask(view, key)
    if type(view) is memoryview and type(view.obj) is not FrameBuffer:
        view = view.tobytes()
    return header, view


def build_masked_frame_python(b0: int, payload: str | Payload, /) -> bytes:
    """Return a client's frame with first header byte ``b0``, masked with a fresh key from
    ``generate_mask`` (RFC 6455 §5.3): ``build_frame`` with the key drawn here, and a ``str``
    payload sent as its UTF-8 bytes (a text message's).
    """
    if isinstance(payload, str):
        payload = str.encode(payload)
    return build_frame(b0, payload, generate_mask())


def _byte_view(obj: object) -> memoryview:
    # The checks and messages of the C version, so both implementations fail alike.
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"payload must be a bytes-like object, not '{type(obj).__name__}'"
        ) from None
    if not view.c_contiguous:
        raise TypeError("payload must be a C-contiguous buffer")
    # Flat unsigned bytes, so len() counts bytes whatever the exporter's format or shape.
    return view.cast("B")


class FrameParser:
    """Turns a byte stream into frames, checking each header before its payload is buffered.

    ``feed`` never raises for bad input from the peer except with a ``RemoteError`` subclass,
    which the connection maps to a close code; after an error the parser must not be fed again.
    When valid frames precede the bad one in the same ``feed``, they are returned and the error
    is kept in ``error`` (and raised by the next ``feed``): the caller handles those frames, then
    checks ``error``. So the frames a stream yields do not depend on how it was split.

    The parse state: ``parse_frames`` (pure Python or its C twin in ``_speedups.c``) gets the
    parser as its one state struct and reads or writes only these public fields, by name:
    ``expect_mask``, ``allowed_rsv`` and ``max_size`` (read), ``msg_left`` and ``msg_rsv1``
    (the fragmented message being received), ``need`` (bytes the next frame needs, written
    only when it changes) and ``partial`` (set for a data frame cut short; the caller resets
    it). See docs/architecture.md, "The C speed-ups".
    """

    __slots__ = (
        "_chunks",
        "_fresh",
        "_large",
        "allowed_rsv",
        "batch",
        "buffered",
        "error",
        "expect_mask",
        "lent",
        "max_size",
        "msg_left",
        "msg_rsv1",
        "need",
        "partial",
    )

    def __init__(self, *, expect_mask: bool, max_size: int, allowed_rsv: int = 0,
                 batch: int = DEFAULT_BATCH_FRAMES) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        #: Whether frames must be masked (a server reading a client) or must not be.
        self.expect_mask = expect_mask
        #: Largest data payload accepted, checked from each header: per message when the
        #: fragments are sent as is (their lengths add up), per frame when the message has RSV1
        #: (compressed), whose decoded size the connection checks. Control frames: 125 bytes.
        self.max_size = max_size
        #: What the message being received may still bring, and whether it has RSV1. Tracked
        #: here, in stream order, so the check does not depend on how the input was split.
        self.msg_left = max_size
        self.msg_rsv1 = 0
        #: Bit mask of the RSV bits (0x70) that a negotiated extension gives a meaning to.
        self.allowed_rsv = allowed_rsv
        #: Frames one ``feed`` returns at most (then ``ready`` says more are buffered).
        self.batch = batch
        #: The peer's error found behind the frames the last ``feed`` returned, if any.
        self.error: RemoteError | None = None
        self._chunks: list[bytes] = []
        #: How many received bytes wait for the rest of their frame (0: none, the parser is
        #: between frames; read by the connection's fast path, written only here).
        self.buffered = 0
        #: Bytes the frame being received needs before it can be parsed further.
        self.need = 2
        #: The data frame whose payload is still arriving, as (opcode, rsv1 bit, mask key or
        #: b"", header length), or None; its payload bytes so far are ``buffered - header``.
        self.partial: tuple[int, int, bytes, int] | None = None
        # The large frame being received: its buffer, filled up to ``buffered`` bytes, grown
        # (doubling, up to ``need``) as the bytes arrive.
        self._large: FrameBuffer | None = None
        # The spare buffer ``room`` offered between frames, until ``filled`` says what came.
        self._fresh: FrameBuffer | None = None
        #: The buffer of the last large frame, whose payload views the last feed handed out;
        #: see ``release``.
        self.lent: FrameBuffer | None = None

    @property
    def ready(self) -> bool:
        """Whether buffered bytes may hold complete frames (a ``feed`` stopped at ``batch``):
        ``feed(b"")`` returns them."""
        return bool(self._chunks) and self.buffered >= self.need

    def tail(self, n: int) -> bytes | bytearray | memoryview:
        """The last ``n`` bytes buffered (those of the partial frame that arrived last)."""
        if n <= 0:
            return b""
        large = self._large
        if large is not None:
            fill = self.buffered
            return memoryview(large)[fill - n : fill]
        last = self._chunks[-1] if self._chunks else b""
        return last[len(last) - n :] if n < len(last) else last

    def clear(self) -> None:
        """Drop every buffered byte (the connection is gone): nothing waits for the collector."""
        self._chunks.clear()
        self._large = None
        self._fresh = None
        self.lent = None
        self.partial = None
        self.buffered = 0
        self.need = 2

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame now complete, in order."""
        return [
            # Without decode_text every payload is bytes.
            Frame(b0 & 0x0F, payload, b0 & 0x80 != 0,  # type: ignore[arg-type]
                  b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0)
            for b0, payload in self.feed_raw(data, False)
        ]

    def feed_raw(self, data: bytes, decode_text: bool = True) -> list[RawFrame]:
        """Like ``feed``, with each frame as ``(first header byte, payload)``: the fast path.

        With ``decode_text``, a final text frame without RSV bits (a whole uncompressed
        message, unless it breaks the fragmentation rules) comes as its ``str`` when its
        payload is valid UTF-8, else as its bytes, which the caller must refuse (1007).
        The payload of a large frame that took several feeds is a memoryview, valid until
        the next feed or ``release()``.
        """
        if self.error is not None:
            raise self.error
        if self.lent is not None:
            self.release()
        if self._large is not None:
            return self._feed_large(data, decode_text)
        if self._chunks:
            self._chunks.append(data)
            self.buffered += len(data)
            if self.buffered < self.need:
                # Join only when a whole frame can be read, so assembly stays linear.
                return []
            data = b"".join(self._chunks)
            self._chunks.clear()
        frames: list[RawFrame] = []
        self.partial = None
        try:
            pos = parse_frames(self, data, frames, decode_text)
        except RemoteError as exc:
            if not frames:
                raise
            # Deliver the valid frames before the bad one; the caller then reads ``error``.
            self.error = exc
            self._chunks.clear()
            self.buffered = 0
            return frames
        if pos < len(data):
            rest = len(data) - pos
            need = self.need
            if need >= _LARGE_FRAME and self.partial is not None:
                # A large data frame whose header is here: assemble it in place.
                self._large = _start_buffer(memoryview(data)[pos:])
            else:
                self._chunks.append(data[pos:])
            self.buffered = rest
        else:
            self.buffered = 0
            self.need = 2
        return frames

    def release(self) -> None:
        """The payload views handed out so far are no longer used by the parser's caller: their
        buffer may serve a later large frame once nothing else refers to it (a transport may
        still hold a view, to be written; see ``_start_buffer``). Called by the next feed
        anyway; calling it early frees memory."""
        buf = self.lent
        self.lent = None
        if buf is not None and _refcount is not None and len(_spare) < _SPARE_MAX:
            _spare.append(buf)

    def room(self) -> memoryview | None:
        """Where the next bytes of the large frame being assembled may be read to directly:
        a writable view of its buffer's free room, at most up to the frame's end; the caller
        writes n bytes at its start, then calls ``filled(n)``. None when no large frame is
        being assembled, or too little of it has arrived to make room for a useful read
        (then ``feed_raw`` takes the bytes). The buffer grows by doubling what it holds,
        never past the frame, so its size follows the bytes the peer actually sent."""
        buf = self._large
        if buf is None:
            # Between frames, after a large frame: a free spare, so that a large frame which
            # starts the next read is read into it whole (``filled`` keeps it, or copies the
            # bytes out as ``feed_raw`` would and gives the spare back). Never a new buffer.
            fresh = self._fresh
            if fresh is None:
                if (self.buffered or self.error is not None or self.lent is not None
                        or not _spare):
                    return None
                fresh = self._fresh = _take_spare(_ROOM_MIN)
                if fresh is None:
                    return None
            return memoryview(fresh)
        fill = self.buffered
        need = self.need
        size = len(buf)
        want = min(need - fill, _ROOM_MIN)
        if size - fill < want:
            if size < want:
                return None
            # (Straight to the frame's end when doubling would leave less than a read.)
            grown = FrameBuffer(need if need - 2 * size < _ROOM_MIN else 2 * size)
            memoryview(grown)[:fill] = memoryview(buf)[:fill]
            buf = self._large = grown
            size = len(grown)
        return memoryview(buf)[fill : min(size, need)]

    def filled(self, nbytes: int, decode_text: bool = True) -> list[RawFrame]:
        """``nbytes`` were written at the start of the last ``room()``: the frame once it is
        complete (a list of one), else an empty list. ``decode_text``: see ``feed_raw``."""
        buf = self._large
        if buf is None and self._fresh is not None and 0 <= nbytes <= len(self._fresh):
            return self._started(nbytes, decode_text)
        if buf is None or not 0 <= nbytes <= min(len(buf), self.need) - self.buffered:
            raise ValueError(f"{nbytes} bytes do not fit the room of a large frame")
        self.buffered += nbytes
        if self.buffered < self.need:
            return []
        return self._complete_large(buf, decode_text)

    @property
    def large(self) -> bool:
        """Whether a large frame is being assembled in its own buffer (``room``)."""
        return self._large is not None

    def _started(self, nbytes: int, decode_text: bool) -> list[RawFrame]:
        """``nbytes`` came into the spare that ``room`` offered between frames. When they
        begin with a large frame, the spare is its buffer: kept for the rest of it, or, when
        the frame is whole, parsed in place like a frame assembled over several reads (the
        bytes behind it are fed as usual). Anything else is fed as bytes (a copy, as from the
        shared read buffer) and the spare given back."""
        buf = self._fresh
        assert buf is not None
        self._fresh = None
        # The header alone says it (RFC 6455 §5.2): a 64-bit length, so a large frame.
        if nbytes >= 10 and buf[1] & 0x7F == 127:
            total = (14 if buf[1] & 0x80 else 10) + int.from_bytes(buf[2:10], "big")
            frames: list[RawFrame] = []
            self.partial = None
            view = memoryview(buf)[: min(total, nbytes)]
            try:
                # A frame cut short: only its header is read, checked, need and partial set.
                # A whole one: parsed in place. A bad header raises, as feed_raw would.
                parse_frames(self, view, frames, decode_text)
            except RemoteError:
                del view
                self._give_back(buf)
                raise
            del view
            if total > nbytes and self.partial is not None and not frames:
                self._large = buf
                self.buffered = nbytes
                return []
            if total <= nbytes and len(frames) == 1:
                self.need = 2
                self.partial = None
                if total < nbytes:
                    try:
                        frames += self.feed_raw(bytes(memoryview(buf)[total:nbytes]),
                                                decode_text)
                    except RemoteError as exc:
                        # Deliver the frame before the bad one; the caller reads ``error``.
                        self.error = exc
                        self._chunks.clear()
                        self.buffered = 0
                # Set last, so that the feed of the bytes behind the frame does not take it.
                self.lent = buf
                return frames
            # (Not reached for a valid header.)
            self.partial = None
            self.need = 2
        data = bytes(memoryview(buf)[:nbytes])
        self._give_back(buf)
        return self.feed_raw(data, decode_text)

    @staticmethod
    def _give_back(buf: FrameBuffer) -> None:
        if len(_spare) < _SPARE_MAX:
            _spare.append(buf)

    def _feed_large(self, data: bytes, decode_text: bool) -> list[RawFrame]:
        buf = self._large
        assert buf is not None
        need = self.need
        fill = self.buffered
        take = min(need - fill, len(data))
        end = fill + take
        if end > len(buf):
            # Room for the bytes that came, doubling (so copies stay linear), never beyond
            # the frame: memory follows what the peer actually sent, not what it declared.
            grown = FrameBuffer(min(need, max(2 * len(buf), end)))
            memoryview(grown)[:fill] = memoryview(buf)[:fill]
            buf = self._large = grown
        # (Through a memoryview: one copy, see _start_buffer.)
        memoryview(buf)[fill:end] = memoryview(data)[:take]
        if end < need:
            self.buffered = end
            return []
        frames = self._complete_large(buf, decode_text)
        if take < len(data):
            try:
                frames += self.feed_raw(data[take:], decode_text)
            except RemoteError as exc:
                # Deliver the frame before the bad one; the caller then reads ``error``.
                self.error = exc
                self._chunks.clear()
                self.buffered = 0
        # Set last, so that the feed of the bytes behind the frame does not take it back.
        self.lent = buf
        return frames

    def _complete_large(self, buf: FrameBuffer, decode_text: bool) -> list[RawFrame]:
        """The large frame now whole in ``buf``, parsed (exactly one frame, whose header was
        checked when it began); its payload view is lent (``lent``, see ``release``)."""
        need = self.need
        self._large = None
        self.buffered = 0
        self.need = 2
        frames: list[RawFrame] = []
        self.partial = None
        view = memoryview(buf)[:need]
        parse_frames(self, view, frames, decode_text)
        del view
        self.lent = buf
        return frames



def parse_frames_python(
    parser: FrameParser, data: bytes | bytearray | memoryview, out: list[RawFrame],
    decode_text: bool, /,
) -> int:
    """Append to ``out`` the complete frames at the start of ``data``; return where they end.

    Reads and updates the state of ``parser``: limits, fragmented message, ``need`` (left
    as it is when every byte was used) and ``partial`` (set for a data frame cut short; the
    caller resets it). A frame that breaks a rule raises a ``RemoteError`` subclass, after
    the frames before it were appended. ``decode_text``: see ``FrameParser.feed_raw``.
    From ``bytes`` the payloads are copies; from a writable buffer, they are unmasked in place
    and come as memoryviews of it (any other buffer raises ``TypeError``).
    """
    expect_mask = parser.expect_mask
    batch = parser.batch
    in_place = type(data) is not bytes
    if in_place:
        data = _writable_view(data)
    end = len(data)
    pos = 0
    while end - pos >= 2:
        if len(out) >= batch:
            # Enough for one call: the caller keeps the rest and parses it later (``ready``).
            parser.need = 2
            break
        b0 = data[pos]
        b1 = data[pos + 1]
        opcode = b0 & 0x0F
        rsv = b0 & 0x70
        # RFC 6455 §5.2: reserved bits MUST be 0 unless an extension defines them.
        if rsv & ~parser.allowed_rsv:
            raise ProtocolError("reserved bits set without a negotiated extension")
        # RFC 6455 §5.2: unknown opcodes MUST fail the connection.
        if opcode not in _KNOWN_OPCODES:
            raise ProtocolError(f"unknown opcode {opcode:#x}")
        fin = b0 & 0x80
        if opcode >= 0x8:
            # RFC 6455 §5.5: control frames MUST NOT be fragmented.
            if not fin:
                raise ProtocolError("fragmented control frame")
            # RFC 7692 §6.1: RSV1 on a control frame is an error even with compression.
            if rsv:
                raise ProtocolError("reserved bit set on a control frame")
        masked = b1 & 0x80
        # RFC 6455 §5.1: clients MUST mask, servers MUST NOT.
        if expect_mask and not masked:
            raise ProtocolError("unmasked frame from client")
        if masked and not expect_mask:
            raise ProtocolError("masked frame from server")
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                parser.need = 4
                break
            (length,) = _UNPACK_16(data, pos + 2)
            head = 4
            # RFC 6455 §5.2: the minimal number of bytes MUST be used.
            if length < 126:
                raise ProtocolError("frame length not minimally encoded")
        elif length == 127:
            if end - pos < 10:
                parser.need = 10
                break
            (length,) = _UNPACK_64(data, pos + 2)
            head = 10
            # RFC 6455 §5.2: the most significant bit MUST be 0.
            if length >> 63:
                raise ProtocolError("frame length has its top bit set")
            if length < 0x10000:
                raise ProtocolError("frame length not minimally encoded")
        if opcode >= 0x8:
            if length > 125:
                # RFC 6455 §5.5: control frame payloads are at most 125 bytes.
                raise ProtocolError("control frame payload longer than 125 bytes")
        else:
            # TEXT or BINARY starts a message with the whole limit; CONT gets what is left.
            left = parser.max_size if opcode else parser.msg_left
            if length > left:
                # RFC 6455 §10.4: refuse from the declared length, before buffering the
                # payload. (Control frames are bounded by 125 bytes, not by this limit.)
                raise MessageTooBig(
                    f"data frame of {length} bytes exceeds the {left} bytes left "
                    f"under the limit of {parser.max_size}"
                )
        if masked:
            head += 4
        total = head + length
        if end - pos < total:
            if end - pos < head:
                # Parse again once the mask key is here, to report the partial frame.
                parser.need = head
                break
            parser.need = total
            if opcode < 0x8:
                # So the connection can check a text payload as it arrives (RFC 6455 §8.1).
                key = bytes(data[pos + head - 4 : pos + head]) if masked else b""
                parser.partial = (opcode, rsv & 0x40, key, head)
            break
        start = pos + head
        # From bytes a copy; from the writable view (in place) a view of it.
        raw: bytes | memoryview
        if masked and in_place:
            data[start : start + length] = apply_mask(  # type: ignore[index]
                data[start : start + length], data[start - 4 : start]
            )
            raw = data[start : start + length]  # type: ignore[assignment]
        elif masked:
            raw = apply_mask(memoryview(data)[start : start + length], data[start - 4 : start])
        else:
            raw = data[start : start + length]  # type: ignore[assignment]
        payload: bytes | str | memoryview = raw
        if decode_text and b0 == 0x81:
            # A whole uncompressed text message (RFC 6455 §5.6): decoded here, in one pass
            # over bytes already in the cache; invalid UTF-8 stays bytes for the caller.
            try:  # noqa: SIM105 - contextlib.suppress costs more than the decode itself
                payload = raw.decode() if type(raw) is bytes else str(raw, "utf-8")
            except UnicodeDecodeError:
                pass
        out.append((b0, payload))
        pos += total
        if not fin and opcode < 0x8:
            # A fragmented message: the next fragments may bring only what is left, unless
            # it has RSV1 (compressed, RFC 7692 §6), whose decoded size the connection checks.
            if opcode:
                parser.msg_rsv1 = rsv & 0x40
            parser.msg_left = left if parser.msg_rsv1 else left - length
        if opcode == 0x8:
            # Data after a close frame is never read (RFC 6455 §5.5.1).
            return end
    else:
        if pos < end:
            parser.need = 2
    return pos


def parse_messages_python(
    data: bytes, expect_mask: bool, max_size: int, max_frames: int, max_bytes: int, /,
) -> list[str | bytes] | None:
    """The payloads of ``data`` when it is nothing but whole messages, or None.

    Whole messages: each in one final TEXT or BINARY frame without RSV bits (RFC 6455 §5.2,
    §5.6), masked when ``expect_mask`` and only then (§5.1), its length minimally encoded and
    at most ``max_size``, its text valid UTF-8 (§8.1); the frames end exactly at the end of
    ``data``; at most ``max_frames`` of them, and the ones before the last carry fewer than
    ``max_bytes`` in all (``len()`` of each: characters for text). Text comes as ``str``,
    binary as ``bytes``. Anything else gives None, and the caller parses ``data`` with the
    general parser instead, which checks and reports everything: this one never raises for
    the peer's bytes. It reads and changes no state (a read of whole frames leaves none).
    """
    if type(data) is not bytes:
        raise TypeError(f"data must be bytes, not '{type(data).__name__}'")
    out: list[str | bytes] = []
    end = len(data)
    if end < 2:
        return None
    pos = 0
    used = 0
    while pos < end:
        # The general path would keep the rest for a later batch (fairness): not this one.
        if len(out) >= max_frames or (out and used >= max_bytes) or end - pos < 2:
            return None
        b0 = data[pos]
        b1 = data[pos + 1]
        if (b0 != 0x81 and b0 != 0x82) or (not b1 & 0x80) != (not expect_mask):
            return None
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                return None
            (length,) = _UNPACK_16(data, pos + 2)
            head = 4
            if length < 126:
                return None
        elif length == 127:
            if end - pos < 10:
                return None
            (length,) = _UNPACK_64(data, pos + 2)
            head = 10
            if length >> 63 or length < 0x10000:
                return None
        if length > max_size:
            return None
        if expect_mask:
            head += 4
        start = pos + head
        if end - start < length:
            return None
        if expect_mask:
            payload = apply_mask(memoryview(data)[start : start + length],
                                 data[start - 4 : start])
        else:
            payload = data[start : start + length]
        if b0 == 0x81:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                return None  # the general path fails the connection (1007)
            used += len(text)
            out.append(text)
        else:
            used += length
            out.append(payload)
        pos = start + length
    return out


def _writable_view(obj: object) -> memoryview:
    # The checks and message of the C version, so both implementations fail alike.
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        view = None
    if view is None or view.readonly or not view.c_contiguous:
        raise TypeError(f"data must be bytes or a writable buffer, not '{type(obj).__name__}'")
    return view.cast("B")


# The compiled twins when built (imported in masking.py, the one import of the C module);
# an older build without them leaves the pure versions in place.
parse_frames = getattr(speedups, "parse_frames", parse_frames_python)
build_frame = getattr(speedups, "build_frame", build_frame_python)
parse_messages = getattr(speedups, "parse_messages", parse_messages_python)
build_masked_frame = getattr(speedups, "build_masked_frame", build_masked_frame_python)

#: Whether a close code may appear in a Close frame (RFC 6455 §7.4.1, §7.4.2).
valid_close_code_on_wire = valid_on_wire


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """The body of a Close frame; ``code=None`` sends an empty body (RFC 6455 §5.5.1)."""
    if code is None:
        if reason:
            raise InvalidArgument("a close reason needs a close code")
        return b""
    if not valid_close_code_on_wire(code):
        raise InvalidArgument(f"close code {code} may not be sent on the wire (RFC 6455 §7.4)")
    data = code.to_bytes(2, "big") + reason.encode()
    if len(data) > 125:
        raise InvalidArgument("close reason longer than 123 bytes once encoded")
    return data


def parse_close_payload(payload: Payload) -> tuple[int, str]:
    """Return (code, reason) of a received Close frame; 1005 when it carries no code."""
    n = len(payload)
    if n == 0:
        # RFC 6455 §7.1.5: no status code present means 1005.
        return CloseCode.NO_STATUS_RCVD, ""
    if n == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code_on_wire(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = bytes(payload[2:]).decode()
    except UnicodeDecodeError:
        # RFC 6455 §8.1 / §5.5.1: the reason is UTF-8 text.
        raise PayloadNotUTF8("close reason is not valid UTF-8") from None
    return code, reason
