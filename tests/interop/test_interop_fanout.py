"""wskit's compressed fan-out against real client peers: frames shared by connections in the
same compression state, mixed with each connection's own messages (RFC 7692 §7.2.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from interop_peers import clients
from interop_support import PeerClient, WskitServer, got, payload
from peer_chromium import PAGE
from peer_websockets import WebsocketsClient

import wskit

pytestmark = pytest.mark.interop

Run = Callable[..., Any]
Factory = Callable[[], PeerClient]


def publication(seq: int) -> str:
    """About 500 B of JSON: keys repeat from one to the next, numbers do not."""
    rng = random.Random(seq)
    return json.dumps({"type": "trades", "seq": seq, "data": [
        {"id": rng.randrange(10**9), "sym": f"ALPHA{rng.randrange(100)}",
         "px": rng.randrange(100000) / 100, "qty": rng.randrange(5000), "side": "buy"}
        for _ in range(6)]}, separators=(",", ":"))


@contextlib.asynccontextmanager
async def peers_of(factory: Factory, n: int) -> AsyncIterator[list[PeerClient]]:
    """n peers of one kind; for a browser (one page, one WebSocket at a time) one of it
    first, then websockets clients, so that it still shares frames with the others."""
    first = factory()
    more = WebsocketsClient if first.name == "chromium" else factory
    peers = [first, *(more() for _ in range(n - 1))]
    try:
        yield peers
    finally:
        for peer in peers:
            await peer.aclose()


@pytest.mark.parametrize("client", clients(lambda cls: "deflate" in cls.modes), indirect=True)
def test_shared_and_own_frames(run: Run, client: Factory) -> None:
    """Subscribers of every compression mode the peer offers (context takeover, none, a
    9-bit window) receive publications, own messages and incompressible ones, in order."""
    async def main() -> None:
        server = WskitServer(page=PAGE, compression="deflate")
        sockets: list[wskit.WebSocket] = []
        opened = asyncio.Event()

        def subscribe(req: wskit.Request, ws: wskit.WebSocket) -> None:
            sockets.append(ws)
            opened.set()

        server.app.websocket("/fan", subscribe)
        async with server, peers_of(client, 5) as peers:
            wanted = ["deflate", "deflate", "deflate", "no-takeover", "window-9"]
            for i, peer in enumerate(peers):
                mode = wanted[i] if wanted[i] in peer.modes else "deflate"
                opened.clear()
                await peer.connect(server.url("/fan"), compression=mode)
                await asyncio.wait_for(opened.wait(), 10)
            assert all(ws.extensions == ["permessage-deflate"] for ws in sockets)
            expected: list[list[Any]] = [[] for _ in peers]
            for seq in range(40):
                text = publication(seq)
                # Another first subscriber each time: another connection compresses, and
                # the others' compressors (stale now) must go.
                order = sockets[seq % 5:] + sockets[: seq % 5]
                assert wskit.broadcast(order, text, compress=True) == len(peers)
                for box in expected:
                    box.append(got(text))
                if seq % 7 == 3:  # an own message for two of them: they leave the group
                    for i in (seq % 5, (seq + 2) % 5):
                        own = publication(1000 + seq)[::-1]
                        sockets[i].send(own)
                        expected[i].append(got(own))
                if seq % 11 == 5:  # incompressible: goes out plain, the state stays
                    noise = payload("noise", 300)
                    wskit.broadcast(sockets, noise, compress=True)
                    for box in expected:
                        box.append(got(noise))
            for peer, box in zip(peers, expected, strict=True):
                received = [await peer.receive() for _ in box]
                assert received == box, peer.name
            for peer in peers:
                await peer.close(1000, "")

    run(main())
