"""The receive side of a WebSocket: listener slots, the inbox for ``receive()``, and the queue
of coroutine-listener calls, each bounded (docs/architecture.md, "The path of a received
message")."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import FunctionType
from typing import TYPE_CHECKING, Any, Union

from .aio.protocol import compiled_reader
from .core.close import CloseCode
from .core.connection import (
    BinaryMessage,
    CloseReceived,
    Event,
    Failed,
    Ping,
    Pong,
    State,
    TextMessage,
)
from .core.errors import ConnectionClosed, without_traceback
from .streams import Stream, Streams

if TYPE_CHECKING:
    from .aio.protocol import WebSocketProtocol

__all__ = ["Dispatcher", "Message"]

logger = logging.getLogger("wskit")

_OPEN = State.OPEN

Message = Union[str, bytes]  # noqa: UP007 - a runtime alias, usable on Python 3.10


# inspect.markcoroutinefunction (3.12+) marks a plain function as a coroutine function too.
_MARKS = hasattr(inspect, "markcoroutinefunction")
_CO_COROUTINE = inspect.CO_COROUTINE


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` makes a coroutine: a coroutine function, or an object with
    ``async def __call__``."""
    if type(fn) is FunctionType:
        # What inspect answers for a plain function, from its code's flags (listeners are
        # often lambdas and closures, new objects for each connection, which no cache would
        # help); ``type(fn).__call__`` is never a coroutine function for them.
        if fn.__code__.co_flags & _CO_COROUTINE:
            return True
        return _MARKS and inspect.iscoroutinefunction(fn)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        type(fn).__call__  # an object with ``async def __call__``
    )


class _Listener:
    """A listener slot: the function, whether it is a coroutine function, and its handle."""

    __slots__ = ("fn", "is_async", "stream", "zero_copy")

    def __init__(self, streams: Streams, fn: Callable[..., Any], zero_copy: bool = False) -> None:
        self.fn = fn
        if type(fn) is FunctionType and not _MARKS:
            # _is_coroutine_function's answer for a plain function, without its call (two
            # listeners per connection, often).
            self.is_async = bool(fn.__code__.co_flags & _CO_COROUTINE)
        else:
            self.is_async = _is_coroutine_function(fn)
        self.zero_copy = zero_copy
        self.stream = streams.new()


class Dispatcher:
    """Hands received messages to listeners: plain functions inline from the receive path, in
    order; coroutine functions one at a time per connection, in order. Messages with no
    listener of their kind wait (bounded by ``max_queue``) for ``receive()``.

    ``WebSocket`` is a Dispatcher; the attributes below are set by its ``__init__``.
    """

    __slots__ = (
        "_async_calls",
        "_async_runner",
        "_binary",
        "_call_starting",
        "_error",
        "_finished",
        "_inbox",
        "_inbox_waiters",
        "_on_ping",
        "_on_pong",
        "_receiving",
        "_text",
    )

    _protocol: WebSocketProtocol
    _loop: asyncio.AbstractEventLoop
    _streams: Streams

    def _init_dispatch(self) -> None:
        self._error: BaseException | None = None
        self._finished = False
        self._text: _Listener | None = None
        self._binary: _Listener | None = None
        self._on_ping: _Listener | None = None
        self._on_pong: _Listener | None = None
        # The two queues exist only while they hold something: a deque is 760 bytes, and
        # an idle connection (or one whose listeners are plain functions) needs neither.
        self._inbox: deque[Message] | None = None
        self._inbox_waiters: list[asyncio.Future[None]] | None = None
        # Whether receive() was ever called: only then may the inbox hold our Close back.
        self._receiving = False
        self._async_calls: deque[tuple[_Listener, Any]] | None = None
        self._async_runner: asyncio.Task[None] | None = None
        # From taking a call off the queue until that call first suspends (or returns).
        self._call_starting = False

    # -- listeners ---------------------------------------------------------------------------

    def on_text(self, fn: Callable[[Any, str], Any]) -> Stream:
        """Call ``fn(ws, text)`` for each text message; replaces the previous text listener.

        Text messages that waited for a listener are handed to it first, in order.

        Args:
            fn: A plain function (run inline from the receive path) or a coroutine function
                (run one call at a time, in order), called as ``fn(ws, text: str)``.

        Returns:
            The listener's handle, for ``.catch`` and ``.finally_``.
        """
        listener = self._text = _Listener(self._streams, fn)
        if self._inbox:  # (most listeners are set before any message came)
            self._flush_inbox(str)
        return listener.stream

    def on_binary(self, fn: Callable[[Any, bytes], Any]) -> Stream:
        """Call ``fn(ws, data: bytes)`` for each binary message; replaces the binary listener.

        Args:
            fn: A plain function or a coroutine function, called as ``fn(ws, data: bytes)``.

        Returns:
            The listener's handle, for ``.catch`` and ``.finally_``.
        """
        listener = self._binary = _Listener(self._streams, fn)
        if self._inbox:
            self._flush_inbox(bytes)
        return listener.stream

    def on_buffer(self, fn: Callable[[Any, memoryview], Any]) -> Stream:
        """Call ``fn(ws, view: memoryview)``, zero-copy and valid only during the call.

        It shares the binary slot with ``on_binary`` (setting one replaces the other).

        Args:
            fn: Called as ``fn(ws, view)``; keep ``bytes(view)`` to use the data later (a
                coroutine function gets a view over its own copy). The view may be writable
                (a large frame is unmasked in place); treat it as read-only: a sent view may
                be written out after the call.

        Returns:
            The listener's handle, for ``.catch`` and ``.finally_``.
        """
        listener = self._binary = _Listener(self._streams, fn, zero_copy=True)
        if self._inbox:
            self._flush_inbox(bytes)
        return listener.stream

    def on_ping(self, fn: Callable[[Any, bytes], Any]) -> Stream:
        """Call ``fn(ws, payload)`` for each ping (the pong is sent automatically).

        Args:
            fn: Called as ``fn(ws, payload: bytes)``.

        Returns:
            The listener's handle.
        """
        self._on_ping = _Listener(self._streams, fn)
        return self._on_ping.stream

    def on_pong(self, fn: Callable[[Any, bytes], Any]) -> Stream:
        """Call ``fn(ws, payload)`` for each pong.

        Args:
            fn: Called as ``fn(ws, payload: bytes)``.

        Returns:
            The listener's handle.
        """
        self._on_pong = _Listener(self._streams, fn)
        return self._on_pong.stream

    def _flush_inbox(self, kind: type) -> None:
        """Hand queued messages of this kind to the listener that was just set, in order."""
        inbox = self._inbox
        if not inbox:
            return
        keep: deque[Message] = deque()
        while inbox:
            message = inbox.popleft()
            if isinstance(message, kind):
                listener = self._text if isinstance(message, str) else self._binary
                assert listener is not None
                self._call(listener, message)
            else:
                keep.append(message)
        self._inbox = keep or None
        self._maybe_resume()

    # -- the receive path (Receiver.receive_events) ------------------------------------------

    def receive_events(self, events: list[Event]) -> None:
        """Called by the binding with the events of one read; plain listeners run inline.

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
            self.listener_failed(exc)

    def receive_messages(self, messages: list[str | bytes]) -> None:
        """Called by the binding, like ``receive_events``, for a read that held only messages:
        ``str`` for text, ``bytes`` for binary (``Connection.receive_messages``); the same
        delivery."""
        try:
            for data in messages:
                if type(data) is str:
                    listener = self._text
                    if listener is None:
                        self._enqueue(data)
                    elif listener.is_async:
                        self._schedule(listener, data)
                    else:
                        listener.fn(self, data)
                else:
                    listener = self._binary
                    if listener is None:
                        self._enqueue(data)
                    elif listener.zero_copy and not listener.is_async:
                        # _call_with_view, inline: one call less per message.
                        view = memoryview(data)  # type: ignore[arg-type]
                        try:
                            listener.fn(self, view)
                        finally:
                            try:  # noqa: SIM105 - as in _call_with_view
                                view.release()
                            except BufferError:
                                pass
                    elif listener.is_async:
                        self._schedule(listener, _binary_arg(listener, data))  # type: ignore[arg-type]
                    else:
                        listener.fn(self, data)
        except Exception as exc:
            self.listener_failed(exc)

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
            self.listener_failed(exc)

    def _control(self, event: Event) -> None:
        if type(event) is CloseReceived:
            # The one control event of every connection: no logger.debug call (a Python
            # frame and its arguments) unless DEBUG is on.
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("close received: %d %r", event.code, event.reason)
        elif isinstance(event, Ping):
            if self._on_ping is not None:
                self._call_control(self._on_ping, event.data)
        elif isinstance(event, Pong):
            self._pong_received(event.data)
            if self._on_pong is not None:
                self._call_control(self._on_pong, event.data)
        elif isinstance(event, CloseReceived):
            logger.debug("close received: %d %r", event.code, event.reason)
        elif isinstance(event, Failed):
            error = event.error
            peer = self._protocol.transport.get_extra_info("peername") if (
                self._protocol.transport) else None
            logger.warning("[%s] failing connection with %s with %d: %s", self._protocol.id,
                           peer, error.close_code, error.reason)
            if self._error is None:
                self._error = error

    def _pong_received(self, payload: bytes) -> None:
        raise NotImplementedError

    def _call_control(self, listener: _Listener, data: bytes) -> None:
        if listener.is_async:
            self._schedule(listener, data)
            return
        try:
            listener.fn(self, data)
        except Exception as exc:
            self.listener_failed(exc)

    def _enqueue(self, message: Message) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(message)
        protocol = self._protocol
        if len(inbox) >= protocol.limits.max_queue and protocol.conn.state is _OPEN:
            # Bounded: stop reading until receive() takes messages out. (Once we have sent a
            # Close, reading goes on so that the peer's Close is seen; close_timeout bounds it.)
            protocol.pause_reading()
        if self._inbox_waiters:
            self._wake_receivers()

    def _wake_receivers(self) -> None:
        """Wake every receive() waiting for a message (one came, or the connection ended)."""
        for waiter in self._inbox_waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _schedule(self, listener: _Listener, data: Any) -> None:
        calls = self._async_calls
        if calls is None:
            calls = self._async_calls = deque()
        calls.append((listener, data))
        protocol = self._protocol
        if len(calls) >= protocol.limits.max_queue and (
            protocol.conn.state is _OPEN
        ):
            protocol.pause_reading()
        if self._async_runner is None:
            self._async_runner = self._loop.create_task(self._run_async_listeners())

    async def _run_async_listeners(self) -> None:
        calls = self._async_calls
        assert calls is not None
        try:
            while calls:
                listener, data = calls.popleft()
                # Runs once the call suspends for the first time: what it sends before its
                # first await goes out ahead of a held Close; what it awaits (the end of the
                # connection, say) does not hold the Close back.
                self._call_starting = True
                self._loop.call_soon(self._call_started)
                try:
                    await listener.fn(self, data)
                except Exception as exc:
                    self.listener_failed(exc)
                    calls.clear()
                    break
                self._maybe_resume()
        finally:
            self._async_runner = None
            if not calls and self._async_calls is calls:
                self._async_calls = None
            if self._finished:
                # The connection ended while calls were queued: now the handles may end.
                self._end_streams()
            else:
                self._drained()

    def _end_streams(self) -> None:
        """Run every catch and finally_ (once), then let go of the listeners: closures over
        this WebSocket, often, which would otherwise keep a cycle past the connection."""
        self._streams.end(self._error)
        self._text = self._binary = self._on_ping = self._on_pong = None
        self._async_calls = None

    def _call_started(self) -> None:
        self._call_starting = False
        self._drained()

    def _maybe_resume(self) -> None:
        low = self._protocol.limits.max_queue // 2
        inbox, calls = self._inbox, self._async_calls
        if (inbox is None or len(inbox) <= low) and (calls is None or len(calls) <= low):
            self._protocol.resume_reading()

    def answers_pending(self) -> bool:
        """Receiver.answers_pending: messages wait for a reader that is reading, or coroutine
        listener calls are queued or have not reached their first await yet."""
        return (bool(self._async_calls) or self._call_starting
                or (self._receiving and bool(self._inbox)))

    def _drained(self) -> None:
        if self._protocol.holding_close and not self.answers_pending():
            self._protocol.answers_drained()

    def listener_failed(self, exc: BaseException, what: str = "a listener") -> None:
        """User code raised: close with 1011 (RFC 6455 §7.4.1) and report it to every catch.

        For the code that runs the application's own functions (the server's handlers)."""
        if self._finished:
            logger.error("[%s] %s raised after the connection ended", self._protocol.id, what,
                         exc_info=exc)
        else:
            peer = self._protocol.transport.get_extra_info("peername") if (
                self._protocol.transport) else None
            logger.error("[%s] %s raised; closing %s with 1011", self._protocol.id, what, peer,
                         exc_info=exc)
        if self._error is None:
            # Logged with its traceback; kept without it, so its frames (and their locals)
            # are not held as long as the connection is.
            self._error = without_traceback(exc)
        if not self._finished:
            self._protocol.start_close(CloseCode.INTERNAL_ERROR, "internal error")

    # -- receive / iterate -------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message that no listener took.

        Returns:
            A ``str`` for a text message, ``bytes`` for a binary one.

        Raises:
            ConnectionClosed: The connection has closed and no message is left
                (``ConnectionClosedOK`` after a clean close, else ``ConnectionClosedError``).
        """
        self._receiving = True
        while not self._inbox:
            # The reader is back for more: what it had is answered (a held Close may go).
            if self._protocol.holding_close:
                self._drained()
            if self._finished:
                raise self._closed_error()
            # Each waiting receiver has a future of its own, so a cancelled one cancels only
            # itself, without a shield (whose extra future and callback hop cost a loop
            # iteration per message); each takes a message or waits again.
            waiter = self._loop.create_future()
            waiters = self._inbox_waiters
            if waiters is None:
                waiters = self._inbox_waiters = []
            waiters.append(waiter)
            try:
                await waiter
            finally:
                waiters.remove(waiter)
        inbox = self._inbox
        assert inbox is not None
        message = inbox.popleft()
        if not inbox:
            self._inbox = None
        self._maybe_resume()
        return message

    def _closed_error(self) -> ConnectionClosed:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Messages until the connection closes: quietly after a normal close, else it raises."""
        while True:
            try:
                yield await self.receive()
            except ConnectionClosed:
                if self._error is None:
                    return
                raise


if compiled_reader is not None:
    # The binding's C read path calls the plain listeners of receivers whose receive_messages
    # is this one itself, reading _text, _binary and the _Listener slots (_speedups.Reader);
    # anything else it hands to receive_messages.
    compiled_reader.dispatch = Dispatcher.receive_messages


def _binary_arg(listener: _Listener, data: bytes | bytearray | memoryview) -> Any:
    """What an async binary listener gets: its own bytes (a memoryview over them for on_buffer)."""
    copy = data if type(data) is bytes else bytes(data)
    return memoryview(copy) if listener.zero_copy else copy


def _call_with_view(fn: Callable[..., Any], ws: Any, data: Any) -> None:
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
