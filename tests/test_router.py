"""End-to-end tests of routing: path patterns and parameters, 404/405/426, route precedence."""

from __future__ import annotations

from typing import Any

import pytest
from e2e import http_get, quiet_app, quiet_connect, serving

import wskit
from wskit.router import Refusal, Router


def param_echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
    ws.send(repr(sorted(req.params.items())))


async def params_of(base: str, path: str) -> str:
    async with quiet_connect(base + path) as ws:
        message = await ws.receive()
        assert isinstance(message, str)
        return message


async def status_of(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return await http_get(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


class TestPatterns:
    """``{name}`` matches one percent-decoded path segment; everything else matches literally."""

    def test_parameters(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("rooms/{room}", param_echo)
        app.websocket("/rooms/{room}/users/{user}/", param_echo)
        app.websocket("files/{name}.txt", param_echo)

        async def main() -> None:
            async with serving(app) as base:
                assert await params_of(base, "/rooms/lobby") == "[('room', 'lobby')]"
                assert await params_of(base, "/rooms/lobby/") == "[('room', 'lobby')]"
                assert await params_of(base, "/rooms/caf%C3%A9?x=1") == "[('room', 'café')]"
                assert await params_of(base, "/rooms/a%2Fb") == "[('room', 'a/b')]"
                assert await params_of(base, "/rooms/r1/users/ann") == (
                    "[('room', 'r1'), ('user', 'ann')]"
                )
                assert await params_of(base, "/files/notes.txt") == "[('name', 'notes')]"
                for path in ("/rooms", "/rooms/", "/rooms/a/b", "/files/notes.md", "/files/.txt",
                             "/rooms/r1/users"):
                    with pytest.raises(wskit.InvalidHandshake) as info:
                        await quiet_connect(base + path)
                    assert info.value.status == 404, path

        run(main())

    def test_literal_characters_and_root(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("/", lambda req, ws: ws.send("root"))
        app.websocket("v1.0/(x)+", lambda req, ws: ws.send("literal"))

        async def main() -> None:
            async with serving(app) as base:
                assert await params_of(base, "/") == "root"
                assert await params_of(base, "") == "root"  # the URL path defaults to /
                assert await params_of(base, "/v1.0/(x)+") == "literal"
                for path in ("/v1x0/(x)+", "/v1.0/xx", "/other"):
                    with pytest.raises(wskit.InvalidHandshake):
                        await quiet_connect(base + path)

        run(main())

    def test_first_registered_route_wins(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("items/new", lambda req, ws: ws.send("static"))
        app.websocket("items/{id}", lambda req, ws: ws.send("param " + req.params["id"]))

        async def main() -> None:
            async with serving(app) as base:
                assert await params_of(base, "/items/new") == "static"
                assert await params_of(base, "/items/7") == "param 7"

        run(main())

    @pytest.mark.parametrize("pattern", ["rooms/{room", "rooms/room}", "a/{1x}", "{a}/{a}"])
    def test_malformed_patterns_are_refused(self, pattern: str, run: Any) -> None:
        async def main() -> None:
            app = quiet_app()
            with pytest.raises(ValueError):
                app.websocket(pattern, param_echo)
            with pytest.raises(ValueError):
                app.get(pattern, lambda req: "x")
            # The app still serves what was registered correctly.
            app.websocket("ok", lambda req, ws: ws.send("ok"))
            async with serving(app) as base:
                assert await params_of(base, "/ok") == "ok"

        run(main())


class TestDispatch:
    """WebSocket and HTTP routes side by side: upgrade or not, 404, 405 with Allow, 426."""

    def test_same_path_for_page_and_socket(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("chat", lambda req, ws: ws.send("socket"))
        app.get("chat", lambda req: "page")

        async def main() -> None:
            async with serving(app) as base:
                assert await params_of(base, "/chat") == "socket"
                status, _, body = await status_of(app.port, "/chat")
                assert (status, body) == (200, b"page")

        run(main())

    def test_http_statuses(self, run: Any) -> None:
        app = quiet_app()
        app.websocket("ws", lambda req, ws: None)
        app.get("page/{n}", lambda req: "page " + req.params["n"])

        async def main() -> None:
            async with serving(app):
                assert (await status_of(app.port, "/page/3"))[::2] == (200, b"page 3")
                assert (await status_of(app.port, "/page/3?x=y"))[::2] == (200, b"page 3")
                assert (await status_of(app.port, "/missing"))[0] == 404
                assert (await status_of(app.port, "/page"))[0] == 404
                status, headers, _ = await status_of(app.port, "/page/3", "DELETE")
                assert (status, headers["allow"]) == (405, "GET")
                status, headers, _ = await status_of(app.port, "/ws")
                assert status == 426
                assert headers["sec-websocket-version"] == "13"

        run(main())


class TestRefusals:
    """The router decides which route, or which refusal: 404, 405, 426 (RFC 6455 §4.2.2)."""

    def make(self) -> Router:
        router = Router()
        router.add_websocket("ws/{room}", lambda req, ws: None)
        router.add_http("page", lambda req: "ok")
        return router

    def test_upgrade_to_a_websocket_route(self) -> None:
        found = self.make().resolve("GET", "/ws/lobby", True)
        assert not isinstance(found, Refusal)
        assert found[0].kind == "websocket" and found[1] == {"room": "lobby"}

    def test_http_route(self) -> None:
        found = self.make().resolve("GET", "/page", False)
        assert not isinstance(found, Refusal) and found[0].kind == "http"

    def test_404(self) -> None:
        refusal = self.make().resolve("GET", "/nothing", True)
        assert isinstance(refusal, Refusal) and refusal.status == 404

    def test_405_names_the_methods(self) -> None:
        refusal = self.make().resolve("POST", "/page", False)
        assert isinstance(refusal, Refusal) and refusal.status == 405
        assert ("Allow", "GET") in refusal.headers

    def test_426_for_a_websocket_route_without_upgrade(self) -> None:
        refusal = self.make().resolve("GET", "/ws/lobby", False)
        assert isinstance(refusal, Refusal) and refusal.status == 426
        assert ("Sec-WebSocket-Version", "13") in refusal.headers
        assert "426" in repr(refusal)


class TestStaticLookup:
    """Routes without parameters are found by one lookup, and always as the scan would:
    the first route that matches wins, whichever kind it is."""

    def test_first_matching_route_wins(self) -> None:
        def a(req: Any, ws: Any) -> None: ...
        def b(req: Any, ws: Any) -> None: ...
        def c(req: Any, ws: Any) -> None: ...

        router = Router()
        router.add_websocket("/x", a)
        router.add_websocket("/x", b)  # shadowed: the first one wins
        router.add_websocket("/{name}", b)
        router.add_websocket("/y", c)  # behind a route that matches it too
        for path, handler in (("/x", a), ("/x/", a), ("/y", b), ("/z", b)):
            found = router.resolve("GET", path, True)
            assert not isinstance(found, Refusal)
            assert found[0].handler is handler
        first, second = router.resolve("GET", "/x", True), router.resolve("GET", "/x", True)
        assert not isinstance(first, Refusal) and not isinstance(second, Refusal)
        assert first[1] == {} and first[1] is not second[1]  # params of its own each time
        refused = router.resolve("GET", "/x", False)
        assert isinstance(refused, Refusal) and refused.status == 426
