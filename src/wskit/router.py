"""Which route serves a request, or which refusal (404, 405, 426): paths and parameters to
handlers, for WebSocket routes and a few plain HTTP GET routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

__all__ = ["Refusal", "Route", "Router", "normalize_path"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def normalize_path(path: str) -> str:
    """``"api/v1/websocket"`` and ``"/api/v1/websocket/"`` both become ``"/api/v1/websocket"``."""
    path = "/" + path.strip("/")
    return path


class Route:
    """One path pattern; ``{name}`` matches one path segment and becomes ``params[name]``."""

    __slots__ = ("handler", "hooks", "kind", "methods", "path", "regex", "static")

    def __init__(
        self,
        path: str,
        handler: Callable[..., Any],
        kind: str,
        methods: tuple[str, ...] = ("GET",),
        hooks: tuple[Callable[..., Any], ...] = (),
    ) -> None:
        self.path = normalize_path(path)
        self.handler = handler
        self.kind = kind
        self.methods = methods
        #: The route's own before_upgrade hooks (its groups', then its own), run in order.
        self.hooks = hooks
        pattern = ""
        last = 0
        names: set[str] = set()
        for match in _PARAM.finditer(self.path):
            pattern += _literal(self.path, self.path[last : match.start()])
            name = match.group(1)
            if name in names:
                raise ValueError(f"parameter {{{name}}} appears twice in route {path!r}")
            names.add(name)
            pattern += f"(?P<{name}>[^/]+)"
            last = match.end()
        pattern += _literal(self.path, self.path[last:])
        self.regex = re.compile(pattern + r"/?\Z")
        #: Without parameters, the two paths the pattern matches (with and without the
        #: trailing slash): compared as strings, which is what most routes need per request.
        self.static = (self.path, self.path + "/") if not names else None

    def match(self, path: str) -> dict[str, str] | None:
        static = self.static
        if static is not None:
            return {} if path == static[0] or path == static[1] else None
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


class Refusal:
    """Why no route serves a request: the HTTP status, a short text and headers to answer."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None,
                 ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers or []

    def __repr__(self) -> str:
        return f"Refusal({self.status}, {self.reason!r})"


class Router:
    """Finds the route for a request path; WebSocket and HTTP routes are kept apart."""

    def __init__(self) -> None:
        self.websocket_routes: list[Route] = []
        self.http_routes: list[Route] = []
        # The WebSocket routes without parameters ahead of the first one with, by the two
        # paths each matches: the route a scan would find first, in one dict lookup (the
        # routes behind a parameterised one keep the scan, which may match that one first).
        self._static_websocket: dict[str, Route] = {}
        self._scan_only = False

    def add_websocket(
        self, path: str, handler: Callable[..., Any], hooks: tuple[Callable[..., Any], ...] = ()
    ) -> Route:
        route = Route(path, handler, "websocket", hooks=hooks)
        self.websocket_routes.append(route)
        if route.static is None:
            self._scan_only = True
        elif not self._scan_only:
            for static in route.static:
                self._static_websocket.setdefault(static, route)
        return route

    def add_http(
        self, path: str, handler: Callable[..., Any], methods: tuple[str, ...] = ("GET",)
    ) -> Route:
        route = Route(path, handler, "http", tuple(m.upper() for m in methods))
        self.http_routes.append(route)
        return route

    def resolve(
        self, method: str, path: str, upgrade: bool
    ) -> tuple[Route, dict[str, str]] | Refusal:
        """The route for a request and its path parameters, or why there is none.

        An upgrade goes to a WebSocket route; anything else to an HTTP route, refused with
        405 for a method it does not take, with 426 where only a WebSocket route matches
        (RFC 6455 §4.2.2), with 404 where nothing does.
        """
        if upgrade:
            route = self._static_websocket.get(path)
            if route is not None:
                return route, {}
        found = self.find_websocket(path)
        if found is not None and upgrade:
            return found
        http = self.find_http(path)
        if http is not None:
            route = http[0]
            if method not in route.methods:
                return Refusal(405, "method not allowed", [("Allow", ", ".join(route.methods))])
            return http
        if found is None:
            return Refusal(404, f"no route for {path}")
        # RFC 6455 §4.2.2: a WebSocket resource asked without an upgrade.
        return Refusal(426, "this resource needs a WebSocket upgrade",
                       [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Version", "13")])

    def find_websocket(self, path: str) -> tuple[Route, dict[str, str]] | None:
        return _first(self.websocket_routes, path)

    def find_http(self, path: str) -> tuple[Route, dict[str, str]] | None:
        return _first(self.http_routes, path)


def _literal(path: str, part: str) -> str:
    """The regex for a literal part of a route; a stray brace is a mistake, not a literal."""
    if "{" in part or "}" in part:
        raise ValueError(
            f"malformed parameter in route {path!r}: use {{name}} with a Python identifier"
        )
    return re.escape(part)


def _first(routes: list[Route], path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        params = route.match(path)
        if params is not None:
            return route, params
    return None
