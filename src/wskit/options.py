"""ClientOptions and WebSocket URLs: what a client connection was asked to open, checked once."""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol, Union
from urllib.parse import urlsplit

from .core.limits import Limits
from .core.proxy import parse_proxy_url
from .extensions import Compression

__all__ = ["ClientOptions", "Headers", "OnOpen", "Resume", "WebSocketURI", "parse_uri"]

Headers = Union[Mapping[str, str], Iterable[tuple[str, str]]]  # noqa: UP007 - a runtime alias
#: ``on_open(client)``, called after each (re)connection of a reconnecting client.
OnOpen = Callable[[Any], Any]


class Resume(Protocol):
    """What ``connect(resume=...)`` takes (``wskit.Positions``): the URL of the next opening."""

    def url(self, base: str) -> str: ...


class WebSocketURI:
    """The parts of a ``ws://`` or ``wss://`` URL that the handshake needs."""

    __slots__ = ("host", "port", "secure", "target")

    def __init__(self, secure: bool, host: str, port: int, target: str) -> None:
        self.secure = secure
        self.host = host
        self.port = port
        self.target = target

    @property
    def host_header(self) -> str:
        """The Host header: brackets around IPv6 literals, the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.target}"


def parse_uri(url: str) -> WebSocketURI:
    """Split a WebSocket URL (RFC 6455 §3); raises ValueError for anything else."""
    # A fresh object each time (it may be changed); its parts are split once per URL.
    return WebSocketURI(*_split_uri(url))


@lru_cache(maxsize=256)
def _split_uri(url: str) -> tuple[bool, str, int, str]:
    # (urlsplit is cached too, but the hostname and port of its result are computed anew at
    # each access: some 20,000 instructions per connection.)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        hint = ""
        if parts.scheme in ("http", "https"):
            hint = f"; did you mean {'wss' if parts.scheme == 'https' else 'ws'}://?"
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r}{hint}")
    if parts.fragment:
        # RFC 6455 §3: fragment identifiers MUST NOT be used in WebSocket URIs.
        raise ValueError("a WebSocket URL has no fragment")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in {url!r}") from None
    secure = parts.scheme == "wss"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return secure, parts.hostname, port or (443 if secure else 80), target


class ClientOptions:
    """Everything about how to open a client connection (what ``connect`` was given)."""

    def __init__(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        headers: Headers | None,
        subprotocols: Sequence[str] | None,
        origin: str | None,
        compression: Compression,
        open_timeout: float | None,
        server_hostname: str | None,
        proxy: str | bool | None,
        unix: str | None,
        max_redirects: int,
        limits: Limits,
        resume: Resume | None = None,
    ) -> None:
        self.uri = parse_uri(url)
        if ssl is not None and not self.uri.secure:
            raise ValueError("ssl= given for a ws:// URL; use wss://")
        if max_redirects < 0:
            raise ValueError("max_redirects must be 0 or more")
        if isinstance(proxy, str):
            parse_proxy_url(proxy)  # a bad proxy URL is a ValueError now, not at each attempt
        self.url = url
        self.ssl = ssl
        if headers is not None and isinstance(headers, Mapping):  # (None: no ABC check)
            headers = list(headers.items())
        self.headers = list(headers or ())
        self.subprotocols = list(subprotocols or ())
        self.origin = origin
        self.compression = compression
        self.open_timeout = open_timeout
        self.server_hostname = server_hostname
        self.proxy = proxy
        self.unix = unix
        self.max_redirects = max_redirects
        self.limits = limits
        self.resume = resume

    def opening_uri(self) -> WebSocketURI:
        """The URI of the next opening: the URL's, with the positions of ``resume`` if any."""
        if self.resume is None:
            return self.uri
        return parse_uri(self.resume.url(self.url))


