"""The demo's page rooms (/rooms/{room}) in-process, with websockets clients: a name is needed
and unique per room (a tab coming back with its key keeps it), history replayed on return,
members from presence, binary refused, a room whose Redis is gone says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from cli_process import free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wskit.demo import chat_hub, create_app
from wskit.demo_rooms import NAME_TAKEN

Run = Callable[..., Any]


@asynccontextmanager
async def demo(url: str | None = None) -> AsyncIterator[str]:
    hub = chat_hub(url)
    app = create_app(hub=hub, ping_interval=None)
    await app.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{app.port}"
    finally:
        await app.shutdown(timeout=2.0)
        await hub.close()


async def until_type(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of type ``kind``."""
    seen = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        seen.append(event)
        if event.get("type") == kind:
            return seen


async def refused(ws: ClientConnection) -> tuple[int | None, str | None]:
    """The close code and reason, once the server has closed (messages before it skipped)."""
    try:
        for _ in range(100):
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else None
    raise AssertionError("not refused")


def test_names_history_and_members(run: Run) -> None:
    async def main() -> None:
        async with demo() as base:
            ada = await connect(f"{base}/rooms/r?name=ada&key=k1", compression=None)
            answer = (await until_type(ada, "subscribed"))[-1]
            assert answer["recovered"] is False and answer["offset"] == 0
            await ada.send("hello")
            message = (await until_type(ada, "publication"))[-1]
            assert json.loads(message["data"]) == {"type": "message", "name": "ada",
                                                   "text": "hello"}
            # Another key with the same name: refused, and told why.
            twin = await connect(f"{base}/rooms/r?name=ada&key=k2", compression=None)
            assert await refused(twin) == (NAME_TAKEN, "the name ada is already taken in "
                                                       "this room")
            nameless = await connect(f"{base}/rooms/r?name=%20&key=k3", compression=None)
            assert (await refused(nameless))[0] == NAME_TAKEN
            # The same key comes back (its old connection still open): it keeps its name,
            # gets what it missed and sees the members.
            since = f"room:r:{message['epoch']}:{message['offset']}"
            bob = await connect(f"{base}/rooms/r?name=bob&key=k4", compression=None)
            await until_type(bob, "subscribed")
            await bob.send("while ada was away")
            await until_type(bob, "publication")
            back = await connect(f"{base}/rooms/r?name=ada&key=k1&since={since}",
                                 compression=None)
            events = await until_type(back, "subscribed")
            replayed = [json.loads(e["data"])["text"] for e in events
                        if e["type"] == "publication"]
            assert replayed == ["while ada was away"]
            members = next(e for e in events if e["type"] == "members")["members"]
            assert sorted(members.values()) == ["ada", "ada", "bob"]
            assert events[-1]["recovered"] is True
            # Binary is refused with 1003.
            await bob.send(b"\x00")
            assert (await refused(bob))[0] == 1003
            for ws in (ada, back):
                await ws.close()

    run(main())


def test_a_room_whose_redis_is_gone(run: Run) -> None:
    async def main() -> None:
        async with demo(f"redis://127.0.0.1:{free_port()}/0") as base:
            ws = await connect(f"{base}/rooms/r?name=ada&key=k", compression=None)
            code, reason = await refused(ws)
            assert code == 1013 and reason is not None and "unavailable" in reason

    run(main())
