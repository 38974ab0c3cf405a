"""Presence for the Hub: who is subscribed to a topic on every worker, with the information the
app attached, join and leave events; in memory, or in Redis with per-worker heartbeats."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..websocket import WebSocket
from .errors import HubError

if TYPE_CHECKING:
    from .redis import RedisBackplane
    from .redis_presence import RedisPresence

__all__ = ["DEFAULT_PRESENCE_TTL", "MAX_INFO_BYTES", "Presence", "PresenceFormat",
           "encode_info", "presence_json"]

logger = logging.getLogger("wskit.hub")

#: Seconds within which the members of a worker that died leave the presence of its topics.
DEFAULT_PRESENCE_TTL = 30.0
#: Largest information one member may carry, as JSON.
MAX_INFO_BYTES = 4096
#: Seconds ``close()`` waits for the leaves still being written to Redis.
CLOSE_WAIT = 1.0

#: ``presence_format(topic, event, member_id, info)``: what a subscriber that asked for
#: presence events receives when ``member_id`` joins or leaves (``event``: "join"/"leave").
PresenceFormat = Callable[[str, str, str, Any], "str | bytes"]

#: ``send(data, sockets) -> count``: the hub's fan-out.
Send = Callable[[str | bytes, Collection[WebSocket]], int]


def presence_json(topic: str, event: str, member_id: str, info: Any) -> str:
    """The default presence event: ``{"presence": "join", "topic", "id", "info"}``."""
    return json.dumps({"presence": event, "topic": topic, "id": member_id, "info": info},
                      ensure_ascii=False)


def encode_info(info: Any) -> str:
    """``info`` as compact JSON; TypeError if it is not JSON, HubError if it is too big."""
    encoded = json.dumps(info, ensure_ascii=False, separators=(",", ":"))
    if len(encoded.encode()) > MAX_INFO_BYTES:
        raise HubError(f"presence info is over {MAX_INFO_BYTES} bytes of JSON")
    return encoded


class Presence:
    """The members of each topic and who wants their join and leave events.

    Each member gets an id, ``<worker>.<n>``. Through Redis, every worker keeps its own
    members' entries alive with a heartbeat every third of ``ttl``; a worker that stops
    (killed, frozen, cut off) has its members dropped from ``members()`` once ``ttl`` has
    passed, and a live worker sends their leave events at its next heartbeat.
    """

    def __init__(self, send: Send, format: PresenceFormat = presence_json,
                 ttl: float = DEFAULT_PRESENCE_TTL) -> None:
        if ttl <= 0:
            raise ValueError("presence_ttl is a positive number of seconds")
        self.send = send
        self.format = format
        self.ttl = ttl
        self.worker = secrets.token_hex(8)
        self._count = itertools.count(1)
        #: This worker's members: topic -> ws -> (member id, info).
        self.local: dict[str, dict[WebSocket, tuple[str, Any]]] = {}
        #: Subscribers of each topic that asked for events.
        self.listeners: dict[str, dict[WebSocket, None]] = {}
        self.redis: RedisPresence | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def use_redis(self, backplane: RedisBackplane) -> None:
        from .redis_presence import RedisPresence

        self.worker = backplane.origin.hex()
        self.redis = RedisPresence(backplane, self.worker, self.ttl, self.snapshot,
                                   self._expired)

    # -- joining and leaving -----------------------------------------------------------------

    async def join(self, ws: WebSocket, topic: str, info: Any, events: bool) -> str | None:
        """Make ``ws`` a member of ``topic`` (if ``info`` is not None) and a listener of its
        events (if ``events``); its member id. HubError if Redis could not record it."""
        if events:
            self.listeners.setdefault(topic, {})[ws] = None
        if info is None:
            return None
        encoded = encode_info(info)
        member_id = f"{self.worker}.{next(self._count)}"
        self.local.setdefault(topic, {})[ws] = (member_id, info)
        if self.redis is not None:
            try:
                await self.redis.join(topic, member_id, encoded)
            except HubError:
                self._drop(topic, ws)
                raise
        if self.local.get(topic, {}).get(ws, (None,))[0] != member_id:
            # It left while Redis was recording it: remove it there too.
            if self.redis is not None:
                self._spawn(self.redis.leave(topic, member_id))
            return member_id
        self.event(topic, "join", member_id, info)
        return member_id

    def leave(self, ws: WebSocket, topic: str) -> None:
        """``ws`` left ``topic``: it is no member any more, and hears no more events."""
        listeners = self.listeners.get(topic)
        if listeners is not None:
            listeners.pop(ws, None)
            if not listeners:
                del self.listeners[topic]
        member = self._drop(topic, ws)
        if member is None:
            return
        member_id, info = member
        if self.redis is not None:
            self._spawn(self.redis.leave(topic, member_id))
        self.event(topic, "leave", member_id, info)

    def _drop(self, topic: str, ws: WebSocket) -> tuple[str, Any] | None:
        members = self.local.get(topic)
        if members is None or ws not in members:
            return None
        member = members.pop(ws)
        if not members:
            del self.local[topic]
        return member

    # -- reading -----------------------------------------------------------------------------

    async def members(self, topic: str) -> dict[str, Any]:
        """Member id -> info of everyone subscribed to ``topic`` with info, on every worker."""
        if self.redis is None:
            return {member_id: info for member_id, info in self.local.get(topic, {}).values()}
        return await self.redis.members(topic)

    # -- events ------------------------------------------------------------------------------

    def event(self, topic: str, event: str, member_id: str, info: Any,
              remote: bool = True) -> None:
        """Tell this worker's listeners of ``topic``; and the other workers', through Redis."""
        listeners = self.listeners.get(topic)
        if listeners:
            self.send(self.format(topic, event, member_id, info), list(listeners))
        if remote and self.redis is not None:
            self._spawn(self.redis.announce(topic, event, member_id, info))

    def received(self, topic: str, body: bytes) -> None:
        """An event announced by another worker (called by the backplane)."""
        try:
            event, member_id, info = json.loads(body)
        except (ValueError, TypeError):
            logger.warning("hub: ignoring a malformed presence event on %r", topic)
            return
        self.event(topic, str(event), str(member_id), info, remote=False)

    def _expired(self, topic: str, members: dict[str, Any]) -> None:
        """Members of a dead worker, removed by this worker's heartbeat: they left."""
        for member_id, info in members.items():
            self.event(topic, "leave", member_id, info)

    def _spawn(self, job: Any) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("hub: presence not updated in Redis: %s", task.exception())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """This worker's members of each topic: member id -> info."""
        return {topic: dict(members.values()) for topic, members in self.local.items()}

    async def close(self) -> None:
        # Leaves still on their way to Redis (connections closed by a graceful shutdown)
        # get a moment to land, so that the members go now rather than after the ttl.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_WAIT)
        redis, self.redis = self.redis, None
        if redis is not None:
            await redis.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
