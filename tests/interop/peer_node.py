"""Node.js's ws package as a client and a server: node/client.js and node/server.js, over pipes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interop_support import TLS, Got, PeerClient, PeerServer, got_from_json

NODE_DIR = Path(__file__).parent / "node"
# ws refuses to send a code outside these, and sends none when close() has no code.
NODE_CLOSE_CODES = (*PeerClient.close_codes, None)


def node_ready(node: str) -> str:
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        raise FileNotFoundError(f"run `npm install --prefix {NODE_DIR}` (make test does)")
    return node


class NodeClient(PeerClient):
    name = "node-ws"
    close_codes = NODE_CLOSE_CODES
    needs_subprotocol_answer = True
    sends_invalid_text = True
    modes = (None, "deflate", "no-takeover", "window-9")

    def __init__(self, node: str) -> None:
        self.node = node
        self.proc: asyncio.subprocess.Process | None = None

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        if self.proc is None:
            self.proc = await asyncio.create_subprocess_exec(
                self.node, str(NODE_DIR / "client.js"), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"node client exited (code {await self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if not answer.pop("ok"):
            raise AssertionError(f"node client, {op}: {answer['error']}")
        return answer

    async def connect(self, url: str, *, tls: TLS | None = None,
                      subprotocols: Sequence[str] = (), compression: str | None = None,
                      max_size: int = 1 << 20) -> None:
        await self._call("connect", url=url, protocols=list(subprotocols), deflate=compression,
                         maxPayload=max_size, ca=tls.ca_path if tls else None)

    async def send(self, kind: str, size: int) -> None:
        await self._call("send", kind=kind, size=size)

    async def send_text(self, text: str) -> None:
        await self._call("send_text", text=text)

    async def send_fragments(self, kind: str, sizes: Sequence[int]) -> None:
        await self._call("fragments", kind=kind, sizes=list(sizes))

    async def send_invalid_text(self, data: bytes) -> None:
        await self._call("send_raw_text", hex=data.hex())

    async def receive(self) -> Got:
        message = got_from_json((await self._call("recv"))["message"])
        assert message is not None
        return message

    async def ping(self, data: bytes) -> bytes:
        return bytes.fromhex((await self._call("ping", payload=data.hex()))["payload"])

    async def close(self, code: int | None, reason: str) -> tuple[int | None, str]:
        answer = await self._call("close", code=code, reason=reason)
        return answer["code"], answer["reason"]

    async def wait_closed(self, *, failed: bool = False) -> tuple[int | None, str]:
        answer = await self._call("wait_closed")
        return answer["code"], answer["reason"]

    async def negotiated(self) -> dict[str, Any]:
        return await self._call("negotiated")

    async def aclose(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self._call("exit"), 5)
                await asyncio.wait_for(self.proc.wait(), 5)
            except (AssertionError, TimeoutError, asyncio.TimeoutError):
                self.proc.kill()
                await self.proc.wait()


class NodeServer(PeerServer):
    name = "node-ws"
    modes = (None, "deflate", "no-takeover", "window-9")
    sends_invalid_text = True

    def __init__(self, node: str) -> None:
        self.node = node
        self.proc: asyncio.subprocess.Process | None = None
        self.tls: TLS | None = None
        self.port = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.received: list[Got] = []
        self.ping_payloads: list[bytes] = []
        self.closes: list[tuple[int | None, str]] = []
        self.opened = 0
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    async def start(self, *, tls: TLS | None = None, subprotocols: Sequence[str] = (),
                    compression: str | None = None, max_size: int = 1 << 20) -> None:
        self.tls = tls
        options = {
            "protocols": list(subprotocols), "deflate": compression, "maxPayload": max_size,
            "tls": {"cert": tls.cert_path, "key": tls.key_path} if tls else None,
        }
        self.proc = await asyncio.create_subprocess_exec(
            self.node, str(NODE_DIR / "server.js"), json.dumps(options),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        self.reader = asyncio.ensure_future(self._read())
        event = await asyncio.wait_for(self.events.get(), 10)
        assert event["event"] == "listening", event
        self.port = event["port"]

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            event = json.loads(line)
            kind = event["event"]
            if kind == "open":
                self.opened += 1
                self.received, self.ping_payloads = [], []
            elif kind == "message":
                message = got_from_json(event["message"])
                assert message is not None
                self.received.append(message)
            elif kind == "ping":
                self.ping_payloads.append(bytes.fromhex(event["payload"]))
            elif kind == "close":
                self.closes.append((event["code"], event["reason"]))
            elif kind == "error":
                self.errors.append(event["error"])
            else:
                await self.events.put(event)
            self.changed.set()

    async def _sync(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"sync\n")
        await self.proc.stdin.drain()
        event = await asyncio.wait_for(self.events.get(), 10)
        assert event["event"] == "sync", event

    def url(self, path: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{path}"

    async def messages(self) -> list[Got]:
        await self._sync()
        return list(self.received)

    async def pings(self) -> list[bytes]:
        await self._sync()
        return list(self.ping_payloads)

    async def close_seen(self) -> tuple[int | None, str]:
        async def wait() -> tuple[int | None, str]:
            while len(self.closes) < self.opened:
                self.changed.clear()
                await self.changed.wait()
            return self.closes[-1]

        return await asyncio.wait_for(wait(), 10)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except (TimeoutError, asyncio.TimeoutError):
            self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            await self.reader
        assert not self.errors, self.errors

