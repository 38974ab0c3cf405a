"""core/proxy.py, bytes in and bytes out: proxy URLs, curl's environment rules, HTTP CONNECT."""

from __future__ import annotations

import base64

import pytest

from wskit.core.errors import ConnectFailed
from wskit.core.proxy import (
    ConnectTunnel,
    ProxyError,
    ProxyURL,
    no_proxy_matches,
    parse_proxy_url,
    proxy_from_environment,
)


class TestProxyURL:
    def test_full_url(self) -> None:
        proxy = parse_proxy_url("http://al%40ice:p%3Ass@proxy.example:3128")
        assert proxy == ProxyURL("http", "proxy.example", 3128, "al@ice", "p:ss")
        # The password never appears in messages.
        assert str(proxy) == "http://al@ice@proxy.example:3128"

    def test_no_scheme_means_http_and_default_port_is_curls(self) -> None:
        assert parse_proxy_url("proxy.example") == ProxyURL("http", "proxy.example", 1080)

    @pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a", "SOCKS5H"])
    def test_socks_kinds(self, scheme: str) -> None:
        assert parse_proxy_url(f"{scheme}://u:p@[::1]:1081").scheme == scheme.lower()
        assert str(parse_proxy_url(f"{scheme}://[::1]:1081")) == f"{scheme.lower()}://[::1]:1081"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("https://proxy:443", "unsupported proxy"),
            ("ftp://proxy", "unsupported proxy"),
            ("http://", "no host"),
            ("http://proxy:99999", "invalid port"),
        ],
    )
    def test_refused(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_proxy_url(url)


class TestEnvironment:
    """Which variable applies, in curl's order (lib/url.c detect_proxy)."""

    def test_ws_uses_ws_proxy_then_lowercase_http_proxy_then_all_proxy(self) -> None:
        env = {"ws_proxy": "a", "WS_PROXY": "b", "http_proxy": "c", "all_proxy": "d"}
        assert proxy_from_environment(False, "h", env) == "a"
        del env["ws_proxy"]
        assert proxy_from_environment(False, "h", env) == "b"
        del env["WS_PROXY"]
        assert proxy_from_environment(False, "h", env) == "c"
        del env["http_proxy"]
        assert proxy_from_environment(False, "h", env) == "d"
        assert proxy_from_environment(False, "h", {"ALL_PROXY": "e"}) == "e"

    def test_uppercase_http_proxy_is_ignored(self) -> None:
        # A CGI program gets HTTP_PROXY from a request's "Proxy:" header (httpoxy).
        assert proxy_from_environment(False, "h", {"HTTP_PROXY": "x"}) is None

    def test_wss_uses_https_proxy_in_both_cases(self) -> None:
        env = {"wss_proxy": "a", "WSS_PROXY": "b", "https_proxy": "c", "HTTPS_PROXY": "d",
               "http_proxy": "no"}
        order = ["a", "b", "c", "d"]
        for name, expected in zip(["wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY"],
                                  order, strict=True):
            assert proxy_from_environment(True, "h", env) == expected
            del env[name]
        assert proxy_from_environment(True, "h", env) is None
        assert proxy_from_environment(True, "h", {"all_proxy": "e", "ALL_PROXY": "f"}) == "e"

    def test_empty_variables_count_as_unset(self) -> None:
        env = {"https_proxy": "", "HTTPS_PROXY": "p", "no_proxy": "", "NO_PROXY": "h"}
        assert proxy_from_environment(True, "h", env) is None
        assert proxy_from_environment(True, "other", env) == "p"

    def test_lowercase_no_proxy_wins(self) -> None:
        env = {"all_proxy": "p", "no_proxy": "a.example", "NO_PROXY": "b.example"}
        assert proxy_from_environment(False, "a.example", env) is None
        assert proxy_from_environment(False, "b.example", env) == "p"


class TestNoProxy:
    """curl's NO_PROXY matching (lib/noproxy.c)."""

    @pytest.mark.parametrize(
        ("host", "no_proxy", "matches"),
        [
            ("anything", "*", True),
            ("example.com", "example.com", True),
            ("www.example.com", "example.com", True),
            ("www.example.com", ".example.com", True),
            ("WWW.Example.COM.", "example.com.", True),
            ("nonexample.com", "example.com", False),
            ("example.com", "www.example.com", False),
            ("b.example", "a.example, ,, b.example", True),
            ("b.example", "a.example b.example", True),
            ("b.example", "*, a.example", False),  # "*" only counts alone
            ("10.1.2.3", "10.0.0.0/8", True),
            ("10.1.2.3", "10.1.2.3", True),
            ("10.1.2.3", "10.1.2.4", False),
            ("10.1.2.3", "localhost", False),
            ("::1", "::1", True),
            ("[::1]", "::/0", True),
            ("::1", "127.0.0.1", False),
            ("127.0.0.1", "::1/128", False),
            ("localhost", "127.0.0.1", False),
            ("", "*", False),
            ("h", ".", False),
        ],
    )
    def test_rules(self, host: str, no_proxy: str, matches: bool) -> None:
        assert no_proxy_matches(host, no_proxy) is matches


def tunnel(url: str = "http://proxy:3128", host: str = "example.com",
           port: int = 443) -> ConnectTunnel:
    return ConnectTunnel(host, port, proxy=parse_proxy_url(url))


class TestConnectTunnel:
    """RFC 9110 §9.3.6: CONNECT to an authority; any 2xx opens the tunnel."""

    def test_request_without_credentials(self) -> None:
        assert tunnel().request_bytes() == (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )

    def test_request_with_basic_credentials_and_ipv6_target(self) -> None:
        request = tunnel("http://us%C3%A9r:pa%3Ass@proxy", host="::1", port=80).request_bytes()
        secret = base64.b64encode("usér:pa:ss".encode()).decode()
        assert request == (
            b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n"
            + f"Proxy-Authorization: Basic {secret}\r\n\r\n".encode()
        )

    def test_user_without_password(self) -> None:
        assert b"Basic " + base64.b64encode(b"user:") in tunnel("http://user@p").request_bytes()

    def test_established_in_pieces_with_leftover(self) -> None:
        t = tunnel()
        assert t.receive_data(b"HTTP/1.0 200 Connection established\r\n") is False
        assert t.receive_data(b"Proxy-agent: x\r\n\r\n\x16\x03") is True
        assert t.status == 200
        assert t.leftover == b"\x16\x03"

    def test_a_2xx_with_content_length_has_no_body(self) -> None:
        t = tunnel()
        assert t.receive_data(b"HTTP/1.1 204 OK\r\nContent-Length: 10\r\n\r\nabc") is True
        assert t.leftover == b"abc"

    def test_407_without_credentials_says_what_to_do(self) -> None:
        with pytest.raises(ProxyError) as info:
            tunnel().receive_data(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope"
            )
        assert info.value.status == 407
        assert str(info.value) == (
            "the proxy http://proxy:3128 requires authentication "
            "(HTTP 407 Proxy Authentication Required): put user:password@ in the proxy URL"
        )
        assert isinstance(info.value, ConnectFailed) and isinstance(info.value, OSError)
        assert not info.value.transient

    def test_407_with_credentials_does_not_show_the_password(self) -> None:
        with pytest.raises(ProxyError) as info:
            tunnel("http://me:secret@proxy:3128").receive_data(b"HTTP/1.1 401 \r\n\r\n")
        assert "secret" not in str(info.value)
        assert "refused the user and password" in str(info.value)

    @pytest.mark.parametrize(("status", "transient"), [(403, False), (502, True), (503, True)])
    def test_other_refusals(self, status: int, transient: bool) -> None:
        with pytest.raises(ProxyError) as info:
            tunnel().receive_data(f"HTTP/1.1 {status} Nope\r\n\r\n".encode())
        assert str(info.value) == (
            f"the proxy http://proxy:3128 refused to open a tunnel to example.com:443: "
            f"HTTP {status} Nope"
        )
        assert info.value.transient is transient

    def test_garbage_and_limits(self) -> None:
        with pytest.raises(ProxyError, match="invalid answer: malformed status line"):
            tunnel().receive_data(b"SSH-2.0-OpenSSH\r\n")
        t = ConnectTunnel("h", 1, proxy=parse_proxy_url("p"), max_line_length=16)
        with pytest.raises(ProxyError, match="longer than 16 bytes"):
            t.receive_data(b"HTTP/1.1 200 " + b"x" * 20)
