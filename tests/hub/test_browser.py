"""Two Chromium tabs served by different workers chat through Redis (the demo page)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cli_process import Server

from .redis_servers import RedisServer
from .test_workers import wait_worker_of

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_tabs_on_two_workers_chat(run: Callable[..., Any], require: Callable[[str], str],
                                  redis_server: RedisServer) -> None:
    chromium = require("chromium")
    playwright = pytest.importorskip("playwright.async_api")

    async def main(server: Server) -> None:
        async with playwright.async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=chromium,
                                                   args=BROWSER_ARGS)
            try:
                context = await browser.new_context()
                errors: list[str] = []
                tabs: dict[int, Any] = {}  # worker pid -> a tab it serves
                names: dict[int, str] = {}
                for n in range(40):
                    name = f"tab{n}"
                    tab = await context.new_page()
                    tab.on("pageerror", lambda error: errors.append(str(error)))
                    await tab.goto(server.url + "/")
                    await tab.fill("#name", name)
                    await tab.fill("#room", "workers")
                    await tab.click("#join-button")
                    await tab.wait_for_selector("#status.open")
                    # The worker's pid is in the log line of each connection.
                    pid = await wait_worker_of(server, name)
                    if pid in tabs:
                        await tab.close()
                        continue
                    tabs[pid], names[pid] = tab, name
                    if len(tabs) == 2:
                        break
                assert len(tabs) == 2, "every tab landed on the same worker"
                (pid_a, ada), (pid_b, bob) = tabs.items()
                assert pid_a != pid_b
                # A join published before the other worker subscribed may be missed: say
                # hello until it crosses, then chat both ways.
                for i in range(100):
                    await ada.fill("#text", f"hello from {pid_a} #{i}")
                    await ada.press("#text", "Enter")
                    if await bob.locator(f"#log li:has-text('hello from {pid_a}')").count():
                        break
                    await asyncio.sleep(0.05)
                await bob.wait_for_selector(f"#log li:has-text('hello from {pid_a}')")
                await bob.fill("#text", f"hello from {pid_b}")
                await bob.click("#send")
                await ada.wait_for_selector(f"#log li:has-text('hello from {pid_b}')")
                assert errors == []
            finally:
                await browser.close()

    with Server("--workers", "2", "--redis", redis_server.url) as server:
        run(main(server), timeout=90)
        assert server.stop() == 0
