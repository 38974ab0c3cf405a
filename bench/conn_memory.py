"""Memory per open connection of a wskit server, with and without compression."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import HOST, proc_rss_kib, raise_nofile, run_with_loop

ROOT = Path(__file__).resolve().parent.parent
#: Connections opened at once while building up the idle set.
BATCH = 200
#: Connections opened, used and closed before the baseline, so first-use costs are not counted.
WARM_UP = 20


@dataclass(frozen=True)
class Config:
    """One way to configure the server's compression."""

    name: str
    label: str
    #: Window bits (server / client) and mem_level, as the table shows them.
    settings: str
    #: Bytes of zlib buffers that zlib's documentation gives for one idle connection.
    zlib_bytes: int


def _buffers(server_bits: int, client_bits: int, mem_level: int) -> int:
    from wskit.core.deflate import deflate_memory_estimate

    # The server compresses with its own window and decompresses with the client's.
    both = deflate_memory_estimate(server_bits, mem_level)
    return both - (1 << server_bits) + (1 << client_bits)


CONFIGS = {
    c.name: c
    for c in (
        Config("off", "off (`compression=None`)", "—", 0),
        Config("default", 'on, defaults (`compression="deflate"`)', "12 / 12, 5",
               _buffers(12, 12, 5)),
        Config("no-takeover", "on, no context takeover either way", "12 / 12, 5", 0),
        Config("zlib", "on, zlib's defaults", "15 / 15, 8", _buffers(15, 15, 8)),
    )
}


def compression_arg(name: str) -> Any:
    """The server's ``compression=`` argument for a configuration."""
    from wskit.core.deflate import PerMessageDeflateFactory

    if name == "off":
        return None
    if name == "default":
        return "deflate"
    if name == "no-takeover":
        # A fresh window for every message both ways: zlib's objects live only while a
        # message is compressed or decompressed.
        return PerMessageDeflateFactory(
            is_client=False, server_no_context_takeover=True, client_no_context_takeover=True
        )
    # zlib's own defaults: a 32 KiB window each way (client_max_window_bits=False leaves the
    # client its 15 bits) and mem_level 8.
    return PerMessageDeflateFactory(
        is_client=False, server_max_window_bits=15, client_max_window_bits=False, mem_level=8
    )


_WORDS = ("the", "message", "room", "user", "sent", "hello", "status", "online", "type",
          "name", "text", "join", "leave", "count", "price", "update", "time", "value")


def _text_source() -> str:
    rng = random.Random(7692)
    return " ".join(rng.choice(_WORDS) + str(rng.randrange(1000)) for _ in range(40_000))


_SOURCE = _text_source()


def message(i: int, size: int) -> str:
    """A text message of ``size`` bytes of words and numbers, different for every connection."""
    start = i * 37 % (len(_SOURCE) - size)
    return (f"{i}:" + _SOURCE[start : start + size])[:size]


# -- the server process --------------------------------------------------------------------------


def serve(config: str, loop: str) -> None:
    """An echo server with this compression; prints its port, stops on SIGTERM."""
    import wskit

    raise_nofile()
    app = wskit.App(compression=compression_arg(config), max_connections=1_000_000)

    @app.websocket("/echo")
    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: ws.send(text))

    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
        await app.start(HOST, 0, backlog=2048)
        print(json.dumps({"port": app.port}), flush=True)
        await done.wait()
        await app.shutdown(timeout=5.0)

    run_with_loop(loop, main)


# -- the measuring process (the clients) ---------------------------------------------------------


async def _open(url: str, i: int, size: int, extensions: list[str]) -> Any:
    """A client connection that has sent one message and received its echo."""
    import wskit

    ws = await wskit.connect(url, ping_interval=None, open_timeout=60)
    if ws.extensions != extensions:
        raise RuntimeError(f"negotiated {ws.extensions}, expected {extensions}")
    text = message(i, size)
    ws.send(text)
    echo = await ws.receive()
    if echo != text:
        raise RuntimeError("the echo differs from the message")
    return ws


async def _measure(port: int, pid: int, n: int, size: int, config: Config) -> dict[str, Any]:
    url = f"ws://{HOST}:{port}/echo"
    extensions = [] if config.name == "off" else ["permessage-deflate"]
    warm = [await _open(url, i, size, extensions) for i in range(WARM_UP)]
    await asyncio.gather(*(ws.close() for ws in warm))
    await asyncio.sleep(0.5)
    before = proc_rss_kib(pid)
    conns: list[Any] = []
    for start in range(0, n, BATCH):
        conns += await asyncio.gather(
            *(_open(url, i, size, extensions) for i in range(start, min(n, start + BATCH)))
        )
    await asyncio.sleep(1.0)  # every echo is in: the server is idle
    after = proc_rss_kib(pid)
    await asyncio.gather(*(ws.close() for ws in conns))
    return {"config": config.name, "size": size, "conns": n, "rss_before_kib": before,
            "rss_after_kib": after, "kib_per_conn": (after - before) / n}


def measure(config: Config, n: int, size: int, loop: str) -> dict[str, Any]:
    """Start a server with this configuration, hold ``n`` connections, read its RSS."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT),
                                         os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.conn_memory", "--serve", config.name, "--loop", loop],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {config.name} server did not start")
        port = json.loads(line)["port"]
        result: dict[str, Any] = run_with_loop(
            loop, lambda: _measure(port, proc.pid, n, size, config)
        )
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def table(results: list[dict[str, Any]]) -> str:
    """The results as a markdown table: one row per configuration, one column per size."""
    sizes = sorted({r["size"] for r in results})
    cells = {(r["config"], r["size"]): r["kib_per_conn"] for r in results}
    lines = [
        "| server compression | window bits (server / client), mem_level "
        "| zlib's buffers when idle, KiB/conn | "
        + " | ".join(f"after a {_size_label(size)} message, KiB/conn" for size in sizes) + " |",
        "|---|---|---:|" + "---:|" * len(sizes),
    ]
    for name in dict.fromkeys(r["config"] for r in results):
        config = CONFIGS[name]
        measured = " | ".join(f"{cells[name, size]:.1f}" if (name, size) in cells else "—"
                              for size in sizes)
        lines.append(f"| {config.label} | {config.settings} | {config.zlib_bytes / 1024:.0f} "
                     f"| {measured} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, default=2000, help="idle connections (default 2000)")
    ap.add_argument("--sizes", default="300,65536",
                    help="comma-separated sizes of the one message each way, one server run "
                    "per size (default 300,65536: a chat message, and one that fills the "
                    "windows)")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                    help="event loop of both processes (default: uvloop when installed)")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated, from {', '.join(CONFIGS)} (default: all)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead")
    ap.add_argument("--serve", choices=tuple(CONFIGS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    loop = args.loop
    if loop is None:
        from wskit.loop import uvloop_available

        loop = "uvloop" if uvloop_available() else "asyncio"
    if args.serve:
        serve(args.serve, loop)
        return 0
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration {', '.join(unknown)}")
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    if not sizes or not all(8 <= size <= len(_SOURCE) // 2 for size in sizes):
        ap.error(f"sizes must be between 8 and {len(_SOURCE) // 2}")
    limit = raise_nofile()
    if args.conns < 1 or args.conns + WARM_UP + 64 > limit:
        ap.error(f"--conns must be at least 1 and fit in the file descriptor limit {limit}")
    started = time.monotonic()
    results = [measure(CONFIGS[name], args.conns, size, loop) for name in names for size in sizes]
    if args.json:
        print(json.dumps(results))
        return 0
    command = " ".join(["python -m bench.conn_memory", *(sys.argv[1:] if argv is None else argv)])
    print(f"{dt.date.today().isoformat()}, `{command}`: {args.conns} idle connections, "
          f"{loop}, Python {platform.python_version()}, {platform.system()} "
          f"{platform.machine()}, {time.monotonic() - started:.0f} s\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
