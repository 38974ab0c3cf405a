"""split_head, the one-step path of the HTTP head parser, against its twin and the line parser:
the same heads, fields and ends, and through the parsers the same requests, responses and
errors (RFC 9112 §2-§5, RFC 9110 §5.5)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.core import http, masking
from wskit.core.errors import InvalidHandshake
from wskit.core.http import Headers, RequestParser, ResponseParser, split_head_python

Split = Callable[[Any, int, int, int], Any]


def _compiled() -> Split:
    # The C speed-ups are built by `make install`; in CI their absence is a failure.
    compiled = getattr(masking.speedups, "split_head", None)
    if compiled is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("wskit._speedups.split_head is not built")
        pytest.skip("the C speed-ups are not built")
    return compiled  # type: ignore[no-any-return]


@pytest.fixture
def compiled() -> Split:
    return _compiled()


LIMITS = (8192, 100, 65536)
GOOD = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"X-Spaces: \t a  b \t\r\nX-Empty:\r\nX-Latin: caf\xe9\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class TestTwins:
    def test_common_head(self, compiled: Split) -> None:
        start, fields, end = split_head_python(GOOD + b"\x81\x00", *LIMITS)  # type: ignore[misc]
        assert start == b"GET /chat?room=1 HTTP/1.1"
        assert fields[4:7] == [("X-Spaces", "a  b"), ("X-Empty", ""), ("X-Latin", "café")]
        assert end == len(GOOD)
        for data in (GOOD + b"\x81\x00", bytearray(GOOD), memoryview(GOOD)):
            if isinstance(data, memoryview):
                data = bytes(data)
            assert compiled(data, *LIMITS) == split_head_python(data, *LIMITS)

    @pytest.mark.parametrize(
        "data",
        [
            b"", b"\r\n", b"\r\nGET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n", b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n\r\n", b"GET /\r HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", b"GET / HTTP/1.1\r\n: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n", b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \x1b\r\n\r\n", b"GET / HTTP/1.1\r\n\r\r\n\r\n",
            b"X\r\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
        ],
    )
    def test_edge_cases(self, compiled: Split, data: bytes) -> None:
        assert compiled(data, *LIMITS) == split_head_python(data, *LIMITS)

    @pytest.mark.parametrize("limits", [(25, 100, 65536), (24, 100, 65536), (8192, 9, 65536),
                                        (8192, 8, 65536), (8192, 100, 200), (8192, 100, 199)])
    def test_limits(self, compiled: Split, limits: tuple[int, int, int]) -> None:
        """Each limit exactly reached is fine; one byte or field past it is None."""
        data = (b"GET /chat?room=1 HTTP/1.1\r\n" + b"".join(
            b"X-%d: %s\r\n" % (i, b"v" * 15) for i in range(9)) + b"\r\n")
        assert len(b"GET /chat?room=1 HTTP/1.1") == 25
        assert sum(len(b"X-0: " + b"v" * 15) + 2 for _ in range(9)) == 198
        assert compiled(data, *limits) == split_head_python(data, *limits)
        ok = limits[0] >= 25 and limits[1] >= 9 and limits[2] >= 198
        assert (compiled(data, *limits) is not None) == ok

    def test_arguments(self, compiled: Split) -> None:
        with pytest.raises(TypeError):
            compiled("text", *LIMITS)
        with pytest.raises(TypeError):
            compiled(GOOD, 1, 2)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            compiled(GOOD, "1", 2, 3)
        with pytest.raises(OverflowError):
            compiled(GOOD, 1 << 70, 2, 3)


def _parse_head_c() -> Any:
    try:
        from wskit._httpparse import parse_head
    except ImportError:
        if os.environ.get("CI") == "true":
            raise AssertionError("wskit._httpparse is not built") from None
        pytest.skip("the C speed-ups are not built")
    return parse_head


class TestParseHeadTwins:
    """parse_head (wskit._httpparse) against parse_head_python: the server's one-step parse
    of a request head, RFC 9112 §3 start line and §5 fields, RFC 6455 §4.1 HTTP/1.1."""

    @pytest.mark.parametrize(
        "start",
        [b"GET /chat?room=1 HTTP/1.1", b"HEAD / HTTP/1.1", b"POST /x HTTP/1.1",
         b"PUT / HTTP/1.1", b"get / HTTP/1.1", b"GET / HTTP/1.0", b"GET / HTTP/1.10",
         b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1", b"GET /\x80 HTTP/1.1",
         b"GET / x HTTP/1.1", b"GET HTTP/1.1", b"GET", b"GET /\x7f HTTP/1.1",
         b"GET\t/ HTTP/1.1", b"GET / HTTP/1.1\r"],
    )
    def test_start_lines(self, start: bytes) -> None:
        data = start + GOOD[GOOD.index(b"\r\n"):] + b"\x81\x00"
        compiled = _parse_head_c()
        assert compiled(data, *LIMITS) == http.parse_head_python(data, *LIMITS)

    def test_common_head(self) -> None:
        method, target, fields, index, end = _parse_head_c()(GOOD + b"\x81", *LIMITS)
        assert (method, target, end) == ("GET", "/chat?room=1", len(GOOD))
        assert fields == split_head_python(GOOD, *LIMITS)[1]  # type: ignore[index]
        assert index["x-spaces"] == ["a  b"] and index["sec-websocket-version"] == ["13"]
        assert method is "GET"  # noqa: F632 - the shared string, not a copy per request

    def test_long_names_and_repeats(self) -> None:
        name = b"X-" + b"A" * 300
        data = b"GET / HTTP/1.1\r\n" + name + b": 1\r\nx-" + b"a" * 300 + b": 2\r\n\r\n"
        compiled = _parse_head_c()
        assert compiled(data, *LIMITS) == http.parse_head_python(data, *LIMITS)
        assert compiled(data, *LIMITS)[3] == {"x-" + "a" * 300: ["1", "2"]}  # type: ignore[index]

    @pytest.mark.parametrize("limits", [(25, 100, 65536), (24, 100, 65536), (8192, 9, 65536),
                                        (8192, 8, 65536), (8192, 100, 200), (8192, 100, 199)])
    def test_limits(self, limits: tuple[int, int, int]) -> None:
        data = (b"GET /chat?room=1 HTTP/1.1\r\n" + b"".join(
            b"X-%d: %s\r\n" % (i, b"v" * 15) for i in range(9)) + b"\r\n")
        compiled = _parse_head_c()
        assert compiled(data, *limits) == http.parse_head_python(data, *limits)
        ok = limits[0] >= 25 and limits[1] >= 9 and limits[2] >= 198
        assert (compiled(data, *limits) is not None) == ok

    def test_arguments(self) -> None:
        compiled = _parse_head_c()
        with pytest.raises(TypeError):
            compiled("text", *LIMITS)
        with pytest.raises(TypeError):
            compiled(GOOD, 1, 2)
        with pytest.raises(TypeError):
            compiled(GOOD, "1", 2, 3)
        with pytest.raises(OverflowError):
            compiled(GOOD, 1 << 70, 2, 3)

    def test_the_compiled_twin_is_the_one_used(self) -> None:
        assert http.parse_head is _parse_head_c()


def _parse_response_head_c() -> Any:
    try:
        from wskit._httpparse import parse_response_head
    except ImportError:
        if os.environ.get("CI") == "true":
            raise AssertionError("wskit._httpparse is not built") from None
        pytest.skip("the C speed-ups are not built")
    return parse_response_head


SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Spaces: \t a  b \t\r\n"
    b"X-Empty:\r\nX-Latin: caf\xe9\r\nupgrade: h2c\r\n\r\n"
)


class TestParseResponseHeadTwins:
    """parse_response_head (wskit._httpparse) against parse_response_head_python: the
    client's one-step parse of a response head, RFC 9112 §4 status line and §5 fields."""

    @pytest.mark.parametrize(
        "start",
        [b"HTTP/1.1 101 Switching Protocols", b"HTTP/1.1 101", b"HTTP/1.1 101 ",
         b"HTTP/1.1 101  two  spaces ", b"HTTP/1.0 200 OK", b"HTTP/1.9 204 X",
         b"HTTP/2.0 101 X", b"HTTP/1.1 099 X", b"HTTP/1.1 600 X", b"HTTP/1.1 1O1 X",
         b"HTTP/1.1 10 X", b"HTTP/1.1 1011 X", b"HTTP/1.1  101 X", b"HTTP/1.1\t101 X",
         b"http/1.1 101 X", b"HTTP/1.1 101\tX", b"HTTP/1.1 101 caf\xe9", b"HTTP/1.1 101 a\x00",
         b"HTTP/1.1 101 a\x7f", b"HTTP/1.1 101 a\tb", b"HTTP/1.1 101 X\r", b"HTTP/1.1",
         b"HTTP/1.1 ", b"HTTP/1.1 1", b"ICY 200 OK", b" HTTP/1.1 101 X", b"HTTP/1.x 101 X",
         b"HTTP/1.1 599 Z", b"HTTP/1.1 100 Continue"],
    )
    def test_status_lines(self, start: bytes) -> None:
        data = start + SWITCHING[SWITCHING.index(b"\r\n"):] + b"\x81\x00"
        compiled = _parse_response_head_c()
        assert compiled(data, *LIMITS) == http.parse_response_head_python(data, *LIMITS)

    def test_common_head(self) -> None:
        head = _parse_response_head_c()(SWITCHING + b"\x81", *LIMITS)
        version, status, reason, fields, index, end = head
        assert (version, status, reason, end) == ("HTTP/1.1", 101, "Switching Protocols",
                                                  len(SWITCHING))
        assert fields == split_head_python(SWITCHING, *LIMITS)[1]  # type: ignore[index]
        assert index["upgrade"] == ["websocket", "h2c"] and index["x-spaces"] == ["a  b"]
        assert index == Headers(fields).by_name()
        assert head == http.parse_response_head_python(SWITCHING + b"\x81", *LIMITS)

    def test_known_names_as_sent_and_otherwise(self) -> None:
        """The usual names come as shared strings; any other spelling as it was sent."""
        data = (b"HTTP/1.1 101 X\r\nHost: a\r\nHOST: b\r\nhost: c\r\nSec-WebSocket-Key: k\r\n"
                b"Sec-Websocket-Key: l\r\nDate: d\r\nDates: e\r\nDat: f\r\n\r\n")
        compiled = _parse_response_head_c()
        head = compiled(data, *LIMITS)
        assert head == http.parse_response_head_python(data, *LIMITS)
        assert head[3] == [("Host", "a"), ("HOST", "b"), ("host", "c"), ("Sec-WebSocket-Key", "k"),
                           ("Sec-Websocket-Key", "l"), ("Date", "d"), ("Dates", "e"),
                           ("Dat", "f")]
        assert head[4] == {"host": ["a", "b", "c"], "sec-websocket-key": ["k", "l"],
                           "date": ["d"], "dates": ["e"], "dat": ["f"]}
        request = b"GET / HTTP/1.1" + data[data.index(b"\r\n"):]
        assert _parse_head_c()(request, *LIMITS) == http.parse_head_python(request, *LIMITS)

    @pytest.mark.parametrize("limits", [(26, 100, 65536), (25, 100, 65536), (8192, 9, 65536),
                                        (8192, 8, 65536), (8192, 100, 200), (8192, 100, 199)])
    def test_limits(self, limits: tuple[int, int, int]) -> None:
        data = (b"HTTP/1.1 101 Switching Up\r\n" + b"".join(
            b"X-%d: %s\r\n" % (i, b"v" * 15) for i in range(9)) + b"\r\n")
        assert len(b"HTTP/1.1 101 Switching Up") == 25
        compiled = _parse_response_head_c()
        assert compiled(data, *limits) == http.parse_response_head_python(data, *limits)
        ok = limits[0] >= 25 and limits[1] >= 9 and limits[2] >= 198
        assert (compiled(data, *limits) is not None) == ok

    def test_arguments(self) -> None:
        compiled = _parse_response_head_c()
        with pytest.raises(TypeError):
            compiled("text", *LIMITS)
        with pytest.raises(TypeError):
            compiled(SWITCHING, 1, 2)
        with pytest.raises(TypeError):
            compiled(SWITCHING, "1", 2, 3)
        with pytest.raises(OverflowError):
            compiled(SWITCHING, 1 << 70, 2, 3)
        assert compiled(bytearray(SWITCHING), *LIMITS) == compiled(SWITCHING, *LIMITS)

    def test_the_compiled_twin_is_the_one_used(self) -> None:
        assert http.parse_response_head is _parse_response_head_c()


PIECES = [
    b"GET /a HTTP/1.1", b"HTTP/1.1 101 Switching Protocols", b"HTTP/1.1 200 OK", b"\r\n",
    b"\n", b"\r", b"Host: a", b"Upgrade: websocket", b"Content-Length: 3", b"X-V: \t v \t",
    b" folded", b"Bad Name: v", b":", b"\x00", b"\x7f", b"\xe9", b"abc", b"\r\n\r\n", b"\t",
]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """Mostly well-formed heads, with pieces that break them in every way the parser sees."""
    parts = [draw(st.sampled_from(PIECES[:3])), b"\r\n"]
    for _ in range(draw(st.integers(0, 8))):
        parts.append(draw(st.sampled_from(PIECES[6:10]) | st.sampled_from(PIECES)))
        parts.append(draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"", b"\r"])))
    parts.append(draw(st.sampled_from([b"\r\n", b"\r\n", b"", b"\n"])))
    parts.append(draw(st.binary(max_size=6)))
    if draw(st.booleans()):
        parts.insert(0, b"\r\n")
    return b"".join(parts)


limits = st.tuples(st.integers(1, 40), st.integers(0, 6), st.integers(0, 120))


def outcome(parser_cls: type, data: bytes, cut: int, lim: tuple[int, int, int]) -> Any:
    parser = parser_cls(max_line_length=lim[0], max_headers=lim[1], max_header_bytes=lim[2])
    try:
        first = parser.feed(data[:cut])
        message = first if first is not None else parser.feed(data[cut:])
    except InvalidHandshake as exc:
        return ("error", str(exc), exc.status)
    if message is None:
        return None
    fields = list(message.headers.raw_items())
    if isinstance(message, http.Request):
        return (message.method, message.target, fields, parser.leftover)
    return (message.status, message.reason, fields, message.body, parser.leftover)


class TestAgainstTheLineParser:
    @given(data=heads(), lim=limits)
    @settings(max_examples=400, deadline=None)
    def test_twins_agree(self, data: bytes, lim: tuple[int, int, int]) -> None:
        compiled = _compiled()
        assert compiled(data, *lim) == split_head_python(data, *lim)
        assert compiled(bytearray(data), *lim) == split_head_python(bytearray(data), *lim)

    @given(data=heads(), lim=limits, cut=st.integers(0, 200),
           parser_cls=st.sampled_from([RequestParser, ResponseParser]))
    @settings(max_examples=400, deadline=None)
    def test_same_outcome(self, data: bytes, lim: tuple[int, int, int], cut: int,
                          parser_cls: type) -> None:
        """With either twin, or with none (every head line by line), the same message or
        the same error, fed whole or in two pieces."""
        compiled = _compiled()
        results = []
        saved = http.split_head
        try:
            for split in (compiled, split_head_python, lambda *args: None):
                http.split_head = split  # type: ignore[assignment]
                results.append(outcome(parser_cls, data, min(cut, len(data)), lim))
        finally:
            http.split_head = saved
        assert results[0] == results[1] == results[2]

    @given(data=heads(), lim=limits, twin=st.sampled_from(["C", "python"]))
    @settings(max_examples=400, deadline=None)
    def test_one_step_parse_agrees_or_declines(self, data: bytes, lim: tuple[int, int, int],
                                               twin: str) -> None:
        """http.parse_request (the server's first read, no parser object) gives the line
        parser's request and leftover, or None: never another request, never an error;
        with parse_head in C (wskit._httpparse) or in Python."""
        saved = http.split_head, http.parse_head
        try:
            http.split_head = _compiled() if twin == "C" else split_head_python
            http.parse_head = _parse_head_c() if twin == "C" else http.parse_head_python
            parsed = http.parse_request(data, *lim)
        finally:
            http.split_head, http.parse_head = saved
        if parsed is not None:
            request, end = parsed
            assert outcome(RequestParser, data, len(data), lim) == (
                request.method, request.target, request.headers.raw_items(), data[end:])
            assert request.headers.by_name() == Headers(request.headers.raw_items()).by_name()

    @given(data=heads() | st.binary(max_size=80).map(lambda b: b"GET / HTTP/1.1\r\n" + b),
           lim=limits | st.just(LIMITS))
    @settings(max_examples=400, deadline=None)
    def test_parse_head_twins_agree(self, data: bytes, lim: tuple[int, int, int]) -> None:
        compiled = _parse_head_c()
        assert compiled(data, *lim) == http.parse_head_python(data, *lim)
        assert compiled(bytearray(data), *lim) == http.parse_head_python(bytearray(data), *lim)

    @given(data=heads() | st.binary(max_size=80).map(lambda b: b"HTTP/1.1 101 X\r\n" + b),
           lim=limits | st.just(LIMITS))
    @settings(max_examples=400, deadline=None)
    def test_parse_response_head_twins_agree(self, data: bytes,
                                             lim: tuple[int, int, int]) -> None:
        compiled = _parse_response_head_c()
        assert compiled(data, *lim) == http.parse_response_head_python(data, *lim)
        assert compiled(bytearray(data), *lim) == http.parse_response_head_python(
            bytearray(data), *lim)

    @given(data=heads() | st.sampled_from([SWITCHING, b"HTTP/1.1 204 No\r\n\r\nrest"]),
           lim=limits | st.just(LIMITS), twin=st.sampled_from(["C", "python"]))
    @settings(max_examples=400, deadline=None)
    def test_one_step_response_agrees_or_declines(self, data: bytes, lim: tuple[int, int, int],
                                                  twin: str) -> None:
        """http.parse_response (the client's first read, no parser object) gives the line
        parser's response and leftover, or None: never another response, never an error;
        with parse_response_head in C (wskit._httpparse) or in Python."""
        saved = http.split_head, http.parse_response_head
        try:
            http.split_head = _compiled() if twin == "C" else split_head_python
            http.parse_response_head = (_parse_response_head_c() if twin == "C"
                                        else http.parse_response_head_python)
            parsed = http.parse_response(data, *lim)
        finally:
            http.split_head, http.parse_response_head = saved
        if parsed is not None:
            response, end = parsed
            assert outcome(ResponseParser, data, len(data), lim) == (
                response.status, response.reason, response.headers.raw_items(), b"",
                data[end:])
            parser = ResponseParser(max_line_length=lim[0], max_headers=lim[1],
                                    max_header_bytes=lim[2])
            assert response == parser.feed(data)
            assert response.headers.by_name() == Headers(response.headers.raw_items()).by_name()

    def test_the_compiled_twin_is_the_one_used(self, compiled: Split) -> None:
        assert http.split_head is compiled
