"""``python -m wskit serve | connect | bench``: as subprocesses, and their parts in-process."""

from __future__ import annotations

import asyncio
import codecs
import io
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_process import WAIT, Server, free_port, python_env, screen

import wskit
from wskit import cli

Run = Callable[..., Any]


def wskit_command(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python -m wskit ARGS`` to completion (bounded) with ``stdin`` as its input."""
    return subprocess.run([sys.executable, "-m", "wskit", *args], input=stdin, text=True,
                          capture_output=True, env=python_env(), timeout=WAIT)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One ``python -m wskit serve --port 0`` for the tests that only talk to it."""
    with Server("--log-level", "debug") as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(certificate chain, key, authority) files for 127.0.0.1 and localhost, made by trustme."""
    trustme = pytest.importorskip("trustme")
    path = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, authority = path / "chain.pem", path / "key.pem", path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    ca.cert_pem.write_to_path(str(authority))
    return chain, key, authority


# -- serve, as a subprocess --------------------------------------------------------------------


def test_serve_prints_where_it_listens(server: Server) -> None:
    assert server.stdout.splitlines()[0] == f"wskit serving on http://127.0.0.1:{server.port}"
    assert f"ws://127.0.0.1:{server.port}/echo" in server.stdout
    assert server.port != 8080 and server.port > 0


def test_serve_prints_the_address_first_then_logs(tmp_path: Path) -> None:
    """Standard output and error on one terminal: the address line comes first (issue 16)."""
    output = tmp_path / "output"
    with output.open("wb") as both:
        proc = subprocess.Popen([sys.executable, "-m", "wskit", "serve", "--port", "0"],
                                stdin=subprocess.DEVNULL, stdout=both, stderr=both,
                                env=python_env())
    try:
        deadline = time.monotonic() + WAIT
        while "listening on" not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = output.read_text().splitlines()
        assert lines[0].startswith("wskit serving on http://127.0.0.1:"), lines
        assert any("INFO" in line and "listening on ws://127.0.0.1:" in line
                   for line in lines[1:]), lines
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 0


def test_serve_echo(server: Server, run: Run) -> None:
    async def main() -> None:
        async with wskit.connect(f"{server.ws_url}/echo") as ws:
            ws.send("hello")
            ws.send(b"\x00\x01")
            assert await ws.receive() == "hello"
            assert await ws.receive() == b"\x00\x01"
            assert ws.extensions == ["permessage-deflate"]

    run(main())


def test_serve_chat_two_clients_both_receive(server: Server, run: Run) -> None:
    async def main() -> None:
        room = f"{server.ws_url}/chat/cli-{id(main)}"
        async with wskit.connect(f"{room}?name=ada") as ada, \
                wskit.connect(f"{room}?name=bob") as bob:
            ada.send("hello, room")
            for ws in (ada, bob):
                async for message in ws:
                    assert isinstance(message, str)
                    if '"message"' in message:
                        assert '"text": "hello, room"' in message and '"ada"' in message
                        break

    run(main())


def test_serve_page_and_health(server: Server) -> None:
    with urllib.request.urlopen(f"{server.url}/", timeout=WAIT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        page = response.read().decode()
    assert '"/wskit.js"' in page and "<title>wskit chat</title>" in page
    with urllib.request.urlopen(f"{server.url}/wskit.js", timeout=WAIT) as response:
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert "new WebSocket(" in response.read().decode()
    with urllib.request.urlopen(f"{server.url}/health", timeout=WAIT) as response:
        assert response.read() == b"ok"


def test_serve_logs_connections(server: Server, run: Run) -> None:
    async def main() -> None:
        async with wskit.connect(f"{server.ws_url}/echo") as ws:
            ws.send("x")
            await ws.receive()

    run(main())
    log = server.stderr
    assert "wskit: listening on ws://127.0.0.1" in log
    assert " /echo (permessage-deflate)" in log and "received=1000" in log


def test_serve_shuts_down_gracefully_on_sigterm(run: Run) -> None:
    async def main(server: Server) -> None:
        ws = await wskit.connect(f"{server.ws_url}/chat/lobby?name=ada")
        await ws.receive()
        # Stop from a thread: the client must keep answering the closing handshake meanwhile.
        status = await asyncio.get_running_loop().run_in_executor(None, server.stop)
        assert status == 0
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")

    with Server() as server:
        run(main(server))
        assert "closing 1 connections with 1001" in server.stderr


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_serve_stops_on_sigint(run: Run) -> None:
    with Server() as server:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(WAIT) == 0


def test_serve_options(run: Run) -> None:
    async def main(server: Server) -> None:
        async with wskit.connect(f"{server.ws_url}/echo") as ws:
            assert ws.extensions == []  # --no-compression
            ws.send("x" * 64)
            assert await ws.receive() == "x" * 64
            ws.send("x" * 65)
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1009

    with Server("--max-message-size", "64", "--no-compression", "--log-level", "error") as server:
        run(main(server))
        assert "INFO" not in server.stderr


def test_serve_tls(certificate: tuple[Path, Path, Path], run: Run) -> None:
    chain, key, authority = certificate

    async def main(server: Server) -> None:
        context = ssl.create_default_context(cafile=str(authority))
        async with wskit.connect(f"{server.ws_url}/echo", ssl=context) as ws:
            ws.send("secret")
            assert await ws.receive() == "secret"

    with Server("--certfile", str(chain), "--keyfile", str(key)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        run(main(server))
        # The interactive client: --insecure skips the check, without it the error is clear.
        done = wskit_command("connect", "-k", f"{server.ws_url}/echo")
        assert done.returncode == 0, done.stderr
        done = wskit_command("connect", f"{server.ws_url}/echo")
        assert done.returncode == 1
        assert "not trusted" in done.stderr and "--insecure" in done.stderr


def test_serve_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = wskit_command("serve", "--port", port)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_missing_certificate(tmp_path: Path) -> None:
    done = wskit_command("serve", "--port", "0", "--certfile", str(tmp_path / "missing.pem"))
    assert done.returncode == 1 and "certificate file not found" in done.stderr


@pytest.mark.parametrize("args", [
    ["serve", "--keyfile", "key.pem"],
    ["serve", "--port", "70000"],
    ["serve", "--max-message-size", "0"],
    ["serve", "--log-level", "loud"],
    ["connect", "http://example.com/"],
    ["connect", "ws://127.0.0.1:1/", "--header", "no colon"],
    ["frobnicate"],
    [],
])
def test_usage_errors(args: list[str]) -> None:
    done = wskit_command(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


# -- connect, as a subprocess ------------------------------------------------------------------


def test_connect_echoes_stdin_lines(server: Server, run: Run) -> None:
    """Lines in, ``< line`` out, EOF closes with 1000 and exits 0."""

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wskit", "connect", f"{server.ws_url}/echo",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=python_env(),
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            for line in ("hello", "wörld", "", "  spaced  "):
                proc.stdin.write(f"{line}\n".encode())
                await proc.stdin.drain()
                echoed = await asyncio.wait_for(proc.stdout.readline(), WAIT)
                assert echoed.decode() == f"< {line}\n"
            proc.stdin.close()
            assert await asyncio.wait_for(proc.wait(), WAIT) == 0
            err = (await proc.stderr.read()).decode()
            assert "connected to" in err and err.rstrip().endswith("closed: 1000")
            assert await proc.stdout.read() == b""
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    run(main())


class PtyOutput:
    """What a program wrote to the terminal whose other end is ``master``."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def wait_for(self, predicate: Callable[[str], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not predicate(self.text):
            left = deadline - time.monotonic()
            assert left > 0, f"waited for {what}; the terminal shows:\n{self.text!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.text += self._decoder.decode(os.read(self.master, 65536))
                except OSError:  # the program is gone and the terminal closed
                    assert predicate(self.text), f"no {what}:\n{self.text!r}"

    @property
    def rows(self) -> list[str]:
        return screen(self.text)


def test_connect_at_a_terminal_keeps_the_line_being_typed(server: Server) -> None:
    """At a terminal, a message that arrives while a line is typed is printed above it, and
    the line is drawn again, whole; Ctrl-C then closes with 1000 (issue 16)."""
    termios = pytest.importorskip("termios")
    import fcntl

    from websockets.sync.client import connect as peer_connect

    room = f"{server.ws_url}/chat/tty-{os.getpid()}"
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wskit", "connect", f"{room}?name=tty"],
        stdin=slave, stdout=slave, stderr=slave, env=python_env(), start_new_session=True,
        # The pty becomes the controlling terminal, so that Ctrl-C there sends SIGINT.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    terminal = PtyOutput(master)
    try:
        terminal.wait_for(lambda text: screen(text)[-1] == "> ", "the prompt")
        os.write(master, "hél".encode())
        terminal.wait_for(lambda text: screen(text)[-1] == "> hél", "the typed text")
        with peer_connect(f"{room}?name=other", open_timeout=WAIT) as other:
            terminal.wait_for(lambda text: '"join", "name": "other"' in text, "the join")
            terminal.wait_for(lambda text: screen(text)[-1] == "> hél", "the line again")
            rows = terminal.rows
            assert rows[-2].startswith('< {"type": "join", "name": "other"'), rows
            assert not any("hél<" in row for row in rows), rows
            assert json.loads(other.recv(WAIT))["type"] == "join"
            os.write(master, b"\x7flo\n")  # a backspace, then the end of the line
            assert json.loads(other.recv(WAIT)) == {"type": "message", "name": "tty",
                                                    "text": "hélo"}
            terminal.wait_for(lambda text: '"text": "hélo"' in text, "the message back")
            os.write(master, b"typing\x03")  # Ctrl-C: what is typed is not sent
            assert proc.wait(WAIT) == 0
            terminal.wait_for(lambda text: "closed: 1000" in text, "the close")
            assert json.loads(other.recv(WAIT))["type"] == "leave"
        assert termios.tcgetattr(slave)[3] & termios.ICANON  # the terminal is as it was
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_connect_help_says_how_to_close() -> None:
    done = wskit_command("connect", "--help")
    assert "Ctrl-C" in " ".join(done.stdout.split()) and "1000" in done.stdout


def test_connect_reads_a_pipe(server: Server) -> None:
    """Piped input: every line is answered, even those that reach the server with the Close."""
    lines = [f"line {i}" for i in range(100)]
    done = wskit_command("connect", f"{server.ws_url}/echo", stdin="\n".join(lines))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"< {line}" for line in lines]


def test_connect_with_nothing_to_send(server: Server) -> None:
    done = wskit_command("connect", f"{server.ws_url}/echo")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.rstrip().endswith("closed: 1000")


def test_connect_refused_handshake(server: Server) -> None:
    done = wskit_command("connect", f"{server.ws_url}/nowhere")
    assert done.returncode == 1
    assert "handshake" in done.stderr and "404" in done.stderr
    # The server logged it at INFO, as the README says of refused handshakes.
    assert re.search(r"INFO    wskit: \[c[0-9a-f]+\] refusing GET /nowhere from \('127\.0\.0\.1',",
                     server.stderr)
    assert "Traceback" not in done.stderr


def test_connect_nobody_listening() -> None:
    done = wskit_command("connect", f"ws://127.0.0.1:{free_port()}/")
    assert done.returncode == 1
    assert "cannot connect" in done.stderr and "Traceback" not in done.stderr


# -- the same, in-process ----------------------------------------------------------------------


@asynccontextmanager
async def peer() -> AsyncIterator[tuple[str, list[Any]]]:
    """A server for the client tests: its ws:// base URL and what its routes received."""
    app = wskit.App(subprotocols=["chat.v1"], ping_interval=None)
    received: list[Any] = []

    def record(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: received.append(text))

    def hello(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.send(f"token={req.headers.get('X-Token')} subprotocol={ws.subprotocol}")

    async def bye(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.send(bytes(range(3)))
        ws.send(bytes(100))
        await ws.close(4000, "bye")

    # (The decorator form is typed Any, which mypy --strict refuses on a typed function.)
    app.websocket("record", record)
    app.websocket("hello", hello)
    app.websocket("bye", bye)

    await app.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{app.port}", received
    finally:
        await app.shutdown(timeout=WAIT)


class Terminal:
    """A pipe as stdin and text buffers as stdout and stderr, for ``connect_interactive``."""

    def __init__(self) -> None:
        self.stdin_fd, self._write_fd = os.pipe()
        self.out = io.StringIO()
        self.err = io.StringIO()

    def type(self, text: str | bytes) -> None:
        os.write(self._write_fd, text.encode() if isinstance(text, str) else text)

    def end(self) -> None:
        """Ctrl-D."""
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1

    def close(self) -> None:
        self.end()
        # The reader thread owns the read end until EOF; it closes with the process otherwise.

    async def wait_for(self, text: str) -> None:
        for _ in range(int(WAIT / 0.01)):
            if text in self.out.getvalue():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{text!r} never printed; got {self.out.getvalue()!r}")

    def connect(self, url: str, **options: Any) -> asyncio.Task[int]:
        return asyncio.ensure_future(cli.connect_interactive(
            url, stdin_fd=self.stdin_fd, out=self.out, err=self.err, handle_signals=False,
            **options))


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


def test_interactive_sends_lines_and_a_last_unfinished_one(run: Run, terminal: Terminal) -> None:
    async def main() -> None:
        async with peer() as (base, received):
            task = terminal.connect(f"{base}/record")
            terminal.type("one\r\ntw")
            terminal.type(b"o\nthr\xc3")
            await asyncio.sleep(0.05)
            terminal.type(b"\xa9e")  # "é" split between two reads
            terminal.end()
            assert await asyncio.wait_for(task, WAIT) == 0
            assert received == ["one", "two", "thrée"]

    run(main())


def test_interactive_prints_binary_and_the_servers_close(run: Run, terminal: Terminal) -> None:
    async def main() -> None:
        async with peer() as (base, _):
            task = terminal.connect(f"{base}/bye")
            assert await asyncio.wait_for(task, WAIT) == 1  # 4000 is no normal close
            assert terminal.out.getvalue().splitlines() == [
                "< [binary 3 bytes] 00 01 02",
                "< [binary 100 bytes] " + " ".join(["00"] * cli.HEX_PREVIEW) + " …",
            ]
            assert terminal.err.getvalue().splitlines()[-1] == "closed by the server: 4000 bye"

    run(main())


def test_interactive_headers_and_subprotocols(run: Run, terminal: Terminal) -> None:
    async def main() -> None:
        async with peer() as (base, _):
            task = terminal.connect(f"{base}/hello", headers=[("X-Token", "t0k")],
                                    subprotocols=["chat.v1"], compression=False)
            await terminal.wait_for("< token=t0k subprotocol=chat.v1\n")
            terminal.end()
            assert await asyncio.wait_for(task, WAIT) == 0
            assert "(subprotocol chat.v1)" in terminal.err.getvalue()

    run(main())


def test_interactive_handshake_failure(run: Run, terminal: Terminal) -> None:
    async def main() -> None:
        async with peer() as (base, _):
            status = await cli.connect_interactive(f"{base}/none", stdin_fd=terminal.stdin_fd,
                                                   out=terminal.out, err=terminal.err)
            assert status == 1
            assert "404" in terminal.err.getvalue() and terminal.out.getvalue() == ""

    run(main())


def test_interactive_server_gone_while_typing(run: Run, terminal: Terminal) -> None:
    async def main() -> None:
        async with peer() as (base, _):
            task = terminal.connect(f"{base}/record")
            await asyncio.sleep(0.1)
        # The server shut down with 1001: a normal close, and the client ends by itself.
        assert await asyncio.wait_for(task, WAIT) == 0
        assert "closed by the server: 1001" in terminal.err.getvalue()

    run(main())


def test_serve_in_process(run: Run) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        out = io.StringIO()
        app = wskit.App(ping_interval=None)
        app.get("health", lambda req: "ok")
        task = asyncio.ensure_future(cli.serve(app, "127.0.0.1", 0, stop=stop, out=out,
                                               handle_signals=False))
        for _ in range(500):
            if out.getvalue():
                break
            await asyncio.sleep(0.01)
        assert out.getvalue().startswith(f"wskit serving on http://127.0.0.1:{app.port}\n")
        stop.set()
        await asyncio.wait_for(task, WAIT)

    run(main())


def test_header_argument() -> None:
    assert cli._header("X-A:  b: c ") == ("X-A", "b: c")
    for bad in ("nothing", ": value"):
        with pytest.raises(Exception, match="Name: value"):
            cli._header(bad)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_bench_forwards_to_the_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    package = tmp_path / "fake_bench_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "run.py").write_text(
        "import sys\nprint('bench args', sys.argv[1:])\nraise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli._bench_command(["--quick", "-x"], module="fake_bench_pkg.run") == 3
    assert "bench args ['--quick', '-x']" in capsys.readouterr().out
    (package / "run.py").write_text("print('ran')\n")
    assert cli._bench_command([], module="fake_bench_pkg.run") == 0


def test_bench_missing_says_how_to_run_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._bench_command([], module="no_such_bench_package.run") == 2
    assert "make bench" in capsys.readouterr().err
