"""broadcast(): one frame built once for many server connections, bounded slow subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from e2e import eventually, quiet_app, quiet_connect, raw_client, serving

import wskit


def hub_app(**kwargs: Any) -> tuple[wskit.App, list[wskit.WebSocket]]:
    app = quiet_app(**kwargs)
    members: list[wskit.WebSocket] = []

    @app.websocket("/hub")
    def join(req: wskit.Request, ws: wskit.WebSocket) -> None:
        members.append(ws)

    return app, members


class TestBroadcast:
    """DESIGN.md §4: a publish encodes once and writes the same bytes to every subscriber."""

    def test_text_and_binary_reach_every_member(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            app, members = hub_app()
            async with serving(app) as url:
                clients = [await quiet_connect(url + "/hub") for _ in range(5)]
                await eventually(lambda: len(members) == 5)
                assert wskit.broadcast(members, "hello") == 5
                assert wskit.broadcast(members, b"\x00\x01") == 5
                for ws in clients:
                    assert await ws.receive() == "hello"
                    assert await ws.receive() == b"\x00\x01"
                for ws in clients:
                    await ws.close()

        run(main())

    def test_mixed_compression_and_client_sockets(self, run: Callable[..., Any]) -> None:
        """RFC 7692 §6: compression is per message; compressed members may get a shared frame."""

        async def main() -> None:
            app, members = hub_app(compression="deflate")
            async with serving(app) as url:
                plain = await quiet_connect(url + "/hub")
                deflated = await quiet_connect(url + "/hub", compression="deflate")
                assert deflated.extensions == ["permessage-deflate"]
                await eventually(lambda: len(members) == 2)
                text = "x" * 500
                assert wskit.broadcast(members, text) == 2
                assert wskit.broadcast(members, text, compress=True) == 2
                for ws in (plain, deflated):
                    assert await ws.receive() == text
                    assert await ws.receive() == text
                # Client-side sockets mask every frame: each gets its own encoding.
                assert wskit.broadcast([plain, deflated], "up") == 2
                await eventually(lambda: all(not m.is_closed for m in members))
                for ws in (plain, deflated):
                    await ws.close()

        run(main())

    def test_closed_members_are_skipped(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            app, members = hub_app()
            async with serving(app) as url:
                a = await quiet_connect(url + "/hub")
                b = await quiet_connect(url + "/hub")
                await eventually(lambda: len(members) == 2)
                await a.close()
                await eventually(lambda: members[0].is_closed)
                assert wskit.broadcast(members, "still here") == 1
                assert await b.receive() == "still here"
                await b.close()

        run(main())

    @pytest.mark.parametrize("policy", ["close", "drop"])
    def test_slow_subscriber_is_bounded(self, run: Callable[..., Any], policy: str) -> None:
        """A member that does not read is closed with 1013 or skipped, never buffered forever."""

        async def main() -> None:
            app, members = hub_app(write_limit=16 * 1024)
            async with serving(app) as url:
                port = int(url.rsplit(":", 1)[1])
                slow = await raw_client(port, "/hub")
                slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
                fast = await quiet_connect(url + "/hub")
                await eventually(lambda: len(members) == 2)
                chunk = b"z" * 65536
                # Fill the slow member's socket and buffer until it counts as slow.
                for _ in range(400):
                    if members[0].buffered_amount > 256 * 1024:
                        break
                    members[0].send(chunk)
                    await asyncio.sleep(0)
                assert members[0].buffered_amount > 256 * 1024
                sent = wskit.broadcast(members, "news", max_buffered=256 * 1024, slow=policy)
                assert sent == 1
                assert await fast.receive() == "news"
                if policy == "close":
                    assert members[0].state.name == "LOCAL_CLOSING"
                else:
                    assert members[0].state.name == "OPEN"
                slow.writer.transport.abort()  # type: ignore[attr-defined]
                await fast.close()

        run(main())

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError):
            wskit.broadcast([], "x", slow="skip")
        with pytest.raises(TypeError):
            wskit.broadcast([], 42)  # type: ignore[arg-type]


