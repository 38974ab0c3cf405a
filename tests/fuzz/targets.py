"""Fuzz targets and their invariants: the core's receive path (both roles, with and without
permessage-deflate) and the HTTP head parsers (issue 9).

Each target takes bytes split into chunks and raises AssertionError when an invariant breaks:
no exception but the documented ones escapes, everything written is valid frames, the memory
spent stays under its bound, and no event breaks the limits.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

from wskit.core import deflate
from wskit.core.connection import (
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
from wskit.core.errors import InvalidHandshake
from wskit.core.frames import valid_close_code_on_wire
from wskit.core.handshake import accept_request
from wskit.core.http import RequestParser, ResponseParser
from wskit.core.http import parse_request as parse_head
from wskit.core.http import parse_response as parse_one_response

#: The limits of the connections under test: small, so that bounds are tight.
MAX_MESSAGE = 64 * 1024
MAX_FRAGMENTS = 64
#: Where ``make fuzz`` keeps inputs that reached an outcome not seen before (one per file).
CORPUS = Path(__file__).with_name("corpus")

_ROLE = {"server": Role.SERVER, "client": Role.CLIENT}


def _codec() -> deflate.PerMessageDeflate:
    return deflate.PerMessageDeflate(remote_no_context_takeover=False,
                                     local_no_context_takeover=False,
                                     remote_max_window_bits=15, local_max_window_bits=15)


def check_written(data: bytes, role: Role) -> list[tuple[int, bytes]]:
    """``data`` is whole frames as ``role`` may write them unprompted: pongs and Close
    (RFC 6455 §5.5), masked iff a client (§5.3), minimally encoded (§5.2)."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "a cut frame"
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80 and not b0 & 0x70, f"control frame flags {b0:#x}"
        opcode = b0 & 0x0F
        assert opcode in (0x8, 0xA), f"unprompted opcode {opcode:#x}"
        assert bool(b1 & 0x80) == (role is Role.CLIENT), "masking"
        n = b1 & 0x7F
        assert n <= 125, "control payload over 125 bytes"
        pos += 2
        key = b""
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "a cut payload"
        pos += n
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        if opcode == 0x8 and payload:
            assert len(payload) >= 2, "a 1-byte close payload"
            code = int.from_bytes(payload[:2], "big")
            assert valid_close_code_on_wire(code), f"close code {code}"
            payload[2:].decode()
        frames.append((opcode, payload))
    return frames


def receive(chunks: list[bytes], role_name: str, compressed: bool) -> str:
    """Feed ``chunks`` to a Connection; return a signature of what happened."""
    role = _ROLE[role_name]
    conn = Connection(role, max_message_size=MAX_MESSAGE, max_fragments=MAX_FRAGMENTS,
                      max_batch_messages=7, max_batch_bytes=MAX_MESSAGE,
                      extensions=[_codec()] if compressed else [])
    size = sum(map(len, chunks))
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        events: list[Event] = []
        for chunk in chunks:
            events += conn.receive_data(chunk)
            while conn.events_pending:
                batch = conn.receive_data(b"")
                assert sum(isinstance(e, (TextMessage, BinaryMessage)) for e in batch) <= 7
                events += batch
            check_written(conn.data_to_send(), role)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    # The input, a few messages at the limit (assembly, inflated output, the copy handed
    # out), and a decompressor's window and state.
    bound = 4 * size + 6 * MAX_MESSAGE + (512 << 10)
    assert peak <= bound, f"{peak} bytes for {size} bytes of input (bound {bound})"
    kinds = []
    for index, event in enumerate(events):
        if isinstance(event, TextMessage):
            assert isinstance(event.data, str) and len(event.data.encode()) <= MAX_MESSAGE
        elif isinstance(event, BinaryMessage):
            assert len(event.data) <= MAX_MESSAGE
        elif isinstance(event, (Ping, Pong)):
            assert len(event.data) <= 125
        elif isinstance(event, Failed):
            assert index == len(events) - 1, "events after a failure"
            assert conn.state is State.CLOSED
            assert event.error.__traceback__ is None
        else:
            assert isinstance(event, CloseReceived)
        kinds.append(type(event).__name__)
    if conn.state is State.CLOSED or conn.state is State.REMOTE_CLOSING:
        assert conn.receive_data(b"\x81\x00") == [], "input after the end is read"
    conn.connection_lost()
    return f"{role_name}-{compressed}:{conn.close_code}:{'/'.join(sorted(set(kinds)))}"


def parse_request(chunks: list[bytes]) -> str:
    """RequestParser and accept_request raise InvalidHandshake for any bad input, nothing else."""
    parser = RequestParser(max_line_length=512, max_headers=16, max_header_bytes=2048)
    request = None
    fed = 0
    try:
        for chunk in chunks:
            fed += 1
            request = parser.feed(chunk)
            if request is not None:
                break
        if request is None:
            return "incomplete"
        # The server's one-step parse of a first read agrees with the parser, or declines.
        data = b"".join(chunks[:fed])
        direct = parse_head(data, 512, 16, 2048)
        if direct is not None:
            assert direct[0] == request and data[direct[1]:] == parser.leftover
        accept_request(request, subprotocols=["chat"],
                       extensions=[deflate.PerMessageDeflateFactory(is_client=False)])
    except InvalidHandshake as exc:
        assert 400 <= exc.status < 600
        return f"refused:{exc.status}"
    return "accepted"


def parse_response(chunks: list[bytes]) -> str:
    """ResponseParser raises InvalidHandshake (status 502) for any bad input, nothing else."""
    parser = ResponseParser(max_line_length=512, max_headers=16, max_header_bytes=2048,
                            max_body=1024)
    try:
        for fed, chunk in enumerate(chunks, 1):
            response = parser.feed(chunk)
            if response is not None:
                assert len(response.body) <= 1024
                # The client's one-step parse of a first read agrees with the parser, or
                # declines (max_body does not matter to it: it takes no body).
                data = b"".join(chunks[:fed])
                direct = parse_one_response(data, 512, 16, 2048)
                if direct is not None:
                    assert direct[0] == response and data[direct[1]:] == parser.leftover
                return f"response:{response.status}"
    except InvalidHandshake as exc:
        assert exc.status == 502
        return "refused"
    return "incomplete"


def remember(target: str, signature: str, chunks: list[bytes], seen: set[str]) -> None:
    """Keep ``chunks`` in the corpus when their signature is new (``make fuzz`` only)."""
    if signature in seen:
        return
    seen.add(signature)
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    data = _pack(chunks)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def corpus(target: str) -> list[list[bytes]]:
    """The inputs kept for ``target`` (replayed by every run, the suite's slice included)."""
    folder = CORPUS / target
    if not folder.is_dir():
        return []
    return [_unpack(path.read_bytes()) for path in sorted(folder.iterdir())]


def _pack(chunks: list[bytes]) -> bytes:
    return b"".join(len(chunk).to_bytes(4, "big") + chunk for chunk in chunks)


def _unpack(data: bytes) -> list[bytes]:
    chunks, pos = [], 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return chunks


