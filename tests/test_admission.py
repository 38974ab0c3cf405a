"""Admission and observability of the server over real sockets: half-open handshakes and
connections per address are bounded, idle connections close, ``app.stats()`` and
``/metrics`` count what happened, and the demo chat refuses a text too long for its room."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from raw_peer import CLOSE, TEXT, RawClient, client_frame, until

import wskit
from wskit.demo import MAX_EVENT_BYTES, create_app
from wskit.server import raise_fd_limit
from wskit.stats import percentiles, prometheus_text


def echo_app(**options: Any) -> wskit.App:
    app = wskit.App(compression=None, ping_interval=None, **options)

    @app.websocket("/")
    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: ws.send(text))

    return app


async def http_status(port: int, path: str = "/") -> bytes:
    """The status line the server answers a plain connection with (before any request)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await reader.readline()
    finally:
        writer.close()


def test_half_open_handshakes_have_their_own_limit(run: Callable[..., Any]) -> None:
    """Sockets that never send their request count toward max_handshakes: past it, a new
    connection is answered 503 at once; open WebSockets do not count."""

    async def main() -> None:
        app = echo_app(max_handshakes=3)
        await app.start("127.0.0.1", 0)
        ws = await websockets.connect(f"ws://127.0.0.1:{app.port}/")
        silent = [await asyncio.open_connection("127.0.0.1", app.port) for _ in range(3)]
        await until(lambda: app.stats()["handshakes_in_progress"] == 3, "three half-open")
        assert (await http_status(app.port)).startswith(b"HTTP/1.1 503")
        stats = app.stats()
        assert stats["refused_handshakes"] == {503: 1}
        assert stats["connections_open"] == 1
        for _, writer in silent:
            writer.close()
        await until(lambda: app.stats()["handshakes_in_progress"] == 0, "they leave")
        await ws.send("still served")
        assert await ws.recv() == "still served"
        await ws.close()
        await app.shutdown(timeout=1.0)

    run(main())


def test_connections_per_address_are_capped(run: Callable[..., Any],
                                            caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        app = echo_app(max_connections_per_ip=2)
        await app.start("127.0.0.1", 0)
        first = await websockets.connect(f"ws://127.0.0.1:{app.port}/")
        second = await websockets.connect(f"ws://127.0.0.1:{app.port}/")
        with caplog.at_level(logging.WARNING, logger="wskit"):
            assert (await http_status(app.port)).startswith(b"HTTP/1.1 429")
            assert (await http_status(app.port)).startswith(b"HTTP/1.1 429")
        warnings = [r for r in caplog.records if "refusing" in r.getMessage()]
        assert len(warnings) == 1  # logged once, not once per refusal
        await first.close()
        await until(lambda: app.stats()["connections_open"] == 1, "one left")
        third = await websockets.connect(f"ws://127.0.0.1:{app.port}/")
        await third.send("x")
        assert await third.recv() == "x"
        for ws in (second, third):
            await ws.close()
        assert app.stats()["refused_handshakes"] == {429: 2}
        await app.shutdown(timeout=1.0)

    run(main())


def test_idle_connections_close_with_1001(run: Callable[..., Any]) -> None:
    async def main() -> None:
        app = echo_app(idle_timeout=0.2)
        await app.start("127.0.0.1", 0)
        client = await RawClient.open(app.port)
        client.writer.write(client_frame(TEXT, b"a message, then silence"))
        assert (await client.read_frame())[0] == TEXT
        code, _ = await client.read_until_close()
        assert code == 1001
        client.writer.write(client_frame(CLOSE, (1001).to_bytes(2, "big")))
        client.writer.close()
        await until(lambda: app.stats()["close_codes"] == {1001: 1}, "counted")
        await app.shutdown(timeout=1.0)

    run(main())


def test_idle_timeout_is_off_by_default() -> None:
    assert wskit.App().limits.idle_timeout is None


def test_stats_and_metrics_count_traffic(run: Callable[..., Any]) -> None:
    async def main() -> None:
        app = echo_app()
        app.metrics_route("/metrics")
        await app.start("127.0.0.1", 0)
        async with websockets.connect(f"ws://127.0.0.1:{app.port}/") as ws:
            for i in range(5):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            stats = app.stats()
            assert stats["messages_in"] == 5 and stats["messages_out"] == 5
            assert stats["bytes_in"] > 5 * 4 and stats["bytes_out"] > 5 * 4
            # A keepalive round trip of the server's, as app.stats() reports it.
            server_ws = next(iter(app.connections))
            await server_ws.ping()
        await until(lambda: app.stats()["connections_open"] == 0, "closed")
        stats = app.stats()
        assert stats["messages_in"] == 5 and stats["close_codes"] == {1000: 1}
        assert set(stats["ping_rtt"]) == {"p50", "p90", "p99"}
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{app.port}/metrics").read())
        text = body.decode()
        assert "wskit_messages_received_total 5\n" in text
        assert 'wskit_closes_total{code="1000"} 1\n' in text
        assert 'wskit_ping_rtt_seconds{quantile="0.99"}' in text
        await app.shutdown(timeout=1.0)

    run(main())


def test_prometheus_text_format() -> None:
    stats = wskit.App().stats()
    stats["refused_handshakes"] = {503: 2}
    stats["slow_consumers"] = {"dropped": 3}
    text = prometheus_text(stats)
    assert text.endswith("\n")
    assert "# TYPE wskit_connections_open gauge\nwskit_connections_open 0\n" in text
    assert 'wskit_handshakes_refused_total{status="503"} 2\n' in text
    assert 'wskit_slow_consumer_actions_total{action="dropped"} 3\n' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line


def test_percentiles() -> None:
    assert percentiles([]) == {}
    assert percentiles([0.5]) == {"p50": 0.5, "p90": 0.5, "p99": 0.5}
    values = [i / 100 for i in range(1, 101)]
    assert percentiles(values) == {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def test_raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        raised = raise_fd_limit()
        now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert raised == now
        assert now == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_admission_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        wskit.App(max_handshakes=0)
    with pytest.raises(ValueError):
        wskit.App(max_connections_per_ip=0)


def test_chat_refuses_a_text_too_long_for_the_room(run: Callable[..., Any]) -> None:
    """1 MiB - 10 B of NUL bytes is a valid message, but its JSON event would be six times
    longer than any member on the default limits accepts: the sender alone is closed with
    1009, the other member sees nothing of it and goes on."""

    async def main() -> None:
        app = create_app(ping_interval=None, compression=None)
        await app.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{app.port}/chat/lobby"
        other = await websockets.connect(url + "?name=other")
        assert json.loads(await other.recv())["type"] == "join"
        sender = await RawClient.open(app.port, "/chat/lobby?name=sender")
        assert json.loads(await other.recv())["name"] == "sender"
        sender.writer.write(client_frame(TEXT, bytes((1 << 20) - 10)))
        code, _ = await sender.read_until_close()
        assert code == 1009
        # The sender answers the Close and goes, as a browser would (without the answer the
        # server would wait its close_timeout before the others hear of the leave).
        sender.writer.write(client_frame(CLOSE, code.to_bytes(2, "big")))
        sender.writer.close()
        event = json.loads(await other.recv())
        assert event["type"] == "leave" and event["name"] == "sender"
        await other.send("still here")
        assert json.loads(await other.recv())["text"] == "still here"
        await other.close()
        await app.shutdown(timeout=1.0)

    assert MAX_EVENT_BYTES == 1 << 20
    run(main(), timeout=60)


def test_chat_passes_a_long_text_that_fits(run: Callable[..., Any]) -> None:
    async def main() -> None:
        app = create_app(ping_interval=None, compression=None)
        await app.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{app.port}/chat/lobby?name=a"
        async with websockets.connect(url, max_size=1 << 20) as ws:
            await ws.recv()  # join
            text = "y" * (MAX_EVENT_BYTES - 100)
            await ws.send(text)
            assert json.loads(await ws.recv())["text"] == text
        await app.shutdown(timeout=1.0)

    run(main(), timeout=60)


@pytest.mark.parametrize(("nuls", "fits"), [(174_000, True), (175_000, False)])
def test_chat_measures_the_event_it_would_send(run: Callable[..., Any], nuls: int,
                                               fits: bool) -> None:
    """Each NUL is six bytes of JSON ("\\u0000"): 174,000 of them make an event under 1 MiB,
    175,000 one over it."""

    async def main() -> None:
        app = create_app(ping_interval=None, compression=None)
        await app.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{app.port}/chat/lobby?name=a"
        async with websockets.connect(url, max_size=1 << 20) as ws:
            await ws.recv()  # join
            await ws.send("\x00" * nuls)
            if fits:
                event = await ws.recv()
                assert len(event.encode()) <= MAX_EVENT_BYTES
                assert json.loads(event)["text"] == "\x00" * nuls
            else:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await app.shutdown(timeout=1.0)

    run(main(), timeout=60)


def test_the_client_takes_the_new_limits(run: Callable[..., Any]) -> None:
    """connect(max_fragments=3): a server's message in five frames fails it with 1009."""

    async def main() -> None:
        app = wskit.App(compression=None, ping_interval=None)

        @app.websocket("/")
        def five(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.send_fragments(["a", "b", "c", "d", "e"])

        await app.start("127.0.0.1", 0)
        ws = await wskit.connect(f"ws://127.0.0.1:{app.port}/", max_fragments=3,
                                 idle_timeout=30.0, ping_interval=None)
        with pytest.raises(wskit.ConnectionClosed):
            await ws.receive()
        assert ws.close_code == 1009
        await app.shutdown(timeout=1.0)

    run(main())
