"""Hub fan-out benchmark: 1,000 subscribers on one topic, in memory and through Redis.

    python -m bench.hub                  # every setup, writes bench/results/hub.{md,json}
    python -m bench.hub --only wskit-redis,websockets-redis --runs 1

Each setup serves ``/sub`` (join the topic) and ``/pub`` (publish each text message to it).
The Redis setups run two worker processes on two ports, half of the subscribers on each, and
the publisher on the first. The load generator (this process, uvloop) keeps a window of
messages in flight: message k is sent only once message k - window reached every subscriber,
so no server is asked to buffer without bound. CPU per delivery is the CPU time of all
server processes (Redis shown apart) divided by deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    HOST,
    MAX_MESSAGE,
    OP_TEXT,
    client_frame,
    proc_cpu,
    raise_nofile,
    run_with_loop,
    server_frame,
)
from bench.loadgen import Conn

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAYLOAD = b"p" * 32
TOPIC = "bench"


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    workers: int
    redis: bool


SETUPS = {
    s.name: s
    for s in (
        Setup("wskit-memory", "wskit Hub(), 1 process", 1, False),
        Setup("wskit-redis", "wskit Hub('redis://...'), 2 workers", 2, True),
        Setup("wskit-redis1", "wskit Hub('redis://...'), 1 process", 1, True),
        Setup("websockets-memory", "websockets broadcast(), 1 process", 1, False),
        Setup("websockets-redis", "websockets broadcast() + redis pub/sub by hand, 2 workers",
              2, True),
        Setup("socketio-redis", "python-socketio AsyncRedisManager (aiohttp), 2 workers",
              2, True),
    )
}

# --- the servers (one process per worker) ---


async def serve_wskit(port: int, redis_url: str | None) -> None:
    import wskit

    hub = wskit.Hub(redis_url) if redis_url else wskit.Hub()
    app = wskit.App(compression=None, ping_interval=None, max_message_size=MAX_MESSAGE,
                    max_connections=100_000)

    @app.websocket("/sub")
    def sub(req: Any, ws: Any) -> None:
        hub.subscribe(ws, TOPIC)

    @app.websocket("/pub")
    def pub(req: Any, ws: Any) -> None:
        async def publish(ws: Any, text: str) -> None:
            await hub.publish(TOPIC, text)

        ws.on_text(publish)

    async with hub:
        await app.start(HOST, port, backlog=2048)
        print("ready", flush=True)
        await asyncio.Event().wait()


async def serve_websockets(port: int, redis_url: str | None) -> None:
    # The recipe of the websockets FAQ: broadcast() to this process's connections, and Redis
    # pub/sub by hand to reach the other processes (every process relays what Redis sends).
    from websockets.asyncio.server import broadcast, serve

    subscribers: set[Any] = set()
    background: set[asyncio.Future[None]] = set()
    client: Any = None
    if redis_url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)

        async def relay() -> None:
            pubsub = client.pubsub()
            await pubsub.subscribe(TOPIC)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    broadcast(subscribers, message["data"].decode())

        background.add(asyncio.ensure_future(relay()))

    async def handler(ws: Any) -> None:
        if ws.request.path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
            return
        async for message in ws:
            if client is not None:
                await client.publish(TOPIC, message)
            else:
                broadcast(subscribers, message)

    async with serve(handler, HOST, port, compression=None, ping_interval=None,
                     max_size=MAX_MESSAGE, backlog=2048):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def serve_socketio(port: int, redis_url: str | None) -> None:
    import socketio
    from aiohttp import web

    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager,
                               transports=["websocket"], max_http_buffer_size=MAX_MESSAGE)
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if "role=sub" in environ.get("QUERY_STRING", ""):
            await sio.enter_room(sid, TOPIC)

    @sio.on("pub")
    async def pub(sid: str, data: str) -> None:
        await sio.emit("msg", data, room=TOPIC)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=2048).start()
    if manager is not None:
        # The manager's Redis listener starts with the first emit or on its own: give it time.
        await asyncio.sleep(0.5)
    print("ready", flush=True)
    await asyncio.Event().wait()


def serve_main(lib: str, port: int, redis_url: str | None) -> int:
    raise_nofile()
    target = {"wskit": serve_wskit, "websockets": serve_websockets,
              "socketio": serve_socketio}[lib]
    run_with_loop("uvloop", lambda: target(port, redis_url))
    return 0


# --- the load generator ---


class SocketIOConn(Conn):
    """A Socket.IO (Engine.IO 4) client over a raw WebSocket: opens the namespace, then counts."""

    def __init__(self, upgrade: bytes | None, keep: int = 0) -> None:
        super().__init__(upgrade, keep)
        self.opened = asyncio.get_running_loop().create_future()
        self.sent_connect = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.handshaking or self.opened.done() or not self.rx:
            return
        if not self.sent_connect:
            # The server's open packet ("0{...}") came: connect to the default namespace.
            self.sent_connect = True
            self.transport.write(client_frame(OP_TEXT, b"40"))
        elif b"40{" in data:
            self.opened.set_result(None)


async def open_subscribers(ports: list[int], n: int, lib: str) -> list[Conn]:
    conns: list[Conn] = []
    loop = asyncio.get_running_loop()
    for i in range(n):
        port = ports[i % len(ports)]
        path = "/socket.io/?EIO=4&transport=websocket&role=sub" if lib == "socketio" else "/sub"
        conns.append(await open_one(loop, port, path, lib))
    return conns


async def open_one(loop: asyncio.AbstractEventLoop, port: int, path: str, lib: str) -> Conn:
    from bench.common import upgrade_request

    factory = SocketIOConn if lib == "socketio" else Conn
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: factory(upgrade_request(path, port)), HOST, port), 10)
    sock = conn.transport.get_extra_info("socket")
    # The publisher only sends: without NODELAY, Nagle waits for the server's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.wait_for(conn.upgraded, 10)
    if isinstance(conn, SocketIOConn):
        await asyncio.wait_for(conn.opened, 10)
    return conn


def redis_calls(port: int) -> int:
    """PUBLISH and SPUBLISH calls Redis has served so far."""
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls = 0
    for line in out.splitlines():
        if line.startswith(("cmdstat_publish:", "cmdstat_spublish:")):
            calls += int(line.split("calls=")[1].split(",")[0])
    return calls


async def measure(setup: Setup, lib: str, ports: list[int], pids: list[int],
                  redis: tuple[int, int] | None, subscribers: int, window: int,
                  warmup: float, duration: float, runs: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    subs = await open_subscribers(ports, subscribers, lib)
    if lib == "socketio":
        pub = await open_one(loop, ports[0], "/socket.io/?EIO=4&transport=websocket&role=pub",
                             lib)
        request = client_frame(OP_TEXT, b'42["pub","' + PAYLOAD + b'"]')
        reply_len = len(server_frame(OP_TEXT, b'42["msg","' + PAYLOAD + b'"]'))
    else:
        pub = await open_one(loop, ports[0], "/pub", lib)
        request = client_frame(OP_TEXT, PAYLOAD)
        reply_len = len(server_frame(OP_TEXT, PAYLOAD))
    await asyncio.sleep(1.0)  # subscriptions settle (Redis SUBSCRIBE, rooms)
    for c in subs:
        c.rx = 0
    total = [0]
    state = {"published": 0, "stop": False}

    def on_rx(_c: Conn, n: int) -> None:
        total[0] += n
        if state["stop"]:
            return
        allowed = total[0] // reply_len // subscribers + window
        k = allowed - state["published"]
        if k > 0:
            pub.transport.write(request * k)
            state["published"] = allowed

    for c in subs:
        c.on_rx = on_rx
    state["published"] = window
    pub.transport.write(request * window)
    results = []
    try:
        await asyncio.sleep(warmup)
        for _ in range(runs):
            d0 = total[0] // reply_len
            cpu0 = sum(proc_cpu(pid) for pid in pids)
            r0 = proc_cpu(redis[1]) if redis else 0.0
            calls0 = redis_calls(redis[0]) if redis else 0
            p0, t0, own0 = state["published"], time.perf_counter(), time.process_time()
            await asyncio.sleep(duration)
            d1 = total[0] // reply_len
            cpu1 = sum(proc_cpu(pid) for pid in pids)
            elapsed = time.perf_counter() - t0
            published = state["published"] - p0
            run: dict[str, Any] = {
                "deliveries": d1 - d0, "elapsed": elapsed, "cpu": cpu1 - cpu0,
                "published": published, "loadgen_cpu": time.process_time() - own0,
            }
            if redis:
                run["redis_cpu"] = proc_cpu(redis[1]) - r0
                run["redis_calls"] = redis_calls(redis[0]) - calls0
            results.append(run)
    finally:
        state["stop"] = True
        for c in [*subs, pub]:
            c.reset()
    return summarize(setup, results, subscribers)


def summarize(setup: Setup, runs: list[dict[str, Any]], subscribers: int) -> dict[str, Any]:
    rates = [r["deliveries"] / r["elapsed"] for r in runs]
    cpu = [r["cpu"] / r["deliveries"] * 1e6 for r in runs if r["deliveries"]]
    out: dict[str, Any] = {
        "setup": setup.name, "label": setup.label, "workers": setup.workers,
        "subscribers": subscribers, "runs": runs,
        "deliveries_per_s": statistics.median(rates),
        "min": min(rates), "max": max(rates),
        "cpu_us_per_delivery": statistics.median(cpu) if cpu else None,
    }
    if setup.redis:
        published = sum(r["published"] for r in runs)
        out["redis_calls_per_publish"] = (sum(r["redis_calls"] for r in runs) / published
                                          if published else None)
        deliveries = sum(r["deliveries"] for r in runs)
        out["redis_cpu_us_per_delivery"] = (sum(r["redis_cpu"] for r in runs) / deliveries * 1e6
                                            if deliveries else None)
    return out


# --- processes ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT),
                                                          environ.get("PYTHONPATH")]))
    return environ


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly",
         "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True
                          ).stdout.strip() == b"PONG":
            return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def start_workers(setup: Setup, lib: str, redis_url: str | None
                  ) -> tuple[list[subprocess.Popen[str]], list[int]]:
    procs, ports = [], []
    for _ in range(setup.workers):
        port = free_port()
        cmd = [sys.executable, "-m", "bench.hub", "serve", lib, str(port)]
        if redis_url:
            cmd.append(redis_url)
        proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"{setup.name} worker did not start")
        procs.append(proc)
        ports.append(port)
    return procs, ports


def run_setup(setup: Setup, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    lib = setup.name.split("-")[0]
    redis_proc = None
    redis: tuple[int, int] | None = None
    procs: list[subprocess.Popen[str]] = []
    try:
        url = None
        if setup.redis:
            redis_proc, redis_port = start_redis(workdir)
            redis = (redis_port, redis_proc.pid)
            url = f"redis://{HOST}:{redis_port}/0"
        procs, ports = start_workers(setup, lib, url)
        return run_with_loop("uvloop", lambda: measure(
            setup, lib, ports, [p.pid for p in procs], redis, args.subscribers, args.window,
            args.warmup, args.duration, args.runs))
    except Exception as exc:  # a library that cannot be driven here is reported, not fatal
        return {"setup": setup.name, "label": setup.label, "error": f"{type(exc).__name__}: "
                f"{exc}"}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait()


def table(results: list[dict[str, Any]]) -> str:
    base = next((r for r in results if r["setup"] == "wskit-memory" and "error" not in r), None)
    lines = [
        "| setup | deliveries/s (min–max) | CPU µs/delivery | × wskit in-memory | "
        "Redis PUBLISH per publish | Redis CPU µs/delivery |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | not measured: {r['error']} | | | | |")
            continue
        cpu = r["cpu_us_per_delivery"]
        ratio = f"{cpu / base['cpu_us_per_delivery']:.2f}" if base and cpu else ""
        calls = r.get("redis_calls_per_publish")
        rcpu = r.get("redis_cpu_us_per_delivery")
        lines.append(
            f"| {r['label']} | {r['deliveries_per_s']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f}) "
            f"| {cpu:.3f} | {ratio} | {'' if calls is None else f'{calls:.2f}'} "
            f"| {'' if rcpu is None else f'{rcpu:.3f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve_main(argv[1], int(argv[2]), argv[3] if len(argv) > 3 else None)
    parser = argparse.ArgumentParser(prog="python -m bench.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated setups: " + ", ".join(SETUPS))
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--window", type=int, default=8, help="messages in flight")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=2, help="runs per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the setups are measured in turn, this many times: a change in "
                             "the machine's load then touches every setup alike")
    parser.add_argument("--out", default=str(RESULTS / "hub"),
                        help="write OUT.md and OUT.json (default: bench/results/hub)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is needed (apt-get install redis-server)", file=sys.stderr)
        return 2
    names = args.only.split(",") if args.only else list(SETUPS)
    raise_nofile()
    collected: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    errors: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="wskit-bench-redis-") as workdir:
        for round_ in range(args.rounds):
            for name in names:
                setup = SETUPS[name]
                print(f"round {round_ + 1}: {setup.label} ...", file=sys.stderr, flush=True)
                result = run_setup(setup, args, workdir)
                if "error" in result:
                    errors[name] = result
                else:
                    collected[name] += result["runs"]
                print("  " + json.dumps({k: v for k, v in result.items() if k != "runs"}),
                      file=sys.stderr, flush=True)
    results = [summarize(SETUPS[name], collected[name], args.subscribers)
               if collected[name] else errors[name] for name in names]
    header = (f"Hub fan-out, {args.subscribers} subscribers, one topic, 32 B text, window "
              f"{args.window}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
              f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}, uvloop; median of {args.rounds} rounds x "
              f"{args.runs} runs of {args.duration} s, setups measured in turn")
    text = header + "\n\n" + table(results) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"header": header, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
