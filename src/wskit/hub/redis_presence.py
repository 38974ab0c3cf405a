"""Presence in Redis: per topic, a hash of members and a sorted set of workers by the time
their heartbeat runs out, so that the members of a worker that died expire."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from .errors import HubError
from .redis import PRESENCE, VERSION, RedisBackplane
from .redis_history import slot_base

try:
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - hub/redis.py raised already
    raise ImportError("presence in Redis needs the redis package") from exc

__all__ = ["RedisPresence", "presence_keys"]

logger = logging.getLogger("wskit.hub")

# Every script reads the time from Redis, so that the workers' clocks do not matter.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: members hash (field "<worker>.<n>" -> info JSON), workers zset (score: the time in
# ms their heartbeat runs out). ARGV: worker, ttl ms, field, info.
_JOIN = _NOW + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[2]))
return 1
"""

# The heartbeat of one worker on one topic: its entry lives on, its members are written
# again (a Redis that lost them gets them back), and members of workers whose heartbeat ran
# out are removed and returned (field, info, ...) for their leave events. Its own fields
# that are not in the list (left while Redis was away) go too.
# KEYS: members, workers. ARGV: worker, ttl ms, field, info, field, info...
_HEARTBEAT = _NOW + """
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
local mine = {}
for i = 3, #ARGV, 2 do
  mine[ARGV[i]] = true
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
local live = {}
for _, worker in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do live[worker] = true end
local gone = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local worker = string.match(all[i], '^([^.]*)%.')
  if worker == ARGV[1] then
    if not mine[all[i]] then redis.call('HDEL', KEYS[1], all[i]) end
  elseif not live[worker] then
    redis.call('HDEL', KEYS[1], all[i])
    table.insert(gone, all[i])
    table.insert(gone, all[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
return gone
"""

# The members of live workers: field, info, ...  KEYS: members, workers.
_MEMBERS = _NOW + """
local live = {}
for _, worker in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  live[worker] = true
end
local found = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if live[string.match(all[i], '^([^.]*)%.')] then
    table.insert(found, all[i])
    table.insert(found, all[i + 1])
  end
end
return found
"""


def presence_keys(channel: bytes) -> tuple[bytes, bytes]:
    """(members hash, workers zset) of the topic whose channel is ``channel``."""
    base = slot_base(channel)
    return base + b":members", base + b":workers"


Snapshot = Callable[[], "dict[str, dict[str, Any]]"]
Expired = Callable[[str, "dict[str, Any]"], None]


class RedisPresence:
    """This worker's side of presence in Redis: join, leave, read, heartbeat, announce."""

    def __init__(self, backplane: RedisBackplane, worker: str, ttl: float,
                 snapshot: Snapshot, expired: Expired) -> None:
        self.backplane = backplane
        self.worker = worker
        self.ttl_ms = max(1, round(ttl * 1000))
        self.interval = ttl / 3
        self.snapshot = snapshot
        self.expired = expired
        client = backplane.client()
        self._join = client.register_script(_JOIN)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._members = client.register_script(_MEMBERS)
        self._beat: asyncio.Task[None] | None = None

    def _keys(self, topic: str) -> list[bytes]:
        return list(presence_keys(self.backplane.channel(topic)))

    async def _call(self, what: str, script: Any, topic: str, args: list[Any]) -> Any:
        try:
            return await script(self._keys(topic), args)
        except (RedisError, OSError) as exc:
            raise HubError(f"presence of {topic!r}: cannot {what} in Redis at "
                           f"{self.backplane.url}: {exc or type(exc).__name__}") from exc

    async def join(self, topic: str, member_id: str, info: str) -> None:
        if self._beat is None:
            self._beat = asyncio.get_running_loop().create_task(self._beating())
        await self._call("record a member", self._join, topic,
                         [self.worker, self.ttl_ms, member_id, info])

    async def leave(self, topic: str, member_id: str) -> None:
        try:
            await self.backplane.client().hdel(self._keys(topic)[0], member_id)
        except (RedisError, OSError) as exc:
            # The next heartbeat removes it (it is no longer in this worker's list).
            raise HubError(f"presence of {topic!r}: cannot remove a member in Redis: "
                           f"{exc or type(exc).__name__}") from exc

    async def members(self, topic: str) -> dict[str, Any]:
        flat = await self._call("read the members", self._members, topic, [])
        return {flat[i].decode(): json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def announce(self, topic: str, event: str, member_id: str, info: Any) -> None:
        """Send a join or leave event to the other workers (on the topic's channel)."""
        data = (bytes((VERSION << 4 | PRESENCE,)) + self.backplane.origin
                + json.dumps([event, member_id, info], ensure_ascii=False).encode())
        client = self.backplane.client()
        command = client.spublish if self.backplane.target.cluster else client.publish
        try:
            await command(self.backplane.channel(topic), data)
        except (RedisError, OSError) as exc:
            raise HubError(f"presence event not sent: {exc or type(exc).__name__}") from exc

    async def beat(self) -> None:
        """One heartbeat for every topic this worker has members of."""
        for topic, members in self.snapshot().items():
            args: list[Any] = [self.worker, self.ttl_ms]
            for member_id, info in members.items():
                args += [member_id, json.dumps(info, ensure_ascii=False,
                                               separators=(",", ":"))]
            gone = await self._call("renew the members", self._heartbeat, topic, args)
            if gone:
                self.expired(topic, {gone[i].decode(): json.loads(gone[i + 1])
                                     for i in range(0, len(gone), 2)})

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except HubError as exc:
                logger.warning("hub: %s; trying again at the next heartbeat", exc)

    async def close(self) -> None:
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
