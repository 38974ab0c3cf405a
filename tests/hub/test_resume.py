"""wskit.Positions with connect(resume=): a Python consumer that reconnects resumes each topic
from its last offset; its worker is shut down while another publishes (real Redis and sockets)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from e2e import eventually, quiet_app

import wskit
from wskit.hub import envelope, parse_since, subscribed_message

from .redis_servers import RedisServer, free_port


def test_positions_read_envelopes_and_build_urls() -> None:
    positions = wskit.Positions(max_topics=2)
    assert positions.url("ws://h/p") == "ws://h/p"
    assert positions.observe(envelope("room:1", 4, "ab", "hi"))
    assert not positions.observe(envelope("room:1", 4, "ab", "hi"))  # a duplicate
    assert not positions.observe(envelope("room:1", 3, "ab", "older"))
    assert positions.observe(envelope("room:1", 1, "cd", "new epoch"))
    assert positions.since("room:1") == ("cd", 1)
    sub = wskit.hub.Subscription("news", "ef", 9, True, 2)
    assert positions.observe(subscribed_message(sub))
    for other in ("text", "[1]", "{bad", b"\x00", '{"topic": "t", "epoch": "e", "offset": "1"}'):
        assert positions.observe(other)
    assert positions.url("ws://h/p?x=1") == "ws://h/p?x=1&since=room:1:cd:1&since=news:ef:9"
    positions.observe(envelope("third", 1, "gh", "x"))  # past max_topics: the oldest goes
    assert positions.since("room:1") is None
    positions.forget("news")
    assert positions.query() == "since=third:gh:1"


def test_parse_since() -> None:
    assert parse_since(["room:1:cd:1", "a:b:c", "x::3", "t:e:-1", "news:ef:9"]) == {
        "room:1": ("cd", 1), "news": ("ef", 9)}
    assert parse_since(["a:e:1", "b:e:2"], max_topics=1) == {"a": ("e", 1)}


def hub_app(hub: wskit.Hub) -> wskit.App:
    app = quiet_app()

    @app.websocket("/t/{topic}")
    async def join(req: wskit.Request, ws: wskit.WebSocket) -> None:
        topic = req.params["topic"]
        since = parse_since(req.query.get_all("since")).get(topic)
        ws.send(subscribed_message(await hub.subscribe(ws, topic, since=since)))

    return app


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_a_consumer_resumes_on_another_worker(run: Callable[..., Any], loop_kind: str,
                                              redis_server: RedisServer) -> None:
    topic = "resume-" + secrets.token_hex(4)
    port = free_port()

    async def main() -> None:
        first = wskit.Hub(redis_server.url, history=1000, format=envelope)
        second = wskit.Hub(redis_server.url, history=1000, format=envelope)
        publisher = wskit.Hub(redis_server.url, history=1000)
        positions = wskit.Positions()
        got: list[str] = []
        duplicates = 0
        async with first, second, publisher:
            app = hub_app(first)
            await app.start("127.0.0.1", port)
            subscribed = asyncio.Event()

            async def consume() -> None:
                nonlocal duplicates
                urls = []
                async for ws in wskit.connect(f"ws://127.0.0.1:{port}/t/{topic}",
                                              resume=positions, backoff_initial=0.05,
                                              retry_going_away=True, ping_interval=None):
                    urls.append(ws.url)
                    async for message in ws:
                        if not positions.observe(message):
                            duplicates += 1
                            continue
                        event = json.loads(message)
                        if event["type"] == "publication":
                            got.append(event["data"])
                        subscribed.set()
                        if len(got) == 300:
                            break
                    if len(got) == 300:
                        break
                # The second connection asked to resume from where the first stopped.
                assert "since=" not in urls[0] and f"since={topic}:" in urls[-1]

            consumer = asyncio.ensure_future(consume())
            await asyncio.wait_for(subscribed.wait(), 10)
            for n in range(300):
                await publisher.publish(topic, f"m{n}")
                if n == 100:
                    # The consumer's worker goes away (1001) while publishing goes on.
                    await app.shutdown(timeout=2.0)
                    app = hub_app(second)
                    await app.start("127.0.0.1", port)
                await asyncio.sleep(0.001)
            await asyncio.wait_for(consumer, 20)
            await app.shutdown(timeout=2.0)
        assert got == [f"m{n}" for n in range(300)]
        assert duplicates == 0

    run(main())


def test_a_reconnecting_client_resumes_too(run: Callable[..., Any]) -> None:
    """connect(url, reconnect=True, resume=positions): the listeners stay, the URL follows."""

    async def main() -> None:
        hub = wskit.Hub(history=10, format=envelope)
        app = hub_app(hub)
        asked: list[list[str]] = []

        @app.websocket("/spy/{topic}")
        async def spy(req: wskit.Request, ws: wskit.WebSocket) -> None:
            asked.append(req.query.get_all("since"))
            topic = req.params["topic"]
            since = parse_since(req.query.get_all("since")).get(topic)
            ws.send(subscribed_message(await hub.subscribe(ws, topic, since=since)))

        await app.start("127.0.0.1", 0)
        positions = wskit.Positions()
        got: list[str] = []

        def on_text(client: Any, text: str) -> None:
            if positions.observe(text) and json.loads(text)["type"] == "publication":
                got.append(json.loads(text)["data"])

        client = wskit.connect(f"ws://127.0.0.1:{app.port}/spy/news", reconnect=True,
                               resume=positions, backoff_initial=0.01, ping_interval=None)
        client.on_text(on_text)
        await client
        await eventually(lambda: positions.since("news") is not None)
        await hub.publish("news", "one")
        await eventually(lambda: got == ["one"])
        await hub.subscribers("news")[0].close(1012, "restart")
        await hub.publish("news", "two")  # while it is away
        await eventually(lambda: got == ["one", "two"])
        epoch = positions.since("news")
        assert epoch is not None
        assert asked == [[], [f"news:{epoch[0]}:1"]]
        await client.close()
        await app.shutdown(timeout=2.0)

    run(main())
