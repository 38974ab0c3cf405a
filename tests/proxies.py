"""Real proxies for the tests: Debian's tinyproxy (HTTP CONNECT) and microsocks (SOCKS5),
each started on a free loopback port, with or without credentials."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cli_process import free_port, stop, wait_for_port

#: The credentials of the proxies started with ``auth=True``.
USER, PASSWORD = "wsuser", "s3cr.t-pw"  # tinyproxy takes letters, digits, "-", "." and "_"


@contextlib.contextmanager
def tinyproxy(program: str, folder: Path, *, auth: bool = False) -> Iterator[str]:
    """tinyproxy on 127.0.0.1, CONNECT allowed to any port (no ConnectPort line); its URL."""
    port = free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        "LogLevel Warning",
        "MaxClients 64",
        "Allow 127.0.0.1",
        "DisableViaHeader Yes",
    ]
    if auth:
        lines.append(f"BasicAuth {USER} {PASSWORD}")
    config = folder / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    log = (folder / f"tinyproxy-{port}.log").open("wb")
    proc = subprocess.Popen([program, "-d", "-c", str(config)], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


@contextlib.contextmanager
def microsocks(program: str, *, auth: bool = False) -> Iterator[str]:
    """microsocks (SOCKS5) on 127.0.0.1; its address as host:port."""
    port = free_port()
    args = [program, "-i", "127.0.0.1", "-p", str(port)]
    if auth:
        args += ["-u", USER, "-P", PASSWORD]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def with_credentials(url: str) -> str:
    """``url`` with the test user and password, percent-encoded."""
    from urllib.parse import quote

    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@{rest}"
