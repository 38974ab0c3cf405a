"""wskit as uvicorn's WebSocket protocol: ASGI apps (FastAPI, Starlette…) on wskit's core.

Use it with ``uvicorn.run(app, ws=wskit.asgi.UvicornWebSocketProtocol)`` or
``uvicorn.Config(app, ws="wskit.asgi:UvicornWebSocketProtocol")``. It implements the ASGI
WebSocket specification, version 2.4: ``websocket.connect``, ``websocket.accept`` (with a
subprotocol and headers), ``websocket.receive`` / ``websocket.send`` (text and bytes),
``websocket.close`` (code and reason), the ``websocket.http.response`` denial responses and
``websocket.disconnect`` with its code; ``send`` on a closed connection raises
:class:`ClientDisconnected`, an ``OSError``.

uvicorn's settings map onto wskit's limits: ``ws_max_size`` (largest message, after
decompression), ``ws_max_queue`` (messages waiting for ``receive`` before reading pauses),
``ws_ping_interval`` / ``ws_ping_timeout`` (keepalive) and ``ws_per_message_deflate``.
uvicorn itself is not imported: this module reads its config and server state by attribute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol
from urllib.parse import unquote

from .aio.protocol import WebSocketProtocol
from .core.close import CloseCode
from .core.connection import Role
from .core.errors import ConnectionClosed, InvalidHandshake, RemoteError, WSKitError
from .core.handshake import (
    accept_request,
    error_response,
    parse_token_list,
    reject,
    validate_request,
)
from .core.http import Request, RequestParser
from .core.limits import Limits
from .extensions import extension_factories
from .websocket import WebSocket

__all__ = ["ClientDisconnected", "UvicornWebSocketProtocol"]

logger = logging.getLogger("uvicorn.error")

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[Any]]

#: The ASGI WebSocket specification version this module implements.
SPEC_VERSION = "2.4"
#: Bytes a client may send before the app accepts (it should send none, RFC 6455 §4.1):
#: beyond this, reading pauses until the app decides.
MAX_EARLY_BYTES = 64 * 1024
#: Largest denial response body (``websocket.http.response.body``) kept before it is sent.
MAX_DENIAL_BODY = 1 << 20


class UvicornConfig(Protocol):
    """The attributes of ``uvicorn.Config`` this module reads."""

    loaded: bool
    loaded_app: Any
    root_path: str
    asgi_version: str
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_per_message_deflate: bool

    def load(self) -> None:
        """Import the app and fill ``loaded_app`` (uvicorn does it before serving)."""


class UvicornServerState(Protocol):
    """The attributes of ``uvicorn.server.ServerState`` this module reads."""

    connections: set[Any]
    tasks: set[asyncio.Task[None]]
    default_headers: list[tuple[bytes, bytes]]


class ClientDisconnected(OSError):
    """Raised by the ASGI ``send`` once the connection is closed (ASGI spec 2.4).

    Starlette and FastAPI turn it into their ``WebSocketDisconnect``.

    Args:
        code: The close code of the disconnect (1006 when the TCP connection dropped).
        reason: The close reason ("" when none was given).
    """

    def __init__(self, code: int = CloseCode.ABNORMAL_CLOSURE, reason: str = "") -> None:
        super().__init__(f"the WebSocket connection is closed ({code})")
        self.code = code
        self.reason = reason


def limits_from_config(config: UvicornConfig) -> Limits:
    """wskit's limits for uvicorn's ``ws_*`` settings (the rest keep wskit's defaults).

    The opening handshake has no timeout of its own: the ASGI app decides when to accept.
    A ping interval of 0 turns keepalive off, as None does.

    Args:
        config: uvicorn's ``Config`` (read: ``ws_max_size``, ``ws_max_queue``,
            ``ws_ping_interval``, ``ws_ping_timeout``).

    Returns:
        The limits of each connection served with that config.

    Raises:
        ValueError: When a setting is out of range (``ws_max_queue`` below 1, a size of 0).
    """
    return Limits(
        max_message_size=config.ws_max_size,
        max_queue=config.ws_max_queue,
        ping_interval=config.ws_ping_interval or None,
        ping_timeout=config.ws_ping_timeout,
        open_timeout=None,
    )


def _address(info: Any) -> tuple[str, int | None] | None:
    """``(host, port)`` from a socket address; ``(path, None)`` for a Unix socket."""
    if isinstance(info, (tuple, list)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str) and info:
        return (info, None)
    return None


def _latin1_pairs(headers: Iterable[Iterable[bytes]]) -> list[tuple[str, str]]:
    pairs = []
    for name, value in headers:
        pairs.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
    return pairs


class UvicornWebSocketProtocol(WebSocketProtocol):
    """uvicorn's ``ws=`` protocol class: runs the ASGI app of one upgraded connection.

    uvicorn's HTTP protocol creates it with ``(config=, server_state=, app_state=)``, calls
    ``connection_made(transport)`` and ``data_received(request_head)`` with the request it
    already read, then hands the transport over. ``shutdown()`` closes with 1012 (or refuses
    with 503 a request still waiting for the app).

    Args:
        config: uvicorn's ``Config``: the app, ``root_path``, ``asgi_version`` and the
            ``ws_*`` settings (see [limits_from_config][wskit.asgi.limits_from_config]).
        server_state: uvicorn's ``ServerState``: this protocol joins its ``connections``
            while the TCP connection lasts, puts the app's task in its ``tasks`` and sends its
            ``default_headers`` (``server``, ``date``) with the 101 response.
        app_state: The lifespan state; each connection's scope gets a shallow copy.
        _loop: Ignored (uvicorn's protocols accept it); the running loop is used.

    Raises:
        ValueError: When uvicorn's ``ws_*`` settings are out of range.
    """

    def __init__(
        self,
        config: UvicornConfig,
        server_state: UvicornServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        super().__init__(limits_from_config(config), Role.SERVER)
        #: The WebSocket once the app accepted.
        self.ws: WebSocket | None = None
        self.config = config
        self.app: ASGIApp = config.loaded_app
        self.server_state = server_state
        self.app_state = app_state
        self.compression = "deflate" if config.ws_per_message_deflate else None
        self.scope: Scope | None = None
        self.request: Request | None = None
        self.client: tuple[str, int | None] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "ws"
        self._parser: RequestParser | None = RequestParser()
        # Bytes behind the request head, kept by the core until the app accepts (bounded here).
        self._early_size = 0
        self._connect_sent = False
        # Set once the app has accepted, refused, or the connection is gone before that.
        self._decided: asyncio.Future[None] = self.loop.create_future()
        self._denial: tuple[int, list[tuple[str, str]], list[bytes]] | None = None
        self._responded = False  # an HTTP answer (refusal, denial, error) was sent
        self._lost = False
        # The disconnect the app closed with: what receive() returns from then on.
        self._disconnect: Message | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._closed_with: tuple[int, str] | None = None
        self._shutting_down = False

    # -- uvicorn's side ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport uvicorn hands over and note the addresses and the scheme.

        Args:
            transport: The connection's transport (TCP or TLS).
        """
        super().connection_made(transport)
        self.server_state.connections.add(self)
        self.client = _address(transport.get_extra_info("peername"))
        self.server = _address(transport.get_extra_info("sockname"))
        self.scheme = "wss" if transport.get_extra_info("sslcontext") is not None else "ws"

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone: the app's next ``receive`` returns the disconnect.

        Args:
            exc: The transport's error, or None after a regular close.
        """
        self.server_state.connections.discard(self)
        self._lost = True
        super().connection_lost(exc)
        if not self._decided.done():
            self._decided.set_result(None)

    def shutdown(self) -> None:
        """uvicorn is stopping: close an open connection with 1012 (Service Restart), refuse a
        pending one with 503, drop one that is already closing once its close completes."""
        self._shutting_down = True
        ws = self.ws
        if ws is None:
            if not self._responded:
                self._respond(reject(503, "server shutting down", [("Retry-After", "1")]))
            return
        self._server_close(ws, CloseCode.SERVICE_RESTART, "")

    def _server_close(self, ws: WebSocket, code: int, reason: str) -> None:
        """Start the closing handshake from the server's side (not the app's)."""
        if self._close_task is None and not ws.is_closed:
            # The app's disconnect reports this code, whatever the peer answers (RFC 6455
            # §5.5.1 lets it answer with another, as aiohttp's 1000 does).
            self._closed_with = (code, reason)
            self._close_task = self.loop.create_task(ws.close(code, reason))

    # -- the binding's subclass interface ----------------------------------------------------

    def handshake_data(self, data: bytes) -> None:
        """Bytes before the upgrade (the binding's seam): the request head uvicorn replays,
        then anything a client sends before the app decides.

        Args:
            data: The bytes read.
        """
        parser = self._parser
        if parser is None:
            if not self._responded:
                # The app has not decided yet; a client should not send before the 101.
                self.receive_early(data)
                self._early_size += len(data)
                if self._early_size > MAX_EARLY_BYTES:
                    self.pause_reading()
            return
        try:
            request = parser.feed(data)
            if request is None:
                return
            self._parser = None
            validate_request(request)
            scope = self._make_scope(request)  # (a malformed subprotocol list raises too)
        except InvalidHandshake as exc:
            logger.info("refusing a WebSocket request from %s: %d %s",
                        self._peer(), exc.status, exc.reason)
            self._respond(error_response(exc))
            return
        self.request = request
        if parser.leftover:
            self.receive_early(bytes(parser.leftover))
        self.scope = scope
        task = self.loop.create_task(self._run_asgi())
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)

    def _make_scope(self, request: Request) -> Scope:
        raw_path = request.path  # still percent-encoded; also for an absolute-form target
        query = request.target.partition("?")[2]
        root = self.config.root_path
        return {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": SPEC_VERSION},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root,
            "path": root + unquote(raw_path),
            "raw_path": root.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in request.headers.raw_items()],
            "subprotocols": parse_token_list(request.headers.get_all("Sec-WebSocket-Protocol")),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }

    def _respond(self, response: bytes) -> None:
        """Answer with a plain HTTP response (no upgrade) and end the connection."""
        self._parser = None
        if not self._decided.done():
            self._decided.set_result(None)
        transport = self.transport
        if transport is None or transport.is_closing() or self._responded:
            return
        self._responded = True
        transport.write(response)
        if transport.can_write_eof():
            # FIN behind the answer, and read (discarding) until the client closes: closing
            # with unread input would reset the connection and could lose the answer.
            transport.write_eof()
            self.resume_reading()
            self.start_close_timer()
        else:
            self.close_transport()

    # -- the ASGI app ------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        assert self.scope is not None
        try:
            result = await self.app(self.scope, self.asgi_receive, self.asgi_send)
        except ClientDisconnected:
            pass
        except asyncio.CancelledError:
            self._end_after_app(CloseCode.SERVICE_RESTART, "server shutting down")
            raise
        except Exception:
            logger.exception("Exception in ASGI application")
            self._end_after_app(CloseCode.INTERNAL_ERROR, "internal error")
            return
        else:
            if result is not None:
                logger.error("the ASGI app returned %r instead of None", result)
                self._end_after_app(CloseCode.INTERNAL_ERROR, "internal error")
                return
            if self.ws is None and self._denial is None and not self._responded:
                logger.error("the ASGI app returned without accepting or refusing the WebSocket")
        self._end_after_app(CloseCode.NORMAL_CLOSURE, "")

    def _end_after_app(self, code: int, reason: str) -> None:
        """The app is done: send what it left unfinished and close the connection."""
        if self.ws is None:
            if self._denial is not None and not self._responded:
                self._send_denial()  # the body so far: the app returned before its end
            elif not self._responded:
                self._respond(reject(500, "Internal Server Error"))
            return
        self._server_close(self.ws, code, reason)

    async def asgi_receive(self) -> Message:
        """The ASGI ``receive`` callable given to the app.

        Returns:
            ``{"type": "websocket.connect"}`` first; once accepted, each message as
            ``websocket.receive`` (``text`` or ``bytes``), in order; then
            ``websocket.disconnect`` with the ``code`` and ``reason`` (1006 when the
            connection was lost or refused before accepting), on every later call too.
        """
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self._disconnect is not None:
            return dict(self._disconnect)
        ws = self.ws
        if ws is None:
            await asyncio.shield(self._decided)
            ws = self.ws
            if ws is None:  # refused, or the connection was lost before the app accepted
                return {"type": "websocket.disconnect", "code": int(CloseCode.ABNORMAL_CLOSURE),
                        "reason": ""}
        try:
            message = await ws.receive()
        except ConnectionClosed as exc:
            code, reason = exc.code, exc.reason
            error = ws.error
            if isinstance(error, RemoteError) and error.close_code is not None:
                code = error.close_code  # we failed the connection: its code (1009, 1002…)
            elif self._closed_with is not None:
                code, reason = self._closed_with
            return {"type": "websocket.disconnect", "code": code, "reason": reason}
        if isinstance(message, str):
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": message}

    async def asgi_send(self, message: Message) -> None:
        """The ASGI ``send`` callable given to the app.

        Before accepting: ``websocket.accept`` (``subprotocol``, ``headers``),
        ``websocket.close`` (refuses with 403) or ``websocket.http.response.start`` followed by
        ``websocket.http.response.body`` parts (a denial response). Once accepted:
        ``websocket.send`` (exactly one of ``text`` and ``bytes``; waits while the write
        buffer is over its limit) and ``websocket.close`` (``code``, default 1000, and
        ``reason``; starts the closing handshake and returns).

        Args:
            message: The ASGI event.

        Raises:
            ClientDisconnected: The connection is closed (or was refused) already.
            RuntimeError: The event is not allowed in this state, or is invalid: a
                subprotocol the client did not offer, a reserved header, an HTTP status
                out of 200-599, a ``send`` without ``text`` or ``bytes``.
            ValueError: A close code that may not be sent, or a reason over 123 bytes.
        """
        kind = message["type"]
        if self._lost or (self.ws is not None and self.ws.is_closed):
            raise self._disconnected()
        if self._denial is not None:
            self._denial_body(kind, message)
        elif self.ws is None:
            if self._responded:
                raise self._disconnected()
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                # ASGI: a close before accept refuses the handshake with 403 Forbidden.
                logger.info('%s - "WebSocket %s" 403', self._peer(), self._path())
                self._respond(reject(403, b""))
            elif kind == "websocket.http.response.start":
                self._denial_start(message)
            else:
                raise RuntimeError(
                    "expected 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start' before accepting, not {kind!r}"
                )
        elif self._disconnect is not None:
            raise self._disconnected()
        elif kind == "websocket.send":
            await self._send_message(self.ws, message)
        elif kind == "websocket.close":
            await self._close(self.ws, message)
        else:
            raise RuntimeError(f"expected 'websocket.send' or 'websocket.close', not {kind!r}")

    def _peer(self) -> str:
        """The client as uvicorn's log lines show it: ``host:port``."""
        if self.client is None:
            return "-"
        host, port = self.client
        return host if port is None else f"{host}:{port}"

    def _path(self) -> str:
        assert self.request is not None
        return self.request.target

    def _disconnected(self) -> ClientDisconnected:
        if self._disconnect is not None:
            return ClientDisconnected(self._disconnect["code"], self._disconnect["reason"])
        ws = self.ws
        if ws is not None and ws.close_code is not None:
            return ClientDisconnected(ws.close_code, ws.close_reason)
        return ClientDisconnected()

    def _accept(self, message: Message) -> None:
        request = self.request
        assert request is not None
        subprotocol = message.get("subprotocol")
        headers = _latin1_pairs(self.server_state.default_headers)
        headers += _latin1_pairs(message.get("headers") or ())
        try:
            response, result = accept_request(
                request,
                extensions=extension_factories(self.compression, is_client=False),
                select_subprotocol=lambda offered: subprotocol,
                extra_headers=headers,
            )
        except ValueError as exc:
            # A subprotocol the client did not offer, a reserved or invalid header.
            raise RuntimeError(f"cannot accept the WebSocket: {exc}") from exc
        logger.info('%s - "WebSocket %s" [accepted]', self._peer(), self._path())
        self.write(response)
        ws = self.ws = WebSocket(self, request, result.subprotocol, list(result.extensions))
        self.open(ws, result.extensions)
        self.resume_reading()
        self._decided.set_result(None)
        if self._shutting_down:
            self._server_close(ws, CloseCode.SERVICE_RESTART, "")
        self.feed_pending()

    def _denial_start(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise RuntimeError(f"invalid HTTP status {status!r} for a denial response")
        # Content-Length is computed from the body; the body is sent whole, never chunked.
        headers = [(name, value) for name, value in _latin1_pairs(message.get("headers") or ())
                   if name.lower() not in ("content-length", "transfer-encoding")]
        logger.info('%s - "WebSocket %s" %d', self._peer(), self._path(), status)
        self._denial = (status, headers, [])

    def _denial_body(self, kind: str, message: Message) -> None:
        if kind != "websocket.http.response.body":
            raise RuntimeError(
                f"expected 'websocket.http.response.body' after the response start, not {kind!r}"
            )
        if self._responded:
            raise self._disconnected()
        assert self._denial is not None
        body = self._denial[2]
        body.append(bytes(message.get("body", b"")))
        if sum(map(len, body)) > MAX_DENIAL_BODY:
            raise RuntimeError(f"a denial response body is limited to {MAX_DENIAL_BODY} bytes")
        if not message.get("more_body", False):
            self._send_denial()

    def _send_denial(self) -> None:
        assert self._denial is not None
        status, headers, body = self._denial
        try:
            response = reject(status, b"".join(body), headers)
        except ValueError as exc:
            self._respond(reject(500, "Internal Server Error"))
            raise RuntimeError(f"invalid denial response: {exc}") from exc
        self._respond(response)

    async def _send_message(self, ws: WebSocket, message: Message) -> None:
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if data is None:
                raise RuntimeError("a 'websocket.send' message needs 'bytes' or 'text'")
        elif message.get("text") is not None:
            raise RuntimeError("a 'websocket.send' message has both 'bytes' and 'text'")
        try:
            ws.send(data)
            await ws.drain()  # backpressure: wait while the write buffer is over its limit
        except WSKitError as exc:
            raise self._disconnected() from exc

    async def _close(self, ws: WebSocket, message: Message) -> None:
        code = message.get("code")
        code = CloseCode.NORMAL_CLOSURE if code is None else code
        reason = message.get("reason") or ""
        # Started, not awaited: the closing handshake completes in the background (bounded by
        # the close timeout) and the app may return at once.
        task = self.loop.create_task(ws.close(code, reason))
        await asyncio.sleep(0)  # let the task write the Close frame (or raise for a bad code)
        if task.done() and task.exception() is not None:
            task.result()
        self._close_task = task
        self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
