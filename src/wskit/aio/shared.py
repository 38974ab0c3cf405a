"""What the connections of one thread share on its running loop: a read buffer, a codec parker
and one timer for their opening handshakes (docs/architecture.md, Floors)."""

from __future__ import annotations

import asyncio
import threading
from typing import Protocol

from ..core.connection import Connection

__all__ = ["MAX_LIVE_CODECS", "PARK_INTERVAL", "Opening", "Openings", "Parker", "openings",
           "parker", "read_buffer"]

# Reads land in one buffer per thread, shared by that thread's connections (each copies out at
# once): asyncio's plain Protocol path allocates a fresh 256 KiB bytes per read instead, which
# glibc serves with mmap, mremap and munmap, three system calls for every message of a round
# trip. The size matches that read size, so large messages take as few reads as before.
READ_BUFFER_SIZE = 256 * 1024
_per_thread = threading.local()
#: Seconds between two sweeps of a loop's compressing connections: one that had no read for a
#: whole interval parks its codec (``Connection.park``), so it is parked 0.25-0.5 s after its
#: last read. Parking after every read instead rebuilt both zlib objects, primed with their
#: windows, for every message of a round trip (some 70,000 instructions of 240,000).
PARK_INTERVAL = 0.25
#: Compressing connections of one loop that may keep their zlib objects (some 35 KiB each)
#: between reads; past it, the one that read least recently parks at once. Without the bound,
#: thousands of connections busy at the same moment would all hold theirs until the sweep,
#: and the allocator keeps the peak: idle memory would be that of live codecs.
MAX_LIVE_CODECS = 16


def read_buffer() -> memoryview:
    """This thread's read buffer (made on first use)."""
    view: memoryview | None = getattr(_per_thread, "view", None)
    if view is None:
        view = _per_thread.view = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


class Parker:
    """The compressing connections of one event loop that read lately, least recent first,
    and a timer that parks those that did not read since its previous sweep (an idle
    connection keeps only its windows' bytes)."""

    __slots__ = ("live", "loop", "sweeps", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Each connection that may hold zlib objects, with the sweep count at its last read.
        self.live: dict[Connection, int] = {}
        self.sweeps = 0
        self.timer: asyncio.TimerHandle | None = None

    def touch(self, conn: Connection) -> None:
        live = self.live
        if live.pop(conn, None) is None and len(live) >= MAX_LIVE_CODECS:
            oldest = next(iter(live))
            del live[oldest]
            oldest.park()
        live[conn] = self.sweeps  # now the most recent (dicts keep insertion order)
        if self.timer is None:
            self.timer = self.loop.call_later(PARK_INTERVAL, self.sweep)

    def forget(self, conn: Connection) -> None:
        self.live.pop(conn, None)

    def sweep(self) -> None:
        self.sweeps += 1
        # Read before the previous sweep: a whole interval without a read.
        cutoff = self.sweeps - 2
        live = self.live
        while live:
            conn = next(iter(live))
            if live[conn] > cutoff:
                break  # this one and all after it read more recently
            del live[conn]
            conn.park()
        # Re-armed only while some connection may still need parking.
        self.timer = self.loop.call_later(PARK_INTERVAL, self.sweep) if live else None


def parker(loop: asyncio.AbstractEventLoop) -> Parker:
    """This thread's parker, for its running loop (a thread may run several loops in turn)."""
    found: Parker | None = getattr(_per_thread, "parker", None)
    if found is None or found.loop is not loop:
        found = _per_thread.parker = Parker(loop)
    return found


class Opening(Protocol):
    """A connection whose opening handshake is timed (``WebSocketProtocol``)."""

    def open_timed_out(self) -> None:
        """Its ``open_timeout`` has passed (the handshake may have ended meanwhile)."""


class Openings:
    """The connections of one event loop in their opening handshake under one
    ``open_timeout``, oldest first, and one timer at the oldest one's deadline.

    A timer per connection (made at accept, cancelled at the upgrade) cost a timer handle,
    and on uvloop a libuv timer, for every connection of a storm; here a connection costs a
    dict entry. Deadlines stay exact: they come in the order the connections were accepted.
    """

    __slots__ = ("loop", "pending", "timeout", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        # Each connection still in its handshake, with its deadline (insertion order is
        # deadline order, since the timeout is the same for all of them).
        self.pending: dict[Opening, float] = {}
        self.timer: asyncio.TimerHandle | None = None

    def add(self, proto: Opening) -> None:
        deadline = self.loop.time() + self.timeout
        self.pending[proto] = deadline
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self.sweep)

    def remove(self, proto: Opening) -> None:
        """``proto``'s handshake is over (upgraded or lost)."""
        pending = self.pending
        pending.pop(proto, None)
        if not pending and self.timer is not None:
            # None left: a live timer would cost every iteration of an asyncio loop its
            # timeout computation (some 4,000 instructions per round trip) until it fires.
            self.timer.cancel()
            self.timer = None

    def sweep(self) -> None:
        self.timer = None
        pending = self.pending
        now = self.loop.time()
        while pending:
            proto = next(iter(pending))
            deadline = pending[proto]
            if deadline > now:
                # (A timer left behind by connections that finished meanwhile fires once
                # for nothing while others are pending; keeping it costs less than
                # re-arming at every upgrade. Once none is left, remove() cancels it.)
                self.timer = self.loop.call_at(deadline, self.sweep)
                return
            del pending[proto]
            proto.open_timed_out()


def openings(loop: asyncio.AbstractEventLoop, timeout: float) -> Openings:
    """This thread's handshakes under ``timeout`` on its running loop."""
    every: dict[float, Openings] | None = getattr(_per_thread, "openings", None)
    if every is None or _per_thread.openings_loop is not loop:
        every = _per_thread.openings = {}
        _per_thread.openings_loop = loop
    found = every.get(timeout)
    if found is None:
        found = every[timeout] = Openings(loop, timeout)
    return found
