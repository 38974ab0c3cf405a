"""Errors a person can read: each failure to open, in the library and in the CLI, is one line
that says what happened and, where there is one, what to try."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_process import WAIT, Server, free_port, python_env

import wskit


def wskit_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wskit", *args], input="", text=True,
                          capture_output=True, env=python_env(), timeout=WAIT)


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The CLI's error: exit status ``code``, one line on stderr, no traceback."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


async def library_error(url: str, **options: Any) -> str:
    """The message of what ``wskit.connect`` raises, checked to be one line."""
    with pytest.raises((OSError, wskit.WSKitError)) as info:
        await wskit.connect(url, compression=None, ping_interval=None, **options)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    trustme = pytest.importorskip("trustme")
    folder = tmp_path_factory.mktemp("tls")
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "both.pem"))
    with Server("--certfile", str(folder / "both.pem")) as running:
        yield running


@pytest.fixture(scope="module")
def plain_server() -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    """Python's own http.server: a real HTTP server that knows nothing of WebSocket."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_timed_out_connect(run: Any, silent_port: int) -> None:
    url = f"ws://127.0.0.1:{silent_port}/"
    expected = (f"timed out after 0.3 s opening {url} while waiting for the answer to the "
                "WebSocket handshake ({} waits longer)")
    assert run(library_error(url, open_timeout=0.3)) == expected.format("open_timeout=")
    done = wskit_command("connect", "--open-timeout", "0.3", url)
    assert one_line_error(done) == "error: " + expected.format("--open-timeout")


def test_plain_ws_to_a_tls_port(run: Any, tls_server: Server) -> None:
    url = f"ws://127.0.0.1:{tls_server.port}/echo"
    expected = (f"127.0.0.1:{tls_server.port} closed the connection during the opening "
                "handshake without answering (if the server speaks TLS, use wss://)")
    assert run(library_error(url)) == expected
    assert one_line_error(wskit_command("connect", url)) == "error: " + expected


def test_a_tls_record_in_answer_to_ws(run: Any) -> None:
    """A server that answers plain HTTP with a TLS alert (as some TLS stacks do)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"\x15\x03\x03\x00\x02\x02\x46")  # alert: protocol_version
                conn.recv(4096)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        message = run(library_error(f"ws://127.0.0.1:{port}/"))
        thread.join(WAIT)
    assert message == f"127.0.0.1:{port} answered with TLS: the server speaks TLS, use wss://"


def test_a_plain_http_server(run: Any, http_server: int) -> None:
    url = f"ws://127.0.0.1:{http_server}/"
    expected = ("the server answered HTTP 200 OK instead of 101 Switching Protocols: not a "
                "WebSocket endpoint (a plain HTTP server, or the wrong path?)")
    assert run(library_error(url)) == expected
    done = wskit_command("connect", url)
    assert one_line_error(done) == f"error: WebSocket handshake with {url} failed: {expected}"
    assert "<html" not in done.stderr.lower()


def test_wss_to_a_plain_port(run: Any, plain_server: Server) -> None:
    url = f"wss://127.0.0.1:{plain_server.port}/echo"
    expected = (f"TLS handshake with 127.0.0.1:{plain_server.port} failed "
                "(WRONG_VERSION_NUMBER): the server does not speak TLS, use ws://")
    assert run(library_error(url)) == expected
    assert one_line_error(wskit_command("connect", url)) == "error: " + expected


def test_nobody_listening(run: Any) -> None:
    port = free_port()
    expected = f"cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)"
    assert run(library_error(f"ws://127.0.0.1:{port}/")) == expected
    assert one_line_error(wskit_command("connect", f"ws://127.0.0.1:{port}/")) == (
        "error: " + expected)


def test_port_is_not_a_number() -> None:
    done = wskit_command("serve", "--port", "abc")
    assert done.stderr.strip().splitlines()[-1] == (
        "python -m wskit serve: error: argument --port: expected a port number (0-65535), "
        "not 'abc'")
    assert done.returncode == 2
    with pytest.raises(ValueError, match=r"^invalid port in 'ws://h:abc/'$"):
        wskit.connect("ws://h:abc/")


def test_missing_certificate_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    done = wskit_command("serve", "--port", "0", "--certfile", str(missing))
    assert one_line_error(done) == f"wskit serve: certificate file not found: {missing}"
    present = tmp_path / "present.pem"
    present.write_text("not a certificate\n")
    done = wskit_command("serve", "--port", "0", "--certfile", str(present),
                         "--keyfile", str(missing))
    assert one_line_error(done) == f"wskit serve: key file not found: {missing}"
    line = one_line_error(wskit_command("serve", "--port", "0", "--certfile", str(present)))
    assert line.startswith(f"wskit serve: cannot load the certificate from {present}: ")


def test_version() -> None:
    done = wskit_command("--version")
    assert done.returncode == 0
    assert done.stdout == f"wskit {wskit.__version__}\n"


def test_open_timeout_must_be_seconds() -> None:
    done = wskit_command("connect", "--open-timeout", "soon", "ws://127.0.0.1:1/")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "argument --open-timeout: expected seconds, not 'soon'")
