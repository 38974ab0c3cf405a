"""The demo app in-process: echo, chat rooms (isolation, join and leave notices), page, health."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import wskit
import wskit.demo as demo_module
from wskit.demo import MAX_NAME, SLOW_CLIENT_BYTES, ChatRooms, create_app, index_html
from wskit.demo_rooms import client_script

Run = Callable[..., Any]
WAIT = 5.0


@asynccontextmanager
async def demo(**options: Any) -> AsyncIterator[tuple[str, ChatRooms]]:
    """The demo app on a free loopback port: its ws:// base URL and its rooms."""
    chat = ChatRooms()
    options.setdefault("ping_interval", None)
    app = create_app(chat, **options)
    await app.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{app.port}", chat
    finally:
        await app.shutdown(timeout=WAIT)


async def event(ws: wskit.WebSocket) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), WAIT)
    assert isinstance(message, str)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def join(base: str, room: str, name: str) -> wskit.WebSocket:
    """Join and take the member's own join notice."""
    ws = await wskit.connect(f"{base}/chat/{room}?name={name}")
    got = await event(ws)
    assert (got["type"], got["name"]) == ("join", name)
    return ws


async def http_get(base: str, path: str) -> tuple[str, dict[str, str], bytes]:
    """A plain GET: the status line, the headers (lower-case names) and the body."""
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_echo_text_and_binary(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, _):
            async with wskit.connect(f"{base}/echo") as ws:
                big = bytes(range(256)) * 1000
                ws.send("héllo")
                ws.send(b"\x00\xff")
                ws.send(big)
                assert await ws.receive() == "héllo"
                assert await ws.receive() == b"\x00\xff"
                assert await ws.receive() == big
            assert ws.close_code == 1000

    run(main())


def test_a_message_reaches_every_member_sender_included(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, chat):
            ada = await join(base, "lobby", "ada")
            bob = await join(base, "lobby", "bob")
            assert await event(ada) == {"type": "join", "name": "bob", "count": 2}
            assert chat.members("lobby") == ["ada", "bob"]
            ada.send("hi, bob")
            for ws in (ada, bob):
                assert await event(ws) == {"type": "message", "name": "ada", "text": "hi, bob"}
            await ada.close()
            await bob.close()

    run(main())


def test_rooms_are_isolated(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, chat):
            ada = await join(base, "one", "ada")
            bob = await join(base, "two", "bob")
            ada.send("only for room one")
            assert (await event(ada))["text"] == "only for room one"
            bob.send("only for room two")
            # Had anything of room one reached bob, it would come before his own message.
            assert await event(bob) == {
                "type": "message", "name": "bob", "text": "only for room two"}
            assert chat.members("one") == ["ada"] and chat.members("two") == ["bob"]
            await ada.close()
            await bob.close()

    run(main())


def test_leave_notice_and_empty_rooms_forgotten(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, chat):
            ada = await join(base, "lobby", "ada")
            bob = await join(base, "lobby", "bob")
            await event(ada)  # bob's join
            await bob.close()
            assert await event(ada) == {"type": "leave", "name": "bob", "count": 1}
            await ada.close()
            await ada.wait_closed()
            for _ in range(100):
                if not chat.rooms:
                    break
                await asyncio.sleep(0.01)
            assert chat.rooms == {}

    run(main())


def test_a_dropped_member_leaves_too(run: Run) -> None:
    """A member whose TCP connection just drops (no close frame) still gets its leave notice."""

    async def main() -> None:
        async with demo() as (base, _):
            ada = await join(base, "lobby", "ada")
            bob = await join(base, "lobby", "bob")
            await event(ada)
            bob._protocol.abort()
            assert await event(ada) == {"type": "leave", "name": "bob", "count": 1}
            await ada.close()

    run(main())


def test_binary_is_refused_with_1003(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, _):
            ada = await join(base, "lobby", "ada")
            bob = await join(base, "lobby", "bob")
            await event(ada)
            bob.send(b"\x01")
            await asyncio.wait_for(bob.wait_closed(), WAIT)
            assert bob.close_code == 1003
            assert bob.close_reason == "the chat takes text messages only"
            assert await event(ada) == {"type": "leave", "name": "bob", "count": 1}
            await ada.close()

    run(main())


def test_names(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, chat):
            spaced = await wskit.connect(f"{base}/chat/caf%C3%A9?name=%20J%C3%BCrgen%20%20M%20")
            assert (await event(spaced))["name"] == "Jürgen M"
            long = await wskit.connect(f"{base}/chat/caf%C3%A9?name={'x' * 100}")
            assert (await event(long))["name"] == "x" * MAX_NAME
            anonymous = await wskit.connect(f"{base}/chat/caf%C3%A9")
            name = (await event(anonymous))["name"]
            assert re.fullmatch(r"guest-\d+", name)
            # Percent-encoded room names are decoded: the page encodes what the user typed.
            assert chat.members("café") == ["Jürgen M", "x" * MAX_NAME, name]
            for ws in (spaced, long, anonymous):
                await ws.close()

    run(main())


def test_unicode_messages_travel_unchanged(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, _):
            ada = await join(base, "lobby", "ada")
            ada.send('"quotes", <tags> & ünïcödé 🎉')
            assert (await event(ada))["text"] == '"quotes", <tags> & ünïcödé 🎉'
            await ada.close()

    run(main())


def test_max_message_size_is_applied(run: Run) -> None:
    async def main() -> None:
        async with demo(max_message_size=100) as (base, _):
            ws = await wskit.connect(f"{base}/echo")
            ws.send("x" * 100)
            assert await ws.receive() == "x" * 100
            ws.send("x" * 101)
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1009

    run(main())


def test_server_shutdown_closes_members_with_1001(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, _):
            ada = await join(base, "lobby", "ada")
        await asyncio.wait_for(ada.wait_closed(), WAIT)
        assert ada.close_code == 1001

    run(main())


def test_page_and_health(run: Run) -> None:
    async def main() -> None:
        async with demo() as (base, _):
            status, headers, body = await http_get(base, "/")
            assert status == "HTTP/1.1 200 OK"
            assert headers["content-type"] == "text/html; charset=utf-8"
            assert body.decode() == index_html()
            status, _, body = await http_get(base, "/health")
            assert (status, body) == ("HTTP/1.1 200 OK", b"ok")

    run(main())


def test_page_is_self_contained() -> None:
    """The page works offline: inline style, its script and the browser client it imports
    from the same server (/wskit.js), no external resources."""
    page = index_html()
    assert 'import { Client } from "/wskit.js";' in page
    assert "new WebSocket(" in client_script()
    assert '<script type="module">' in page and "<style>" in page
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page.replace('"https:"', "")
    # What members type is shown as text, never parsed as HTML.
    assert "innerHTML" not in page and "textContent" in page
    # The page joins /rooms/{room} with the name in the query, as the server expects.
    assert '"/rooms/" + encodeURIComponent(room)' in page
    assert '"?name=" + encodeURIComponent(name)' in page


def test_a_slow_member_is_closed_not_buffered_for() -> None:
    """The rooms publish through a hub that closes a member too slow to keep up with 1013
    (tests/hub/test_hub.py shows the policy on a socket that never reads)."""
    chat = ChatRooms()
    assert (chat.hub.slow, chat.hub.max_buffered) == ("close", SLOW_CLIENT_BYTES)
    assert chat.hub.url is None
    redis_hub = demo_module.chat_hub("redis://127.0.0.1:6379/0")
    assert (redis_hub.url, redis_hub.slow) == ("redis://127.0.0.1:6379/0", "close")


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_two_browser_tabs_chat(run: Run, require: Callable[[str], str]) -> None:
    """The README's promise: open the page in two tabs, join one room, chat."""
    chromium = require("chromium")
    playwright = pytest.importorskip("playwright.async_api")

    async def main() -> None:
        async with demo() as (base, _), playwright.async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ])
            try:
                context = await browser.new_context()
                errors: list[str] = []
                tabs = []
                for name in ("ada", "bob"):
                    tab = await context.new_page()
                    tab.on("pageerror", lambda error: errors.append(str(error)))
                    tab.on("console",
                           lambda m: errors.append(m.text) if m.type == "error" else None)
                    await tab.goto("http" + base[2:] + "/")
                    await tab.fill("#name", name)
                    await tab.fill("#room", "tabs")
                    await tab.click("#join-button")
                    await tab.wait_for_selector("#status.open")
                    tabs.append(tab)
                ada, bob = tabs
                await ada.fill("#text", "<b>hi</b> bob")
                await ada.press("#text", "Enter")
                await bob.wait_for_selector("#log li:has-text('<b>hi</b> bob')")
                await bob.fill("#text", "hello ada")
                await bob.click("#send")
                await ada.wait_for_selector("#log li:has-text('hello ada')")
                await bob.click("#join-button")  # Leave
                await ada.wait_for_selector("#log li:has-text('bob left')")
                assert await ada.locator("#members li").all_text_contents() == ["ada"]
                assert await bob.text_content("#status") == "left tabs"
                assert errors == []
            finally:
                await browser.close()

    run(main(), timeout=60)
