"""Shared pieces of the benchmark: scenarios, pre-built frames, loops and /proc readers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import resource
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
LIBS = ("wskit", "picows", "websockets", "aiohttp", "raw")
LOOPS = ("asyncio", "uvloop")
# Generous limits so no library rejects the 1 MiB bulk message by default (websockets'
# default max_size is exactly 1 MiB, aiohttp's is 4 MiB).
MAX_MESSAGE = 16 * 1024 * 1024
# asyncio's default listen backlog (100) drops SYNs during the 500-connection storm, which
# would measure TCP retransmit timers instead of the library.
BACKLOG = 2048
# Exit code of a server or client process whose library is not importable or lacks the API.
EXIT_UNAVAILABLE = 3

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario; `unit` names what `value` counts per second (or per conn)."""

    name: str
    kind: str  # rt | pipe | bulk | storm | fanout | idle
    label: str
    unit: str
    size: int = 32
    opcode: int = OP_TEXT
    window: int = 1
    conns: int = 1
    quick_conns: int = 1
    sides: tuple[str, ...] = ("server", "client")
    #: permessage-deflate negotiated (each library's default settings), JSON-like text.
    compress: bool = False
    #: Worker counts of `serve --workers N` measured in turn (wskit only); `window` is then
    #: per connection, and `conns` connections spread over the workers.
    workers: tuple[int, ...] = ()

    def n_conns(self, quick: bool) -> int:
        return self.quick_conns if quick else self.conns


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("rt_32_text", "rt", "round trip, 32 B text, 1 conn", "msg/s"),
        Scenario("rt_1k_bin", "rt", "round trip, 1 KiB binary, 1 conn", "msg/s",
                 size=1024, opcode=OP_BINARY),
        Scenario("pipe_32_text", "pipe", "pipelined 100 in flight, 32 B text", "msg/s",
                 window=100),
        Scenario("pipe_1k_bin", "pipe", "pipelined 100 in flight, 1 KiB binary", "msg/s",
                 size=1024, opcode=OP_BINARY, window=100),
        Scenario("bulk_1m_bin", "bulk", "bulk echo, 1 MiB binary", "MiB/s",
                 size=1024 * 1024, opcode=OP_BINARY),
        Scenario("storm_500", "storm", "storm, 500 concurrent connect+echo+close", "conn/s",
                 conns=500, quick_conns=100),
        Scenario("fanout_1000", "fanout", "fan-out, 1 msg to 1000 subscribers", "deliv/s",
                 conns=1000, quick_conns=100, window=4, sides=("server",)),
        Scenario("idle_10k", "idle", "idle memory, 10000 open conns", "KiB/conn",
                 conns=10000, quick_conns=1000, sides=("server",)),
        # permessage-deflate negotiated: only libraries that compress take part.
        # Many connections, since SO_REUSEPORT spreads them by a hash of the 4-tuple; large
        # windows, so the generator reads and writes rarely and leaves the cores to workers.
        Scenario("workers_pipe_32_text", "mpipe",
                 "pipelined 32 B text, 16 conns x 1000 in flight, wskit 1 vs 2 workers",
                 "msg/s", window=1000, conns=16, quick_conns=8, sides=("server",),
                 workers=(1, 2)),
        Scenario("z_rt_500_json", "rt", "deflate, round trip, ~500 B JSON text", "msg/s",
                 size=500, sides=("server",), compress=True),
        Scenario("z_pipe_500_json", "pipe", "deflate, 100 in flight, ~500 B JSON text",
                 "msg/s", size=500, window=100, sides=("server",), compress=True),
        Scenario("z_pipe_4k_json", "pipe", "deflate, 100 in flight, ~4 KiB JSON text",
                 "msg/s", size=4096, window=100, sides=("server",), compress=True),
        Scenario("z_fanout_1000", "fanout", "deflate, 1 ~500 B JSON msg to 1000 subscribers",
                 "deliv/s", size=500, conns=1000, quick_conns=100, window=4,
                 sides=("server",), compress=True),
    )
}
QUICK_SCENARIOS = ("rt_32_text", "pipe_32_text", "storm_500", "fanout_1000", "idle_10k",
                   "workers_pipe_32_text")
#: The libraries that implement permessage-deflate (picows and the raw floor do not).
COMPRESSING_LIBS = ("wskit", "websockets", "aiohttp")


def payload_for(s: Scenario) -> bytes:
    """The message a scenario sends; text is ASCII so every library's UTF-8 check passes."""
    if s.kind == "fanout":
        return b"pub:" + b"f" * (s.size - 4)
    if s.opcode == OP_TEXT:
        return (b"wskit-bench-text-" * (s.size // 17 + 1))[: s.size]
    return (bytes(range(256)) * (s.size // 256 + 1))[: s.size]


# --- frames (RFC 6455 section 5.2); built once, before any timing starts ---

MASK_KEY = b"\x5a\x13\xc7\x2e"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_KEY = base64.b64encode(b"wskit-bench-key!").decode()
WS_ACCEPT = base64.b64encode(hashlib.sha1(WS_KEY.encode() + _GUID).digest()).decode()


def mask(data: bytes, key: bytes = MASK_KEY) -> bytes:
    """XOR `data` with the repeating 4-byte key (one big-int XOR, fast enough for 1 MiB)."""
    n = len(data)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def _header(opcode: int, n: int, masked: bool) -> bytes:
    b0 = 0x80 | opcode
    m = 0x80 if masked else 0
    if n < 126:
        return bytes((b0, m | n))
    if n < 65536:
        return bytes((b0, m | 126)) + n.to_bytes(2, "big")
    return bytes((b0, m | 127)) + n.to_bytes(8, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked frame as a client must send it (RFC 6455 section 5.3)."""
    return _header(opcode, len(payload), True) + MASK_KEY + mask(payload)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame: what a conforming server echoes back."""
    return _header(opcode, len(payload), False) + payload


CLIENT_CLOSE = client_frame(OP_CLOSE, (1000).to_bytes(2, "big"))


def upgrade_request(path: str, port: int, extensions: str = "") -> bytes:
    """The opening handshake, written by hand; no extensions unless asked for."""
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
    ).encode()


def check_upgrade_response(head: bytes, compress: bool = False) -> str | None:
    """None if `head` (up to the blank line) is a valid 101 for WS_KEY, else the problem.

    Without `compress` no extension may be negotiated; with it, permessage-deflate must be.
    """
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        return f"bad status line {lines[0]!r}"
    accepted = deflate = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-accept":
            if value.strip() != WS_ACCEPT:
                return "bad Sec-WebSocket-Accept"
            accepted = True
        if name.strip().lower() == "sec-websocket-extensions":
            if not compress or not value.strip().startswith("permessage-deflate"):
                return f"extension negotiated: {value.strip()}"
            deflate = True
    if not accepted:
        return "no Sec-WebSocket-Accept"
    if compress and not deflate:
        return "permessage-deflate was not negotiated"
    return None


# --- processes, loops and /proc ---


def raise_nofile() -> int:
    """Raise the soft fd limit to the hard one (10,000 idle connections need it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_with_loop(loop_name: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run `main()` on a fresh asyncio or uvloop event loop."""
    if loop_name == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    if loop_name != "asyncio":
        raise SystemExit(f"unknown loop {loop_name!r}")
    with asyncio.Runner() as runner:
        return runner.run(main())


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds used so far by all threads of `pid` (ns-precise schedstat when present)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        # utime and stime are fields 14 and 15 of stat(5).
        return sum(proc_times(pid))


def proc_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid` from /proc/PID/stat, in clock ticks' precision."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def proc_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a supervisor and its forked workers), parents first."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by `pid` and its descendants (proc_cpu of each).

    A worker that exits in between takes its CPU with it; the figure is only meaningful
    while the set of processes stays the same.
    """
    total = 0.0
    for p in proc_tree(pid):
        try:
            total += proc_cpu(p)
        except OSError:
            if p == pid:
                raise
    return total


def _tcp_sockets(port: int) -> list[tuple[str, int]]:
    """(state, inode) of each IPv4 TCP socket whose local port is `port`, /proc/net/tcp."""
    out = []
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    out.append((fields[3], int(fields[9])))
    except (OSError, ValueError, IndexError, StopIteration):
        return []
    return out


def listening(port: int) -> int:
    """How many sockets listen on `port` (one per worker with SO_REUSEPORT)."""
    return sum(1 for state, _ in _tcp_sockets(port) if state == "0A")


def conns_per_process(pid: int, port: int) -> dict[int, int]:
    """Established connections to `port` held by `pid` and each of its descendants."""
    inodes = {inode for state, inode in _tcp_sockets(port) if state == "01"}
    out = {}
    for p in proc_tree(pid):
        n = 0
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                    n += 1
        except OSError:
            continue
        out[p] = n
    return out


def proc_io(pid: int) -> dict[str, int]:
    """Syscall counters of `pid` (all threads) from /proc/PID/io: syscr, syscw, rchar, wchar.

    read(2)/write(2)/readv/writev count, recv(2)/send(2) do not: uvloop (libuv) reads and
    writes TCP sockets with read/write(v), asyncio's selector loop with recv/send, so only
    the uvloop figures are the server's reads and writes. Empty if the file is unreadable.
    """
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("syscr", "syscw", "rchar", "wchar"):
                    out[key] = int(value)
    except (OSError, ValueError):
        return {}
    return out


def proc_rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB, from /proc/PID/status VmRSS."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def emit(record: dict[str, Any]) -> None:
    """Write one JSON result line for the runner to collect."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
