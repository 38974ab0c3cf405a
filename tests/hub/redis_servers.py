"""Real redis-server processes for the hub tests: one server, or a three-node cluster."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Bound for a redis-server to start or a cluster to agree on its slots.
WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port P with P + 10000 free too (the cluster bus), at most 55535."""
    for _ in range(100):
        port = random.randrange(20000, 55535)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis cluster node")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on a free port, without persistence; ``kill()`` and ``start()`` again
    keep the port, as a restarted Redis would."""

    def __init__(self, program: str, port: int | None = None, *extra: str) -> None:
        self.program = program
        self.port = port or free_port()
        self.extra = list(extra)
        self.dir = tempfile.TemporaryDirectory(prefix="wskit-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = Path(self.dir.name, "redis.log")
        self.proc = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir.name, "--logfile", str(log),
             *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT
        while not _ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{text}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: Redis disappears without closing its connections politely."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT): Redis stops answering but keeps its connections open."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        self.kill()
        self.dir.cleanup()


class RedisCluster:
    """Three primaries (``--cluster-enabled yes``) joined by ``redis-cli --cluster create``."""

    def __init__(self, server: str, cli: str) -> None:
        self.nodes = [RedisServer(server, free_cluster_port(), "--cluster-enabled", "yes",
                                  "--cluster-config-file", "nodes.conf",
                                  "--cluster-node-timeout", "2000") for _ in range(3)]
        self.cli = cli

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [self.cli, "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=WAIT,
        )
        deadline = time.monotonic() + WAIT
        for node in self.nodes:
            while b"cluster_state:ok" not in subprocess.run(
                    [self.cli, "-p", str(node.port), "cluster", "info"],
                    capture_output=True, timeout=WAIT).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()
