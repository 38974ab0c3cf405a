"""``make soak``: one ``python -m wskit serve`` process under load for a while (issue 9).

1. 10,000 idle connections held at once (descriptor limits raised): the server's resident
   set per connection.
2. 1,000 connections doing echo for SOAK_SECONDS (default 60): every message numbered and
   checked on its way back (nothing lost, nothing duplicated, nothing out of order), the
   server's resident set per connection while they run.

Not part of the test suite (it takes minutes); prints a report and exits 1 if a check fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile_peer import ServeProcess

import wskit

IDLE = int(os.environ.get("SOAK_IDLE", "10000"))
ECHO = int(os.environ.get("SOAK_ECHO", "1000"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


async def wait_open(port: int, count: int) -> None:
    while (await asyncio.to_thread(metrics, port)).get("wskit_connections_open") != count:
        await asyncio.sleep(0.2)


async def open_many(url: str, count: int) -> list[wskit.WebSocket]:
    sockets: list[wskit.WebSocket] = []
    for start in range(0, count, 250):
        batch = await asyncio.gather(*(wskit.connect(url, compression=None, ping_interval=None)
                                       for _ in range(min(250, count - start))))
        sockets += batch
    return sockets


async def idle_phase(server: ServeProcess) -> dict[str, float]:
    base = server.memory()["VmRSS"]
    sockets = await open_many(f"ws://127.0.0.1:{server.port}/echo", IDLE)
    await wait_open(server.port, IDLE)
    held = server.memory()["VmRSS"]
    await asyncio.gather(*(ws.close() for ws in sockets))
    await wait_open(server.port, 0)
    after = server.memory()["VmRSS"]
    return {"connections": IDLE, "rss_base_mib": base / 1024, "rss_held_mib": held / 1024,
            "kib_per_connection": (held - base) / IDLE, "rss_after_close_mib": after / 1024}


async def echo_one(ws: wskit.WebSocket, deadline: float, window: int = 4) -> tuple[int, int]:
    """Numbered messages, ``window`` in flight; each echo must be the next number expected."""
    sent = received = 0
    errors = 0
    while time.monotonic() < deadline or received < sent:
        while sent - received < window and time.monotonic() < deadline:
            ws.send(f"{sent:08d}" + "x" * 56)
            sent += 1
        message = await ws.receive()
        if message != f"{received:08d}" + "x" * 56:
            errors += 1
        received += 1
    return received, errors


async def echo_phase(server: ServeProcess) -> dict[str, float]:
    base = server.memory()["VmRSS"]
    server.reset_peak()
    sockets = await open_many(f"ws://127.0.0.1:{server.port}/echo", ECHO)
    start = time.monotonic()
    results = await asyncio.gather(*(echo_one(ws, start + SECONDS) for ws in sockets))
    elapsed = time.monotonic() - start
    running = server.memory()
    stats = await asyncio.to_thread(metrics, server.port)
    await asyncio.gather(*(ws.close() for ws in sockets))
    total = sum(received for received, _ in results)
    errors = sum(errors for _, errors in results)
    return {"connections": ECHO, "seconds": elapsed, "messages_echoed": total,
            "messages_per_second": total / elapsed, "out_of_order_or_wrong": errors,
            "server_messages_in": stats["wskit_messages_received_total"],
            "rss_base_mib": base / 1024, "rss_running_mib": running["VmRSS"] / 1024,
            "rss_peak_mib": running["VmHWM"] / 1024,
            "kib_per_connection": (running["VmHWM"] - base) / ECHO}


def main() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < IDLE + 100:
        print(f"the hard descriptor limit ({hard}) is below {IDLE + 100}", file=sys.stderr)
        return 1
    server = ServeProcess().start()
    try:
        report = {"idle": asyncio.run(idle_phase(server)),
                  "echo": asyncio.run(echo_phase(server))}
    finally:
        server.stop()
    print(json.dumps(report, indent=2))
    echo = report["echo"]
    ok = (echo["out_of_order_or_wrong"] == 0
          and echo["server_messages_in"] >= echo["messages_echoed"])
    print("soak:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
