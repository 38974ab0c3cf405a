"""The peers of the matrix by name, and which of them can do what (for parametrize)."""

from __future__ import annotations

from collections.abc import Callable

from interop_support import PeerClient, PeerServer
from peer_aiohttp import AiohttpClient, AiohttpServer
from peer_chromium import ChromiumClient
from peer_node import NodeClient, NodeServer
from peer_websocket_client import WebsocketClientClient
from peer_websockets import WebsocketsClient, WebsocketsServer

CLIENTS: dict[str, type[PeerClient]] = {
    cls.name: cls
    for cls in (WebsocketsClient, AiohttpClient, WebsocketClientClient, NodeClient, ChromiumClient)
}
SERVERS: dict[str, type[PeerServer]] = {
    cls.name: cls for cls in (WebsocketsServer, AiohttpServer, NodeServer)
}


def clients(where: Callable[[type[PeerClient]], bool] = lambda cls: True) -> list[str]:
    """Names of the client peers that can do something, for ``parametrize(..., indirect=True)``."""
    return [name for name, cls in CLIENTS.items() if where(cls)]


def servers(where: Callable[[type[PeerServer]], bool] = lambda cls: True) -> list[str]:
    return [name for name, cls in SERVERS.items() if where(cls)]
