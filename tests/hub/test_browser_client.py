"""static/wskit.js in real Chromium against a wskit server with an in-memory history hub: resume
after 1012 with since=, duplicates dropped, a hole resumed, binary data, an application close
that is final."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from e2e import eventually, quiet_app

import wskit
from wskit.demo_rooms import script_response
from wskit.hub import envelope, parse_since, subscribed_message

from .test_browser import BROWSER_ARGS

PAGE = """<!doctype html><meta charset="utf-8"><title>client</title>
<script type="module">
import { Client } from "/wskit.js";
window.log = [];
window.client = new Client("ws://" + location.host + "/t/news", {
  initialDelay: 50, maxDelay: 200,
  onstate: (state, why) => log.push(["state", state, why]),
  onpublication: (pub) => log.push(["pub", pub.offset,
    typeof pub.data === "string" ? pub.data : Array.from(pub.data)]),
  onsubscribed: (answer) => log.push(["sub", answer.recovered, answer.replayed]),
  onmessage: (data) => log.push(["other", data]),
});
</script>"""


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_the_browser_client(run: Callable[..., Any], require: Callable[[str], str]) -> None:
    chromium = require("chromium")
    playwright = pytest.importorskip("playwright.async_api")

    async def main() -> None:
        hub = wskit.Hub(history=100, format=envelope)
        app = quiet_app()
        opened: list[tuple[wskit.WebSocket, list[str]]] = []
        page = wskit.Response(PAGE, content_type="text/html; charset=utf-8")
        script = script_response()
        app.get("/", lambda req: page)
        app.get("wskit.js", lambda req: script)

        @app.websocket("/t/{topic}")
        async def follow(req: wskit.Request, ws: wskit.WebSocket) -> None:
            since = req.query.get_all("since")
            opened.append((ws, since))
            topic = req.params["topic"]
            sub = await hub.subscribe(ws, topic, since=parse_since(since).get(topic))
            ws.send(subscribed_message(sub))
            ws.send(json.dumps({"hello": "not a publication"}))

        await app.start("127.0.0.1", 0)
        async with playwright.async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=chromium,
                                                   args=BROWSER_ARGS)
            try:
                tab = await browser.new_page()
                errors: list[str] = []
                tab.on("pageerror", lambda error: errors.append(str(error)))
                await tab.goto(f"http://127.0.0.1:{app.port}/")

                async def log() -> list[Any]:
                    entries: list[Any] = await tab.evaluate("window.log")
                    return entries

                async def pubs() -> list[Any]:
                    return [entry[1:] for entry in await log() if entry[0] == "pub"]

                async def until(predicate: Callable[[list[Any]], bool]) -> list[Any]:
                    for _ in range(200):
                        entries = await log()
                        if predicate(entries):
                            return entries
                        await asyncio.sleep(0.025)
                    raise AssertionError(f"not reached; the page's log: {await log()}")

                await until(lambda e: ["sub", False, 0] in e)
                await hub.publish("news", "a")
                await hub.publish("news", "b")
                await until(lambda e: sum(x[0] == "pub" for x in e) == 2)

                # A restart (1012): it reconnects from offset 2 and gets what it missed.
                first = opened[-1][0]
                await first.close(1012, "restarting")
                await hub.publish("news", "c")
                await hub.publish("news", "d")
                await eventually(lambda: len(opened) == 2)
                epoch = hub_epoch(opened)
                assert opened[0][1] == [] and opened[1][1] == [f"news:{epoch}:2"]
                await until(lambda e: ["sub", True, 2] in e)
                assert await pubs() == [[1, "a"], [2, "b"], [3, "c"], [4, "d"]]
                states = [x[1:] for x in await log() if x[0] == "state"]
                assert states[:2] == [["connecting", ""], ["open", ""]]
                assert states[2][0] == "reconnecting"
                assert states[2][1].startswith("restarting (1012); again in ")
                assert states[3] == ["open", ""]

                # A duplicate is dropped; a hole makes it resume from the last it has.
                second = opened[-1][0]
                second.send(envelope("news", 4, epoch, "dup"))
                second.send(envelope("news", 9, epoch, "after a hole"))
                await eventually(lambda: len(opened) == 3)
                assert opened[2][1] == [f"news:{epoch}:4"]
                await hub.publish("news", b"\x00\xff")
                await until(lambda e: sum(x[0] == "pub" for x in e) == 5)
                assert await pubs() == [[1, "a"], [2, "b"], [3, "c"], [4, "d"], [5, [0, 255]]]
                assert any(x[0] == "state" and "missed publications on news" in x[2]
                           for x in await log())
                assert ["other", '{"hello": "not a publication"}'] in await log()

                # An application's close code is final: closed, with the reason.
                await opened[-1][0].close(4001, "go away")
                await until(lambda e: ["state", "closed", "go away (4001)"] in e)
                await asyncio.sleep(0.4)  # several backoff periods: no new connection
                assert len(opened) == 3
                assert errors == []
            finally:
                await browser.close()
                await app.shutdown(timeout=2.0)

    run(main())


def hub_epoch(opened: list[tuple[wskit.WebSocket, list[str]]]) -> str:
    """The epoch the page sent back (news:<epoch>:<offset>)."""
    return opened[1][1][0].split(":")[1]
