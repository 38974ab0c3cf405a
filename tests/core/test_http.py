"""Tests of wskit.core.http: bounded parsing and serialising of HTTP/1.1 heads, bytes in/out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.core import http, masking
from wskit.core.errors import InvalidHandshake, InvalidState
from wskit.core.http import (
    Headers,
    Query,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    serialize_request,
    serialize_response,
)

REQUEST = (
    b"GET /chat?room=a&x=1&room=b HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


@pytest.fixture(autouse=True, params=["C", "python", "lines"])
def head_parser(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs with the one-step split_head in C, in Python, and without it (each
    line parsed on its own): the same results and errors (tests/core/test_head_speedups.py)."""
    compiled = getattr(masking.speedups, "split_head", None)
    if request.param == "C" and compiled is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("wskit._speedups.split_head is not built")
        pytest.skip("the C speed-ups are not built")
    chosen = {"C": compiled, "python": http.split_head_python,
              "lines": lambda *args: None}[request.param]
    # The server's one-step parse alike: its C twin (wskit._httpparse), its Python twin, or
    # none (the server then always asks the line parser).
    parse_head = (_compiled_parse_head() if request.param == "C" else
                  {"python": http.parse_head_python, "lines": lambda *args: None}[request.param])
    # And the client's (parse_response_head), likewise.
    parse_response_head = (
        _compiled_parse_head("parse_response_head") if request.param == "C" else
        {"python": http.parse_response_head_python, "lines": lambda *args: None}[request.param])
    saved = http.split_head, http.parse_head, http.parse_response_head
    http.split_head = chosen  # type: ignore[assignment]
    http.parse_head = parse_head  # type: ignore[assignment]
    http.parse_response_head = parse_response_head  # type: ignore[assignment]
    try:
        yield
    finally:
        http.split_head, http.parse_head, http.parse_response_head = saved


def _compiled_parse_head(name: str = "parse_head") -> Any:
    try:
        from wskit import _httpparse
    except ImportError:
        if os.environ.get("CI") == "true":
            raise AssertionError("wskit._httpparse is not built") from None
        pytest.skip("the C speed-ups are not built")
    return getattr(_httpparse, name)


def direct(data: bytes, **limits: int) -> tuple[Request, bytes] | None:
    """The server's one-step parse of a first read (http.parse_request), with what follows."""
    parsed = http.parse_request(data, **limits)
    return None if parsed is None else (parsed[0], data[parsed[1]:])


def parse_request(data: bytes, **limits: int) -> Request:
    """Through the line parser, and through the one-step parse, which agrees or declines."""
    parser = RequestParser(**limits)
    request = parser.feed(data)
    assert request is not None
    one_step = direct(data, **limits)
    if one_step is not None:
        assert one_step == (request, parser.leftover)
        assert one_step[0].headers.raw_items() == request.headers.raw_items()
    return request


def request_error(data: bytes, **limits: int) -> InvalidHandshake:
    """The line parser's error; the one-step parse declines such a head (None)."""
    parser = RequestParser(**limits)
    with pytest.raises(InvalidHandshake) as info:
        parser.feed(data)
    assert direct(data, **limits) is None
    return info.value


def response_error(data: bytes, **limits: int) -> InvalidHandshake:
    """The line parser's error; the client's one-step parse declines such a head (None)."""
    parser = ResponseParser(**limits)
    with pytest.raises(InvalidHandshake) as info:
        parser.feed(data)
    assert http.parse_response(data, **limits) is None
    return info.value


def feed_response(parser: ResponseParser, data: bytes) -> Response | None:
    """``parser.feed(data)``, the parser's first read: the client's one-step parse
    (http.parse_response) gives the same response and leftover, or declines (None)."""
    response = parser.feed(data)
    one_step = http.parse_response(data, parser.max_line_length, parser.max_headers,
                                   parser.max_header_bytes)
    if one_step is not None:
        assert response is not None
        assert (one_step[0], data[one_step[1]:]) == (response, parser.leftover)
        assert one_step[0].headers.raw_items() == response.headers.raw_items()
        assert one_step[0].headers.by_name() == response.headers.by_name()
    return response


class TestHeaders:
    """RFC 9110 §5: field names are case-insensitive; order and repeated fields are kept."""

    def test_of_fields_and_by_name(self) -> None:
        pairs = [("Host", "a"), ("X-A", "1"), ("x-a", "2"), ("Upgrade", "websocket")]
        made = Headers.of_fields(list(pairs))
        assert made == Headers(pairs)
        assert made.raw_items() == pairs
        index = {"host": ["a"], "x-a": ["1", "2"], "upgrade": ["websocket"]}
        assert made.by_name() == index
        made.compact()  # packed: the same answers, from a scan
        assert made.by_name() == index
        assert made.get_all("X-A") == ["1", "2"]
        made.add("Host", "b")
        assert made.by_name()["host"] == ["a", "b"]
        assert Headers.of_fields([]).by_name() == {}

    def test_case_insensitive_lookup(self) -> None:
        headers = Headers([("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")])
        assert headers.get("content-type") == "text/plain"
        assert headers.get("X-A") == "1"
        assert headers.get_all("X-a") == ["1", "2"]
        assert "CONTENT-TYPE" in headers
        assert "missing" not in headers
        assert 3 not in headers

    def test_missing(self) -> None:
        headers = Headers()
        assert headers.get("a") is None
        assert headers.get("a", "dflt") == "dflt"
        assert headers.get_all("a") == []
        assert len(headers) == 0

    def test_order_and_spelling_kept(self) -> None:
        pairs = [("B", "1"), ("a", "2"), ("b", "3")]
        headers = Headers(pairs)
        assert list(headers) == pairs
        assert list(headers.items()) == pairs
        assert headers.raw_items() == pairs
        assert len(headers) == 3

    def test_get_all_returns_a_copy(self) -> None:
        headers = Headers([("a", "1")])
        headers.get_all("a").append("2")
        assert headers.get_all("a") == ["1"]

    def test_add(self) -> None:
        headers = Headers()
        headers.add("X", "1")
        headers.add("x", "2")
        assert headers.get_all("X") == ["1", "2"]

    def test_equality_and_repr(self) -> None:
        assert Headers([("A", "1")]) == Headers([("a", "1")])
        assert Headers([("A", "1")]) != Headers([("A", "2")])
        assert Headers() != [("a", "1")]
        assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"
        with pytest.raises(TypeError):
            hash(Headers())


_NAMES = st.sampled_from(["Host", "host", "X-A", "x-a", "Sec-WebSocket-Key", "Cookie", "a"])
_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12)


class TestCompactHeaders:
    """``compact`` (an open connection's request headers, issue 14) changes nothing visible."""

    @staticmethod
    def compacted(pairs: list[tuple[str, str]]) -> Headers:
        headers = Headers(pairs)
        headers.compact()
        return headers

    @given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8), st.lists(_NAMES, max_size=4))
    def test_same_answers_as_before(self, pairs: list[tuple[str, str]], asked: list[str]) -> None:
        plain, packed = Headers(pairs), self.compacted(pairs)
        assert list(packed) == list(plain) == pairs
        assert list(packed.items()) == pairs
        assert packed.raw_items() == pairs
        assert len(packed) == len(pairs)
        assert packed == plain
        assert repr(packed) == repr(plain)
        for name in [*asked, "missing", "HOST"]:
            assert packed.get(name) == plain.get(name)
            assert packed.get(name, "dflt") == plain.get(name, "dflt")
            assert packed.get_all(name) == plain.get_all(name)
            assert (name in packed) == (name in plain)
        assert 3 not in packed

    def test_values_with_colons_and_empty_values(self) -> None:
        headers = self.compacted([("Host", "example.com:8080"), ("X-Empty", ""), ("A", "b:c:d")])
        assert headers.get("host") == "example.com:8080"
        assert headers.get("x-empty") == ""
        assert headers.get_all("a") == ["b:c:d"]
        assert headers.raw_items() == [("Host", "example.com:8080"), ("X-Empty", ""),
                                       ("A", "b:c:d")]

    def test_add_after_compact(self) -> None:
        headers = self.compacted([("X", "1")])
        headers.add("x", "2")
        assert headers.get_all("X") == ["1", "2"]
        assert headers.raw_items() == [("X", "1"), ("x", "2")]
        headers.compact()
        headers.add("Y", "3")
        assert len(headers) == 3 and headers.get("y") == "3"

    def test_get_all_returns_a_copy(self) -> None:
        headers = self.compacted([("a", "1")])
        headers.get_all("a").append("2")
        assert headers.get_all("a") == ["1"]

    def test_fields_built_by_hand_that_cannot_be_packed_stay_as_they_are(self) -> None:
        pairs = [("A:B", "1"), ("C", "x\ny")]
        headers = self.compacted(pairs)
        assert headers.raw_items() == pairs
        assert headers.get("a:b") == "1" and headers.get("c") == "x\ny"

    def test_empty(self) -> None:
        headers = self.compacted([])
        assert len(headers) == 0 and list(headers) == [] and headers.get("") is None

    def test_a_parsed_request_compacted(self) -> None:
        request = RequestParser().feed(REQUEST)
        assert request is not None
        before = request.headers.raw_items()
        request.headers.compact()
        assert request.headers.raw_items() == before
        assert request.headers.get("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="


class TestRequestTarget:
    """RFC 9112 §3.2: the request target, its path and its query."""

    @pytest.mark.parametrize(
        ("target", "path", "query"),
        [
            ("/", "/", {}),
            ("/chat", "/chat", {}),
            ("/chat?a=1&b=2&a=3", "/chat", {"a": "3", "b": "2"}),
            ("/p?x=%20y&flag", "/p", {"x": " y", "flag": ""}),
            ("//double/slash?q=1", "//double/slash", {"q": "1"}),
            ("http://example.com/abs?q=1", "/abs", {"q": "1"}),
            ("http://example.com", "/", {}),
            ("*", "*", {}),
        ],
    )
    def test_path_and_query(self, target: str, path: str, query: dict[str, str]) -> None:
        request = Request("GET", target, "HTTP/1.1", Headers())
        assert request.path == path
        assert request.query == query

    def test_repeated_query_parameters(self) -> None:
        """RFC 3986 §3.4 gives the query no structure: ``a=1&a=2`` keeps both values."""
        query = Request("GET", "/p?tag=a&x=1&tag=b&tag=&e", "HTTP/1.1", Headers()).query
        assert query == {"tag": "", "x": "1", "e": ""}
        assert query["tag"] == "" and query.get("x") == "1"
        assert query.get_all("tag") == ["a", "b", ""]
        assert query.get_all("x") == ["1"]
        assert query.get_all("missing") == []
        query.get_all("tag").append("not kept")  # a new list each time
        assert query.get_all("tag") == ["a", "b", ""]
        assert isinstance(query, dict) and Query() == {}


class TestRequestParser:
    """RFC 9112 §2-§5: a request head is a request line, header fields and an empty line."""

    def test_whole_request(self) -> None:
        parser = RequestParser()
        request = parser.feed(REQUEST)
        assert request is not None
        assert (request.method, request.target, request.version) == (
            "GET",
            "/chat?room=a&x=1&room=b",
            "HTTP/1.1",
        )
        assert request.path == "/chat"
        assert request.query == {"room": "b", "x": "1"}
        assert request.headers.get("host") == "server.example.com"
        assert request.headers.get("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
        assert len(request.headers) == 5
        assert parser.leftover == b""

    def test_byte_by_byte(self) -> None:
        parser = RequestParser()
        data = REQUEST + b"\x81\x85frame"
        results = [parser.feed(data[i : i + 1]) for i in range(len(REQUEST))]
        assert all(result is None for result in results[:-1])
        assert results[-1] == parse_request(REQUEST)

    def test_leftover_holds_the_first_websocket_bytes(self) -> None:
        parser = RequestParser()
        assert parser.feed(REQUEST[:10]) is None
        assert parser.feed(REQUEST[10:] + b"\x81\x05hello") is not None
        assert parser.leftover == b"\x81\x05hello"

    def test_split_crlf(self) -> None:
        parser = RequestParser()
        cut = REQUEST.index(b"\r\n") + 1
        assert parser.feed(REQUEST[:cut]) is None
        assert parser.feed(REQUEST[cut:]) is not None

    def test_header_value_whitespace_is_trimmed(self) -> None:
        request = parse_request(b"GET / HTTP/1.1\r\nA:   x y \t\r\nB:\r\nC:z\r\n\r\n")
        assert request.headers.raw_items() == [("A", "x y"), ("B", ""), ("C", "z")]

    def test_obs_text_is_latin1(self) -> None:
        request = parse_request(b"GET / HTTP/1.1\r\nA: caf\xe9\r\n\r\n")
        assert request.headers.get("a") == "caf\xe9"

    def test_leading_empty_lines_are_ignored(self) -> None:
        request = parse_request(b"\r\n\r\n" + REQUEST)
        assert request.method == "GET"

    def test_too_many_leading_empty_lines(self) -> None:
        error = request_error(b"\r\n" * 5 + REQUEST)
        assert error.status == 400
        assert "empty lines" in error.reason

    def test_feed_after_completion_is_a_local_error(self) -> None:
        parser = RequestParser()
        parser.feed(REQUEST)
        with pytest.raises(InvalidState):
            parser.feed(b"more")

    def test_error_is_sticky(self) -> None:
        parser = RequestParser()
        with pytest.raises(InvalidHandshake) as first:
            parser.feed(b"BAD\r\n")
        with pytest.raises(InvalidHandshake) as second:
            parser.feed(REQUEST)
        assert second.value is first.value

    def test_accepts_memoryview_and_bytearray(self) -> None:
        parser = RequestParser()
        assert parser.feed(bytearray(REQUEST[:20])) is None
        assert parser.feed(memoryview(REQUEST[20:])) is not None


class TestRequestParserMalformed:
    """RFC 9112 §2.2, §3, §5: a malformed request head is answered with 400."""

    @pytest.mark.parametrize(
        ("data", "words"),
        [
            (b"GET /\r\n\r\n", "request line"),
            (b"GET  / HTTP/1.1\r\n\r\n", "request line"),
            (b"GET / HTTP/1.1 \r\n\r\n", "request line"),
            (b"G(T / HTTP/1.1\r\n\r\n", "method"),
            (b"GET /\xff HTTP/1.1\r\n\r\n", "target"),
            (b"GET / HTTP/1.x\r\n\r\n", "version"),
            (b"GET / http/1.1\r\n\r\n", "version"),
            (b"GET / HTTP/1.1\r\nHost\r\n\r\n", "colon"),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "field name"),
            (b"GET / HTTP/1.1\r\nHo(st: x\r\n\r\n", "field name"),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "before the colon"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", "obs-fold"),
            (b"GET / HTTP/1.1\r\n\tHost: x\r\n\r\n", "obs-fold"),
            (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", "control"),
            (b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n", "control"),
            (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR"),
            (b"GET / HTTP/1.1\rX\r\n\r\n", "bare CR"),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\n", "bare LF"),
            (b"\n", "bare LF"),
        ],
    )
    def test_rejected_with_400(self, data: bytes, words: str) -> None:
        error = request_error(data)
        assert error.status == 400
        assert words in error.reason

    @pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2"])
    def test_other_versions_are_505(self, version: bytes) -> None:
        error = request_error(b"GET / " + version + b"\r\nHost: x\r\n\r\n")
        assert error.status == 505
        assert version.decode() in error.reason


class TestRequestParserLimits:
    """docs/architecture.md, rule 6: limits are checked before memory is spent (414 and 431)."""

    def test_request_line_at_the_limit(self) -> None:
        line = b"GET /" + b"a" * 10 + b" HTTP/1.1"
        assert parse_request(line + b"\r\n\r\n", max_line_length=len(line)).path == "/" + "a" * 10

    def test_request_line_too_long_is_414(self) -> None:
        line = b"GET /" + b"a" * 10 + b" HTTP/1.1"
        error = request_error(line + b"\r\n\r\n", max_line_length=len(line) - 1)
        assert error.status == 414

    def test_endless_request_line_fails_at_the_limit(self) -> None:
        parser = RequestParser(max_line_length=100)
        assert parser.feed(b"GET /" + b"a" * 95) is None  # exactly 100 bytes: still fine
        assert parser.feed(b"\r") is None  # a CR may start the CRLF
        with pytest.raises(InvalidHandshake) as info:
            parser.feed(b"a")
        assert info.value.status == 414

    def test_endless_request_line_in_small_pieces(self) -> None:
        parser = RequestParser(max_line_length=1000)
        with pytest.raises(InvalidHandshake) as info:
            for _ in range(2000):
                parser.feed(b"a")
        assert info.value.status == 414

    def test_header_line_too_long_is_431(self) -> None:
        error = request_error(
            b"GET / HTTP/1.1\r\nX: " + b"v" * 100 + b"\r\n\r\n", max_line_length=50
        )
        assert error.status == 431
        assert "header line" in error.reason

    def test_endless_header_line_fails_at_the_limit(self) -> None:
        parser = RequestParser(max_line_length=50)
        assert parser.feed(b"GET / HTTP/1.1\r\nX: ") is None
        assert parser.feed(b"v" * 47) is None  # 50 bytes
        with pytest.raises(InvalidHandshake) as info:
            parser.feed(b"v")
        assert info.value.status == 431

    def test_header_count(self) -> None:
        head = b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: 1\r\n" % i for i in range(5))
        assert len(parse_request(head + b"\r\n", max_headers=5).headers) == 5
        error = request_error(head + b"\r\n", max_headers=4)
        assert error.status == 431
        assert "more than 4 header fields" in error.reason

    def test_header_bytes(self) -> None:
        head = b"GET / HTTP/1.1\r\n" + b"X: 123456\r\n" * 4  # 11 bytes per field
        assert len(parse_request(head + b"\r\n", max_header_bytes=44).headers) == 4
        error = request_error(head + b"\r\n", max_header_bytes=43)
        assert error.status == 431
        assert "larger than 43 bytes" in error.reason

    def test_header_bytes_checked_on_a_partial_line(self) -> None:
        parser = RequestParser(max_header_bytes=100)
        assert parser.feed(b"GET / HTTP/1.1\r\n" + b"X: 1234567\r\n" * 8) is None  # 96 bytes
        assert parser.feed(b"Y: 1") is None  # 100 bytes so far
        with pytest.raises(InvalidHandshake) as info:
            parser.feed(b"2")
        assert info.value.status == 431


class TestResponseParser:
    """RFC 9112 §4, §6: the status line, header fields and a Content-Length body."""

    SWITCHING = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )

    def test_101_has_no_body_and_keeps_leftover(self) -> None:
        parser = ResponseParser()
        response = feed_response(parser, self.SWITCHING + b"\x81\x02hi")
        assert response == Response(
            101, "Switching Protocols", response.headers if response else Headers()
        )
        assert response is not None
        assert response.body == b""
        assert response.version == "HTTP/1.1"
        assert response.headers.get("upgrade") == "websocket"
        assert parser.leftover == b"\x81\x02hi"

    def test_one_step_parse_of_a_whole_101(self) -> None:
        """A client's first read that holds the whole 101: http.parse_response gives it with
        no parser object (unless no one-step parse is in use), and where the frames begin."""
        data = self.SWITCHING + b"\x81\x02hi"
        parsed = http.parse_response(data)
        if http.parse_response_head(data, 8192, 100, 16384) is None:
            assert parsed is None  # the "lines" run: every head goes to the parser
            return
        assert parsed is not None
        response, end = parsed
        assert data[end:] == b"\x81\x02hi"
        assert response == ResponseParser().feed(data)
        assert response.headers.by_name()["sec-websocket-accept"] == [
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
        # A response with a body (or that may have one) is the parser's to read.
        assert http.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi") is None
        assert http.parse_response(b"HTTP/1.1 403 No\r\n\r\n") is None
        assert http.parse_response(self.SWITCHING[:-2]) is None  # not whole yet

    def test_101_byte_by_byte(self) -> None:
        parser = ResponseParser()
        data = self.SWITCHING
        results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
        assert all(result is None for result in results[:-1])
        assert results[-1] is not None and results[-1].status == 101

    def test_body_by_content_length(self) -> None:
        parser = ResponseParser()
        assert parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nno ") is None
        response = parser.feed(b"entry" + b"!rest")
        assert response is not None
        assert (response.status, response.reason, response.body) == (403, "Forbidden", b"no entry!")
        assert parser.leftover == b"rest"

    def test_body_by_content_length_byte_by_byte(self) -> None:
        parser = ResponseParser()
        data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"
        results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
        assert all(result is None for result in results[:-1])
        assert results[-1] is not None and results[-1].body == b"abc"

    def test_no_content_length_means_no_body(self) -> None:
        parser = ResponseParser()
        response = feed_response(parser, b"HTTP/1.1 400 Bad Request\r\n\r\nwhatever")
        assert response is not None and response.body == b""
        assert parser.leftover == b"whatever"

    def test_transfer_encoding_body_is_left_unread(self) -> None:
        parser = ResponseParser()
        response = feed_response(
            parser,
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc"
        )
        assert response is not None and response.body == b""
        assert parser.leftover == b"3\r\nabc"

    @pytest.mark.parametrize("status", [100, 102, 204, 304])
    def test_statuses_without_content(self, status: int) -> None:
        parser = ResponseParser()
        data = b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\nabcde" % status
        response = feed_response(parser, data)
        assert response is not None and response.body == b""
        assert parser.leftover == b"abcde"

    def test_body_is_cut_at_max_body(self) -> None:
        parser = ResponseParser(max_body=4)
        assert parser.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1000\r\n\r\nab") is None
        response = parser.feed(b"cdefgh")
        assert response is not None and response.body == b"abcd"
        assert parser.leftover == b""

    def test_repeated_identical_content_length(self) -> None:
        parser = ResponseParser()
        response = feed_response(
            parser,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab"
        )
        assert response is not None and response.body == b"ab"

    @pytest.mark.parametrize(
        "line",
        [b"HTTP/1.1 101", b"HTTP/1.1 101 ", b"HTTP/1.0 200 OK", b"HTTP/1.1 404 Not \xe9 Found"],
    )
    def test_status_line_variants(self, line: bytes) -> None:
        response = feed_response(ResponseParser(), line + b"\r\n\r\n")
        assert response is not None
        assert response.status == int(line[9:12])
        assert response.version == line[:8].decode()

    def test_reason_phrase(self) -> None:
        response = feed_response(ResponseParser(), b"HTTP/1.1 101 Switching  Protocols\r\n\r\n")
        assert response is not None and response.reason == "Switching  Protocols"
        empty = feed_response(ResponseParser(), b"HTTP/1.1 101\r\n\r\n")
        assert empty is not None and empty.reason == ""


class TestResponseParserMalformed:
    """RFC 9112 §4, RFC 9110 §8.6: an invalid response fails the handshake (status 502)."""

    @pytest.mark.parametrize(
        ("data", "words"),
        [
            (b"HTTP/1.1 1O1 Switching\r\n\r\n", "status line"),
            (b"HTTP/1.1 99 Low\r\n\r\n", "status line"),
            (b"HTTP/1.1 600 High\r\n\r\n", "status line"),
            (b"HTTP/1.1  101 X\r\n\r\n", "status line"),
            (b"HTTP/1.1\r\n\r\n", "status line"),
            (b"ICY 200 OK\r\n\r\n", "status line"),
            (b"HTTP/2.0 101 X\r\n\r\n", "version"),
            (b"HTTP/1.1 101 X\x00\r\n\r\n", "reason"),
            (b"HTTP/1.1 101 X\r\nUpgrade websocket\r\n\r\n", "colon"),
            (b"HTTP/1.1 404 X\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"),
            (b"HTTP/1.1 404 X\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
            (b"HTTP/1.1 404 X\r\nContent-Length: \xd9\xa3\r\n\r\n", "Content-Length"),
            (b"HTTP/1.1 404 X\r\nContent-Length: \r\n\r\n", "Content-Length"),
        ],
    )
    def test_rejected_with_502(self, data: bytes, words: str) -> None:
        error = response_error(data)
        assert error.status == 502
        assert words in error.reason

    def test_status_line_too_long(self) -> None:
        error = response_error(b"HTTP/1.1 101 " + b"x" * 100, max_line_length=50)
        assert (error.status, "status line" in error.reason) == (502, True)

    def test_complete_status_line_too_long(self) -> None:
        error = response_error(b"HTTP/1.1 101 " + b"x" * 100 + b"\r\n", max_line_length=50)
        assert (error.status, "status line" in error.reason) == (502, True)

    def test_headers_too_many(self) -> None:
        error = response_error(b"HTTP/1.1 101 X\r\nA: 1\r\nB: 2\r\n\r\n", max_headers=1)
        assert error.status == 502

    def test_endless_header(self) -> None:
        error = response_error(b"HTTP/1.1 101 X\r\nA: " + b"1" * 100, max_header_bytes=50)
        assert error.status == 502


class TestSerialize:
    """RFC 9112 §3, §4, RFC 9110 §8.6: heads are written with CRLF and a correct Content-Length."""

    def test_request(self) -> None:
        data = serialize_request("GET", "/chat?x=1", [("Host", "h"), ("Upgrade", "websocket")])
        assert data == b"GET /chat?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"

    def test_request_round_trip(self) -> None:
        request = parse_request(serialize_request("GET", "/", [("A", "caf\xe9"), ("B", "")]))
        assert request.headers.raw_items() == [("A", "caf\xe9"), ("B", "")]

    @pytest.mark.parametrize(
        ("method", "target", "headers"),
        [
            ("G T", "/", []),
            ("GET", "/a b", []),
            ("GET", "", []),
            ("GET", "/", [("Bad Name", "v")]),
            ("GET", "/", [("X", "a\r\nInjected: 1")]),
            ("GET", "/", [("X", " padded")]),
            ("GET", "/", [("X", "\u20ac")]),
        ],
    )
    def test_request_invalid(
        self, method: str, target: str, headers: list[tuple[str, str]]
    ) -> None:
        with pytest.raises(ValueError):
            serialize_request(method, target, headers)

    def test_response_101_has_no_content_length(self) -> None:
        assert serialize_response(101, [("Upgrade", "websocket")]) == (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        )

    def test_response_with_body(self) -> None:
        data = serialize_response(404, [("Content-Type", "text/plain")], b"nope")
        assert data == (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope"
        )

    def test_response_empty_body_has_content_length_zero(self) -> None:
        assert serialize_response(403, []) == b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"

    def test_response_reason(self) -> None:
        assert serialize_response(400, [], reason="Nope").startswith(b"HTTP/1.1 400 Nope\r\n")
        assert serialize_response(499, []).startswith(b"HTTP/1.1 499 \r\n")
        assert serialize_response(204, []) == b"HTTP/1.1 204 No Content\r\n\r\n"

    @pytest.mark.parametrize(
        ("status", "headers", "body", "reason"),
        [
            (99, [], b"", None),
            (600, [], b"", None),
            (400, [], b"", "bad\r\nX: y"),
            (400, [("Content-Length", "3")], b"abc", None),
            (101, [], b"body", None),
            (204, [], b"body", None),
        ],
    )
    def test_response_invalid(
        self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None
    ) -> None:
        with pytest.raises(ValueError):
            serialize_response(status, headers, body, reason)

    def test_response_round_trip(self) -> None:
        parser = ResponseParser()
        response = parser.feed(serialize_response(426, [("Upgrade", "websocket")], b"upgrade!"))
        assert response is not None
        assert (response.status, response.reason, response.body) == (
            426,
            "Upgrade Required",
            b"upgrade!",
        )
        assert response.headers.raw_items() == [("Upgrade", "websocket"), ("Content-Length", "8")]


# Hypothesis strategies for valid header fields.
_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=_TCHAR, min_size=1, max_size=20)
field_values = st.text(
    alphabet=st.characters(codec="latin-1", exclude_categories=["Cc"]),
    max_size=30,
).map(lambda value: value.strip(" \t"))
fields = st.lists(st.tuples(tokens, field_values), max_size=10)


class TestProperties:
    """Round trips and robustness over generated input (RFC 9112 §2-§5)."""

    @given(fields, st.data())
    def test_request_round_trip_in_random_pieces(
        self, headers: list[tuple[str, str]], data: st.DataObject
    ) -> None:
        raw = serialize_request("GET", "/x?y=z", headers) + b"tail"
        cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
        parser = RequestParser()
        request = None
        start = 0
        for cut in [*cuts, len(raw)]:
            if request is not None:
                break
            request = parser.feed(raw[start:cut])
            start = cut
        assert request is not None
        assert request.headers.raw_items() == headers
        assert parser.leftover + raw[start:] == b"tail"

    @given(st.binary(max_size=300))
    def test_garbage_raises_only_invalid_handshake(self, data: bytes) -> None:
        for parser in (RequestParser(max_line_length=64), ResponseParser(max_line_length=64)):
            try:
                parser.feed(data)
            except InvalidHandshake as exc:
                assert exc.status in (400, 414, 431, 502, 505)

    @given(st.integers(100, 599), fields, st.binary(max_size=50))
    def test_response_round_trip(
        self, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        headers = [
            (n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")
        ]
        no_content = status < 200 or status in (204, 304)
        body = b"" if no_content else body
        parser = ResponseParser()
        response = parser.feed(serialize_response(status, headers, body))
        assert response is not None
        assert response.status == status
        assert response.body == body
        assert response.headers.raw_items()[: len(headers)] == headers
