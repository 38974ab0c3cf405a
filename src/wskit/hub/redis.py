"""The Hub's Redis backplane: pub/sub (sharded on Redis Cluster), one channel per topic in use."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import HubError

try:
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.crc import key_slot
    from redis.exceptions import MovedError, RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("Hub('redis://...') needs the redis package: "
                      "pip install 'wskit[redis]'") from exc

__all__ = ["RedisBackplane", "RedisTarget", "decode", "decode_positioned", "encode",
           "parse_url"]

logger = logging.getLogger("wskit.hub")

#: Wire format between workers: one byte (format version << 4 | kind), the 8-byte id of
#: the publishing worker, then the message as is (UTF-8 text or binary): 9 bytes of overhead.
VERSION = 1
TEXT, BINARY = 1, 2
#: A publication of a topic with history (hub/redis_history.py writes them) carries its
#: position after the origin: ``b"<offset> <epoch> "`` in ASCII, then the message.
TEXT_AT, BINARY_AT = 3, 4
#: A presence event (hub/redis_presence.py): JSON after the origin.
PRESENCE = 5
HEADER = 9
ORIGIN_BYTES = 8

Deliver = Callable[[str, "str | bytes"], None]
#: ``deliver_positioned(topic, message, epoch, offset)``
DeliverPositioned = Callable[[str, "str | bytes", str, int], None]
#: ``deliver_presence(topic, body)``
DeliverPresence = Callable[[str, bytes], None]


def encode(origin: bytes, message: str | bytes) -> bytes:
    """One publication as it crosses Redis."""
    if isinstance(message, str):
        return bytes((VERSION << 4 | TEXT,)) + origin + message.encode()
    return bytes((VERSION << 4 | BINARY,)) + origin + message


def decode_positioned(data: bytes) -> tuple[str | bytes, str, int]:
    """(message, epoch, offset) of a publication with a position; ValueError if malformed."""
    if len(data) < HEADER or data[0] >> 4 != VERSION or data[0] & 0x0F not in (TEXT_AT,
                                                                               BINARY_AT):
        raise ValueError("not a wskit hub publication with a position")
    offset, _, rest = data[HEADER:].partition(b" ")
    epoch, space, body = rest.partition(b" ")
    if not space or not offset.isdigit():
        raise ValueError("not a wskit hub publication with a position")
    message = body.decode() if data[0] & 0x0F == TEXT_AT else body
    return message, epoch.decode("ascii"), int(offset)


def decode(data: bytes) -> tuple[bytes, str | bytes]:
    """(origin, message) of a publication; ValueError if it is not in this format."""
    if len(data) < HEADER or data[0] >> 4 != VERSION or data[0] & 0x0F not in (TEXT, BINARY):
        raise ValueError("not a wskit hub publication")
    origin = data[1:HEADER]
    if data[0] & 0x0F == TEXT:
        return origin, data[HEADER:].decode()
    return origin, data[HEADER:]


@dataclass
class RedisTarget:
    """Where Redis is: one server, or the seed nodes of a cluster."""

    nodes: list[tuple[str, int]]
    cluster: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"username": self.username, "password": self.password}
        if not self.cluster:
            kwargs["db"] = self.db
        return kwargs


def parse_url(url: str) -> RedisTarget:
    """``redis://[user:pass@]host[:port][/db]``; several ``host:port`` separated by commas, or
    the ``redis+cluster://`` scheme, mean Redis Cluster; ``rediss`` uses TLS."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ValueError(f"not a Redis URL: {url!r}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) or None
    nodes = []
    for item in hosts.split(","):
        host, port = item, 6379
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 6379
        elif item.count(":") == 1:
            host, _, number = item.partition(":")
            port = int(number)
        if not host:
            raise ValueError(f"a Redis URL needs a host: {url!r}")
        nodes.append((host, port))
    path = parts.path.strip("/")
    cluster = scheme.endswith("+cluster") or len(nodes) > 1
    if cluster and path not in ("", "0"):
        raise ValueError("Redis Cluster has only database 0")
    return RedisTarget(nodes=nodes, cluster=cluster, db=int(path or 0), username=username,
                       password=password, tls=scheme.startswith("rediss"))


class _Link:
    """One subscriber connection to one Redis node and the channels it carries.

    It reconnects with exponential backoff and jitter, and re-subscribes every channel in
    use on each new connection; a loss and a recovery are each logged once.
    """

    def __init__(self, owner: RedisBackplane, host: str, port: int) -> None:
        self.owner = owner
        self.host, self.port = host, port
        self.channels: set[bytes] = set()
        self.confirmed: set[bytes] = set()
        # SUBSCRIBE commands sent but not yet acknowledged, per channel: a channel left and
        # taken again must not count as ready on the first command's acknowledgement.
        self.pending: dict[bytes, int] = {}
        self.waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self.conn: Any = None
        self.task: asyncio.Task[None] | None = None
        self.outbox: deque[tuple[str, bytes]] = deque()
        self.wake = asyncio.Event()
        self.last_read = 0.0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def ready(self, channel: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if channel in self.confirmed:
            future.set_result(None)
        else:
            self.waiters.setdefault(channel, []).append(future)
        return future

    def add(self, channel: bytes) -> asyncio.Future[None]:
        self.channels.add(channel)
        future = self.ready(channel)
        self._command(self.owner.subscribe_command, channel)
        self.start()
        return future

    def remove(self, channel: bytes) -> None:
        self.channels.discard(channel)
        self.confirmed.discard(channel)
        # Nothing to wait for any more: done, not cancelled (a cancellation would reach the
        # caller who awaits subscribe() as if its own task were cancelled).
        for waiter in self.waiters.pop(channel, ()):
            _resolve(waiter)
        self._command(self.owner.unsubscribe_command, channel)

    def _command(self, command: str, channel: bytes) -> None:
        """Queue a (un)subscribe for the open connection; without one, ``_run`` sends them all."""
        if self.conn is None:
            return
        if command == self.owner.subscribe_command:
            self.pending[channel] = self.pending.get(channel, 0) + 1
        self.outbox.append((command, channel))
        self.wake.set()

    async def _watch(self, conn: Any) -> None:
        """PING the connection when it is quiet; drop it when nothing came back for two
        intervals, so a Redis that hangs (or a path that dropped silently) is noticed."""
        interval = self.owner.health_interval or 15.0
        self.last_read = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            quiet = time.monotonic() - self.last_read
            if quiet > 2 * interval:
                logger.warning("hub: Redis %s did not answer for %.1f s", self.name, quiet)
                await conn.disconnect(nowait=True)
                return
            if quiet >= interval:
                await conn.send_command("PING")

    async def _send_commands(self, conn: Any) -> None:
        """Send queued (un)subscribe commands in order on ``conn`` (the reader keeps reading)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                command, channel = self.outbox.popleft()
                await conn.send_command(command, channel)

    async def _run(self) -> None:
        owner = self.owner
        attempt = 0
        lost_at: float | None = None
        while not owner.closing:
            conn = owner.new_connection(self.host, self.port)
            sender: asyncio.Task[None] | None = None
            watchdog: asyncio.Task[None] | None = None
            try:
                await conn.connect()
                self.conn = conn
                self.pending.clear()
                self.outbox.clear()
                channels = sorted(self.channels)
                for channel in channels:
                    self.pending[channel] = 1
                if channels:
                    await conn.send_command(owner.subscribe_command, *channels)
                sender = asyncio.get_running_loop().create_task(self._send_commands(conn))
                if owner.health_interval:
                    watchdog = asyncio.get_running_loop().create_task(self._watch(conn))
                if lost_at is not None:
                    owner.reconnects += 1
                    logger.warning("hub: Redis %s is back after %.1f s; re-subscribing %d "
                                   "topics", self.name, time.monotonic() - lost_at,
                                   len(channels))
                    lost_at = None
                attempt = 0
                while True:
                    try:
                        reply = await conn.read_response(disable_decoding=True)
                    except MovedError as moved:  # an SSUBSCRIBE sent to the wrong shard
                        owner.move_slot(moved.slot_id, (moved.host, int(moved.port)), self)
                        continue
                    self.last_read = time.monotonic()
                    self._handle(reply)
            except (RedisError, OSError) as exc:
                if owner.closing:
                    break
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.warning("hub: lost Redis %s (%s); local delivery goes on, "
                                   "reconnecting", self.name, exc or type(exc).__name__)
            finally:
                self.conn = None
                self.confirmed.clear()
                for helper in (sender, watchdog):
                    if helper is not None:
                        helper.cancel()
                await _disconnect(conn)
            delay = min(owner.max_reconnect_delay, owner.reconnect_delay * 2 ** attempt)
            attempt += 1
            # Jitter: workers that lost Redis together do not all come back at once.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind = reply[0]
        if kind in (b"message", b"smessage"):
            self.owner.received(reply[1], reply[2])
        elif kind == b"sunsubscribe" and reply[1] in self.channels:
            # Not asked for: Redis Cluster moved the channel's slot to another shard and
            # unsubscribed it here. Ask again: the answer, MOVED, names the new shard.
            self.confirmed.discard(reply[1])
            self._command(self.owner.subscribe_command, reply[1])
        elif kind in (b"subscribe", b"ssubscribe"):
            channel = reply[1]
            left = self.pending.get(channel, 0) - 1
            if left > 0:
                self.pending[channel] = left
                return
            self.pending.pop(channel, None)
            if channel in self.channels:
                self.confirmed.add(channel)
                for waiter in self.waiters.pop(channel, ()):
                    if not waiter.done():
                        waiter.set_result(None)
                self.owner.confirmed(channel)

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for waiters in self.waiters.values():
            for waiter in waiters:
                _resolve(waiter)
        self.waiters.clear()


async def _disconnect(conn: Any) -> None:
    try:
        await conn.disconnect()
    except Exception:  # pragma: no cover - a connection that is already broken
        logger.debug("hub: error while disconnecting from Redis", exc_info=True)


class RedisBackplane:
    """Links a Hub to Redis: a channel per topic in use, a publisher that keeps publish order.

    Publishes are written in order on one connection, pipelined when several are waiting
    (one round trip per batch, never one per subscriber). A worker is subscribed to a
    topic's channel only while it has a local subscriber (the Hub counts them).
    """

    def __init__(
        self,
        url: str,
        deliver: Deliver,
        *,
        prefix: str = "wskit:",
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 5.0,
        connect_timeout: float = 2.0,
        command_timeout: float = 5.0,
        max_pending: int = 10_000,
        max_batch: int = 256,
        health_interval: float | None = 15.0,
        deliver_positioned: DeliverPositioned | None = None,
        deliver_presence: DeliverPresence | None = None,
        on_subscribed: Callable[[str], None] | None = None,
    ) -> None:
        self.target = parse_url(url)
        self.url = url
        self.deliver = deliver
        self.deliver_positioned = deliver_positioned
        self.deliver_presence = deliver_presence
        #: Called with the topic each time Redis confirms a channel (after a reconnect too),
        #: so that history can read back what the channel missed while it was down.
        self.on_subscribed = on_subscribed
        self.prefix = prefix.encode()
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_pending = max_pending
        self.max_batch = max_batch
        #: A quiet subscriber connection is PINGed after this many seconds, and dropped (then
        #: reconnected) when nothing came back for twice as long; None: rely on TCP alone.
        self.health_interval = health_interval
        #: This worker's id in every publication, so that its own come back to nobody.
        self.origin = os.urandom(ORIGIN_BYTES)
        cluster = self.target.cluster
        self.subscribe_command = "SSUBSCRIBE" if cluster else "SUBSCRIBE"
        self.unsubscribe_command = "SUNSUBSCRIBE" if cluster else "UNSUBSCRIBE"
        self.reconnects = 0
        self.closing = False
        self._links: dict[tuple[str, int], _Link] = {}
        self._channel_link: dict[bytes, _Link] = {}
        # Channels with a local subscriber; on a cluster a channel may be wanted before its
        # node (and so its link) is known.
        self._wanted: set[bytes] = set()
        self._queue: deque[tuple[bytes, bytes, asyncio.Future[None]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._client: Any = None

    def __repr__(self) -> str:
        return f"<RedisBackplane {self.url} {len(self._channel_link)} channels>"

    # -- connections -------------------------------------------------------------------------

    def new_connection(self, host: str, port: int) -> Any:
        """A raw connection for a subscriber link: no retries (the link retries itself)."""
        cls = aioredis.SSLConnection if self.target.tls else aioredis.Connection
        return cls(host=host, port=port, socket_connect_timeout=self.connect_timeout,
                   socket_timeout=None, socket_keepalive=True, retry=Retry(NoBackoff(), 0),
                   protocol=2, **self.target.connection_kwargs())

    def channel(self, topic: str) -> bytes:
        """The Redis channel of ``topic``."""
        return self.prefix + topic.encode()

    def client(self) -> Any:
        """The command client (a ``redis.asyncio`` Redis or RedisCluster), made on first use."""
        return self._publisher()

    def _publisher(self) -> Any:
        if self._client is None:
            target = self.target
            common: dict[str, Any] = {
                "socket_connect_timeout": self.connect_timeout,
                "socket_timeout": self.command_timeout,
                "retry": Retry(NoBackoff(), 0),
                "ssl": target.tls,
                "protocol": 2,
                **target.connection_kwargs(),
            }
            if target.cluster:
                from redis.asyncio.cluster import ClusterNode, RedisCluster

                self._client = RedisCluster(
                    startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                    **common)
            else:
                host, port = target.nodes[0]
                self._client = aioredis.Redis(host=host, port=port, **common)
        return self._client

    async def _node_of(self, channel: bytes) -> tuple[str, int]:
        """The node serving ``channel``: the server itself, or its slot's primary."""
        if not self.target.cluster:
            return self.target.nodes[0]
        client = self._publisher()
        try:
            await client.initialize()
            node = client.get_node_from_key(channel)
        except (RedisError, OSError) as exc:
            raise HubError(f"cannot reach Redis Cluster at {self.url}: {exc}") from exc
        return str(node.host), int(node.port)

    async def start(self) -> None:
        """Check that Redis answers (and learn the cluster's slots)."""
        try:
            await self._publisher().ping()
        except (RedisError, OSError) as exc:
            raise HubError(f"cannot reach Redis at {self.url}: {exc}") from exc

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, topic: str) -> asyncio.Future[None]:
        channel = self.prefix + topic.encode()
        self._wanted.add(channel)
        link = self._channel_link.get(channel)
        if link is not None:
            return link.ready(channel)
        if not self.target.cluster:
            link = self._link_for(self.target.nodes[0])
            self._channel_link[channel] = link
            return link.add(channel)
        # On a cluster the node is known once the slots are: a placeholder future until then.
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._subscribe_sharded(channel, future))
        return future

    async def _subscribe_sharded(self, channel: bytes, future: asyncio.Future[None]) -> None:
        delay = self.reconnect_delay
        while not self.closing:
            try:
                node = await self._node_of(channel)
                break
            except HubError as exc:
                logger.warning("hub: %s; retrying", exc)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(self.max_reconnect_delay, delay * 2)
        else:
            _resolve(future)
            return
        if channel not in self._wanted:  # its last subscriber left meanwhile
            _resolve(future)
            return
        if channel in self._channel_link:  # subscribed meanwhile by another call
            ready = self._channel_link[channel].ready(channel)
        else:
            link = self._link_for(node)
            self._channel_link[channel] = link
            ready = link.add(channel)
        ready.add_done_callback(lambda done: _chain(done, future))

    def move_slot(self, slot: int, node: tuple[str, int], link: _Link) -> None:
        """Redis Cluster answered MOVED: the channels of ``slot`` that ``link`` carries now
        live on ``node`` (resharding, or a slot map learned before it changed)."""
        for channel in [c for c in link.channels if key_slot(c) == slot]:
            link.channels.discard(channel)
            link.confirmed.discard(channel)
            link.pending.pop(channel, None)
            waiters = link.waiters.pop(channel, [])
            logger.info("hub: %s moved from Redis %s to %s:%d", channel.decode(
                errors="replace"), link.name, *node)
            target = self._link_for(node)
            self._channel_link[channel] = target
            target.waiters.setdefault(channel, []).extend(waiters)
            target.add(channel)

    def _link_for(self, node: tuple[str, int]) -> _Link:
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(self, *node)
        link.start()
        return link

    def unsubscribe(self, topic: str) -> None:
        channel = self.prefix + topic.encode()
        self._wanted.discard(channel)
        link = self._channel_link.pop(channel, None)
        if link is not None:
            link.remove(channel)

    def confirmed(self, channel: bytes) -> None:
        """Redis confirmed a subscription to ``channel`` (called by the links)."""
        if self.on_subscribed is not None and channel.startswith(self.prefix):
            self.on_subscribed(channel[len(self.prefix):].decode(errors="replace"))

    def received(self, channel: bytes, data: bytes) -> None:
        """A publication read from Redis: deliver it unless this worker published it."""
        if not channel.startswith(self.prefix):
            return
        if data[:1] and data[0] & 0x0F in (TEXT_AT, BINARY_AT):
            self._received_positioned(channel, data)
            return
        if data[:1] == bytes((VERSION << 4 | PRESENCE,)) and len(data) >= HEADER:
            if data[1:HEADER] != self.origin and self.deliver_presence is not None:
                self.deliver_presence(channel[len(self.prefix):].decode(errors="replace"),
                                      data[HEADER:])
            return
        try:
            origin, message = decode(data)
        except ValueError:  # UnicodeDecodeError included
            logger.warning("hub: ignoring a malformed publication on %r", channel)
            return
        if origin == self.origin:
            return  # delivered locally when it was published
        self.deliver(channel[len(self.prefix):].decode(errors="replace"), message)

    def _received_positioned(self, channel: bytes, data: bytes) -> None:
        # This worker's own publications count too: with history, Redis gives the offset
        # and the order, so local subscribers get them from here, in Redis's order.
        deliver = self.deliver_positioned
        try:
            message, epoch, offset = decode_positioned(data)
        except ValueError:
            logger.warning("hub: ignoring a malformed publication on %r", channel)
            return
        if deliver is not None:
            deliver(channel[len(self.prefix):].decode(errors="replace"), message, epoch, offset)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, message: str | bytes) -> None:
        if self.closing:
            raise HubError("the hub is closed")
        if len(self._queue) >= self.max_pending:
            raise HubError(f"{self.max_pending} publishes already wait for Redis")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((self.prefix + topic.encode(), encode(self.origin, message), future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        await future

    async def _write(self) -> None:
        """Hand queued publishes to Redis in order, a pipeline of up to max_batch at a time."""
        queue = self._queue
        command = "spublish" if self.target.cluster else "publish"
        try:
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]
                try:
                    client = self._publisher()
                    if len(batch) == 1:
                        await getattr(client, command)(batch[0][0], batch[0][1])
                    else:
                        pipe = client.pipeline(transaction=False)
                        for channel, data, _ in batch:
                            getattr(pipe, command)(channel, data)
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    fail_publishes(batch, self.url, exc)
                    continue
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._writer = None

    async def close(self) -> None:
        self.closing = True
        links = list(self._links.values())
        self._links.clear()
        self._channel_link.clear()
        self._wanted.clear()
        await asyncio.gather(*(link.close() for link in links))
        writer = self._writer
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        while self._queue:
            _, _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(HubError("the hub closed before this publish was sent"))
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    _resolve(target)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def fail_publishes(batch: Iterable[tuple[Any, Any, asyncio.Future[Any]]], url: str,
                   exc: BaseException) -> None:
    """Fail every publish of a batch Redis did not take with one HubError naming the cause."""
    error = HubError(f"publish to Redis at {url} failed: {exc or type(exc).__name__}")
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error)
