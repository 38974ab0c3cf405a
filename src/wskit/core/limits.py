"""Every limit and timeout of a connection, each default written once (docs/architecture.md).

The core reads the sizes, the asyncio binding the timeouts; ``App``, ``connect`` and the
command line's ``--help`` take their defaults from the constants below. Nothing here does
I/O: timeouts are plain numbers of seconds, which the binding turns into timers.
"""

from __future__ import annotations

__all__ = [
    "CLOSE_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_CONNECTIONS",
    "MAX_FRAGMENTS",
    "MAX_HANDSHAKES",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "MAX_QUEUE",
    "OPEN_TIMEOUT",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "WRITE_LIMIT",
    "Limits",
]

#: Largest message accepted, after decompression, in bytes (1009 beyond it).
MAX_MESSAGE_SIZE = 1 << 20
#: Messages (or coroutine-listener calls) kept before reading from the socket pauses.
MAX_QUEUE = 32
#: Write buffer high-water mark in bytes; ``drain()`` waits until it falls below a quarter.
WRITE_LIMIT = 64 * 1024
#: Seconds for the opening handshake (TCP, TLS and HTTP upgrade).
OPEN_TIMEOUT: float | None = 10.0
#: Seconds for the closing handshake and the TCP close after it.
CLOSE_TIMEOUT: float | None = 10.0
#: Seconds between keepalive pings (None: no keepalive).
PING_INTERVAL: float | None = 20.0
#: Seconds a keepalive ping may wait for its pong before the connection fails with 1011.
PING_TIMEOUT: float | None = 20.0
#: Seconds without a message either way after which a connection is closed with 1001
#: (None: never; keepalive pings do not count as messages).
IDLE_TIMEOUT: float | None = None
#: The HTTP head of an upgrade request or response: longest line, most header lines, bytes.
MAX_LINE_LENGTH = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024
#: Open WebSocket connections a server accepts before answering 503.
MAX_CONNECTIONS = 10_000
#: Opening handshakes a server lets run at once before answering 503 at accept.
MAX_HANDSHAKES = 1_000
#: Frames one message may come in (conformance suites send 65,536); 1009 beyond.
MAX_FRAGMENTS = 100_000
#: Messages, and message bytes, one read hands to listeners before the event loop runs
#: others (one message may be larger than the bytes).
MAX_BATCH_MESSAGES = 100
MAX_BATCH_BYTES = 1 << 20


class Limits:
    """Limits and timeouts of one connection; every one is an argument with a safe default.

    Args:
        max_message_size: Largest message accepted, after decompression, in bytes (1009
            beyond it).
        max_queue: Messages (or coroutine-listener calls) kept before reading pauses.
        write_limit: Write buffer high-water mark in bytes; ``drain()`` waits until the
            buffer falls below a quarter of it.
        open_timeout: Seconds for the opening handshake (None: no limit).
        close_timeout: Seconds for the closing handshake and the TCP close after it.
        ping_interval: Seconds between keepalive pings (None: no keepalive).
        ping_timeout: Seconds a keepalive ping may wait for its pong (1011 after it).
        max_line_length: Longest line of the HTTP head of the handshake.
        max_headers: Most header lines in that head.
        max_header_bytes: Largest head, in bytes.
        max_fragments: Frames one message may come in (1009 beyond).
        max_batch_messages: Messages one read hands to listeners before the loop runs others.
        max_batch_bytes: Message bytes one read hands to listeners before the loop runs others.
        idle_timeout: Seconds without a message either way after which the connection is
            closed with 1001 (None: never; keepalive pings do not count as messages).

    Raises:
        ValueError: ``max_queue``, ``max_fragments``, ``max_batch_*`` below 1, or a
            ``max_message_size`` that is not positive.
    """

    __slots__ = (
        "close_timeout",
        "idle_timeout",
        "max_batch_bytes",
        "max_batch_messages",
        "max_fragments",
        "max_header_bytes",
        "max_headers",
        "max_line_length",
        "max_message_size",
        "max_queue",
        "open_timeout",
        "ping_interval",
        "ping_timeout",
        "write_limit",
    )

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_queue: int = MAX_QUEUE,
        write_limit: int = WRITE_LIMIT,
        open_timeout: float | None = OPEN_TIMEOUT,
        close_timeout: float | None = CLOSE_TIMEOUT,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
        max_line_length: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_HEADERS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_fragments: int = MAX_FRAGMENTS,
        max_batch_messages: int = MAX_BATCH_MESSAGES,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        idle_timeout: float | None = IDLE_TIMEOUT,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if max_fragments < 1 or max_batch_messages < 1 or max_batch_bytes < 1:
            raise ValueError("max_fragments, max_batch_messages and max_batch_bytes must be "
                             "at least 1")
        if max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_line_length = max_line_length
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        #: Frames one message may come in (1009 beyond).
        self.max_fragments = max_fragments
        #: Messages, and message bytes, handed to listeners before yielding to the event loop.
        self.max_batch_messages = max_batch_messages
        self.max_batch_bytes = max_batch_bytes
        #: Seconds without a message after which the connection closes with 1001 (None: off).
        self.idle_timeout = idle_timeout

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Limits({fields})"
