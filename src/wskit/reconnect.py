"""Reconnecting: backoff with full jitter, which ends are retried, the ``async for`` loop, and
the client whose listeners and handles outlive each connection."""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import random
import ssl as ssl_module
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

from .core.close import CloseCode
from .core.errors import (
    ConnectFailed,
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidState,
)
from .dial import open_connection
from .options import ClientOptions, OnOpen
from .websocket import Message, WebSocket

__all__ = ["RETRIED_CLOSE_CODES", "Handle", "ReconnectingWebSocket", "RetryPolicy", "reconnecting"]

logger = logging.getLogger("wskit.client")

#: Close codes after which the client reconnects (RFC 6455 §7.4.1, IANA registry): gone without
#: a Close (1006), server error (1011), restart (1012), try again later (1013), bad gateway (1014).
RETRIED_CLOSE_CODES = frozenset({
    CloseCode.ABNORMAL_CLOSURE, CloseCode.INTERNAL_ERROR, CloseCode.SERVICE_RESTART,
    CloseCode.TRY_AGAIN_LATER, CloseCode.BAD_GATEWAY,
})


def retry_after(error: BaseException | None) -> float | None:
    """Seconds asked for by the ``Retry-After`` of a 503 or 429 refusal (RFC 9110 §10.2.3)."""
    if not isinstance(error, InvalidHandshake) or error.status not in (429, 503):
        return None
    value = next((v for n, v in error.headers if n.lower() == "retry-after"), "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RetryPolicy:
    """When to try again and how long to wait: exponential backoff with full jitter."""

    def __init__(
        self,
        *,
        initial: float = 1.0,
        factor: float = 2.0,
        maximum: float = 60.0,
        retry_going_away: bool = False,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs initial > 0, factor >= 1 and maximum >= initial")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.retry_going_away = retry_going_away
        self.uniform = uniform

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Attempt ``attempt`` (0 first) waits a uniform time up to min(maximum, initial *
        factor**attempt), or as long as the server's Retry-After if that is longer."""
        try:
            cap = min(self.maximum, self.initial * self.factor**attempt)
        except OverflowError:
            cap = self.maximum
        wait = self.uniform() * cap
        asked = retry_after(error)
        return wait if asked is None else max(wait, asked)

    def opening_is_retried(self, error: BaseException) -> bool:
        """Whether an opening that failed with ``error`` is tried again."""
        if isinstance(error, InvalidHandshake):
            # 5xx and 429 may pass; other statuses (4xx, redirect trouble) will not.
            return error.status >= 500 or error.status == 429
        if isinstance(error, ConnectFailed):
            return error.transient
        if isinstance(error, ssl_module.SSLError):
            return False  # an untrusted certificate stays untrusted
        return isinstance(error, OSError)  # refused, reset, unreachable, timed out

    def end_is_retried(self, ws: WebSocket) -> bool:
        """After ``ws`` ended: True to reconnect, False for a normal end; raises its error."""
        error = ws.error
        if error is None:
            return ws.close_code == 1001 and self.retry_going_away
        if isinstance(error, ConnectionClosed) and error.code in RETRIED_CLOSE_CODES:
            return True
        if isinstance(error, TimeoutError):
            return True  # a keepalive ping went unanswered
        raise error


async def _pause(delay: float, stop: asyncio.Event | None) -> bool:
    """Wait ``delay`` seconds; True (at once) if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(delay)
        return False
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except (TimeoutError, asyncio.TimeoutError):  # one class from Python 3.11 on
        return False
    return True


async def reconnecting(options: ClientOptions, policy: RetryPolicy,
                       stop: asyncio.Event | None = None) -> AsyncGenerator[WebSocket, None]:
    """Yield a connected WebSocket; once it has ended, wait and yield the next, until a
    normal end (then stop) or an error that is not retried (then raise it), or ``stop``."""
    url = options.uri.url
    loop = asyncio.get_running_loop()
    attempt = 0
    # Connections in a row that ended (abnormally) before living ``policy.maximum`` seconds:
    # a server that accepts and drops at once is backed off from like one that refuses.
    short_lived = 0
    while stop is None or not stop.is_set():
        try:
            ws = await open_connection(options)
        except Exception as exc:
            if not policy.opening_is_retried(exc):
                raise
            delay = policy.delay(attempt, exc)
            attempt += 1
            logger.warning("%s: attempt %d failed: %s; retrying in %.2f s", url, attempt, exc,
                           delay)
            if await _pause(delay, stop):
                return
            continue
        if attempt:
            logger.info("%s: connected after %d failed attempts", url, attempt)
        attempt = 0
        opened_at = loop.time()
        try:
            yield ws
            await ws.wait_closed()
        finally:
            if not ws.is_closed:  # the loop was left (break, error): this connection ends too
                await ws.close()
        if (stop is not None and stop.is_set()) or not policy.end_is_retried(ws):
            return
        short_lived = short_lived + 1 if loop.time() - opened_at < policy.maximum else 0
        delay = policy.delay(max(0, short_lived - 1))
        logger.warning("%s: connection ended (%s %s); reconnecting in %.2f s", url, ws.close_code,
                       ws.close_reason or ws.error or "", delay)
        if await _pause(delay, stop):
            return


class Handle:
    """What a ReconnectingWebSocket's ``on_*`` returns: ``catch`` and ``finally_`` are called
    once, when the client finally stops (not at each reconnection)."""

    __slots__ = ("_catchers", "_ended", "_error", "_finalizers")

    def __init__(self) -> None:
        self._catchers: list[Callable[[BaseException], Any]] = []
        self._finalizers: list[Callable[[], Any]] = []
        self._ended = False
        self._error: BaseException | None = None

    def catch(self, fn: Callable[[BaseException], Any]) -> Handle:
        """Call ``fn(error)`` if the client stops with an error.

        Args:
            fn: Called with the error.

        Returns:
            This handle, to chain ``.finally_``.
        """
        if not self._ended:
            self._catchers.append(fn)
        elif self._error is not None:
            asyncio.get_running_loop().call_soon(_run_hook, fn, self._error)
        return self

    def finally_(self, fn: Callable[[], Any]) -> Handle:
        """Call ``fn()`` when the client stops, after every ``catch``.

        Args:
            fn: Called with no argument.

        Returns:
            This handle.
        """
        if not self._ended:
            self._finalizers.append(fn)
        else:
            asyncio.get_running_loop().call_soon(_run_hook, fn)
        return self


_hook_tasks: set[asyncio.Future[None]] = set()


def _run_hook(fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            # Held until done: the loop keeps only weak references to tasks.
            task = asyncio.ensure_future(_await(result))
            _hook_tasks.add(task)
            task.add_done_callback(_hook_tasks.discard)
    except Exception:
        logger.exception("a catch/finally_ handler raised")


async def _await(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("a catch/finally_ handler raised")


class ReconnectingWebSocket:
    """A client connection that reconnects by itself (``connect(url, reconnect=True)``).

    Listeners set with ``on_text``/``on_binary``/``on_buffer``/``on_ping``/``on_pong`` are
    called as ``fn(client, data)`` on every connection; ``on_open(client)`` runs after each
    (re)connection, where an app subscribes again. ``await`` it (or ``async with``) to wait
    for the first connection; ``close()`` stops it; ``wait_closed()`` waits for the end.

    ``wskit.connect(url, reconnect=True)`` makes it; programs do not.

    Args:
        options: The client's options (URL, TLS, headers, limits...).
        policy: When to reconnect and how long to wait.
        on_open: Called as ``on_open(client)`` after each (re)connection.
    """

    def __init__(self, options: ClientOptions, policy: RetryPolicy,
                 on_open: OnOpen | None = None) -> None:
        self.options = options
        self.policy = policy
        self.on_open = on_open
        #: The current connection (None between connections).
        self.ws: WebSocket | None = None
        #: How many connections were opened so far.
        self.connections = 0
        self.error: BaseException | None = None
        self._listeners: dict[str, Callable[..., Any]] = {}
        # Every handle returned, replaced ones included: all end when the client stops (as
        # on WebSocket).
        self._handles: list[Handle] = []
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()

    # -- life --------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, ReconnectingWebSocket]:
        return self._start().__await__()

    async def __aenter__(self) -> ReconnectingWebSocket:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _start(self) -> ReconnectingWebSocket:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._first = loop.create_future()
            self._done = loop.create_future()
            self._task = loop.create_task(self._run())
        assert self._first is not None
        await asyncio.shield(self._first)
        return self

    async def _run(self) -> None:
        connections = reconnecting(self.options, self.policy, self._stop)
        try:
            async for ws in connections:
                self.ws = ws
                self.connections += 1
                self._attach(ws)
                if self.on_open is not None:
                    try:
                        result = self.on_open(self)
                        if inspect.isawaitable(result):
                            await result
                    except Exception as exc:
                        logger.exception("on_open raised; closing with 1011")
                        self.error = exc
                        await ws.close(1011, "on_open failed")
                        break
                assert self._first is not None
                if not self._first.done():
                    self._first.set_result(None)
                if self._stop.is_set():
                    await ws.close()
        except asyncio.CancelledError:
            pass  # close() during a wait between attempts
        except Exception as exc:
            self.error = exc
        finally:
            await connections.aclose()  # now, not when the generator is collected
            self.ws = None
            self._finish()

    def _finish(self) -> None:
        assert self._first is not None and self._done is not None
        error = self.error
        if not self._first.done():
            self._first.set_exception(
                error or ConnectionClosedOK(CloseCode.NORMAL_CLOSURE, "closed before connecting"))
            self._first.exception()  # retrieved here; _start re-raises it
        for handle in self._handles:
            handle._ended, handle._error = True, error
        if error is not None:
            for handle in self._handles:
                for catcher in handle._catchers:
                    _run_hook(catcher, error)
        for handle in self._handles:
            for finalizer in handle._finalizers:
                _run_hook(finalizer)
        self._done.set_result(None)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Stop reconnecting, close the current connection and end the handles.

        Args:
            code: The close code sent on the current connection.
            reason: The close reason.
        """
        self._stop.set()
        ws = self.ws
        if ws is not None and not ws.is_closed:
            await ws.close(code, reason)
        # During an attempt: stop it (a wait between attempts ends with the event).
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the client has stopped for good."""
        if self._done is not None:
            await asyncio.shield(self._done)

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open now (False between connections)."""
        return self.ws is not None and not self.ws.is_closed

    # -- listeners ---------------------------------------------------------------------------

    def _listen(self, slot: str, fn: Callable[..., Any]) -> Handle:
        handle = Handle()
        if self._done is not None and self._done.done():
            handle._ended, handle._error = True, self.error
        if slot in ("binary", "buffer"):
            # They share the binary slot, as on WebSocket: setting one replaces the other.
            self._listeners.pop("binary", None)
            self._listeners.pop("buffer", None)
        self._listeners[slot] = fn
        self._handles.append(handle)
        if self.ws is not None and not self.ws.is_closed:
            self._attach_one(self.ws, slot, fn)
        return handle

    def on_text(self, fn: Callable[[ReconnectingWebSocket, str], Any]) -> Handle:
        """Call ``fn(client, text)`` for each text message, on every connection.

        Args:
            fn: A plain function or a coroutine function.

        Returns:
            The listener's handle: ``catch`` and ``finally_`` run when the client stops.
        """
        return self._listen("text", fn)

    def on_binary(self, fn: Callable[[ReconnectingWebSocket, bytes], Any]) -> Handle:
        """Call ``fn(client, data)`` for each binary message, on every connection.

        Args:
            fn: A plain function or a coroutine function.

        Returns:
            The listener's handle.
        """
        return self._listen("binary", fn)

    def on_buffer(self, fn: Callable[[ReconnectingWebSocket, memoryview], Any]) -> Handle:
        """Zero-copy binary listener: the view is valid only during the call.

        Args:
            fn: Called as ``fn(client, view: memoryview)``.

        Returns:
            The listener's handle.
        """
        return self._listen("buffer", fn)

    def on_ping(self, fn: Callable[[ReconnectingWebSocket, bytes], Any]) -> Handle:
        """Call ``fn(client, payload)`` for each ping (answered for you).

        Args:
            fn: The listener.

        Returns:
            The listener's handle.
        """
        return self._listen("ping", fn)

    def on_pong(self, fn: Callable[[ReconnectingWebSocket, bytes], Any]) -> Handle:
        """Call ``fn(client, payload)`` for each pong.

        Args:
            fn: The listener.

        Returns:
            The listener's handle.
        """
        return self._listen("pong", fn)

    def _attach(self, ws: WebSocket) -> None:
        for slot, fn in self._listeners.items():
            self._attach_one(ws, slot, fn)

    def _attach_one(self, ws: WebSocket, slot: str, fn: Callable[..., Any]) -> None:
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):
            async def wrapper(_: WebSocket, data: Any) -> None:
                await fn(self, data)
        else:
            def wrapper(_: WebSocket, data: Any) -> None:
                fn(self, data)
        getattr(ws, f"on_{slot}")(wrapper)

    # -- sending -----------------------------------------------------------------------------

    def _current(self) -> WebSocket:
        ws = self.ws
        if ws is None or ws.is_closed:
            raise InvalidState("not connected: the client is between connections")
        return ws

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send on the current connection.

        Args:
            data: ``str`` for text, bytes-like for binary.

        Raises:
            InvalidState: Between connections.
            ConnectionClosed: The current connection is closing.
        """
        self._current().send(data)

    async def drain(self) -> None:
        """Wait until the current connection's write buffer is low again.

        Raises:
            InvalidState: Between connections.
        """
        await self._current().drain()

    async def ping(self, data: bytes | None = None) -> float:
        """Ping on the current connection.

        Args:
            data: The payload (four random bytes by default).

        Returns:
            The round-trip time in seconds.

        Raises:
            InvalidState: Between connections.
        """
        return await self._current().ping(data)

    async def receive(self) -> Message:
        """The next message that no listener took, from the current connection.

        Returns:
            A ``str`` for text, ``bytes`` for binary.

        Raises:
            InvalidState: Between connections.
            ConnectionClosed: The current connection closed.
        """
        return await self._current().receive()
