"""Interop fixtures: TLS material, the peers by name (indirect parameters), Chromium per module."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from interop_peers import CLIENTS, SERVERS
from interop_support import TLS, PeerClient, PeerServer
from peer_chromium import BrowserThread
from peer_node import node_ready

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    folder: Path = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    return TLS(server, client, str(folder / "ca.pem"), str(folder / "cert.pem"),
               str(folder / "key.pem"))


@pytest.fixture
def node(require: Callable[[str], str]) -> str:
    """Node.js with the ws package installed (skips locally without them, fails in CI)."""
    path = require("node")
    try:
        return node_ready(path)
    except FileNotFoundError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[BrowserThread]:
    """One Chromium per module; reach it through ``chromium``, which checks it is installed."""
    path = shutil.which("chromium")
    assert path is not None
    browser = BrowserThread(path)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def chromium(require: Callable[[str], str], request: pytest.FixtureRequest) -> BrowserThread:
    require("chromium")
    browser: BrowserThread = request.getfixturevalue("chromium_browser")
    return browser


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Callable[[], PeerClient]:
    """A factory of the client peer named by the (indirect) parameter."""
    name: str = request.param
    args: list[Any] = []
    if name == "node-ws":
        args = [request.getfixturevalue("node")]
    elif name == "chromium":
        args = [request.getfixturevalue("chromium")]
    cls = CLIENTS[name]
    return lambda: cls(*args)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Callable[[], PeerServer]:
    """A factory of the server peer named by the (indirect) parameter."""
    name: str = request.param
    args = [request.getfixturevalue("node")] if name == "node-ws" else []
    cls = SERVERS[name]
    return lambda: cls(*args)
