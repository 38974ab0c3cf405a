"""The upgrade request as handlers and hooks see it, with ``state`` for the app's own data."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from .core.handshake import parse_token_list
from .core.http import Headers, Query
from .core.http import Request as HttpRequest

__all__ = ["Request", "State"]


class State(SimpleNamespace):
    """``req.state``: attributes of the app's own, set by a hook and read by the handler."""

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: say where it should have come from.
        raise AttributeError(
            f"req.state has no {name!r}: set it first, e.g. req.state.{name} = ... "
            "in a before_upgrade hook")


class Request:
    """What a handler learns of the upgrade request: method, path, query, headers, params.

    The server makes one for each upgrade request and passes it to the hooks and the handler
    (later it is ``ws.request``); programs do not create it.

    Args:
        raw: The parsed request head.
        params: The path parameters of the matched route.
        remote_address: ``(host, port)`` of the peer, as the socket gives it.
    """

    __slots__ = ("_query", "_raw", "_state", "params", "remote_address", "response_headers",
                 "subprotocol")

    def __init__(self, raw: HttpRequest, params: dict[str, str], remote_address: Any) -> None:
        self._raw = raw
        #: Path parameters, e.g. ``{"room": "lobby"}`` for ``"rooms/{room}"``.
        self.params = params
        #: (host, port) of the peer.
        self.remote_address = remote_address
        #: Headers a ``before_upgrade`` hook adds to the 101 response.
        self.response_headers: list[tuple[str, str]] = []
        #: Set by a ``before_upgrade`` hook to choose the subprotocol (must be offered).
        self.subprotocol: str | None = None
        # Made on first use: most requests never need them.
        self._query: Query | None = None
        self._state: State | None = None

    @property
    def http(self) -> HttpRequest:
        """The parsed HTTP request (``wskit.core.http.Request``) the upgrade is decided on."""
        return self._raw

    @property
    def method(self) -> str:
        """The request method (``"GET"`` for an upgrade)."""
        return self._raw.method

    @property
    def path(self) -> str:
        """The path of the request target, without the query (``"/rooms/lobby"``)."""
        return self._raw.path

    @property
    def target(self) -> str:
        """The request target as sent: path and query (``"/rooms/lobby?tag=a"``)."""
        return self._raw.target

    @property
    def query(self) -> Query:
        """The query parameters: ``query["name"]`` is the last value, ``query.get_all(name)``
        every value in order."""
        if self._query is None:
            self._query = self._raw.query
        return self._query

    @property
    def headers(self) -> Headers:
        """The request's header fields: ``headers.get(name)``, ``headers.get_all(name)``,
        names matched without regard to case."""
        return self._raw.headers

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order."""
        return parse_token_list(self.headers.get_all("Sec-WebSocket-Protocol"))

    @property
    def state(self) -> State:
        """The app's own data for this request: a hook sets ``req.state.user = ...``, the
        handler reads ``req.state.user`` (``ws.request.state`` later)."""
        if self._state is None:
            self._state = State()
        return self._state

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} from {self.remote_address}>"
