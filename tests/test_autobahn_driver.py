"""The Autobahn fuzzing-client driver, against a stand-in fuzzing server on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from e2e import quiet_app, serving

import wskit
from wskit.autobahn import run_fuzzing_client


class TestFuzzingClient:
    """The driver follows Autobahn's protocol: getCaseCount, runCase per case, updateReports."""

    def test_runs_every_case_and_asks_for_the_report(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            app = quiet_app(max_message_size=1 << 20)
            seen: list[str] = []
            echoed: dict[int, list[Any]] = {}

            @app.websocket("/getCaseCount")
            def count(req: wskit.Request, ws: wskit.WebSocket) -> None:
                seen.append("count")
                ws.send("3")

            @app.websocket("/runCase")
            async def case(req: wskit.Request, ws: wskit.WebSocket) -> None:
                number = int(req.query["case"])
                seen.append(f"case {number} {req.query['agent']}")
                ws.send(f"text {number}")
                ws.send(bytes([number]) * 70_000)
                echoed[number] = [await ws.receive(), await ws.receive()]
                await ws.close(1000)

            @app.websocket("/updateReports")
            async def report(req: wskit.Request, ws: wskit.WebSocket) -> None:
                seen.append(f"report {req.query['agent']}")
                await ws.close(1000)

            async with serving(app) as url:
                assert await run_fuzzing_client(url, "wskit test", compression=False) == 3
            assert seen == ["count", "case 1 wskit test", "case 2 wskit test",
                            "case 3 wskit test", "report wskit test"]
            for number in (1, 2, 3):
                assert echoed[number] == [f"text {number}", bytes([number]) * 70_000]

        run(main())

    def test_a_case_that_refuses_is_skipped(self, run: Callable[..., Any]) -> None:
        async def main() -> None:
            app = quiet_app()
            reports: list[str] = []

            @app.websocket("/getCaseCount")
            def count(req: wskit.Request, ws: wskit.WebSocket) -> None:
                ws.send("1")

            @app.before_upgrade
            def refuse_cases(req: wskit.Request) -> wskit.Response | None:
                return wskit.Response("no", status=403) if req.path == "/runCase" else None

            @app.websocket("/runCase")
            def case(req: wskit.Request, ws: wskit.WebSocket) -> None:  # pragma: no cover
                raise AssertionError("refused before the handler")

            @app.websocket("/updateReports")
            async def report(req: wskit.Request, ws: wskit.WebSocket) -> None:
                reports.append(req.query["agent"])
                await ws.close(1000)

            async with serving(app) as url:
                assert await run_fuzzing_client(url) == 1
            assert reports == ["wskit"]

        run(main())
