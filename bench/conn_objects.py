"""What one idle wskit server connection keeps: Python allocations by site, objects by type."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import HOST, proc_rss_kib, raise_nofile, run_with_loop
from bench.conn_memory import ROOT, compression_arg, message

#: Frames of each allocation's traceback kept; the site reported is the innermost in wskit.
DEPTH = 12


def _site(trace: tracemalloc.Traceback) -> str:
    """The innermost frame of wskit's code (else the innermost frame) of one allocation."""
    # (A traceback lists the oldest frame first.)
    inner = trace[-1]
    where = f"{Path(inner.filename).name}:{inner.lineno}"
    for frame in reversed(trace):
        if "/wskit/" in frame.filename:
            own = f"{frame.filename.split('/wskit/')[-1]}:{frame.lineno}"
            return own if frame == inner else f"{own} > {where}"
    return where


def _walk(root: Any, stop: set[int]) -> Counter[str]:
    """Bytes by type of every object reachable from ``root`` that is not shared: the walk
    stops at modules, classes, functions, the loop, the app and what ``stop`` names."""
    sizes: Counter[str] = Counter()
    seen = set(stop)
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (type, type(sys), type(_walk))) or obj is None:
            continue
        name = type(obj).__name__
        if name in {"builtin_function_or_method", "method_descriptor", "getset_descriptor"}:
            continue
        sizes[name] += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return sizes


def serve(config: str, loop: str) -> None:
    """An echo server; SIGUSR1 takes the baseline snapshot, SIGUSR2 reports the difference."""
    import wskit

    raise_nofile()
    tracemalloc.start(DEPTH)
    app = wskit.App(compression=compression_arg(config), max_connections=1_000_000)

    @app.websocket("/echo")
    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: ws.send(text))

    state: dict[str, Any] = {}

    def baseline() -> None:
        gc.collect()
        state["snap"] = tracemalloc.take_snapshot()
        print(json.dumps({"ok": 1}), flush=True)

    def report() -> None:
        gc.collect()
        snap = tracemalloc.take_snapshot()
        n = len(app.connections)
        by_site: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for stat in snap.compare_to(state["snap"], "traceback"):
            site = _site(stat.traceback)
            by_site[site] += stat.size_diff
            counts[site] += stat.count_diff
        total = sum(by_site.values())
        ws = next(iter(app.connections))
        proto = ws._protocol
        stop = {id(app), id(proto.loop), id(app._stats), id(proto.limits),
                id(app.connections), id(app._protocols)}
        stop |= {id(s) for s in app._servers}
        if proto._read_view is not None:
            stop |= {id(proto._read_view), id(proto._read_view.obj)}
        walk = _walk(proto, stop)
        print(json.dumps({
            "conns": n, "traced_per_conn": total / n,
            "sites": [(s, b / n, counts[s] / n) for s, b in by_site.most_common(80)],
            "walk": sorted(walk.items(), key=lambda kv: -kv[1]),
            "walk_total": sum(walk.values()),
        }), flush=True)

    async def main() -> None:
        done = asyncio.Event()
        lp = asyncio.get_running_loop()
        lp.add_signal_handler(signal.SIGTERM, done.set)
        lp.add_signal_handler(signal.SIGUSR1, baseline)
        lp.add_signal_handler(signal.SIGUSR2, report)
        await app.start(HOST, 0, backlog=2048)
        print(json.dumps({"port": app.port}), flush=True)
        await done.wait()
        await app.shutdown(timeout=5.0)

    run_with_loop(loop, main)


async def _open(url: str, i: int, size: int) -> Any:
    import wskit

    ws = await wskit.connect(url, ping_interval=None, open_timeout=60)
    if size:
        text = message(i, size)
        ws.send(text)
        await ws.receive()
    return ws


async def _drive(proc: subprocess.Popen[bytes], port: int, n: int, size: int) -> dict[str, Any]:
    assert proc.stdout is not None
    url = f"ws://{HOST}:{port}/echo"
    warm = [await _open(url, i, size) for i in range(20)]
    await asyncio.gather(*(ws.close() for ws in warm))
    await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    proc.stdout.readline()
    before = proc_rss_kib(proc.pid)
    conns: list[Any] = []
    for start in range(0, n, 200):
        conns += await asyncio.gather(*(_open(url, i, size)
                                        for i in range(start, min(n, start + 200))))
    await asyncio.sleep(1.0)
    after = proc_rss_kib(proc.pid)
    proc.send_signal(signal.SIGUSR2)
    result: dict[str, Any] = json.loads(proc.stdout.readline())
    result["rss_per_conn"] = (after - before) / n
    await asyncio.gather(*(ws.close() for ws in conns))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--size", type=int, default=300, help="one message each way (0: none)")
    ap.add_argument("--config", default="off")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.loop)
        return 0
    raise_nofile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.conn_objects", "--serve", args.config, "--loop",
         args.loop], cwd=ROOT, stdout=subprocess.PIPE,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        r = run_with_loop(args.loop, lambda: _drive(proc, port, args.conns, args.size))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(f"RSS {r['rss_per_conn']:.2f} KiB/conn, traced {r['traced_per_conn'] / 1024:.2f} "
          f"KiB/conn, walk from the protocol {r['walk_total'] / 1024:.2f} KiB")
    print("\nallocation sites (bytes/conn, blocks/conn):")
    for site, size, count in r["sites"]:
        if abs(size) >= 8:
            print(f"  {size:8.0f} {count:6.2f}  {site}")
    print("\nobjects reachable from one protocol (bytes by type):")
    for name, size in r["walk"]:
        print(f"  {size:8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
