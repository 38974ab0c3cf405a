"""Topic history in Redis: one stream per topic, offsets and epoch in a hash, read and written
by scripts so that every worker agrees on each publication's position."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from .errors import HubError
from .history import MAX_HISTORY, Publication, check_since, new_epoch, plan_recovery
from .redis import BINARY_AT, TEXT_AT, VERSION, RedisBackplane, fail_publishes

try:
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - hub/redis.py raised already
    raise ImportError("history in Redis needs the redis package") from exc

__all__ = ["META_TTL", "RedisHistory", "history_keys", "slot_base"]

#: Seconds a topic's position (epoch, last offset) is kept after its last publication or
#: read, and at least its history's ttl: past it, the next use starts a new epoch.
META_TTL = 24 * 3600

# One publication: take (or start) the epoch, the next offset, append it to the stream
# (trimmed to about ``size`` entries, expiring ``ttl`` after the last one) and publish it
# with its position, all at once: the stream holds it before any subscriber can see it,
# and the channel carries publications in offset order. A missing hash means the position
# was lost (flush, restart without persistence): a new epoch, and the old stream goes.
# KEYS: meta, stream. ARGV: channel, head, data, kind, size, ttl ms (0: none), meta ttl s,
# new epoch, publish command.
_PUBLISH = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[8]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local number = string.format('%d', offset)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '0-' .. number, 'k', ARGV[4], 'd', ARGV[3])
if ARGV[6] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call(ARGV[9], ARGV[1], ARGV[2] .. number .. ' ' .. epoch .. ' ' .. ARGV[3])
return {epoch, offset}
"""

# The position of a topic, and the publications after (since epoch, since offset) if that
# epoch is the topic's: {epoch, top, first kept offset, entries}.
# KEYS: meta, stream. ARGV: new epoch, since epoch, since offset (-1: none), limit, meta ttl.
_READ = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local since = tonumber(ARGV[3])
if since < 0 or epoch ~= ARGV[2] or since >= top then return {epoch, top, top + 1, {}} end
local first = top + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.sub(head[1][1], 3)) end
if since + 1 < first then return {epoch, top, first, {}} end
local start = '0-' .. string.format('%d', since + 1)
return {epoch, top, first, redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', ARGV[4])}
"""


def slot_base(channel: bytes) -> bytes:
    """The start of the key names of a topic, in its channel's Redis Cluster slot (a script
    may only touch one slot, and the history script publishes on the channel)."""
    start = channel.find(b"{")
    end = channel.find(b"}", start + 1) if start != -1 else -1
    if end > start + 1:
        return channel  # its own hash tag decides its slot, and so the keys'
    if b"}" not in channel:
        return b"{" + channel + b"}"
    raise ValueError("a topic with history or presence cannot have a '}' without a '{' "
                     "before it")


def history_keys(channel: bytes) -> tuple[bytes, bytes]:
    """(meta hash, stream) of the topic whose channel is ``channel``."""
    base = slot_base(channel)
    return base + b":meta", base + b":history"


class RedisHistory:
    """History of the topics that keep one, for a Hub on Redis.

    Publishes go to Redis one batch at a time, in order (on Redis Cluster one at a time), so
    that one publisher's publications on a topic keep their order.
    """

    def __init__(self, backplane: RedisBackplane, *, meta_ttl: int = META_TTL,
                 max_pending: int = 10_000, max_batch: int = 256) -> None:
        self.backplane = backplane
        self.meta_ttl = meta_ttl
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.cluster = backplane.target.cluster
        self.command = "SPUBLISH" if self.cluster else "PUBLISH"
        client = backplane.client()
        self._publish = client.register_script(_PUBLISH)
        self._read = client.register_script(_READ)
        self._queue: deque[tuple[list[bytes], list[Any], asyncio.Future[Any]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def publish(self, topic: str, message: str | bytes, size: int,
                      ttl: float | None) -> tuple[str, int]:
        """Append and publish ``message``; its (epoch, offset). HubError if Redis failed."""
        if len(self._queue) >= self.max_pending:
            raise HubError(f"{self.max_pending} publishes already wait for Redis")
        channel = self.backplane.channel(topic)
        keys = list(history_keys(channel))
        text = isinstance(message, str)
        kind = TEXT_AT if text else BINARY_AT
        data = message.encode() if isinstance(message, str) else message
        head = bytes((VERSION << 4 | kind,)) + self.backplane.origin
        args: list[Any] = [channel, head, data, b"t" if text else b"b", size,
                           0 if ttl is None else max(1, round(ttl * 1000)),
                           max(self.meta_ttl, round(ttl or 0)), new_epoch(), self.command]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        epoch, offset = await future
        return epoch.decode("ascii"), int(offset)

    async def _write(self) -> None:
        queue = self._queue
        try:
            while queue:
                count = 1 if self.cluster else min(len(queue), self.max_batch)
                batch = [queue.popleft() for _ in range(count)]
                try:
                    client = self.backplane.client()
                    if len(batch) == 1:
                        keys, args, _ = batch[0]
                        results = [await self._publish(keys, args)]
                    else:
                        pipe = client.pipeline(transaction=False)
                        for keys, args, _ in batch:
                            await self._publish(keys, args, client=pipe)
                        results = await pipe.execute()
                except (RedisError, OSError) as exc:
                    fail_publishes(batch, self.backplane.url, exc)
                    continue
                for (_, _, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._writer = None

    async def recover(self, topic: str, since: tuple[str, int] | None, size: int,
                      ttl: float | None) -> tuple[str, int, list[Publication], bool]:
        """(epoch, last offset, publications after ``since``, complete) of ``topic``."""
        since = check_since(since)
        keys = list(history_keys(self.backplane.channel(topic)))
        args = [new_epoch(), since[0] if since else "", since[1] if since else -1,
                MAX_HISTORY + 1, max(self.meta_ttl, round(ttl or 0))]
        try:
            raw_epoch, top, first, raw = await self._read(keys, args)
        except (RedisError, OSError) as exc:
            raise HubError(f"cannot read the history of {topic!r} from Redis at "
                           f"{self.backplane.url}: {exc or type(exc).__name__}") from exc
        epoch = raw_epoch.decode("ascii")
        if since is None:
            return epoch, int(top), [], False
        entries = [_entry(topic, epoch, entry_id, fields) for entry_id, fields in raw]
        replay, complete = plan_recovery(since, epoch, int(top), int(first), entries)
        return epoch, int(top), replay, complete

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        while self._queue:
            _, _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(HubError("the hub closed before this publish was sent"))


def _entry(topic: str, epoch: str, entry_id: bytes, fields: list[bytes]) -> Publication:
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    data: str | bytes = pairs[b"d"]
    if pairs.get(b"k") == b"t":
        data = pairs[b"d"].decode()
    return Publication(topic, int(entry_id.split(b"-", 1)[1]), epoch, data)
