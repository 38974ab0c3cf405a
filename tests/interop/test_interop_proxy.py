"""wskit's client through real proxies (tinyproxy, microsocks) to every server peer, plain and
over TLS inside the tunnel (verified for the URL's host name)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from interop_peers import servers
from interop_support import SIZES, TLS, PeerServer, expect, got, payload
from proxies import with_credentials

import wskit

pytestmark = pytest.mark.interop

Run = Callable[..., Any]
Factory = Callable[[], PeerServer]

#: (proxy kind, TLS inside the tunnel): every kind plain, the two name-handling kinds over TLS.
CASES = [
    pytest.param(kind, secure, id=f"{kind}-{'wss' if secure else 'ws'}")
    for kind, secure in [
        ("http", False), ("http-auth", False), ("socks5", False), ("socks5h", False),
        ("socks5h-auth", False), ("http", True), ("socks5h", True),
    ]
]


def proxy_url(proxies: dict[str, str], kind: str) -> str:
    name, auth = kind.removesuffix("-auth"), kind.endswith("-auth")
    if name == "http":
        url = proxies["http-auth" if auth else "http"]
    else:
        url = f"{name}://{proxies['socks-auth' if auth else 'socks']}"
    return with_credentials(url) if auth else url


@contextlib.asynccontextmanager
async def serving(factory: Factory, **options: Any) -> AsyncIterator[PeerServer]:
    peer = factory()
    try:
        await peer.start(**options)
        yield peer
    finally:
        await peer.stop()


@pytest.mark.parametrize(("kind", "secure"), CASES)
@pytest.mark.parametrize("server", servers(), indirect=True)
def test_echo_through_proxy(run: Run, server: Factory, proxies: dict[str, str], tls: TLS,
                            kind: str, secure: bool) -> None:
    """Text and binary of every size boundary through the tunnel, then a clean close."""
    async def main() -> None:
        async with serving(server, tls=tls if secure else None) as peer:
            # By name: TLS must be verified for "localhost", the URL's host, not the proxy's.
            url = peer.url("/echo").replace("127.0.0.1", "localhost")
            ws = await wskit.connect(url, proxy=proxy_url(proxies, kind), compression=None,
                                     ssl=tls.client if secure else None, ping_interval=None)
            for kind_ in ("text", "binary"):
                for size in SIZES:
                    ws.send(payload(kind_, size))
                assert [got(await ws.receive()) for _ in SIZES] == [
                    expect(kind_, size) for size in SIZES]
            await ws.close(1000)
            assert ws.close_code == 1000

    run(main())
