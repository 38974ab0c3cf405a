"""The demo chat on a hub whose Redis is gone: local members still chat, the sender is told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from wskit.demo import chat_hub, create_app

from .redis_servers import free_port


async def event(ws: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return decoded


def test_chat_without_redis_tells_the_sender(run: Callable[..., Any],
                                             caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        hub = chat_hub(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        app = create_app(hub=hub, ping_interval=None)
        await app.start("127.0.0.1", 0)
        try:
            async with connect(f"ws://127.0.0.1:{app.port}/chat/r?name=ada") as ada:
                assert (await event(ada))["type"] == "join"
                await ada.send("hi")
                assert await event(ada) == {"type": "message", "name": "ada", "text": "hi"}
                error = await event(ada)
                assert error["type"] == "error" and "Redis" in error["text"]
        finally:
            await app.shutdown(timeout=2.0)
            await hub.close()

    with caplog.at_level("WARNING"):
        run(main())
    assert "chat event not sent to other workers" in caplog.text
