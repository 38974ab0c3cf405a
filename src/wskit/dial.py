"""One opening of a client connection: the socket (TCP, unix or a proxy's tunnel), TLS, the
handshake and its redirects, with errors that say what happened and what to try."""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import ssl as ssl_module
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from .aio.protocol import WebSocketProtocol
from .core.connection import Role
from .core.errors import ConnectFailed, InvalidHandshake
from .core.handshake import ClientHandshake, HandshakeResult
from .core.http import ResponseParser, parse_response
from .core.limits import Limits
from .extensions import extension_factories
from .options import ClientOptions, WebSocketURI, parse_uri
from .tunnel import choose_proxy, open_tunnel, os_error_text
from .websocket import WebSocket

__all__ = ["REDIRECT_STATUSES", "ClientProtocol", "open_connection", "redirect_target"]

logger = logging.getLogger("wskit.client")

#: The statuses that send the client elsewhere (RFC 9110 §15.4); 300 and 304 do not.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that carry credentials: never sent on to another host (as curl and browsers do).
_CREDENTIALS = frozenset({"authorization", "cookie"})
# The first bytes of a TLS record (RFC 8446 §5.1): an alert or a handshake, version 3.x.
_TLS_RECORD = re.compile(rb"[\x15\x16]\x03")
_ERRNO = re.compile(r"\[Errno (\d+)\]")


class ClientProtocol(WebSocketProtocol):
    """The client side of one TCP connection: sends the upgrade request, then frames."""

    # open_connection() bounds the whole opening (DNS, proxy, TCP, TLS, handshake) itself.
    times_handshake = False

    __slots__ = ("answered", "handshake", "opened", "parser", "uri", "where")

    def __init__(self, limits: Limits, handshake: ClientHandshake, uri: WebSocketURI,
                 where: str) -> None:
        super().__init__(limits, Role.CLIENT)
        self.handshake = handshake
        self.uri = uri
        self.where = where
        # Made only when the first read is not a whole, valid head without a body
        # (parse_response declined).
        self.parser: ResponseParser | None = None
        self.opened: asyncio.Future[WebSocket] = self.loop.create_future()
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.handshake.request_bytes())

    def handshake_data(self, data: bytes) -> None:
        parser = self.parser
        limits = self.limits
        try:
            if parser is None:
                if not self.answered:
                    self.answered = True
                    if not self.uri.secure and _TLS_RECORD.match(data):
                        self._refused(ConnectFailed(
                            f"{self.where} answered with TLS: the server speaks TLS, use wss://"
                        ))
                        return
                    # Most first reads hold the whole 101: parsed at once, no parser object.
                    parsed = parse_response(data, limits.max_line_length, limits.max_headers,
                                            limits.max_header_bytes)
                    if parsed is not None:
                        result = self.handshake.receive_response(parsed[0])
                        self._opened(result, data[parsed[1]:])
                        return
                # The server's response head is bounded like a request (core/limits.py).
                parser = self.parser = ResponseParser(
                    max_line_length=limits.max_line_length,
                    max_headers=limits.max_headers,
                    max_header_bytes=limits.max_header_bytes,
                )
            response = parser.feed(data)
            if response is None:
                return
            result = self.handshake.receive_response(response)
        except InvalidHandshake as exc:
            self._refused(exc)
            return
        self.parser = None
        self._opened(result, parser.leftover)

    def _opened(self, result: HandshakeResult, leftover: bytes) -> None:
        ws = WebSocket(self, None, result.subprotocol, list(result.extensions),
                       response_headers=result.headers)
        self.open(ws, result.extensions, leftover)
        if not self.opened.done():
            self.opened.set_result(ws)
        # Frames may follow the 101 at once, even in the same read (RFC 6455 §4.1): they wait,
        # with anything after them, until connect() has returned and listeners are set.
        self.pause_reading()

    def start(self) -> None:
        """Called just after connect() has returned: process what came behind the 101."""
        self.resume_reading()
        self.feed_pending()

    def _refused(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def handshake_lost(self, exc: Exception | None) -> None:
        if self.opened.done():
            return
        hint = ""
        if not self.answered and not self.uri.secure:
            hint = " without answering (if the server speaks TLS, use wss://)"
        failure = ConnectFailed(
            f"{self.where} closed the connection during the opening handshake{hint}",
            transient=True,
        )
        failure.__cause__ = exc
        self.opened.set_exception(failure)


class _Progress:
    """Where the opening is, for the message of a timeout."""

    stage = "starting"


# Python 3.11 bounds the opening in the caller's own task; wait_for (3.10) runs it in a task
# of its own, which cost a task, two more loop iterations and their callbacks per connection.
_timeout = getattr(asyncio, "timeout", None)


async def open_connection(options: ClientOptions) -> WebSocket:
    """Open one connection as ``options`` say, following redirects; bounded by open_timeout."""
    progress = _Progress()
    try:
        if _timeout is None:  # pragma: no cover - Python 3.10
            ws, protocol = await asyncio.wait_for(_follow(options, progress),
                                                  options.open_timeout)
        else:
            async with _timeout(options.open_timeout):
                ws, protocol = await _follow(options, progress)
    except (TimeoutError, asyncio.TimeoutError) as exc:  # the same class from Python 3.11 on
        raise TimeoutError(
            f"timed out after {options.open_timeout:g} s opening {options.uri.url} "
            f"while {progress.stage} (open_timeout= waits longer)"
        ) from exc
    # Scheduled here, in the caller's task (not inside wait_for's task on 3.10): it then runs
    # once the caller, to whom this returns, has set its listeners and yielded (RFC 6455 §4.1
    # frames that came with the 101 wait until then).
    asyncio.get_running_loop().call_soon(protocol.start)
    return ws


async def _follow(options: ClientOptions, progress: _Progress) -> tuple[WebSocket, ClientProtocol]:
    uri = options.opening_uri()
    headers = options.headers
    for hop in range(options.max_redirects + 1):
        try:
            ws, protocol = await _open_once(options, uri, headers, progress, first=hop == 0)
        except InvalidHandshake as exc:
            if exc.status not in REDIRECT_STATUSES:
                raise
            target = redirect_target(uri, exc)
            if hop == options.max_redirects:
                raise InvalidHandshake(
                    f"more than {options.max_redirects} redirects (the last to {target.url})",
                    status=exc.status,
                ) from None
            if (target.host.lower(), target.port) != (uri.host.lower(), uri.port):
                headers = [(n, v) for n, v in headers if n.lower() not in _CREDENTIALS]
            logger.info("HTTP %d: redirected from %s to %s", exc.status, uri.url, target.url)
            uri = target
            continue
        ws.url = uri.url
        return ws, protocol
    raise AssertionError("unreachable")  # pragma: no cover


def redirect_target(uri: WebSocketURI, refusal: InvalidHandshake) -> WebSocketURI:
    """Where a 3xx answer sends the client: its Location, resolved against the current URL.

    http:// and https:// Locations map to ws:// and wss://. Leaving TLS (wss:// to ws://)
    is refused with InvalidHandshake, as is a Location that is missing or not a WebSocket URL.
    """
    status = refusal.status
    location = next((v for n, v in refusal.headers if n.lower() == "location"), None)
    if not location:
        raise InvalidHandshake(f"HTTP {status} redirect without a Location header", status=status)
    # Joined as http(s) URLs, then mapped back: relative references resolve the same way.
    base = ("https" if uri.secure else "http") + uri.url[uri.url.index(":"):]
    parts = urlsplit(urljoin(base, location))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    url = urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))
    try:
        target = parse_uri(url)
    except ValueError as exc:
        raise InvalidHandshake(f"HTTP {status} redirect to {location!r}: {exc}", status) from None
    if uri.secure and not target.secure:
        raise InvalidHandshake(
            f"HTTP {status} redirect from {uri.url} to {target.url} refused: "
            "it would leave TLS (wss:// to ws://)",
            status=status,
        )
    return target


async def _open_once(options: ClientOptions, uri: WebSocketURI, headers: Sequence[tuple[str, str]],
                     progress: _Progress, *, first: bool) -> tuple[WebSocket, ClientProtocol]:
    handshake = ClientHandshake(
        uri.host_header,
        uri.target,
        origin=options.origin,
        subprotocols=options.subprotocols,
        extensions=extension_factories(options.compression, is_client=True),
        extra_headers=headers,
    )
    loop = asyncio.get_running_loop()
    # The unix socket stands for the URL's server; a redirect elsewhere goes over TCP.
    unix = options.unix if first or uri.host == options.uri.host else None
    proxy = None if unix else choose_proxy(options.proxy, uri)
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    where = unix if unix else f"{host}:{uri.port}"
    if proxy is not None:
        where += f" (through the proxy {proxy})"
    protocol: ClientProtocol | None = None

    def factory() -> ClientProtocol:
        nonlocal protocol
        protocol = ClientProtocol(options.limits, handshake, uri, where)
        return protocol

    kwargs: dict[str, Any] = {}
    if uri.secure:
        kwargs["ssl"] = options.ssl or ssl_module.create_default_context()
        same_host = uri.host == options.uri.host
        kwargs["server_hostname"] = (options.server_hostname if same_host else None) or uri.host
    try:
        try:
            if unix is not None:
                progress.stage = f"connecting to the unix socket {unix}"
                await loop.create_unix_connection(factory, unix, **kwargs)
            elif proxy is not None:
                progress.stage = f"opening a tunnel through the proxy {proxy}"
                sock = await open_tunnel(proxy, uri.host, uri.port)
                progress.stage = "in the TLS handshake" if uri.secure else "starting"
                await loop.create_connection(factory, sock=sock, **kwargs)
            else:
                progress.stage = f"connecting to {where}"
                await loop.create_connection(factory, uri.host, uri.port, **kwargs)
        except OSError as exc:
            raise _explain(exc, uri, where) from exc
        progress.stage = "waiting for the answer to the WebSocket handshake"
        assert protocol is not None
        ws = await protocol.opened
    except BaseException:
        if protocol is not None:
            protocol.abort()
        raise
    return ws, protocol


def _explain(exc: OSError, uri: WebSocketURI, where: str) -> OSError:
    """A one-line error for a socket or TLS failure: what happened, and what to try."""
    if isinstance(exc, ConnectFailed | ssl_module.SSLCertVerificationError):
        return exc  # already readable (the CLI words the certificate case)
    if isinstance(exc, ssl_module.SSLError):
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            return ConnectFailed(f"TLS handshake with {where} failed ({reason}): the server "
                                 "does not speak TLS, use ws://")
        if isinstance(exc, ssl_module.SSLEOFError | ssl_module.SSLZeroReturnError):
            return ConnectFailed(f"{where} closed the connection during the TLS handshake "
                                 "(if the server does not speak TLS, use ws://)", transient=True)
        return ConnectFailed(f"TLS handshake with {where} failed: {reason}")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed(f"cannot resolve the host {uri.host!r}: {exc.strerror or exc}",
                             transient=True)
    codes = {exc.errno} if exc.errno is not None else {int(n) for n in _ERRNO.findall(str(exc))}
    if codes == {errno.ECONNREFUSED}:
        return ConnectFailed(f"cannot connect to {where}: connection refused "
                             "(is the server running?)", transient=True)
    return ConnectFailed(f"cannot connect to {where}: {os_error_text(exc)}", transient=True)
