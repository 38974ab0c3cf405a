"""Helpers for the ASGI tests: a real uvicorn server on an ephemeral port with wskit's protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from wskit.asgi import UvicornWebSocketProtocol


@asynccontextmanager
async def uvicorn_serving(app: Any, **options: Any) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """Run ``app`` under uvicorn in this loop with wskit's ws protocol; yields (server, port).

    Leaving the block shuts uvicorn down the way Ctrl-C does (``should_exit``).
    """
    options.setdefault("ws", UvicornWebSocketProtocol)
    options.setdefault("lifespan", "off")
    options.setdefault("log_level", "warning")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, **options)
    server = uvicorn.Server(config)
    # Signal handlers stay the test runner's: uvicorn would take SIGINT for itself.
    server.capture_signals = _no_signals  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield server, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_signals() -> _NoSignals:
    return _NoSignals()
