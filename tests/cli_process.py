"""Runs ``python -m wskit`` and other Python programs as subprocesses, for the CLI and README."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

SRC = Path(__file__).resolve().parents[1] / "src"

#: Bound for a subprocess to start, answer or stop; generous for a loaded CI machine.
WAIT = 15.0

_BANNER = re.compile(r"wskit serving on (https?)://([^\s]+):(\d+)")


def python_env() -> dict[str, str]:
    """The environment for a child Python: this checkout's ``src`` first, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A port that was free a moment ago (for programs that cannot be told to use port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = WAIT) -> None:
    """Wait until something listens on ``port``; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the program exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status (negative when killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Server:
    """``python -m wskit serve --port 0 ARGS`` in a subprocess; ``url`` is read from its banner.

    Its output goes to files rather than pipes, so a chatty server never blocks on a full pipe.
    """

    def __init__(self, *args: str) -> None:
        self.args = ["serve", "--port", "0", *args]
        self._dir = tempfile.TemporaryDirectory(prefix="wskit-serve-")
        self._stdout = Path(self._dir.name, "stdout")
        self._stderr = Path(self._dir.name, "stderr")
        self.proc: subprocess.Popen[bytes] | None = None
        self.scheme = self.host = ""
        self.port = 0
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return ("wss" if self.scheme == "https" else "ws") + self.url[len(self.scheme):]

    def start(self) -> Server:
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wskit", *self.args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=python_env(),
            )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = _BANNER.search(self.stdout)
            if found:
                self.scheme, self.host, port = found.groups()
                self.port = int(port)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"wskit serve did not start:\n{self.stdout}\n{self.stderr}")

    def stop(self) -> int:
        """Stop it with SIGTERM (SIGKILL if it hangs); its exit status."""
        if self.returncode is None and self.proc is not None:
            self.returncode = stop(self.proc)
        return self.returncode if self.returncode is not None else 0

    @property
    def stdout(self) -> str:
        return self._stdout.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self._stderr.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._dir.cleanup()


_CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])")


def screen(output: str, columns: int = 1000) -> list[str]:
    """The rows a terminal ``columns`` wide shows after ``output``: enough of a terminal for
    the ``connect`` tests.

    It knows carriage return, newline, backspace, wrapping after the last column (the cursor
    waits there until the next character, as xterm's does), ESC [ n A (up), ESC [ K (erase to
    the end of the row) and ESC [ J (to the end of the screen); other sequences are dropped.
    Every character takes one column.
    """
    rows = [""]
    row = column = 0
    position = 0
    while position < len(output):
        char = output[position]
        found = _CSI.match(output, position) if char == "\x1b" else None
        if found is not None:
            argument, command = found.groups()
            if command == "A":
                row = max(0, row - int(argument or 1))
            elif command in "KJ":
                rows[row] = rows[row][:column]
                if command == "J":
                    del rows[row + 1:]
            position = found.end()
            continue
        position += 1
        if char == "\r":
            column = 0
        elif char == "\n":
            row += 1
            column = 0
        elif char == "\b":
            column = max(0, min(column, columns - 1) - 1)
        elif char >= " " or char == "\t":
            if column >= columns:  # the pending wrap
                row += 1
                column = 0
            while len(rows) <= row:
                rows.append("")
            line = rows[row].ljust(column)
            rows[row] = line[:column] + char + line[column + 1:]
            column += 1
            continue
        while len(rows) <= row:
            rows.append("")
    return rows
