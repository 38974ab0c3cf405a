"""The demo app of ``python -m wskit serve``: echo, chat rooms, a health check and the chat page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from importlib import resources
from typing import Any

from .core.close import CloseCode
from .core.errors import WSKitError
from .core.limits import MAX_MESSAGE_SIZE
from .demo_rooms import HISTORY, LiveRooms, chat_format, presence_event, script_response
from .hub import Hub, HubError
from .server import App, Request, Response
from .websocket import WebSocket

__all__ = ["ChatRooms", "chat_hub", "create_app", "index_html"]

logger = logging.getLogger("wskit.demo")

#: Longest name kept; longer ones are cut, so a name can never flood the page.
MAX_NAME = 32
#: A member whose unsent backlog grows past this is too slow to keep up and is dropped.
SLOW_CLIENT_BYTES = 1 << 20
#: Largest event a room sends, in bytes: what a member on wskit's default limits accepts.
#: A text whose event would be longer (JSON escapes make some texts six times longer) is
#: refused: its sender alone is closed with 1009, the room never sees it.
MAX_EVENT_BYTES = MAX_MESSAGE_SIZE


def index_html() -> str:
    """The chat page, read from the package's ``static/index.html``."""
    return (resources.files("wskit") / "static" / "index.html").read_text(encoding="utf-8")


def _name_of(req: Request, ws: WebSocket) -> str:
    name = " ".join(req.query.get("name", "").split())[:MAX_NAME]
    if name:
        return name
    # Without a name, the peer's port tells anonymous members apart.
    address = ws.remote_address
    return f"guest-{address[1]}" if isinstance(address, tuple) else "guest"


def chat_hub(url: str | None = None, *, presence_ttl: float = 30.0) -> Hub:
    """The hub the chat needs: in-process, or through Redis at ``url`` so that rooms span
    workers and hosts; a member too slow to keep up is closed with 1013. The page's rooms
    (``room:*`` topics, demo_rooms.py) keep history and presence; members of a worker that
    died leave them within ``presence_ttl`` seconds."""
    return Hub(url, slow="close", max_buffered=SLOW_CLIENT_BYTES, history={"room:*": HISTORY},
               format=chat_format, presence_format=presence_event, presence_ttl=presence_ttl)


class ChatRooms:
    """Rooms of members: each text message of a member goes to every member of its room.

    A room is the hub topic ``chat:{room}``, so with ``Hub("redis://...")`` its members may
    be served by different workers. Members send plain text; the room sends JSON events:
    ``join`` and ``leave`` (with ``count``, the members on the worker that saw the change)
    and ``message`` (with ``name`` and ``text``). Binary messages are refused with 1003, the
    close code for data an endpoint cannot accept (RFC 6455 §7.4.1).
    """

    def __init__(self, hub: Hub | None = None) -> None:
        self.hub = chat_hub() if hub is None else hub
        #: This worker's members of each room, with their names.
        self.rooms: dict[str, dict[WebSocket, str]] = {}
        # Publishing and closing are asynchronous; the tasks are kept so that none is
        # collected mid-way.
        self._tasks: set[asyncio.Task[Any]] = set()

    def members(self, room: str) -> list[str]:
        """The names in ``room`` on this worker, in joining order."""
        return list(self.rooms.get(room, {}).values())

    def join(self, req: Request, ws: WebSocket) -> None:
        """The ``/chat/{room}`` handler."""
        room = req.params["room"]
        name = _name_of(req, ws)
        members = self.rooms.setdefault(room, {})
        members[ws] = name
        logger.info("%s joined %r (%d here)", name, room, len(members))
        self.hub.subscribe(ws, _topic(room))
        self._spawn(self.publish(room, {"type": "join", "name": name, "count": len(members)}))

        async def say(ws: WebSocket, text: str) -> None:
            # A coroutine listener: one member's messages are published one after the
            # other, so every member sees them in the order they were sent.
            event = {"type": "message", "name": name, "text": text}
            # Measured before it is built: the JSON of control characters is six times their
            # size, and building it only to refuse it would cost that much.
            if _json_size(text) + len(_encode({**event, "text": ""}).encode()) > MAX_EVENT_BYTES:
                logger.info("%s sent a text too long for %r; closing with 1009", name, room)
                await ws.close(CloseCode.MESSAGE_TOO_BIG, "message too long for the room")
                return
            try:
                await self.hub.publish(_topic(room), _encode(event))
            except HubError as exc:
                with contextlib.suppress(WSKitError):
                    ws.send(json.dumps({"type": "error", "text": str(exc)}))

        ws.on_text(say).finally_(lambda: self.leave(room, ws))
        ws.on_binary(self._refuse_binary)

    def leave(self, room: str, ws: WebSocket) -> None:
        members = self.rooms.get(room)
        if members is None or ws not in members:
            return
        name = members.pop(ws)
        if not members:
            del self.rooms[room]
        logger.info("%s left %r (%d here)", name, room, len(members))
        self.hub.unsubscribe(ws, _topic(room))
        self._spawn(self.publish(room, {"type": "leave", "name": name, "count": len(members)}))

    async def publish(self, room: str, event: dict[str, Any]) -> None:
        """Send ``event`` to every member of ``room`` on every worker, the sender included.

        The hub encodes it once per worker; a reader too slow to keep up is closed with
        1013 rather than buffered without bound. HubError: it did not reach other workers.
        """
        await self.hub.publish(_topic(room), _encode(event))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and isinstance(task.exception(), HubError):
            logger.warning("chat event not sent to other workers: %s", task.exception())

    def _refuse_binary(self, ws: WebSocket, data: bytes) -> None:
        self._spawn(ws.close(CloseCode.UNSUPPORTED_DATA, "the chat takes text messages only"))


def _topic(room: str) -> str:
    return "chat:" + room


def _encode(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


# What json.dumps(ensure_ascii=False) adds to a character: "\\" and "\"" and the five
# short escapes one byte, the other control characters five ("\u0000").
_ESCAPE_COST = {**{chr(c): 5 for c in range(0x20)},
                **{c: 1 for c in '"\\\b\f\n\r\t'}}


def _json_size(text: str) -> int:
    """The UTF-8 size of ``text`` as a JSON string's content (quotes excluded)."""
    size = len(text) if text.isascii() else len(text.encode())
    return size + sum(text.count(char) * cost for char, cost in _ESCAPE_COST.items())


def _echo_back(ws: WebSocket, message: str | memoryview) -> None:
    # wskit still answers a message that came with the peer's Close, but one that comes
    # after our Close cannot be (RFC 6455 §5.5.1): no error of the echo, nothing to log.
    with contextlib.suppress(WSKitError):
        ws.send(message)


def _echo(req: Request, ws: WebSocket) -> None:
    ws.on_text(_echo_back)
    # The zero-copy view is sent before the listener returns, so no copy is needed.
    ws.on_buffer(_echo_back)


def create_app(chat: ChatRooms | None = None, *, hub: Hub | None = None,
               **options: Any) -> App:
    """The demo App; ``hub`` carries the chat rooms (default: in-process); ``options`` go
    to ``App`` (limits, compression...)."""
    app = App(**options)
    if chat is None:
        chat = ChatRooms(hub)
    page = Response(index_html(), content_type="text/html; charset=utf-8",
                    headers=[("Cache-Control", "no-cache")])
    app.websocket("echo", _echo)
    app.websocket("chat/{room}", chat.join)
    # The page's rooms: history, resume and presence, with the browser client.
    app.websocket("rooms/{room}", LiveRooms(chat.hub).join)
    script = script_response()
    app.get("wskit.js", lambda req: script)
    app.get("/", lambda req: page)
    app.get("health", lambda req: "ok")
    app.metrics_route("/metrics")
    return app
