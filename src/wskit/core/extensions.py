"""The interface between the connection and a negotiated extension (RFC 6455 §9)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable

__all__ = ["Extension", "ExtensionFactory", "ExtensionParams"]

#: One offered or accepted extension: its name and its parameters in order (value None when bare).
ExtensionParams = tuple[str, list[tuple[str, "str | None"]]]


class Extension(ABC):
    """A negotiated extension's codec: transforms messages on the way out and frames on the way in.

    The connection calls it only for data messages, never for control frames. Errors are raised
    (``ProtocolError``, ``MessageTooBig``), never returned.
    """

    #: The extension's registered token, e.g. ``"permessage-deflate"``.
    name: str = ""
    #: Whether this extension gives a meaning to RSV1 (so the frame parser must allow it).
    uses_rsv1: bool = False

    @abstractmethod
    def encode(
        self, payload: bytes | bytearray | memoryview, compress: bool = True
    ) -> tuple[bytes, bool]:
        """Transform a whole outgoing data message; returns (payload, rsv1 for the first frame)."""

    def park(self) -> None:
        """Drop what can be rebuilt before the next message (zlib objects): the connection
        may stay idle for long. Called by the binding once a read has been handled."""
        return None

    def shared_encoding(self) -> Hashable | None:
        """A key under which ``encode``'s output may be shared with other connections (one
        encoding for a fan-out, docs/architecture.md "Seams"), or None when it may not be.
        A connection that sends a frame shared under its key then calls ``adopt_state``
        with the ``shared_state()`` of the connection that encoded it."""
        return None

    def encode_shared(self, payload: bytes) -> tuple[bytes, bool]:
        """``encode`` for an encoding that will be shared under ``shared_encoding()``."""
        return self.encode(payload, True)

    def shared_state(self) -> object:
        """After ``encode``: the state an encoding shared under the key has led to."""
        return None

    def adopt_state(self, state: object) -> None:
        """This connection sent the shared encoding that led its encoder to ``state``."""
        return None

    @abstractmethod
    def decode(
        self, payload: bytes | bytearray | memoryview, rsv1: bool, fin: bool, max_length: int
    ) -> bytes | bytearray | memoryview:
        """Transform one incoming data frame of a message whose first frame had ``rsv1``.

        ``max_length`` is how many more bytes the message may grow by; produce no more than
        ``max_length + 1`` bytes, so the caller can fail with 1009 without spending more memory.
        """

    def decode_message(
        self, payload: bytes | bytearray | memoryview, max_length: int
    ) -> bytes | bytearray | memoryview:
        """``decode(payload, True, True, max_length)``: a whole message in one final frame
        with RSV1, received outside any other message (a codec may do it in fewer steps)."""
        return self.decode(payload, True, True, max_length)


class ExtensionFactory(ABC):
    """Negotiates one extension (separate from its codec, docs/architecture.md, rule 8)."""

    name: str = ""

    @abstractmethod
    def offer(self) -> ExtensionParams:
        """Client side: the parameters to offer in ``Sec-WebSocket-Extensions``."""

    @abstractmethod
    def accept_response(self, params: list[tuple[str, str | None]]) -> Extension:
        """Client side: check the server's answer; raise ``NegotiationError`` if it is invalid."""

    @abstractmethod
    def accept_offer(
        self, offers: list[list[tuple[str, str | None]]]
    ) -> tuple[list[tuple[str, str | None]], Extension] | None:
        """Server side: pick the first acceptable offer; return the response params and codec."""
