"""connect: the client's entry point, awaited, used with ``async with`` or iterated to reconnect."""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import AsyncIterator, Generator, Sequence
from typing import Any, Literal, overload

from .core import limits as defaults
from .core.limits import Limits
from .dial import open_connection
from .extensions import Compression
from .options import ClientOptions, Headers, OnOpen, Resume, WebSocketURI, parse_uri
from .reconnect import ReconnectingWebSocket, RetryPolicy, reconnecting
from .websocket import WebSocket

__all__ = ["ClientOptions", "Connect", "WebSocketURI", "connect", "parse_uri"]


class Connect:
    """What ``connect()`` returns: ``await`` it, use it with ``async with``, or iterate it."""

    def __init__(self, options: ClientOptions, retry: RetryPolicy) -> None:
        self.options = options
        self._retry = retry
        self._ws: WebSocket | None = None

    async def _open(self) -> WebSocket:
        return await open_connection(self.options)

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._open().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> AsyncIterator[WebSocket]:
        """A connected WebSocket, then another after each abnormal end (see wskit.reconnect)."""
        return reconnecting(self.options, self._retry)


@overload
def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = ...,
    headers: Headers | None = ...,
    subprotocols: Sequence[str] | None = ...,
    origin: str | None = ...,
    compression: Compression = ...,
    open_timeout: float | None = ...,
    close_timeout: float | None = ...,
    ping_interval: float | None = ...,
    ping_timeout: float | None = ...,
    max_message_size: int = ...,
    max_queue: int = ...,
    write_limit: int = ...,
    max_fragments: int = ...,
    max_batch_messages: int = ...,
    max_batch_bytes: int = ...,
    idle_timeout: float | None = ...,
    server_hostname: str | None = ...,
    proxy: str | bool | None = ...,
    unix: str | None = ...,
    max_redirects: int = ...,
    reconnect: Literal[False] = ...,
    on_open: OnOpen | None = ...,
    resume: Resume | None = ...,
    backoff_initial: float = ...,
    backoff_factor: float = ...,
    backoff_max: float = ...,
    retry_going_away: bool = ...,
) -> Connect: ...
@overload
def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = ...,
    headers: Headers | None = ...,
    subprotocols: Sequence[str] | None = ...,
    origin: str | None = ...,
    compression: Compression = ...,
    open_timeout: float | None = ...,
    close_timeout: float | None = ...,
    ping_interval: float | None = ...,
    ping_timeout: float | None = ...,
    max_message_size: int = ...,
    max_queue: int = ...,
    write_limit: int = ...,
    max_fragments: int = ...,
    max_batch_messages: int = ...,
    max_batch_bytes: int = ...,
    idle_timeout: float | None = ...,
    server_hostname: str | None = ...,
    proxy: str | bool | None = ...,
    unix: str | None = ...,
    max_redirects: int = ...,
    reconnect: Literal[True],
    on_open: OnOpen | None = ...,
    resume: Resume | None = ...,
    backoff_initial: float = ...,
    backoff_factor: float = ...,
    backoff_max: float = ...,
    retry_going_away: bool = ...,
) -> ReconnectingWebSocket: ...
def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    headers: Headers | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    compression: Compression = "deflate",
    open_timeout: float | None = defaults.OPEN_TIMEOUT,
    close_timeout: float | None = defaults.CLOSE_TIMEOUT,
    ping_interval: float | None = defaults.PING_INTERVAL,
    ping_timeout: float | None = defaults.PING_TIMEOUT,
    max_message_size: int = defaults.MAX_MESSAGE_SIZE,
    max_queue: int = defaults.MAX_QUEUE,
    write_limit: int = defaults.WRITE_LIMIT,
    max_fragments: int = defaults.MAX_FRAGMENTS,
    max_batch_messages: int = defaults.MAX_BATCH_MESSAGES,
    max_batch_bytes: int = defaults.MAX_BATCH_BYTES,
    idle_timeout: float | None = defaults.IDLE_TIMEOUT,
    server_hostname: str | None = None,
    proxy: str | bool | None = True,
    unix: str | None = None,
    max_redirects: int = 10,
    reconnect: bool = False,
    on_open: OnOpen | None = None,
    resume: Resume | None = None,
    backoff_initial: float = 1.0,
    backoff_factor: float = 2.0,
    backoff_max: float = 60.0,
    retry_going_away: bool = False,
) -> Connect | ReconnectingWebSocket:
    """Open a client connection to a ``ws://`` or ``wss://`` URL.

    - ``ws = await connect(url)``, or ``async with connect(url) as ws:`` (closed at the end);
    - ``async for ws in connect(url):`` yields a connected WebSocket, and another after each
      abnormal end (refused, reset, 1006, 1011-1014, HTTP 5xx or 429), waiting between
      attempts with exponential backoff and full jitter (``backoff_*``; ``Retry-After`` on
      503 and 429 is honoured). A normal close ends the loop (1001 from the server only
      reconnects with ``retry_going_away``); other errors raise at once;
    - ``connect(url, reconnect=True)``: a ReconnectingWebSocket whose listeners and handles
      outlive each connection; ``on_open(client)`` is called after each (re)connection.

    ``wss://`` verifies the server's certificate with a default ``ssl.SSLContext``; pass
    ``ssl=`` for your own. ``proxy``: True reads ``ws_proxy``/``http_proxy``/``https_proxy``/
    ``all_proxy``/``no_proxy`` as curl does, a URL (``http://user:pw@host:port``,
    ``socks5://``, ``socks5h://``) uses that proxy, None turns proxies off. ``unix``: connect
    to a unix domain socket at that path instead of the URL's host. Redirects (301, 302, 303,
    307, 308) are followed up to ``max_redirects`` times; ``ws.url`` is the final URL.
    ``open_timeout`` bounds the whole opening: DNS, proxy, TCP, TLS, handshake, redirects.
    ``resume`` (a ``wskit.Positions``) adds the hub positions it has seen to the URL of each
    opening, so that a reconnecting client resumes every topic where it left it.

    Args:
        url: The ``ws://`` or ``wss://`` URL.
        ssl: Your own ``ssl.SSLContext`` for ``wss://``.
        headers: Extra request headers: a mapping or ``(name, value)`` pairs.
        subprotocols: Subprotocols to offer, in order of preference.
        origin: The ``Origin`` header.
        compression: ``"deflate"`` to offer permessage-deflate, None for none, or
            configured factories.
        open_timeout: Seconds for the whole opening (None: no limit).
        close_timeout: Seconds for the closing handshake.
        ping_interval: Seconds between keepalive pings (None: no keepalive).
        ping_timeout: Seconds a ping may wait for its pong before closing with 1011.
        max_message_size: Largest message accepted, after decompression (1009 beyond).
        max_queue: Messages kept for ``receive()`` before reading pauses.
        write_limit: Write buffer high-water mark: over it reading pauses and ``drain()``
            waits.
        max_fragments: Frames one message may come in (1009 beyond).
        max_batch_messages: Messages handed to listeners per loop iteration.
        max_batch_bytes: Message bytes handed to listeners per loop iteration.
        idle_timeout: Seconds without a message before closing with 1001 (None: never).
        server_hostname: The TLS server name, when it differs from the URL's host.
        proxy: True: from the environment, as curl reads it; a proxy URL; None: no proxy.
        unix: Path of a unix domain socket to connect to instead of the URL's host.
        max_redirects: Redirects followed at most.
        reconnect: True returns a ``ReconnectingWebSocket``.
        on_open: ``on_open(client)`` after each (re)connection of a reconnecting client.
        backoff_initial: Seconds: the first wait before reconnecting is uniform in
            [0, this].
        backoff_factor: Each further attempt may wait this many times longer.
        backoff_max: The longest wait between attempts.
        retry_going_away: Reconnect after a 1001 from the server too.
        resume: A ``wskit.Positions``: the hub positions it has seen go in the URL of each
            opening, so that a reconnecting client resumes its topics.

    Returns:
        An awaitable (and async context manager, and async iterator) of the WebSocket, or
        a ``ReconnectingWebSocket`` with ``reconnect=True``.

    Raises:
        ValueError: A URL that is not ``ws://`` or ``wss://``, or a limit out of range.

    Awaiting it raises ``InvalidHandshake`` (with the HTTP ``status``) for a refused
    handshake, ``ConnectFailed`` (an ``OSError``; ``ProxyError`` for a proxy) when the
    connection cannot be made, and ``TimeoutError`` after ``open_timeout``.
    """
    limits = Limits(
        max_message_size=max_message_size,
        max_queue=max_queue,
        write_limit=write_limit,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_fragments=max_fragments,
        max_batch_messages=max_batch_messages,
        max_batch_bytes=max_batch_bytes,
        idle_timeout=idle_timeout,
    )
    options = ClientOptions(
        url, ssl=ssl, headers=headers, subprotocols=subprotocols, origin=origin,
        compression=compression, open_timeout=open_timeout, server_hostname=server_hostname,
        proxy=proxy, unix=unix, max_redirects=max_redirects, limits=limits, resume=resume,
    )
    if not reconnect and (backoff_initial, backoff_factor, backoff_max, retry_going_away) == (
            1.0, 2.0, 60.0, False):
        # The defaults: one policy for every Connect, which only reads it (a
        # ReconnectingWebSocket shows its own as .policy, so it gets a fresh one).
        return Connect(options, _DEFAULT_RETRY)
    retry = RetryPolicy(
        initial=backoff_initial, factor=backoff_factor, maximum=backoff_max,
        retry_going_away=retry_going_away,
    )
    if reconnect:
        return ReconnectingWebSocket(options, retry, on_open)
    return Connect(options, retry)


_DEFAULT_RETRY = RetryPolicy()
