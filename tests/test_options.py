"""Tests of wskit.options: WebSocket URLs (RFC 6455 §3) and what ClientOptions keeps."""

from __future__ import annotations

import pytest

from wskit.core.limits import Limits
from wskit.options import ClientOptions, WebSocketURI, parse_uri


def options(url: str = "ws://h/", **kwargs: object) -> ClientOptions:
    given: dict[str, object] = {
        "ssl": None, "headers": None, "subprotocols": None, "origin": None,
        "compression": None, "open_timeout": None, "server_hostname": None, "proxy": None,
        "unix": None, "max_redirects": 10, "limits": Limits(),
    }
    given.update(kwargs)
    return ClientOptions(url, **given)  # type: ignore[arg-type]


class TestParseUri:
    @pytest.mark.parametrize(
        ("url", "parts"),
        [
            ("ws://example.com", (False, "example.com", 80, "/")),
            ("wss://Example.COM/chat?x=1&y", (True, "example.com", 443, "/chat?x=1&y")),
            ("ws://h:8080/a/b", (False, "h", 8080, "/a/b")),
            ("wss://h:443/", (True, "h", 443, "/")),
            ("ws://[::1]:9000/", (False, "::1", 9000, "/")),
            ("ws://h?q", (False, "h", 80, "/?q")),
        ],
    )
    def test_parts(self, url: str, parts: tuple[bool, str, int, str]) -> None:
        uri = parse_uri(url)
        assert (uri.secure, uri.host, uri.port, uri.target) == parts

    def test_host_header_and_url(self) -> None:
        assert parse_uri("ws://[::1]:9000/x").host_header == "[::1]:9000"
        assert parse_uri("wss://h:443/x").url == "wss://h/x"
        assert parse_uri("ws://h:81/x?y").url == "ws://h:81/x?y"

    def test_a_fresh_object_each_time(self) -> None:
        """The parts of a URL are split once (a cache), but each caller gets its own
        WebSocketURI: changing one changes no other."""
        first = parse_uri("ws://h/a")
        first.port = 1
        second = parse_uri("ws://h/a")
        assert second is not first and second.port == 80

    @pytest.mark.parametrize(
        ("url", "words"),
        [
            ("http://h/", "did you mean ws://"), ("https://h/", "did you mean wss://"),
            ("ftp://h/", "not a WebSocket URL"), ("ws://h/#f", "no fragment"),
            ("ws:///x", "no host"), ("ws://h:x/", "invalid port"), ("ws://h:99999/", "port"),
        ],
    )
    def test_refused_every_time(self, url: str, words: str) -> None:
        """A URL that is not a WebSocket URL raises each time (a refusal is not cached)."""
        for _ in range(2):
            with pytest.raises(ValueError, match=words):
                parse_uri(url)

    def test_uri_constructor(self) -> None:
        uri = WebSocketURI(True, "h", 8443, "/")
        assert uri.url == "wss://h:8443/"


class TestClientOptions:
    def test_headers(self) -> None:
        assert options().headers == []
        assert options(headers={"A": "1", "B": "2"}).headers == [("A", "1"), ("B", "2")]
        assert options(headers=(pair for pair in [("A", "1")])).headers == [("A", "1")]
        assert options(headers=[]).headers == []
        assert options(subprotocols=("a", "b")).subprotocols == ["a", "b"]

    def test_checked_at_once(self) -> None:
        import ssl

        with pytest.raises(ValueError, match="wss://"):
            options("ws://h/", ssl=ssl.create_default_context())
        with pytest.raises(ValueError, match="max_redirects"):
            options(max_redirects=-1)
        with pytest.raises(ValueError):
            options(proxy="ftp://p:1")

    def test_opening_uri(self) -> None:
        class Positions:
            def url(self, base: str) -> str:
                return base + "?since=3"

        plain = options("ws://h/a")
        assert plain.opening_uri() is plain.uri
        resumed = options("ws://h/a", resume=Positions())
        assert resumed.opening_uri().target == "/a?since=3"
