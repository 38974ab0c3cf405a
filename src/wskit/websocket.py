"""The user's WebSocket: send, listeners with their Stream handles, receive, ping and close."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any

from .aio.protocol import WebSocketProtocol
from .core.close import CloseCode
from .core.connection import Connection, PreparedFrame, State
from .core.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidArgument,
    InvalidState,
    without_traceback,
)
from .core.extensions import Extension
from .core.frames import LARGE_PAYLOAD as _LARGE_PAYLOAD
from .core.limits import Limits
from .core.masking import speedups
from .dispatch import Dispatcher, Message
from .streams import Stream, Streams, run_hook

if TYPE_CHECKING:
    from .stats import ServerStats

__all__ = ["Delivery", "Message", "Stream", "WebSocket", "send_prepared_to"]

logger = logging.getLogger("wskit")

_OPEN = State.OPEN
_CLOSED_STATE = State.CLOSED
# (Enum members as module constants: on 3.11 each lookup on the class costs ~900 instructions,
# and connection_ended runs once per connection.)
_ABNORMAL = CloseCode.ABNORMAL_CLOSURE


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


# Module constants: a member looked up on its Enum class costs some 250 ns (EnumType has a
# __getattr__), once per delivery of a fan-out.
_SENT = Delivery.SENT
_NOT_OPEN = Delivery.NOT_OPEN
_DROPPED = Delivery.DROPPED
_CLOSED = Delivery.CLOSED
_OUTCOMES = (_SENT, _DROPPED, _CLOSED)

#: The C twin of the loop below for frames sent as they are (``_speedups.fan_out``), or None.
compiled_fan_out: Callable[..., tuple[int, int, int]] | None = getattr(
    speedups, "fan_out", None)


def send_prepared_to(
    sockets: Iterable[WebSocket],
    frame: PreparedFrame,
    compress: bool = False,
    max_buffered: int | None = None,
    slow: str = "close",
) -> tuple[int, int, int]:
    """``WebSocket.send_prepared`` for each of ``sockets``: the loop of a fan-out, without a
    call and a result per delivery. Returns how many were sent, dropped and closed."""
    fan_out = compiled_fan_out
    if fan_out is not None and not compress:
        # The C loop writes the shared frame where it may as it is; it hands every other
        # socket (not open, slow, a client, ...) to send_prepared.
        def one(ws: WebSocket) -> Delivery:
            return ws.send_prepared(frame, max_buffered=max_buffered, slow=slow)

        return fan_out(sockets, frame.plain, max_buffered, one, _OPEN, _OUTCOMES)
    sent = dropped = closed = 0
    for ws in sockets:
        conn = ws._conn
        if conn.state is not _OPEN and not conn.close_pending:
            continue
        protocol = ws._protocol
        if max_buffered is not None:
            buffered = protocol.buffered_over(max_buffered)
            if buffered:
                if ws._slow(buffered, slow) is _DROPPED:
                    dropped += 1
                else:
                    closed += 1
                continue
        try:
            data = conn.send_prepared(frame, compress=compress)
        except InvalidState:  # in the middle of its own fragmented message
            continue
        protocol.write(data)
        sent += 1
    return sent, dropped, closed


class WebSocket(Dispatcher):
    """One open WebSocket connection, server or client side.

    Plain-function listeners run inline from the receive path, in message order; coroutine
    listeners run one at a time per connection, in order (``dispatch.Dispatcher``). Messages
    with no listener of their kind wait (bounded) for ``receive()``. The connection's facts
    are its core ``Connection``'s; its transport and timers are its protocol's.

    The server makes one for each accepted upgrade and ``wskit.connect`` for each client
    connection; programs do not create it.

    Args:
        protocol: The binding's protocol that owns the transport and the core connection.
        request: The upgrade request (server side) or None (client side).
        subprotocol: The negotiated subprotocol, or None.
        extensions: The negotiated extensions.
        response_headers: The handshake response's headers (client side).
        remote_address: Where the peer is; by default, as the transport gives it.
    """

    # One per open connection: slots (a ``__dict__`` still takes attributes a program sets,
    # made on the first one; ``__weakref__`` for the hub's weak set). The C twin of the
    # fan-out loop reads _conn and _protocol at their offsets (_speedups.fan_out).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_closed_future",
        "_conn",
        "_loop",
        "_on_finish",
        "_pings",
        "_protocol",
        "_streams",
        "extensions",
        "id",
        "remote_address",
        "request",
        "response_headers",
        "stats",
        "subprotocol",
        "url",
    )

    def __init__(
        self,
        protocol: WebSocketProtocol,
        request: Any,
        subprotocol: str | None,
        extensions: list[Extension],
        response_headers: Any = None,
        remote_address: Any = None,
    ) -> None:
        self._protocol = protocol
        self._conn = protocol.conn
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
        # (Most connections negotiate none: no comprehension, which is a call on 3.11.)
        self.extensions = [ext.name for ext in extensions] if extensions else []
        #: The short id log lines name this connection by.
        self.id: str = protocol.id
        #: Where a server counts slow-consumer actions and ping round trips (None: nowhere).
        self.stats: ServerStats | None = None
        self._streams = Streams(self._loop)
        self._init_dispatch()
        # The pings awaiting their pong, the future wait_closed() waits on and the on_close
        # hooks are made when first needed: most connections never need the first two.
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] | None = None
        self._closed_future: asyncio.Future[None] | None = None
        self._on_finish: list[Callable[[WebSocket], Any]] | None = None
        #: Where the peer is, as given by the socket.
        self.remote_address: Any = remote_address
        transport = protocol.transport
        if remote_address is None and transport is not None:
            self.remote_address = transport.get_extra_info("peername")

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
        kind = type(data)
        if kind is str:
            frame = conn.send_text(data, compress=compress)  # type: ignore[arg-type]
        # (The exact types first: isinstance with a tuple costs more than the rest of a send.)
        elif kind is bytes or kind is memoryview or isinstance(
                data, (bytes, bytearray, memoryview)):
            if len(data) >= _LARGE_PAYLOAD:
                # Header and payload written apart: no copy of a large payload behind it.
                header, payload = conn.send_parts(data, compress=compress)
                # (Any bytes-like object goes through the cork to the transport as it is.)
                self._protocol.write_parts(header, payload)  # type: ignore[arg-type]
                return
            frame = conn.send_binary(data, compress=compress)  # type: ignore[arg-type]
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
            return _NOT_OPEN
        protocol = self._protocol
        if max_buffered is not None:
            buffered = protocol.buffered_over(max_buffered)
            if buffered:
                return self._slow(buffered, slow)
        try:
            data = conn.send_prepared(frame, compress=compress)
        except InvalidState:  # in the middle of our own fragmented message
            return _NOT_OPEN
        protocol.write(data)
        return _SENT

    def _slow(self, buffered: int, slow: str) -> Delivery:
        """A slow consumer (``buffered`` bytes queued, over the limit): drop or close it."""
        stats = self.stats
        if slow == "drop":
            if stats is not None:
                stats.slow["dropped"] += 1
            return _DROPPED
        if slow != "close":
            raise InvalidArgument(f"slow must be 'drop' or 'close', not {slow!r}")
        if stats is not None:
            stats.slow["closed"] += 1
        logger.warning("[%s] closing slow consumer %s (%d bytes queued) with 1013",
                       self.id, self.remote_address, buffered)
        self._protocol.start_close(CloseCode.TRY_AGAIN_LATER, "too slow")
        return _CLOSED

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
        if self._conn.state is not _OPEN:
            self._raise_closed()
        if not fragments:
            raise InvalidArgument("send_fragments() needs at least one fragment")
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
        if conn.state is _CLOSED_STATE or conn.close_sent or conn.close_code is not None:
            raise self._closed_error()
        raise InvalidState(f"cannot send in state {conn.state.name}")

    # -- ping --------------------------------------------------------------------------------

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
        if self._conn.state is not _OPEN:
            self._raise_closed()
        payload = os.urandom(4) if data is None else bytes(data)
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        if payload in pings:
            raise InvalidArgument("a ping with this payload is already waiting for its pong")
        frame = self._conn.send_ping(payload)
        future: asyncio.Future[float] = self._loop.create_future()
        pings[payload] = (future, self._loop.time())
        self._protocol.write(frame)
        try:
            return await future
        except asyncio.CancelledError:
            pings.pop(payload, None)
            raise

    def _pong_received(self, payload: bytes) -> None:
        pings = self._pings
        if pings is None or payload not in pings:
            return  # RFC 6455 §5.5.3: an unsolicited pong needs no answer.
        now = self._loop.time()
        # A pong answers its ping and every earlier one (RFC 6455 §5.5.3 allows skipping).
        for key in list(pings):
            future, sent = pings.pop(key)
            if not future.done():
                future.set_result(now - sent)
            if key == payload:
                self._protocol.latency = now - sent
                if self.stats is not None:
                    self.stats.rtts.append(now - sent)
                break

    # -- closing -----------------------------------------------------------------------------

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
        if self._conn.state is _OPEN:
            self._protocol.start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        future = self._closed_future
        if future is None:
            future = self._closed_future = self._loop.create_future()
            if self._finished:
                future.set_result(None)
        await asyncio.shield(future)

    def on_close(self, fn: Callable[[WebSocket], Any]) -> None:
        """Call ``fn(ws)`` once the connection has ended (the server and the hub use it).

        Args:
            fn: Called with this WebSocket after every ``catch`` and ``finally_``.
        """
        if self._on_finish is None:
            self._on_finish = [fn]
        else:
            self._on_finish.append(fn)

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

    @property
    def close_sent(self) -> tuple[int | None, str] | None:
        """The code and reason of the Close frame we sent, if any (code None: no code)."""
        conn = self._conn
        return (conn.sent_code, conn.sent_reason) if conn.close_sent else None

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered ping (keepalive or ``ping()``), in seconds;
        None before the first."""
        return self._protocol.latency

    @property
    def error(self) -> BaseException | None:
        """The error that ended the connection, if any (a RemoteError, a listener's exception…)."""
        return self._error

    def connection_ended(self, exc: Exception | None) -> None:
        """Receiver.connection_ended: called once by the binding when nothing more arrives.

        Args:
            exc: The transport's error, or None after a regular close.
        """
        if self._finished:
            return
        self._finished = True
        conn = self._conn
        error = self._error or self._protocol.failure
        if error is None and conn.close_code == _ABNORMAL:
            error = ConnectionClosedError(
                _ABNORMAL,
                str(exc) if exc else "connection lost without a close frame",
            )
            if exc is not None:
                error.__cause__ = without_traceback(exc)
        elif error is None and not conn.clean:
            # The peer closed with an error code (see core.close.is_clean; our own
            # close(code) is never an error, nor an application's 4000-4999 code).
            error = conn.close_exception()
        self._error = error
        pings = self._pings
        if pings:
            closed = self._closed_error()
            for future, _ in pings.values():
                if not future.done():
                    future.set_exception(closed)
            pings.clear()
        if self._inbox_waiters:
            self._wake_receivers()
        if self._async_runner is None:
            self._end_streams()
        # Otherwise coroutine listeners still have messages received before the end: the
        # handles end (catch, then finally_) once those calls are done.
        hooks, self._on_finish = self._on_finish, None
        for hook in hooks or ():
            run_hook(self._loop, hook, self)
        # A protocol may keep its WebSocket after the end (the ASGI one does, for the
        # disconnect code); the WebSocket lets go of the protocol, so the two are no cycle
        # that only the collector frees.
        # (No typing.cast: a Python call per connection.)
        self._protocol = _Detached(self._protocol)  # type: ignore[assignment]
        ended = self._closed_future
        if ended is not None and not ended.done():
            ended.set_result(None)


#: ``WebSocket.send`` with its common case in C when the extension is built
#: (``_speedups.Sender``: a connection OPEN without an extension, a client's frames masked
#: with a fresh key each, RFC 6455 §5.3; str or a bytes-like
#: object below ``LARGE_PAYLOAD``, no keyword): no Python frame for send,
#: ``Connection.send_text`` / ``send_binary`` and ``WebSocketProtocol.write``, which it does
#: on their slots. Every other call goes to the pure method above, which stays the one
#: definition of what send does.
_Sender: Callable[..., Any] | None = getattr(speedups, "Sender", None)
if _Sender is not None:
    setattr(WebSocket, "send", functools.update_wrapper(  # noqa: B010 - mypy: method-assign
        _Sender(WebSocket.send, _OPEN, Connection, WebSocketProtocol.write, _LARGE_PAYLOAD),
        WebSocket.send))


class _Detached:
    """What a finished WebSocket refers to instead of its protocol: the calls that may still
    come (a receive() resuming reading, buffered_amount, latency) answer without it."""

    __slots__ = ("id", "latency", "limits")

    buffered_amount = 0
    holding_close = False
    transport = None
    failure = None

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self.limits: Limits = protocol.limits
        self.latency = protocol.latency
        self.id = protocol.id

    def _nothing(self, *args: Any) -> None:
        pass

    write = write_parts = pause_reading = resume_reading = answers_drained = start_close = _nothing
    close_transport = start_close_timer = abort = _nothing

    async def drain(self) -> None:
        pass
