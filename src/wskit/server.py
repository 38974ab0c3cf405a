"""App and serve: listening, TLS, upgrade dispatch to routes, and graceful shutdown (1001)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import resource
import signal
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from .aio.protocol import WebSocketProtocol
from .core import limits as defaults
from .core.close import CloseCode
from .core.connection import Role, State
from .core.errors import InvalidHandshake
from .core.extensions import ExtensionFactory
from .core.handshake import accept_request, error_response, reject
from .core.http import Request as HttpRequest
from .core.http import RequestParser, parse_request
from .extensions import Compression, extension_factories
from .request import Request
from .response import Response
from .router import Refusal, Router
from .routes import Hook, HttpHandler, Routes, RouteSpec
from .stats import ServerStats, prometheus_text
from .websocket import WebSocket

__all__ = ["App", "Request", "Response"]

logger = logging.getLogger("wskit")

# Enum members as module constants: on CPython 3.11 each lookup on the class costs some 900
# instructions (EnumType.__getattr__), paid per connection.
_SERVER = Role.SERVER
_CONNECTING = State.CONNECTING
_ABNORMAL = CloseCode.ABNORMAL_CLOSURE

Handler = Callable[..., Any]


class App(Routes):
    """A WebSocket server: routes, limits, hooks; ``run`` or ``serve`` it.

    Routes and hooks come from ``Routes`` (``websocket``, ``get``, ``before_upgrade``,
    ``mount``). Each limit is an argument with a safe default (``wskit.core.limits``).

    Args:
        compression: ``"deflate"`` (permessage-deflate when the client offers it), None for
            none, or configured ``PerMessageDeflateFactory`` objects.
        subprotocols: The subprotocols accepted, in the server's order of preference.
        origins: The ``Origin`` values allowed (403 for others); None allows every origin.
            Put None in the set to also allow requests without an ``Origin``.
        max_message_size: Largest message accepted, after decompression (1009 beyond).
        max_queue: Messages (or coroutine-listener calls) kept before reading pauses.
        max_connections: Open connections beyond which upgrades get 503.
        write_limit: Write buffer high-water mark in bytes (``drain()`` waits below it).
        open_timeout: Seconds for the opening handshake (None: no limit).
        close_timeout: Seconds for the closing handshake before the connection is dropped.
        ping_interval: Seconds between keepalive pings (None: no keepalive).
        ping_timeout: Seconds a ping may wait for its pong before closing with 1011.
        max_header_bytes: Largest upgrade request head, in bytes (431 beyond).
        max_fragments: Frames one message may come in (1009 beyond).
        max_batch_messages: Messages one read hands to listeners before others run.
        max_batch_bytes: Message bytes one read hands to listeners before others run.
        idle_timeout: Seconds without a message either way after which a connection is
            closed with 1001 (None: never; keepalive pings do not count).
        max_handshakes: Opening handshakes run at once before new connections get 503.
        max_connections_per_ip: Connections (handshakes included) one client address may
            have before 429 (None: no limit).

    Raises:
        ValueError: A limit out of range, or an unknown ``compression``.
    """

    mountable = False

    def __init__(
        self,
        *,
        compression: Compression = "deflate",
        subprotocols: Sequence[str] = (),
        origins: Iterable[str | None] | None = None,
        max_message_size: int = defaults.MAX_MESSAGE_SIZE,
        max_queue: int = defaults.MAX_QUEUE,
        max_connections: int = defaults.MAX_CONNECTIONS,
        write_limit: int = defaults.WRITE_LIMIT,
        open_timeout: float | None = defaults.OPEN_TIMEOUT,
        close_timeout: float | None = defaults.CLOSE_TIMEOUT,
        ping_interval: float | None = defaults.PING_INTERVAL,
        ping_timeout: float | None = defaults.PING_TIMEOUT,
        max_header_bytes: int = defaults.MAX_HEADER_BYTES,
        max_fragments: int = defaults.MAX_FRAGMENTS,
        max_batch_messages: int = defaults.MAX_BATCH_MESSAGES,
        max_batch_bytes: int = defaults.MAX_BATCH_BYTES,
        idle_timeout: float | None = defaults.IDLE_TIMEOUT,
        max_handshakes: int = defaults.MAX_HANDSHAKES,
        max_connections_per_ip: int | None = None,
    ) -> None:
        super().__init__()
        self.router = Router()
        self.limits = defaults.Limits(
            max_message_size=max_message_size,
            max_queue=max_queue,
            write_limit=write_limit,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_header_bytes=max_header_bytes,
            max_fragments=max_fragments,
            max_batch_messages=max_batch_messages,
            max_batch_bytes=max_batch_bytes,
            idle_timeout=idle_timeout,
        )
        if max_handshakes < 1 or (max_connections_per_ip is not None
                                  and max_connections_per_ip < 1):
            raise ValueError("max_handshakes and max_connections_per_ip must be at least 1")
        #: Opening handshakes under way at once (TCP accepted, no WebSocket yet) before new
        #: connections are refused with 503: half-open connections cost a descriptor too.
        self.max_handshakes = max_handshakes
        #: Connections (handshakes included) from one address before 429; None: no cap.
        self.max_connections_per_ip = max_connections_per_ip
        self._stats = ServerStats()
        self._fd_warned = False
        self._refusals_logged = 0
        self.compression = compression
        self._deflate_factories: list[ExtensionFactory] | None = None
        self.subprotocols = list(subprotocols)
        #: Allowed ``Origin`` values (403 for others); None allows every origin. Put None in
        #: the allowlist to also accept requests without an Origin (non-browser clients).
        self.origins: set[str | None] | None = set(origins) if origins is not None else None
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        #: Every open WebSocket connection, so none is lost while it is open.
        self.connections: set[WebSocket] = set()
        self._protocols: set[ServerProtocol] = set()
        self._servers: list[asyncio.Server] = []
        self._port: int | None = None
        self._stopping: asyncio.Event | None = None
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        # Bound once: each connection's on_close list holds this one method object.
        self._forget_ws = self._forget

    # -- routes ------------------------------------------------------------------------------

    def add(self, spec: RouteSpec) -> None:
        """Add one route (every ``websocket``, ``get`` and ``mount`` ends here) to the router.

        Args:
            spec: The route: its kind, path, handler, methods and hooks.

        Raises:
            ValueError: The path is invalid or already taken.
        """
        super().add(spec)
        if spec.kind == "websocket":
            self.router.add_websocket(spec.path, spec.handler, spec.hooks)
        else:
            self.router.add_http(spec.path, spec.handler, spec.methods)

    # -- serving -----------------------------------------------------------------------------

    async def start(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8080,
        *,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
        sock: socket.socket | None = None,
        unix: str | None = None,
    ) -> asyncio.Server:
        """Start listening and return at once; ``stop()`` or ``shutdown()`` ends it.

        Args:
            host: The address to listen on (None: every interface).
            port: The TCP port; 0 picks a free one (then ``app.port`` says which).
            ssl: A server ``ssl.SSLContext`` to serve ``wss://``.
            reuse_port: Set ``SO_REUSEPORT``, so that several processes share the port.
            backlog: The listen backlog.
            sock: An already listening socket to serve instead of (host, port).
            unix: The path of a unix domain socket to listen on instead.

        Returns:
            The asyncio server.

        Raises:
            OSError: The address cannot be listened on (in use, not permitted).
        """
        loop = asyncio.get_running_loop()
        if unix is not None:
            server = await loop.create_unix_server(lambda: ServerProtocol(self), unix, ssl=ssl,
                                                   backlog=backlog)
        elif sock is not None:
            server = await loop.create_server(lambda: ServerProtocol(self), sock=sock, ssl=ssl,
                                              backlog=backlog)
        else:
            server = await loop.create_server(
                lambda: ServerProtocol(self),
                host,
                port,
                ssl=ssl,
                reuse_port=reuse_port or None,
                backlog=backlog,
            )
        self._servers.append(server)
        if unix is not None:
            logger.info("listening on unix:%s", unix)
            return server
        if self._port is None:
            self._port = int(server.sockets[0].getsockname()[1])
        for sock in server.sockets:
            logger.info("listening on %s", _format_address(sock.getsockname(), ssl is not None))
        return server

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful with ``port=0``); kept after shutdown.

        Raises:
            RuntimeError: The app has not started listening yet.
        """
        if self._port is None:
            raise RuntimeError("the app is not listening yet; call start() or serve() first")
        return self._port

    async def serve(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8080,
        *,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool = False,
        handle_signals: bool = False,
        sock: socket.socket | None = None,
        ready: Callable[[], Any] | None = None,
        unix: str | None = None,
    ) -> None:
        """Serve until ``stop()`` is called (or SIGINT/SIGTERM with ``handle_signals``),
        then shut down gracefully (see ``shutdown``).

        Args:
            host: The address to listen on (None: every interface).
            port: The TCP port; 0 picks a free one.
            ssl: A server ``ssl.SSLContext`` to serve ``wss://``.
            reuse_port: Set ``SO_REUSEPORT``.
            handle_signals: Stop on SIGINT and SIGTERM (from the main thread only).
            sock: An already listening socket to serve instead of (host, port).
            ready: Called once listening.
            unix: The path of a unix domain socket to listen on instead.

        Raises:
            OSError: The address cannot be listened on.
        """
        self._stopping = asyncio.Event()
        await self.start(host, port, ssl=ssl, reuse_port=reuse_port, sock=sock, unix=unix)
        if ready is not None:
            ready()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        try:
            await self._stopping.wait()
        finally:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            await self.shutdown()

    def stop(self) -> None:
        """Ask ``serve`` to shut down gracefully."""
        if self._stopping is not None:
            self._stopping.set()

    async def shutdown(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down",
                       timeout: float | None = None) -> None:
        """Stop listening, close every connection with 1001 and wait for the closing handshakes.

        The wait is bounded by ``timeout`` (default: the close timeout); connections still open
        then are dropped. Handler tasks still running are cancelled.

        Args:
            code: The close code sent to every connection.
            reason: The close reason sent with it.
            timeout: Seconds to wait for the closing handshakes (None: ``close_timeout``).
        """
        if self._stopping is not None:
            self._stopping.set()
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        if timeout is None:
            timeout = self.limits.close_timeout
        for proto in list(self._protocols):
            if proto.conn.state is State.CONNECTING:  # in the opening handshake, or answering
                proto.abort()                              # plain HTTP
        closing = [asyncio.ensure_future(ws.close(code, reason)) for ws in list(self.connections)]
        if closing:
            logger.info("closing %d connections with %d", len(closing), code)
            _, pending = await asyncio.wait(closing, timeout=timeout)
            if pending:
                for proto in list(self._protocols):
                    proto.abort()
                # After abort() the transports report connection_lost at once.
                _, pending = await asyncio.wait(pending, timeout=1.0)
                for task in pending:
                    task.cancel()
        tasks = list(self._handler_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for server in servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def run(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8080,
        *,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool = False,
        workers: int = 1,
        unix: str | None = None,
    ) -> None:
        """Serve in a new event loop (uvloop when installed) until SIGINT or SIGTERM.

        Args:
            host: The address to listen on (None: every interface).
            port: The TCP port.
            ssl: A server ``ssl.SSLContext`` to serve ``wss://``.
            reuse_port: Set ``SO_REUSEPORT``.
            workers: N > 1 forks N processes serving the same port (``wskit.workers``); use
                a ``Hub("redis://...")`` so that topics span them.
            unix: The path of a unix domain socket to listen on instead of (host, port).

        Raises:
            ValueError: ``workers`` together with ``unix``.
            SystemExit: The workers' supervisor ended with an error status.
        """
        from .loop import run

        if workers > 1 and unix is not None:
            raise ValueError("workers= serves a TCP port; it does not combine with unix=")
        if workers > 1:
            from .workers import Listener, supervise

            def worker(listener: Listener) -> int:
                run(self.serve(listener.host, listener.port, ssl=ssl, sock=listener.sock,
                               reuse_port=listener.reuse_port, handle_signals=True,
                               ready=listener.ready))
                return 0

            code = supervise(worker, workers=workers, host=host, port=port)
            if code:
                raise SystemExit(code)
            return
        run(self.serve(host, port, ssl=ssl, reuse_port=reuse_port, handle_signals=True,
                       unix=unix))

    # -- dispatch (called by ServerProtocol) ---------------------------------------------------

    def _handle_request(self, proto: ServerProtocol, raw: HttpRequest) -> None:
        found = self.router.resolve(raw.method, raw.path, "upgrade" in raw.headers)
        if isinstance(found, Refusal):
            logger.info("[%s] refusing %s %s from %s: %d %s", proto.id, raw.method, raw.path,
                        proto.peer, found.status, found.reason)
            proto.respond(reject(found.status, found.reason, found.headers))
            return
        route, params = found
        if route.kind == "http":
            self._run_http(proto, route.handler, Request(raw, params, proto.peer))
            return
        if self._full(proto):
            return
        req = Request(raw, params, proto.peer)
        if self.origins is not None:
            origin = raw.headers.get("Origin")
            if origin not in self.origins:
                logger.info("[%s] refusing origin %r from %s", proto.id, origin, proto.peer)
                proto.respond(reject(403, "origin not allowed"))
                return
        # The app's hook, then the route's groups' and its own: the first Response refuses.
        hooks = route.hooks if self.upgrade_hook is None else (self.upgrade_hook, *route.hooks)
        if not hooks:
            self._upgrade(proto, req, route.handler, checked=True)
            return
        verdict: Any = None
        for index, hook in enumerate(hooks):
            try:
                verdict = hook(req)
            except Exception:
                logger.exception("before_upgrade hook raised")
                proto.respond(reject(500, "internal error"))
                return
            if inspect.isawaitable(verdict):
                proto.pause_reading()
                task = asyncio.ensure_future(self._await_hooks(
                    proto, req, route.handler, verdict, hooks[index + 1:]))
                self._track(task)
                return
            if isinstance(verdict, Response):
                break
        self._after_hook(proto, req, route.handler, verdict)

    async def _await_hooks(self, proto: ServerProtocol, req: Request, handler: Handler,
                           verdict: Awaitable[Any],
                           rest: Sequence[Hook]) -> None:
        try:
            result = await verdict
            for hook in rest:
                if isinstance(result, Response):
                    break
                result = hook(req)
                if inspect.isawaitable(result):
                    result = await result
        except Exception:
            logger.exception("before_upgrade hook raised")
            proto.respond(reject(500, "internal error"))
            return
        if proto.transport is None or proto.transport.is_closing():
            return
        proto.resume_reading()
        self._after_hook(proto, req, handler, result)

    def _after_hook(self, proto: ServerProtocol, req: Request, handler: Handler,
                    verdict: Any) -> None:
        if isinstance(verdict, Response):
            logger.info("[%s] refusing the upgrade to %s from %s: %d (before_upgrade hook)",
                        proto.id, req.path, proto.peer, verdict.status)
            _send_response(proto, verdict, req)
            return
        self._upgrade(proto, req, handler)

    # -- observability -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of this server: ``connections_open``, ``handshakes_in_progress``,
        ``messages_in``/``messages_out`` and ``bytes_in``/``bytes_out`` (open and closed
        connections), ``close_codes`` and ``refused_handshakes`` (by HTTP status) counted,
        ``slow_consumers`` (messages ``dropped``, connections ``closed``) and ``ping_rtt``
        percentiles (``p50``, ``p90``, ``p99``, seconds, of the last 1,024 round trips).

        Returns:
            A dict of the counters (plain numbers and dicts, ready for JSON).
        """
        counts = ((proto.conn.messages_in, proto.conn.messages_out, proto.bytes_in,
                   proto.bytes_out) for proto in self._protocols
                  if proto.conn.state is not State.CONNECTING)
        return self._stats.snapshot(counts, len(self.connections))

    def metrics_route(self, path: str = "/metrics") -> None:
        """Serve ``stats()`` at ``path`` in Prometheus' text exposition format (0.0.4).

        Args:
            path: The path of the plain HTTP GET route to add.
        """
        def metrics(req: Request) -> Response:
            return Response(prometheus_text(self.stats()),
                            content_type="text/plain; version=0.0.4; charset=utf-8")

        self.get(path, metrics)

    def _extension_factories(self) -> Sequence[ExtensionFactory]:
        """The factories of ``compression`` for one upgrade; those of None and "deflate" (the
        common settings) are made once, since a factory holds only its configuration."""
        compression = self.compression
        if compression is None:
            return ()
        if compression != "deflate" or type(compression) is not str:
            return extension_factories(compression, is_client=False)
        factories = self._deflate_factories
        if factories is None:
            factories = self._deflate_factories = extension_factories(compression,
                                                                      is_client=False)
        return factories

    def _admit(self, proto: ServerProtocol) -> None:
        """A TCP connection was accepted: refuse it at once (before reading its request) when
        too many handshakes are under way or its address has too many connections."""
        stats = self._stats
        limit = _nofile[0] if _nofile else _fd_limit()
        if stats.handshakes > self.max_handshakes:
            self._refuse_early(proto, 503, f"{stats.handshakes - 1} handshakes under way")
        elif limit and len(self._protocols) > limit - _FD_RESERVE:
            # Answered while a descriptor is left to answer with (past the limit, accept
            # fails and the peer gets nothing, or a reset).
            self._refuse_early(proto, 503, f"{len(self._protocols)} connections, near the "
                                           f"limit of {limit} file descriptors")
        elif (self.max_connections_per_ip is not None and proto.ip is not None
              and stats.per_ip[proto.ip] > self.max_connections_per_ip):
            self._refuse_early(proto, 429, f"{stats.per_ip[proto.ip] - 1} connections from "
                                           f"{proto.ip}")
        if limit and len(self._protocols) > limit * 0.9:
            if not self._fd_warned:
                self._fd_warned = True
                logger.warning("%d connections, near the limit of %d file descriptors "
                               "(ulimit -n): new connections will soon fail",
                               len(self._protocols), limit)
        elif limit and len(self._protocols) < limit * 0.8:
            self._fd_warned = False

    def _refuse_early(self, proto: ServerProtocol, status: int, why: str) -> None:
        # Logged at WARNING, the first time and then every 1,000th, so a flood of refusals
        # cannot flood the log.
        if self._refusals_logged % 1000 == 0:
            logger.warning("[%s] refusing %s with %d: %s (%d refused so far)", proto.id,
                           proto.peer, status, why, self._refusals_logged + 1)
        self._refusals_logged += 1
        proto.respond(reject(status, "too many connections", [("Retry-After", "1")]),
                      linger=False)

    def _full(self, proto: ServerProtocol) -> bool:
        """Refuse with 503 when max_connections are open (checked once the request is read,
        so that the client reads the answer instead of a reset)."""
        if len(self.connections) < self.max_connections:
            return False
        logger.warning("[%s] refusing %s: %d connections open", proto.id, proto.peer,
                       len(self.connections))
        proto.respond(reject(503, "too many connections", [("Retry-After", "1")]))
        return True

    def _upgrade(self, proto: ServerProtocol, req: Request, handler: Handler,
                 checked: bool = False) -> None:
        # Checked again after hooks (unless ``checked``: none ran): a slow async hook may
        # have let others in.
        if not checked and self._full(proto):
            return
        chosen = req.subprotocol
        try:
            response, result = accept_request(
                req.http,
                subprotocols=self.subprotocols,
                extensions=self._extension_factories(),
                select_subprotocol=(lambda offers: chosen) if chosen is not None else None,
                extra_headers=req.response_headers,
            )
        except InvalidHandshake as exc:
            logger.info("[%s] refusing handshake from %s: %d %s", proto.id, proto.peer,
                        exc.status, exc.reason)
            proto.respond(error_response(exc))
            return
        except ValueError:
            # A hook chose a subprotocol the client did not offer, or set a reserved header.
            logger.exception("cannot accept the upgrade to %s", req.path)
            proto.respond(reject(500, "internal error"))
            return
        proto.write(response)
        # The handshake has read them: from now on they are kept small (headers stay readable).
        req.http.headers.compact()
        ws = WebSocket(proto, req, result.subprotocol, result.extensions,
                       remote_address=proto.peer)
        ws.stats = self._stats
        proto.open(ws, result.extensions)
        if proto._handshaking:  # (_handshake_over, inline)
            proto._handshaking = False
            self._stats.handshakes -= 1
        self.connections.add(ws)
        ws.on_close(self._forget_ws)
        if logger.isEnabledFor(logging.INFO):  # (its arguments cost more than the test)
            logger.info("[%s] open %s %s (%s)", ws.id, proto.peer, req.path,
                        ", ".join(ws.extensions) or "no extensions")
        try:
            outcome = handler(req, ws)
        except Exception as exc:
            ws.listener_failed(exc, f"the handler for {req.path}")
            return
        if outcome is not None and inspect.isawaitable(outcome):
            task = asyncio.ensure_future(self._await_handler(ws, req, outcome))
            self._track(task)
        if proto.conn.has_pending:  # (frames behind the head: seldom)
            proto.feed_pending()

    async def _await_handler(self, ws: WebSocket, req: Request, outcome: Awaitable[Any]) -> None:
        try:
            await outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # An async handler that raises closes with 1011 (docs/architecture.md, Errors).
            if ws.is_closed:
                logger.error("the handler for %s raised", req.path, exc_info=exc)
            else:
                ws.listener_failed(exc, f"the handler for {req.path}")

    def _run_http(self, proto: ServerProtocol, handler: HttpHandler, req: Request) -> None:
        try:
            result = handler(req)
        except Exception:
            logger.exception("HTTP handler for %s raised", req.path)
            proto.respond(reject(500, "internal error"))
            return
        if inspect.isawaitable(result):
            async def finish(awaitable: Awaitable[Any]) -> None:
                try:
                    value = await awaitable
                except Exception:
                    logger.exception("HTTP handler for %s raised", req.path)
                    proto.respond(reject(500, "internal error"))
                    return
                _send_response(proto, value, req)

            self._track(asyncio.ensure_future(finish(result)))
            return
        _send_response(proto, result, req)

    def _track(self, task: asyncio.Task[Any] | asyncio.Future[Any]) -> None:
        assert isinstance(task, asyncio.Task)
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    def _forget(self, ws: WebSocket) -> None:
        self.connections.discard(ws)
        # (Its messages and bytes are counted by its ServerProtocol's connection_lost.)
        self._stats.close_codes[ws.close_code or _ABNORMAL] += 1
        if not logger.isEnabledFor(logging.INFO):
            return
        # Both directions: what the peer sent (1006: nothing) and what we sent, if anything.
        sent = ws.close_sent
        sent_text = "none" if sent is None else f"{_code(sent[0])} {sent[1]!r}"
        logger.info("[%s] closed %s received=%s %r sent=%s", ws.id, ws.remote_address,
                    _code(ws.close_code), ws.close_reason, sent_text)


def _code(code: int | None) -> str:
    """A close code for a log line: its number (1005 for a Close without one)."""
    return "1005" if code is None else str(int(code))


def _status_of(response: bytes) -> int:
    """The status code of an HTTP/1.1 response head ("HTTP/1.1 503 ...")."""
    try:
        return int(response[9:12])
    except ValueError:  # pragma: no cover - every response here is built by reject()
        return 0


_nofile: list[int] = []
#: Descriptors kept free for answering refusals, logs and the listening sockets.
_FD_RESERVE = 16


def _fd_limit() -> int:
    """The soft limit on file descriptors (read once; 0 when unlimited or unknown)."""
    if not _nofile:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        _nofile.append(soft if 0 < soft < 1 << 30 else 0)
    return _nofile[0]


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (``serve`` does at start), so the
    process can hold as many connections as the system lets it; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is not a value the soft one may take on Linux (nr_open caps it).
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    _nofile.clear()
    return soft


def _as_response(value: Any) -> Response:
    if isinstance(value, Response):
        return value
    if isinstance(value, (str, bytes)):
        return Response(value)
    raise TypeError(f"an HTTP handler must return a Response, str or bytes, not {type(value)}")


def _send_response(proto: ServerProtocol, value: Any, req: Request) -> None:
    """Answer with what a handler or hook returned; 500 if it is not a valid response."""
    try:
        data = _as_response(value).to_bytes()
    except (TypeError, ValueError):
        logger.exception("invalid response for %s", req.path)
        data = reject(500, "internal error")
    proto.respond(data)


def _format_address(address: Any, tls: bool) -> str:
    scheme = "wss" if tls else "ws"
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class ServerProtocol(WebSocketProtocol):
    """The server side of one TCP connection: reads the upgrade request, then frames."""

    __slots__ = ("_handshaking", "_head_read", "_ip_counted", "_responded", "app", "ip", "parser",
                 "peer")

    # The base's methods are called by name, not through super(): a super object and its
    # look-up per call, three times per connection (nothing subclasses this protocol).

    def __init__(self, app: App) -> None:
        WebSocketProtocol.__init__(self, app.limits, _SERVER)
        self.app = app
        # Made only when the first read is not a whole, valid head (parse_request declined).
        self.parser: RequestParser | None = None
        self.peer: Any = None
        #: The peer's address without its port (None for a unix socket).
        self.ip: str | None = None
        self._responded = False
        self._handshaking = False
        #: Whether a request head was read (or answered): later bytes are not a new head.
        self._head_read = False
        # Whether this connection is in the per-address count (max_connections_per_ip).
        self._ip_counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        WebSocketProtocol.connection_made(self, transport)
        peer = self.peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.ip = str(peer[0])
        app = self.app
        app._protocols.add(self)
        stats = app._stats
        stats.handshakes += 1
        self._handshaking = True
        # Counted only for the cap, which is all the count serves.
        if self.ip is not None and app.max_connections_per_ip is not None:
            self._ip_counted = True
            stats.per_ip[self.ip] += 1
        app._admit(self)

    def _handshake_over(self) -> None:
        if self._handshaking:
            self._handshaking = False
            self.app._stats.handshakes -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        app = self.app
        app._protocols.discard(self)
        if self._handshaking:  # (_handshake_over, inline: most connections are upgraded)
            self._handshaking = False
            app._stats.handshakes -= 1
        ip = self.ip
        if self._ip_counted and ip is not None:
            self._ip_counted = False
            per_ip = app._stats.per_ip
            per_ip[ip] -= 1
            if per_ip[ip] <= 0:
                del per_ip[ip]
        if self.conn.state is not _CONNECTING:  # an opened WebSocket: count its traffic
            stats = app._stats
            stats.messages_in += self.conn.messages_in
            stats.messages_out += self.conn.messages_out
            stats.bytes_in += self.bytes_in
            stats.bytes_out += self.bytes_out
        WebSocketProtocol.connection_lost(self, exc)

    def handshake_data(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            if self._head_read:
                if not self._responded:
                    # The request is complete and a hook is running: the core keeps what
                    # arrives for after the upgrade (reading is paused meanwhile: bounded).
                    self.receive_early(data)
                return
            limits = self.limits
            # Most first reads hold the whole head: parsed at once, with no parser object.
            parsed = parse_request(data, limits.max_line_length, limits.max_headers,
                                   limits.max_header_bytes)
            if parsed is not None:
                self._head_read = True
                head, end = parsed
                if end < len(data):
                    self.receive_early(data[end:])
                self.app._handle_request(self, head)
                return
            parser = self.parser = RequestParser(
                max_line_length=limits.max_line_length, max_headers=limits.max_headers,
                max_header_bytes=limits.max_header_bytes)
        try:
            request = parser.feed(data)
        except InvalidHandshake as exc:
            logger.info("[%s] bad request from %s: %d %s", self.id, self.peer, exc.status,
                        exc.reason)
            self.respond(error_response(exc))
            return
        if request is None:
            return
        self.parser = None
        self._head_read = True
        self.receive_early(parser.leftover)
        self.app._handle_request(self, request)

    def respond(self, response: bytes, *, linger: bool = True) -> None:
        """Send a plain HTTP response and close the connection; without ``linger`` at once
        (a refusal at accept under load: its descriptor is freed now, not after the peer)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._responded:
            return
        self.parser = None
        self._responded = self._head_read = True
        self._handshake_over()
        status = _status_of(response)
        if status >= 400:
            self.app._stats.refused[status] += 1
        transport.write(response)
        if not linger:
            transport.close()
        elif transport.can_write_eof():
            # The client may still be sending (a request over the limits, frames behind a
            # refused upgrade): closing with unread input resets the connection (RST) and the
            # client may lose the answer. Send FIN behind it instead and discard the input
            # until the client closes too (eof_received) or close_timeout passes.
            transport.write_eof()
            self.resume_reading()
            self.start_close_timer()
        else:
            self.close_transport()  # TLS: its closing handshake reads and discards the rest
