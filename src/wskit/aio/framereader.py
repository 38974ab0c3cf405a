"""The stand-in protocol that reads a large frame's payload straight into the frame's buffer
on a transport that would otherwise copy it twice (docs/architecture.md, the path of a
received message, step 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ..core.connection import Connection, Event
from .shared import read_buffer

__all__ = ["FrameReader", "Reading"]


class Reading(Protocol):
    """The protocol a ``FrameReader`` stands in for (``WebSocketProtocol``)."""

    conn: Connection
    bytes_in: int
    transport: asyncio.Transport | None

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class FrameReader(asyncio.BufferedProtocol):
    """The protocol of a transport while a large frame's payload is read straight into the
    frame's buffer: a BufferedProtocol only, so that uvloop asks it for buffers; everything
    else goes to the protocol it stands in for, which it hands the transport back to once the
    frame is whole. ``handle`` takes the events of what was read (the protocol's own)."""

    __slots__ = ("handle", "into", "protocol")

    def __init__(self, protocol: Reading,
                 handle: Callable[[Connection, list[Event]], None]) -> None:
        self.protocol = protocol
        self.handle = handle
        self.into = False  # whether the last buffer was the frame's own room

    def get_buffer(self, sizehint: int) -> memoryview:
        room = self.protocol.conn.receive_buffer()
        self.into = room is not None
        return room if room is not None else read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        protocol = self.protocol
        conn = protocol.conn
        back = True
        if self.into:
            self.into = False
            protocol.bytes_in += nbytes
            events = conn.receive_into(nbytes)
            parser = conn.parser
            # Kept while a large frame arrives, and for the read after one (the next large
            # frame may start in a spare); back once a read brought something else.
            back = not parser.large and parser.lent is None
            self.handle(conn, events)
        else:
            protocol.data_received(read_buffer()[:nbytes].tobytes())
        transport = protocol.transport
        if back and transport is not None and transport.get_protocol() is self:
            transport.set_protocol(protocol)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(exc)
