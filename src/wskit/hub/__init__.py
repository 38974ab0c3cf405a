"""Topics and publish: the Hub, in this process by default or across workers through Redis."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..broadcast import DEFAULT_MAX_BUFFERED, FanOut, check_slow_policy
from ..websocket import WebSocket
from .errors import HubError
from .history import (
    Format,
    HistoryPolicy,
    Subscription,
    envelope,
    parse_since,
    subscribed_message,
    unchanged,
)

if TYPE_CHECKING:
    from .presence import Presence, PresenceFormat
    from .recovery import Recovery

__all__ = ["Backplane", "Hub", "HubError", "HubStats", "Subscription", "envelope",
           "parse_since", "subscribed_message"]

logger = logging.getLogger("wskit.hub")

#: Longest topic name, in UTF-8 bytes (it becomes part of a Redis channel name).
MAX_TOPIC_BYTES = 256
#: Topics one connection may be subscribed to at once.
MAX_TOPICS_PER_CONNECTION = 1000
#: Largest message ``publish`` takes, in bytes.
MAX_MESSAGE_BYTES = 1 << 20

Message = str | bytes | bytearray | memoryview


class HubStats(dict[str, int]):
    """The hub's counters, a plain dict: ``published``, ``delivered``, ``dropped``,
    ``closed``, ``received`` (from other workers), ``reconnects``, ``failed_publishes``."""


class Backplane(Protocol):
    """What a Hub needs from the link between workers (hub/redis.py implements it).

    The hub calls ``subscribe`` when a topic gets its first local subscriber and
    ``unsubscribe`` when it loses its last; messages of other workers arrive through the
    ``deliver(topic, message)`` callback given to the backplane's constructor.
    """

    reconnects: int

    async def start(self) -> None: ...
    def subscribe(self, topic: str) -> asyncio.Future[None]: ...
    def unsubscribe(self, topic: str) -> None: ...
    async def publish(self, topic: str, message: str | bytes) -> None: ...
    async def close(self) -> None: ...


def _done_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class Hub:
    """Subscribers by topic; ``publish`` sends a message to every subscriber of a topic.

    ``Hub()`` lives in this process. ``Hub("redis://host:6379/0")`` joins every worker
    and host that uses the same Redis: a publish on any of them reaches the subscribers of
    all (a URL naming several nodes, or ``redis+cluster://``, uses Redis Cluster's sharded
    pub/sub). Each worker builds a publication's frame once and writes the same bytes to
    its local subscribers. A subscriber with more than ``max_buffered`` bytes unsent is
    slow: ``slow="drop"`` skips the message for it (counted), ``slow="close"`` closes it
    with 1013. ``redis_options`` go to the Redis backplane (reconnect delays, timeouts).

    ``history=N`` keeps the last N publications of every topic (or a mapping from topic
    patterns to N or (N, ttl) for some topics), for ``history_ttl`` seconds after the last
    one: each publication then has an offset, counted per topic, and each topic an epoch
    that changes when its history is lost; ``subscribe(ws, topic, since=(epoch, offset))``
    replays what was missed (hub/recovery.py). ``format(topic, offset, epoch, data)`` makes
    what subscribers receive of each publication, once per worker (default: the data).

    ``subscribe(ws, topic, info=...)`` makes ``ws`` a member of the topic's presence
    (``await hub.presence(topic)``, across workers); ``presence_events=True`` sends it the
    join and leave events, made by ``presence_format(topic, event, member_id, info)``
    (default: JSON). Through Redis, the members of a worker that died are gone from the
    presence within ``presence_ttl`` seconds (hub/presence.py).

    Args:
        url: None for a hub in this process; ``redis://``, ``rediss://``,
            ``redis+cluster://`` (or several nodes) to link every worker using that Redis.
        slow: ``"drop"`` or ``"close"``: what happens to a slow subscriber.
        max_buffered: Bytes unsent beyond which a subscriber is slow (None: no limit).
        compress: Compress publications for subscribers that negotiated permessage-deflate.
        max_topics_per_connection: Topics one connection may be subscribed to at once.
        max_message_bytes: Largest message ``publish`` takes.
        history: Publications kept per topic (N, or topic patterns to N or (N, ttl)).
        history_ttl: Seconds the history is kept after a topic's last publication.
        format: ``format(topic, offset, epoch, data)`` makes what subscribers receive.
        presence_ttl: Seconds after which the members of a silent worker are gone.
        presence_format: ``presence_format(topic, event, member_id, info)`` makes the
            join and leave events (default: JSON).
        **redis_options: Options of the Redis backplane (reconnect delays, timeouts).

    Raises:
        ValueError: An unknown ``slow`` policy, a bad Redis URL or history setting.
        TypeError: Redis options without a Redis URL.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        slow: str = "drop",
        max_buffered: int | None = DEFAULT_MAX_BUFFERED,
        compress: bool = False,
        max_topics_per_connection: int = MAX_TOPICS_PER_CONNECTION,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        history: int | Mapping[str, int | tuple[int, float | None]] | None = None,
        history_ttl: float | None = None,
        format: Format = unchanged,
        presence_ttl: float = 30.0,
        presence_format: PresenceFormat | None = None,
        **redis_options: Any,
    ) -> None:
        check_slow_policy(slow)
        if url is None and redis_options:
            raise TypeError(f"options for Redis without a Redis URL: {sorted(redis_options)}")
        if url is not None:
            from .redis import parse_url

            parse_url(url)  # a bad URL fails here, not at the first publish
        self.url = url
        self.slow = slow
        self.max_buffered = max_buffered
        #: Compress for subscribers that negotiated permessage-deflate: once per worker for
        #: those in the same compression state (all that received only the same messages,
        #: with or without context takeover), by each connection for the others (the
        #: PreparedFrame seam). Off by default: one uncompressed frame serves everyone.
        self.compress = compress
        self.max_topics_per_connection = max_topics_per_connection
        self.max_message_bytes = max_message_bytes
        self._redis_options = redis_options
        self._topics: dict[str, dict[WebSocket, None]] = {}
        self._by_socket: dict[WebSocket, set[str]] = {}
        # Sockets whose end already unsubscribes them (on_close hooks cannot be removed).
        self._hooked: weakref.WeakSet[WebSocket] = weakref.WeakSet()
        self._backplane: Backplane | None = None
        self._closed = False
        self._stats = {"published": 0, "delivered": 0, "dropped": 0, "closed": 0,
                       "received": 0, "failed_publishes": 0}
        self.format = format
        policy = HistoryPolicy(history, history_ttl)
        self._recovery: Recovery | None = None
        if policy:
            from .recovery import Recovery

            self._recovery = Recovery(policy, format, self._send, self._members)
        if presence_ttl <= 0:
            raise ValueError("presence_ttl is a positive number of seconds")
        self.presence_ttl = presence_ttl
        self._presence_format = presence_format
        self._presence: Presence | None = None

    def __repr__(self) -> str:
        where = "in-process" if self.url is None else self.url
        return f"<Hub {where} {len(self._topics)} topics>"

    # -- the backplane -----------------------------------------------------------------------

    def _link(self) -> Backplane | None:
        """The backplane, started on first use inside the running loop (after any fork)."""
        if self.url is None:
            return None
        if self._backplane is None:
            if self._closed:
                raise HubError("the hub is closed")
            from .redis import RedisBackplane

            recovery = self._recovery
            self._backplane = RedisBackplane(
                self.url, self._deliver_remote,
                deliver_positioned=recovery.deliver if recovery is not None else None,
                deliver_presence=self._presence_received,
                on_subscribed=recovery.resubscribed if recovery is not None else None,
                **self._redis_options)
            if recovery is not None:
                recovery.use_redis(self._backplane)
            if self._presence is not None:
                self._presence.use_redis(self._backplane)
        return self._backplane

    async def start(self) -> Hub:
        """Connect the backplane now rather than at the first subscribe or publish.

        Returns:
            The hub itself.

        Raises:
            HubError: Redis cannot be reached.
        """
        link = self._link()
        if link is not None:
            await link.start()
        return self

    async def close(self) -> None:
        """Leave the backplane; local subscribers stay subscribed, but nothing crosses."""
        self._closed = True
        link, self._backplane = self._backplane, None
        if self._recovery is not None:
            await self._recovery.close()
        if self._presence is not None:
            await self._presence.close()
        if link is not None:
            await link.close()

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, ws: WebSocket, topic: str, *,
                  since: tuple[str, int] | None = None, info: Any = None,
                  presence_events: bool = False) -> Awaitable[Subscription]:
        """Subscribe ``ws`` to ``topic`` until ``unsubscribe`` or the end of the connection.

        Returns an awaitable that is done once messages published elsewhere on the topic
        reach this worker (at once without Redis); a plain handler may ignore it. It gives
        a Subscription: on a topic with history, the topic's epoch and offset, and with
        ``since=(epoch, offset)`` (the last publication the peer had), whether every later
        publication was replayed to ``ws`` before the live ones (``recovered``). With
        ``info`` (JSON, e.g. a name) it is a member of the topic's presence; with
        ``presence_events`` it receives the topic's join and leave events.

        Args:
            ws: The connection to subscribe.
            topic: The topic (at most 256 bytes in UTF-8).
            since: ``(epoch, offset)`` of the last publication the peer had, to replay
                what came after it (topics with history).
            info: The member's information for the presence (JSON, up to 4 KiB).
            presence_events: Send ``ws`` the topic's join and leave events.

        Returns:
            An awaitable of the ``Subscription``.

        Raises:
            HubError: A closed connection, too many topics for it, or an invalid topic.
            ValueError: ``info`` that is not JSON or too large.
        """
        _check_topic(topic)
        if info is not None:
            from .presence import encode_info

            encode_info(info)  # not JSON or too big: fails here, before anything changes
        if ws.is_closed:
            raise HubError("cannot subscribe a closed connection")
        topics = self._by_socket.get(ws)
        if topics is None:
            topics = self._by_socket[ws] = set()
            if ws not in self._hooked:
                self._hooked.add(ws)
                ws.on_close(self._forget)
        if topic in topics:
            return self._subscribed(ws, topic, None, self._ready(topic))
        if len(topics) >= self.max_topics_per_connection:
            raise HubError(f"a connection may subscribe to {self.max_topics_per_connection} "
                           "topics at most")
        topics.add(topic)
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = {}
            members[ws] = None
            link = self._link()
            ready = link.subscribe(topic) if link is not None else _done_future()
            subscribed = self._subscribed(ws, topic, since, ready, new=True)
        else:
            members[ws] = None
            subscribed = self._subscribed(ws, topic, since, self._ready(topic), new=True)
        if info is None and not presence_events:
            return subscribed
        return asyncio.ensure_future(self._join(ws, topic, info, presence_events, subscribed))

    async def _join(self, ws: WebSocket, topic: str, info: Any, events: bool,
                    subscribed: Awaitable[Subscription]) -> Subscription:
        subscription = await subscribed
        if topic in self._by_socket.get(ws, ()):
            await self._presence_of().join(ws, topic, info, events)
        return subscription

    def _presence_of(self) -> Presence:
        if self._presence is None:
            from .presence import Presence, presence_json

            self._presence = Presence(self._send, self._presence_format or presence_json,
                                      self.presence_ttl)
            link = self._backplane
            if link is None:
                self._link()  # a Redis hub makes its backplane, which takes the presence
            else:
                from .redis import RedisBackplane

                if isinstance(link, RedisBackplane):
                    self._presence.use_redis(link)
        return self._presence

    def _presence_received(self, topic: str, body: bytes) -> None:
        if self._presence is not None:
            self._presence.received(topic, body)

    async def presence(self, topic: str) -> dict[str, Any]:
        """Member id -> info of every subscriber of ``topic`` that gave ``info``, on every
        worker (through Redis: those whose worker's heartbeat is within presence_ttl).

        Args:
            topic: The topic.

        Returns:
            A dict from member id to the member's ``info``.

        Raises:
            HubError: An invalid topic, or Redis cannot be reached.
        """
        _check_topic(topic)
        return await self._presence_of().members(topic)

    def _ready(self, topic: str) -> asyncio.Future[None]:
        link = self._backplane
        return link.subscribe(topic) if link is not None else _done_future()

    def _subscribed(self, ws: WebSocket, topic: str, since: tuple[str, int] | None,
                    ready: asyncio.Future[None], new: bool = False,
                    ) -> asyncio.Future[Subscription]:
        recovery = self._recovery
        if new and recovery is not None and recovery.keeps(topic):
            return recovery.subscribe(ws, topic, since, ready)
        return asyncio.ensure_future(_after(ready, Subscription(topic)))

    def unsubscribe(self, ws: WebSocket, topic: str) -> bool:
        """Remove ``ws`` from ``topic``.

        Args:
            ws: The connection.
            topic: The topic to leave.

        Returns:
            False if it was not subscribed.
        """
        topics = self._by_socket.get(ws)
        if topics is None or topic not in topics:
            return False
        topics.discard(topic)
        if not topics:
            del self._by_socket[ws]
        self._leave(ws, topic)
        return True

    def unsubscribe_all(self, ws: WebSocket) -> list[str]:
        """Remove ``ws`` from every topic.

        Args:
            ws: The connection.

        Returns:
            The topics it left, sorted.
        """
        topics = self._by_socket.pop(ws, set())
        for topic in topics:
            self._leave(ws, topic)
        return sorted(topics)

    def _leave(self, ws: WebSocket, topic: str) -> None:
        members = self._topics[topic]
        del members[ws]
        if self._recovery is not None:
            self._recovery.left(ws, topic, not members)
        if self._presence is not None:
            self._presence.leave(ws, topic)
        if not members:
            del self._topics[topic]
            link = self._backplane
            if link is not None:
                link.unsubscribe(topic)

    def _forget(self, ws: WebSocket) -> None:
        self.unsubscribe_all(ws)

    def subscribers(self, topic: str) -> list[WebSocket]:
        """This worker's subscribers of ``topic``.

        Args:
            topic: The topic.

        Returns:
            The connections, in subscription order.
        """
        return list(self._topics.get(topic, ()))

    def topics(self) -> list[str]:
        """The topics with a subscriber in this worker.

        Returns:
            The topic names.
        """
        return list(self._topics)

    def topics_of(self, ws: WebSocket) -> list[str]:
        """The topics ``ws`` is subscribed to.

        Args:
            ws: The connection.

        Returns:
            The topic names, sorted.
        """
        return sorted(self._by_socket.get(ws, ()))

    def stats(self) -> HubStats:
        """The counters since the hub was made (see HubStats).

        Returns:
            ``published``, ``delivered``, ``dropped``, ``closed``, ``received``,
            ``reconnects``, ``failed_publishes``, ``topics``, ``subscriptions``...
        """
        stats = HubStats(self._stats)
        link = self._backplane
        stats["reconnects"] = link.reconnects if link is not None else 0
        stats["topics"] = len(self._topics)
        stats["subscriptions"] = sum(len(members) for members in self._topics.values())
        return stats

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, message: Message) -> int:
        """Send ``message`` (str: text, bytes-like: binary) to every subscriber of ``topic``.

        The local subscribers get it at once; with Redis, so do the other workers' after one
        round trip.

        Args:
            topic: The topic.
            message: ``str`` for text, bytes-like for binary.

        Returns:
            The number of local deliveries.

        Raises:
            HubError: The message could not be handed to Redis (the local subscribers still
                got it, unless the topic keeps history), or it is over ``max_message_bytes``,
                so that a failed publish is never silent.
            TypeError: ``message`` is of another type.
        """
        _check_topic(topic)
        if not isinstance(message, str):
            if not isinstance(message, (bytes, bytearray, memoryview)):
                raise TypeError(f"publish() takes str or bytes-like, not "
                                f"{type(message).__name__}")
            message = bytes(message)
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > self.max_message_bytes:
            raise HubError(f"message of {size} bytes is over the hub's limit of "
                           f"{self.max_message_bytes}")
        self._stats["published"] += 1
        recovery = self._recovery
        rule = recovery.keeps(topic) if recovery is not None else None
        if recovery is not None and rule is not None:
            # The position comes first (from Redis, so every worker agrees), then delivery.
            try:
                await recovery.publish(topic, message, rule)
            except HubError:
                self._stats["failed_publishes"] += 1
                raise
            return len(self._topics.get(topic, ()))
        sent = self._fan_out(topic, message)
        link = self._link()
        if link is not None:
            try:
                await link.publish(topic, message)
            except HubError:
                self._stats["failed_publishes"] += 1
                raise
        return sent

    def _deliver_remote(self, topic: str, message: str | bytes) -> None:
        """A message another worker published (called by the backplane)."""
        self._stats["received"] += 1
        self._fan_out(topic, message)

    def _fan_out(self, topic: str, message: str | bytes) -> int:
        members = self._topics.get(topic)
        if not members:
            return 0
        if self.format is not unchanged:
            message = self.format(topic, None, None, message)
        return self._send(message, list(members))

    def _members(self, topic: str) -> Collection[WebSocket]:
        return self._topics.get(topic, {}).keys()

    def _send(self, message: str | bytes, members: Collection[WebSocket]) -> int:
        """Write ``message`` to ``members``: one frame for all, the slow policy, counted."""
        fan = FanOut(message, compress=self.compress, max_buffered=self.max_buffered,
                     slow=self.slow)
        fan.send_to(list(members))
        stats = self._stats
        stats["delivered"] += fan.sent
        stats["dropped"] += fan.dropped
        stats["closed"] += fan.closed
        return fan.sent


async def _after(ready: Awaitable[None], subscription: Subscription) -> Subscription:
    await ready
    return subscription


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a str, not {type(topic).__name__}")
    if not topic:
        raise ValueError("a topic cannot be empty")
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise ValueError(f"a topic is at most {MAX_TOPIC_BYTES} bytes long")
