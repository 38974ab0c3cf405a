"""Runs a coroutine in a new event loop: uvloop when it is installed, asyncio otherwise."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run", "uvloop_available"]


def uvloop_available() -> bool:
    """Whether uvloop can be imported.

    Returns:
        True when uvloop is installed.
    """
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """``asyncio.run`` on uvloop by default when it is installed.

    Args:
        main: The coroutine to run to completion in a new event loop.
        use_uvloop: True to require uvloop, False for asyncio's loop; None (the default)
            uses uvloop when it is installed.

    Returns:
        What ``main`` returns.

    Raises:
        ImportError: ``use_uvloop=True`` without uvloop installed.
    """
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if use_uvloop:
        import uvloop

        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # pragma: no cover - 3.10
    return asyncio.run(main)
