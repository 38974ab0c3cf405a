"""``python -m wskit serve --workers N --redis URL``: one port, many processes, one chat."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_process import Server, free_port, python_env, wait_for_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .redis_servers import RedisServer

Run = Callable[..., Any]
WAIT = 10.0

asyncio_only = pytest.mark.parametrize("loop_kind", ["asyncio"])


def worker_of(server: Server, name: str) -> int | None:
    """The pid of the worker that logged ``name joined``: the pid is in every log line."""
    found = re.search(rf"\[(\d+)\] wskit\.demo: {re.escape(name)} joined", server.stderr)
    return int(found.group(1)) if found else None


async def wait_worker_of(server: Server, name: str) -> int:
    deadline = time.monotonic() + WAIT
    while (pid := worker_of(server, name)) is None:
        assert time.monotonic() < deadline, f"no join of {name} in the log:\n{server.stderr}"
        await asyncio.sleep(0.02)
    return pid


class Member:
    """A websockets client in a chat room, keeping every event it receives."""

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.events.append(json.loads(message))
        except ConnectionClosed:
            pass

    def texts(self) -> list[tuple[str, str]]:
        return [(e["name"], e["text"]) for e in self.events if e["type"] == "message"]

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def join(server: Server, room: str, name: str) -> Member:
    ws = await connect(f"{server.ws_url}/chat/{room}?name={name}", compression=None)
    return Member(name, ws)


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def spread(server: Server, room: str, workers: int, per_worker: int) -> list[Member]:
    """Members joined until every worker serves at least ``per_worker`` of them."""
    members: list[Member] = []
    by_worker: dict[int, int] = {}
    for n in range(200):
        member = await join(server, room, f"m{n}")
        members.append(member)
        pid = await wait_worker_of(server, member.name)
        by_worker[pid] = by_worker.get(pid, 0) + 1
        if len(by_worker) == workers and min(by_worker.values()) >= per_worker:
            return members
    raise AssertionError(f"connections were not spread over the workers: {by_worker}")


async def synced(members: list[Member]) -> None:
    """Wait until a message from the first member reaches every member: every worker's
    subscription to the room is then in place in Redis."""
    probe = members[0]
    for i in range(200):
        await probe.ws.send(f"sync {i}")
        await asyncio.sleep(0.05)
        if all(any(text.startswith("sync") for _, text in m.texts()) for m in members):
            return
    raise AssertionError("the room never spanned every worker")


APP = Path(__file__).with_name("pubsub_app.py")


class PubSubApp:
    """tests/hub/pubsub_app.py under ``app.run(workers=N)`` in a subprocess."""

    def __init__(self, redis_url: str, workers: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), str(self.port), redis_url, str(workers)],
            env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.proc)

    def worker_pid(self) -> int:
        """The pid of the only worker (the process itself when it runs one)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return int(children.split()[0]) if children.split() else self.proc.pid

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        # A connection that never reads holds its graceful close up to the close timeout.
        _, err = self.proc.communicate(timeout=2 * WAIT)
        return self.proc.returncode, err.decode(errors="replace")


async def pid_client(url: str) -> tuple[ClientConnection, int]:
    ws = await connect(url, compression=None)
    hello = await asyncio.wait_for(ws.recv(), WAIT)
    assert isinstance(hello, str) and hello.startswith("pid ")
    return ws, int(hello[4:])


@asyncio_only
def test_three_workers_exactly_once_in_order(run: Run, redis_server: RedisServer) -> None:
    """Clients spread over three worker processes each publish text and binary messages: every
    client gets every message once, in each publisher's order, whichever workers serve them."""
    per_client = 30

    async def main(port: int) -> None:
        clients: list[ClientConnection] = []
        workers: dict[int, int] = {}
        for _ in range(200):
            ws, pid = await pid_client(f"ws://127.0.0.1:{port}/t/three")
            clients.append(ws)
            workers[pid] = workers.get(pid, 0) + 1
            if len(workers) == 3 and min(workers.values()) >= 2:
                break
        assert len(workers) == 3 and min(workers.values()) >= 2, workers
        # Every worker is subscribed once its first client got its pid: the hub's subscribe
        # returned after Redis confirmed. Each client publishes text and binary, interleaved.
        for i in range(per_client):
            for n, ws in enumerate(clients):
                await ws.send(f"{n}:{i}" if i % 2 else f"{n}:{i}".encode())
        expected = {n: [f"{n}:{i}" if i % 2 else f"{n}:{i}".encode()
                        for i in range(per_client)] for n in range(len(clients))}
        for ws in clients:
            got: dict[int, list[str | bytes]] = {}
            for _ in range(per_client * len(clients)):
                message = await asyncio.wait_for(ws.recv(), WAIT)
                text = message if isinstance(message, str) else message.decode()
                got.setdefault(int(text.split(":")[0]), []).append(message)
            assert got == expected
        await asyncio.sleep(0.2)  # a duplicate would have arrived by now
        for ws in clients:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.01)
            await ws.close()

    app = PubSubApp(redis_server.url, workers=3)
    try:
        run(main(app.port), timeout=60)
    finally:
        code, err = app.stop()
    assert code == 0 and "Traceback" not in err, err


@asyncio_only
def test_killed_worker_is_restarted_and_clients_reconnect(
        run: Run, redis_server: RedisServer) -> None:
    async def main(server: Server) -> None:
        members = await spread(server, "restart", workers=2, per_worker=1)
        pids = {m.name: await wait_worker_of(server, m.name) for m in members}
        victim = pids[members[0].name]
        os.kill(victim, signal.SIGKILL)
        gone = [m for m in members if pids[m.name] == victim]
        for member in gone:
            await asyncio.wait_for(member.reader, WAIT)
            assert member.ws.close_code == 1006  # the process died: no closing handshake
        await eventually(lambda: f"worker {victim} was killed by SIGKILL" in server.stderr,
                         "the supervisor noticing the dead worker")
        await eventually(lambda: len(re.findall(r"worker \d+ started", server.stderr)) == 3,
                         "the replacement worker")
        # The members of the dead worker come back (on whichever worker) and chat again.
        back = [await join(server, "restart", f"{m.name}-again") for m in gone]
        alive = [m for m in members if m not in gone] + back
        await synced(alive)
        await back[0].ws.send("I am back")
        await eventually(lambda: all((back[0].name, "I am back") in m.texts() for m in alive),
                         "the returning member's message")
        for member in alive:
            await member.close()

    with Server("--workers", "2", "--redis", redis_server.url) as server:
        run(main(server), timeout=60)
        assert server.stop() == 0


@asyncio_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_every_worker_with_1001(run: Run, redis_server: RedisServer,
                                              sig: signal.Signals) -> None:
    async def main(server: Server) -> None:
        members = await spread(server, "bye", workers=2, per_worker=1)
        assert server.proc is not None
        server.proc.send_signal(sig)
        for member in members:
            await asyncio.wait_for(member.reader, WAIT)
            assert member.ws.close_code == 1001

    with Server("--workers", "2", "--redis", redis_server.url) as server:
        run(main(server), timeout=60)
        assert server.stop() == 0
        assert "was killed" not in server.stderr


def test_workers_without_redis_warn() -> None:
    with Server("--workers", "2") as server:
        assert "rooms will not span workers" in server.stderr
        assert server.stop() == 0


@pytest.mark.parametrize("reuse_port", [True, False], ids=["reuse-port", "shared-socket"])
def test_app_run_workers(tmp_path: Path, redis_server: RedisServer, reuse_port: bool) -> None:
    """``app.run(host, port, workers=2)``: two processes, one port, SIGTERM stops both; where
    the OS lacks SO_REUSEPORT, the workers share one listening socket."""
    port = free_port()
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(f"""
        import os
        import wskit
        import wskit.workers

        if not {reuse_port}:
            wskit.workers.reuse_port_supported = lambda: False

        app = wskit.App()
        hub = wskit.Hub({redis_server.url!r})

        @app.websocket("pid")
        def pid(req, ws):
            ws.send(str(os.getpid()))

        app.run("127.0.0.1", {port}, workers=2)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=python_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)

        async def pids() -> set[str]:
            seen = set()
            for _ in range(100):
                async with connect(f"ws://127.0.0.1:{port}/pid") as ws:
                    seen.add(str(await ws.recv()))
                if len(seen) == 2:
                    break
            return seen

        seen = asyncio.run(pids())
        assert len(seen) == 2 and str(proc.pid) not in seen
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err.decode()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@asyncio_only
def test_never_reading_subscriber_keeps_server_memory_bounded(
        run: Run, redis_server: RedisServer) -> None:
    """64 MiB published through Redis to a topic with a subscriber that never reads: the
    hub drops what it cannot take (over 1 MiB queued), the reading subscriber gets it all,
    and the server process grows by a few MiB, not by the 64 MiB."""
    chunk = b"x" * 32768
    count = 2048

    async def main(app: PubSubApp) -> None:
        stuck = await asyncio.open_connection("127.0.0.1", app.port)
        stuck[1].write(
            b"GET /t/big HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await stuck[1].drain()
        await asyncio.wait_for(stuck[0].readuntil(b"\r\n\r\n"), WAIT)
        # From now on the stuck subscriber reads nothing: its kernel buffers fill, then the
        # server's write buffer, then the hub drops.
        fast, _ = await pid_client(f"ws://127.0.0.1:{app.port}/t/big")
        await asyncio.sleep(0.2)
        pid = app.worker_pid()
        before = rss_kib(pid)
        for i in range(count):
            await fast.send(chunk)
            if i % 64 == 63:  # keep the fast subscriber in step, as a reading client is
                for _ in range(64):
                    assert await asyncio.wait_for(fast.recv(), WAIT) == chunk
        grown = rss_kib(pid) - before
        assert grown < 16 * 1024, f"the server grew by {grown} KiB"
        await fast.close()
        stuck[1].close()

    app = PubSubApp(redis_server.url, workers=1)
    try:
        run(main(app), timeout=60)
    finally:
        code, err = app.stop()
    assert code == 0, err


def test_supervisor_restarts_a_crash_looping_worker_with_growing_delays(tmp_path: Path) -> None:
    """A worker that keeps dying young is restarted after 0.1 s, then 0.2 s...; one that
    lives on is kept; SIGTERM ends them all with status 0."""
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(f"""
        import logging, os, signal, sys, time
        from wskit.workers import supervise

        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        starts = {str(tmp_path)!r}

        def worker(listener):
            n = len(os.listdir(starts))
            open(os.path.join(starts, str(os.getpid())), "w").close()
            listener.ready()
            if n < 3:
                return 3  # dies at once, three times
            stop = []
            signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
            while not stop:
                time.sleep(0.02)
            return 0

        os.remove(os.path.join(starts, "loop.py"))
        sys.exit(supervise(worker, workers=1, host="127.0.0.1", port=0))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=python_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while len(list(tmp_path.iterdir())) < 4:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    log = err.decode()
    assert proc.returncode == 0, log
    assert re.findall(r"exited with status 3; restarting it in ([\d.]+) s", log) == [
        "0.1", "0.2", "0.4"]
