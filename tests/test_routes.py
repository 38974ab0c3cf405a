"""Registering routes: req.state from hook to handler, hooks per route, groups under a prefix,
repeated query parameters, and handlers checked when they are registered.

The client is the ``websockets`` library, over real loopback sockets, on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from e2e import WAIT, http_get, quiet_app, serving
from websockets.asyncio.client import connect as peer_connect
from websockets.exceptions import InvalidStatus

import wskit
from wskit.request import State


async def ask(url: str, **kwargs: Any) -> Any:
    """Open ``url`` with the websockets client and return the first message, decoded as JSON."""
    async with peer_connect(url, compression=None, open_timeout=WAIT, **kwargs) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def refused(url: str) -> int:
    """The HTTP status of a refused upgrade."""
    with pytest.raises(InvalidStatus) as info:
        async with peer_connect(url, compression=None, open_timeout=WAIT):
            pass
    return int(info.value.response.status_code)


class TestState:
    """req.state carries what a hook learned to the handler (issue 16)."""

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_hook_fills_state_handler_reads_it(self, run: Any, kind: str) -> None:
        app = quiet_app()
        users = {"t1": "ada", "t2": "grace"}

        def check(req: wskit.Request) -> wskit.Response | None:
            user = users.get(req.query.get("token", ""))
            if user is None:
                return wskit.Response("bad token", status=401)
            req.state.user = user
            req.state.roles = ["chat"]
            return None

        async def check_async(req: wskit.Request) -> wskit.Response | None:
            await asyncio.sleep(0)
            return check(req)

        app.before_upgrade(check if kind == "sync" else check_async)

        @app.websocket("me")
        def me(req: wskit.Request, ws: wskit.WebSocket) -> None:
            assert ws.request is req and ws.request.state is req.state
            ws.send(json.dumps([req.state.user, req.state.roles]))

        async def main() -> None:
            async with serving(app) as base:
                assert await ask(base + "/me?token=t1") == ["ada", ["chat"]]
                assert await ask(base + "/me?token=t2") == ["grace", ["chat"]]
                assert await refused(base + "/me?token=nope") == 401

        run(main())

    def test_each_request_has_its_own_state(self, run: Any) -> None:
        app = quiet_app()
        seen: list[Any] = []

        @app.websocket("s")
        def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            seen.append(req.state)
            req.state.count = getattr(req.state, "count", 0) + 1
            ws.send(json.dumps(req.state.count))

        async def main() -> None:
            async with serving(app) as base:
                assert await ask(base + "/s") == 1
                assert await ask(base + "/s") == 1
            assert seen[0] is not seen[1]

        run(main())

    def test_a_missing_attribute_says_where_it_comes_from(self) -> None:
        state = State()
        state.user = "ada"
        assert state.user == "ada" and state == State(user="ada")
        with pytest.raises(AttributeError, match=r"req.state has no 'role'.*before_upgrade"):
            state.role  # noqa: B018
        assert getattr(state, "role", None) is None
        assert not hasattr(state, "role")


class TestQuery:
    """``req.query`` keeps the simple access; ``get_all`` gives every value of a name."""

    def test_repeated_parameters(self, run: Any) -> None:
        app = quiet_app()

        @app.websocket("q")
        def handler(req: wskit.Request, ws: wskit.WebSocket) -> None:
            assert req.query is req.query  # parsed once
            ws.send(json.dumps([req.query["tag"], req.query.get_all("tag"),
                                req.query.get("name", "-"), req.query.get_all("none")]))

        async def main() -> None:
            async with serving(app) as base:
                assert await ask(base + "/q?tag=a&tag=b%20c&name=ada") == [
                    "b c", ["a", "b c"], "ada", []]

        run(main())


class TestGroups:
    """Hooks per route and per group; groups mounted under a prefix (nested, with parameters)."""

    def test_mount_hooks_in_order_and_refusals(self, run: Any) -> None:
        app = quiet_app()
        calls: list[str] = []

        def hook(name: str, refuse: str | None = None) -> Any:
            def run_hook(req: wskit.Request) -> wskit.Response | None:
                calls.append(name)
                if refuse is not None and refuse in req.query:
                    return wskit.Response(f"refused by {name}", status=403)
                return None
            return run_hook

        @app.before_upgrade
        def app_hook(req: wskit.Request) -> None:
            calls.append("app")
            req.state.trail = ["app"]

        api = wskit.Routes()
        api.before_upgrade(hook("api", refuse="deny-api"))

        async def room_hook(req: wskit.Request) -> wskit.Response | None:
            await asyncio.sleep(0)
            calls.append("room")
            req.state.trail.append("room")
            return wskit.Response("no", status=404) if req.params["room"] == "secret" else None

        @api.websocket("rooms/{room}", before_upgrade=room_hook)
        def room(req: wskit.Request, ws: wskit.WebSocket) -> None:
            ws.send(json.dumps([req.path, req.params, req.state.trail]))

        @api.get("health")
        def health(req: wskit.Request) -> str:
            return "api ok"

        v1 = wskit.Routes()
        v1.before_upgrade(hook("v1", refuse="deny-v1"))
        v1.mount("/", api)  # a nested group: its hooks run after v1's
        tenant = wskit.Routes()
        tenant.websocket("/", lambda req, ws: ws.send(json.dumps(req.params)))
        app.mount("/api/v1", v1)
        app.mount("tenants/{tenant}/", tenant)
        app.websocket("plain", lambda req, ws: ws.send(json.dumps(req.path)))

        async def main() -> None:
            async with serving(app) as base:
                got = await ask(base + "/api/v1/rooms/lobby")
                assert got == ["/api/v1/rooms/lobby", {"room": "lobby"}, ["app", "room"]]
                assert calls == ["app", "v1", "api", "room"]
                calls.clear()
                assert await refused(base + "/api/v1/rooms/lobby?deny-v1") == 403
                assert calls == ["app", "v1"]
                calls.clear()
                assert await refused(base + "/api/v1/rooms/lobby?deny-api") == 403
                assert calls == ["app", "v1", "api"]
                calls.clear()
                assert await refused(base + "/api/v1/rooms/secret") == 404
                assert await refused(base + "/rooms/lobby") == 404  # only under the prefix
                calls.clear()
                assert await ask(base + "/plain") == "/plain"
                assert calls == ["app"]  # the groups' hooks are theirs only
                assert await ask(base + "/tenants/acme") == {"tenant": "acme"}
                port = int(base.rsplit(":", 1)[1])
                status, _, body = await http_get(
                    port, b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert (status, body) == (200, b"api ok")

        run(main())

    def test_a_route_hook_without_groups(self, run: Any) -> None:
        app = quiet_app()

        def only_ada(req: wskit.Request) -> wskit.Response | None:
            return None if req.query.get("name") == "ada" else wskit.Response("no", status=403)

        app.websocket("private", lambda req, ws: ws.send('"hi"'), before_upgrade=only_ada)
        app.websocket("public", lambda req, ws: ws.send('"hi"'))

        async def main() -> None:
            async with serving(app) as base:
                assert await ask(base + "/private?name=ada") == "hi"
                assert await refused(base + "/private?name=bob") == 403
                assert await ask(base + "/public?name=bob") == "hi"

        run(main())

    def test_paths_join(self) -> None:
        from wskit.routes import join_paths

        assert join_paths("/api/v1", "rooms/{room}") == "/api/v1/rooms/{room}"
        assert join_paths("api/v1/", "/rooms/") == "/api/v1/rooms"
        assert join_paths("/api", "/") == "/api"
        assert join_paths("/", "echo") == "/echo"
        assert join_paths("", "") == "/"

    def test_misuse_is_refused_at_once(self) -> None:
        app = quiet_app()
        group = wskit.Routes()
        group.websocket("a", lambda req, ws: None)
        with pytest.raises(ValueError, match="malformed"):
            group.websocket("b/{", lambda req, ws: None)
        app.mount("/x", group)
        app.mount("/y", group)  # the same group may be mounted twice
        assert [r.path for r in app.router.websocket_routes] == ["/x/a", "/y/a"]
        with pytest.raises(RuntimeError, match="already mounted"):
            group.websocket("late", lambda req, ws: None)
        with pytest.raises(RuntimeError, match="already mounted"):
            group.before_upgrade(lambda req: None)
        with pytest.raises(TypeError, match="Routes group, not App"):
            app.mount("/app", quiet_app())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not str"):
            app.mount("/bad", "routes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="itself"):
            group.mount("/me", group)
        other = wskit.Routes()
        other.websocket("{name}", lambda req, ws: None)
        with pytest.raises(ValueError, match="twice"):
            app.mount("/{name}", other)


class TestHandlerChecks:
    """A handler that cannot be called as documented is refused when registered (TypeError)."""

    def test_wrong_websocket_handlers(self) -> None:
        app = quiet_app()

        def one(ws: wskit.WebSocket) -> None: ...
        def three(req: wskit.Request, ws: wskit.WebSocket, extra: int) -> None: ...

        with pytest.raises(TypeError, match=r"handler\(req, ws\), but .*one\(ws"):
            app.websocket("one", one)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="three"):

            @app.websocket("three")  # type: ignore[arg-type]
            async def three_async(req: Any, ws: Any, extra: int) -> None: ...
        with pytest.raises(TypeError, match="three"):
            wskit.Routes().websocket("three", three)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be callable"):
            app.websocket("none", "handler")  # type: ignore[arg-type]
        assert not app.router.websocket_routes

    def test_wrong_hooks_and_http_handlers(self) -> None:
        app = quiet_app()
        with pytest.raises(TypeError, match=r"hook\(req\)"):
            app.before_upgrade(lambda: None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"hook\(req\)"):
            app.websocket("w", lambda req, ws: None, before_upgrade=lambda req, ws: None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"handler\(req\)"):
            app.get("g", lambda req, ws: "x")  # type: ignore[arg-type]
        assert app.upgrade_hook is None
        assert not app.router.websocket_routes and not app.router.http_routes

    def test_the_callables_that_fit(self) -> None:
        app = quiet_app()

        class Handler:
            def __call__(self, req: wskit.Request, ws: wskit.WebSocket) -> None: ...
            def method(self, req: wskit.Request, ws: wskit.WebSocket) -> None: ...

        def with_default(req: Any, ws: Any, extra: int = 1) -> None: ...
        def variadic(*args: Any) -> None: ...
        def three(prefix: str, req: Any, ws: Any) -> None: ...

        for fn in (Handler(), Handler().method, with_default, variadic,
                   functools.partial(three, "p"), print):
            app.websocket("ok", fn)
        assert len(app.router.websocket_routes) == 6


MYPY_PROGRAM = '''\
import wskit

app = wskit.App()
api = wskit.Routes()


@app.websocket("good")
async def good(req: wskit.Request, ws: wskit.WebSocket) -> None:
    req.state.user = "ada"
    tags: list[str] = req.query.get_all("tag")
    print(req.state.user, tags, req.query["name"])


@api.websocket("rooms/{room}", before_upgrade=lambda req: None)
def room(req: wskit.Request, ws: wskit.WebSocket) -> wskit.Stream:
    return ws.on_text(lambda ws, text: ws.send(text))


app.websocket("lambda", lambda req, ws: ws.send("hi"))
app.mount("/api", api)


@app.websocket("bad")  # mypy: error
def bad(ws: wskit.WebSocket) -> None:
    pass


app.websocket("bad too", lambda ws: None)  # mypy: error


@app.before_upgrade  # mypy: error
def hook(req: wskit.Request) -> str:
    return "not a Response"
'''


def test_mypy_catches_a_wrong_handler(tmp_path: Any, monkeypatch: Any, mypy_cache: Any,
                                      ) -> None:
    """The decorators are typed: ``mypy --strict`` flags a handler that takes only ``ws``."""
    mypy_api = pytest.importorskip("mypy.api")
    path = tmp_path / "app.py"
    path.write_text(MYPY_PROGRAM, encoding="utf-8")
    # wskit found through MYPYPATH and checked as a library, without the project's own
    # configuration (which checks all of src/ too: some 30 s instead of 3).
    monkeypatch.setenv("MYPYPATH", str(Path(wskit.__file__).resolve().parents[1]))
    (tmp_path / "empty.ini").write_text("[mypy]\n")
    out, err, status = mypy_api.run(["--strict", "--config-file", str(tmp_path / "empty.ini"),
                                     "--cache-dir", str(mypy_cache), str(path)])
    lines = sorted({int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line})
    wanted = [number for number, line in enumerate(MYPY_PROGRAM.splitlines(), 1)
              if "# mypy: error" in line]
    assert lines == wanted and len(wanted) == 3, out + err
    assert status == 1
