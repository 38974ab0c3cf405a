"""Topic history for the Hub: which topics keep it, positions (epoch, offset), the memory ring."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = [
    "MAX_HISTORY",
    "MAX_HISTORY_TOPICS",
    "Format",
    "HistoryPolicy",
    "MemoryHistory",
    "Publication",
    "Subscription",
    "check_since",
    "envelope",
    "new_epoch",
    "parse_since",
    "plan_recovery",
    "subscribed_message",
    "unchanged",
]

#: Most publications one topic may keep (a bound on every replay too).
MAX_HISTORY = 10_000
#: Topics whose position (epoch and last offset) the in-memory hub remembers; past it the
#: least recently used is forgotten, and its epoch changes when it is used again.
MAX_HISTORY_TOPICS = 10_000

#: ``format(topic, offset, epoch, data)``: the bytes or text subscribers get for a publication
#: (offset and epoch are None on a topic without history). Called once per publication per
#: worker, and once per replayed publication.
Format = Callable[[str, "int | None", "str | None", "str | bytes"], "str | bytes"]


def unchanged(topic: str, offset: int | None, epoch: str | None,
              data: str | bytes) -> str | bytes:
    """The default format: subscribers get the data as it was published."""
    return data


def envelope(topic: str, offset: int | None, epoch: str | None, data: str | bytes) -> str:
    """A format for ``Hub(format=...)``: the small JSON envelope the browser client, the demo
    and wskit.resume read: ``{"type": "publication", "topic", "offset", "epoch", "data"}``
    (binary data in base64, with ``"binary": true``)."""
    message: dict[str, object] = {"type": "publication", "topic": topic, "offset": offset,
                                  "epoch": epoch}
    if isinstance(data, str):
        message["data"] = data
    else:
        message["data"] = base64.b64encode(data).decode("ascii")
        message["binary"] = True
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def subscribed_message(subscription: Subscription) -> str:
    """What the server may send after ``subscribe``, in the envelope's shape: ``{"type":
    "subscribed", "topic", "epoch", "offset", "recovered", "replayed"}``; the client then
    knows its position even before any publication."""
    return json.dumps({"type": "subscribed", "topic": subscription.topic,
                       "epoch": subscription.epoch, "offset": subscription.offset,
                       "recovered": subscription.recovered, "replayed": subscription.replayed},
                      ensure_ascii=False, separators=(",", ":"))


def parse_since(values: Sequence[str], *, max_topics: int = 1000) -> dict[str, tuple[str, int]]:
    """Positions sent by a client as ``since=<topic>:<epoch>:<offset>`` query parameters
    (``req.query.get_all("since")``): topic -> (epoch, offset). Malformed ones are left out;
    past ``max_topics``, the rest too."""
    found: dict[str, tuple[str, int]] = {}
    for value in values[:max_topics]:
        topic, _, rest = value.rpartition(":")
        topic, _, epoch = topic.rpartition(":")
        if topic and epoch and rest.isdigit() and len(rest) <= 18:
            found[topic] = (epoch, int(rest))
    return found


def new_epoch() -> str:
    """A fresh epoch: 8 random hex digits, different at each loss of history."""
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication kept in a topic's history."""

    topic: str
    offset: int
    epoch: str
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Subscription:
    """What ``await hub.subscribe(...)`` tells: where the subscriber now is in the topic.

    ``epoch`` and ``offset`` are the topic's position once the replay is sent (None on a
    topic without history): the subscriber has every publication up to ``offset`` it asked
    for, and gets every later one live. ``recovered`` is True when ``since`` was given and
    every publication after it was replayed (``replayed`` of them); False when the epoch
    changed or the history no longer reaches back that far: the app must reload its state.
    """

    topic: str
    epoch: str | None = None
    offset: int | None = None
    recovered: bool = False
    replayed: int = 0


def check_since(since: object) -> tuple[str, int] | None:
    """``since`` as (epoch, offset), or TypeError/ValueError naming what is wrong."""
    if since is None:
        return None
    if not isinstance(since, (tuple, list)) or len(since) != 2:
        raise TypeError("since is (epoch, offset)")
    epoch, offset = since
    if not isinstance(epoch, str) or not isinstance(offset, int) or isinstance(offset, bool):
        raise TypeError("since is (epoch: str, offset: int)")
    if offset < 0:
        raise ValueError("an offset is never negative")
    return epoch, offset


def plan_recovery(since: tuple[str, int], epoch: str, top: int, first: int,
                  entries: Sequence[Publication]) -> tuple[list[Publication], bool]:
    """Which of ``entries`` (the history, oldest first, ``first`` its lowest offset, ``top``
    the last offset given) to replay after ``since``, and whether that is everything missed.

    Complete means: same epoch, and no offset between ``since`` and ``top`` is missing from
    the history (none trimmed or expired); an offset ahead of ``top`` cannot be of this epoch.
    """
    since_epoch, since_offset = since
    if since_epoch != epoch or since_offset > top or since_offset + 1 < first:
        return [], False
    replay = [entry for entry in entries if entry.offset > since_offset]
    # Offsets have no holes: anything short of top - since publications is a loss.
    return replay, len(replay) == top - since_offset


class HistoryPolicy:
    """Which topics keep history, how much and how long.

    ``history`` is a number of publications for every topic, or a mapping from topic
    patterns (``fnmatch``: ``"chat.*"``) to a number or to (number, ttl); the first pattern
    that matches wins. ``ttl`` (seconds, None: no expiry) is how long a topic's history is
    kept after its last publication, where a pattern gives none of its own.
    """

    def __init__(
        self,
        history: int | Mapping[str, int | tuple[int, float | None]] | None,
        ttl: float | None = None,
        *,
        max_history: int = MAX_HISTORY,
    ) -> None:
        self.rules: list[tuple[str, int, float | None]] = []
        if history is None:
            return
        items = list(history.items()) if isinstance(history, Mapping) else [("*", history)]
        for pattern, rule in items:
            size, rule_ttl = (rule, ttl) if isinstance(rule, int) else rule
            if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= max_history:
                raise ValueError(f"history is a number of publications from 1 to {max_history}, "
                                 f"not {size!r}")
            if rule_ttl is not None and rule_ttl <= 0:
                raise ValueError(f"history_ttl is a positive number of seconds, not {rule_ttl!r}")
            self.rules.append((pattern, size, rule_ttl))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule(self, topic: str) -> tuple[int, float | None] | None:
        """(size, ttl) of ``topic``'s history, or None if it keeps none."""
        for pattern, size, ttl in self.rules:
            if fnmatchcase(topic, pattern):
                return size, ttl
        return None


class _Ring:
    __slots__ = ("epoch", "items", "last", "top")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.items: deque[Publication] = deque(maxlen=size)
        self.last = 0.0


class MemoryHistory:
    """The in-memory hub's history: a bounded ring of publications per topic.

    A topic's epoch is drawn when this process first sees it, so a restarted process, or a
    topic forgotten past ``max_topics``, starts a new epoch and old positions do not recover.
    """

    def __init__(self, *, max_topics: int = MAX_HISTORY_TOPICS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_topics = max_topics
        self.clock = clock
        self._rings: OrderedDict[str, _Ring] = OrderedDict()

    def _ring(self, topic: str, size: int, ttl: float | None) -> _Ring:
        ring = self._rings.get(topic)
        if ring is None:
            ring = self._rings[topic] = _Ring(size)
            while len(self._rings) > self.max_topics:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(topic)
            if ring.items.maxlen != size:
                ring.items = deque(ring.items, maxlen=size)
            if ttl is not None and ring.items and self.clock() - ring.last > ttl:
                ring.items.clear()
        return ring

    def append(self, topic: str, data: str | bytes, size: int,
               ttl: float | None) -> Publication:
        """Keep ``data`` as the topic's next publication and return it with its position."""
        ring = self._ring(topic, size, ttl)
        ring.top += 1
        ring.last = self.clock()
        publication = Publication(topic, ring.top, ring.epoch, data)
        ring.items.append(publication)
        return publication

    def position(self, topic: str, size: int, ttl: float | None) -> tuple[str, int]:
        """(epoch, last offset) of ``topic``."""
        ring = self._ring(topic, size, ttl)
        return ring.epoch, ring.top

    def recover(self, topic: str, since: tuple[str, int], size: int,
                ttl: float | None) -> tuple[str, int, list[Publication], bool]:
        """(epoch, last offset, publications after ``since``, complete) of ``topic``."""
        ring = self._ring(topic, size, ttl)
        first = ring.items[0].offset if ring.items else ring.top + 1
        replay, complete = plan_recovery(since, ring.epoch, ring.top, first, ring.items)
        return ring.epoch, ring.top, replay, complete
