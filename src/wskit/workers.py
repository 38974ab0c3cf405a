"""Many worker processes on one port: SO_REUSEPORT listeners, a supervisor that restarts them."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

__all__ = ["Listener", "reuse_port_supported", "supervise"]

logger = logging.getLogger("wskit.workers")

#: Most workers one supervisor runs.
MAX_WORKERS = 256
#: A worker that dies younger than this is crash-looping: its restart waits, doubling.
MIN_UPTIME = 1.0
MAX_RESTART_DELAY = 10.0


def reuse_port_supported() -> bool:
    """Whether this OS lets several sockets listen on one port (Linux, the BSDs, macOS)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        return False
    return True


@dataclass
class Listener:
    """Where one worker listens: its own SO_REUSEPORT socket on (host, port), or ``sock``
    shared by all workers where the OS lacks SO_REUSEPORT. ``ready()`` tells the supervisor
    that the worker accepts connections."""

    host: str | None
    port: int
    index: int
    sock: socket.socket | None = None
    ready_fd: int | None = None

    @property
    def reuse_port(self) -> bool:
        return self.sock is None

    def ready(self) -> None:
        fd, self.ready_fd = self.ready_fd, None
        if fd is not None:
            try:
                os.write(fd, b"1")
            finally:
                os.close(fd)


def _bind(host: str | None, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound socket for (host, port); host None means every IPv4 address."""
    infos = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(self, target: Callable[[Listener], int], workers: int, host: str | None,
                 port: int, stop_timeout: float, ready_timeout: float,
                 on_ready: Callable[[str | None, int], None] | None) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}, not {workers}")
        self.target = target
        self.workers = workers
        self.host = host
        self.stop_timeout = stop_timeout
        self.ready_timeout = ready_timeout
        self.on_ready = on_ready
        self.stopping = False
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.shared: socket.socket | None = None
        if reuse_port_supported():
            # A bound, never listening socket keeps the port (port 0: learns it) for the
            # workers' own listeners; connections only ever go to listening sockets.
            self.anchor = _bind(host, port, reuse_port=True)
        else:
            self.anchor = self.shared = _bind(host, port, reuse_port=False)
            self.shared.listen(1024)
            self.shared.set_inheritable(True)
        self.port = int(self.anchor.getsockname()[1])

    def spawn(self, index: int) -> tuple[int, int]:
        """Fork worker ``index``; returns (pid, read end of its ready pipe)."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured there if at all
            os.close(read_fd)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                if self.shared is None:
                    self.anchor.close()
                code = self.target(Listener(self.host, self.port, index, self.shared,
                                            write_fd))
            except KeyboardInterrupt:
                code = 130
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        self.children[pid] = (index, time.monotonic())
        logger.info("worker %d started (%d of %d)", pid, index + 1, self.workers)
        return pid, read_fd

    def wait_ready(self, fds: list[int]) -> bool:
        """Wait until every worker said it listens (or exited); True if all are ready."""
        deadline = time.monotonic() + self.ready_timeout
        waiting = set(fds)
        ok = True
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                ok = False
                break
            readable, _, _ = select.select(list(waiting), [], [], left)
            for fd in readable:
                ok = ok and os.read(fd, 1) == b"1"
                waiting.discard(fd)
                os.close(fd)
        for fd in waiting:
            os.close(fd)
        return ok

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            fds = [self.spawn(index)[1] for index in range(self.workers)]
            if not self.wait_ready(fds):
                logger.error("not every worker started listening; stopping")
                self.stopping = True
            elif self.on_ready is not None:
                self.on_ready(self.host, self.port)
            delays = [0.0] * self.workers
            while not self.stopping:
                self.reap(delays)
                time.sleep(0.05)
            return self.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.anchor.close()

    def reap(self, delays: list[float]) -> None:
        """Restart the workers that died, waiting longer each time one dies young."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0 or pid not in self.children:
                return
            index, started = self.children.pop(pid)
            if self.stopping:
                return
            young = time.monotonic() - started < MIN_UPTIME
            delays[index] = min(MAX_RESTART_DELAY, max(0.1, delays[index] * 2)) if young else 0.0
            logger.warning("worker %d %s; restarting it%s", pid, _describe(status),
                           f" in {delays[index]:.1f} s" if delays[index] else "")
            deadline = time.monotonic() + delays[index]
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.05)
            if not self.stopping:
                _, fd = self.spawn(index)
                self.wait_ready([fd])

    def shutdown(self) -> int:
        """SIGTERM every worker (each closes its connections with 1001), SIGKILL stragglers."""
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        code = 0
        while self.children and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.02)
                continue
            self.children.pop(pid, None)
            if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM):
                code = 1
        for pid in list(self.children):
            logger.warning("worker %d did not stop in %.0f s; killing it", pid,
                           self.stop_timeout)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = 1
        self.children.clear()
        return code


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def supervise(
    target: Callable[[Listener], int],
    *,
    workers: int,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    stop_timeout: float = 15.0,
    ready_timeout: float = 30.0,
    on_ready: Callable[[str | None, int], None] | None = None,
) -> int:
    """Run ``target(listener)`` in ``workers`` forked processes until SIGTERM or SIGINT.

    Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections
    evenly; where the OS lacks SO_REUSEPORT they share one listening socket. A worker that
    dies is restarted; SIGTERM/SIGINT stop every worker with SIGTERM (each shuts down
    gracefully, closing its connections with 1001) and wait ``stop_timeout``. ``on_ready``
    is called with (host, port) once every worker listens (port 0 picks a free port).
    Returns the exit status. Unix only (fork).
    """
    return _Supervisor(target, workers, host, port, stop_timeout, ready_timeout,
                       on_ready).run()
