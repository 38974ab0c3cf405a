"""The small HTTP response of plain routes and refused upgrades (this is not a web framework)."""

from __future__ import annotations

from collections.abc import Iterable

from .core.handshake import reject

__all__ = ["Response"]


class Response:
    """A small HTTP response: a body, a status and headers (the Content-Type from the body)."""

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
        return reject(self.status, self.body, self.headers)
