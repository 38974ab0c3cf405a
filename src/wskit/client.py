"""connect: parse the URL, open TCP or TLS, run the client handshake, return a WebSocket."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .aio.protocol import Limits, WebSocketProtocol
from .core.connection import Role
from .core.errors import InvalidHandshake
from .core.handshake import ClientHandshake
from .core.http import ResponseParser
from .extensions import Compression, extension_factories
from .websocket import WebSocket

__all__ = ["WebSocketURI", "connect", "parse_uri"]

logger = logging.getLogger("wskit")


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


def parse_uri(url: str) -> WebSocketURI:
    """Split a WebSocket URL (RFC 6455 §3); raises ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r}")
    if parts.fragment:
        # RFC 6455 §3: fragment identifiers MUST NOT be used in WebSocket URIs.
        raise ValueError("a WebSocket URL has no fragment")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return WebSocketURI(secure, parts.hostname, port, target)


class ClientProtocol(WebSocketProtocol):
    """The client side of one TCP connection: sends the upgrade request, then frames."""

    def __init__(self, limits: Limits, handshake: ClientHandshake) -> None:
        super().__init__(limits)
        self.handshake = handshake
        self.parser = ResponseParser()
        self.opened: asyncio.Future[WebSocket] = self.loop.create_future()

    # connect() bounds the whole opening (DNS, TCP, TLS, handshake) with one timeout.
    times_handshake = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.handshake.request_bytes())

    def _handshake_data(self, data: bytes) -> None:
        try:
            response = self.parser.feed(data)
            if response is None:
                return
            result = self.handshake.receive_response(response)
        except InvalidHandshake as exc:
            self._refused(exc)
            return
        ws = self._open(
            Role.CLIENT, None, result.subprotocol, result.extensions, self.parser.leftover,
            response_headers=result.headers,
        )
        if not self.opened.done():
            self.opened.set_result(ws)
        # Frames may follow the 101 at once, even in the same read (RFC 6455 §4.1): they wait,
        # with anything after them, until connect() has returned and listeners are set.
        self.pause_reading()

    def _start(self) -> None:
        """Called just after connect() has returned: process what came behind the 101."""
        self.resume_reading()
        self._feed_leftover()

    def _refused(self, exc: InvalidHandshake) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _handshake_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"connection closed during the opening handshake: {exc}")
            )


class connect:  # used like a function: ``await connect(url)``
    """Open a client connection: ``ws = await connect(url)`` or ``async with connect(url) as ws``.

    ``wss://`` verifies the server's certificate with a default ``ssl.SSLContext``; pass
    ``ssl=`` for your own context.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        subprotocols: Sequence[str] | None = None,
        origin: str | None = None,
        compression: Compression = "deflate",
        open_timeout: float | None = 10.0,
        close_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_message_size: int = 1 << 20,
        max_queue: int = 32,
        write_limit: int = 64 * 1024,
        server_hostname: str | None = None,
    ) -> None:
        self.uri = parse_uri(url)
        self.ssl = ssl
        if self.uri.secure and ssl is None:
            self.ssl = ssl_module.create_default_context()
        elif not self.uri.secure and ssl is not None:
            raise ValueError("ssl= given for a ws:// URL; use wss://")
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        self.headers = list(headers or ())
        self.subprotocols = list(subprotocols or ())
        self.origin = origin
        self.compression = compression
        self.open_timeout = open_timeout
        self.server_hostname = server_hostname
        self.limits = Limits(
            max_message_size=max_message_size,
            max_queue=max_queue,
            write_limit=write_limit,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self._ws: WebSocket | None = None

    async def _connect(self) -> WebSocket:
        uri = self.uri
        handshake = ClientHandshake(
            uri.host_header,
            uri.target,
            origin=self.origin,
            subprotocols=self.subprotocols,
            extensions=extension_factories(self.compression, is_client=True),
            extra_headers=self.headers,
        )
        loop = asyncio.get_running_loop()
        protocol: ClientProtocol | None = None

        def factory() -> ClientProtocol:
            nonlocal protocol
            protocol = ClientProtocol(self.limits, handshake)
            return protocol

        async def open_connection() -> WebSocket:
            kwargs: dict[str, Any] = {}
            if self.ssl is not None:
                kwargs["ssl"] = self.ssl
                kwargs["server_hostname"] = self.server_hostname or uri.host
            await loop.create_connection(factory, uri.host, uri.port, **kwargs)
            assert protocol is not None
            return await protocol.opened

        try:
            ws = await asyncio.wait_for(open_connection(), self.open_timeout)
        except BaseException:
            if protocol is not None:
                protocol.abort()
            raise
        # Runs once the caller, to whom this returns, has set its listeners and yielded.
        assert protocol is not None
        loop.call_soon(protocol._start)
        return ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._connect().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._connect()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()
