"""Hostile peers against whole processes: ``python -m wskit serve --port 0`` in a subprocess,
raw sockets that misbehave, and the server's resident memory read from /proc (issue 9).

Every test asserts a bound on the peak resident set (VmHWM, reset before the attack through
``/proc/PID/clear_refs``), never a timing; counts are scaled down from the issue's table where
the bound still tells a bounded server from an unbounded one (each test says how).
"""

from __future__ import annotations

import base64
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import WAIT, python_env, stop

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="reads VmRSS and VmHWM from /proc")

MiB = 1 << 20
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_BANNER = re.compile(r"wskit serving on https?://[^\s]+:(\d+)")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of process ``pid``, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> int:
    """Set VmHWM back to VmRSS (``clear_refs`` 5) and return VmRSS in KiB. Where that is not
    allowed, the peak counts from the start and can only be larger: the bound still holds."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass
    return memory_kib(pid)["VmRSS"]


class ServeProcess:
    """``python -m wskit serve --port 0 ARGS`` with, optionally, the cycle collector disabled
    (so that only reference counting frees memory) or a file-descriptor limit."""

    def __init__(self, *args: str, gc_disabled: bool = False, nofile: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.args = ["serve", "--port", "0", "--log-level", "warning", *args]
        self.gc_disabled = gc_disabled
        self.nofile = nofile
        self.env = {**python_env(), **(env or {})}
        self._dir = tempfile.TemporaryDirectory(prefix="wskit-hostile-")
        self.stderr_path = Path(self._dir.name, "stderr")
        self.stdout_path = Path(self._dir.name, "stdout")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        code = ("import gc, runpy, sys\n"
                + ("gc.disable()\n" if self.gc_disabled else "")
                + f"sys.argv = ['wskit', *{self.args!r}]\n"
                "runpy.run_module('wskit', run_name='__main__')\n")
        nofile = self.nofile

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, env=self.env,
                                         preexec_fn=limit)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = _BANNER.search(self.stdout_path.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"wskit serve did not start:\n{self.stderr}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def memory(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def reset_peak(self) -> int:
        return reset_peak(self.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self._dir.cleanup()


@pytest.fixture
def raise_nofile() -> Iterator[None]:
    """Enough descriptors in this process for a thousand sockets and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- a raw client, blocking sockets ---------------------------------------------------------------


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
          masked: bool = True, length: int | None = None) -> bytes:
    """One frame by hand (RFC 6455 §5.2); masked as a client sends it unless told not to."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    if masked:
        key = os.urandom(4)
        return bytes(head) + key + mask(payload, key)
    return bytes(head) + payload


def open_ws(port: int, path: str = "/echo", *, deflate: bool = False,
            rcvbuf: int | None = None, timeout: float = WAIT) -> socket.socket:
    """A client socket past the opening handshake (reads exactly the 101 head)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    extensions = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n{extensions}\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise EOFError(f"closed during the handshake: {head!r}")
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    if deflate:
        assert b"permessage-deflate" in head
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    return b0 & 0x0F, recv_exact(sock, n)


def close_code(sock: socket.socket) -> int:
    """Read up to the server's Close frame; its code."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == CLOSE:
            return int.from_bytes(payload[:2], "big")


def send_until_blocked(sock: socket.socket, data: bytes, *, quiet: float = 1.0) -> int:
    """Send ``data`` until it is all sent or the peer stops taking bytes for ``quiet`` seconds
    (TCP pushing back: the server stopped reading). Returns the bytes sent."""
    sock.settimeout(quiet)
    view = memoryview(data)
    sent = 0
    try:
        while sent < len(view):
            sent += sock.send(view[sent : sent + 65536])
    except TimeoutError:
        pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(WAIT)
    return sent
