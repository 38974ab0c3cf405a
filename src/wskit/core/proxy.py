"""Proxies, sans-I/O: proxy URLs, which proxy applies (the environment as curl reads it), and
the HTTP CONNECT exchange that opens a tunnel (RFC 9110 §9.3.6)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import ConnectFailed, InvalidHandshake
from .http import ResponseParser, serialize_request

__all__ = [
    "PROXY_SCHEMES",
    "ConnectTunnel",
    "ProxyError",
    "ProxyURL",
    "no_proxy_matches",
    "parse_proxy_url",
    "proxy_from_environment",
]

#: Proxy kinds the client opens tunnels through. ``socks5h`` and ``socks4a`` let the proxy
#: resolve the host name; ``socks5`` and ``socks4`` resolve it locally first (as curl does).
PROXY_SCHEMES = ("http", "socks5", "socks5h", "socks4", "socks4a")
# curl's default proxy port, whatever the kind, when the URL names none.
_DEFAULT_PORT = 1080


class ProxyError(ConnectFailed):
    """The proxy refused the tunnel or could not be used; ``status`` is its HTTP answer, if any."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message, transient=transient)
        self.status = status


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL; ``str()`` hides the password, so it is safe in messages and logs."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy_url(url: str) -> ProxyURL:
    """Parse ``[scheme://][user[:password]@]host[:port]``; no scheme means http (as in curl).

    User and password are percent-decoded. Raises ValueError for an unsupported kind
    (https:// proxies, for instance) or a URL without a host.
    """
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ValueError(
            f"unsupported proxy {url!r}: the proxy URL must start with "
            + ", ".join(f"{name}://" for name in PROXY_SCHEMES)
        )
    if not parts.hostname:
        raise ValueError(f"no host in the proxy URL {url!r}")
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise ValueError(f"invalid port in the proxy URL {url!r}") from None
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURL(scheme, parts.hostname, port, username, password)


def _getenv(environ: Mapping[str, str], name: str) -> str | None:
    # curl treats a variable set to the empty string as unset.
    return environ.get(name) or None


def proxy_from_environment(secure: bool, host: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL that curl would use for a ``ws://`` (``secure=False``) or ``wss://`` URL.

    In order: ``ws_proxy``/``WS_PROXY`` then ``http_proxy`` (lowercase only: the uppercase
    one can be set by a CGI request's ``Proxy:`` header), or ``wss_proxy``/``WSS_PROXY`` then
    ``https_proxy``/``HTTPS_PROXY``; then ``all_proxy``/``ALL_PROXY``. None when no variable
    is set or when ``no_proxy``/``NO_PROXY`` matches ``host``.
    """
    scheme = "wss" if secure else "ws"
    proxy = _getenv(environ, f"{scheme}_proxy") or _getenv(environ, f"{scheme.upper()}_PROXY")
    if proxy is None:
        if secure:
            proxy = _getenv(environ, "https_proxy") or _getenv(environ, "HTTPS_PROXY")
        else:
            proxy = _getenv(environ, "http_proxy")
    if proxy is None:
        proxy = _getenv(environ, "all_proxy") or _getenv(environ, "ALL_PROXY")
    if proxy is None:
        return None
    no_proxy = _getenv(environ, "no_proxy") or _getenv(environ, "NO_PROXY")
    if no_proxy is not None and no_proxy_matches(host, no_proxy):
        return None
    return proxy


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """Whether ``host`` is excluded by a ``NO_PROXY`` value, by curl's rules.

    ``*`` alone matches every host. Otherwise the value is a list separated by commas and
    blanks: a host name matches an entry equal to it or one of its parent domains (a leading
    or trailing dot of the entry is ignored; case does not matter); an IP address matches an
    address or a CIDR network (``10.0.0.0/8``). Ports are not part of the rules.
    """
    if not host:
        return False
    if no_proxy == "*":
        return True
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
        name = name.removesuffix(".").lower()
    for token in no_proxy.replace(",", " ").split():
        if address is not None:
            if _ip_matches(address, token):
                return True
            continue
        entry = token.removesuffix(".").removeprefix(".").lower()
        if entry and (name == entry or name.endswith("." + entry)):
            return True
    return False


def _ip_matches(address: ipaddress.IPv4Address | ipaddress.IPv6Address, token: str) -> bool:
    try:
        network = ipaddress.ip_network(token, strict=False)
    except ValueError:
        return False  # a host name (or nonsense) never matches an address
    return network.version == address.version and address in network


class ConnectTunnel:
    """The HTTP CONNECT exchange through one proxy, bytes in and bytes out.

    Send ``request_bytes()``, then feed what the proxy answers to ``receive_data`` until it
    returns True: the tunnel is open, and ``leftover`` holds any bytes that came after the
    answer (they belong to the tunnel). A refusal raises ProxyError with the status. The
    answer is read with the handshake's bounded HTTP parser and its limits.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        proxy: ProxyURL,
        max_line_length: int = 8192,
        max_headers: int = 100,
        max_header_bytes: int = 16384,
        max_body: int = 4096,
    ) -> None:
        self.proxy = proxy
        host_part = f"[{host}]" if ":" in host else host
        #: The authority-form target (RFC 9112 §3.2.3): host and port, always with the port.
        self.authority = f"{host_part}:{port}"
        self.parser = ResponseParser(
            max_line_length, max_headers, max_header_bytes, max_body, method="CONNECT"
        )
        self.leftover = b""
        self.status: int | None = None

    def request_bytes(self) -> bytes:
        """The CONNECT request, with Basic credentials when the proxy URL has a user."""
        fields = [("Host", self.authority)]
        if self.proxy.username is not None:
            # RFC 7617: Basic credentials are user-id ":" password, base64 of their UTF-8.
            secret = f"{self.proxy.username}:{self.proxy.password or ''}".encode()
            fields.append(("Proxy-Authorization", "Basic " + base64.b64encode(secret).decode()))
        return serialize_request("CONNECT", self.authority, fields)

    def receive_data(self, data: bytes) -> bool:
        """Feed the proxy's bytes; True once the tunnel is open. Raises ProxyError."""
        try:
            response = self.parser.feed(data)
        except InvalidHandshake as exc:
            raise ProxyError(
                f"the proxy {self.proxy} sent an invalid answer: {exc.reason}"
            ) from None
        if response is None:
            return False
        self.status = status = response.status
        if 200 <= status < 300:
            # RFC 9110 §9.3.6: any 2xx means the tunnel is open, from the byte after the head.
            self.leftover = self.parser.leftover
            return True
        answer = f"HTTP {status} {response.reason}".rstrip()
        if status in (401, 407):
            # 407 is the standard answer (RFC 9110 §15.5.8); some proxies (tinyproxy among
            # them) answer wrong credentials with 401.
            hint = (
                "it refused the user and password of the proxy URL"
                if self.proxy.username is not None
                else "put user:password@ in the proxy URL"
            )
            message = f"the proxy {self.proxy} requires authentication ({answer}): {hint}"
        else:
            message = (
                f"the proxy {self.proxy} refused to open a tunnel to {self.authority}: {answer}"
            )
        # Gateway errors are the proxy's trouble reaching the server: worth another attempt.
        raise ProxyError(message, status=status, transient=status in (502, 503, 504))
