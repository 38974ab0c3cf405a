"""How frames are handed to a transport: joined, gathered or in runs, and which transports'
sockets the C path may send to itself (docs/architecture.md, the path of a sent message)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["HEAD_PART", "JOINING_WRITELINES", "JOIN_LIMIT", "SENDING_TRANSPORTS", "direct_send",
           "gathers", "socket_fd", "write_gathered", "write_runs"]

#: The transports whose write, with nothing buffered, is one send() on their socket: asyncio's
#: plain TCP and unix transport and uvloop's (by module and name: no import of theirs). The C
#: path (``_speedups.Reader``, ``Sender``) makes that send itself on those (``_send_fd``);
#: TLS, a proxy's tunnel or any other transport is written through ``write`` only.
#: (``_send_fd``: the descriptor and the transport's get_write_buffer_size and is_closing,
#: bound once, which it asks before each send.)
SENDING_TRANSPORTS = frozenset({
    ("asyncio.selector_events", "_SelectorSocketTransport"),
    ("uvloop.loop", "TCPTransport"),
    ("uvloop.loop", "UnixTransport"),
})


#: Whether a transport type is one of ``SENDING_TRANSPORTS``, by type (``socket_fd``).
_sending_kinds: dict[type, bool] = {}


def socket_fd(transport: asyncio.BaseTransport) -> int:
    """The descriptor of ``transport``'s socket where it is one of ``SENDING_TRANSPORTS``,
    else -1."""
    kind = type(transport)
    sending = _sending_kinds.get(kind)
    if sending is None:
        # Once per type: a C type makes new strings of its __module__ and __qualname__ at
        # each look, some 500 ns per connection of a storm.
        sending = _sending_kinds[kind] = (kind.__module__, kind.__qualname__) in \
            SENDING_TRANSPORTS
    if not sending:
        return -1
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno())
    except (AttributeError, OSError, ValueError):
        return -1


def direct_send(transport: asyncio.Transport) -> tuple[int, Any, Any] | None:
    """What the C path needs to send on ``transport``'s socket itself: its descriptor and the
    transport's get_write_buffer_size and is_closing, bound once; None where it may not."""
    fd = socket_fd(transport)
    if fd < 0:
        return None
    return fd, transport.get_write_buffer_size, transport.is_closing


#: Corked bytes beyond which a connection's frames are handed over one by one, not joined
#: into one copy: the copy would cost more than the system calls it saves.
JOIN_LIMIT = 64 * 1024
#: The payload bytes a large frame's header takes along on a transport that cannot gather
#: (``write_parts``): half the join limit, so that the run it starts in ``write_runs`` is
#: never the header alone.
HEAD_PART = JOIN_LIMIT // 2
#: The writelines that joins its buffers into one copy (asyncio's default): a transport that
#: has its own gathers them into one system call instead (uvloop's writev).
JOINING_WRITELINES = asyncio.WriteTransport.writelines


def gathers(transport: asyncio.BaseTransport) -> bool:
    """Whether ``transport``'s type has a writelines of its own (uvloop's writev), not the
    one that joins its buffers into one copy."""
    return getattr(type(transport), "writelines", JOINING_WRITELINES) is not JOINING_WRITELINES


def write_gathered(transport: asyncio.WriteTransport, frames: list[bytes]) -> None:
    """Write ``frames`` (more than ``JOIN_LIMIT`` bytes in all) to a transport that gathers
    buffers (uvloop's ``writelines``: one writev, no copy): a frame of ``JOIN_LIMIT`` bytes
    or more goes as its first ``JOIN_LIMIT`` bytes, with the small frames before it, in one
    call, then its rest, as a view; small frames go together up to ``JOIN_LIMIT`` bytes.

    Why the first bytes apart: one writev of a whole large frame made the kernel pace it out
    (TCP pacing, BBR's, the default congestion control of the measuring host), with a timer
    and a wake-up of the peer every segment or two: in the 1 MiB echo, 7 timers and 8
    wake-ups per MiB, where a first write of 64 KiB and then the rest cost 0.7 and 1.8, and
    35-45% less of the server's CPU per MiB (bench bulk_1m_bin, 2026-12-02)."""
    head: list[bytes | memoryview] = []
    size = 0
    for data in frames:
        n = len(data)
        if n < JOIN_LIMIT:
            if size + n > JOIN_LIMIT:
                _write_head(transport, head)
                head, size = [], 0
            head.append(data)
            size += n
            continue
        view = memoryview(data)
        head.append(view[:JOIN_LIMIT])
        _write_head(transport, head)
        head, size = [], 0
        if n > JOIN_LIMIT:
            transport.write(view[JOIN_LIMIT:])
    if head:
        _write_head(transport, head)


def _write_head(transport: asyncio.WriteTransport, head: list[bytes | memoryview]) -> None:
    """One call for ``head``: as it is, or gathered."""
    if len(head) == 1:
        transport.write(head[0])
    else:
        transport.writelines(head)


def write_runs(transport: asyncio.WriteTransport, frames: list[bytes], join_limit: int,
               ) -> None:
    """Write ``frames`` joined in runs of at most ``join_limit`` bytes, a frame larger than
    that by itself as it is (no copy): one write per frame made asyncio's transport (before
    3.12) send each at once, a system call per message (a read of 100 pipelined 1 KiB
    messages answered by 100 sends). The twin of ``_speedups.flush_corked``'s."""
    run: list[bytes] = []
    size = 0
    for data in frames:
        n = len(data)
        if run and size + n > join_limit:
            transport.write(run[0] if len(run) == 1 else b"".join(run))
            run = []
            size = 0
        run.append(data)
        size += n
        if size > join_limit:  # one frame over the limit, alone
            transport.write(data)
            run = []
            size = 0
    if run:
        transport.write(run[0] if len(run) == 1 else b"".join(run))
