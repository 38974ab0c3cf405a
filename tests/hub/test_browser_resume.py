"""Faults in real Chromium with two workers and a real Redis (the demo page and /wskit.js):
the worker of a tab is killed with SIGKILL while another tab keeps sending; the tab comes back
and shows every message it missed once and in order; member lists follow, a dead worker's
members leave within the presence bound, and a name taken in a room is refused."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from cli_process import Server
from websockets.asyncio.client import connect

from .redis_servers import RedisServer
from .test_browser import BROWSER_ARGS
from .test_workers import wait_worker_of

#: The presence bound of this test's server (seconds): short, so the test is quick.
PRESENCE_TTL = 2.0


async def members(tab: Any) -> list[str]:
    names: list[str] = await tab.locator("#members li").all_text_contents()
    return names


async def messages(tab: Any) -> list[str]:
    texts: list[str] = await tab.locator("#log li.msg .text").all_text_contents()
    return texts


async def until(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_a_tab_whose_worker_is_killed_misses_nothing(
        run: Callable[..., Any], require: Callable[[str], str],
        redis_server: RedisServer) -> None:
    chromium = require("chromium")
    playwright = pytest.importorskip("playwright.async_api")
    room = "faults-" + os.urandom(4).hex()

    async def main(server: Server) -> None:
        async with playwright.async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=chromium,
                                                   args=BROWSER_ARGS)
            try:
                errors: list[str] = []
                tabs: dict[int, Any] = {}  # worker pid -> a tab it serves
                names: dict[int, str] = {}
                for n in range(40):
                    name = f"tab{n}"
                    # A context each: each tab its own sessionStorage, so its own key.
                    tab = await (await browser.new_context()).new_page()
                    tab.on("pageerror", lambda error: errors.append(str(error)))
                    await tab.goto(server.url + "/")
                    await tab.fill("#name", name)
                    await tab.fill("#room", room)
                    await tab.click("#join-button")
                    await tab.wait_for_selector("#status.open")
                    pid = await wait_worker_of(server, name)
                    if pid in tabs:
                        await tab.close()
                        continue
                    tabs[pid], names[pid] = tab, name
                    if len(tabs) == 2:
                        break
                assert len(tabs) == 2, "every tab landed on the same worker"
                (victim_pid, ann), (_, bob) = tabs.items()
                ann_name, bob_name = names[victim_pid], next(
                    v for k, v in names.items() if k != victim_pid)
                both = sorted([ann_name, bob_name])
                for tab in (ann, bob):
                    await until(lambda tab=tab: _is(members(tab), both), "both member lists")

                # A member on the victim's worker that will not come back.
                ghost_ws = None
                for n in range(40):
                    ws = await connect(f"{server.ws_url}/rooms/{room}?name=ghost{n}&key=g{n}")
                    if await wait_worker_of(server, f"ghost{n}") == victim_pid:
                        ghost, ghost_ws = f"ghost{n}", ws
                        break
                    await ws.close()
                assert ghost_ws is not None, "no connection landed on the victim's worker"
                await until(lambda: _is(members(bob), sorted([*both, ghost])), "the ghost")

                await bob.fill("#text", "before")
                await bob.press("#text", "Enter")
                await until(lambda: _is(messages(ann), ["before"]), "the first message")

                os.kill(victim_pid, signal.SIGKILL)
                sent = [f"while away {i}" for i in range(10)]
                for text in sent:
                    await bob.fill("#text", text)
                    await bob.press("#text", "Enter")
                    await asyncio.sleep(0.05)

                # Ann's page reconnects (to whichever worker) and resumes.
                await until(lambda: _is(messages(ann), ["before", *sent]),
                            "ann's missed messages")
                states = await ann.evaluate("window.wskitChat.states")
                assert [s for s, _ in states][-2:] == ["reconnecting", "open"]
                assert await messages(bob) == ["before", *sent]
                # Every message once, in order, on both tabs; and the member lists agree:
                # the ghost (its worker dead, it does not come back) is gone within the bound.
                await until(lambda: _is(members(bob), both), "the ghost's leave",
                            timeout=2 * PRESENCE_TTL + 5)
                await until(lambda: _is(members(ann), both), "ann's member list")
                await ghost_ws.close()

                # A third tab that takes Bob's name is refused, and says why.
                intruder = await (await browser.new_context()).new_page()
                await intruder.goto(server.url + "/")
                await intruder.fill("#name", bob_name)
                await intruder.fill("#room", room)
                await intruder.click("#join-button")
                await intruder.wait_for_selector("#status.closed")
                status = await intruder.text_content("#status")
                assert status is not None and "already taken in this room (4409)" in status
                assert await members(bob) == both
                assert errors == []
            finally:
                await browser.close()

    with Server("--workers", "2", "--redis", redis_server.url,
                "--presence-ttl", str(PRESENCE_TTL)) as server:
        run(main(server), timeout=120)
        server.stop()


async def _is(found: Any, expected: list[str]) -> bool:
    return bool(await found == expected)
