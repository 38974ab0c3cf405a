"""Tests of wskit.core.handshake: the RFC 6455 §4 opening handshake, bytes in and bytes out."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.core import handshake
from wskit.core.errors import InvalidHandshake, NegotiationError
from wskit.core.extensions import Extension, ExtensionFactory, ExtensionParams
from wskit.core.handshake import (
    GUID,
    ClientHandshake,
    HandshakeResult,
    accept_key,
    accept_request,
    error_response,
    generate_key,
    parse_extension_header,
    parse_token_list,
    reject,
    serialize_extension_header,
    validate_request,
)
from wskit.core.http import (
    Headers,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    serialize_request,
)

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

Params = list[tuple[str, "str | None"]]


class FakeExtension(Extension):
    """A codec that only remembers the parameters it was negotiated with."""

    def __init__(self, name: str, params: Params) -> None:
        self.name = name
        self.params = params

    def encode(
        self, payload: bytes | bytearray | memoryview, compress: bool = True
    ) -> tuple[bytes, bool]:
        return bytes(payload), False

    def decode(
        self, payload: bytes | bytearray | memoryview, rsv1: bool, fin: bool, max_length: int
    ) -> bytes | bytearray | memoryview:
        return payload


class FakeFactory(ExtensionFactory):
    """Offers fixed parameters; accepts a response unless it has a parameter named "bad";
    on the server, accepts the first offer without a "bad" parameter, or declines."""

    def __init__(self, name: str, params: Params | None = None) -> None:
        self.name = name
        self.params = params or []
        self.offers_seen: list[list[Params]] = []

    def offer(self) -> ExtensionParams:
        return (self.name, self.params)

    def accept_response(self, params: Params) -> Extension:
        if any(param == "bad" for param, _ in params):
            raise NegotiationError(f"{self.name}: bad parameter in response")
        return FakeExtension(self.name, params)

    def accept_offer(self, offers: list[Params]) -> tuple[Params, Extension] | None:
        self.offers_seen.append(offers)
        for params in offers:
            if not any(param == "bad" for param, _ in params):
                return params, FakeExtension(self.name, params)
        return None


def make_request(
    *fields: tuple[str, str], method: str = "GET", target: str = "/chat", version: str = "HTTP/1.1"
) -> Request:
    return Request(method, target, version, Headers(fields))


BASE_FIELDS = (
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", SAMPLE_KEY),
    ("Sec-WebSocket-Version", "13"),
)


def base_request(*extra: tuple[str, str], drop: Iterable[str] = ()) -> Request:
    dropped = {name.lower() for name in drop}
    fields = [(n, v) for n, v in BASE_FIELDS if n.lower() not in dropped]
    return make_request(*fields, *extra)


def parse_response(data: bytes) -> Response:
    parser = ResponseParser()
    response = parser.feed(data)
    assert response is not None
    assert parser.leftover == b""
    return response


def handshake_error(req: Request) -> InvalidHandshake:
    with pytest.raises(InvalidHandshake) as info:
        validate_request(req)
    return info.value


class TestModule:
    """docs/architecture.md, rule 1: the core imports no I/O, clock or thread module."""

    def test_no_io_imports(self) -> None:
        from wskit.core import http

        for module in (handshake, http):
            source = Path(module.__file__ or "").read_text(encoding="utf-8")
            for name in ("asyncio", "socket", "time", "threading", "ssl", "selectors"):
                assert not re.search(rf"^\s*(import|from)\s+{name}\b", source, re.M), name


class TestKeys:
    """RFC 6455 §4.1 and §4.2.2 step 5.4: the key nonce and the accept hash."""

    def test_rfc_sample(self) -> None:
        assert accept_key(SAMPLE_KEY) == SAMPLE_ACCEPT

    def test_guid(self) -> None:
        assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def test_generate_key(self) -> None:
        keys = {generate_key() for _ in range(50)}
        assert len(keys) == 50
        for key in keys:
            assert len(base64.b64decode(key, validate=True)) == 16


class TestTokenList:
    """RFC 9110 §5.6.1: comma-separated lists, OWS and empty elements (Connection, protocols)."""

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            (["keep-alive, Upgrade"], ["keep-alive", "Upgrade"]),
            (["  keep-alive ,\tUPGRADE  "], ["keep-alive", "UPGRADE"]),
            (["a", "b, c"], ["a", "b", "c"]),
            ([", a,, b ,"], ["a", "b"]),
            (["", " "], []),
            ([], []),
        ],
    )
    def test_valid(self, values: list[str], expected: list[str]) -> None:
        assert parse_token_list(values) == expected

    @pytest.mark.parametrize("value", ["a b", "a, b c", "chat/1", '"quoted"', "a;b"])
    def test_invalid(self, value: str) -> None:
        with pytest.raises(InvalidHandshake) as info:
            parse_token_list([value])
        assert info.value.status == 400


class TestExtensionHeader:
    """RFC 6455 §9.1: the Sec-WebSocket-Extensions grammar."""

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            (["foo"], [("foo", [])]),
            (["foo; bar"], [("foo", [("bar", None)])]),
            (["foo;bar=1;baz"], [("foo", [("bar", "1"), ("baz", None)])]),
            (["foo ; bar = 1 ; baz"], [("foo", [("bar", "1"), ("baz", None)])]),
            (['foo; bar="1"'], [("foo", [("bar", "1")])]),
            (['foo; bar="a\\-b"'], [("foo", [("bar", "a-b")])]),
            (['foo; bar = "x"  , baz'], [("foo", [("bar", "x")]), ("baz", [])]),
            (
                ["permessage-deflate; client_max_window_bits, permessage-deflate"],
                [
                    ("permessage-deflate", [("client_max_window_bits", None)]),
                    ("permessage-deflate", []),
                ],
            ),
            (["a", "b; x=1, c"], [("a", []), ("b", [("x", "1")]), ("c", [])]),
            ([" , a ,, b , "], [("a", []), ("b", [])]),
            ([], []),
        ],
    )
    def test_valid(self, values: list[str], expected: list[ExtensionParams]) -> None:
        assert parse_extension_header(values) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "",
            " , ",
            "foo;",
            "foo; =1",
            "foo; bar=",
            "foo; bar=a b",
            'foo; bar="a b"',
            'foo; bar=""',
            'foo; bar="unterminated',
            "foo bar",
            "foo; bar baz",
            "f(o)o",
            ";foo",
            "foo, ;bar",
            "foo; bar=1=2",
            "foo; bar=@",
        ],
    )
    def test_malformed(self, value: str) -> None:
        with pytest.raises(InvalidHandshake) as info:
            parse_extension_header([value])
        assert info.value.status == 400
        assert "Sec-WebSocket-Extensions" in info.value.reason

    def test_serialize(self) -> None:
        header = serialize_extension_header(
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", None), ("server_max_window_bits", "10")],
                ),
                ("x", []),
            ]
        )
        assert header == "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x"

    @pytest.mark.parametrize(
        "extensions",
        [[("a b", [])], [("a", [("b c", None)])], [("a", [("b", "c d")])], [("a", [("b", "")])]],
    )
    def test_serialize_refuses_non_tokens(self, extensions: list[ExtensionParams]) -> None:
        with pytest.raises(ValueError):
            serialize_extension_header(extensions)

    @given(
        st.lists(
            st.tuples(
                st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True),
                st.lists(
                    st.tuples(
                        st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True),
                        st.none()
                        | st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True),
                    ),
                    max_size=4,
                ),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def test_serialize_then_parse_is_identity(self, extensions: list[ExtensionParams]) -> None:
        assert parse_extension_header([serialize_extension_header(extensions)]) == extensions

    @given(st.text(max_size=60))
    def test_parse_raises_only_invalid_handshake(self, value: str) -> None:
        try:
            parse_extension_header([value])
        except InvalidHandshake as exc:
            assert exc.status == 400


class TestClientRequest:
    """RFC 6455 §4.1: the client's opening handshake request."""

    def test_request_bytes(self) -> None:
        client = ClientHandshake(
            "example.com:8080",
            "/chat?x=1",
            origin="http://example.com",
            subprotocols=["chat", "superchat"],
            extensions=[FakeFactory("foo", [("a", "1"), ("b", None)]), FakeFactory("bar")],
            extra_headers=[("Authorization", "Bearer t"), ("X-A", "1")],
        )
        parser = RequestParser()
        request = parser.feed(client.request_bytes())
        assert request is not None
        assert (request.method, request.target, request.version) == ("GET", "/chat?x=1", "HTTP/1.1")
        assert request.headers.raw_items() == [
            ("Host", "example.com:8080"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", client.key),
            ("Sec-WebSocket-Version", "13"),
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Extensions", "foo; a=1; b, bar"),
            ("Authorization", "Bearer t"),
            ("X-A", "1"),
        ]
        assert validate_request(request) == client.key

    def test_minimal_request(self) -> None:
        client = ClientHandshake("[::1]:9000", "/")
        data = client.request_bytes()
        assert data == (
            b"GET / HTTP/1.1\r\nHost: [::1]:9000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + client.key.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def test_fresh_key_per_handshake(self) -> None:
        assert ClientHandshake("h", "/").key != ClientHandshake("h", "/").key

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"subprotocols": ["a b"]},
            {"subprotocols": ["chat", "chat"]},
            {"extra_headers": [("Sec-WebSocket-Key", SAMPLE_KEY)]},
            {"extra_headers": [("connection", "close")]},
            {"extra_headers": [("Host", "other")]},
            {"origin": "o", "extra_headers": [("Origin", "p")]},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            ClientHandshake("h", "/", **kwargs)  # type: ignore[arg-type]

    def test_origin_in_extra_headers_is_allowed_without_origin(self) -> None:
        client = ClientHandshake("h", "/", extra_headers=[("Origin", "http://o")])
        assert b"\r\nOrigin: http://o\r\n" in client.request_bytes()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"origin": "http://o", "subprotocols": ["a", "b"]},
            {"extensions": [FakeFactory("foo", [("a", "1")])], "extra_headers": [("X", "1")]},
            {"extra_headers": [("X", "1"), ("x", "2"), ("Cookie", "c=d; e")]},
        ],
    )
    def test_request_built_around_the_key(self, kwargs: dict[str, object]) -> None:
        """The head around the key is serialised once per URL and options (a cache): each
        request is the head of all its fields serialised at once, with its own key."""
        requests = set()
        for _ in range(3):
            client = ClientHandshake("h:81", "/a?b=c", **kwargs)  # type: ignore[arg-type]
            fields = [("Host", "h:81"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                      ("Sec-WebSocket-Key", client.key), ("Sec-WebSocket-Version", "13")]
            if client.origin is not None:
                fields.append(("Origin", client.origin))
            if client.subprotocols:
                fields.append(("Sec-WebSocket-Protocol", ", ".join(client.subprotocols)))
            if client.extensions:
                fields.append(("Sec-WebSocket-Extensions", serialize_extension_header(
                    [factory.offer() for factory in client.extensions])))
            fields.extend(client.extra_headers)
            data = client.request_bytes()
            assert data == serialize_request("GET", "/a?b=c", fields)
            requests.add(data)
        assert len(requests) == 3  # a fresh key each time (RFC 6455 §4.1)

    @pytest.mark.parametrize(
        ("host", "target", "extra"),
        [
            ("h", "/a b", []), ("h\r\nX: 1", "/", []), ("h", "/", [("X", "1\r\nY: 2")]),
            ("h", "/", [("X Y", "1")]), ("h", "/", [("X", " 1")]), ("h", "", []),
        ],
    )
    def test_invalid_fields_refused_at_every_request(
        self, host: str, target: str, extra: list[tuple[str, str]]
    ) -> None:
        """An invalid field is the ValueError of serialising the whole head, each time (a
        refusal is never cached as a head)."""
        client = ClientHandshake(host, target, extra_headers=extra)
        fields = [("Host", host), ("Sec-WebSocket-Key", client.key), *extra]
        with pytest.raises(ValueError) as whole:
            serialize_request("GET", target, fields)
        for _ in range(2):
            with pytest.raises(ValueError) as info:
                client.request_bytes()
            assert str(info.value) == str(whole.value)

    def test_a_value_that_cannot_be_a_cache_key(self) -> None:
        client = ClientHandshake("h", "/")
        client.extra_headers = [("X", ["not", "a", "str"])]  # type: ignore[list-item]
        with pytest.raises(TypeError, match="expected string"):
            client.request_bytes()
        client.extra_headers = [("X", "1")]
        assert client.request_bytes().endswith(b"\r\nX: 1\r\n\r\n")


def server_response(
    client: ClientHandshake,
    *extra: tuple[str, str],
    accept: str | None = None,
    drop: Sequence[str] = (),
    status_line: bytes = b"HTTP/1.1 101 Switching Protocols",
) -> Response:
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(client.key) if accept is None else accept),
    ]
    fields = [(n, v) for n, v in fields if n not in drop]
    head = status_line + b"\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in [*fields, *extra])
    return parse_response(head + b"\r\n")


def client_error(client: ClientHandshake, response: Response) -> InvalidHandshake:
    with pytest.raises(InvalidHandshake) as info:
        client.receive_response(response)
    return info.value


class TestClientResponseChecks:
    """RFC 6455 §4.1: the client validates the server's response (rules 1-4)."""

    def test_valid_response(self) -> None:
        client = ClientHandshake("h", "/")
        response = server_response(client)
        result = client.receive_response(response)
        assert result == HandshakeResult(None, [], response.headers)

    def test_mixed_case_and_token_lists(self) -> None:
        client = ClientHandshake("h", "/")
        response = server_response(client, drop=["Upgrade", "Connection"])
        response.headers.add("upgrade", "WebSocket")
        response.headers.add("CONNECTION", "keep-alive, UPGRADE")
        assert client.receive_response(response).subprotocol is None

    def test_non_101_with_body(self) -> None:
        client = ClientHandshake("h", "/")
        response = parse_response(
            b"HTTP/1.1 403 Forbidden\r\nX-Why: origin\r\nContent-Length: 13\r\n\r\norigin denied"
        )
        error = client_error(client, response)
        assert error.status == 403
        assert "403 Forbidden" in error.reason
        assert "origin denied" in error.reason
        assert ("X-Why", "origin") in error.headers

    def test_non_101_without_body_or_reason(self) -> None:
        client = ClientHandshake("h", "/")
        error = client_error(client, parse_response(b"HTTP/1.1 302\r\nLocation: /x\r\n\r\n"))
        assert error.status == 302
        assert error.reason == "server rejected WebSocket connection: HTTP 302"
        assert error.headers == [("Location", "/x")]

    def test_a_2xx_says_it_is_not_a_websocket_endpoint(self) -> None:
        """An HTTP server that serves the path: its page is not printed, the cause is said."""
        client = ClientHandshake("h", "/")
        response = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\n\r\n"
            b"<html>hi</html>"
        )
        error = client_error(client, response)
        assert error.status == 200
        assert error.reason == (
            "the server answered HTTP 200 OK instead of 101 Switching Protocols: "
            "not a WebSocket endpoint (a plain HTTP server, or the wrong path?)"
        )

    def test_only_the_first_line_of_a_text_body_and_never_html(self) -> None:
        client = ClientHandshake("h", "/")
        html = Response(404, "Not Found", Headers([("Content-Type", "text/html")]), b"<p>x</p>")
        assert client_error(client, html).reason == (
            "server rejected WebSocket connection: HTTP 404 Not Found")
        text = Response(403, "Forbidden", Headers(), b"origin denied\nsecond line")
        assert client_error(client, text).reason == (
            "server rejected WebSocket connection: HTTP 403 Forbidden: origin denied…")
        blank = Response(403, "Forbidden", Headers([("Content-Type", "text/plain")]), b" \n ")
        assert client_error(client, blank).reason.endswith("HTTP 403 Forbidden")

    def test_long_body_is_cut_in_the_reason(self) -> None:
        client = ClientHandshake("h", "/")
        response = Response(500, "Internal Server Error", Headers(), b"x" * 1000)
        assert len(client_error(client, response).reason) < 300

    def test_101_with_old_version(self) -> None:
        client = ClientHandshake("h", "/")
        response = server_response(client, status_line=b"HTTP/1.0 101 Switching Protocols")
        assert "version" in client_error(client, response).reason

    @pytest.mark.parametrize(
        ("drop", "extra", "words"),
        [
            (["Upgrade"], [], "Upgrade header in response: missing"),
            (["Upgrade"], [("Upgrade", "h2c")], "Upgrade header in response: h2c"),
            (["Upgrade"], [("Upgrade", "websocket, h2c")], "Upgrade"),
            ([], [("Upgrade", "websocket")], "Upgrade"),
            (["Connection"], [], "Connection header in response: missing"),
            (["Connection"], [("Connection", "keep-alive")], "Connection header"),
            (["Connection"], [("Connection", "up grade")], "malformed Connection"),
            (["Sec-WebSocket-Accept"], [], "expected one Sec-WebSocket-Accept header, got 0"),
            (
                [],
                [("Sec-WebSocket-Accept", "x")],
                "expected one Sec-WebSocket-Accept header, got 2",
            ),
        ],
    )
    def test_bad_headers(self, drop: list[str], extra: list[tuple[str, str]], words: str) -> None:
        client = ClientHandshake("h", "/")
        error = client_error(client, server_response(client, *extra, drop=drop))
        assert words in error.reason
        assert error.status == 101

    def test_wrong_accept(self) -> None:
        client = ClientHandshake("h", "/")
        error = client_error(client, server_response(client, accept=SAMPLE_ACCEPT))
        assert "Sec-WebSocket-Accept mismatch" in error.reason

    @pytest.mark.parametrize(
        ("fields", "words"),
        [
            # Each field once, as the rules want it: the common response, taken in one pass.
            ([("Upgrade", "websocket"), ("Connection", "Upgrade")], None),
            ([("upgrade", "WebSocket"), ("CONNECTION", "upgrade")], None),
            # Anything else is weighed by each rule, as before.
            ([("Upgrade", " websocket\t"), ("Connection", "Upgrade")], None),
            ([("Upgrade", "websocket"), ("Connection", " Upgrade ")], None),
            ([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Connection", "close")], None),
            ([("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade")], None),
            ([("Upgrade", "websocket"), ("Upgrade", "websocket"), ("Connection", "Upgrade")],
             "Upgrade header"),
            ([("Upgrade", "web socket"), ("Connection", "Upgrade")], "Upgrade header"),
            ([("Upgrade", "websocket"), ("Connection", "Upgrades")], "Connection header"),
            ([("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Extensions", "")], "no extension"),
            ([("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Protocol", "")], None),
            ([("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Protocol", "chat")], "not offered"),
        ],
    )
    def test_hand_made_headers(self, fields: list[tuple[str, str]], words: str | None) -> None:
        """Headers built by hand (with whitespace the parser strips, or repeated fields) get
        the rules' answer whether or not the common response's one pass takes them."""
        client = ClientHandshake("h", "/")
        accept = (" " if words is None and len(fields) > 2 else "") + accept_key(client.key)
        headers = Headers([*fields, ("Sec-WebSocket-Accept", accept)])
        response = Response(101, "Switching Protocols", headers)
        if words is None:
            assert client.receive_response(response) == HandshakeResult(None, [], headers)
        else:
            assert words in client_error(client, response).reason

    def test_the_key_is_read_at_each_check(self) -> None:
        client = ClientHandshake("h", "/")
        client.key = SAMPLE_KEY
        headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade"),
                           ("Sec-WebSocket-Accept", SAMPLE_ACCEPT)])
        assert client.receive_response(Response(101, "X", headers)).subprotocol is None


class TestClientNegotiation:
    """RFC 6455 §4.1 rules 5-6: extensions and subprotocol must be ones the client offered."""

    def test_subprotocol_selected(self) -> None:
        client = ClientHandshake("h", "/", subprotocols=["chat", "superchat"])
        response = server_response(client, ("Sec-WebSocket-Protocol", "superchat"))
        assert client.receive_response(response).subprotocol == "superchat"

    def test_unoffered_subprotocol(self) -> None:
        client = ClientHandshake("h", "/", subprotocols=["chat"])
        with pytest.raises(NegotiationError, match="not offered"):
            client.receive_response(server_response(client, ("Sec-WebSocket-Protocol", "Chat")))

    def test_subprotocol_without_offer(self) -> None:
        client = ClientHandshake("h", "/")
        with pytest.raises(NegotiationError, match="not offered"):
            client.receive_response(server_response(client, ("Sec-WebSocket-Protocol", "chat")))

    @pytest.mark.parametrize(
        "fields",
        [
            [("Sec-WebSocket-Protocol", "chat, superchat")],
            [("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "superchat")],
        ],
    )
    def test_several_subprotocols(self, fields: list[tuple[str, str]]) -> None:
        client = ClientHandshake("h", "/", subprotocols=["chat", "superchat"])
        with pytest.raises(NegotiationError, match="several"):
            client.receive_response(server_response(client, *fields))

    def test_extensions_in_response_order(self) -> None:
        client = ClientHandshake("h", "/", extensions=[FakeFactory("foo"), FakeFactory("bar")])
        response = server_response(client, ("Sec-WebSocket-Extensions", "bar; x=1, foo"))
        extensions = client.receive_response(response).extensions
        assert [(e.name, e.params) for e in extensions] == [  # type: ignore[attr-defined]
            ("bar", [("x", "1")]),
            ("foo", []),
        ]

    def test_unoffered_extension(self) -> None:
        client = ClientHandshake("h", "/", extensions=[FakeFactory("foo")])
        response = server_response(client, ("Sec-WebSocket-Extensions", "bar"))
        error = client_error(client, response)
        assert isinstance(error, NegotiationError)
        assert "bar, not offered" in error.reason

    def test_extension_twice(self) -> None:
        client = ClientHandshake("h", "/", extensions=[FakeFactory("foo")])
        response = server_response(
            client, ("Sec-WebSocket-Extensions", "foo"), ("Sec-WebSocket-Extensions", "foo")
        )
        with pytest.raises(NegotiationError, match="twice"):
            client.receive_response(response)

    def test_factory_refuses_response(self) -> None:
        client = ClientHandshake("h", "/", extensions=[FakeFactory("foo")])
        response = server_response(client, ("Sec-WebSocket-Extensions", "foo; bad"))
        with pytest.raises(NegotiationError, match="bad parameter"):
            client.receive_response(response)

    def test_fallback_factories_of_one_name(self) -> None:
        class Picky(FakeFactory):
            def accept_response(self, params: Params) -> Extension:
                if params:
                    raise NegotiationError("picky wants no parameters")
                return super().accept_response(params)

        client = ClientHandshake(
            "h", "/", extensions=[Picky("foo"), FakeFactory("foo", [("p", None)])]
        )
        assert b"foo, foo; p" in client.request_bytes()
        response = server_response(client, ("Sec-WebSocket-Extensions", "foo; p"))
        (extension,) = client.receive_response(response).extensions
        assert extension.params == [("p", None)]  # type: ignore[attr-defined]

    def test_malformed_extension_header(self) -> None:
        client = ClientHandshake("h", "/", extensions=[FakeFactory("foo")])
        response = server_response(client, ("Sec-WebSocket-Extensions", "foo;"))
        error = client_error(client, response)
        assert isinstance(error, NegotiationError) and error.status == 101


class TestServerValidation:
    """RFC 6455 §4.2.1: the server validates the client's opening handshake."""

    def test_valid(self) -> None:
        assert validate_request(base_request()) == SAMPLE_KEY

    def test_rfc_sample_request_bytes(self) -> None:
        request = RequestParser().feed(
            b"GET /chat HTTP/1.1\r\n"
            b"Host: server.example.com\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Origin: http://example.com\r\n"
            b"Sec-WebSocket-Protocol: chat, superchat\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert request is not None
        response, result = accept_request(request, subprotocols=["superchat", "chat"])
        assert response == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"Sec-WebSocket-Protocol: superchat\r\n\r\n"
        )
        assert result.subprotocol == "superchat"

    def test_mixed_case_and_token_lists(self) -> None:
        request = base_request(
            ("upgrade", "h2c, WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            drop=["Upgrade", "Connection"],
        )
        assert validate_request(request) == SAMPLE_KEY

    def test_upgrade_with_protocol_version(self) -> None:
        request = base_request(("Upgrade", "HTTP/2.0, websocket"), drop=["Upgrade"])
        assert validate_request(request) == SAMPLE_KEY

    @given(key=st.text(alphabet="AQgw+/=Za9!é \t", min_size=18, max_size=28)
           | st.binary(min_size=14, max_size=18).map(
               lambda raw: base64.b64encode(raw).decode()))
    def test_key_accepted_exactly_when_it_is_16_bytes_of_base64(self, key: str) -> None:
        """RFC 6455 §4.2.1 item 5, on the one-pass check of the common request and on the
        field-by-field one (a second Host sends it there) alike."""
        try:
            good = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            good = False
        for extra in ((), (("Origin", "o"),)):
            request = base_request(("Sec-WebSocket-Key", key), *extra,
                                   drop=["Sec-WebSocket-Key"])
            if good:
                assert validate_request(request) == key
            else:
                assert handshake_error(request).status == 400
        request.headers.compact()
        assert (validate_request(request) == key) if good else handshake_error(request)

    @pytest.mark.parametrize("field", ["Host", "Upgrade", "Connection", "Sec-WebSocket-Version",
                                       "Sec-WebSocket-Key"])
    def test_a_repeated_or_listed_field_takes_the_full_checks(self, field: str) -> None:
        value = dict(BASE_FIELDS)[field]
        repeated = base_request((field, value), (field, value), drop=[field])
        if field in ("Upgrade", "Connection"):  # token lists, which may span fields
            assert validate_request(repeated) == SAMPLE_KEY
        else:
            error = handshake_error(repeated)
            assert error.status == (426 if field == "Sec-WebSocket-Version" else 400)
        listed = base_request((field.upper(), f"{value}, {value}"), drop=[field])
        if field in ("Host", "Upgrade", "Connection"):  # (one Host, with a comma in it)
            assert validate_request(listed) == SAMPLE_KEY
        else:
            assert handshake_error(listed).status in (400, 426)

    def test_content_length_zero_allowed(self) -> None:
        assert validate_request(base_request(("Content-Length", "0"))) == SAMPLE_KEY

    def test_method(self) -> None:
        error = handshake_error(make_request(*BASE_FIELDS, method="POST"))
        assert (error.status, error.headers) == (405, [("Allow", "GET")])
        assert error.reason == "method must be GET, not POST"

    def test_version(self) -> None:
        error = handshake_error(make_request(*BASE_FIELDS, version="HTTP/1.0"))
        assert error.status == 505
        assert "HTTP/1.0" in error.reason

    @pytest.mark.parametrize(
        ("drop", "extra", "reason"),
        [
            (["Host"], [], "missing Host header"),
            ([], [("Host", "again")], "duplicate Host header"),
            (["Host"], [("Host", "")], "empty Host header"),
            ([], [("Content-Length", "5")], "must not have a body"),
            ([], [("Transfer-Encoding", "chunked")], "must not have a body"),
            (["Upgrade"], [("Upgrade", "web socket")], "malformed Upgrade header"),
            (["Connection"], [], "Connection header must include Upgrade (got missing)"),
            (
                ["Connection"],
                [("Connection", "keep-alive")],
                "Connection header must include Upgrade",
            ),
            (["Connection"], [("Connection", "up grade")], "malformed Connection header"),
            (["Sec-WebSocket-Key"], [], "missing Sec-WebSocket-Key header"),
            ([], [("Sec-WebSocket-Key", SAMPLE_KEY)], "duplicate Sec-WebSocket-Key header"),
            (
                ["Sec-WebSocket-Key"],
                [("Sec-WebSocket-Key", "not base64!")],
                "invalid Sec-WebSocket-Key",
            ),
            (
                ["Sec-WebSocket-Key"],
                [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
                "16 bytes",
            ),
            (["Sec-WebSocket-Key"], [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA")], "16 bytes"),
            (
                ["Sec-WebSocket-Key"],
                [("Sec-WebSocket-Key", f"{SAMPLE_KEY}, {SAMPLE_KEY}")],
                "16 bytes",
            ),
        ],
    )
    def test_400(self, drop: list[str], extra: list[tuple[str, str]], reason: str) -> None:
        error = handshake_error(base_request(*extra, drop=drop))
        assert error.status == 400
        assert reason in error.reason

    @pytest.mark.parametrize("upgrade", [None, "h2c", "websockets"])
    def test_426_without_websocket_upgrade(self, upgrade: str | None) -> None:
        extra = [] if upgrade is None else [("Upgrade", upgrade)]
        error = handshake_error(base_request(*extra, drop=["Upgrade"]))
        assert error.status == 426
        assert error.headers == [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        assert "Upgrade header must include websocket" in error.reason

    @pytest.mark.parametrize("versions", [[], ["8"], ["13, 8"], ["13", "13"], ["14"]])
    def test_426_for_other_websocket_versions(self, versions: list[str]) -> None:
        extra = [("Sec-WebSocket-Version", v) for v in versions]
        error = handshake_error(base_request(*extra, drop=["Sec-WebSocket-Version"]))
        assert error.status == 426
        assert error.headers == [("Sec-WebSocket-Version", "13")]
        assert "this server speaks 13" in error.reason


class TestServerNegotiation:
    """RFC 6455 §4.2.2: the server picks a subprotocol and extensions and answers 101."""

    def test_response_bytes(self) -> None:
        response, result = accept_request(base_request(), extra_headers=[("Server", "wskit")])
        assert response == (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + SAMPLE_ACCEPT.encode() + b"\r\nServer: wskit\r\n\r\n"
        )
        assert result.subprotocol is None and result.extensions == []
        assert result.headers.get("host") == "server.example.com"

    def test_server_preference_wins(self) -> None:
        request = base_request(("Sec-WebSocket-Protocol", "a, b"), ("Sec-WebSocket-Protocol", "c"))
        assert accept_request(request, subprotocols=["x", "c", "a"])[1].subprotocol == "c"
        assert accept_request(request, subprotocols=["x"])[1].subprotocol is None
        assert accept_request(request)[1].subprotocol is None

    def test_select_subprotocol(self) -> None:
        request = base_request(("Sec-WebSocket-Protocol", "a, b"))
        seen: list[list[str]] = []

        def select(offers: list[str]) -> str | None:
            seen.append(offers)
            return offers[-1]

        response, result = accept_request(request, subprotocols=["a"], select_subprotocol=select)
        assert result.subprotocol == "b"
        assert seen == [["a", "b"]]
        assert b"\r\nSec-WebSocket-Protocol: b\r\n" in response
        assert (
            accept_request(request, select_subprotocol=lambda offers: None)[1].subprotocol is None
        )

    def test_select_subprotocol_not_offered_is_a_local_error(self) -> None:
        request = base_request(("Sec-WebSocket-Protocol", "a"))
        with pytest.raises(ValueError, match="not offered"):
            accept_request(request, select_subprotocol=lambda offers: "z")

    def test_malformed_protocol_header(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            accept_request(base_request(("Sec-WebSocket-Protocol", "a b")))
        assert info.value.status == 400

    def test_extensions(self) -> None:
        foo, bar, baz = FakeFactory("foo"), FakeFactory("bar"), FakeFactory("baz")
        request = base_request(
            ("Sec-WebSocket-Extensions", "foo; bad, bar; y, foo; x=1"),
            ("Sec-WebSocket-Extensions", "qux"),
        )
        response, result = accept_request(request, extensions=[bar, baz, foo])
        # Server factory order; each factory sees all the offers of its name.
        assert b"\r\nSec-WebSocket-Extensions: bar; y, foo; x=1\r\n" in response
        assert [e.name for e in result.extensions] == ["bar", "foo"]
        assert foo.offers_seen == [[[("bad", None)], [("x", "1")]]]
        assert baz.offers_seen == []

    def test_declined_extension(self) -> None:
        foo = FakeFactory("foo")
        response, result = accept_request(
            base_request(("Sec-WebSocket-Extensions", "foo; bad")), extensions=[foo]
        )
        assert b"Sec-WebSocket-Extensions" not in response
        assert result.extensions == []
        assert foo.offers_seen == [[[("bad", None)]]]

    def test_at_most_one_per_name(self) -> None:
        first, second = FakeFactory("foo"), FakeFactory("foo")
        request = base_request(("Sec-WebSocket-Extensions", "foo"))
        _, result = accept_request(request, extensions=[first, second])
        assert len(result.extensions) == 1
        assert second.offers_seen == []

    def test_factory_raising_fails_the_handshake(self) -> None:
        class Strict(FakeFactory):
            def accept_offer(self, offers: list[Params]) -> tuple[Params, Extension] | None:
                raise NegotiationError("malformed offer")

        with pytest.raises(NegotiationError):
            accept_request(
                base_request(("Sec-WebSocket-Extensions", "foo")), extensions=[Strict("foo")]
            )

    def test_malformed_extension_header(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            accept_request(
                base_request(("Sec-WebSocket-Extensions", "foo;;")), extensions=[FakeFactory("foo")]
            )
        assert info.value.status == 400

    def test_invalid_request_is_raised(self) -> None:
        with pytest.raises(InvalidHandshake):
            accept_request(base_request(drop=["Host"]))

    @pytest.mark.parametrize("name", ["Sec-WebSocket-Accept", "upgrade", "Content-Length"])
    def test_reserved_extra_headers(self, name: str) -> None:
        with pytest.raises(ValueError, match="set by the handshake"):
            accept_request(base_request(), extra_headers=[(name, "x")])

    def test_client_and_server_agree(self) -> None:
        client = ClientHandshake(
            "h",
            "/",
            subprotocols=["chat"],
            extensions=[FakeFactory("foo", [("a", "1")]), FakeFactory("bar")],
        )
        parser = RequestParser()
        request = parser.feed(client.request_bytes())
        assert request is not None
        response, server = accept_request(
            request, subprotocols=["chat"], extensions=[FakeFactory("foo")]
        )
        result = client.receive_response(parse_response(response))
        assert result.subprotocol == server.subprotocol == "chat"
        assert [e.name for e in result.extensions] == ["foo"]
        assert result.extensions[0].params == [("a", "1")]  # type: ignore[attr-defined]


class TestRejection:
    """RFC 6455 §4.2.1, RFC 9110 §15: refusing the upgrade with a complete HTTP response."""

    def test_reject_with_text(self) -> None:
        data = reject(403, "forbidden origin")
        assert data == (
            b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n\r\nforbidden origin"
        )

    def test_reject_without_body(self) -> None:
        assert (
            reject(404)
            == b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )

    def test_reject_with_bytes_and_own_content_type(self) -> None:
        response = parse_response(reject(400, b"{}", [("Content-Type", "application/json")]))
        assert response.headers.get_all("content-type") == ["application/json"]
        assert response.body == b"{}"

    def test_reject_merges_connection(self) -> None:
        response = parse_response(
            reject(426, "", [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        )
        assert response.headers.get_all("Connection") == ["Upgrade, close"]
        already = parse_response(reject(400, "", [("Connection", "Close")]))
        assert already.headers.get_all("Connection") == ["Close"]

    def test_reject_utf8_body(self) -> None:
        response = parse_response(reject(400, "caf\u00e9"))
        assert response.body == "caf\u00e9".encode()

    @pytest.mark.parametrize(
        ("request_", "status", "headers"),
        [
            (base_request(drop=["Host"]), 400, []),
            (make_request(*BASE_FIELDS, method="PUT"), 405, [("Allow", "GET")]),
            (
                base_request(drop=["Upgrade"]),
                426,
                [("Upgrade", "websocket"), ("Connection", "Upgrade, close")],
            ),
            (
                base_request(("Sec-WebSocket-Version", "8"), drop=["Sec-WebSocket-Version"]),
                426,
                [("Sec-WebSocket-Version", "13")],
            ),
        ],
    )
    def test_error_response(
        self, request_: Request, status: int, headers: list[tuple[str, str]]
    ) -> None:
        exc = handshake_error(request_)
        response = parse_response(error_response(exc))
        assert response.status == status
        assert response.body == exc.reason.encode()
        for name, value in headers:
            assert response.headers.get(name) == value
        assert "close" in (response.headers.get("Connection") or "")

    def test_parser_errors_become_responses(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            RequestParser(max_line_length=10).feed(b"GET /" + b"a" * 20)
        response = parse_response(error_response(info.value))
        assert response.status == 414
        assert response.reason == HTTPStatus(414).phrase  # its wording varies by Python version
