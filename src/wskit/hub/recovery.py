"""Topics with history in a Hub: positions, replay on subscribe, live delivery in offset order
without gap or duplicate (in memory, or through Redis with every worker agreeing)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..websocket import WebSocket
from .errors import HubError
from .history import (
    MAX_HISTORY,
    Format,
    HistoryPolicy,
    MemoryHistory,
    Publication,
    Subscription,
    check_since,
)

if TYPE_CHECKING:
    from .redis import RedisBackplane
    from .redis_history import RedisHistory

__all__ = ["Recovery"]

logger = logging.getLogger("wskit.hub")

#: ``send(data, sockets) -> count``: the hub's fan-out (one frame, the slow policy).
Send = Callable[[str | bytes, Collection[WebSocket]], int]


class _Feed:
    """What this worker has delivered of a topic, to keep Redis's publications in order."""

    __slots__ = ("epoch", "filling", "offset", "waiting")

    def __init__(self, epoch: str, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset
        self.filling = False
        self.waiting: list[Publication] = []


class _Pending:
    """A subscriber not yet fully live: its replay is on its way (``held`` keeps the live
    publications meanwhile), or it was sent publications up to (epoch, offset) that this
    worker has not delivered yet (they are still on their way from Redis)."""

    __slots__ = ("epoch", "held", "offset")

    def __init__(self) -> None:
        self.held: list[Publication] | None = []
        self.epoch = ""
        self.offset = 0


class Recovery:
    """The history side of a Hub: the hub hands it the topics its policy keeps history for.

    In memory everything happens at once. Through Redis, a worker delivers a topic's
    publications in offset order: one that arrives after a hole (a pub/sub message lost
    while the link to Redis was down) waits until the hole is read back from the stream.
    A subscriber that asks to recover gets its replay and then the live publications that
    arrived meanwhile, less those the replay already had.
    """

    def __init__(self, policy: HistoryPolicy, format: Format, send: Send,
                 members: Callable[[str], Collection[WebSocket]]) -> None:
        self.policy = policy
        self.format = format
        self.send = send
        self.members = members
        self.memory = MemoryHistory()
        self.redis: RedisHistory | None = None
        self._feeds: dict[str, _Feed] = {}
        # Subscribers of each topic not yet fully live.
        self._recovering: dict[str, dict[WebSocket, _Pending]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def use_redis(self, backplane: RedisBackplane) -> None:
        from .redis_history import RedisHistory

        self.redis = RedisHistory(backplane)

    def keeps(self, topic: str) -> tuple[int, float | None] | None:
        return self.policy.rule(topic)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, message: str | bytes, rule: tuple[int, float | None],
                      ) -> tuple[str, int]:
        """Give ``message`` its position and deliver it; (epoch, offset)."""
        size, ttl = rule
        if self.redis is None:
            publication = self.memory.append(topic, message, size, ttl)
            self._emit(publication)
            return publication.epoch, publication.offset
        # Local subscribers get it with everyone else's, when Redis sends it back.
        return await self.redis.publish(topic, message, size, ttl)

    def deliver(self, topic: str, message: str | bytes, epoch: str, offset: int) -> None:
        """A publication from Redis (this worker's own included), in Redis's order."""
        publication = Publication(topic, offset, epoch, message)
        feed = self._feeds.get(topic)
        if feed is None:
            self._feeds[topic] = _Feed(epoch, offset)
            self._emit(publication)
        elif feed.filling:
            feed.waiting.append(publication)
            if len(feed.waiting) > MAX_HISTORY:
                # Redis cannot be read and publications keep coming: give the hole up.
                logger.warning("hub: %r: too many publications wait for a hole in the "
                               "history to be read; delivering them with the hole", topic)
                self._flush(topic, feed)
        elif epoch != feed.epoch:
            # History lost (Redis restarted without persistence): a new count starts.
            feed.epoch, feed.offset = epoch, offset
            self._emit(publication)
        elif offset <= feed.offset:
            pass  # already delivered (read back while filling a hole)
        elif offset == feed.offset + 1:
            feed.offset = offset
            self._emit(publication)
        else:
            feed.filling = True
            feed.waiting.append(publication)
            self._spawn(self._fill(topic, feed))

    def resubscribed(self, topic: str) -> None:
        """Redis confirmed ``topic``'s channel: after a reconnect, what was published while
        the link was down is read back from the stream (nothing is read on a first one)."""
        feed = self._feeds.get(topic)
        if feed is not None and not feed.filling:
            feed.filling = True
            self._spawn(self._fill(topic, feed))

    async def _fill(self, topic: str, feed: _Feed) -> None:
        """Read back from the stream what this worker missed of ``topic``, then go on."""
        rule = self.keeps(topic)
        redis = self.redis
        try:
            if rule is not None and redis is not None:
                replay = (await redis.recover(topic, (feed.epoch, feed.offset), *rule))[2]
                for publication in replay:
                    if publication.epoch == feed.epoch and publication.offset > feed.offset:
                        feed.offset = publication.offset
                        self._emit(publication)
        except HubError as exc:
            logger.warning("hub: %s; %r delivered with a hole", exc, topic)
        if self._feeds.get(topic) is feed:
            self._flush(topic, feed)

    def _flush(self, topic: str, feed: _Feed) -> None:
        waiting, feed.waiting, feed.filling = feed.waiting, [], False
        for publication in waiting:
            if publication.epoch != feed.epoch or publication.offset > feed.offset:
                feed.epoch, feed.offset = publication.epoch, publication.offset
                self._emit(publication)

    def _emit(self, publication: Publication) -> None:
        """Deliver to the live subscribers, and hold it for those still recovering."""
        topic = publication.topic
        members = self.members(topic)
        if not members:
            return
        waiting = self._recovering.get(topic)
        if waiting:
            skip = set()
            for ws, pending in list(waiting.items()):
                if pending.held is not None:
                    if len(pending.held) >= MAX_HISTORY:
                        # Its replay takes too long for what keeps coming: it must try again.
                        del waiting[ws]
                        self._spawn(ws.close(1013, "too many publications during recovery"))
                    else:
                        pending.held.append(publication)
                elif publication.epoch == pending.epoch and publication.offset <= pending.offset:
                    pass  # it had this one in its replay
                else:
                    del waiting[ws]  # caught up: live from this one on
                    continue
                skip.add(ws)
            if not waiting:
                del self._recovering[topic]
            members = [ws for ws in members if ws not in skip]
        data = self.format(topic, publication.offset, publication.epoch, publication.data)
        self.send(data, members)

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, ws: WebSocket, topic: str, since: tuple[str, int] | None,
                  ready: asyncio.Future[None]) -> asyncio.Future[Subscription]:
        """``ws`` just joined ``topic`` (a topic with history): its position, and its replay
        if it gave ``since``. Resolved once the replay is sent."""
        since = check_since(since)
        rule = self.keeps(topic)
        assert rule is not None
        if self.redis is None:
            epoch, top, replay, complete = (self.memory.recover(topic, since, *rule)
                                            if since is not None else
                                            (*self.memory.position(topic, *rule), [], False))
            self._replay(ws, replay)
            done: asyncio.Future[Subscription] = asyncio.get_running_loop().create_future()
            done.set_result(Subscription(topic, epoch, top, complete, len(replay)))
            return done
        self._recovering.setdefault(topic, {})[ws] = _Pending()
        task = asyncio.ensure_future(self._recover(ws, topic, since, rule, ready))
        return task

    async def _recover(self, ws: WebSocket, topic: str, since: tuple[str, int] | None,
                       rule: tuple[int, float | None],
                       ready: asyncio.Future[None]) -> Subscription:
        redis = self.redis
        assert redis is not None
        mine = self._recovering[topic][ws]
        try:
            # Subscribed first, read second: whatever the read misses comes live.
            await ready
            epoch, top, replay, complete = await redis.recover(topic, since, *rule)
            while True:
                feed = self._feeds.get(topic)
                if feed is None:
                    # The first read of this worker starts its count, so that a hole
                    # right after it is seen (and read back) like any other.
                    self._feeds[topic] = _Feed(epoch, top)
                    break
                if feed.epoch != epoch or feed.offset <= top:
                    break
                # Another read started the count past this one's top: the publications in
                # between will not come live, so they are read too.
                more_epoch, more_top, more, _ = await redis.recover(topic, (epoch, top), *rule)
                if more_epoch != epoch:
                    break
                replay += more
                top = more_top
        except BaseException:
            if self._recovering.get(topic, {}).get(ws) is mine:
                self._forget(topic, ws)
            raise
        pending = self._recovering.get(topic, {}).get(ws)
        if pending is not mine or mine.held is None:
            # Unsubscribed meanwhile.
            return Subscription(topic, epoch, top, False, 0)
        self._replay(ws, replay)
        last_epoch, last = epoch, top
        live = [p for p in mine.held if p.epoch != epoch or p.offset > top]
        self._replay(ws, live)
        if live:
            last_epoch, last = live[-1].epoch, live[-1].offset
        feed = self._feeds.get(topic)
        if live or (feed is not None and (feed.epoch, feed.offset) == (epoch, top)):
            self._forget(topic, ws)
        else:
            # Up to ``top`` it has, but this worker may still be about to deliver some of
            # those (Redis sends them on another connection): it skips them.
            mine.held, mine.epoch, mine.offset = None, epoch, top
        return Subscription(topic, last_epoch, last, complete, len(replay))

    def _forget(self, topic: str, ws: WebSocket) -> None:
        waiting = self._recovering.get(topic)
        if waiting is not None:
            waiting.pop(ws, None)
            if not waiting:
                del self._recovering[topic]

    def _replay(self, ws: WebSocket, publications: list[Publication]) -> None:
        for publication in publications:
            self.send(self.format(publication.topic, publication.offset, publication.epoch,
                                  publication.data), (ws,))

    def left(self, ws: WebSocket, topic: str, last: bool) -> None:
        """``ws`` left ``topic``; ``last``: it was this worker's last subscriber of it."""
        self._forget(topic, ws)
        if last:
            # Redis no longer sends this worker the topic: its count must start afresh.
            self._feeds.pop(topic, None)

    def _spawn(self, job: Any) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        redis, self.redis = self.redis, None
        if redis is not None:
            await redis.close()
