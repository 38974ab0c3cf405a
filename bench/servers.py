"""Echo and fan-out servers, one per library under test: `python -m bench.servers LIB --port P`."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import signal
import sys
from collections.abc import Callable
from typing import Any

from bench.common import (
    BACKLOG,
    COMPRESSING_LIBS,
    EXIT_UNAVAILABLE,
    HOST,
    MAX_MESSAGE,
    raise_nofile,
    run_with_loop,
)
from bench.fixed_echo import serve_fixed

# Every server offers the same two endpoints:
#   /echo    echoes each message with its own type (text stays text, binary stays binary);
#   /fanout  on a text message starting with "pub:", sends it to every open /fanout connection
#            (the sender included); other messages on /fanout are ignored.
# Compression is off and keepalive pings are off everywhere, so the load generator can count
# echoed bytes; each library keeps whatever UTF-8 validation it does by default. With
# --compress, permessage-deflate is on with each library's default settings (what its users
# get); /fanout then sends each publication compressed as the library does it by default
# for all subscribers, and the generator counts frames instead of bytes.

#: Set by --compress before the server starts.
COMPRESS = False


class Unavailable(Exception):
    """The library under test cannot be imported or lacks the API the benchmark needs."""


async def _forever() -> None:
    # The runner ends the process with SIGTERM; there is nothing to flush.
    await asyncio.Event().wait()


# --- raw TCP: the floor ---


#: The floor's read buffer, shared by its connections: what is read is copied out (or
#: written) before the next read.
_RAW_BUFFER = memoryview(bytearray(256 * 1024))


class _RawConn(asyncio.Protocol, asyncio.BufferedProtocol):
    """Writes back what it reads; a connection whose first bytes are FANOUT joins the hub.

    Both protocol bases, as wskit's own protocol has them: asyncio's transports then read
    into the one reused buffer (get_buffer/buffer_updated) instead of allocating 256 KiB per
    read, which costs three more system calls per read (mmap, mremap, munmap) on top of
    recv, send and epoll_wait; uvloop's call data_received, cheaper there since uvloop reads
    into a reused buffer of its own. The floor does the least a Python echo can per read.
    """

    __slots__ = ("hub", "mode", "transport")

    def __init__(self, hub: set[_RawConn]) -> None:
        self.hub = hub
        self.mode = 0  # 0 = undecided, 1 = echo, 2 = fan-out
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RAW_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        # A copy, as wskit makes one: a transport may keep what it could not send yet.
        self.data_received(_RAW_BUFFER[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self.mode == 1:
            self.transport.write(data)  # type: ignore[union-attr]
            return
        if self.mode == 0:
            if data.startswith(b"FANOUT\n"):
                self.mode = 2
                self.hub.add(self)
                data = data[7:]
                if not data:
                    return
            else:
                self.mode = 1
                self.transport.write(data)  # type: ignore[union-attr]
                return
        # Raw TCP has no message boundaries: each chunk read is what gets fanned out.
        for peer in self.hub:
            peer.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.discard(self)


async def serve_raw(port: int) -> None:
    hub: set[_RawConn] = set()
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: _RawConn(hub), HOST, port, backlog=BACKLOG)
    await _forever()


# --- picows ---


async def serve_picows(port: int, aiofastnet: bool = False) -> None:
    try:
        import picows
        from picows import WSListener, WSMsgType
    except ImportError as e:
        raise Unavailable(f"picows: {e}") from e

    text, binary, close = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE
    subs: set[Any] = set()

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            mt = frame.msg_type
            if mt in (text, binary):
                # picows has no UTF-8 check: the payload goes back as it came.
                transport.send(mt, frame.get_payload_as_memoryview())
            elif mt == close:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    class Fanout(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            subs.add(transport)

        def on_ws_disconnected(self, transport: Any) -> None:
            subs.discard(transport)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            mt = frame.msg_type
            if mt == text:
                payload = frame.get_payload_as_memoryview()
                if payload[:4] == b"pub:":
                    for t in subs:
                        t.send(text, payload)
            elif mt == close:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    def factory(request: Any) -> Any:
        if request.path == b"/echo":
            return Echo()
        if request.path == b"/fanout":
            return Fanout()
        return None

    await picows.ws_create_server(
        factory, HOST, port, max_frame_size=MAX_MESSAGE, backlog=BACKLOG,
        # aiofastnet swaps the loop's transport for its own; off by default so every library
        # runs on the same transport and the asyncio/uvloop columns mean the same thing.
        use_aiofastnet=aiofastnet,
    )
    await _forever()


# --- websockets (new asyncio API) ---


async def serve_websockets(port: int) -> None:
    try:
        from websockets.asyncio.server import broadcast, serve
    except ImportError as e:
        raise Unavailable(f"websockets: {e}") from e

    subs: set[Any] = set()

    async def handler(ws: Any) -> None:
        if ws.request.path == "/fanout":
            subs.add(ws)
            try:
                async for msg in ws:
                    if isinstance(msg, str) and msg.startswith("pub:"):
                        broadcast(subs, msg)
            finally:
                subs.discard(ws)
        else:
            async for msg in ws:
                await ws.send(msg)

    await serve(
        handler, HOST, port, compression="deflate" if COMPRESS else None, max_size=MAX_MESSAGE,
        ping_interval=None, backlog=BACKLOG,
    )
    await _forever()


# --- aiohttp ---


async def serve_aiohttp(port: int) -> None:
    try:
        from aiohttp import WSMsgType, web
    except ImportError as e:
        raise Unavailable(f"aiohttp: {e}") from e

    subs: set[Any] = set()

    async def echo(request: Any) -> Any:
        ws = web.WebSocketResponse(compress=COMPRESS, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def fanout(request: Any) -> Any:
        ws = web.WebSocketResponse(compress=COMPRESS, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        subs.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data.startswith("pub:"):
                    for peer in list(subs):
                        try:
                            await peer.send_str(msg.data)
                        except ConnectionError:
                            subs.discard(peer)  # left while we were sending
        finally:
            subs.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/fanout", fanout)
    # No access log: one log line per connection would dominate the storm scenario.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=BACKLOG).start()
    await _forever()


# --- wskit ---


def _accepted(fn: Callable[..., Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The subset of `wanted` keyword arguments that `fn` accepts."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return wanted
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


def wskit_app_kwargs(app_cls: Callable[..., Any]) -> dict[str, Any]:
    """Constructor arguments for a comparable wskit server; compression off is mandatory."""
    kwargs = _accepted(app_cls, {
        "compression": "deflate" if COMPRESS else None, "ping_interval": None,
        "max_message_size": MAX_MESSAGE,
        "max_size": MAX_MESSAGE,
        # The idle scenario holds 10,000 connections plus a few the runner opens around them.
        "max_connections": 20_000,
    })
    if "compression" not in kwargs:
        raise Unavailable("wskit.App does not accept compression=None")
    return kwargs


def wskit_app() -> Any:
    """The wskit App with /echo and /fanout, built before any loop runs (and any fork)."""
    try:
        import wskit

        app_cls = wskit.App
    except (ImportError, AttributeError) as e:
        raise Unavailable(f"wskit: {e}") from e
    app = app_cls(**wskit_app_kwargs(app_cls))
    if not hasattr(app, "websocket") or not hasattr(app, "serve"):
        raise Unavailable("wskit.App lacks websocket() or serve()")

    subs: set[Any] = set()
    broadcast = wskit.broadcast
    # With compression, subscribers get the publication compressed, as from the other two.
    fanout_kwargs = _accepted(broadcast, {"compress": True}) if COMPRESS else {}

    @app.websocket("/echo")  # type: ignore[untyped-decorator]
    def echo(req: Any, ws: Any) -> None:
        ws.on_text(lambda ws, text: ws.send(text))
        ws.on_buffer(lambda ws, view: ws.send(view))

    @app.websocket("/fanout")  # type: ignore[untyped-decorator]
    def fanout(req: Any, ws: Any) -> None:
        subs.add(ws)

        def on_text(ws: Any, text: str) -> None:
            if text.startswith("pub:"):
                # One frame built once for every subscriber (wskit.broadcast).
                broadcast(subs, text, max_buffered=None, **fanout_kwargs)

        stream = ws.on_text(on_text)
        if hasattr(stream, "finally_"):
            stream.finally_(lambda: subs.discard(ws))

    return app


async def serve_wskit(port: int) -> None:
    app = wskit_app()
    await app.serve(HOST, port, **_accepted(app.serve, {"backlog": BACKLOG}))
    await _forever()


def run_wskit_workers(port: int, workers: int) -> None:
    """`app.run(workers=N)` as users run it: N forked SO_REUSEPORT workers (N > 1) under
    a supervisor, or this process alone (N = 1); uvloop when installed, either way."""
    app = wskit_app()
    if "workers" not in _accepted(app.run, {"workers": workers}):
        raise Unavailable("wskit.App.run lacks workers=")
    app.run(HOST, port, workers=workers)


SERVERS: dict[str, Callable[[int], Any]] = {
    "fixed": serve_fixed,  # the peer that client libraries are measured against
    "raw": serve_raw,
    "picows": serve_picows,
    "picows-afn": lambda port: serve_picows(port, aiofastnet=True),
    "websockets": serve_websockets,
    "aiohttp": serve_aiohttp,
    "wskit": serve_wskit,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("lib", choices=sorted(SERVERS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    ap.add_argument("--profile", metavar="FILE", help="write cProfile stats here on SIGTERM")
    ap.add_argument("--compress", action="store_true",
                    help="permessage-deflate on, with the library's default settings")
    ap.add_argument("--workers", type=int, metavar="N",
                    help="wskit only: app.run(workers=N), on uvloop whatever --loop says")
    args = ap.parse_args(argv)
    global COMPRESS
    COMPRESS = args.compress
    if COMPRESS and args.lib not in COMPRESSING_LIBS:
        print(f"UNAVAILABLE: {args.lib} does not compress", file=sys.stderr, flush=True)
        return EXIT_UNAVAILABLE
    raise_nofile()
    prof = None
    if args.profile:
        import cProfile

        # SIGTERM unwinds through the loop like Ctrl-C, so the stats get written.
        signal.signal(signal.SIGTERM, _interrupt)
        prof = cProfile.Profile()
        prof.enable()
    try:
        if args.workers is not None:
            if args.lib != "wskit":
                raise Unavailable(f"--workers is for wskit, not {args.lib}")
            run_wskit_workers(args.port, args.workers)
        else:
            run_with_loop(args.loop, lambda: SERVERS[args.lib](args.port))
    except Unavailable as e:
        print(f"UNAVAILABLE: {e}", file=sys.stderr, flush=True)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        pass
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
    return 0


def _interrupt(_sig: int, _frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
