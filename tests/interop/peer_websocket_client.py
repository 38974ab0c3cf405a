"""The websocket-client package (synchronous), each call run in a worker thread."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import websocket
from interop_support import TLS, Got, PeerClient, got, payload, split
from websocket import ABNF

T = TypeVar("T")


def _close_payload(data: bytes) -> tuple[int | None, str]:
    if not data:
        return 1005, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode()


class WebsocketClientClient(PeerClient):
    name = "websocket-client"
    close_codes = (*PeerClient.close_codes, None)  # it can send a Close frame without a code
    modes = (None,)  # no permessage-deflate
    echoes_close_code = False  # answers every Close with 1000
    needs_subprotocol_answer = True
    sends_invalid_text = True

    def __init__(self) -> None:
        self.ws: websocket.WebSocket | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def connect(self, url: str, *, tls: TLS | None = None,
                      subprotocols: Sequence[str] = (), compression: str | None = None,
                      max_size: int = 1 << 20) -> None:
        assert compression is None
        ws = websocket.WebSocket(sslopt={"context": tls.client} if tls else None,
                                 enable_multithread=True)
        await self._call(lambda: ws.connect(url, subprotocols=list(subprotocols) or None,
                                            timeout=20))
        self.ws = ws

    async def send(self, kind: str, size: int) -> None:
        assert self.ws is not None
        data = payload(kind, size)
        opcode = ABNF.OPCODE_TEXT if isinstance(data, str) else ABNF.OPCODE_BINARY
        await self._call(self.ws.send, data, opcode)

    async def send_text(self, text: str) -> None:
        assert self.ws is not None
        await self._call(self.ws.send, text, ABNF.OPCODE_TEXT)

    async def send_fragments(self, kind: str, sizes: Sequence[int]) -> None:
        assert self.ws is not None
        data = payload(kind, sum(sizes))
        pieces = split(data.encode() if isinstance(data, str) else data, sizes)
        ws = self.ws
        first = ABNF.OPCODE_TEXT if kind == "text" else ABNF.OPCODE_BINARY

        def send_all() -> None:
            for i, piece in enumerate(pieces):
                opcode = first if i == 0 else ABNF.OPCODE_CONT
                ws.send_frame(ABNF.create_frame(piece, opcode, fin=int(i == len(pieces) - 1)))

        await self._call(send_all)

    async def send_invalid_text(self, data: bytes) -> None:
        assert self.ws is not None
        await self._call(self.ws.send_frame, ABNF.create_frame(data, ABNF.OPCODE_TEXT))

    async def receive(self) -> Got:
        assert self.ws is not None
        opcode, data = await self._call(self.ws.recv_data)
        if opcode == ABNF.OPCODE_TEXT:
            return got(data.decode())
        assert opcode == ABNF.OPCODE_BINARY, f"expected a message, got opcode {opcode}"
        return got(data)

    async def ping(self, data: bytes) -> bytes:
        assert self.ws is not None
        ws = self.ws

        def ping() -> bytes:
            ws.ping(data)
            opcode, pong = ws.recv_data(control_frame=True)
            assert opcode == ABNF.OPCODE_PONG, f"expected a pong, got opcode {opcode}"
            return bytes(pong)

        return await self._call(ping)

    async def close(self, code: int | None, reason: str) -> tuple[int | None, str]:
        assert self.ws is not None
        ws = self.ws

        def close() -> tuple[int | None, str]:
            if code is None:
                ws.send(b"", ABNF.OPCODE_CLOSE)
            else:
                ws.send_close(code, reason.encode())
            while True:  # raw frames: recv_data would answer the Close a second time
                frame = ws.recv_frame()
                if frame.opcode == ABNF.OPCODE_CLOSE:
                    result = _close_payload(frame.data)
                    ws.shutdown()
                    return result

        return await self._call(close)

    async def wait_closed(self, *, failed: bool = False) -> tuple[int | None, str]:
        assert self.ws is not None
        ws = self.ws

        def wait() -> tuple[int | None, str]:
            opcode, data = ws.recv_data(control_frame=True)  # answers the Close with 1000
            assert opcode == ABNF.OPCODE_CLOSE, f"expected a close, got opcode {opcode}"
            ws.shutdown()
            return _close_payload(data)

        return await self._call(wait)

    async def negotiated(self) -> dict[str, Any]:
        assert self.ws is not None
        return {"subprotocol": self.ws.getsubprotocol(), "extensions": [], "params": {}}

    async def aclose(self) -> None:
        if self.ws is not None and self.ws.connected:
            await self._call(self.ws.shutdown)
