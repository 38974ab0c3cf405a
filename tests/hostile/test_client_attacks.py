"""The client's rows of issue 9's table: a wskit client in a subprocess, a hostile server
written by hand. The client's peak resident set grew by 123 MiB (pings never read) and 428 MiB
(5,000,000 empty fragments); now both are bounded (8 MiB here) and the client fails the
connection with 1008 and 1009."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_process import WAIT, python_env
from hostile_peer import CONT, PING, TEXT, frame, send_until_blocked

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="reads VmRSS and VmHWM from /proc")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The client under test: connects, says so, waits for "go" (then resets its peak), and after
# the connection ends prints how it ended and how much its peak grew.
CLIENT = r"""
import asyncio, json, sys
import wskit

def memory():
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found

async def main():
    ws = await wskit.connect(sys.argv[1], ping_interval=None, compression=None)
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline = memory()["VmRSS"]
    print("measuring", flush=True)
    try:
        async for _ in ws:
            pass
    except wskit.ConnectionClosed:
        pass
    await ws.wait_closed()
    error = ws.error
    print(json.dumps({"code": getattr(error, "close_code", None),
                      "growth_kib": memory()["VmHWM"] - baseline}), flush=True)

asyncio.run(main())
"""


def hostile_server(attack: bytes) -> tuple[socket.socket, threading.Thread, dict[str, object]]:
    """A listening socket whose first connection gets the 101, then ``attack`` (after the
    ``go`` event), sent until the client stops reading; the server never reads frames."""
    listener = socket.socket()
    # Small buffers, inherited by the accepted socket: what the client cannot write stays
    # in its own process.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    state: dict[str, object] = {"go": threading.Event()}

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(WAIT)
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        event = state["go"]
        assert isinstance(event, threading.Event)
        event.wait(WAIT)
        state["sent"] = send_until_blocked(conn, attack)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, state


def run_client(attack: bytes) -> dict[str, int]:
    listener, thread, state = hostile_server(attack)
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", CLIENT, f"ws://127.0.0.1:{port}/"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=python_env())
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == b"connected"
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == b"measuring"
        go = state["go"]
        assert isinstance(go, threading.Event)
        go.set()
        result: dict[str, int] = json.loads(child.stdout.readline())
        child.wait(WAIT)
        thread.join(WAIT)
        return result
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        listener.close()


def test_a_server_that_pings_and_never_reads() -> None:
    """100,000 pings of 125 bytes (the table's attack had no count; 13 MB of pongs)."""
    result = run_client(frame(PING, b"p" * 125, masked=False) * 100_000)
    assert result["code"] == 1008, result
    assert result["growth_kib"] < 8 * 1024, result


def test_a_server_that_sends_empty_fragments() -> None:
    """1,000,000 empty fragments (the table's 5,000,000 scaled down): 1009 at 100,000."""
    attack = (frame(TEXT, b"", fin=False, masked=False)
              + frame(CONT, b"", fin=False, masked=False) * 1_000_000
              + frame(CONT, b"x", masked=False))
    result = run_client(attack)
    assert result["code"] == 1009, result
    assert result["growth_kib"] < 8 * 1024, result


