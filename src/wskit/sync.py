"""The blocking client: ``wskit.sync.connect(url)`` drives the asyncio client on a private
event-loop thread, for scripts, tests and threads; no second copy of the protocol."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from .client import connect as async_connect
from .core.close import CloseCode
from .core.errors import ConnectionClosed
from .websocket import Message, WebSocket

__all__ = ["ClientConnection", "connect"]

T = TypeVar("T")


class _LoopThread:
    """One event loop running forever in a daemon thread, shared by the blocking clients."""

    def __init__(self, use_uvloop: bool) -> None:
        if use_uvloop:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="wskit-sync",
                                       daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None,
             what: str = "answer") -> T:
        """Run ``coro`` on the loop and wait for it; after ``timeout`` seconds, cancel it and
        raise TimeoutError ("no {what} within ...")."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("the blocking client cannot be used from its own loop's thread")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the coroutine's own TimeoutError (open_timeout, keepalive)
            future.cancel()
            raise TimeoutError(f"no {what} within {timeout:g} s") from None


_threads: dict[bool, _LoopThread] = {}
_threads_lock = threading.Lock()


def _loop_thread(use_uvloop: bool | None) -> _LoopThread:
    if use_uvloop is None:
        from .loop import uvloop_available

        use_uvloop = uvloop_available()
    with _threads_lock:
        if use_uvloop not in _threads:
            _threads[use_uvloop] = _LoopThread(use_uvloop)
        return _threads[use_uvloop]


def connect(url: str, *, use_uvloop: bool | None = None, **options: Any) -> ClientConnection:
    """Open a connection and return it once open; the keyword arguments of ``wskit.connect``
    (TLS, headers, subprotocols, proxies, unix sockets, redirects, limits) apply, except
    ``reconnect``. ``use_uvloop``: the kind of the private loop (default: uvloop if installed).

    The connection is safe to use from several threads at once.
    """
    if options.get("reconnect"):
        raise ValueError("the blocking client does not reconnect; loop over connect() instead")
    runner = _loop_thread(use_uvloop)

    async def open_connection() -> WebSocket:
        ws: WebSocket = await async_connect(url, **options)
        return ws

    return ClientConnection(runner.call(open_connection()), runner)


class ClientConnection:
    """A blocking WebSocket connection: ``send``, ``recv``, iteration, ``ping``, ``close``."""

    def __init__(self, ws: WebSocket, runner: _LoopThread) -> None:
        self._ws = ws
        self._runner = runner

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; blocks while the write buffer is full."""
        ws = self._ws
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)  # the caller may change its buffer once send() has returned

        async def send() -> None:
            ws.send(data)
            await ws.drain()

        self._runner.call(send())

    def recv(self, timeout: float | None = None) -> Message:
        """The next message; TimeoutError after ``timeout`` seconds (None: wait for ever);
        ConnectionClosed once the connection is closed."""
        return self._runner.call(self._ws.receive(), timeout, "message")

    def __iter__(self) -> Iterator[Message]:
        """Messages until the connection closes: quietly after a normal close, else it raises."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                if self._ws.error is None:
                    return
                raise

    def ping(self, data: bytes | None = None, timeout: float | None = None) -> float:
        """Send a ping and wait for its pong; the round-trip time in seconds."""
        return self._runner.call(self._ws.ping(data), timeout, "pong")

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (bounded by close_timeout)."""
        self._runner.call(self._ws.close(code, reason))

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- what the connection is --------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The URL connected to, after redirects."""
        return self._ws.url

    @property
    def subprotocol(self) -> str | None:
        return self._ws.subprotocol

    @property
    def extensions(self) -> list[str]:
        return self._ws.extensions

    @property
    def response_headers(self) -> Any:
        return self._ws.response_headers

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str:
        return self._ws.close_reason

    @property
    def is_closed(self) -> bool:
        return self._ws.is_closed

    @property
    def error(self) -> BaseException | None:
        return self._ws.error
