"""FastAPI echo under uvicorn: uvicorn's own WebSocket protocols and wskit's, side by side.

    python -m bench.asgi                 # rt 32 B, 100 pipelined 32 B, storm, idle memory
    python -m bench.asgi --quick         # fewer connections, one run each
    python -m bench.asgi --ws auto,wskit --scenarios rt_32_text

The same FastAPI app (``/echo`` answers each message with the same type) runs in its own
uvicorn process per WebSocket protocol; ``bench.loadgen`` drives it exactly as it drives the
servers of ``bench.run``, and measures the uvicorn process's CPU and RSS. Keepalive pings
are off and compression is not offered, for every protocol. Results go to
``bench/results/asgi-latest.md`` and ``asgi-latest.json``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint's annotations at
# runtime, and its WebSocket class is imported inside make_app (only the server needs it).
import argparse
import contextlib
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import HOST, SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: uvicorn's ``ws=`` for each protocol measured; "auto" is uvicorn's default.
PROTOCOLS = {
    "auto": "auto",
    "websockets": "websockets",
    "wsproto": "wsproto",
    "wskit": "wskit.asgi:UvicornWebSocketProtocol",
}
DEFAULT_WS = ("auto", "wskit")
DEFAULT_SCENARIOS = ("rt_32_text", "pipe_32_text", "storm_500", "idle_10k")


def make_app() -> Any:
    """The FastAPI app: a WebSocket echo, written as a FastAPI user would write it."""
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    app = FastAPI()

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is not None:
                    await ws.send_text(text)
                else:
                    await ws.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            pass

    return app


def serve(ws: str, port: int, loop: str) -> None:
    import uvicorn

    uvicorn.run(make_app(), host=HOST, port=port, ws=PROTOCOLS[ws], loop=loop,
                log_level="warning", access_log=False, lifespan="off",
                ws_ping_interval=None, ws_max_size=16 * 1024 * 1024, backlog=2048)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


@contextlib.contextmanager
def server(ws: str, loop: str, log: Path) -> Any:
    port = _free_port()
    out = open(log, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.asgi", "serve", "--ws", ws, "--port", str(port),
         "--loop", loop],
        cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex((HOST, port)) == 0:
                    break
            time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn with ws={ws} exited: {log.read_text()[-500:]}")
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def measure(ws: str, loop: str, scenarios: list[str], runs: int, quick: bool,
            logdir: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for name in scenarios:
        # A fresh server per scenario: idle memory is not measured on a warmed-up heap of
        # closed connections, and a failed scenario cannot spoil the next one.
        with server(ws, loop, logdir / f"uvicorn-{ws}-{name}.log") as (port, pid):
            args = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--pid",
                    str(pid), "--scenarios", name, "--runs", str(runs)]
            if quick:
                args.append("--quick")
            done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True,
                                  timeout=600, check=False)
            for line in done.stdout.decode().splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    record.update(ws=ws, loop=loop)
                    records.append(record)
            if done.returncode != 0:
                records.append({"ws": ws, "loop": loop, "scenario": name,
                                "error": done.stderr.decode()[-300:]})
    return records


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((r["scenario"], r["ws"], r["loop"]), []).append(r)
    out = []
    for (scenario, ws, loop), runs in cells.items():
        ok = [r for r in runs if "error" not in r]
        cell: dict[str, Any] = {"scenario": scenario, "ws": ws, "loop": loop,
                                "unit": SCENARIOS[scenario].unit}
        if not ok:
            cell["error"] = next((r["error"] for r in runs), "no runs")
        else:
            values = [r["value"] for r in ok]
            cell.update(median=statistics.median(values), min=min(values), max=max(values))
            cpu = [r["cpu"] / r["count"] * 1e6 for r in ok if r.get("cpu") and r.get("count")]
            cell["cpu_us"] = statistics.median(cpu) if cpu else None
        out.append(cell)
    return out


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def table(cells: list[dict[str, Any]], protocols: list[str]) -> str:
    by = {(c["scenario"], c["ws"]): c for c in cells}
    scenarios = list(dict.fromkeys(c["scenario"] for c in cells))
    head = "| scenario | " + " | ".join(f"ws={p}" for p in protocols)
    if "wskit" in protocols and "auto" in protocols:
        head += " | wskit vs auto (CPU per unit)"
    lines = [head + " |", "|---" * (len(protocols) + 1 + ("wskit" in protocols
                                                         and "auto" in protocols)) + "|"]
    for s in scenarios:
        row = [SCENARIOS[s].label]
        for p in protocols:
            c = by.get((s, p))
            if c is None or "error" in c:
                row.append("error" if c else "—")
            elif s.startswith("idle"):
                row.append(f"{c['median']:.1f} KiB/conn")
            else:
                cpu = f", {c['cpu_us']:.1f} µs CPU" if c.get("cpu_us") else ""
                row.append(f"{_fmt(c['median'])} {c['unit']}{cpu}")
        if "wskit" in protocols and "auto" in protocols:
            a, w = by.get((s, "auto")), by.get((s, "wskit"))
            if a and w and "error" not in a and "error" not in w:
                if s.startswith("idle"):
                    row.append(f"{w['median'] / a['median']:.2f}x memory")
                elif a.get("cpu_us") and w.get("cpu_us"):
                    row.append(f"{w['cpu_us'] / a['cpu_us']:.2f}x")
                else:
                    row.append("—")
            else:
                row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    sv = sub.add_parser("serve", help="run one uvicorn server (used by the runner)")
    sv.add_argument("--ws", choices=sorted(PROTOCOLS), required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    ap.add_argument("--ws", default=",".join(DEFAULT_WS),
                    help=f"protocols to compare, from {sorted(PROTOCOLS)}")
    ap.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "serve":
        serve(args.ws, args.port, args.loop)
        return 0
    protocols = [p for p in args.ws.split(",") if p]
    scenarios = [s for s in args.scenarios.split(",") if s]
    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="wskit-asgi-bench-"))  # the servers' output
    records: list[dict[str, Any]] = []
    for ws in protocols:
        print(f"measuring uvicorn ws={ws} ...", file=sys.stderr)
        records += measure(ws, args.loop, scenarios, 1 if args.quick else args.runs,
                           args.quick, logdir)
    cells = summarize(records)
    versions = {name: version(name) for name in ("uvicorn", "fastapi", "starlette", "websockets")}
    text = (f"# ASGI bench: FastAPI echo under uvicorn ({time.strftime('%Y-%m-%d')})\n\n"
            f"loop={args.loop}; {platform.platform()}; Python {platform.python_version()}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items())
            + "; ws=auto is uvicorn's default protocol. Median of "
            f"{1 if args.quick else args.runs} runs; CPU is the uvicorn process's, per message "
            "(per connection for the storm).\n\n" + table(cells, protocols) + "\n")
    stem = "asgi-latest-quick" if args.quick else "asgi-latest"
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"versions": versions, "loop": args.loop, "cells": cells, "runs": records}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
