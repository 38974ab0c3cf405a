"""The handles ``on_*`` returns (``Stream``): ``.catch`` and ``.finally_``, run once at the end."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Stream", "Streams", "run_hook"]

logger = logging.getLogger("wskit")


class Stream:
    """What an ``on_*`` call returns: ``.catch(fn)`` for errors, ``.finally_(fn)`` at close.

    Like a settled future, a handle whose connection has already ended calls what is attached
    to it soon (in the next loop iteration, in the order attached).

    Args:
        loop: The event loop of its connection (``on_*`` makes the handle; programs do not).
    """

    __slots__ = ("_catchers", "_ended", "_error", "_finalizers", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # The loop, not the WebSocket: a handle kept by its WebSocket must not refer back.
        self._loop = loop
        # Made by the first catch / finally_: most handles never get one.
        self._catchers: list[Callable[[BaseException], Any]] | None = None
        self._finalizers: list[Callable[[], Any]] | None = None
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
            if self._catchers is None:
                self._catchers = [fn]
            else:
                self._catchers.append(fn)
        elif self._error is not None:
            self._loop.call_soon(run_hook, self._loop, fn, self._error)
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
            if self._finalizers is None:
                self._finalizers = [fn]
            else:
                self._finalizers.append(fn)
        else:
            self._loop.call_soon(run_hook, self._loop, fn)
        return self

    @property
    def ended(self) -> bool:
        """Whether the connection has ended (what is attached now runs soon)."""
        return self._ended

    @property
    def error(self) -> BaseException | None:
        """The error the connection ended with, once ended (None for a clean close)."""
        return self._error


class Streams:
    """Every handle a connection ever returned, replaced ones included: each ``catch`` and
    ``finally_`` ever attached runs exactly once, when the connection ends (catches first)."""

    __slots__ = ("_ended", "_error", "_loop", "_streams")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._streams: list[Stream] = []
        self._ended = False
        self._error: BaseException | None = None

    def new(self) -> Stream:
        """A handle for a listener just set; already ended if the connection has."""
        stream = Stream(self._loop)
        if self._ended:
            stream._ended = True
            stream._error = self._error
        else:
            self._streams.append(stream)
        return stream

    @property
    def ended(self) -> bool:
        return self._ended

    def end(self, error: BaseException | None) -> None:
        """Call every catch with ``error`` (if any), then every finally_; once."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        streams, self._streams = self._streams, []
        hooked = False
        for stream in streams:
            stream._ended = True
            stream._error = error
            if stream._catchers is not None or stream._finalizers is not None:
                hooked = True
        if not hooked:
            return  # most handles never get a catch or a finally_: nothing to run
        loop = self._loop
        if error is not None:
            for stream in streams:
                for catcher in stream._catchers or ():
                    run_hook(loop, catcher, error)
        for stream in streams:
            for finalizer in stream._finalizers or ():
                run_hook(loop, finalizer)
            # Nothing will be called any more: let go of the functions (closures over the
            # WebSocket, often), so that no cycle outlives the connection.
            stream._catchers = None
            stream._finalizers = None


def run_hook(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Call a catch/finally_ (or an end-of-connection hook); a coroutine runs as a task."""
    try:
        result = fn(*args)
        if result is not None and inspect.isawaitable(result):
            loop.create_task(_await(result))
    except Exception:
        logger.exception("a catch/finally_ handler raised")


async def _await(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("a catch/finally_ handler raised")
