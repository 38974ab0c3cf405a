"""Fuzzing the receive path (server and client roles, with and without permessage-deflate)
and the HTTP head parsers, with Hypothesis: frames built to be nearly valid (every opcode,
flag, length encoding, mask, compressed payloads), cut anywhere, and plain garbage.

In the suite each target runs a fixed, derandomized number of examples plus the corpus
(about 40 s in all on a quiet 2-core machine); ``make fuzz FUZZ_SECONDS=N`` runs each for
N seconds at random and records inputs with new outcomes in tests/fuzz/corpus.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from targets import corpus, parse_request, parse_response, receive, remember

LONG = settings().max_examples == 300 and settings().deadline is None
#: Seconds per target under ``make fuzz``.
SECONDS = float(os.environ.get("FUZZ_SECONDS", "60"))
#: Examples per target in the suite's slice.
SLICE = {"receive": 450, "http": 700}

_OPCODES = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB, 0xF]


def _mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@st.composite
def frames(draw: st.DrawFn, masked: bool) -> bytes:
    """One frame, nearly valid: any opcode and flags, a length that may lie or be encoded
    too long, masked as the role expects (mostly), a payload that may be compressed."""
    opcode = draw(st.sampled_from(_OPCODES))
    fin = draw(st.booleans()) if opcode < 8 else draw(st.sampled_from([True, True, False]))
    rsv = draw(st.sampled_from([0, 0, 0, 0x40, 0x40, 0x20, 0x10]))
    kind = draw(st.sampled_from(["bytes", "text", "zeros", "deflate", "close"]))
    if kind == "text":
        payload = draw(st.text(max_size=40)).encode()
    elif kind == "zeros":
        payload = bytes(draw(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000])))
    elif kind == "deflate":
        size = draw(st.sampled_from([10, 1000, 70000, 300000]))
        compressor = zlib.compressobj(wbits=-15)
        payload = (compressor.compress(bytes(size)) + compressor.flush(zlib.Z_SYNC_FLUSH))
        if draw(st.booleans()):
            payload = payload[:-4]
        rsv |= 0x40
    elif kind == "close":
        code = draw(st.sampled_from([1000, 1001, 1002, 1005, 1006, 1015, 2999, 3000, 4999, 5000]))
        payload = code.to_bytes(2, "big") + draw(st.binary(max_size=4))
    else:
        payload = draw(st.binary(max_size=200))
    declared = len(payload)
    if draw(st.integers(0, 9)) == 0:
        declared = draw(st.sampled_from([0, 125, 126, 65536, 1 << 20, (1 << 63) - 1, 1 << 63]))
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = masked != (draw(st.integers(0, 19)) == 0)  # now and then the wrong masking
    bit = 0x80 if m else 0
    encoding = draw(st.sampled_from(["min", "min", "min", "16", "64"]))
    if declared < 126 and encoding == "min":
        head = bytes((b0, bit | declared))
    elif declared < 65536 and encoding != "64":
        head = bytes((b0, bit | 126)) + declared.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + (declared % (1 << 64)).to_bytes(8, "big")
    if m:
        key = draw(st.binary(min_size=4, max_size=4))
        return head + key + _mask(payload, key)
    return head + payload


@st.composite
def streams(draw: st.DrawFn, masked: bool) -> list[bytes]:
    """A byte stream (frames, sometimes garbage) cut into chunks at random points."""
    parts = draw(st.lists(st.one_of(frames(masked), st.binary(max_size=16).map(bytes)),
                          max_size=12))
    if draw(st.booleans()):
        # Many empty fragments: a message in more frames than its limit allows.
        empty = bytes((0x00, 0x80, 0, 0, 0, 0)) if masked else b"\x00\x00"
        parts.insert(0, bytes((0x01, 0x80 | 0, 1, 2, 3, 4)) if masked else b"\x01\x00")
        parts.insert(1, empty * draw(st.sampled_from([10, 63, 64, 200])))
    data = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, max(len(data), 1)), max_size=6)))
    chunks, last = [], 0
    for cut in cuts:
        chunks.append(data[last:cut])
        last = cut
    chunks.append(data[last:])
    return [chunk for chunk in chunks if chunk] or [b""]


@st.composite
def http_heads(draw: st.DrawFn, request: bool) -> list[bytes]:
    """An HTTP head, nearly valid: a start line, WebSocket headers, mutations, cut anywhere."""
    if request:
        start = draw(st.sampled_from(["GET /chat HTTP/1.1", "GET / HTTP/1.0", "POST / HTTP/1.1",
                                      "GET  / HTTP/1.1", "get / http/1.1", "GET /%zz HTTP/1.1"]))
        fields = [("Host", "example.com"), ("Upgrade", "websocket"),
                  ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                  ("Sec-WebSocket-Version", "13"),
                  ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
                  ("Sec-WebSocket-Protocol", "chat, superchat")]
    else:
        start = draw(st.sampled_from(["HTTP/1.1 101 Switching Protocols", "HTTP/1.1 200 OK",
                                      "HTTP/1.1 503", "HTTP/2 101 x", "HTTP/1.1 99999 no"]))
        fields = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                  ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                  ("Content-Length", draw(st.sampled_from(["0", "5", "-1", "99999", "x"])))]
    fields = draw(st.permutations(fields))
    fields = fields[: draw(st.integers(0, len(fields)))]
    extra = draw(st.lists(st.tuples(st.text(min_size=0, max_size=8),
                                    st.text(max_size=12)), max_size=4))
    lines = [start] + [f"{name}: {value}" for name, value in [*fields, *extra]]
    head = "\r\n".join(lines).encode("utf-8", "replace") + b"\r\n\r\n"
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(head)))
        head = head[:pos] + draw(st.binary(max_size=6)) + head[pos:]
    head += draw(st.binary(max_size=8))
    cut = draw(st.integers(0, len(head)))
    return [head[:cut], head[cut:]]


def _run(target: str, test: Callable[[], None], replay: Callable[[list[bytes]], Any]) -> None:
    """Replay the corpus, then the Hypothesis test: once (the slice) or for SECONDS."""
    for chunks in corpus(target):
        replay(chunks)
    if not LONG:
        test()
        return
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        test()


_seen: dict[str, set[str]] = {}


def _keep(target: str, signature: str, chunks: list[bytes]) -> None:
    if LONG:
        remember(target, signature, chunks, _seen.setdefault(target, set()))


def _slice(kind: str) -> Any:
    if LONG:
        return settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    return settings(max_examples=SLICE[kind], derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("role", ["server", "client"])
def test_receive_path(role: str, compressed: bool) -> None:
    target = f"receive-{role}-{'deflate' if compressed else 'plain'}"

    @_slice("receive")
    @given(streams(masked=role == "server"))
    def test(chunks: list[bytes]) -> None:
        _keep(target, receive(chunks, role, compressed), chunks)

    _run(target, test, lambda chunks: receive(chunks, role, compressed))


@pytest.mark.parametrize("request_side", [True, False], ids=["request", "response"])
def test_http_head_parsers(request_side: bool) -> None:
    target = "http-request" if request_side else "http-response"
    parse = parse_request if request_side else parse_response

    @_slice("http")
    @given(http_heads(request=request_side))
    def test(chunks: list[bytes]) -> None:
        _keep(target, parse(chunks), chunks)

    _run(target, test, parse)
