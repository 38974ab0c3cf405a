"""The user's WebSocket: send, listeners with their Stream handles, receive, ping and close."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Union, cast

from .core.close import CloseCode
from .core.connection import (
    BinaryMessage,
    CloseReceived,
    Event,
    Failed,
    Ping,
    Pong,
    PreparedFrame,
    State,
    TextMessage,
)
from .core.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    KeepaliveTimeout,
    without_traceback,
)
from .core.extensions import Extension

if TYPE_CHECKING:
    from .aio.protocol import WebSocketProtocol
    from .core.limits import Limits
    from .stats import ServerStats

__all__ = ["Delivery", "Message", "Stream", "WebSocket"]

logger = logging.getLogger("wskit")

Message = Union[str, bytes]  # noqa: UP007 - a runtime alias, usable on Python 3.10
TextListener = Callable[["WebSocket", str], Any]
BinaryListener = Callable[["WebSocket", bytes], Any]
BufferListener = Callable[["WebSocket", memoryview], Any]
ControlListener = Callable[["WebSocket", bytes], Any]

_OPEN = State.OPEN


class Delivery(Enum):
    """What ``WebSocket.send_prepared`` did with a prepared frame."""

    #: Written (or corked, to be written after the listeners of this read).
    SENT = "sent"
    #: Not written: the connection is closing or closed.
    NOT_OPEN = "not open"
    #: Not written: a slow consumer (``slow="drop"``), which misses this message.
    DROPPED = "dropped"
    #: Not written: a slow consumer (``slow="close"``), now closing with 1013.
    CLOSED = "closed"


class Stream:
    """What an ``on_*`` call returns: ``.catch(fn)`` for errors, ``.finally_(fn)`` at close.

    Like a settled future, a handle whose connection has already ended calls what is attached
    to it soon (in the next loop iteration, in the order attached).

    Args:
        ws: The WebSocket whose end it reports (``on_*`` makes the handle; programs do not).
    """

    __slots__ = ("_catchers", "_ended", "_error", "_finalizers", "_loop")

    def __init__(self, ws: WebSocket) -> None:
        # The loop, not the WebSocket: a handle kept by its WebSocket must not refer back.
        self._loop = ws._loop
        self._catchers: list[Callable[[BaseException], Any]] = []
        self._finalizers: list[Callable[[], Any]] = []
        self._ended = False
        self._error: BaseException | None = None

    def catch(self, fn: Callable[[BaseException], Any]) -> Stream:
        """Call ``fn(error)`` when the connection ends with an error.

        Args:
            fn: Called with the error (a ``RemoteError``, a listener's exception, a
                ``ConnectionClosedError``...); may be a coroutine function.

        Returns:
            This handle, to chain ``.finally_``.
        """
        if not self._ended:
            self._catchers.append(fn)
        elif self._error is not None:
            self._loop.call_soon(_run_hook, self._loop, fn, self._error)
        return self

    def finally_(self, fn: Callable[[], Any]) -> Stream:
        """Call ``fn()`` when the connection ends, after every ``catch``.

        Args:
            fn: Called with no argument, whether or not the end was an error; may be a
                coroutine function.

        Returns:
            This handle, to chain more.
        """
        if not self._ended:
            self._finalizers.append(fn)
        else:
            self._loop.call_soon(_run_hook, self._loop, fn)
        return self

    def _end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error


class _Listener:
    """A listener slot: the function, whether it is a coroutine function, and its handle."""

    __slots__ = ("fn", "is_async", "stream", "zero_copy")

    def __init__(self, ws: WebSocket, fn: Callable[..., Any], zero_copy: bool = False) -> None:
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__  # an object with ``async def __call__``
        )
        self.zero_copy = zero_copy
        self.stream = Stream(ws)
        if ws._streams_ended:
            self.stream._end(ws._error)
        else:
            # Kept even once replaced: what was attached to it still runs at the end.
            ws._streams.append(self.stream)


class WebSocket:
    """One open WebSocket connection, server or client side.

    Plain-function listeners run inline from the receive path, in message order; coroutine
    listeners run one at a time per connection, in order. Messages with no listener of their
    kind wait (bounded) for ``receive()``.

    The server makes one for each accepted upgrade and ``wskit.connect`` for each client
    connection; programs do not create it.

    Args:
        protocol: The binding's protocol that owns the transport and the core connection.
        request: The upgrade request (server side) or None (client side).
        subprotocol: The negotiated subprotocol, or None.
        extensions: The negotiated extensions.
        response_headers: The handshake response's headers (client side).
    """

    def __init__(
        self,
        protocol: WebSocketProtocol,
        request: Any,
        subprotocol: str | None,
        extensions: list[Extension],
        response_headers: Any = None,
    ) -> None:
        self._protocol = protocol
        conn = protocol.conn
        assert conn is not None
        self._conn = conn
        self._loop = protocol.loop
        #: The HTTP upgrade request (server side) or None (client side).
        self.request = request
        #: The handshake response headers (client side).
        self.response_headers = response_headers
        #: The URL connected to, after redirects (client side); None on the server.
        self.url: str | None = None
        #: The negotiated subprotocol, or None.
        self.subprotocol = subprotocol
        #: The negotiated extensions' names.
        self.extensions = [ext.name for ext in extensions]
        self._text: _Listener | None = None
        self._binary: _Listener | None = None
        self._on_ping: _Listener | None = None
        self._on_pong: _Listener | None = None
        # Every handle ever returned, in order, replaced ones included (their catch and
        # finally_ run too).
        self._streams: list[Stream] = []
        self._inbox: deque[Message] = deque()
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._async_calls: deque[tuple[_Listener, Any]] = deque()
        self._async_runner: asyncio.Task[None] | None = None
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._error: BaseException | None = None
        self._finished = False
        self._streams_ended = False
        self._closed_future: asyncio.Future[None] = self._loop.create_future()
        self._keepalive: asyncio.TimerHandle | None = None
        self._keepalive_deadline: asyncio.TimerHandle | None = None
        self._on_finish: list[Callable[[WebSocket], Any]] = []
        #: Round-trip time of the last answered ping, in seconds (None before the first).
        self.latency: float | None = None
        #: Where the peer is, as given by the socket.
        self.remote_address: Any = None
        transport = protocol.transport
        if transport is not None:
            self.remote_address = transport.get_extra_info("peername")
        if protocol.limits.ping_interval:
            self._keepalive = self._loop.call_later(
                protocol.limits.ping_interval, self._keepalive_tick
            )
        #: The short id log lines name this connection by.
        self.id: str = protocol.id
        #: Where a server counts slow-consumer actions and ping round trips (None: nowhere).
        self._stats: ServerStats | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_seen = -1  # messages in and out at the last idle check
        self._idle_since = 0.0
        if protocol.limits.idle_timeout:
            self._idle = self._loop.call_later(protocol.limits.idle_timeout / 4, self._idle_tick)

    def __repr__(self) -> str:
        return f"<WebSocket {self._conn.role.value} {self._conn.state.name} {self.remote_address}>"

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: str | bytes | bytearray | memoryview, *, compress: bool = True) -> None:
        """Send a text (``str``) or binary message; never blocks (see ``drain``).

        Args:
            data: ``str`` is sent as text; ``bytes``, ``bytearray`` or ``memoryview`` as
                binary.
            compress: False sends this message uncompressed even when permessage-deflate
                was negotiated (for data that is compressed already).

        Raises:
            ConnectionClosed: The connection is closing or closed
                (``ConnectionClosedOK`` or ``ConnectionClosedError``, with its code).
            InvalidState: The connection is not open yet.
            TypeError: ``data`` is of another type.
        """
        conn = self._conn
        # close_pending: a listener answers a message that arrived before the peer's Close.
        if conn.state is not _OPEN and not conn.close_pending:
            self._raise_closed()
        if type(data) is str:
            frame = conn.send_text(data, compress=compress)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            frame = conn.send_binary(data, compress=compress)
        elif isinstance(data, str):
            frame = conn.send_text(str(data), compress=compress)
        else:
            raise TypeError(
                f"send() takes str, bytes, bytearray or memoryview, not {type(data).__name__}"
            )
        self._protocol.write(frame)

    def send_prepared(
        self,
        frame: PreparedFrame,
        *,
        compress: bool = False,
        max_buffered: int | None = None,
        slow: str = "close",
    ) -> Delivery:
        """Write a message prepared once for many connections (``PreparedFrame(message)``);
        the fan-out seam that ``broadcast`` and the hub use (docs/architecture.md, "Seams").

        Not written when the connection is no longer open (``NOT_OPEN``), or when its write
        buffer already holds more than ``max_buffered`` bytes: a slow consumer, closed with
        1013, try again later, with ``slow="close"`` (``CLOSED``), or left to miss this
        message with ``slow="drop"`` (``DROPPED``). Nothing is buffered without bound.

        Args:
            frame: The message, prepared once (``wskit.PreparedFrame(message)``).
            compress: Send it compressed where permessage-deflate was negotiated.
            max_buffered: Bytes already queued beyond which this connection is slow; None
                for no limit.
            slow: ``"close"`` or ``"drop"``: what happens to a slow connection.

        Returns:
            What happened: ``Delivery.SENT``, ``NOT_OPEN``, ``DROPPED`` or ``CLOSED``.

        Raises:
            ValueError: ``slow`` is neither ``"close"`` nor ``"drop"``.
        """
        conn = self._conn
        if conn.state is not _OPEN and not conn.close_pending:
            return Delivery.NOT_OPEN
        if max_buffered is not None:
            buffered = self._protocol.buffered_amount
            if buffered > max_buffered:
                stats = self._stats
                if slow == "drop":
                    if stats is not None:
                        stats.slow["dropped"] += 1
                    return Delivery.DROPPED
                if slow != "close":
                    raise ValueError(f"slow must be 'drop' or 'close', not {slow!r}")
                if stats is not None:
                    stats.slow["closed"] += 1
                logger.warning("[%s] closing slow consumer %s (%d bytes queued) with 1013",
                               self.id, self.remote_address, buffered)
                self._start_close(CloseCode.TRY_AGAIN_LATER, "too slow")
                return Delivery.CLOSED
        try:
            data = conn.send_prepared(frame, compress=compress)
        except InvalidState:  # in the middle of our own fragmented message
            return Delivery.NOT_OPEN
        self._protocol.write(data)
        return Delivery.SENT

    def send_fragments(
        self, fragments: list[str] | list[bytes], *, text: bool | None = None
    ) -> None:
        """Send one message as several frames (RFC 6455 §5.4), uncompressed.

        Args:
            fragments: The pieces, one frame each: all ``str`` or all bytes-like.
            text: Whether the message is text; by default, when the pieces are ``str``.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            InvalidState: The connection is not open yet.
            ValueError: No fragment given.
        """
        if self._conn.state is not State.OPEN:
            self._raise_closed()
        if not fragments:
            raise ValueError("send_fragments() needs at least one fragment")
        if text is None:
            text = isinstance(fragments[0], str)
        pieces: list[str | bytes] = list(fragments)
        last = len(pieces) - 1
        frames = [
            self._conn.send_fragment(piece, first=i == 0, fin=i == last, text=text)
            for i, piece in enumerate(pieces)
        ]
        self._protocol.write(b"".join(frames))

    @property
    def buffered_amount(self) -> int:
        """Bytes queued in the write buffer, not yet taken by the kernel."""
        return self._protocol.buffered_amount

    async def drain(self) -> None:
        """Wait until the write buffer falls below its low-water mark.

        Raises:
            ConnectionClosed: The TCP connection is gone (what was queued may be lost).
        """
        if not self._finished:
            await self._protocol.drain()
        if self._finished:
            self._raise_closed()

    def _closed_error(self) -> ConnectionClosed:
        """The code and reason received (1006 if none came), else those we sent; an error
        type unless the connection closed cleanly (core's ``Connection.close_exception``)."""
        closed = self._conn.close_exception()
        if self._error is not None and isinstance(closed, ConnectionClosedOK):
            # Closed on purpose, but because a listener raised or a keepalive went unanswered.
            return ConnectionClosedError(closed.code, closed.reason)
        return closed

    def _raise_closed(self) -> None:
        conn = self._conn
        if conn.state is State.CLOSED or conn.close_sent or conn.close_code is not None:
            raise self._closed_error()
        raise InvalidState(f"cannot send in state {conn.state.name}")

    # -- listeners ---------------------------------------------------------------------------

    def on_text(self, fn: TextListener) -> Stream:
        """Call ``fn(ws, text)`` for each text message; replaces the previous text listener.

        Text messages that waited for a listener are handed to it first, in order.

        Args:
            fn: A plain function (run inline from the receive path) or a coroutine function
                (run one call at a time, in order), called as ``fn(ws, text: str)``.

        Returns:
            The listener's handle, for ``.catch`` and ``.finally_``.
        """
        self._text = _Listener(self, fn)
        self._flush_inbox(str)
        return self._text.stream

    def on_binary(self, fn: BinaryListener) -> Stream:
        """Call ``fn(ws, data: bytes)`` for each binary message; replaces the binary listener.

        Args:
            fn: A plain function or a coroutine function, called as ``fn(ws, data: bytes)``.

        Returns:
            The listener's handle, for ``.catch`` and ``.finally_``.
        """
        self._binary = _Listener(self, fn)
        self._flush_inbox(bytes)
        return self._binary.stream

    def on_buffer(self, fn: BufferListener) -> Stream:
        """Call ``fn(ws, view: memoryview)``, zero-copy and valid only during the call.

        It shares the binary slot with ``on_binary`` (setting one replaces the other).

        Args:
            fn: Called as ``fn(ws, view)``; keep ``bytes(view)`` to use the data later (a
                coroutine function gets a view over its own copy).

        Returns:
            The listener's handle, for ``.catch`` and ``.finally_``.
        """
        self._binary = _Listener(self, fn, zero_copy=True)
        self._flush_inbox(bytes)
        return self._binary.stream

    def on_ping(self, fn: ControlListener) -> Stream:
        """Call ``fn(ws, payload)`` for each ping (the pong is sent automatically).

        Args:
            fn: Called as ``fn(ws, payload: bytes)``.

        Returns:
            The listener's handle.
        """
        self._on_ping = _Listener(self, fn)
        return self._on_ping.stream

    def on_pong(self, fn: ControlListener) -> Stream:
        """Call ``fn(ws, payload)`` for each pong.

        Args:
            fn: Called as ``fn(ws, payload: bytes)``.

        Returns:
            The listener's handle.
        """
        self._on_pong = _Listener(self, fn)
        return self._on_pong.stream

    def on_close(self, fn: Callable[[WebSocket], Any]) -> None:
        """Call ``fn(ws)`` once the connection has ended (the server and the hub use it).

        Args:
            fn: Called with this WebSocket after every ``catch`` and ``finally_``.
        """
        self._on_finish.append(fn)

    def _flush_inbox(self, kind: type) -> None:
        """Hand queued messages of this kind to the listener that was just set, in order."""
        if not self._inbox:
            return
        keep: deque[Message] = deque()
        while self._inbox:
            message = self._inbox.popleft()
            if isinstance(message, kind):
                self._deliver(message)
            else:
                keep.append(message)
        self._inbox = keep
        self._maybe_resume()

    def _deliver(self, message: Message) -> None:
        listener = self._text if isinstance(message, str) else self._binary
        assert listener is not None
        self._call(listener, message)

    # -- the receive path --------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        """Called by the protocol with the events of one read; plain listeners run inline.

        When a plain listener raises, the connection closes with 1011 and the rest of the
        read is not delivered.
        """
        try:
            for event in events:
                cls = type(event)
                if cls is TextMessage:
                    listener = self._text
                    if listener is None:
                        self._enqueue(event.data)  # type: ignore[attr-defined]
                    elif listener.is_async:
                        self._schedule(listener, event.data)  # type: ignore[attr-defined]
                    else:
                        listener.fn(self, event.data)  # type: ignore[attr-defined]
                elif cls is BinaryMessage:
                    data = event.data  # type: ignore[attr-defined]
                    listener = self._binary
                    if listener is None:
                        self._enqueue(bytes(data))
                    elif listener.zero_copy and not listener.is_async:
                        _call_with_view(listener.fn, self, data)
                    elif listener.is_async:
                        self._schedule(listener, _binary_arg(listener, data))
                    else:
                        listener.fn(self, data if type(data) is bytes else bytes(data))
                else:
                    self._control(event)
        except Exception as exc:
            self._listener_failed(exc)

    def _call(self, listener: _Listener, data: Any) -> None:
        """Deliver one message outside the receive path (a flushed message of the inbox)."""
        if listener.is_async:
            self._schedule(listener, data if isinstance(data, str) else _binary_arg(listener, data))
            return
        try:
            if isinstance(data, str):
                listener.fn(self, data)
            elif listener.zero_copy:
                _call_with_view(listener.fn, self, data)
            else:
                listener.fn(self, data if type(data) is bytes else bytes(data))
        except Exception as exc:
            self._listener_failed(exc)

    def _control(self, event: Event) -> None:
        if isinstance(event, Ping):
            if self._on_ping is not None:
                self._call_control(self._on_ping, event.data)
        elif isinstance(event, Pong):
            self._pong_received(event.data)
            if self._on_pong is not None:
                self._call_control(self._on_pong, event.data)
        elif isinstance(event, CloseReceived):
            logger.debug("close received: %s %r", event.code, event.reason)
        elif isinstance(event, Failed):
            error = event.error
            logger.warning(
                "[%s] failing connection with %s with %d: %s", self.id,
                self.remote_address, error.close_code, error.reason,
            )
            if self._error is None:
                self._error = error

    def _call_control(self, listener: _Listener, data: bytes) -> None:
        if listener.is_async:
            self._schedule(listener, data)
            return
        try:
            listener.fn(self, data)
        except Exception as exc:
            self._listener_failed(exc)

    def _enqueue(self, message: Message) -> None:
        self._inbox.append(message)
        if len(self._inbox) >= self._protocol.limits.max_queue and self._conn.state is State.OPEN:
            # Bounded: stop reading until receive() takes messages out. (Once we have sent a
            # Close, reading goes on so that the peer's Close is seen; close_timeout bounds it.)
            self._protocol.pause_reading()
        waiter = self._inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _schedule(self, listener: _Listener, data: Any) -> None:
        self._async_calls.append((listener, data))
        if len(self._async_calls) >= self._protocol.limits.max_queue and (
            self._conn.state is State.OPEN
        ):
            self._protocol.pause_reading()
        if self._async_runner is None:
            self._async_runner = self._loop.create_task(self._run_async_listeners())

    async def _run_async_listeners(self) -> None:
        calls = self._async_calls
        try:
            while calls:
                listener, data = calls.popleft()
                try:
                    await listener.fn(self, data)
                except Exception as exc:
                    self._listener_failed(exc)
                    calls.clear()
                    break
                self._maybe_resume()
        finally:
            self._async_runner = None
            if self._finished:
                # The connection ended while calls were queued: now the handles may end.
                self._end_streams()

    def _maybe_resume(self) -> None:
        low = self._protocol.limits.max_queue // 2
        if len(self._inbox) <= low and len(self._async_calls) <= low:
            self._protocol.resume_reading()

    def _listener_failed(self, exc: BaseException, what: str = "a listener") -> None:
        """User code raised: close with 1011 (RFC 6455 §7.4.1) and report it to every catch."""
        if self._finished:
            logger.error("[%s] %s raised after the connection ended", self.id, what,
                         exc_info=exc)
        else:
            logger.error("[%s] %s raised; closing %s with 1011", self.id, what,
                         self.remote_address,
                         exc_info=exc)
        if self._error is None:
            # Logged with its traceback; kept without it, so its frames (and their locals)
            # are not held as long as the connection is.
            self._error = without_traceback(exc)
        if not self._finished:
            self._start_close(CloseCode.INTERNAL_ERROR, "internal error")

    # -- receive / iterate -------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message that no listener took.

        Returns:
            A ``str`` for a text message, ``bytes`` for a binary one.

        Raises:
            ConnectionClosed: The connection has closed and no message is left
                (``ConnectionClosedOK`` after a clean close, else ``ConnectionClosedError``).
        """
        while not self._inbox:
            if self._finished:
                raise self._closed_error()
            # Concurrent receivers share one waiter, each behind its own shield (so that one
            # cancelled receiver does not cancel the others); each takes a message or waits again.
            waiter = self._inbox_waiter
            if waiter is None or waiter.done():
                waiter = self._inbox_waiter = self._loop.create_future()
            await asyncio.shield(waiter)
        message = self._inbox.popleft()
        self._maybe_resume()
        return message

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Messages until the connection closes: quietly after a normal close, else it raises."""
        while True:
            try:
                yield await self.receive()
            except ConnectionClosed:
                if self._error is None:
                    return
                raise

    # -- ping / keepalive --------------------------------------------------------------------

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round-trip time in seconds.

        Args:
            data: The payload (at most 125 bytes); by default four random bytes, so that
                concurrent pings never clash.

        Returns:
            The round-trip time in seconds.

        Raises:
            ConnectionClosed: The connection closed before the pong came.
            ValueError: A ping with the same payload is already waiting for its pong.
        """
        if self._conn.state is not State.OPEN:
            self._raise_closed()
        payload = os.urandom(4) if data is None else bytes(data)
        future = self._send_ping(payload)
        try:
            return await future
        except asyncio.CancelledError:
            self._pings.pop(payload, None)
            raise

    def _send_ping(self, payload: bytes) -> asyncio.Future[float]:
        if payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        frame = self._conn.send_ping(payload)
        future: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (future, self._loop.time())
        self._protocol.write(frame)
        return future

    def _pong_received(self, payload: bytes) -> None:
        if payload not in self._pings:
            return  # RFC 6455 §5.5.3: an unsolicited pong needs no answer.
        now = self._loop.time()
        # A pong answers its ping and every earlier one (RFC 6455 §5.5.3 allows skipping).
        for key in list(self._pings):
            future, sent = self._pings.pop(key)
            if not future.done():
                future.set_result(now - sent)
            if key == payload:
                self.latency = now - sent
                if self._stats is not None:
                    self._stats.rtts.append(self.latency)
                break

    def _idle_tick(self) -> None:
        """No message either way for ``idle_timeout`` seconds: close with 1001 (going away).
        Checked four times per period from a message count, so messages cost no timer."""
        self._idle = None
        timeout = self._protocol.limits.idle_timeout
        conn = self._conn
        if conn.state is not _OPEN or not timeout:
            return
        now = self._loop.time()
        seen = conn.messages_in + conn.messages_out
        if seen != self._idle_seen:
            self._idle_seen, self._idle_since = seen, now
        elif now - self._idle_since >= timeout:
            logger.info("[%s] no message for %.0f s; closing %s with 1001", self.id, timeout,
                        self.remote_address)
            self._start_close(CloseCode.GOING_AWAY, "idle timeout")
            return
        self._idle = self._loop.call_later(timeout / 4, self._idle_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive = None
        limits = self._protocol.limits
        if self._conn.state is not State.OPEN or limits.ping_interval is None:
            return
        try:
            future = self._send_ping(os.urandom(4))
        except ValueError:  # pragma: no cover - four random bytes colliding
            return
        # Nobody awaits a keepalive ping: its failure at close must not be reported as lost.
        future.add_done_callback(_retrieve)
        if limits.ping_timeout is not None:
            self._keepalive_deadline = self._loop.call_later(
                limits.ping_timeout, self._keepalive_expired, future
            )
        self._keepalive = self._loop.call_later(limits.ping_interval, self._keepalive_tick)

    def _keepalive_expired(self, future: asyncio.Future[float]) -> None:
        self._keepalive_deadline = None
        if future.done() or self._conn.state is not State.OPEN:
            return
        logger.warning("[%s] keepalive ping to %s not answered; closing with 1011", self.id,
                       self.remote_address)
        error = KeepaliveTimeout()
        if self._error is None:
            self._error = error
        # The peer is unresponsive: fail the connection (RFC 6455 §7.1.7) instead of waiting
        # for a closing handshake that will not come.
        self._send_close(error.code, error.reason)
        self._protocol.close_transport()

    # -- closing -----------------------------------------------------------------------------

    def _send_close(self, code: int, reason: str) -> None:
        if self._conn.state is State.OPEN:
            frame = self._conn.send_close(code, reason)
            self._protocol.write(frame)
        # Read the peer's Close even when the inbox is full (the wait is bounded in time).
        self._protocol.resume_reading()

    def _start_close(self, code: int, reason: str) -> None:
        self._send_close(code, reason)
        self._protocol.start_close_timer()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (bounded by close_timeout), then drop the TCP connection.

        Closing an already closing or closed connection just waits for the end.
        From a plain listener: ``asyncio.ensure_future(ws.close())``.

        Args:
            code: The close code (RFC 6455 §7.4: 1000, 1001, 1003, 1007-1014, 3000-4999).
            reason: The close reason, at most 123 bytes in UTF-8.

        Raises:
            ValueError: A code that may not be sent, or a reason too long (an
                ``InvalidArgument``).
        """
        if self._conn.state is State.OPEN:
            self._start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._closed_future)

    @property
    def is_closed(self) -> bool:
        """True once the TCP connection is gone."""
        return self._finished

    @property
    def state(self) -> State:
        """Where the connection is: ``OPEN``, ``LOCAL_CLOSING``, ``REMOTE_CLOSING``,
        ``CLOSED`` (``wskit.core.connection.State``)."""
        return self._conn.state

    @property
    def close_code(self) -> int | None:
        """The close code received (1005 when none, 1006 when the TCP connection just dropped).

        None while the connection is open.
        """
        return self._conn.close_code

    @property
    def close_reason(self) -> str:
        """The close reason received ("" when none)."""
        return self._conn.close_reason

    def _finish(self, exc: Exception | None) -> None:
        """Called once by the protocol when the TCP connection is gone."""
        if self._finished:
            return
        self._finished = True
        for handle in (self._keepalive, self._keepalive_deadline, self._idle):
            if handle is not None:
                handle.cancel()
        conn = self._conn
        error = self._error
        if error is None and conn.close_code == CloseCode.ABNORMAL_CLOSURE:
            error = ConnectionClosedError(
                CloseCode.ABNORMAL_CLOSURE,
                str(exc) if exc else "connection lost without a close frame",
            )
            if exc is not None:
                error.__cause__ = without_traceback(exc)
        elif error is None and not conn.clean:
            # The peer closed with an error code (see core.close.is_clean; our own
            # close(code) is never an error, nor an application's 4000-4999 code).
            error = conn.close_exception()
        self._error = error
        closed = self._closed_error()
        for future, _ in self._pings.values():
            if not future.done():
                future.set_exception(closed)
        self._pings.clear()
        waiter = self._inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._async_runner is None:
            self._end_streams()
        # Otherwise coroutine listeners still have messages received before the end: the
        # handles end (catch, then finally_) once those calls are done.
        hooks, self._on_finish = self._on_finish, []
        for hook in hooks:
            self._run_hook(hook, self)
        # The protocol may keep this WebSocket (its close code is asked after the end); this
        # WebSocket lets go of the protocol, so the two are no cycle only the collector frees.
        self._protocol = cast("WebSocketProtocol", _Detached(self._protocol.limits))
        if not self._closed_future.done():
            self._closed_future.set_result(None)

    def _end_streams(self) -> None:
        """Call every catch with the error (if any), then every finally_; once."""
        if self._streams_ended:
            return
        self._streams_ended = True
        error = self._error
        streams = self._streams
        for stream in streams:
            stream._end(error)
        if error is not None:
            for stream in streams:
                for catcher in stream._catchers:
                    self._run_hook(catcher, error)
        for stream in streams:
            for finalizer in stream._finalizers:
                self._run_hook(finalizer)
        # Nothing will be called any more: let go of the functions (closures over this
        # WebSocket, often), so that no cycle outlives the connection.
        for stream in streams:
            stream._catchers = []
            stream._finalizers = []
        self._text = self._binary = self._on_ping = self._on_pong = None
        self._async_calls.clear()

    def _run_hook(self, fn: Callable[..., Any], *args: Any) -> None:
        _run_hook(self._loop, fn, *args)

    @property
    def error(self) -> BaseException | None:
        """The error that ended the connection, if any (a RemoteError, a listener's exception…)."""
        return self._error


def _binary_arg(listener: _Listener, data: bytes | bytearray | memoryview) -> Any:
    """What an async binary listener gets: its own bytes (a memoryview over them for on_buffer)."""
    copy = data if type(data) is bytes else bytes(data)
    return memoryview(copy) if listener.zero_copy else copy


def _call_with_view(fn: Callable[..., Any], ws: WebSocket, data: Any) -> None:
    """Call an on_buffer listener with a view that is released when the call returns."""
    view = memoryview(data)
    try:
        fn(ws, view)
    finally:
        # BufferError: the listener exported the buffer further, which is its responsibility.
        # (try/except: contextlib.suppress would cost more than the rest of the call.)
        try:  # noqa: SIM105
            view.release()
        except BufferError:
            pass


class _Detached:
    """What a finished WebSocket refers to instead of its protocol: the calls that may still
    come (a receive() resuming reading, buffered_amount, an abort at shutdown) do nothing."""

    __slots__ = ("limits",)

    buffered_amount = 0

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def _nothing(self, *args: Any) -> None:
        pass

    write = pause_reading = resume_reading = close_transport = start_close_timer = abort = (
        _nothing)

    async def drain(self) -> None:
        pass


def _run_hook(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            loop.create_task(_await(result))
    except Exception:
        logger.exception("a catch/finally_ handler raised")


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _await(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("a catch/finally_ handler raised")



