"""Proxy tunnels: which proxy a URL goes through, and a socket connected through it (HTTP
CONNECT with core/proxy.py, SOCKS with the python-socks package)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from .core.errors import ConnectFailed
from .core.proxy import ConnectTunnel, ProxyError, ProxyURL, parse_proxy_url, proxy_from_environment
from .options import WebSocketURI

__all__ = ["choose_proxy", "open_tunnel", "os_error_text"]

# What one read of the proxy's answer takes; the answer's size is bounded by the parser.
_READ_SIZE = 16384


def choose_proxy(setting: str | bool | None, uri: WebSocketURI) -> ProxyURL | None:
    """The proxy for ``uri``: ``setting`` True reads the environment as curl does, a string is
    the proxy URL, None or False means no proxy."""
    if setting is None or setting is False:
        return None
    if setting is True:
        url = proxy_from_environment(uri.secure, uri.host, os.environ)
        if url is None:
            return None
        try:
            return parse_proxy_url(url)
        except ValueError as exc:
            raise ConnectFailed(f"the proxy from the environment is unusable: {exc}") from None
    return parse_proxy_url(setting)


async def open_tunnel(proxy: ProxyURL, host: str, port: int) -> socket.socket:
    """A non-blocking socket connected to ``host:port`` through ``proxy``; raises ProxyError."""
    if proxy.scheme == "http":
        return await _http_connect(proxy, host, port)
    return await _socks(proxy, host, port)


async def _tcp(host: str, port: int) -> socket.socket:
    """A connected non-blocking socket, trying each address of ``host`` in turn."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError(f"no address for {host}")


def os_error_text(exc: OSError) -> str:
    """What went wrong, in the system's words ("connection refused"), without the addresses
    asyncio adds to them."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or exc.__class__.__name__


def _unreachable(proxy: ProxyURL, exc: OSError) -> ProxyError:
    return ProxyError(f"cannot reach the proxy {proxy}: {os_error_text(exc)}", transient=True)


async def _http_connect(proxy: ProxyURL, host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        sock = await _tcp(proxy.host, proxy.port)
    except OSError as exc:
        raise _unreachable(proxy, exc) from exc
    try:
        tunnel = ConnectTunnel(host, port, proxy=proxy)
        await loop.sock_sendall(sock, tunnel.request_bytes())
        while True:
            data = await loop.sock_recv(sock, _READ_SIZE)
            if not data:
                raise ProxyError(f"the proxy {proxy} closed the connection before answering "
                                 "CONNECT", transient=True)
            if tunnel.receive_data(data):
                break
        if tunnel.leftover:
            # The server speaks after the client in both WebSocket and TLS: bytes here are the
            # proxy's doing, and the tunnel cannot be trusted.
            raise ProxyError(f"the proxy {proxy} sent data after its answer to CONNECT")
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError) and not isinstance(exc, ProxyError):
            raise ProxyError(f"the proxy {proxy} dropped the connection: {exc}",
                             transient=True) from exc
        raise
    return sock


async def _socks(proxy: ProxyURL, host: str, port: int) -> socket.socket:
    try:
        from python_socks import ProxyConnectionError, ProxyType
        from python_socks import ProxyError as SocksError
        from python_socks.async_.asyncio import Proxy
    except ImportError:
        raise ConnectFailed(
            f"a {proxy.scheme}:// proxy needs the python-socks package: "
            "pip install 'wskit[socks]'"
        ) from None
    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    # socks5h and socks4a hand the host name to the proxy; the others resolve it here.
    remote_dns = proxy.scheme in ("socks5h", "socks4a")
    client: Any = Proxy(kind, proxy.host, proxy.port, proxy.username, proxy.password,
                        rdns=remote_dns)
    try:
        # open_connection() bounds the whole opening; this bound only stops python-socks'
        # default of 60 s from cutting it shorter.
        sock: socket.socket = await client.connect(host, port, timeout=24 * 3600)
    except ProxyConnectionError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise _unreachable(proxy, cause) from exc
    except SocksError as exc:
        raise ProxyError(f"the SOCKS proxy {proxy} refused to open a tunnel to "
                         f"{host}:{port}: {exc}") from exc
    return sock
