"""Resuming hub topics from a client: the last position seen of each topic, sent again in the
URL of each new connection (``since=<topic>:<epoch>:<offset>``) so the server replays the rest."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from .client import connect
from .reconnect import RetryPolicy
from .websocket import WebSocket

__all__ = ["Positions", "resuming"]

logger = logging.getLogger("wskit.client")

#: Topics a Positions remembers; past it, the least recently seen is forgotten.
MAX_TOPICS = 1000


class Positions:
    """The last (epoch, offset) a client saw of each topic.

    ``observe(message)`` reads the JSON envelopes of ``wskit.hub.envelope`` and
    ``subscribed_message`` (any JSON object with ``topic``, ``epoch`` and an integer
    ``offset``): it records the position and returns False for a publication the client
    already had (a duplicate, which a correct server never sends, so that a consumer may
    drop it safely), True otherwise (other messages included). ``url(base)`` adds the
    positions to a URL for the next connection.
    """

    def __init__(self, *, max_topics: int = MAX_TOPICS) -> None:
        self.max_topics = max_topics
        self._seen: dict[str, tuple[str, int]] = {}

    def __repr__(self) -> str:
        return f"<Positions {self._seen!r}>"

    def observe(self, message: str | bytes | memoryview | Any) -> bool:
        if not isinstance(message, str):
            return True
        if not message.startswith("{"):
            return True
        try:
            event = json.loads(message)
        except ValueError:
            return True
        if not isinstance(event, dict):
            return True
        topic, epoch, offset = event.get("topic"), event.get("epoch"), event.get("offset")
        if not isinstance(topic, str) or not isinstance(epoch, str) or type(offset) is not int:
            return True
        known = self._seen.get(topic)
        if (event.get("type") == "publication" and known is not None and known[0] == epoch
                and offset <= known[1]):
            return False
        self.record(topic, epoch, offset)
        return True

    def record(self, topic: str, epoch: str, offset: int) -> None:
        """Remember that the client has ``topic`` up to ``offset`` of ``epoch``."""
        self._seen.pop(topic, None)
        self._seen[topic] = (epoch, offset)
        while len(self._seen) > self.max_topics:
            del self._seen[next(iter(self._seen))]

    def since(self, topic: str) -> tuple[str, int] | None:
        """(epoch, offset) last seen of ``topic``, or None."""
        return self._seen.get(topic)

    def forget(self, topic: str) -> None:
        self._seen.pop(topic, None)

    def query(self) -> str:
        """``since=<topic>:<epoch>:<offset>&...`` for every topic seen."""
        return "&".join(f"since={quote(f'{topic}:{epoch}:{offset}', safe=':')}"
                        for topic, (epoch, offset) in self._seen.items())

    def url(self, base: str) -> str:
        """``base`` with the positions added to its query."""
        query = self.query()
        if not query:
            return base
        return base + ("&" if "?" in base else "?") + query


async def resuming(url: str, positions: Positions, *, backoff_initial: float = 1.0,
                   backoff_factor: float = 2.0, backoff_max: float = 60.0,
                   retry_going_away: bool = False,
                   **options: Any) -> AsyncIterator[WebSocket]:
    """``async for ws in resuming(url, positions):`` like ``async for ws in connect(url)``
    (the same retry rules and backoff with full jitter), but each connection's URL carries
    the positions seen so far, so the server resumes every topic where the client left it.
    ``options`` go to ``connect``."""
    policy = RetryPolicy(initial=backoff_initial, factor=backoff_factor, maximum=backoff_max,
                         retry_going_away=retry_going_away)
    attempt = 0
    while True:
        try:
            ws = await connect(positions.url(url), **options)
        except Exception as exc:
            if not policy.opening_is_retried(exc):
                raise
            delay = policy.delay(attempt, exc)
            attempt += 1
            logger.warning("%s: attempt %d failed: %s; retrying in %.2f s", url, attempt, exc,
                           delay)
            await asyncio.sleep(delay)
            continue
        attempt = 0
        try:
            yield ws
            await ws.wait_closed()
        finally:
            if not ws.is_closed:
                await ws.close()
        if not policy.end_is_retried(ws):
            return
        delay = policy.delay(0)
        logger.warning("%s: connection ended (%s); resuming in %.2f s", url, ws.close_code,
                       delay)
        await asyncio.sleep(delay)
