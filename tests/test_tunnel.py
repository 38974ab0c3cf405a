"""The client through real proxies (tinyproxy, microsocks): the tunnel, the environment, the
refusals (407, unreachable, SOCKS authentication), each with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_process import free_port
from e2e import quiet_app, quiet_connect, serving
from proxies import with_credentials

import wskit


def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
    ws.on_text(lambda ws, text: ws.send(f"{text} via {req.headers.get('Host')}"))


def proxy_url(proxies: dict[str, str], kind: str) -> str:
    """kind: http, http-auth, socks5, socks5h, socks5-auth, socks5h-auth."""
    name, auth = kind.removesuffix("-auth"), kind.endswith("-auth")
    url = proxies["http-auth" if auth else "http"] if name == "http" else (
        f"{name}://{proxies['socks-auth' if auth else 'socks']}")
    return with_credentials(url) if auth else url


@pytest.mark.parametrize("kind", ["http", "http-auth", "socks5", "socks5h", "socks5h-auth"])
def test_through_each_proxy(run: Any, proxies: dict[str, str], kind: str) -> None:
    app = quiet_app()
    app.websocket("echo", echo)

    async def main() -> None:
        async with serving(app) as base:
            # "localhost": socks5h hands the name to the proxy, the others resolve it here.
            url = base.replace("127.0.0.1", "localhost") + "/echo"
            async with quiet_connect(url, proxy=proxy_url(proxies, kind)) as ws:
                ws.send("hello")
                assert await ws.receive() == f"hello via localhost:{app.port}"
                # The connection came from the proxy, not from us.
                assert ws.url == url

    run(main())


def test_proxy_from_the_environment_and_no_proxy(run: Any, proxies: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    app = quiet_app()
    seen: list[Any] = []

    @app.websocket("who")
    def who(req: wskit.Request, ws: wskit.WebSocket) -> None:
        seen.append(req.headers.get("Host"))

    async def main() -> None:
        async with serving(app) as base:
            for name in ("ws_proxy", "http_proxy", "all_proxy", "no_proxy", "NO_PROXY",
                         "WS_PROXY", "ALL_PROXY"):
                monkeypatch.delenv(name, raising=False)
            # tinyproxy with credentials: a connection without them fails, so we know the
            # proxy was used.
            monkeypatch.setenv("http_proxy", proxies["http-auth"])
            with pytest.raises(wskit.ProxyError) as info:
                await quiet_connect(base + "/who")
            assert info.value.status == 407
            monkeypatch.setenv("no_proxy", "example.com, 127.0.0.0/8")
            async with quiet_connect(base + "/who"):
                pass
            monkeypatch.setenv("no_proxy", "example.com")
            # proxy=None turns the environment off.
            async with quiet_connect(base + "/who", proxy=None):
                pass
            monkeypatch.setenv("http_proxy", with_credentials(proxies["http-auth"]))
            async with quiet_connect(base + "/who"):
                pass
        assert len(seen) == 3

    run(main())


def test_407_without_credentials(run: Any, proxies: dict[str, str]) -> None:
    async def main() -> None:
        with pytest.raises(wskit.ProxyError) as info:
            await quiet_connect("ws://127.0.0.1:9/", proxy=proxies["http-auth"])
        assert info.value.status == 407
        assert str(info.value) == (
            f"the proxy {proxies['http-auth']} requires authentication (HTTP 407 Proxy "
            "Authentication Required): put user:password@ in the proxy URL"
        )

    run(main())


def test_407_with_wrong_credentials(run: Any, proxies: dict[str, str]) -> None:
    async def main() -> None:
        proxy = proxies["http-auth"].replace("http://", "http://wsuser:wrong@")
        with pytest.raises(wskit.ProxyError) as info:
            await quiet_connect("ws://127.0.0.1:9/", proxy=proxy)
        assert "it refused the user and password of the proxy URL" in str(info.value)
        assert "wrong" not in str(info.value)

    run(main())


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_proxy_unreachable(run: Any, scheme: str) -> None:
    port = free_port()

    async def main() -> None:
        with pytest.raises(wskit.ProxyError) as info:
            await quiet_connect("ws://127.0.0.1:9/", proxy=f"{scheme}://127.0.0.1:{port}")
        assert str(info.value) == (
            f"cannot reach the proxy {scheme}://127.0.0.1:{port}: connection refused"
        )
        assert info.value.transient  # the reconnecting client tries again

    run(main())


def test_socks_authentication_failure(run: Any, proxies: dict[str, str]) -> None:
    async def main() -> None:
        proxy = f"socks5://wsuser:wrong@{proxies['socks-auth']}"
        with pytest.raises(wskit.ProxyError) as info:
            await quiet_connect("ws://127.0.0.1:9/", proxy=proxy)
        message = str(info.value)
        assert message.startswith(
            f"the SOCKS proxy socks5://wsuser@{proxies['socks-auth']} refused to open a tunnel "
            "to 127.0.0.1:9: "
        )
        assert "authentication" in message.lower()
        assert not info.value.transient

    run(main())


def test_proxy_refuses_the_target(run: Any, proxies: dict[str, str]) -> None:
    port = free_port()

    async def main() -> None:
        # Nobody listens behind the proxy: tinyproxy answers with an error status.
        with pytest.raises(wskit.ProxyError) as info:
            await quiet_connect(f"ws://127.0.0.1:{port}/", proxy=proxies["http"])
        assert f"refused to open a tunnel to 127.0.0.1:{port}: HTTP 5" in str(info.value)
        with pytest.raises(wskit.ProxyError) as info:
            await quiet_connect(f"ws://127.0.0.1:{port}/", proxy=f"socks5://{proxies['socks']}")
        assert f"refused to open a tunnel to 127.0.0.1:{port}" in str(info.value)

    run(main())


@pytest.mark.parametrize("kind", ["http", "socks5h", "socks5"])
def test_tls_inside_the_tunnel_uses_the_urls_host_name(run: Any, proxies: dict[str, str],
                                                       kind: str) -> None:
    """The certificate names only "localhost" (not 127.0.0.1, the proxy's address): the
    handshake succeeds only if the server name sent and verified is the URL's host."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app = quiet_app()
    app.websocket("echo", echo)

    async def main() -> None:
        async with serving(app, ssl=server_context, scheme="wss") as base:
            url = base.replace("127.0.0.1", "localhost") + "/echo"
            async with quiet_connect(url, proxy=proxy_url(proxies, kind),
                                     ssl=client_context) as ws:
                ws.send("secret")
                assert await ws.receive() == f"secret via localhost:{app.port}"
            # And without the proxy, by address, the same certificate is refused.
            with pytest.raises(ssl.SSLCertVerificationError):
                await quiet_connect(base + "/echo", ssl=client_context, proxy=None)
        assert names[0] == "localhost"

    run(main())


def test_the_cli_through_proxies(proxies: dict[str, str]) -> None:
    import subprocess
    import sys

    from cli_process import WAIT, Server, python_env

    def wskit_connect(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in python_env().items() if "proxy" not in k.lower()}
        return subprocess.run([sys.executable, "-m", "wskit", "connect", *args], input="hi\n",
                              text=True, capture_output=True, timeout=WAIT,
                              env={**environment, **env})

    with Server() as server:
        url = f"{server.ws_url}/echo"
        done = wskit_connect(url, http_proxy=proxies["http-auth"])
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"error: the proxy {proxies['http-auth']} requires authentication (HTTP 407 Proxy "
            "Authentication Required): put user:password@ in the proxy URL")
        done = wskit_connect("--proxy", with_credentials(proxies["http-auth"]), url)
        assert done.returncode == 0 and done.stdout == "< hi\n", done.stderr
        done = wskit_connect("--proxy", f"socks5h://{proxies['socks']}", url)
        assert done.returncode == 0 and done.stdout == "< hi\n", done.stderr
        done = wskit_connect("--proxy", "none", url, http_proxy=proxies["http-auth"])
        assert done.returncode == 0 and done.stdout == "< hi\n", done.stderr
        done = wskit_connect("--proxy", "ftp://x", url)
        assert done.returncode == 2 and "unsupported proxy" in done.stderr


def test_a_missing_proxy_program_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxies fixture must fail, not skip, when CI=true and the program is missing."""
    # ``import conftest`` finds whichever conftest.py pytest imported last (tests/core's or
    # tests/interop's in a whole run): load this folder's own, by its path.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "suite_conftest", Path(__file__).with_name("conftest.py"))
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    monkeypatch.setattr(conftest, "IN_CI", True)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="tinyproxy is required in CI"):
        conftest.require_program("tinyproxy")
