"""Drives an Autobahn|Testsuite fuzzing server with wskit's client: every case, then the report."""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import quote

from .client import Connect, connect
from .core.errors import WSKitError
from .websocket import WebSocket

__all__ = ["run_fuzzing_client"]

logger = logging.getLogger("wskit")

#: Autobahn's section 9 sends messages of up to 16 MiB.
CASE_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def _echo(ws: WebSocket, message: object) -> None:
    # Messages that came with the peer's Close are still answered (RFC 6455 §5.5.1); after
    # our own Close there is nothing to answer, and that is no error of the echo.
    with contextlib.suppress(WSKitError):
        ws.send(message)  # type: ignore[arg-type]


async def run_fuzzing_client(
    base_url: str = "ws://127.0.0.1:9001",
    agent: str = "wskit",
    *,
    compression: bool = True,
    max_message_size: int = CASE_MAX_MESSAGE_SIZE,
) -> int:
    """Run every case of the fuzzing server at ``base_url`` as an echo client; returns the
    number of cases run. The server writes its report when ``updateReports`` is called."""
    base_url = base_url.rstrip("/")

    def open_case(url: str) -> Connect:
        return connect(url, compression="deflate" if compression else None, ping_interval=None,
                       max_message_size=max_message_size)

    async with open_case(f"{base_url}/getCaseCount") as ws:
        count = int(await ws.receive())
    logger.info("%d cases to run", count)
    for case in range(1, count + 1):
        url = f"{base_url}/runCase?case={case}&agent={quote(agent)}"
        try:
            ws = await open_case(url)
        except (OSError, WSKitError) as exc:
            logger.warning("case %d: could not connect: %s", case, exc)
            continue
        ws.on_text(_echo)
        ws.on_binary(_echo)
        await ws.wait_closed()
        logger.info("case %d/%d done (close code %s)", case, count, ws.close_code)
    ws = await open_case(f"{base_url}/updateReports?agent={quote(agent)}")
    await ws.wait_closed()
    return count
