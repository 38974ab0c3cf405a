"""The asyncio binding: the transport, every timer and flow control of one connection.

It feeds the core, writes what the core produces, and hands events up to a ``Receiver``
(the user's WebSocket) without importing it (docs/architecture.md, "Floors" and "Seams").
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..core.close import CloseCode
from ..core.connection import Connection, Ending, Event, Pong, Role, State
from ..core.errors import KeepaliveTimeout, PolicyViolation
from ..core.extensions import Extension
from ..core.frames import FrameParser
from ..core.limits import Limits
from ..core.masking import speedups
from .framereader import FrameReader
from .shared import Openings, Parker, openings, parker, read_buffer
from .writes import (
    HEAD_PART,
    JOIN_LIMIT,
    direct_send,
    gathers,
    write_gathered,
    write_runs,
)

__all__ = ["BATCH", "QUEUE", "WRITE", "Receiver", "WebSocketProtocol", "compiled_reader"]

logger = logging.getLogger("wskit")

_CONNECTING = State.CONNECTING
_OPEN = State.OPEN
_REMOTE_CLOSING = State.REMOTE_CLOSING
_LOCAL_CLOSING = State.LOCAL_CLOSING
# (Enum members as module constants: on 3.11 each lookup on the class costs ~900 instructions.)
_HALF_CLOSE = Ending.HALF_CLOSE
_END_CLOSE = Ending.CLOSE
# Why reading is paused; it resumes once no reason is left.
#: The inbox or the queue of coroutine-listener calls is full (or a hook runs).
QUEUE = 1
#: The write buffer is over its high-water mark: reading would make output we cannot write.
WRITE = 2
#: The last read decoded more than one batch; the rest is handed out on the next iterations.
BATCH = 4
_ALL = QUEUE | WRITE | BATCH
#: Seconds without input after which a failed TLS connection is closed (see ``_linger``).
_QUIET = 0.25
# The cork of each thread (_thread_cork).
_per_thread = threading.local()
# Short connection ids for log lines ("c1f"): unique in the process, cheap to read.
_ids = itertools.count(1)


#: (low, high) write-buffer limits of a fresh transport, by transport type.
_default_limits: dict[type, tuple[int, ...]] = {}

#: The handshakes of the last connection accepted in the process: its successors share them
#: without the lookup (each thread checks that they are its loop's).
_last_openings: list[Openings | None] = [None]


class _Cork:
    """The reads in progress on one thread, and the other connections written to meanwhile.

    While the listeners of a read run, what they write to any connection is gathered in that
    connection's cork list; at the end of the outermost read every connection gets one write
    (one system call) carrying all its frames, in the order they were sent, as uWebSockets
    corks. A fan-out of the k publications that came in one read costs one write per
    subscriber instead of k.
    """

    __slots__ = ("depth", "pending")

    def __init__(self) -> None:
        #: How many reads are in progress (a listener may feed another connection).
        self.depth = 0
        #: The connections corked by writes from those reads, other than the one read.
        self.pending: list[WebSocketProtocol] = []

    def flush(self) -> None:
        """The outermost read is over: hand every pending connection's frames over."""
        while self.pending:
            pending, self.pending = self.pending, []
            flush_corked(pending, JOIN_LIMIT)


def flush_corked_python(pending: list[WebSocketProtocol], join_limit: int) -> None:
    """Uncork each of ``pending``: its frames to its transport (``_write_out``: one write,
    joined up to ``join_limit`` bytes, else in runs, ``write_runs``), unless the transport is
    closing (lost, or aborted: nothing can go). A failing write does not keep the others
    corked: the first error is raised once every connection was uncorked. The twin of
    ``_speedups.flush_corked``."""
    error: Exception | None = None
    for proto in pending:
        corked = proto._corked
        proto._corked = None
        if corked:
            transport = proto.transport
            if transport is None or transport.is_closing():
                continue
            try:
                proto._write_out(corked)
            except Exception as exc:  # raised below, once the others are uncorked
                if error is None:
                    error = exc
    if error is not None:
        raise error


#: The C twin of flush_corked_python when built, else it.
flush_corked: Callable[[list[WebSocketProtocol], int], None] = getattr(
    speedups, "flush_corked", flush_corked_python)


def _thread_cork() -> _Cork:
    cork: _Cork | None = getattr(_per_thread, "cork", None)
    if cork is None:
        cork = _per_thread.cork = _Cork()
    return cork


class Receiver(Protocol):
    """What the binding hands a connection's events to; ``WebSocket`` implements it."""

    def receive_events(self, events: list[Event]) -> None:
        """The events of one read, in order (listeners may send from here: it is corked)."""

    def receive_messages(self, messages: list[str | bytes]) -> None:
        """The messages of a read that held nothing else, in order: ``str`` for text,
        ``bytes`` for binary (``Connection.receive_messages``); delivered as their events
        would be by ``receive_events``, corked alike."""

    def answers_pending(self) -> bool:
        """Whether messages received so far may still be answered: some wait in the inbox
        for a reader, or coroutine-listener calls are queued or running. A Close that came
        behind them is held until ``WebSocketProtocol.answers_drained`` (or close_timeout)."""

    def connection_ended(self, exc: Exception | None) -> None:
        """Nothing more will arrive: the TCP connection is gone (or being discarded)."""


class WebSocketProtocol(asyncio.Protocol, asyncio.BufferedProtocol):
    """Owns the transport of one connection: handshake bytes first, then WebSocket frames.

    Subclasses (server, client, ASGI) implement ``handshake_data`` while the connection is
    CONNECTING and call ``open`` once the upgrade succeeded, then ``feed_pending`` once the
    application is ready for the frames that came with the HTTP head.
    """

    # Both bases on purpose: asyncio's transports read through get_buffer/buffer_updated when
    # the protocol is a BufferedProtocol, which spares a 256 KiB allocation per read (half
    # the CPU of a round trip); uvloop's use data_received when it is a Protocol, which is
    # cheaper there than a buffer (uvloop already reads into a reused buffer of its own).

    #: Whether this protocol bounds the opening handshake with ``limits.open_timeout`` itself.
    times_handshake = True

    # One per open connection, tens of thousands of them: slots, not a dict each (issue 14);
    # the C twin of the fan-out loop reads _cork, _corked, bytes_out, conn and transport at
    # their offsets (_speedups.fan_out).
    __slots__ = (
        "__weakref__",
        "_batch_scheduled",
        "_blocked_pongs",
        "_close_timer",
        "_closed",
        "_cork",
        "_corked",
        "_drain_waiters",
        "_hold_timer",
        "_idle",
        "_idle_seen",
        "_idle_since",
        "_into_frame",
        "_keepalive",
        "_keepalive_deadline",
        "_keepalive_ping",
        "_lingering",
        "_lost",
        "_opening",
        "_parker",
        "_pause_reasons",
        "_quiet_timer",
        "_read_view",
        "_reading_paused",
        "_send_fd",
        "_write_paused",
        "bytes_in",
        "bytes_out",
        "conn",
        "failure",
        "holding_close",
        "id",
        "latency",
        "limits",
        "loop",
        "receiver",
        "transport",
    )

    def __init__(self, limits: Limits, role: Role = Role.SERVER) -> None:
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        #: A short id that log lines name the connection by.
        self.id = f"c{next(_ids):x}"
        #: Bytes received and handed to the transport (handshake included).
        self.bytes_in = 0
        self.bytes_out = 0
        #: The connection's state machine; CONNECTING until ``open``.
        self.conn = Connection(
            role, state=_CONNECTING, max_message_size=limits.max_message_size,
            max_fragments=limits.max_fragments, max_batch_messages=limits.max_batch_messages,
            max_batch_bytes=limits.max_batch_bytes,
        )
        #: Who gets the events once open (the WebSocket); None before and after.
        self.receiver: Receiver | None = None
        #: A failure found here (an unanswered keepalive ping), for the receiver to report.
        self.failure: BaseException | None = None
        #: Round-trip time of the last answered ping, in seconds (None before the first).
        self.latency: float | None = None
        self._keepalive_ping: tuple[bytes, float] | None = None  # payload, when sent
        self._reading_paused = False  # whether the transport's reading is paused
        self._pause_reasons = 0  # QUEUE | WRITE | BATCH
        self._write_paused = False
        # Bytes of pongs queued while the write buffer was not empty (the peer not reading).
        self._blocked_pongs = 0
        self._batch_scheduled = False
        # Made when drain() first waits: most connections never do.
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        # While the opening handshake is timed: the loop's handshakes this one is among.
        self._opening: Openings | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        #: Over TLS (no half-close), closes the connection once the peer has gone quiet.
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._keepalive_deadline: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_seen = -1  # messages in and out at the last idle check
        self._idle_since = 0.0
        #: While our answer to the peer's Close waits for the application (see _hold_close).
        self.holding_close = False
        # After failing the connection: our FIN is sent, the peer's input is being discarded.
        self._lingering = False
        # While listeners run from data_received, what they send is gathered here and written
        # once after them: one write (one system call) per read instead of one per message;
        # also while the listeners of another connection's read write to this one (_Cork).
        self._corked: list[bytes] | None = None
        self._cork = _thread_cork()
        self._read_view: memoryview | None = None  # the thread's buffer, on the first read
        # Where the C path may send to the transport's socket itself: (its descriptor, the
        # transport's get_write_buffer_size, is_closing), else None (writes.direct_send).
        self._send_fd: tuple[int, Any, Any] | None = None
        self._into_frame = False  # whether the last get_buffer gave a large frame's own room
        # Parks the codec once idle, when an extension (permessage-deflate) was negotiated.
        self._parker: Parker | None = None
        # Whether connection_lost has come; ``closed`` is made only when someone asks for it.
        self._lost = False
        self._closed: asyncio.Future[None] | None = None

    @property
    def closed(self) -> asyncio.Future[None]:
        """A future that is done once the TCP connection is lost."""
        closed = self._closed
        if closed is None:
            closed = self._closed = self.loop.create_future()
            if self._lost:
                closed.set_result(None)
        return closed

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it. (No
        # typing.cast: a Python call per connection.)
        tr: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = tr
        self._send_fd = direct_send(tr)
        limit = self.limits.write_limit
        kind = type(tr)
        defaults = _default_limits.get(kind)
        if defaults is None:
            # A fresh transport has its type's defaults: read once per type (a transport
            # that cannot tell gets the call every time).
            try:
                defaults = tuple(tr.get_write_buffer_limits())
            except (AttributeError, NotImplementedError):
                defaults = ()
            _default_limits[kind] = defaults
        if defaults != (limit // 4, limit):
            # (The default write_limit is the loops' own default: no call, which on asyncio
            # is three Python calls per connection.)
            tr.set_write_buffer_limits(high=limit, low=limit // 4)
        timeout = self.limits.open_timeout
        if timeout is not None and self.times_handshake:
            opening = _last_openings[0]
            if opening is None or opening.loop is not self.loop or opening.timeout != timeout:
                opening = _last_openings[0] = openings(self.loop, timeout)
            self._opening = opening
            opening.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._into_frame or self.conn.parser.buffered:
            # A frame is arriving, or a large one just came: a large one's payload is read
            # straight into its own buffer, with no copy out of the shared one, and after it
            # the next read into a spare that the next large frame may start in
            # (Connection.receive_buffer).
            room = self.conn.receive_buffer()
            if room is not None:
                self._into_frame = True
                return room
            self._into_frame = False
        view = self._read_view
        if view is None:
            view = self._read_view = read_buffer()
        return view

    def buffer_updated(self, nbytes: int) -> None:
        if self._into_frame:
            conn = self.conn
            self.bytes_in += nbytes
            events = conn.receive_into(nbytes)
            parser = conn.parser
            # Kept while a large frame arrives, and for the read after one (the next large
            # frame may start in a spare); the shared buffer again once a read brought
            # something else.
            self._into_frame = parser.large or parser.lent is not None
            self._handle(conn, events)
            return
        # Copied out before anything else runs: the buffer is shared, and the frame parser
        # keeps slices of its input between reads.
        view = self._read_view
        assert view is not None
        self.data_received(view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        conn = self.conn
        if conn.state is _OPEN and self._corked is None:
            # The fast path of a read that holds only whole messages (most reads): no event
            # objects, no replies of the core's own; else receive_data takes the same bytes.
            messages = conn.receive_messages(data)
            if messages is not None:
                receiver = self.receiver
                assert receiver is not None
                corked = self._corked = []
                cork = self._cork
                cork.depth += 1
                try:
                    receiver.receive_messages(messages)
                finally:
                    self._corked = None
                    cork.depth -= 1
                    if not cork.depth and cork.pending:
                        cork.flush()
                if corked:
                    transport = self.transport
                    if len(corked) == 1 and transport is not None:
                        transport.write(corked[0])  # _write_out's common case, inline
                    else:
                        self._write_out(corked)
                if conn.state is not _OPEN:
                    # A listener closed or failed the connection: what _handle does after them
                    # (no replies of the core's, no lent buffer: payloads from bytes are bytes;
                    # no codec to park: the fast path is taken only without an extension).
                    self._end_read(conn)
                return
        elif conn.state is _CONNECTING:
            self.handshake_data(data)
            return
        self._handle(conn, conn.receive_data(data))
        if conn.parser.buffered and self._read_view is None:
            # A frame is arriving on a transport that calls data_received (uvloop's).
            self._read_into_frame()

    def _read_into_frame(self) -> None:
        """While a large frame's payload arrives, let the transport read it straight into the
        frame's buffer: a transport that calls data_received (uvloop's, since this protocol
        is also an asyncio.Protocol) first reads into a buffer of its own and makes bytes of
        it, two copies of every byte. A stand-in protocol with get_buffer and buffer_updated
        takes its place until the frame is whole (transport.set_protocol)."""
        transport = self.transport
        # (A transport of another kind may lack get_protocol: it keeps reading as it does.)
        get_protocol = getattr(transport, "get_protocol", None)
        if (transport is None or get_protocol is None or transport.is_closing()
                or get_protocol() is not self or self.conn.receive_buffer() is None):
            return
        transport.set_protocol(FrameReader(self, self._handle))

    def _handle(self, conn: Connection, events: list[Event]) -> None:
        """Write the core's replies, hand the events up, end TCP when the core says so."""
        # Pongs go out first; a Close only after the listeners have answered the messages
        # that arrived before it (RFC 6455 §5.5.1: no data frames after our Close).
        out = conn.data_to_send(hold_close=True)
        replies = len(out)
        if events:
            receiver = self.receiver
            assert receiver is not None
            if self._keepalive_deadline is not None:
                self._check_pongs(events)
            if self._corked is None:
                if out:
                    self.bytes_out += len(out)
                    corked = self._corked = [out]
                else:
                    corked = self._corked = []
                cork = self._cork
                cork.depth += 1
                try:
                    receiver.receive_events(events)
                finally:
                    self._corked = None
                    cork.depth -= 1
                    if not cork.depth and cork.pending:
                        cork.flush()
                out = self._replies(conn, receiver)
                if out:
                    self.bytes_out += len(out)
                    corked.append(out)
                if corked:
                    self._write_out(corked)
                out = b""
            else:
                # Fed from a listener of an outer read, or written to by one: the single
                # write at the end of that read carries ours too.
                if out:
                    self.write(out)
                receiver.receive_events(events)
                out = self._replies(conn, receiver)
        if out:
            self.write(out)
        parker = self._parker
        if parker is not None:
            # Once idle, a compressing connection keeps only its windows' bytes, not its zlib
            # objects: some 40 KiB less per idle connection (PerMessageDeflate.park).
            parker.touch(conn)
        if replies and conn.state <= _LOCAL_CLOSING:
            # (Once the peer's Close came, no pong can cut the connection any more: nothing to
            # count, as _count_replies itself would conclude, for the Close we answer with.)
            self._count_replies(conn, replies)
        parser = conn.parser
        if parser.lent is not None:
            # The listeners are done with the payload views of a large frame (valid during the
            # call): their buffer may serve the next large frame, instead of going back to the
            # allocator and returning as page faults.
            del events
            parser.release()
        self._end_read(conn)

    def _end_read(self, conn: Connection) -> None:
        """What the state says once a read is handled: the closing handshake, or the rest
        of the read as the next batch."""
        if conn.state >= _REMOTE_CLOSING:
            if not self.holding_close:
                self._after_close_handshake()
        elif conn.events_pending and not self._batch_scheduled:
            # Fairness: the rest of this read waits for the next loop iteration, so other
            # connections run in between; reading waits too (the rest is already here).
            self._batch_scheduled = True
            self.pause_reading(BATCH)
            self.loop.call_soon(self._next_batch)

    def _next_batch(self) -> None:
        self._batch_scheduled = False
        transport = self.transport
        if transport is None or transport.is_closing() or self.receiver is None:
            return
        if self._pause_reasons & (QUEUE | WRITE):
            # The rest waits like unread input would: resume_reading() calls us again.
            return
        self._handle(self.conn, self.conn.receive_data(b""))
        if not self._batch_scheduled:
            self.resume_reading(BATCH)

    def _count_replies(self, conn: Connection, replies: int) -> None:
        """Pongs queued behind bytes the peer does not take are counted: once they pass
        ``write_limit`` while the buffer is over it, the peer is cut (1008), rather than
        answered without bound while it does not read."""
        transport = self.transport
        assert transport is not None
        size = transport.get_write_buffer_size()
        if not size:
            self._blocked_pongs = 0
            return
        self._blocked_pongs += replies
        limit = self.limits.write_limit
        if size <= limit or self._blocked_pongs <= limit or conn.state > _LOCAL_CLOSING:
            return
        events = conn.fail(PolicyViolation("too many pings while the connection does not read"))
        receiver = self.receiver
        assert receiver is not None
        receiver.receive_events(events)
        out = conn.data_to_send()
        if out:
            self.write(out)

    def _replies(self, conn: Connection, receiver: Receiver) -> bytes:
        """What the core still has to send after the listeners ran: its Close, unless the
        application has yet to answer messages that came before it (then it is held)."""
        # (A Close can be pending only once the connection is no longer OPEN: one identity
        # test on the common path.)
        if conn.state is not _OPEN and conn.close_pending and receiver.answers_pending():
            self._hold_close()
            return conn.data_to_send(hold_close=True)
        return conn.data_to_send()

    def _hold_close(self) -> None:
        """RFC 6455 §5.5.1 lets an endpoint delay its Close until what it is sending is sent:
        an ``async for message in ws: ws.send(message)`` loop gets the messages that came in
        the same read as the peer's Close before that Close is answered. Bounded in time."""
        if self.holding_close:
            return
        self.holding_close = True
        timeout = self.limits.close_timeout
        if timeout is not None:
            self._hold_timer = self.loop.call_later(timeout, self.answers_drained)

    def answers_drained(self) -> None:
        """The receiver has answered what came before the peer's Close: send the Close now."""
        if not self.holding_close:
            return
        self.holding_close = False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        out = self.conn.data_to_send()
        if out:
            self.write(out)
        self._after_close_handshake()

    def eof_received(self) -> bool | None:
        if self.conn.state is not _CONNECTING:
            self.conn.receive_eof()
        # Returning None lets asyncio close the transport; connection_lost follows.
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.conn.state is not _CONNECTING:
            self.pause_reading(WRITE)

    def resume_writing(self) -> None:
        self._write_paused = False
        self.resume_reading(WRITE)
        self._wake_drainers()

    def connection_lost(self, exc: Exception | None) -> None:
        opening = self._opening
        if opening is not None:
            self._opening = None
            opening.remove(self)
        # Each timer tested apart: most connections have none, and a tuple of six and its
        # loop cost more than the tests.
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._keepalive_deadline is not None:
            self._keepalive_deadline.cancel()
            self._keepalive_deadline = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._parker is not None:
            self._parker.forget(self.conn)
            self._parker = None
        connecting = self.conn.state is _CONNECTING
        self.conn.connection_lost()
        if self._drain_waiters is not None:  # (most connections never waited in drain())
            self._wake_drainers()
        receiver = self.receiver
        if receiver is not None:
            # The receiver keeps its protocol (for its state); the protocol lets go of it.
            self.receiver = None
            receiver.connection_ended(exc)
        elif connecting:
            self.handshake_lost(exc)
        self._lost = True
        closed = self._closed
        if closed is not None and not closed.done():
            closed.set_result(None)

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- the opening handshake, for subclasses -----------------------------------------------

    def handshake_data(self, data: bytes) -> None:
        """Bytes that arrived while CONNECTING (the HTTP head, then what follows it)."""
        raise NotImplementedError

    def handshake_lost(self, exc: Exception | None) -> None:
        """The transport closed before the handshake completed."""

    def open_timed_out(self) -> None:
        """``limits.open_timeout`` passed (``shared.Openings``): drop a connection still
        in its handshake."""
        self._opening = None
        if self.conn.state is _CONNECTING and self.transport is not None:
            logger.info("[%s] opening handshake timed out; dropping the connection", self.id)
            self.transport.abort()

    def open(self, receiver: Receiver, extensions: Sequence[Extension], early: bytes = b"",
             ) -> None:
        """The opening handshake succeeded: the connection is OPEN, its events go to
        ``receiver``. ``early``: bytes that came behind the HTTP head (kept for
        ``feed_pending``, with anything that arrives before it)."""
        opening = self._opening
        if opening is not None:
            self._opening = None
            opening.remove(self)
        conn = self.conn
        conn.receive_early(early)
        conn.handshake_complete(extensions)
        if extensions:
            self._parker = parker(self.loop)
        self.receiver = receiver
        if self.limits.ping_interval:
            self._keepalive = self.loop.call_later(self.limits.ping_interval,
                                                   self._keepalive_tick)
        if self.limits.idle_timeout:
            self._idle = self.loop.call_later(self.limits.idle_timeout / 4, self._idle_tick)

    def receive_early(self, data: bytes) -> None:
        """Keep bytes that arrive while the upgrade is decided (a hook runs) for later."""
        self.conn.receive_early(data)

    def feed_pending(self) -> None:
        """Process the frames that came with the HTTP head, once listeners may be set."""
        conn = self.conn
        if conn.has_pending and self.transport is not None and not self.transport.is_closing():
            self._handle(conn, conn.receive_pending())

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.bytes_out += len(data)
        corked = self._corked
        if corked is not None:
            corked.append(data)
            return
        cork = self._cork
        if cork.depth:
            # A listener of another connection's read writes here: corked until its end.
            self._corked = [data]
            cork.pending.append(self)
            return
        transport = self.transport
        assert transport is not None
        transport.write(data)

    def write_parts(self, header: bytes, payload: bytes) -> None:
        """``write(header)`` then ``write(payload)`` (a large frame in two parts, see
        ``Connection.send_parts``): one system call where the transport gathers them."""
        transport = self.transport
        if (transport is not None and len(header) + len(payload) > JOIN_LIMIT
                and not gathers(transport)):
            # A transport that cannot gather (asyncio's before 3.12) sent the header alone,
            # a 10-byte segment at once (asyncio sets TCP_NODELAY) that woke the peer for
            # nothing, then the whole payload, paced out as write_gathered says. The header
            # goes with the payload's first HEAD_PART bytes (a copy of that much), the rest
            # as a view; write_runs keeps them apart.
            view = memoryview(payload)
            header = header + view[:HEAD_PART]
            payload = view[HEAD_PART:]  # type: ignore[assignment]
        if self._corked is not None or self._cork.depth:
            self.write(header)
            self.write(payload)
            return
        self.bytes_out += len(header) + len(payload)
        self._write_out([header, payload])

    def _write_out(self, corked: list[bytes]) -> None:
        """Hand corked frames to the transport: one write, or large ones each as it is (a
        frame fanned out to many stays one object, not a copy per subscriber)."""
        transport = self.transport
        if transport is None:
            return
        if len(corked) == 1:
            # (One frame is written as it is: no copy of a large message.)
            transport.write(corked[0])
            return
        size = 0
        for data in corked:
            size += len(data)
        if size <= JOIN_LIMIT:  # (flush_corked's twins do the same)
            transport.write(b"".join(corked))
        elif gathers(transport):
            # One system call for each frame over the limit, with the frames before it:
            # uvloop's writelines is a writev of the objects as they are (asyncio's own,
            # before 3.12, would join them into one copy).
            write_gathered(transport, corked)
        else:
            write_runs(transport, corked, JOIN_LIMIT)

    def _flush_corked(self) -> None:
        """Hand what listeners sent so far to the transport (before it closes or is measured)."""
        corked = self._corked
        if corked and self.transport is not None:
            self._write_out(corked)
            corked.clear()

    @property
    def buffered_amount(self) -> int:
        self._flush_corked()
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def buffered_over(self, limit: int) -> int:
        """The bytes queued, corked ones included, if more than ``limit``; else 0.

        The same answer as ``buffered_amount > limit``, without handing corked frames over
        when their count alone cannot pass the limit (the kernel would take some of them)."""
        transport = self.transport
        if transport is None:
            return 0
        size = transport.get_write_buffer_size()
        corked = self._corked
        if corked:
            for data in corked:
                size += len(data)
            if size > limit:
                self._write_out(corked)
                corked.clear()
                size = transport.get_write_buffer_size()
        return size if size > limit else 0

    async def drain(self) -> None:
        """Wait until the write buffer is below its low-water mark or the connection is lost."""
        if self._write_paused and not self._lost:
            waiter = self.loop.create_future()
            if self._drain_waiters is None:
                self._drain_waiters = [waiter]
            else:
                self._drain_waiters.append(waiter)
            await waiter

    # -- reading -----------------------------------------------------------------------------

    def pause_reading(self, reason: int = QUEUE) -> None:
        """Stop reading for ``reason`` (QUEUE, WRITE or BATCH) until it is resumed."""
        self._pause_reasons |= reason
        transport = self.transport
        if not self._reading_paused and transport is not None and not transport.is_closing():
            self._reading_paused = True
            transport.pause_reading()

    def resume_reading(self, reason: int = QUEUE) -> None:
        """Drop ``reason`` (every reason with ``_ALL``); reading resumes once none is left."""
        self._pause_reasons &= ~reason
        if (self._pause_reasons == BATCH and not self._batch_scheduled
                and self.conn.events_pending):
            # A batch held back by a full inbox or write buffer may go on now.
            self._batch_scheduled = True
            self.loop.call_soon(self._next_batch)
        if self._reading_paused and not self._pause_reasons and self.transport is not None:
            self._reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # -- keepalive (RFC 6455 §5.5.2, §7.1.7) -------------------------------------------------

    def _keepalive_tick(self) -> None:
        self._keepalive = None
        limits = self.limits
        if self.conn.state is not _OPEN or limits.ping_interval is None:
            return
        # Four random bytes: never the payload of a ping the application awaits.
        payload = os.urandom(4)
        self.write(self.conn.send_ping(payload))
        self._keepalive_ping = (payload, self.loop.time())
        if limits.ping_timeout is not None and self._keepalive_deadline is None:
            self._keepalive_deadline = self.loop.call_later(limits.ping_timeout,
                                                            self._keepalive_expired)
        self._keepalive = self.loop.call_later(limits.ping_interval, self._keepalive_tick)

    def _check_pongs(self, events: list[Event]) -> None:
        # Any pong answers: RFC 6455 §5.5.3 lets a peer answer only the latest ping.
        for event in events:
            if type(event) is Pong:
                assert self._keepalive_deadline is not None
                self._keepalive_deadline.cancel()
                self._keepalive_deadline = None
                sent = self._keepalive_ping
                if sent is not None and event.data == sent[0]:
                    self.latency = self.loop.time() - sent[1]
                self._keepalive_ping = None
                return

    def _keepalive_expired(self) -> None:
        self._keepalive_deadline = None
        conn = self.conn
        if conn.state is not _OPEN:
            return
        peer = self.transport.get_extra_info("peername") if self.transport else None
        logger.warning("[%s] keepalive ping to %s not answered; closing with 1011", self.id,
                       peer)
        error = KeepaliveTimeout()
        if self.failure is None:
            self.failure = error
        # The peer is unresponsive: fail the connection (RFC 6455 §7.1.7) instead of waiting
        # for a closing handshake that will not come.
        self.write(conn.send_close(error.code, error.reason))
        self.close_transport()

    def _idle_tick(self) -> None:
        """No message either way for ``idle_timeout`` seconds: close with 1001 (going away).
        Checked four times per period from a message count, so messages cost no timer."""
        self._idle = None
        timeout = self.limits.idle_timeout
        conn = self.conn
        if conn.state is not _OPEN or not timeout:
            return
        now = self.loop.time()
        seen = conn.messages_in + conn.messages_out
        if seen != self._idle_seen:
            self._idle_seen, self._idle_since = seen, now
        elif now - self._idle_since >= timeout:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            logger.info("[%s] no message for %.0f s; closing %s with 1001", self.id, timeout,
                        peer)
            self.start_close(CloseCode.GOING_AWAY, "idle timeout")
            return
        self._idle = self.loop.call_later(timeout / 4, self._idle_tick)

    # -- closing -----------------------------------------------------------------------------

    def start_close(self, code: int, reason: str) -> None:
        """Send our Close (RFC 6455 §7.1.2) if still open; wait for the peer's, bounded."""
        conn = self.conn
        if conn.state is _OPEN:
            self.write(conn.send_close(code, reason))
        # Read the peer's Close even when the inbox is full (the wait is bounded in time).
        self.resume_reading()
        self.start_close_timer()

    def _after_close_handshake(self) -> None:
        """The closing handshake is done (or the connection failed): do what the core says
        with TCP (``Connection.ending``), each wait bounded by close_timeout."""
        transport = self.transport
        assert transport is not None
        if self._lingering:
            if self._quiet_timer is not None:  # more input: the peer is not done yet
                self._quiet_timer.cancel()
                self._quiet_timer = self.loop.call_later(_QUIET, self.close_transport)
            return
        ending = self.conn.ending
        if ending is _HALF_CLOSE and not transport.is_closing():
            self._linger()
        elif ending is _END_CLOSE or ending is _HALF_CLOSE:
            self.close_transport()
        else:
            # RFC 6455 §7.1.1: the client waits for the server to close TCP, but not forever.
            self.start_close_timer()

    def _linger(self) -> None:
        """Discard input without resetting the connection: half-close (FIN after what is
        queued), or over TLS close once the peer is quiet; abort after close_timeout.

        The receiver ends now, as it would with the TCP close: nothing more will reach it.
        """
        assert self.transport is not None
        self._lingering = True
        self._flush_corked()
        if self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:
                # The peer is gone already (reset while a batch waited): nothing to linger for.
                self.transport.abort()
                receiver = self.receiver
                if receiver is not None:
                    self.receiver = None
                    receiver.connection_ended(None)
                return
        else:
            # TLS cannot half-close: close once the peer stopped sending for a moment (it has
            # read our Close frame by then, and answered it).
            self._quiet_timer = self.loop.call_later(_QUIET, self.close_transport)
        # Input is discarded from now on: it makes no output, so nothing holds reading back.
        self.resume_reading(_ALL)
        self.start_close_timer()
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            receiver.connection_ended(None)

    def close_transport(self) -> None:
        """Close after flushing; abort if the peer does not take the bytes in time."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._corked:
            self._flush_corked()
        transport.close()
        if transport.get_write_buffer_size() or not transport.can_write_eof():
            # Bytes still to write, or TLS's closing handshake: the peer may never take them,
            # so the wait is bounded. Plain TCP with nothing left closes now (connection_lost
            # comes on the next iteration): no timer for the whole of a storm's connections.
            self.start_close_timer()

    def start_close_timer(self, timeout: float | None = None) -> None:
        if self._close_timer is not None:
            return
        if timeout is None:
            timeout = self.limits.close_timeout
        if timeout is not None:
            self._close_timer = self.loop.call_later(timeout, self.abort)

    def abort(self) -> None:
        if self._corked:
            self._corked.clear()  # aborting drops what is unsent, gathered bytes included
        if self.transport is not None:
            self.transport.abort()


#: ``WebSocketProtocol.data_received`` with its common case in C when the extension is built
#: (``_speedups.Reader``): a read of whole messages on an OPEN connection without an
#: extension, nothing buffered or corked, goes from the parser to the plain listeners of a
#: ``dispatch.Dispatcher`` (which registers itself as ``compiled_reader.dispatch``) and out in
#: one write, without a Python frame of the binding, ``Connection.receive_messages`` or
#: ``Dispatcher.receive_messages``, on their slots. Every other read goes to the pure method
#: above, which stays the one definition of what a read does; None when not built.
compiled_reader: Any = getattr(speedups, "Reader", None)
if compiled_reader is not None:
    compiled_reader = functools.update_wrapper(
        compiled_reader(WebSocketProtocol.data_received, _OPEN, Connection, FrameParser),
        WebSocketProtocol.data_received)
    setattr(WebSocketProtocol, "data_received", compiled_reader)  # noqa: B010 - mypy
    assert speedups is not None
    # buffer_updated too (asyncio): a read into the shared buffer goes to the Reader's
    # common case without a Python frame; a large frame's own room to the pure method.
    setattr(WebSocketProtocol, "buffer_updated", functools.update_wrapper(  # noqa: B010
        speedups.BufferUpdated(WebSocketProtocol.buffer_updated, compiled_reader),
        WebSocketProtocol.buffer_updated))
    # and get_buffer: the shared buffer without a Python frame while no frame is arriving.
    setattr(WebSocketProtocol, "get_buffer", functools.update_wrapper(  # noqa: B010
        speedups.GetBuffer(WebSocketProtocol.get_buffer), WebSocketProtocol.get_buffer))
