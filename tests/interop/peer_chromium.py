"""Headless Chromium as a client: a page from wskit opens the WebSocket; Playwright reads it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from interop_support import BROWSER_CLOSE_CODES, TLS, Got, PeerClient, got_from_json

T = TypeVar("T")

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]

# The page's script keeps one WebSocket and exposes promise-returning functions to the test.
# payload() follows the rules of interop_support.payload; summary() is interop_support.got.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wskit interop</title></head><body><script>
"use strict";
const TEXT_UNIT = "wskit \\u2713 \\u{1F600} \\u00e9 \\u20ac \\u{1D11E} | ";
const encoder = new TextEncoder();

function payload(kind, size) {
  if (kind === "text") {
    const unit = encoder.encode(TEXT_UNIT);
    const raw = new Uint8Array(size);
    for (let i = 0; i < size; i += unit.length) {
      raw.set(unit.subarray(0, Math.min(unit.length, size - i)), i);
    }
    let text = new TextDecoder().decode(raw);
    if (text.endsWith("\\ufffd")) text = text.slice(0, -1);  // a character cut at the end
    return text + ".".repeat(size - encoder.encode(text).length);
  }
  const out = new Uint8Array(size);
  if (kind === "binary") {
    for (let i = 0; i < size; i++) out[i] = i % 251;
  } else {
    let x = 2463534242;
    for (let i = 0; i < size; i++) {
      x = (x ^ (x << 13)) >>> 0;
      x = (x ^ (x >>> 17)) >>> 0;
      x = (x ^ (x << 5)) >>> 0;
      out[i] = x & 0xff;
    }
  }
  return out;
}

async function summary(data) {
  const isText = typeof data === "string";
  const bytes = isText ? encoder.encode(data) : new Uint8Array(data);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const sha = Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
  const out = {kind: isText ? "text" : "binary", size: bytes.length, sha};
  if (isText && bytes.length <= 4096) out.text = data;
  return out;
}

let sock = null, inbox = [], waiters = [], closed = null;
function deliver(item) { if (waiters.length) waiters.shift()(item); else inbox.push(item); }
function next() {
  return inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r));
}

window.wsOpen = (url, protocols) => new Promise((resolve, reject) => {
  inbox = [];
  waiters = [];
  const s = sock = new WebSocket(url, protocols);
  s.binaryType = "arraybuffer";
  closed = new Promise((r) => s.addEventListener("close", (e) => {
    r({code: e.code, reason: e.reason, clean: e.wasClean});
    deliver(null);
  }));
  s.onmessage = (e) => deliver(e.data);
  s.onopen = () => resolve({subprotocol: s.protocol || null, extensions: s.extensions});
  s.onerror = () => {
    if (s.readyState !== WebSocket.OPEN) {
      closed.then((c) => reject(new Error("could not connect: " + JSON.stringify(c))));
    }
  };
});
window.wsSend = (kind, size) => { sock.send(payload(kind, size)); };
window.wsSendText = (text) => { sock.send(text); };
window.wsRecv = async () => {
  const data = await next();
  if (data === null) throw new Error("closed: " + JSON.stringify(await closed));
  return summary(data);
};
window.wsClose = (code, reason) => {
  if (code === null) sock.close(); else sock.close(code, reason);
  return closed;
};
window.wsWaitClosed = async () => {
  const data = await Promise.race([closed.then(() => null), next()]);
  if (data !== null) {
    throw new Error("expected a close, got " + JSON.stringify(await summary(data)));
  }
  return closed;
};
window.wsInfo = () => ({subprotocol: sock.protocol || null, extensions: sock.extensions});
</script></body></html>
"""


class BrowserThread:
    """Chromium launched once, driven from its own thread and event loop.

    The tests run on a fresh loop each (asyncio or uvloop); Playwright's objects belong to the
    loop that made them, so they live here and the tests ``await call(...)`` into it.
    """

    def __init__(self, executable: str) -> None:
        from playwright.async_api import async_playwright

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chromium", daemon=True)
        self.thread.start()

        async def launch() -> tuple[Any, Any, Any]:
            playwright = await async_playwright().start()
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS)
            # One tab for the module: each test navigates it to its own server's page.
            # The trustme CA is not in Chromium's store: accept the certificate regardless.
            context = await browser.new_context(ignore_https_errors=True)
            return playwright, browser, await context.new_page()

        self.playwright, self.browser, self.page = self._wait(launch())
        self.version: str = self.browser.version

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        try:
            self._wait(self.browser.close())
            self._wait(self.playwright.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def _names(header: str) -> list[str]:
    return [part.split(";")[0].strip() for part in header.split(",") if part.strip()]


class ChromiumClient(PeerClient):
    name = "chromium"
    close_codes = (*BROWSER_CLOSE_CODES, None)  # close() accepts 1000 and 3000-4999 only
    sends_fragments = False
    sends_pings = False
    needs_subprotocol_answer = True
    #: A browser always offers permessage-deflate; the server decides.
    modes = ("deflate",)

    def __init__(self, browser: BrowserThread) -> None:
        self.browser = browser
        self.page = browser.page
        self.origin = ""

    async def _eval(self, expression: str, arg: Any = None) -> Any:
        return await self.browser.call(self.page.evaluate(expression, arg))

    async def connect(self, url: str, *, tls: TLS | None = None,
                      subprotocols: Sequence[str] = (), compression: str | None = None,
                      max_size: int = 1 << 20) -> None:
        parts = urlsplit(url)
        origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        if origin != self.origin:
            await self.browser.call(self.page.goto(origin + "/page"))
            self.origin = origin
        self.info = await self._eval("([u, p]) => wsOpen(u, p)", [url, list(subprotocols)])

    async def send(self, kind: str, size: int) -> None:
        await self._eval("([k, n]) => wsSend(k, n)", [kind, size])

    async def send_text(self, text: str) -> None:
        await self._eval("(t) => wsSendText(t)", text)

    async def receive(self) -> Got:
        message = got_from_json(await self._eval("() => wsRecv()"))
        assert message is not None
        return message

    async def close(self, code: int | None, reason: str) -> tuple[int | None, str]:
        result = await self._eval("([c, r]) => wsClose(c, r)", [code, reason])
        assert result["clean"], f"the browser saw an unclean close: {result}"
        return result["code"], result["reason"]

    async def wait_closed(self, *, failed: bool = False) -> tuple[int | None, str]:
        result = await self._eval("() => wsWaitClosed()")
        # After a failure, wskit does not complete the closing handshake (RFC 6455 §7.1.7)
        # and Chromium may call that unclean; it must still have read the code.
        assert failed or result["clean"], f"the browser saw an unclean close: {result}"
        return result["code"], result["reason"]

    async def negotiated(self) -> dict[str, Any]:
        info = await self._eval("() => wsInfo()")
        return {"subprotocol": info["subprotocol"], "extensions": _names(info["extensions"]),
                "params": {"header": info["extensions"]}}

    async def aclose(self) -> None:
        if self.origin:  # leaving the page closes its WebSocket, if still open
            await self.browser.call(self.page.goto("about:blank"))
            self.origin = ""
