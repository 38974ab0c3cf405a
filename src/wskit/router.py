"""Paths and their parameters to handlers: WebSocket routes and a few plain HTTP GET routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

__all__ = ["Route", "Router", "normalize_path"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def normalize_path(path: str) -> str:
    """``"api/v1/websocket"`` and ``"/api/v1/websocket/"`` both become ``"/api/v1/websocket"``."""
    path = "/" + path.strip("/")
    return path


class Route:
    """One path pattern; ``{name}`` matches one path segment and becomes ``params[name]``."""

    __slots__ = ("handler", "hooks", "kind", "methods", "path", "regex")

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

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


class Router:
    """Finds the route for a request path; WebSocket and HTTP routes are kept apart."""

    def __init__(self) -> None:
        self.websocket_routes: list[Route] = []
        self.http_routes: list[Route] = []

    def add_websocket(
        self, path: str, handler: Callable[..., Any], hooks: tuple[Callable[..., Any], ...] = ()
    ) -> Route:
        route = Route(path, handler, "websocket", hooks=hooks)
        self.websocket_routes.append(route)
        return route

    def add_http(
        self, path: str, handler: Callable[..., Any], methods: tuple[str, ...] = ("GET",)
    ) -> Route:
        route = Route(path, handler, "http", tuple(m.upper() for m in methods))
        self.http_routes.append(route)
        return route

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
