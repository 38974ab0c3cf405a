"""Presence in the Hub: members with their info across workers, join and leave events, and the
members of a worker killed with SIGKILL expiring within presence_ttl (real Redis and processes)."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from cli_process import free_port, python_env, wait_for_port
from e2e import eventually, quiet_app
from websockets.asyncio.client import ClientConnection, connect

import wskit
from wskit.hub import HubError

from .redis_servers import RedisCluster, RedisServer


@asynccontextmanager
async def worker(hub: wskit.Hub) -> AsyncIterator[str]:
    """``/p/{topic}?name=N`` joins the topic's presence as {"name": N}, with events."""
    app = quiet_app()

    @app.websocket("/p/{topic}")
    async def join(req: wskit.Request, ws: wskit.WebSocket) -> None:
        await hub.subscribe(ws, req.params["topic"], info={"name": req.query["name"]},
                            presence_events=True)
        ws.send(json.dumps({"ready": True}))

    await app.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{app.port}"
    finally:
        await app.shutdown(timeout=2.0)


class Member:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[tuple[str, str]] = []
        self.ready = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def join(cls, url: str, topic: str, name: str) -> Member:
        member = cls(await connect(f"{url}/p/{topic}?name={name}", compression=None))
        await asyncio.wait_for(member.ready.wait(), 10)
        return member

    async def _read(self) -> None:
        async for message in self.ws:
            event = json.loads(message)
            if "ready" in event:
                self.ready.set()
            else:
                self.events.append((event["presence"], event["info"]["name"]))

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


def names(members: dict[str, Any]) -> list[str]:
    return sorted(info["name"] for info in members.values())


class TestInMemory:
    def test_members_and_events(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            hub = wskit.Hub()
            async with worker(hub) as url:
                ann = await Member.join(url, "room", "ann")
                bob = await Member.join(url, "room", "bob")
                other = await Member.join(url, "elsewhere", "cy")
                members = await hub.presence("room")
                assert names(members) == ["ann", "bob"]
                assert all(member_id.count(".") == 1 for member_id in members)
                await eventually(lambda: ann.events == [("join", "ann"), ("join", "bob")])
                await bob.close()
                await eventually(lambda: ann.events[-1:] == [("leave", "bob")])
                assert names(await hub.presence("room")) == ["ann"]
                assert other.events == [("join", "cy")]
                # Subscribing without info is no membership; info must be small JSON.
                server_ws = hub.subscribers("room")[0]
                with pytest.raises(TypeError):
                    hub.subscribe(server_ws, "x", info=object())
                with pytest.raises(HubError):
                    hub.subscribe(server_ws, "x", info="x" * 5000)
                await ann.close()
                await other.close()
                assert await hub.presence("room") == {}
            with pytest.raises(ValueError):
                wskit.Hub(presence_ttl=0)

        run(main())


class TestRedis:
    @pytest.mark.parametrize("backend", ["redis", "cluster"])
    def test_members_and_events_across_workers(self, run: Callable[..., Any], backend: str,
                                               request: pytest.FixtureRequest) -> None:
        target: RedisServer | RedisCluster = request.getfixturevalue(
            "redis_server" if backend == "redis" else "redis_cluster")
        topic = "room-" + secrets.token_hex(4)

        async def main() -> None:
            one, two = wskit.Hub(target.url), wskit.Hub(target.url)
            async with one, two, worker(one) as url1, worker(two) as url2:
                ann = await Member.join(url1, topic, "ann")
                bob = await Member.join(url2, topic, "bob")
                for hub in (one, two):
                    assert names(await hub.presence(topic)) == ["ann", "bob"]
                await eventually(lambda: ann.events == [("join", "ann"), ("join", "bob")])
                assert bob.events == [("join", "bob")]
                await bob.close()
                await eventually(lambda: ann.events[-1:] == [("leave", "bob")])
                assert names(await one.presence(topic)) == ["ann"]
                await ann.close()
                await eventually(lambda: not one.topics())
                assert await two.presence(topic) == {}

        run(main())

    def test_heartbeat_writes_members_back_after_a_flush(self, run: Callable[..., Any],
                                                         own_redis: RedisServer) -> None:
        async def main() -> None:
            import redis.asyncio as aioredis

            hub = wskit.Hub(own_redis.url, presence_ttl=0.6)
            async with hub, worker(hub) as url:
                ann = await Member.join(url, "flushed", "ann")
                probe = aioredis.Redis(port=own_redis.port)
                await probe.flushall()
                await probe.aclose()
                assert await hub.presence("flushed") == {}
                # Within a heartbeat (a third of the ttl), the worker has written it back.
                await asyncio.sleep(0.5)
                assert names(await hub.presence("flushed")) == ["ann"]
                await ann.close()

        run(main())


WORKER = textwrap.dedent("""
    import asyncio, json, signal, sys
    import wskit

    async def main():
        hub = wskit.Hub(sys.argv[1], presence_ttl=float(sys.argv[3]))
        app = wskit.App(compression=None)

        @app.websocket("/p/{topic}")
        async def join(req, ws):
            await hub.subscribe(ws, req.params["topic"], info={"name": req.query["name"]},
                                presence_events=True)
            ws.send(json.dumps({"ready": True}))

        await app.start("127.0.0.1", int(sys.argv[2]))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await app.shutdown(timeout=2.0)
        await hub.close()

    asyncio.run(main())
""")


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_members_of_a_killed_worker_expire(run: Callable[..., Any], redis_server: RedisServer,
                                           loop_kind: str) -> None:
    """SIGKILL: no goodbye reaches Redis; the members go within the ttl, with leave events."""
    topic = "doomed-" + secrets.token_hex(4)
    ttl = 1.5
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, redis_server.url, str(port), str(ttl)],
                            env=python_env(), stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)

        async def main() -> None:
            hub = wskit.Hub(redis_server.url, presence_ttl=ttl)
            async with hub, worker(hub) as url:
                ann = await Member.join(url, topic, "ann")
                victims = [await Member.join(f"ws://127.0.0.1:{port}", topic, name)
                           for name in ("vic", "val")]
                assert names(await hub.presence(topic)) == ["ann", "val", "vic"]
                await eventually(lambda: len(ann.events) == 3)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                for victim in victims:
                    victim.reader.cancel()
                # Gone from presence within the ttl (a generous margin for a loaded machine).
                loop = asyncio.get_running_loop()
                killed_at = loop.time()
                while names(await hub.presence(topic)) != ["ann"]:
                    assert loop.time() - killed_at < ttl + 3.0, "members of the dead worker stayed"
                    await asyncio.sleep(0.05)
                # And their leave events came, from this worker's heartbeat.
                await eventually(lambda: sorted(ann.events[3:]) == [("leave", "val"),
                                                                     ("leave", "vic")],
                                 timeout=2 * ttl + 2)
                await ann.close()

        run(main())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_members_of_a_worker_shut_down_leave_at_once(
        run: Callable[..., Any], redis_server: RedisServer, loop_kind: str) -> None:
    """SIGTERM: the worker closes its connections and removes its members before it exits,
    long before the ttl (60 s here) would."""
    topic = "leaving-" + secrets.token_hex(4)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, redis_server.url, str(port), "60"],
                            env=python_env(), stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)

        async def main() -> None:
            hub = wskit.Hub(redis_server.url, presence_ttl=60)
            async with hub, worker(hub) as url:
                ann = await Member.join(url, topic, "ann")
                leaving = await Member.join(f"ws://127.0.0.1:{port}", topic, "lee")
                assert names(await hub.presence(topic)) == ["ann", "lee"]
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.get_running_loop().run_in_executor(None, proc.wait) == 0
                await leaving.reader
                assert names(await hub.presence(topic)) == ["ann"]
                await eventually(lambda: ann.events[-1:] == [("leave", "lee")])
                await ann.close()

        run(main())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
