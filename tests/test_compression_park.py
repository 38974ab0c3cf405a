"""A compressing connection parks its zlib state once idle, and goes on in step with its peer
(websockets' client, context takeover both ways, RFC 7692 §7.1.1), on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

import wskit
from wskit.aio import shared
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
    # Sweeps every 10 ms rather than every 0.25 s, so the test does not wait long.
    monkeypatch.setattr(shared, "PARK_INTERVAL", 0.01)
    return calls


async def _echo_server() -> wskit.App:
    app = wskit.App(ping_interval=None)

    @app.websocket("/echo")
    def echo(req: Any, ws: Any) -> None:
        ws.on_text(lambda ws, text: ws.send(text))

    await app.start("127.0.0.1", 0)
    return app


async def _parked_once_more(parked: list[Connection], before: int) -> None:
    while len(parked) <= before:
        await asyncio.sleep(0.005)


def test_parked_once_idle_and_in_step(run: Any, parked: list[Connection]) -> None:
    async def scenario() -> None:
        app = await _echo_server()
        try:
            async with connect(f"ws://127.0.0.1:{app.port}/echo", ping_interval=None) as client:
                assert client.protocol.extensions  # permessage-deflate negotiated
                for i in range(6):
                    await client.send(message(i))
                    assert await client.recv() == message(i)
                    # Idle now: the server parks its codec; the next message rebuilds it
                    # from the windows' bytes, and both directions still inflate correctly.
                    await asyncio.wait_for(_parked_once_more(parked, len(parked)), 10)
                assert len({id(conn) for conn in parked}) == 1
        finally:
            await app.shutdown(timeout=2)

    run(scenario())


def test_busy_connection_keeps_its_codec(
    run: Any, parked: list[Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages that follow each other closely reuse the zlib objects: no park between them
    while the parker has not swept twice (its timer is held back here, it sweeps by hand)."""
    monkeypatch.setattr(shared, "PARK_INTERVAL", 3600)

    async def scenario() -> None:
        app = await _echo_server()
        try:
            async with connect(f"ws://127.0.0.1:{app.port}/echo", ping_interval=None) as client:
                for i in range(6):
                    await client.send(message(i))
                    assert await client.recv() == message(i)
                assert parked == []
                parker = shared.parker(asyncio.get_running_loop())
                parker.sweep()  # the connection read in the interval before: kept
                assert parked == []
                parker.sweep()  # no read since: parked
                assert len(parked) == 1
                await client.send(message(6))
                assert await client.recv() == message(6)
        finally:
            await app.shutdown(timeout=2)

    run(scenario())


class _FakeConnection:
    def __init__(self) -> None:
        self.parks = 0

    def park(self) -> None:
        self.parks += 1


def test_parker_bounds_the_live_codecs(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past _MAX_LIVE_CODECS connections reading at once, the least recent parks at read time
    (the allocator would keep the peak of them all), and a sweep parks only the idle."""
    monkeypatch.setattr(shared, "MAX_LIVE_CODECS", 2)
    monkeypatch.setattr(shared, "PARK_INTERVAL", 3600)  # sweeps by hand only

    async def scenario() -> None:
        parker = shared.Parker(asyncio.get_running_loop())
        a, b, c = _FakeConnection(), _FakeConnection(), _FakeConnection()
        for conn in (a, b, a, c):  # a read again after b: b is the least recent
            parker.touch(conn)  # type: ignore[arg-type]
        assert (a.parks, b.parks, c.parks) == (0, 1, 0)
        parker.sweep()
        parker.touch(c)  # type: ignore[arg-type]
        parker.sweep()  # a has not read for a whole interval, c has
        assert (a.parks, b.parks, c.parks) == (1, 1, 0)
        parker.sweep()
        assert (a.parks, b.parks, c.parks) == (1, 1, 1)
        assert parker.timer is None  # nothing left to park: no timer
        parker.touch(a)  # type: ignore[arg-type]
        parker.forget(a)  # type: ignore[arg-type]
        assert a not in parker.live  # type: ignore[comparison-overlap]
        assert parker.timer is not None
        parker.timer.cancel()

    run(scenario())
