"""A hub app for the worker tests: ``python pubsub_app.py PORT REDIS_URL WORKERS``.

``/t/{topic}`` tells the client its worker's pid, subscribes it to the topic, and publishes
every message it sends there (text as text, binary as binary) for every subscriber on every
worker, the sender included.
"""

from __future__ import annotations

import logging
import os
import sys

import wskit

app = wskit.App(compression=None, ping_interval=None)
hub = wskit.Hub(sys.argv[2])


@app.websocket("t/{topic}")
async def member(req: wskit.Request, ws: wskit.WebSocket) -> None:
    topic = req.params["topic"]
    await hub.subscribe(ws, topic)
    ws.send(f"pid {os.getpid()}")

    async def forward(ws: wskit.WebSocket, message: str | bytes) -> None:
        await hub.publish(topic, message)

    ws.on_text(forward)
    ws.on_binary(forward)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s [%(process)d] %(name)s: %(message)s")
    app.run("127.0.0.1", int(sys.argv[1]), workers=int(sys.argv[3]))
