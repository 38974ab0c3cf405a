"""Client drivers, one per library, run against one fixed echo server: `python -m bench.clients`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench.common import (
    EXIT_UNAVAILABLE,
    HOST,
    MAX_MESSAGE,
    OP_TEXT,
    SCENARIOS,
    Scenario,
    client_frame,
    emit,
    payload_for,
    raise_nofile,
    run_with_loop,
    server_frame,
    upgrade_request,
)
from bench.servers import Unavailable, _accepted

# Each driver uses its library the way its documentation shows: awaited send/recv for
# websockets and aiohttp, listener callbacks for picows and wskit. The process measures its
# own CPU time (time.process_time), so the fixed echo server's work is never counted.

TIMEOUT = 10.0


class State:
    """Shared between a driver's loop and the harness: progress, stop flag, first reply."""

    __slots__ = ("done", "first", "stop")

    def __init__(self) -> None:
        self.done = 0
        self.stop = False
        self.first: Any = None


class Driver:
    """One library's client; `pipe` keeps `window` messages in flight until `st.stop`."""

    name = "?"

    async def setup(self) -> None:
        pass

    async def teardown(self) -> None:
        pass

    async def connect(self, url: str) -> Any:
        raise NotImplementedError

    async def pipe(self, conn: Any, msg: Any, window: int, st: State) -> None:
        raise NotImplementedError

    async def close(self, conn: Any) -> None:
        raise NotImplementedError

    async def storm_one(self, url: str, msg: Any) -> Any:
        """Connect, echo one message, close; returns the echoed message."""
        raise NotImplementedError

    def message(self, s: Scenario) -> Any:
        payload = payload_for(s)
        return payload.decode() if s.opcode == OP_TEXT else payload

    def expected(self, s: Scenario) -> Any:
        """What the echo of `message(s)` looks like to this driver."""
        return self.message(s)


# --- awaited send/recv libraries ---


class WebsocketsDriver(Driver):
    name = "websockets"

    async def setup(self) -> None:
        try:
            from websockets.asyncio.client import connect
        except ImportError as e:
            raise Unavailable(f"websockets: {e}") from e
        self._connect = connect

    async def connect(self, url: str) -> Any:
        return await self._connect(
            url, compression=None, max_size=MAX_MESSAGE, ping_interval=None
        )

    async def pipe(self, conn: Any, msg: Any, window: int, st: State) -> None:
        send, recv = conn.send, conn.recv
        for _ in range(window):
            await send(msg)
        inflight = window
        st.first = await recv()
        st.done += 1
        inflight -= 1
        while True:
            if st.stop:
                if inflight == 0:
                    return
            else:
                await send(msg)
                inflight += 1
            await recv()
            st.done += 1
            inflight -= 1

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def storm_one(self, url: str, msg: Any) -> Any:
        ws = await self.connect(url)
        await ws.send(msg)
        got = await ws.recv()
        await ws.close()
        return got


class AiohttpDriver(Driver):
    name = "aiohttp"

    async def setup(self) -> None:
        try:
            import aiohttp
        except ImportError as e:
            raise Unavailable(f"aiohttp: {e}") from e
        # limit=0: the default pool of 100 would queue most of the storm's 500 connections.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def teardown(self) -> None:
        await self._session.close()

    async def connect(self, url: str) -> Any:
        return await self._session.ws_connect(url, compress=0, max_msg_size=MAX_MESSAGE)

    async def pipe(self, conn: Any, msg: Any, window: int, st: State) -> None:
        send = conn.send_str if isinstance(msg, str) else conn.send_bytes
        receive = conn.receive
        for _ in range(window):
            await send(msg)
        inflight = window
        st.first = (await receive()).data
        st.done += 1
        inflight -= 1
        while True:
            if st.stop:
                if inflight == 0:
                    return
            else:
                await send(msg)
                inflight += 1
            await receive()
            st.done += 1
            inflight -= 1

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def storm_one(self, url: str, msg: Any) -> Any:
        ws = await self.connect(url)
        await (ws.send_str(msg) if isinstance(msg, str) else ws.send_bytes(msg))
        got = (await ws.receive()).data
        await ws.close()
        return got


# --- callback libraries ---


class PicowsDriver(Driver):
    name = "picows"

    async def setup(self) -> None:
        try:
            import picows
        except ImportError as e:
            raise Unavailable(f"picows: {e}") from e
        self._p = picows
        mt = picows.WSMsgType
        text, binary = mt.TEXT, mt.BINARY

        class Listener(picows.WSListener):  # type: ignore[misc]
            def __init__(self) -> None:
                self.st: State | None = None
                self.msg: Any = None
                self.mt: Any = None
                self.inflight = 0
                self.waiter: asyncio.Future[Any] | None = None

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                t = frame.msg_type
                if t != text and t != binary:
                    return
                st = self.st
                if st is None:  # storm: one echo then done
                    if self.waiter is not None and not self.waiter.done():
                        self.waiter.set_result(frame.get_payload_as_bytes())
                    return
                st.done += 1
                if st.first is None:
                    st.first = frame.get_payload_as_bytes()
                if st.stop:
                    self.inflight -= 1
                    if self.inflight == 0 and self.waiter is not None:
                        self.waiter.set_result(None)
                else:
                    transport.send(self.mt, self.msg)

        self._listener = Listener
        self._text, self._binary = text, binary
        self._mt: Any = text

    def message(self, s: Scenario) -> Any:
        # picows sends bytes for both frame types: remember which one this scenario wants.
        self._mt = self._text if s.opcode == OP_TEXT else self._binary
        return payload_for(s)

    async def connect(self, url: str) -> Any:
        transport, listener = await self._p.ws_connect(
            self._listener, url, max_frame_size=MAX_MESSAGE, use_aiofastnet=False
        )
        return transport, listener

    async def pipe(self, conn: Any, msg: Any, window: int, st: State) -> None:
        transport, listener = conn
        listener.msg, listener.st, listener.inflight, listener.mt = msg, st, window, self._mt
        listener.waiter = asyncio.get_running_loop().create_future()
        for _ in range(window):
            transport.send(listener.mt, msg)
        await listener.waiter

    async def close(self, conn: Any) -> None:
        transport, _ = conn
        transport.send_close(self._p.WSCloseCode.OK)
        try:
            await asyncio.wait_for(transport.wait_disconnected(), TIMEOUT)
        except asyncio.TimeoutError:
            transport.disconnect(False)

    async def storm_one(self, url: str, msg: Any) -> Any:
        transport, listener = await self.connect(url)
        listener.waiter = asyncio.get_running_loop().create_future()
        transport.send(self._mt, msg)
        got = await listener.waiter
        await self.close((transport, listener))
        return got


class WskitDriver(Driver):
    name = "wskit"

    async def setup(self) -> None:
        try:
            import wskit

            self._connect = wskit.connect
        except (ImportError, AttributeError) as e:
            raise Unavailable(f"wskit: {e}") from e
        kwargs = _accepted(self._connect, {
            "compression": None, "ping_interval": None, "max_message_size": MAX_MESSAGE,
            "max_size": MAX_MESSAGE,
        })
        if "compression" not in kwargs:
            raise Unavailable("wskit.connect does not accept compression=None")
        self._kwargs = kwargs

    async def connect(self, url: str) -> Any:
        return await self._connect(url, **self._kwargs)

    async def pipe(self, conn: Any, msg: Any, window: int, st: State) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        inflight = [window]

        def on_msg(ws: Any, data: Any) -> None:
            st.done += 1
            if st.first is None:
                st.first = bytes(data) if isinstance(data, memoryview) else data
            if st.stop:
                inflight[0] -= 1
                if inflight[0] == 0 and not waiter.done():
                    waiter.set_result(None)
            else:
                ws.send(msg)

        if isinstance(msg, str):
            conn.on_text(on_msg)
        else:
            conn.on_buffer(on_msg)  # the zero-copy binary listener: the fast path
        for _ in range(window):
            conn.send(msg)
        await waiter

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def storm_one(self, url: str, msg: Any) -> Any:
        ws = await self.connect(url)
        ws.send(msg)
        got = await ws.receive()
        await ws.close()
        return getattr(got, "data", got)


# --- raw TCP: the client floor ---


class _RawClient(asyncio.Protocol):
    """The least a client can do: upgrade by hand, then send pre-built frames and count the
    echoed bytes, answering everything one read completed with one write."""

    def __init__(self, upgrade: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upgrade = upgrade
        self.head = bytearray()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.rx = 0
        self.msg = b""
        self.rlen = 1
        self.st: State | None = None
        self.inflight = 0
        self.waiter: asyncio.Future[Any] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.first = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.upgrade)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = bytes(self.head[end + 4 :])
            self.opened.set_result(None)
            if not data:
                return
        rlen = self.rlen
        if len(self.first) < rlen:
            self.first += data[: rlen - len(self.first)]
        before = self.rx // rlen
        self.rx += len(data)
        n = self.rx // rlen - before
        st = self.st
        if st is None:
            if n and not self.waiter.done():
                self.waiter.set_result(bytes(self.first))
            return
        st.done += n
        if st.stop:
            self.inflight -= n
            if self.inflight == 0 and not self.waiter.done():
                self.waiter.set_result(None)
            return
        if n:
            self.transport.write(self.msg if n == 1 else self.msg * n)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the upgrade"))
        if not self.lost.done():
            self.lost.set_result(None)


class RawDriver(Driver):
    name = "raw"

    def message(self, s: Scenario) -> Any:
        # The same bytes a WebSocket client puts on the wire, built once.
        self._reply = server_frame(s.opcode, payload_for(s))
        return client_frame(s.opcode, payload_for(s))

    def expected(self, s: Scenario) -> Any:
        return server_frame(s.opcode, payload_for(s))

    async def connect(self, url: str) -> Any:
        hostport, _, path = url.removeprefix("ws://").partition("/")
        port = int(hostport.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            lambda: _RawClient(upgrade_request("/" + path, port)), HOST, port)
        await asyncio.wait_for(proto.opened, TIMEOUT)
        return proto

    async def pipe(self, conn: Any, msg: Any, window: int, st: State) -> None:
        conn.msg, conn.rlen, conn.st, conn.inflight = msg, len(self._reply), st, window
        for _ in range(window):
            conn.transport.write(msg)
        await conn.waiter
        st.first = bytes(conn.first)

    async def close(self, conn: Any) -> None:
        # No closing handshake: the floor ends the TCP connection and nothing else.
        conn.transport.close()
        await asyncio.wait_for(conn.lost, TIMEOUT)

    async def storm_one(self, url: str, msg: Any) -> Any:
        conn = await self.connect(url)
        conn.msg, conn.rlen = msg, len(self._reply)
        conn.transport.write(msg)
        got = await conn.waiter
        await self.close(conn)
        return got


DRIVERS: dict[str, type[Driver]] = {
    "wskit": WskitDriver,
    "picows": PicowsDriver,
    "websockets": WebsocketsDriver,
    "aiohttp": AiohttpDriver,
    "raw": RawDriver,
}


async def _pipe_run(d: Driver, url: str, s: Scenario, warmup: float,
                    duration: float) -> dict[str, Any]:
    msg = d.message(s)
    conn = await asyncio.wait_for(d.connect(url), TIMEOUT)
    st = State()
    task = asyncio.ensure_future(d.pipe(conn, msg, s.window, st))
    try:
        await asyncio.sleep(warmup)
        if task.done():
            task.result()  # surface the driver's error
        c0, cpu0, t0 = st.done, time.process_time(), time.perf_counter()
        await asyncio.sleep(duration)
        c1, cpu1, t1 = st.done, time.process_time(), time.perf_counter()
        st.stop = True
        await asyncio.wait_for(task, TIMEOUT)
    finally:
        task.cancel()
        await asyncio.wait_for(d.close(conn), TIMEOUT)
    if st.first != d.expected(s):
        return {"error": f"echo mismatch: {str(st.first)[:60]}"}
    return {"count": c1 - c0, "elapsed": t1 - t0, "cpu": cpu1 - cpu0}


async def _storm_run(d: Driver, url: str, s: Scenario, n: int) -> dict[str, Any]:
    msg = d.message(s)
    want = d.expected(s)

    async def round_() -> tuple[int, str]:
        got = await asyncio.gather(
            *(asyncio.wait_for(d.storm_one(url, msg), TIMEOUT) for _ in range(n)),
            return_exceptions=True,
        )
        errs = [g for g in got if isinstance(g, BaseException)]
        bad = [g for g in got if not isinstance(g, BaseException) and g != want]
        if errs:
            return len(got) - len(errs), f"{len(errs)} failed, e.g. {errs[0]!r}"
        if bad:
            return 0, f"echo mismatch: {str(bad[0])[:60]}"
        return len(got), ""

    await round_()  # warm-up round
    # One round per run, as in the load generator: storm sockets end in TIME_WAIT.
    cpu0, t0 = time.process_time(), time.perf_counter()
    done, error = await round_()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    if error:
        return {"error": error}
    return {"count": done, "elapsed": wall, "cpu": cpu}


async def run(lib: str, port: int, names: list[str], runs: int, warmup: float,
              duration: float, quick: bool) -> int:
    d = DRIVERS[lib]()
    try:
        await d.setup()
    except Unavailable as e:
        print(f"UNAVAILABLE: {e}", file=sys.stderr, flush=True)
        return EXIT_UNAVAILABLE
    url = f"ws://{HOST}:{port}/echo"
    try:
        for name in names:
            s = SCENARIOS[name]
            for i in range(runs):
                try:
                    if s.kind == "storm":
                        res = await asyncio.wait_for(
                            _storm_run(d, url, s, s.n_conns(quick)), duration + 60)
                    else:
                        res = await asyncio.wait_for(
                            _pipe_run(d, url, s, warmup, duration), duration + 30)
                except Exception as e:  # one failed scenario must not hide the others
                    res = {"error": f"{type(e).__name__}: {e}"}
                res.update(scenario=name, run=i)
                if "error" not in res:
                    res["value"] = res["count"] / res["elapsed"]
                emit(res)
    finally:
        await d.teardown()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("lib", choices=sorted(DRIVERS))
    ap.add_argument("--port", type=int, required=True, help="the fixed echo server's port")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    ap.add_argument("--scenarios", default=",".join(
        n for n, s in SCENARIOS.items() if "client" in s.sides))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1.5)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="smaller connection counts")
    args = ap.parse_args(argv)
    names = [n for n in args.scenarios.split(",") if n]
    bad = [n for n in names if n not in SCENARIOS or "client" not in SCENARIOS[n].sides]
    if bad:
        ap.error(f"not client scenarios: {bad}")
    raise_nofile()
    rc: int = run_with_loop(args.loop, lambda: run(
        args.lib, args.port, names, args.runs, args.warmup, args.duration, args.quick))
    return rc


if __name__ == "__main__":
    sys.exit(main())
