"""The Hub in one process: in memory and through a real Redis, with websockets clients as peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from e2e import eventually, quiet_app, raw_client
from websockets.asyncio.client import ClientConnection, connect

import wskit
from wskit.hub import HubError

from .redis_servers import RedisCluster, RedisServer


@asynccontextmanager
async def worker(hub: wskit.Hub, **app_options: Any) -> AsyncIterator[tuple[wskit.App, str]]:
    """An App whose ``/t/{topic}`` subscribes each connection to its topic on ``hub``."""
    app = quiet_app(**app_options)

    @app.websocket("/t/{topic}")
    async def join(req: wskit.Request, ws: wskit.WebSocket) -> None:
        for topic in req.params["topic"].split("+"):
            await hub.subscribe(ws, topic)
        ws.send("subscribed")

    await app.start("127.0.0.1", 0)
    try:
        yield app, f"ws://127.0.0.1:{app.port}"
    finally:
        await app.shutdown(timeout=2.0)


async def client(url: str) -> ClientConnection:
    """A websockets client, once the server says it is subscribed."""
    ws = await connect(url, compression=None)
    assert await ws.recv() == "subscribed"
    return ws


async def receive_all(ws: ClientConnection, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), 5) for _ in range(count)]


class TestInMemory:
    """DESIGN.md §5: Hub() needs nothing; a publish reaches every subscriber of its topic."""

    def test_publish_reaches_subscribers_of_the_topic(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = wskit.Hub()
            async with worker(hub) as (_, url):
                news = [await client(url + "/t/news") for _ in range(3)]
                both = await client(url + "/t/news+sport")
                sport = await client(url + "/t/sport")
                assert sorted(hub.topics()) == ["news", "sport"]
                assert len(hub.subscribers("news")) == 4
                assert await hub.publish("news", "hello") == 4
                assert await hub.publish("sport", b"\x00\xff") == 2
                assert await hub.publish("nobody", "void") == 0
                for ws in news:
                    assert await receive_all(ws, 1) == ["hello"]
                assert await receive_all(both, 2) == ["hello", b"\x00\xff"]
                assert await receive_all(sport, 1) == [b"\x00\xff"]
                stats = hub.stats()
                assert (stats["published"], stats["delivered"]) == (3, 6)
                assert stats["subscriptions"] == 6
                for ws in [*news, both, sport]:
                    await ws.close()
                # Connections that end are unsubscribed from everything.
                await eventually(lambda: hub.topics() == [])

        run(main())

    def test_unsubscribe(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = wskit.Hub()
            async with worker(hub) as (app, url):
                a = await client(url + "/t/x+y")
                b = await client(url + "/t/x")
                await eventually(lambda: len(app.connections) == 2)
                server_a = hub.subscribers("y")[0]
                assert hub.topics_of(server_a) == ["x", "y"]
                assert hub.unsubscribe(server_a, "x") is True
                assert hub.unsubscribe(server_a, "x") is False
                assert await hub.publish("x", "only b") == 1
                assert await receive_all(b, 1) == ["only b"]
                assert hub.unsubscribe_all(server_a) == ["y"]
                assert hub.topics() == ["x"]
                await hub.publish("y", "lost")
                await asyncio.sleep(0.05)
                # Subscribing again works, and twice is once.
                await hub.subscribe(server_a, "x")
                await hub.subscribe(server_a, "x")
                assert await hub.publish("x", "both") == 2
                assert await receive_all(a, 1) == ["both"]
                assert await receive_all(b, 1) == ["both"]
                await a.close()
                await b.close()

        run(main())

    @pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
    def test_compressed_for_deflate_subscribers(self, run: Callable[..., Any],
                                               takeover: bool) -> None:
        """RFC 7692: Hub(compress=True) compresses for the subscribers that negotiated
        permessage-deflate (once for all without context takeover); the others get it plain."""
        from wskit.core.deflate import PerMessageDeflateFactory

        async def main() -> None:
            hub = wskit.Hub(compress=True)
            factory = PerMessageDeflateFactory(is_client=False,
                                               server_no_context_takeover=not takeover)
            async with worker(hub, compression=factory) as (_, url):
                deflated = [await connect(url + "/t/z", compression="deflate")
                            for _ in range(3)]
                plain = await connect(url + "/t/z", compression=None)
                for ws in [*deflated, plain]:
                    assert await ws.recv() == "subscribed"
                assert all(s.extensions == ["permessage-deflate"]
                           for s in hub.subscribers("z")[:3])
                texts = ["zz" * 2000, "second " * 300]
                for text in texts:
                    assert await hub.publish("z", text) == 4
                for ws in [*deflated, plain]:
                    assert await receive_all(ws, 2) == texts
                    await ws.close()

        run(main())

    def test_limits_and_bad_arguments(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = wskit.Hub(max_topics_per_connection=2, max_message_bytes=10)
            async with worker(hub) as (_, url):
                ws = await client(url + "/t/a+b")
                server_ws = hub.subscribers("a")[0]
                with pytest.raises(HubError):
                    hub.subscribe(server_ws, "c")
                with pytest.raises(ValueError):
                    hub.subscribe(server_ws, "")
                with pytest.raises(ValueError):
                    hub.subscribe(server_ws, "t" * 257)
                with pytest.raises(TypeError):
                    hub.subscribe(server_ws, b"a")  # type: ignore[arg-type]
                with pytest.raises(HubError):
                    await hub.publish("a", "x" * 11)
                with pytest.raises(TypeError):
                    await hub.publish("a", 42)  # type: ignore[arg-type]
                await ws.close()
                await eventually(lambda: server_ws.is_closed)
                with pytest.raises(HubError):
                    hub.subscribe(server_ws, "a")
            with pytest.raises(ValueError):
                wskit.Hub(slow="skip")
            with pytest.raises(TypeError):
                wskit.Hub(prefix="x:")  # Redis options without Redis

        run(main())


def _fill(ws: wskit.WebSocket, limit: int) -> None:
    for _ in range(1000):
        if ws.buffered_amount > limit:
            return
        ws.send(b"z" * 65536)


class TestSlowSubscribers:
    """A subscriber that never reads is dropped or closed by the policy; others go on."""

    @pytest.mark.parametrize("backend", ["memory", "redis"])
    @pytest.mark.parametrize("policy", ["drop", "close"])
    def test_policy(self, run: Callable[..., Any], policy: str, backend: str,
                    request: pytest.FixtureRequest) -> None:
        limit = 256 * 1024
        url = request.getfixturevalue("redis_server").url if backend == "redis" else None

        async def main() -> None:
            hub = wskit.Hub(url, slow=policy, max_buffered=limit)
            # Through Redis, the publisher is another hub (another worker, in effect).
            publisher = wskit.Hub(url) if url else hub
            async with hub, publisher, worker(hub, write_limit=16 * 1024) as (app, url_):
                slow = await raw_client(app.port, f"/t/slow-{policy}")
                slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
                fast = await client(url_ + f"/t/slow-{policy}")
                await eventually(lambda: len(hub.subscribers(f"slow-{policy}")) == 2)
                stuck = hub.subscribers(f"slow-{policy}")[0]
                _fill(stuck, limit)
                queued = stuck.buffered_amount
                for i in range(200):
                    await publisher.publish(f"slow-{policy}", f"m{i}")
                assert await receive_all(fast, 200) == [f"m{i}" for i in range(200)]
                stats = hub.stats()
                # Bounded: nothing was queued for the stuck subscriber past its limit.
                assert stuck.buffered_amount <= queued + 64
                if policy == "drop":
                    assert stats["dropped"] == 200 and stats["closed"] == 0
                    assert stuck.state.name == "OPEN"
                else:
                    assert stats["closed"] == 1
                    assert stuck.state.name != "OPEN"
                slow.writer.transport.abort()  # type: ignore[attr-defined]
                await fast.close()

        run(main())


def two_hubs(url: str) -> tuple[wskit.Hub, wskit.Hub]:
    return wskit.Hub(url), wskit.Hub(url)


class TestRedisInOneProcess:
    """Two hubs on one Redis stand for two workers: a publish on either reaches both."""

    @pytest.mark.parametrize("backend", ["redis", "cluster"])
    def test_publish_crosses_exactly_once(self, run: Callable[..., Any], backend: str,
                                          request: pytest.FixtureRequest) -> None:
        target: RedisServer | RedisCluster = request.getfixturevalue(
            "redis_server" if backend == "redis" else "redis_cluster")
        topics = [f"{backend}-{i}" for i in range(6)]  # several slots on the cluster

        async def main() -> None:
            one, two = two_hubs(target.url)
            async with one, two, worker(one) as (_, url1), worker(two) as (_, url2):
                path = "/t/" + "+".join(topics)
                a = await client(url1 + path)
                b = await client(url2 + path)
                for n, topic in enumerate(topics):
                    await one.publish(topic, f"text {n}")
                    await two.publish(topic, bytes([n, 0, 255]))
                expected = []
                for n in range(len(topics)):
                    expected += [f"text {n}", bytes([n, 0, 255])]
                for ws in (a, b):
                    got = await receive_all(ws, len(expected))
                    # In order per publisher; each message exactly once.
                    assert [m for m in got if isinstance(m, str)] == expected[::2]
                    assert [m for m in got if isinstance(m, bytes)] == expected[1::2]
                await a.send("end")
                await asyncio.sleep(0.05)
                assert one.stats()["received"] == len(topics)
                assert two.stats()["received"] == len(topics)
                await a.close()
                await b.close()
                await eventually(lambda: not one.topics() and not two.topics())

        run(main())

    def test_routing_by_topic(self, run: Callable[..., Any], redis_server: RedisServer) -> None:
        """A worker is subscribed to a topic's channel only while it has a local subscriber."""

        async def main() -> None:
            import redis.asyncio as aioredis

            probe = aioredis.Redis(port=redis_server.port)
            one, two = two_hubs(redis_server.url)

            async def channels() -> list[bytes]:
                return sorted(await probe.pubsub_channels("wskit:route-*"))

            async with one, two, worker(one) as (_, url1), worker(two) as (_, url2):
                a = await client(url1 + "/t/route-a")
                b1 = await client(url2 + "/t/route-a+route-b")
                b2 = await client(url2 + "/t/route-b")
                assert await channels() == [b"wskit:route-a", b"wskit:route-b"]
                assert (await probe.pubsub_numsub("wskit:route-a"))[0][1] == 2
                assert (await probe.pubsub_numsub("wskit:route-b"))[0][1] == 1
                await b1.close()
                await eventually(lambda: len(two.subscribers("route-a")) == 0)
                await asyncio.sleep(0.05)
                assert (await probe.pubsub_numsub("wskit:route-a"))[0][1] == 1
                await b2.close()
                await a.close()
                await eventually(lambda: not one.topics() and not two.topics())
                await asyncio.sleep(0.05)
                assert await channels() == []
            await probe.aclose()

        run(main())

    def test_cluster_topic_left_before_its_shard_is_known(
            self, run: Callable[..., Any], redis_cluster: RedisCluster) -> None:
        """A connection that leaves a topic before the hub learned which shard serves it
        leaves no SSUBSCRIBE behind, and an awaited subscribe is done, not cancelled."""

        async def main() -> None:
            import redis.asyncio as aioredis

            hub = wskit.Hub(redis_cluster.url)
            async with hub, worker(hub) as (_, url):
                ws = await client(url + "/t/early-0")
                member = hub.subscribers("early-0")[0]
                for i in range(1, 6):
                    ready = hub.subscribe(member, f"early-{i}")
                    hub.unsubscribe(member, f"early-{i}")
                    await asyncio.wait_for(ready, 5)
                await asyncio.sleep(0.3)
                left = []
                for node in redis_cluster.nodes:
                    probe = aioredis.Redis(port=node.port)
                    left += await probe.execute_command("PUBSUB", "SHARDCHANNELS", "wskit:*")
                    await probe.aclose()
                assert left == [b"wskit:early-0"]
                await ws.close()

        run(main())

    def test_cluster_slot_moved_to_another_shard(
            self, run: Callable[..., Any], redis_cluster: RedisCluster,
            caplog: pytest.LogCaptureFixture) -> None:
        """Resharding moves a topic's slot: Redis unsubscribes it on the old shard, and the
        hub subscribes again on the new one, so delivery goes on."""

        async def main() -> None:
            import redis.asyncio as aioredis

            one, two = two_hubs(redis_cluster.url)
            async with one, two, worker(one) as (_, url1), worker(two) as (_, url2):
                a = await client(url1 + "/t/moving")
                b = await client(url2 + "/t/moving")
                await one.publish("moving", "before")
                assert await receive_all(b, 1) == ["before"]
                assert await receive_all(a, 1) == ["before"]
                probes = [aioredis.Redis(port=node.port) for node in redis_cluster.nodes]
                slot = int(await probes[0].execute_command("CLUSTER", "KEYSLOT",
                                                           "wskit:moving"))
                ids = [(await p.execute_command("CLUSTER", "MYID")).decode() for p in probes]
                owner = None
                for i, p in enumerate(probes):
                    try:  # a key of the same name lives in the same slot as the channel
                        await p.get("wskit:moving")
                        owner = i
                    except aioredis.ResponseError:  # MOVED: another node serves it
                        pass
                assert owner is not None
                target = (owner + 1) % len(probes)
                await probes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                                     ids[owner])
                await probes[owner].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                                    ids[target])
                for p in probes:
                    await p.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
                await eventually(lambda: "moved from Redis" in caplog.text)
                for hub in (one, two):
                    await hub.subscribe(hub.subscribers("moving")[0], "moving")
                for _ in range(50):  # the publisher learns the move from a MOVED reply
                    try:
                        await two.publish("moving", "after")
                        break
                    except HubError:
                        await asyncio.sleep(0.05)
                assert await receive_all(a, 1) == ["after"]
                assert await receive_all(b, 1) == ["after"]
                for p in probes:
                    await p.aclose()
                await a.close()
                await b.close()

        with caplog.at_level("INFO", logger="wskit.hub"):
            run(main())

    def test_redis_killed_and_restarted(self, run: Callable[..., Any],
                                        own_redis: RedisServer,
                                        caplog: pytest.LogCaptureFixture) -> None:
        """Local delivery goes on, failed publishes raise HubError, subscriptions come back."""

        async def main() -> None:
            one = wskit.Hub(own_redis.url, reconnect_delay=0.02, max_reconnect_delay=0.2)
            two = wskit.Hub(own_redis.url, reconnect_delay=0.02, max_reconnect_delay=0.2)
            async with one, two, worker(one) as (_, url1), worker(two) as (_, url2):
                a = await client(url1 + "/t/k1+k2")
                b = await client(url2 + "/t/k1+k2")
                await one.publish("k1", "before")
                assert await receive_all(b, 1) == ["before"]
                assert await receive_all(a, 1) == ["before"]

                own_redis.kill()
                failures = 0
                for i in range(5):
                    try:
                        await one.publish("k2", f"during {i}")
                    except HubError:
                        failures += 1
                assert failures == 5
                assert one.stats()["failed_publishes"] == 5
                # The local subscriber got them all the same.
                assert await receive_all(a, 5) == [f"during {i}" for i in range(5)]

                own_redis.start()
                await eventually(lambda: one.stats()["reconnects"] >= 1
                                 and two.stats()["reconnects"] >= 1, timeout=10)
                # Both topics are subscribed again on both workers: delivery resumes.
                for topic in ("k1", "k2"):
                    await one.subscribe(one.subscribers(topic)[0], topic)
                    await two.subscribe(two.subscribers(topic)[0], topic)
                # One publisher at a time: "after 1" reaches b through Redis, while two's own
                # publication reaches b at once, so b's order across publishers is a race.
                await one.publish("k1", "after 1")
                assert await receive_all(b, 1) == ["after 1"]
                assert await receive_all(a, 1) == ["after 1"]
                await two.publish("k2", "after 2")
                assert await receive_all(b, 1) == ["after 2"]
                assert await receive_all(a, 1) == ["after 2"]
                await a.close()
                await b.close()

        with caplog.at_level("WARNING", logger="wskit.hub"):
            run(main())
        text = caplog.text
        assert "lost Redis" in text and "is back after" in text

    def test_redis_that_hangs_is_noticed(self, run: Callable[..., Any], own_redis: RedisServer,
                                         caplog: pytest.LogCaptureFixture) -> None:
        """A Redis that stops answering (SIGSTOP) keeps its TCP connections: the hub's PINGs
        notice it, publishes time out with HubError, and all comes back after SIGCONT."""
        options = {"reconnect_delay": 0.02, "max_reconnect_delay": 0.2, "health_interval": 0.2,
                   "command_timeout": 0.3, "connect_timeout": 0.3}

        async def main() -> None:
            one = wskit.Hub(own_redis.url, **options)
            two = wskit.Hub(own_redis.url, **options)
            async with one, two, worker(one) as (_, url1), worker(two) as (_, url2):
                a = await client(url1 + "/t/h")
                b = await client(url2 + "/t/h")
                own_redis.freeze()
                try:
                    with pytest.raises(HubError):
                        await one.publish("h", "frozen")
                    assert await receive_all(a, 1) == ["frozen"]
                    await asyncio.sleep(1.0)  # past two health intervals
                finally:
                    own_redis.freeze(False)
                await eventually(lambda: two.stats()["reconnects"] >= 1, timeout=10)
                await two.subscribe(two.subscribers("h")[0], "h")
                await one.publish("h", "thawed")
                # A publish that timed out may still be carried out once Redis runs again: its
                # outcome is unknown, which HubError says; it never comes twice or late.
                got = [await asyncio.wait_for(b.recv(), 5)]
                if got == ["frozen"]:
                    got.append(await asyncio.wait_for(b.recv(), 5))
                assert got[-1] == "thawed"
                await a.close()
                await b.close()

        with caplog.at_level("WARNING", logger="wskit.hub"):
            run(main())
        assert "did not answer" in caplog.text

