"""Registering routes: handlers checked and typed, hooks per route, groups under a prefix."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from .request import Request
from .response import Response
from .router import Route, normalize_path
from .websocket import WebSocket

__all__ = [
    "Hook",
    "HttpHandler",
    "RouteSpec",
    "Routes",
    "WebSocketHandler",
    "check_callable",
    "join_paths",
]

#: ``handler(req, ws)``: a plain function that sets up listeners, or a coroutine function.
WebSocketHandler = Callable[[Request, WebSocket], object]
#: ``handler(req)`` of a plain HTTP route: a Response, str or bytes (or an awaitable of one).
HttpHandler = Callable[[Request], object]
#: ``hook(req)`` before an upgrade: None lets it through, a Response refuses it; may be async.
Hook = Callable[[Request], Response | Awaitable[Response | None] | None]

WebSocketHandlerT = TypeVar("WebSocketHandlerT", bound=WebSocketHandler)
HttpHandlerT = TypeVar("HttpHandlerT", bound=HttpHandler)
HookT = TypeVar("HookT", bound=Hook)


def check_callable(fn: Any, what: str, call: str, *args: str) -> None:
    """Raise TypeError now if ``fn`` cannot be called as ``call`` (rather than at the first
    connection); callables whose signature Python cannot tell are let through."""
    if not callable(fn):
        raise TypeError(f"{what} must be callable, not {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args)
    except TypeError as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"{what} is called as {call}, but {name}{signature} cannot be: "
                        f"{exc}") from None


class RouteSpec:
    """A route as registered: kind, path (without the prefixes to come), handler, hooks."""

    __slots__ = ("handler", "hooks", "kind", "methods", "path")

    def __init__(self, kind: str, path: str, handler: Callable[..., Any],
                 methods: tuple[str, ...], hooks: tuple[Hook, ...]) -> None:
        self.kind = kind
        self.path = path
        self.handler = handler
        self.methods = methods
        self.hooks = hooks


def join_paths(prefix: str, path: str) -> str:
    """``("/api/v1", "rooms/{room}")`` gives ``"/api/v1/rooms/{room}"``; ``"/"`` is the prefix."""
    return normalize_path(normalize_path(prefix) + "/" + normalize_path(path).lstrip("/"))


class Routes:
    """A group of routes with its own ``before_upgrade`` hook, to mount under a path prefix.

    ``api = Routes()``, then ``@api.websocket(...)``, ``@api.get(...)``, ``@api.before_upgrade``
    as on an App, then ``app.mount("/api/v1", api)``. Hooks run outside in: the app's, then
    each group's from the outermost, then the route's own; the first that returns a Response
    refuses the upgrade. Mounting copies the group's routes, so a group is complete before it
    is mounted (changing it afterwards raises RuntimeError); it may be mounted several times.
    """

    #: False for an App: its limits and hooks are its own, it is served rather than mounted.
    mountable = True

    def __init__(self) -> None:
        #: The routes registered, with the prefixes of the groups mounted here.
        self.specs: list[RouteSpec] = []
        #: The hook set by ``before_upgrade``, or None.
        self.upgrade_hook: Hook | None = None
        self._mounted = False

    # -- registering -------------------------------------------------------------------------

    @overload
    def websocket(
        self, path: str, *, before_upgrade: Hook | None = None
    ) -> Callable[[WebSocketHandlerT], WebSocketHandlerT]: ...
    @overload
    def websocket(
        self, path: str, handler: WebSocketHandlerT, *, before_upgrade: Hook | None = None
    ) -> WebSocketHandlerT: ...
    def websocket(self, path: str, handler: WebSocketHandler | None = None, *,
                  before_upgrade: Hook | None = None) -> Any:
        """Register ``handler(req, ws)`` for ``path``; usable as ``@routes.websocket(path)``.

        Args:
            path: The route's path; ``{name}`` segments are parameters (``req.params``).
            handler: A plain function or a coroutine function called as
                ``handler(req, ws)``; omit it to use the method as a decorator.
            before_upgrade: A hook for this route only, run after the app's and the groups'.

        Returns:
            The handler (so that the decorator leaves the function as it is), or the
            decorator when ``handler`` is omitted.

        Raises:
            TypeError: The handler or the hook cannot be called as documented.
            ValueError: The path is malformed.
            RuntimeError: This group is already mounted.
        """
        if before_upgrade is not None:
            check_callable(before_upgrade, "a before_upgrade hook", "hook(req)", "req")
        hooks = (before_upgrade,) if before_upgrade is not None else ()

        def register(fn: Callable[..., Any]) -> None:
            check_callable(fn, "a WebSocket handler", "handler(req, ws)", "req", "ws")
            self.add(RouteSpec("websocket", path, fn, ("GET",), hooks))

        if handler is not None:
            register(handler)
            return handler

        def decorator(fn: WebSocketHandlerT) -> WebSocketHandlerT:
            register(fn)
            return fn

        return decorator

    @overload
    def get(self, path: str) -> Callable[[HttpHandlerT], HttpHandlerT]: ...
    @overload
    def get(self, path: str, handler: HttpHandlerT) -> HttpHandlerT: ...
    def get(self, path: str, handler: HttpHandler | None = None) -> Any:
        """Register a plain HTTP GET route: ``handler(req)`` returns a Response, str or bytes.

        Args:
            path: The route's path; ``{name}`` segments are parameters.
            handler: A function or coroutine function called as ``handler(req)``; omit it
                to use the method as a decorator.

        Returns:
            The handler, or the decorator when ``handler`` is omitted.

        Raises:
            TypeError: The handler cannot be called as ``handler(req)``.
            ValueError: The path is malformed.
            RuntimeError: This group is already mounted.
        """

        def register(fn: Callable[..., Any]) -> None:
            check_callable(fn, "an HTTP handler", "handler(req)", "req")
            self.add(RouteSpec("http", path, fn, ("GET",), ()))

        if handler is not None:
            register(handler)
            return handler

        def decorator(fn: HttpHandlerT) -> HttpHandlerT:
            register(fn)
            return fn

        return decorator

    def before_upgrade(self, fn: HookT) -> HookT:
        """Set the hook ``fn(req)`` run before each upgrade to these routes; usable as a
        decorator.

        The hook may return a ``Response`` to refuse the upgrade, fill ``req.state``, add
        ``req.response_headers`` or set ``req.subprotocol``; it may be async.

        Args:
            fn: The hook, called as ``fn(req)``.

        Returns:
            ``fn`` itself.

        Raises:
            TypeError: ``fn`` cannot be called as ``fn(req)``.
            RuntimeError: This group is already mounted.
        """
        check_callable(fn, "a before_upgrade hook", "hook(req)", "req")
        self._check_open()
        self.upgrade_hook = fn
        return fn

    def mount(self, prefix: str, routes: Routes) -> None:
        """Add every route of ``routes`` under ``prefix``, with the group's hook in front of
        each route's own.

        Args:
            prefix: The path prefix (``"/api/v1"``, or with parameters:
                ``"/tenants/{tenant}"``).
            routes: The group; its routes are copied, so add them (and its hook) first.

        Raises:
            TypeError: ``routes`` is not a ``wskit.Routes`` group (an App cannot be mounted).
            ValueError: A group mounted on itself, or a resulting path that is malformed.
            RuntimeError: This group is already mounted.
        """
        if not isinstance(routes, Routes) or not routes.mountable:
            raise TypeError(f"mount takes a wskit.Routes group, not {type(routes).__name__}")
        if routes is self:
            raise ValueError("a group cannot be mounted on itself")
        routes._mounted = True
        outer = (routes.upgrade_hook,) if routes.upgrade_hook is not None else ()
        for spec in routes.specs:
            self.add(RouteSpec(spec.kind, join_paths(prefix, spec.path), spec.handler,
                               spec.methods, outer + spec.hooks))

    # -- the one way in ----------------------------------------------------------------------

    def add(self, spec: RouteSpec) -> None:
        """Add one route; every registration ends here (an App also compiles it for dispatch).

        Args:
            spec: The route: its kind, path, handler, methods and hooks.

        Raises:
            ValueError: The path is malformed.
            RuntimeError: This group is already mounted.
        """
        self._check_open()
        Route(spec.path, spec.handler, spec.kind)  # a malformed path is refused now, not later
        self.specs.append(spec)

    def _check_open(self) -> None:
        if self._mounted:
            raise RuntimeError("this group of routes is already mounted; add its routes and "
                               "hooks before mounting it")
