"""Reconnecting: backoff with full jitter and Retry-After, which ends are retried, the
``async for`` loop and the ReconnectingWebSocket, against a scripted aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSCloseCode, web
from cli_process import free_port

import wskit
from wskit.core.errors import ConnectFailed, ConnectionClosedError, InvalidHandshake
from wskit.reconnect import RetryPolicy, retry_after

FAST = {"backoff_initial": 0.01, "backoff_max": 0.02, "compression": None,
        "ping_interval": None}


class TestBackoff:
    """Full jitter: uniform in [0, min(maximum, initial * factor**attempt)]."""

    def test_the_cap_grows_then_stops(self) -> None:
        policy = RetryPolicy(initial=0.5, factor=2.0, maximum=3.0, uniform=lambda: 1.0)
        assert [policy.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
        assert policy.delay(10_000) == 3.0  # no overflow
        assert RetryPolicy(uniform=lambda: 0.0).delay(3) == 0.0
        jittered = RetryPolicy(initial=1.0, factor=2.0, maximum=60.0)
        assert all(0.0 <= jittered.delay(3) <= 8.0 for _ in range(200))

    def test_retry_after_in_seconds_or_as_a_date(self) -> None:
        def refusal(status: int, value: str) -> InvalidHandshake:
            return InvalidHandshake("x", status=status, headers=[("Retry-After", value)])

        policy = RetryPolicy(initial=1.0, uniform=lambda: 0.5)
        assert policy.delay(0, refusal(503, "7")) == 7.0
        assert policy.delay(0, refusal(429, "0")) == 0.5  # the backoff, when it is longer
        assert policy.delay(0, refusal(500, "7")) == 0.5  # only 503 and 429
        later = email.utils.formatdate(time.time() + 100, usegmt=True)
        assert 90 < retry_after(refusal(503, later)) <= 100  # type: ignore[operator]
        assert retry_after(refusal(503, "soon")) is None
        assert retry_after(refusal(503, email.utils.formatdate(0, usegmt=True))) == 0.0

    def test_arguments_are_checked(self) -> None:
        for bad in ({"initial": 0}, {"factor": 0.5}, {"initial": 2, "maximum": 1}):
            with pytest.raises(ValueError):
                RetryPolicy(**bad)  # type: ignore[arg-type]


class TestWhatIsRetried:
    @pytest.mark.parametrize(("error", "retried"), [
        (InvalidHandshake("x", status=503), True),
        (InvalidHandshake("x", status=500), True),
        (InvalidHandshake("x", status=429), True),
        (InvalidHandshake("x", status=403), False),
        (InvalidHandshake("x", status=404), False),
        (InvalidHandshake("x", status=302), False),
        (ConnectFailed("refused", transient=True), True),
        (ConnectFailed("speaks TLS"), False),
        (wskit.ProxyError("407", status=407), False),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (ValueError(), False),
    ])
    def test_openings(self, error: BaseException, retried: bool) -> None:
        assert RetryPolicy().opening_is_retried(error) is retried

    def test_certificate_errors_are_not(self) -> None:
        import ssl

        assert not RetryPolicy().opening_is_retried(ssl.SSLCertVerificationError("untrusted"))


@contextlib.asynccontextmanager
async def scripted(script: list[Any], port: int = 0) -> AsyncIterator[tuple[str, list[str]]]:
    """An aiohttp server that takes one step of ``script`` per connection attempt:
    an int is an HTTP status to refuse with (429/503 with ``Retry-After: 0``); ("close",
    code) accepts, echoes until "bye", then closes with ``code``; "drop" accepts and drops."""
    log: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        step = script.pop(0) if script else ("close", 1000)
        log.append(str(step))
        if isinstance(step, int):
            return web.Response(status=step, headers={"Retry-After": "0"}, text="not now")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if step == "drop":
            assert request.transport is not None
            request.transport.abort()
            return ws
        await ws.send_str(f"hello {len(log)}")
        async for message in ws:
            if message.data == "bye":
                break
            await ws.send_str(message.data)
        await ws.close(code=WSCloseCode(step[1]) if step[1] < 4000 else step[1])
        return ws

    app = web.Application()
    app.add_routes([web.get("/ws", handler)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/ws", log
    finally:
        await runner.cleanup()


class TestAsyncFor:
    def test_refusals_then_abnormal_ends_then_a_normal_close(self, run: Any,
                                                              caplog: Any) -> None:
        caplog.set_level(logging.INFO, logger="wskit.client")

        async def main() -> None:
            script = [503, 429, ("close", 1012), "drop", ("close", 1011), ("close", 1000)]
            async with scripted(script) as (url, log):
                greetings = []
                async for ws in wskit.connect(url, **FAST):
                    try:
                        greetings.append(await ws.receive())
                    except wskit.ConnectionClosed:
                        continue  # dropped before its greeting: the loop reconnects
                    ws.send("bye")
                assert greetings == ["hello 3", "hello 5", "hello 6"]
                assert log == ["503", "429", "('close', 1012)", "drop", "('close', 1011)",
                               "('close', 1000)"]
            attempts = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
            assert len(attempts) == 2
            assert attempts[0].startswith(f"{url}: attempt 1 failed: server rejected WebSocket "
                                          "connection: HTTP 503 Service Unavailable: not now; "
                                          "retrying in ")
            assert attempts[1].startswith(f"{url}: attempt 2 failed: ")
            ends = [r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage()]
            assert [m.split("(")[1].split(" ")[0] for m in ends] == ["1012", "1006", "1011"]

        run(main())

    def test_connections_dropped_soon_after_opening_back_off_too(self, run: Any,
                                                                caplog: Any) -> None:
        from wskit.reconnect import reconnecting

        async def main() -> None:
            script = [("close", 1011)] * 3 + [("close", 1000)]
            async with scripted(script) as (url, _):
                options = wskit.connect(url, **FAST).options
                # Each connection lives far less than the maximum (5 s): the waits grow.
                policy = RetryPolicy(initial=0.01, factor=2.0, maximum=5.0, uniform=lambda: 1.0)
                async for ws in reconnecting(options, policy):
                    await ws.receive()
                    ws.send("bye")
            waits = [r.getMessage().rsplit("in ", 1)[1] for r in caplog.records
                     if "reconnecting in" in r.getMessage()]
            assert waits == ["0.01 s", "0.02 s", "0.04 s"]

        caplog.set_level(logging.WARNING, logger="wskit.client")
        run(main())

    def test_a_4xx_refusal_raises_at_once(self, run: Any) -> None:
        async def main() -> None:
            async with scripted([403]) as (url, log):
                with pytest.raises(InvalidHandshake) as info:
                    async for _ in wskit.connect(url, **FAST):
                        raise AssertionError("no connection expected")
                assert info.value.status == 403
                assert log == ["403"]

        run(main())

    def test_1001_ends_the_loop_unless_asked(self, run: Any) -> None:
        async def main() -> None:
            async with scripted([("close", 1001)]) as (url, log):
                async for ws in wskit.connect(url, **FAST):
                    assert await ws.receive() == "hello 1"
                    ws.send("bye")
                assert len(log) == 1
            async with scripted([("close", 1001), ("close", 1000)]) as (url, log):
                async for ws in wskit.connect(url, retry_going_away=True, **FAST):
                    await ws.receive()
                    ws.send("bye")
                assert len(log) == 2

        run(main())

    def test_other_error_codes_raise(self, run: Any) -> None:
        async def main() -> None:
            async with scripted([("close", 1008)]) as (url, _):
                with pytest.raises(ConnectionClosedError) as info:
                    async for ws in wskit.connect(url, **FAST):
                        ws.send("bye")
                assert info.value.code == 1008

        run(main())

    def test_refused_until_the_server_starts(self, run: Any) -> None:
        port = free_port()

        async def main() -> None:
            connected = []

            async def consume() -> None:
                async for ws in wskit.connect(f"ws://127.0.0.1:{port}/ws", **FAST):
                    connected.append(await ws.receive())
                    ws.send("bye")

            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.2)  # a few refused attempts
            assert not connected
            async with scripted([("close", 1000)], port=port):
                await asyncio.wait_for(task, 10)
            assert connected == ["hello 1"]

        run(main())

    def test_leaving_the_loop_closes_the_connection(self, run: Any) -> None:
        async def main() -> None:
            async with scripted([("close", 1000)]) as (url, _):
                iterator = wskit.connect(url, **FAST).__aiter__()
                ws = await iterator.__anext__()
                await iterator.aclose()  # what a break does, once collected
                assert ws.is_closed and ws.close_code == 1000

        run(main())


class TestReconnectingWebSocket:
    def test_listeners_handles_and_on_open_across_connections(self, run: Any) -> None:
        async def main() -> None:
            script = [("close", 1012), 503, ("close", 1011), ("close", 1000)]
            async with scripted(script) as (url, log):
                texts: list[str] = []
                opened: list[int] = []
                ended: list[str] = []
                reopened = asyncio.Event()

                async def on_open(client: wskit.ReconnectingWebSocket) -> None:
                    opened.append(client.connections)
                    client.send(f"subscribe {client.connections}")
                    reopened.set()

                client = await wskit.connect(url, reconnect=True, on_open=on_open, **FAST)
                assert isinstance(client, wskit.ReconnectingWebSocket)
                handle = client.on_text(lambda c, text: texts.append(text))
                handle.catch(lambda error: ended.append(f"catch {error}"))
                handle.finally_(lambda: ended.append("finally"))
                for round_ in (1, 2, 3):
                    while len([t for t in texts if t.startswith("subscribe")]) < round_:
                        await asyncio.sleep(0.01)
                    if round_ < 3:
                        reopened.clear()
                        client.send("bye")  # the server ends this connection abnormally
                        await asyncio.wait_for(reopened.wait(), 10)
                        assert not ended  # the handles outlive each connection
                # A replaced listener's handle still ends with the client, as on WebSocket.
                client.on_binary(lambda c, data: None).finally_(lambda: ended.append("binary"))
                client.on_buffer(lambda c, view: None).finally_(lambda: ended.append("buffer"))
                await client.close()
                assert ended == ["finally", "binary", "buffer"]
                assert opened == [1, 2, 3]
                assert "subscribe 3" in texts and "hello 4" in texts
                assert len(log) == 4
                with pytest.raises(wskit.InvalidState):
                    client.send("after the end")

        run(main())

    def test_a_refusal_that_is_not_retried_ends_it_with_the_error(self, run: Any) -> None:
        async def main() -> None:
            async with scripted([404]) as (url, _):
                client = wskit.connect(url, reconnect=True, **FAST)
                with pytest.raises(InvalidHandshake):
                    await client
                errors: list[BaseException] = []
                client.on_text(lambda c, t: None).catch(errors.append)
                await asyncio.sleep(0.01)
                assert isinstance(errors[0], InvalidHandshake)

        run(main())

    def test_close_between_connections(self, run: Any) -> None:
        async def main() -> None:
            async with scripted([("close", 1011)] + [503] * 100) as (url, log):
                options = {**FAST, "backoff_max": 30.0}
                client = await wskit.connect(url, reconnect=True, **options)
                ended: list[str] = []
                client.on_text(lambda c, t: None).finally_(lambda: ended.append("finally"))
                client.send("bye")
                while len(log) < 3:  # refused twice since: waiting between attempts
                    await asyncio.sleep(0.01)
                assert not client.is_connected
                await asyncio.wait_for(client.close(), 5)
                attempts = len(log)
                await asyncio.sleep(0.1)
                assert len(log) == attempts  # no attempt after close()
                assert ended == ["finally"]
                assert client.error is None

        run(main())
