"""The asyncio binding: one Protocol that feeds the core, writes its output and keeps time."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..core.connection import Connection, Role, State
from ..core.errors import PolicyViolation, RemoteError
from ..core.extensions import Extension
from ..core.limits import Limits

if TYPE_CHECKING:
    from ..websocket import WebSocket

__all__ = ["BATCH", "QUEUE", "WRITE", "WebSocketProtocol"]

logger = logging.getLogger("wskit")

_REMOTE_CLOSING = State.REMOTE_CLOSING
_OPEN = State.OPEN
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
# Reads land in one buffer per thread, shared by that thread's connections (each copies out at
# once): asyncio's plain Protocol path allocates a fresh 256 KiB bytes per read instead, which
# glibc serves with mmap, mremap and munmap, three system calls for every message of a round
# trip. The size matches that read size, so large messages take as few reads as before.
_READ_BUFFER_SIZE = 256 * 1024
_per_thread = threading.local()
# Short connection ids for log lines ("c1f"): unique in the process, cheap to read.
_ids = itertools.count(1)


def _read_buffer() -> memoryview:
    view: memoryview | None = getattr(_per_thread, "view", None)
    if view is None:
        view = _per_thread.view = memoryview(bytearray(_READ_BUFFER_SIZE))
    return view


class WebSocketProtocol(asyncio.Protocol, asyncio.BufferedProtocol):
    """Owns the transport of one connection: handshake bytes first, then WebSocket frames.

    Subclasses implement ``_handshake_data`` (server or client side) and call ``_open``.
    """

    # Both bases on purpose: asyncio's transports read through get_buffer/buffer_updated when
    # the protocol is a BufferedProtocol, which spares a 256 KiB allocation per read (half
    # the CPU of a round trip); uvloop's use data_received when it is a Protocol, which is
    # cheaper there than a buffer (uvloop already reads into a reused buffer of its own).

    #: Whether this protocol bounds the opening handshake with ``limits.open_timeout`` itself.
    times_handshake = True
    #: After failing the connection: our FIN is sent, the peer's input is being discarded.
    _lingering = False
    #: Over TLS (no half-close), closes the connection once the peer has gone quiet.
    _quiet_timer: asyncio.TimerHandle | None = None

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.ws: WebSocket | None = None
        #: A short id that log lines name the connection by.
        self.id = f"c{next(_ids):x}"
        #: Bytes received and handed to the transport (handshake included).
        self.bytes_in = 0
        self.bytes_out = 0
        self._reading_paused = False  # whether the transport's reading is paused
        self._pause_reasons = 0  # QUEUE | WRITE | BATCH
        self._write_paused = False
        # Bytes of pongs queued while the write buffer was not empty (the peer not reading).
        self._blocked_pongs = 0
        self._batch_scheduled = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._open_timer: asyncio.TimerHandle | None = None
        self._pending_leftover = b""
        # While listeners run from data_received, what they send is gathered here and written
        # once after them: one write (one system call) per read instead of one per message.
        self._corked: list[bytes] | None = None
        self._read_view: memoryview | None = None  # the thread's buffer, on the first read
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        limit = self.limits.write_limit
        transport.set_write_buffer_limits(high=limit, low=limit // 4)
        if self.limits.open_timeout is not None and self.times_handshake:
            self._open_timer = self.loop.call_later(self.limits.open_timeout, self._open_timed_out)

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._read_view
        if view is None:
            view = self._read_view = _read_buffer()
        return view

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out before anything else runs: the buffer is shared, and the frame parser
        # keeps slices of its input between reads.
        view = self._read_view
        assert view is not None
        self.data_received(view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        conn = self.conn
        if conn is None:
            self._handshake_data(data)
            return
        events = conn.receive_data(data)
        # Pongs go out first; a Close only after the listeners have answered the messages
        # that arrived before it (RFC 6455 §5.5.1: no data frames after our Close).
        out = conn.data_to_send(hold_close=True)
        replies = len(out)
        if events:
            ws = self.ws
            assert ws is not None
            if self._corked is None:
                corked = self._corked = [out] if out else []
                try:
                    ws._dispatch(events)
                finally:
                    self._corked = None
                out = conn.data_to_send()
                if corked:
                    if out:
                        corked.append(out)
                    # (One frame is written as it is: no copy of a large message.)
                    out = corked[0] if len(corked) == 1 else b"".join(corked)
            else:
                # Fed from a listener of an outer read: its single write carries ours too.
                if out:
                    self.write(out)
                ws._dispatch(events)
                out = conn.data_to_send()
        if out:
            self.write(out)
        if replies:
            self._count_replies(conn, replies)
        parser = conn.parser
        if parser.lent is not None:
            # The listeners are done with the payload views of a large frame (valid during the
            # call): their buffer may serve the next large frame, instead of going back to the
            # allocator and returning as page faults.
            del events
            parser.release()
        if conn.state >= _REMOTE_CLOSING:
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
        if transport is None or transport.is_closing() or self.conn is None:
            return
        if self._pause_reasons & (QUEUE | WRITE):
            # The rest waits like unread input would: resume_reading() calls us again.
            return
        self.data_received(b"")
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
        if size <= limit or self._blocked_pongs <= limit or conn.state > State.LOCAL_CLOSING:
            return
        events = conn.fail(PolicyViolation("too many pings while the connection does not read"))
        ws = self.ws
        assert ws is not None
        ws._dispatch(events)
        out = conn.data_to_send()
        if out:
            self.write(out)

    def eof_received(self) -> bool | None:
        # Returning None lets asyncio close the transport; connection_lost follows.
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.conn is not None:
            self.pause_reading(WRITE)

    def resume_writing(self) -> None:
        self._write_paused = False
        self.resume_reading(WRITE)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._close_timer, self._open_timer):
            if handle is not None:
                handle.cancel()
        conn = self.conn
        if conn is not None:
            conn.connection_lost()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        ws = self.ws
        if ws is not None:
            ws._finish(exc)
        else:
            self._handshake_lost(exc)
        self._pending_leftover = b""
        if not self.closed.done():
            self.closed.set_result(None)

    # -- for subclasses and the WebSocket ----------------------------------------------------

    def _handshake_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _handshake_lost(self, exc: Exception | None) -> None:
        """The transport closed before the handshake completed."""

    def _open_timed_out(self) -> None:
        self._open_timer = None
        if self.conn is None and self.transport is not None:
            logger.info("[%s] opening handshake timed out; dropping the connection", self.id)
            self.transport.abort()

    def _open(
        self,
        role: Role,
        request: Any,
        subprotocol: str | None,
        extensions: Sequence[Extension],
        leftover: bytes,
        response_headers: Any = None,
    ) -> WebSocket:
        """The opening handshake succeeded: create the Connection and the user's WebSocket."""
        from ..websocket import WebSocket

        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        limits = self.limits
        self.conn = Connection(
            role, max_message_size=limits.max_message_size, max_fragments=limits.max_fragments,
            max_batch_messages=limits.max_batch_messages, max_batch_bytes=limits.max_batch_bytes,
            extensions=extensions,
        )
        self.ws = WebSocket(self, request, subprotocol, list(extensions), response_headers)
        self._pending_leftover = leftover
        return self.ws

    def _feed_leftover(self) -> None:
        """Process bytes that arrived right behind the handshake, once listeners may be set."""
        leftover = self._pending_leftover
        self._pending_leftover = b""
        if leftover and self.transport is not None and not self.transport.is_closing():
            self.data_received(leftover)

    def write(self, data: bytes) -> None:
        self.bytes_out += len(data)
        corked = self._corked
        if corked is not None:
            corked.append(data)
            return
        transport = self.transport
        assert transport is not None
        transport.write(data)

    def _flush_corked(self) -> None:
        """Hand what listeners sent so far to the transport (before it closes or is measured)."""
        corked = self._corked
        if corked and self.transport is not None:
            self.transport.write(b"".join(corked))
            corked.clear()

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
        if (self._pause_reasons == BATCH and not self._batch_scheduled and self.conn is not None
                and self.conn.events_pending):
            # A batch held back by a full inbox or write buffer may go on now.
            self._batch_scheduled = True
            self.loop.call_soon(self._next_batch)
        if self._reading_paused and not self._pause_reasons and self.transport is not None:
            self._reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    async def drain(self) -> None:
        """Wait until the write buffer is below its low-water mark or the connection is lost."""
        if self._write_paused and not self.closed.done():
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _after_close_handshake(self) -> None:
        """The closing handshake is done (or the connection failed): end the TCP connection."""
        conn = self.conn
        transport = self.transport
        assert conn is not None and transport is not None
        if self._lingering:
            if self._quiet_timer is not None:  # more input: the peer is not done yet
                self._quiet_timer.cancel()
                self._quiet_timer = self.loop.call_later(_QUIET, self.close_transport)
            return
        failed = self.ws is not None and isinstance(self.ws.error, RemoteError)
        if failed and conn.state is State.CLOSED and not transport.is_closing():
            # We failed the connection (RFC 6455 §7.1.7) while the peer may still be sending,
            # a big message for instance: closing a socket with unread input resets it (RST),
            # and the peer may lose our Close frame. Send FIN behind the Close instead, and
            # discard the input until the peer closes (eof_received) or close_timeout passes.
            self._linger()
        elif conn.should_close_transport:
            self.close_transport()
        else:
            # RFC 6455 §7.1.1: the client waits for the server to close TCP, but not forever.
            self.start_close_timer()

    def _linger(self) -> None:
        """Discard input without resetting the connection: half-close (FIN after what is
        queued), or over TLS close once the peer is quiet; abort after close_timeout.

        The WebSocket ends now, as it would with the TCP close: nothing more will reach it.
        """
        assert self.transport is not None and self.ws is not None
        self._lingering = True
        self._flush_corked()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            # TLS cannot half-close: close once the peer stopped sending for a moment (it has
            # read our Close frame by then, and answered it).
            self._quiet_timer = self.loop.call_later(_QUIET, self.close_transport)
        # Input is discarded from now on: it makes no output, so nothing holds reading back.
        self.resume_reading(_ALL)
        self.start_close_timer()
        self.ws._finish(None)

    def close_transport(self) -> None:
        """Close after flushing; abort if the peer does not take the bytes in time."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._flush_corked()
        transport.close()
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

    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, fn)

    @property
    def buffered_amount(self) -> int:
        self._flush_corked()
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0
