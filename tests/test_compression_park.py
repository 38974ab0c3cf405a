"""A compressing connection parks its zlib state after each read, and goes on in step with its
peer (websockets' client, context takeover both ways, RFC 7692 §7.1.1), on asyncio and uvloop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

import wskit
from wskit.core.connection import Connection


def message(i: int) -> str:
    return json.dumps({"type": "trade", "seq": i, "sym": "ALPHA", "px": 100 + i, "qty": 3 * i,
                       "text": "hello " * 20})


@pytest.fixture
def parked(monkeypatch: pytest.MonkeyPatch) -> list[Connection]:
    calls: list[Connection] = []
    real = Connection.park

    def spy(self: Connection) -> None:
        calls.append(self)
        real(self)

    monkeypatch.setattr(Connection, "park", spy)
    return calls


async def _echo_server() -> wskit.App:
    app = wskit.App(ping_interval=None)

    @app.websocket("/echo")
    def echo(req: Any, ws: Any) -> None:
        ws.on_text(lambda ws, text: ws.send(text))

    await app.start("127.0.0.1", 0)
    return app


def test_parked_after_each_read_and_in_step(run: Any, parked: list[Connection]) -> None:
    async def scenario() -> None:
        app = await _echo_server()
        try:
            async with connect(f"ws://127.0.0.1:{app.port}/echo", ping_interval=None) as client:
                assert client.protocol.extensions  # permessage-deflate negotiated
                for i in range(6):
                    await client.send(message(i))
                    assert await client.recv() == message(i)
                # Each read parked the server's codec; each message rebuilt it from the
                # windows' bytes, and both directions still inflate correctly.
                assert len(parked) >= 6
                assert len({id(conn) for conn in parked}) == 1
        finally:
            await app.shutdown(timeout=2)

    run(scenario())
