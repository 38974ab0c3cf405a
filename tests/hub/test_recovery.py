"""History and recovery in the Hub: offsets and epochs, replay then live without gap or duplicate,
in memory and through a real Redis shared by two hubs (two workers), with websockets clients."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from e2e import eventually, quiet_app
from websockets.asyncio.client import ClientConnection, connect

import wskit
from wskit.hub import HubError

from .redis_servers import RedisCluster, RedisServer


def envelope(topic: str, offset: int | None, epoch: str | None, data: str | bytes) -> str:
    text = data if isinstance(data, str) else data.hex()
    return json.dumps({"topic": topic, "offset": offset, "epoch": epoch, "data": text})


def history_hub(url: str | None = None, **options: Any) -> wskit.Hub:
    options.setdefault("history", 1000)
    return wskit.Hub(url, format=envelope, **options)


@asynccontextmanager
async def worker(hub: wskit.Hub) -> AsyncIterator[str]:
    """An App whose ``/t/{topic}?epoch=E&offset=N`` subscribes (recovering from E, N) and then
    sends {"subscribed": ...} with the Subscription."""
    app = quiet_app()

    @app.websocket("/t/{topic}")
    async def join(req: wskit.Request, ws: wskit.WebSocket) -> None:
        epoch = req.query.get("epoch")
        since = (epoch, int(req.query.get("offset", "0"))) if epoch is not None else None
        sub = await hub.subscribe(ws, req.params["topic"], since=since)
        ws.send(json.dumps({"subscribed": {"epoch": sub.epoch, "offset": sub.offset,
                                           "recovered": sub.recovered,
                                           "replayed": sub.replayed}}))

    await app.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{app.port}"
    finally:
        await app.shutdown(timeout=2.0)


class Peer:
    """A websockets client that sorts what it gets: publications, and the subscribe answer."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.got: list[dict[str, Any]] = []
        self.subscribed: dict[str, Any] | None = None

    @classmethod
    async def open(cls, url: str, since: tuple[str, int] | None = None) -> Peer:
        query = f"?epoch={since[0]}&offset={since[1]}" if since else ""
        peer = cls(await connect(url + query, compression=None))
        while peer.subscribed is None:
            await peer.read_one()
        return peer

    async def read_one(self) -> None:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        if "subscribed" in event:
            self.subscribed = event["subscribed"]
        else:
            self.got.append(event)

    async def until(self, count: int) -> list[dict[str, Any]]:
        while len(self.got) < count:
            await self.read_one()
        return self.got

    def data(self) -> list[str]:
        return [event["data"] for event in self.got]

    def offsets(self) -> list[int]:
        return [event["offset"] for event in self.got]


class TestInMemory:
    def test_offsets_epoch_and_format(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = history_hub(history={"h.*": 10})
            async with worker(hub) as url:
                peer = await Peer.open(url + "/t/h.one")
                assert peer.subscribed is not None
                assert peer.subscribed["offset"] == 0 and peer.subscribed["recovered"] is False
                await hub.publish("h.one", "a")
                await hub.publish("h.one", b"\x00\xff")
                await hub.publish("h.two", "elsewhere")
                plain = await Peer.open(url + "/t/plain")
                await hub.publish("plain", "no history")
                got = await peer.until(2)
                epoch = peer.subscribed["epoch"]
                assert got == [
                    {"topic": "h.one", "offset": 1, "epoch": epoch, "data": "a"},
                    {"topic": "h.one", "offset": 2, "epoch": epoch, "data": "00ff"},
                ]
                # A topic without history is formatted too, without a position.
                assert await plain.until(1) == [{"topic": "plain", "offset": None,
                                                 "epoch": None, "data": "no history"}]
                assert plain.subscribed == {"epoch": None, "offset": None, "recovered": False,
                                            "replayed": 0}
                await peer.ws.close()
                await plain.ws.close()

        run(main())

    def test_resume_replays_what_was_missed_then_live(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = history_hub(history=5)
            async with worker(hub) as url:
                first = await Peer.open(url + "/t/room")
                for n in range(1, 4):
                    await hub.publish("room", f"m{n}")
                await first.until(3)
                epoch = first.got[-1]["epoch"]
                await first.ws.close()
                for n in range(4, 7):
                    await hub.publish("room", f"m{n}")
                back = await Peer.open(url + "/t/room", since=(epoch, 3))
                assert back.subscribed == {"epoch": epoch, "offset": 6, "recovered": True,
                                           "replayed": 3}
                await hub.publish("room", "m7")
                await back.until(4)
                assert back.data() == ["m4", "m5", "m6", "m7"]
                assert back.offsets() == [4, 5, 6, 7]
                # Too far back (the ring keeps 5): not recovered, nothing replayed.
                late = await Peer.open(url + "/t/room", since=(epoch, 1))
                assert late.subscribed is not None
                assert (late.subscribed["recovered"], late.subscribed["replayed"]) == (False, 0)
                # An epoch from another life of the hub: not recovered either.
                other = await Peer.open(url + "/t/room", since=("deadbeef", 6))
                assert other.subscribed is not None
                assert other.subscribed["recovered"] is False
                for peer in (back, late, other):
                    await peer.ws.close()

        run(main())

    def test_bad_since(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = history_hub()
            async with worker(hub) as url:
                peer = await Peer.open(url + "/t/x")
                ws = hub.subscribers("x")[0]
                with pytest.raises(TypeError):
                    hub.subscribe(ws, "y", since=("e",))  # type: ignore[arg-type]
                with pytest.raises(ValueError):
                    hub.subscribe(ws, "z", since=("e", -1))
                await peer.ws.close()

        run(main())


async def publish_all(hub: wskit.Hub, topic: str, texts: list[str]) -> None:
    for text in texts:
        await hub.publish(topic, text)


def unique(name: str) -> str:
    """A topic of this run alone (the Redis of the session outlives each test)."""
    return f"{name}-{secrets.token_hex(4)}"


class TestRedis:
    """Two hubs on one Redis stand for two workers."""

    @pytest.mark.parametrize("backend", ["redis", "cluster"])
    def test_workers_agree_on_offsets(self, run: Callable[..., Any], backend: str,
                                      request: pytest.FixtureRequest) -> None:
        target: RedisServer | RedisCluster = request.getfixturevalue(
            "redis_server" if backend == "redis" else "redis_cluster")
        topic = unique(f"agree-{backend}")

        async def main() -> None:
            one, two = history_hub(target.url), history_hub(target.url)
            async with one, two, worker(one) as url1, worker(two) as url2:
                a = await Peer.open(url1 + "/t/" + topic)
                b = await Peer.open(url2 + "/t/" + topic)
                # Both publish at once: Redis orders them, both workers deliver that order.
                await asyncio.gather(publish_all(one, topic, [f"1-{n}" for n in range(100)]),
                                     publish_all(two, topic, [f"2-{n}" for n in range(100)]))
                await a.until(200)
                await b.until(200)
                assert a.got == b.got
                assert a.offsets() == list(range(1, 201))
                for worker_id in ("1", "2"):
                    mine = [d for d in a.data() if d.startswith(worker_id + "-")]
                    assert mine == [f"{worker_id}-{n}" for n in range(100)]
                assert len({event["epoch"] for event in a.got}) == 1
                await a.ws.close()
                await b.ws.close()

        run(main())

    def test_recovery_while_publishing(self, run: Callable[..., Any],
                                       redis_server: RedisServer) -> None:
        """No gap and no duplicate between replay and live, publications arriving throughout."""

        async def main() -> None:
            one, two = history_hub(redis_server.url), history_hub(redis_server.url)
            busy = unique("busy")
            async with one, two, worker(one) as url1, worker(two) as url2:
                watcher = await Peer.open(url1 + "/t/" + busy)
                epoch = watcher.subscribed["epoch"] if watcher.subscribed else ""
                texts = [f"m{n}" for n in range(1, 1001)]
                publishing = asyncio.ensure_future(publish_all(one, busy, texts))
                # Resume on the other worker from offsets already published, while the
                # rest keep coming.
                late = []
                for k in range(0, 300, 60):
                    await watcher.until(20 + k)
                    late.append(await Peer.open(url2 + "/t/" + busy, since=(epoch, 20 + k)))
                await publishing
                for k, peer in zip(range(0, 300, 60), late, strict=True):
                    assert peer.subscribed is not None and peer.subscribed["recovered"]
                    await peer.until(1000 - 20 - k)
                    assert peer.data() == texts[20 + k:]
                    assert peer.offsets() == list(range(21 + k, 1001))
                await watcher.until(1000)
                assert watcher.data() == texts
                for peer in (watcher, *late):
                    await peer.ws.close()

        run(main())

    def test_trimmed_and_expired(self, run: Callable[..., Any],
                                 redis_server: RedisServer) -> None:
        async def main() -> None:
            trim, ttl_topic = unique("trim"), unique("ttl")
            hub = history_hub(redis_server.url, history={"trim-*": 5, "ttl-*": (100, 0.3)})
            async with hub, worker(hub) as url:
                peer = await Peer.open(url + "/t/" + trim)
                epoch = peer.subscribed["epoch"] if peer.subscribed else ""
                await publish_all(hub, trim, [str(n) for n in range(500)])
                await peer.until(500)
                # MAXLEN ~ 5 keeps at least 5: the last 5 always recover, the first not.
                recent = await Peer.open(url + "/t/" + trim, since=(epoch, 495))
                assert recent.subscribed is not None and recent.subscribed["recovered"]
                assert recent.data() == [str(n) for n in range(495, 500)]
                old = await Peer.open(url + "/t/" + trim, since=(epoch, 1))
                assert old.subscribed == {"epoch": epoch, "offset": 500, "recovered": False,
                                          "replayed": 0}

                ttl = await Peer.open(url + "/t/" + ttl_topic)
                await hub.publish(ttl_topic, "soon gone")
                await ttl.until(1)
                ttl_epoch = ttl.got[0]["epoch"]
                await asyncio.sleep(0.6)  # past the ttl: the stream expired, the position not
                gone = await Peer.open(url + "/t/" + ttl_topic, since=(ttl_epoch, 0))
                assert gone.subscribed == {"epoch": ttl_epoch, "offset": 1,
                                           "recovered": False, "replayed": 0}
                current = await Peer.open(url + "/t/" + ttl_topic, since=(ttl_epoch, 1))
                assert current.subscribed is not None and current.subscribed["recovered"]
                for each in (peer, recent, old, ttl, gone, current):
                    await each.ws.close()

        run(main())

    def test_epoch_changes_when_redis_loses_everything(self, run: Callable[..., Any],
                                                       own_redis: RedisServer) -> None:
        """A Redis restarted without persistence, and a flushed Redis: a new epoch."""

        async def main() -> None:
            import redis.asyncio as aioredis

            hub = history_hub(own_redis.url, reconnect_delay=0.02, max_reconnect_delay=0.2)
            async with hub, worker(hub) as url:
                peer = await Peer.open(url + "/t/lost")
                await hub.publish("lost", "one")
                await peer.until(1)
                epoch = peer.got[0]["epoch"]

                own_redis.kill()
                with pytest.raises(HubError):
                    await hub.publish("lost", "nobody gets this")
                own_redis.start()
                await eventually(lambda: hub.stats()["reconnects"] >= 1, timeout=10)
                await hub.subscribe(hub.subscribers("lost")[0], "lost")
                await hub.publish("lost", "two")
                await peer.until(2)
                # Not delivered to anyone, the failed publish: the next is offset 1 again,
                # of a new epoch, so no client mistakes it for offset 1 of the old one.
                assert peer.got[1]["offset"] == 1 and peer.got[1]["epoch"] != epoch
                back = await Peer.open(url + "/t/lost", since=(epoch, 1))
                assert back.subscribed is not None
                assert back.subscribed["recovered"] is False
                assert back.subscribed["epoch"] == peer.got[1]["epoch"]

                probe = aioredis.Redis(port=own_redis.port)
                await probe.flushall()
                await probe.aclose()
                await hub.publish("lost", "three")
                await peer.until(3)
                assert peer.got[2]["epoch"] not in (epoch, peer.got[1]["epoch"])
                await peer.ws.close()
                await back.ws.close()

        run(main())

    def test_a_hole_in_pubsub_is_read_back_from_the_stream(
            self, run: Callable[..., Any], redis_server: RedisServer) -> None:
        """The pub/sub link of a worker is cut while another publishes: its subscribers still
        get every publication once and in order (the hole is read back from the stream)."""

        async def main() -> None:
            import redis.asyncio as aioredis

            probe = aioredis.Redis(port=redis_server.port)
            one = history_hub(redis_server.url, reconnect_delay=0.01, max_reconnect_delay=0.05)
            two = history_hub(redis_server.url)
            async with one, two, worker(one) as url1:
                holes = unique("holes")
                peer = await Peer.open(url1 + "/t/" + holes)
                texts = [f"m{n}" for n in range(600)]
                for chunk in range(6):
                    await probe.client_kill_filter(_type="pubsub")
                    await publish_all(two, holes, texts[chunk * 100:(chunk + 1) * 100])
                # Holes in the middle are seen at the next publication, the last one when
                # the channel is subscribed again: nothing more needs to be published.
                await peer.until(600)
                assert peer.data() == texts
                assert peer.offsets() == list(range(1, 601))
                assert one.stats()["reconnects"] >= 1
                await peer.ws.close()
            await probe.aclose()

        run(main())

    def test_what_was_published_while_the_link_was_down_comes_after_it(
            self, run: Callable[..., Any], redis_server: RedisServer) -> None:
        """Nothing published after the outage shows the hole: the channel's new subscription
        confirmation does, and the worker reads what it missed."""

        async def main() -> None:
            import redis.asyncio as aioredis

            probe = aioredis.Redis(port=redis_server.port)
            # The link waits 0.2-0.4 s before reconnecting: the publications fall in the gap.
            one = history_hub(redis_server.url, reconnect_delay=0.4, max_reconnect_delay=0.4)
            two = history_hub(redis_server.url)
            async with one, two, worker(one) as url1:
                tail = unique("tail")
                peer = await Peer.open(url1 + "/t/" + tail)
                await two.publish(tail, "before")
                await peer.until(1)
                await probe.client_kill_filter(_type="pubsub")
                await publish_all(two, tail, ["during 1", "during 2", "during 3"])
                await peer.until(4)
                assert peer.data() == ["before", "during 1", "during 2", "during 3"]
                assert one.stats()["reconnects"] == 1
                await peer.ws.close()
            await probe.aclose()

        run(main())
