"""The peers of the matrix by name, and which of them can do what (for parametrize)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
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


def plain_and_deflate(peers: dict[str, Any]) -> list[Any]:
    """(peer, compression) for each peer: None, and "deflate" where the peer has it."""
    return [pytest.param(name, mode, id=f"{name}-{mode or 'plain'}")
            for name, cls in peers.items()
            for mode in (None, "deflate") if mode is None or mode in cls.modes]


def big_cases(peers: dict[str, Any]) -> list[Any]:
    """16 MiB once per peer and compression setting: plain on asyncio, deflate on uvloop."""
    return [pytest.param(name, mode, "uvloop" if mode else "asyncio",
                         id=f"{name}-{mode or 'plain'}")
            for name, cls in peers.items()
            for mode in (None, "deflate") if mode is None or mode in cls.modes]


SUBPROTOCOL_CASES = [
    pytest.param(["chat.v1", "chat.v2"], "chat.v2", id="both-server-order"),
    pytest.param(["chat.v1", "other"], "chat.v1", id="one-shared"),
    pytest.param(["other"], None, id="none-shared"),
    pytest.param([], None, id="none-offered"),
]
