"""The small HTTP response of plain routes and refused upgrades (this is not a web framework)."""

from __future__ import annotations

from collections.abc import Iterable

from .core.handshake import reject

__all__ = ["Response"]


class Response:
    """A small HTTP response: a body, a status and headers (the Content-Type from the body).

    A plain route returns one; a ``before_upgrade`` hook returns one to refuse the upgrade.

    Args:
        body: The body; a ``str`` is sent as UTF-8.
        status: The HTTP status code.
        headers: Extra header fields, ``(name, value)`` pairs (Content-Length is computed).
        content_type: The Content-Type; by default ``text/plain; charset=utf-8`` for a
            ``str`` body and ``application/octet-stream`` for a ``bytes`` one.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: str | bytes = b"",
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = list(headers)
        if content_type is None and body:
            content_type = "text/plain; charset=utf-8" if isinstance(body, str) else (
                "application/octet-stream")
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))

    def to_bytes(self) -> bytes:
        """The whole response as sent, with ``Connection: close``.

        Returns:
            The status line, the header fields and the body.

        Raises:
            ValueError: An invalid status, header name or value (CR or LF in it, say).
        """
        return reject(self.status, self.body, self.headers)
