"""Compression bombs against a wskit server and a wskit client: the process memory stays bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
from cli_process import WAIT, python_env, stop

#: The message size limit of the process under test.
LIMIT = 1 << 20
#: What the bomb inflates to: 1 GiB of zeros, a thousand times the limit.
BOMB_SIZE = 1 << 30
#: The bomb is one message in this many frames; the first alone inflates to 256 MiB.
FRAGMENTS = 4
#: How much the peak resident set may grow while the bomb is refused. Refusing it costs the
#: compressed frame plus the limit (2.4 MiB measured on Linux, either loop, either role); a
#: decoder that inflated a whole frame before checking would need 256 MiB or more.
MAX_GROWTH = 16 << 20

_CHUNK = 1 << 20
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TAIL = b"\x00\x00\xff\xff"
_OP_TEXT, _OP_CLOSE = 0x1, 0x8
_WARM_UP = json.dumps({"type": "message", "name": "ada", "text": "hello " * 40})

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmRSS and VmHWM from /proc"
)

LOOPS = ["asyncio", "uvloop"]


# -- the bomb ------------------------------------------------------------------------------------


def _zeros_block() -> bytes:
    """1 MiB of zeros, deflated (raw, 15-bit window) and ended by a full flush.

    A full flush empties the compressor's history, so the block refers to nothing before it
    and ends on a byte boundary: the same bytes come out for every MiB of zeros, and any
    number of copies in a row is a valid deflate stream of that many MiB. That builds the
    bomb in milliseconds instead of deflating 1 GiB (seconds).
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    first = compressor.compress(bytes(_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first == again and first.endswith(_TAIL)
    return again


def bomb_fragments() -> list[bytes]:
    """The payloads of the bomb's frames: one compressed message of 1 GiB of zeros.

    Each frame is a quarter of it (about 265 KB, under the 1 MiB limit on the wire); the last
    one lacks the 00 00 ff ff tail, which RFC 7692 §7.2.1 has the sender remove.
    """
    block = _zeros_block()
    per_frame = BOMB_SIZE // _CHUNK // FRAGMENTS
    fragments = [block * per_frame for _ in range(FRAGMENTS)]
    fragments[-1] = fragments[-1][: -len(_TAIL)]
    return fragments


def test_the_bomb_inflates_to_a_gibibyte() -> None:
    fragments = bomb_fragments()
    compressed = sum(map(len, fragments))
    assert all(len(f) < LIMIT for f in fragments)
    assert compressed < 1_100_000  # about a thousand to one
    block = _zeros_block()
    assert fragments[0] == block * (len(fragments[0]) // len(block))
    # Two blocks in a row inflate to 2 MiB of zeros and nothing is left over, so the message,
    # 1024 blocks, inflates to 1 GiB (inflating it all here would take seconds).
    decompressor = zlib.decompressobj(wbits=-15)
    assert decompressor.decompress(block * 2) == bytes(2 * _CHUNK)
    assert decompressor.unused_data == b"" and not decompressor.eof
    assert len(fragments[0]) // len(block) * FRAGMENTS * _CHUNK == BOMB_SIZE


# -- the process under test: its memory and its two roles ---------------------------------------


def memory_kib() -> dict[str, int]:
    """This process's resident set now (VmRSS) and at its peak (VmHWM), in KiB."""
    found: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def reset_peak() -> dict[str, int]:
    """Set VmHWM back to VmRSS (Linux 4.0+, ``clear_refs`` 5), and return both.

    Where that is not allowed the peak keeps counting from the process start; the growth
    measured (peak minus the resident set now) can then only be larger, never smaller.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass
    return memory_kib()


def serve(loop: str) -> None:
    """The server under test: /echo with compression on, /mem for its memory; SIGTERM ends it."""
    import wskit
    from bench.common import run_with_loop

    app = wskit.App(compression="deflate", max_message_size=LIMIT, ping_interval=None)

    @app.websocket("/echo")
    def echo(req: wskit.Request, ws: wskit.WebSocket) -> None:
        ws.on_text(lambda ws, text: ws.send(text))
        ws.on_binary(lambda ws, data: ws.send(data))

    @app.get("/mem")
    def mem(req: wskit.Request) -> wskit.Response:
        found = reset_peak() if req.query.get("reset") else memory_kib()
        return wskit.Response(json.dumps(found), content_type="application/json")

    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
        await app.start("127.0.0.1", 0)
        print(json.dumps({"port": app.port}), flush=True)
        await done.wait()
        await app.shutdown(timeout=1.0)

    run_with_loop(loop, main)


def client(loop: str, port: int) -> None:
    """The client under test: one message, then "go", then the bomb; prints what it saw."""
    import wskit
    from bench.common import run_with_loop

    async def main() -> dict[str, Any]:
        ws = await wskit.connect(
            f"ws://127.0.0.1:{port}/", max_message_size=LIMIT, ping_interval=None
        )
        # A compressed message first, so the decompressor exists before the baseline.
        warm_up = await ws.receive()
        baseline = reset_peak()
        ws.send("go")
        try:
            await ws.receive()
            raised = "nothing"
        except wskit.ConnectionClosed as exc:
            raised = f"ConnectionClosed {exc.code}"
        await ws.wait_closed()
        return {
            "extensions": ws.extensions, "warm_up": warm_up == _WARM_UP, "raised": raised,
            "error": type(ws.error).__name__, "close_code": ws.close_code,
            "baseline": baseline, "after": memory_kib(),
        }

    print(json.dumps(run_with_loop(loop, main)), flush=True)


def _child(*args: str) -> subprocess.Popen[bytes]:
    root = str(Path(__file__).resolve().parents[1])
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], root])
    return subprocess.Popen(
        [sys.executable, __file__, *args], env=env, cwd=root,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


# -- a raw peer: frames by hand ------------------------------------------------------------------


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False,
          masked: bool) -> bytes:
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    if masked:
        key = os.urandom(4)
        return bytes(head) + key + _mask(payload, key)
    return bytes(head) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> tuple[bool, bool, int, bytes]:
    """(fin, rsv1, opcode, unmasked payload) of the next frame."""
    b0, b1 = _recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _recv_exact(sock, 8))
    key = _recv_exact(sock, 4) if b1 & 0x80 else b""
    payload = _recv_exact(sock, n)
    if key:
        payload = _mask(payload, key)
    return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(f"connection closed in the HTTP head: {head!r}")
        head += chunk
    assert head.endswith(b"\r\n\r\n"), "no frame may come before the handshake's answer"
    return head


def _header(head: bytes, name: str) -> str:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return ""


def _deflate_message(compressor: Any, data: bytes) -> bytes:
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[: -len(_TAIL)]


def send_bomb(sock: socket.socket, *, masked: bool) -> int:
    """Send the bomb's frames and return the close code the peer answers with."""
    for i, payload in enumerate(bomb_fragments()):
        data = frame(0 if i else 0x2, payload, fin=i == FRAGMENTS - 1, rsv1=i == 0,
                     masked=masked)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            break  # the peer stopped reading: its close frame is already on its way
    while True:
        _fin, _rsv1, opcode, payload = read_frame(sock)
        if opcode == _OP_CLOSE:
            # Failing the connection (RFC 6455 §7.1.7), the peer may close without waiting.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(frame(_OP_CLOSE, payload[:2], masked=masked))
            return int(struct.unpack("!H", payload[:2])[0])


# -- the tests -----------------------------------------------------------------------------------


def _require_loop(loop: str) -> None:
    if loop == "uvloop" and os.environ.get("CI") != "true":
        pytest.importorskip("uvloop")


def _get_memory(port: int, query: str = "") -> dict[str, int]:
    # No proxy from the environment: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/mem{query}", timeout=WAIT) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("loop", LOOPS)
def test_server_refuses_a_bomb_with_1009_in_bounded_memory(loop: str) -> None:
    _require_loop(loop)
    proc = _child("server", loop)
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline() or b'{"port": 0}')["port"]
        assert port, proc.stderr.read().decode() if proc.stderr else "the server did not start"
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            key = base64.b64encode(os.urandom(16))
            sock.sendall(
                b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                b"Sec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            )
            head = _read_head(sock)
            assert head.startswith(b"HTTP/1.1 101 "), head
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
            assert _header(head, "sec-websocket-accept") == accept
            assert _header(head, "sec-websocket-extensions").startswith("permessage-deflate")
            # One compressed message each way first: the server's compressor and
            # decompressor exist (context takeover keeps them) before the baseline.
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            sock.sendall(frame(_OP_TEXT, _deflate_message(compressor, _WARM_UP.encode()),
                               rsv1=True, masked=True))
            _fin, rsv1, opcode, payload = read_frame(sock)
            assert (rsv1, opcode) == (True, _OP_TEXT)
            assert zlib.decompressobj(wbits=-15).decompress(payload + _TAIL) == _WARM_UP.encode()
            baseline = _get_memory(port, "?reset=1")

            code = send_bomb(sock, masked=True)

        after = _get_memory(port)
    finally:
        status = stop(proc)
    assert code == 1009
    assert status == 0
    growth = after["VmHWM"] - baseline["VmRSS"]
    print(f"server on {loop}: peak RSS grew by {growth} KiB while refusing the bomb")
    assert growth * 1024 < MAX_GROWTH, f"peak RSS grew by {growth} KiB"


@pytest.mark.parametrize("loop", LOOPS)
def test_client_refuses_a_bomb_with_1009_in_bounded_memory(loop: str) -> None:
    _require_loop(loop)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        proc = _child("client", loop, str(listener.getsockname()[1]))
        try:
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(WAIT)
                head = _read_head(sock)
                offer = _header(head, "sec-websocket-extensions")
                assert offer.startswith("permessage-deflate"), head
                key = _header(head, "sec-websocket-key").encode()
                accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
                # No parameters: each side compresses with a 15-bit window and takes over its
                # context from one message to the next.
                sock.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
                    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
                )
                compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
                sock.sendall(frame(_OP_TEXT, _deflate_message(compressor, _WARM_UP.encode()),
                                   rsv1=True, masked=False))
                _fin, rsv1, opcode, payload = read_frame(sock)
                assert (rsv1, opcode, payload) == (False, _OP_TEXT, b"go")
                code = send_bomb(sock, masked=False)
            out, err = proc.communicate(timeout=WAIT)
        finally:
            stop(proc)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out)
    assert code == 1009
    assert seen["extensions"] == ["permessage-deflate"] and seen["warm_up"]
    # receive() raises ConnectionClosed; the error that ended the connection is kept.
    assert (seen["raised"], seen["error"], seen["close_code"]) == (
        "ConnectionClosed 1009", "MessageTooBig", 1009)
    growth = seen["after"]["VmHWM"] - seen["baseline"]["VmRSS"]
    print(f"client on {loop}: peak RSS grew by {growth} KiB while refusing the bomb")
    assert growth * 1024 < MAX_GROWTH, f"peak RSS grew by {growth} KiB"


def test_the_memory_benchmark_runs() -> None:
    """``bench/conn_memory.py``, which measured the README's table, still runs (on few conns)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "bench.conn_memory", "--conns", "20", "--sizes", "300", "--json"],
        cwd=root, env=python_env(), capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads(done.stdout)
    assert [r["config"] for r in results] == ["off", "default", "no-takeover", "zlib"]
    assert all(r["conns"] == 20 and r["rss_after_kib"] > 0 for r in results)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench.conn_memory import table

    assert table(results).count("\n") == len(results) + 1

if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2])
    else:
        client(sys.argv[2], int(sys.argv[3]))
