"""Resuming hub topics from a client: the last position seen of each topic, sent again in the
URL of each new connection (``connect(url, resume=positions)``) so the server replays the rest."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

__all__ = ["Positions"]

#: Topics a Positions remembers; past it, the least recently seen is forgotten.
MAX_TOPICS = 1000


class Positions:
    """The last (epoch, offset) a client saw of each topic.

    ``observe(message)`` reads the JSON envelopes of ``wskit.hub.envelope`` and
    ``subscribed_message`` (any JSON object with ``topic``, ``epoch`` and an integer
    ``offset``): it records the position and returns False for a publication the client
    already had (a duplicate, which a correct server never sends, so that a consumer may
    drop it safely), True otherwise (other messages included). ``url(base)`` adds the
    positions to a URL for the next connection: ``connect(url, resume=positions)`` calls it
    at each opening, so ``async for ws in connect(url, resume=positions)`` resumes.

    Args:
        max_topics: Topics remembered at most (the oldest is forgotten first).
    """

    def __init__(self, *, max_topics: int = MAX_TOPICS) -> None:
        self.max_topics = max_topics
        self._seen: dict[str, tuple[str, int]] = {}

    def __repr__(self) -> str:
        return f"<Positions {self._seen!r}>"

    def observe(self, message: str | bytes | memoryview | Any) -> bool:
        """Record the position a received message carries, if any.

        Args:
            message: A message as received (only JSON objects with ``topic``, ``epoch``
                and an integer ``offset`` count).

        Returns:
            False for a publication the client already had, True otherwise.
        """
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
        """Remember that the client has ``topic`` up to ``offset`` of ``epoch``.

        Args:
            topic: The topic.
            epoch: The topic's epoch.
            offset: The offset of the last publication the client has.
        """
        self._seen.pop(topic, None)
        self._seen[topic] = (epoch, offset)
        while len(self._seen) > self.max_topics:
            del self._seen[next(iter(self._seen))]

    def since(self, topic: str) -> tuple[str, int] | None:
        """The position last seen of ``topic``.

        Args:
            topic: The topic.

        Returns:
            ``(epoch, offset)``, or None when the topic was never seen.
        """
        return self._seen.get(topic)

    def forget(self, topic: str) -> None:
        """Forget the position of ``topic`` (the next connection starts it afresh).

        Args:
            topic: The topic.
        """
        self._seen.pop(topic, None)

    def query(self) -> str:
        """The positions as a query string.

        Returns:
            ``since=<topic>:<epoch>:<offset>&...`` for every topic seen ("" for none).
        """
        return "&".join(f"since={quote(f'{topic}:{epoch}:{offset}', safe=':')}"
                        for topic, (epoch, offset) in self._seen.items())

    def url(self, base: str) -> str:
        """``base`` with the positions added to its query.

        Args:
            base: The URL to connect to.

        Returns:
            The URL with ``since=`` parameters for every topic seen.
        """
        query = self.query()
        if not query:
            return base
        return base + ("&" if "?" in base else "?") + query
