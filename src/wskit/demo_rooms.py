"""The demo's resumable chat rooms (``/rooms/{room}``, the page's): history, resume, a member
list from presence, one name per room; and the browser client script the page imports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from importlib import resources
from typing import Any

from .core.errors import WSKitError
from .hub import Hub, HubError, envelope, parse_since, subscribed_message
from .server import Request, Response
from .websocket import WebSocket

__all__ = ["HISTORY", "NAME_TAKEN", "LiveRooms", "chat_format", "client_script",
           "presence_event", "script_response"]

logger = logging.getLogger("wskit.demo")

#: Publications each room keeps for members coming back, and for how long (seconds).
HISTORY = (1000, 3600.0)
#: The close code of a refused name (an application code: the page does not retry).
NAME_TAKEN = 4409
#: Longest name and longest member key kept.
MAX_NAME = 32
MAX_KEY = 64


def client_script() -> str:
    """The browser client, ``static/wskit.js`` (an ES module)."""
    return (resources.files("wskit") / "static" / "wskit.js").read_text(encoding="utf-8")


def script_response() -> Response:
    """``GET /wskit.js``: the browser client, for any app that serves pages using it."""
    return Response(client_script(), content_type="text/javascript; charset=utf-8",
                    headers=[("Cache-Control", "no-cache")])


def chat_format(topic: str, offset: int | None, epoch: str | None,
                data: str | bytes) -> str | bytes:
    """The demo hub's format: the envelope on topics with history, the data as is on others
    (the plain ``/chat/{room}`` rooms)."""
    return data if offset is None else envelope(topic, offset, epoch, data)


def presence_event(topic: str, event: str, member_id: str, info: Any) -> str:
    """A join or leave as the page reads it: ``{"type": "presence", "event", "id", "name"}``."""
    name = info.get("name") if isinstance(info, dict) else None
    return json.dumps({"type": "presence", "event": event, "id": member_id, "name": name},
                      ensure_ascii=False)


def _clean(value: str, limit: int) -> str:
    return " ".join(value.split())[:limit]


class LiveRooms:
    """Rooms whose members come back without missing anything.

    ``/rooms/{room}?name=N&key=K[&since=...]``: a member's text messages go to the room as
    ``{"type": "message", "name", "text"}`` publications of the topic ``room:{room}``, kept
    in its history; a member who reconnects with ``since`` gets what it missed first. Then
    the server sends ``{"type": "members", "members": {id: name}}`` (from presence, every
    worker) and the subscribe answer; joins and leaves come as presence events. A name
    another member of the room has (with another ``key``, the page's own random id) is
    refused: the connection is closed with 4409 and a reason that says so.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._tasks: set[asyncio.Task[Any]] = set()

    async def join(self, req: Request, ws: WebSocket) -> None:
        room = req.params["room"]
        topic = "room:" + room
        name = _clean(req.query.get("name", ""), MAX_NAME)
        key = req.query.get("key", "")[:MAX_KEY]
        if not name:
            await ws.close(NAME_TAKEN, "a name is needed to join")
            return
        try:
            members = await self.hub.presence(topic)
        except HubError as exc:
            await ws.close(1013, f"the room is unavailable: {exc}"[:120])
            return
        if any(info.get("name") == name and info.get("key") != key
               for info in members.values() if isinstance(info, dict)):
            logger.info("%s refused in %r: name taken", name, room)
            await ws.close(NAME_TAKEN, f"the name {name} is already taken in this room"[:120])
            return
        since = parse_since(req.query.get_all("since")).get(topic)
        try:
            joined = await self.hub.subscribe(ws, topic, since=since,
                                              info={"name": name, "key": key},
                                              presence_events=True)
            members = await self.hub.presence(topic)
        except HubError as exc:
            await ws.close(1013, f"the room is unavailable: {exc}"[:120])
            return
        logger.info("%s joined %r (%s)", name, room,
                    "resumed" if joined.recovered else "new" if since is None else "reloaded")
        with contextlib.suppress(WSKitError):
            ws.send(json.dumps({"type": "members", "members": {
                member_id: info.get("name") for member_id, info in members.items()
                if isinstance(info, dict)}}, ensure_ascii=False))
            ws.send(subscribed_message(joined))

        async def say(ws: WebSocket, text: str) -> None:
            try:
                await self.hub.publish(topic, json.dumps(
                    {"type": "message", "name": name, "text": text}, ensure_ascii=False))
            except HubError as exc:
                with contextlib.suppress(WSKitError):
                    ws.send(json.dumps({"type": "error", "text": f"not sent: {exc}"}))

        ws.on_text(say)
        ws.on_binary(self._refuse_binary)

    def _refuse_binary(self, ws: WebSocket, data: bytes) -> None:
        self._spawn(ws.close(1003, "the chat takes text messages only"))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
