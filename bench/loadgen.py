"""The one load generator for every server: pre-built masked frames on raw uvloop sockets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    CLIENT_CLOSE,
    HOST,
    OP_TEXT,
    SCENARIOS,
    Scenario,
    check_upgrade_response,
    client_frame,
    conns_per_process,
    emit,
    payload_for,
    proc_cpu,
    proc_io,
    proc_rss_kib,
    proc_times,
    proc_tree,
    raise_nofile,
    run_with_loop,
    server_frame,
    tree_cpu,
    upgrade_request,
)
from bench.compressed import (
    OFFER,
    FrameCounter,
    check_first,
    client_frames,
    negotiated,
    scenario_messages,
)

# The generator never parses echoed frames on the hot path: an echo of a masked client frame
# is the same payload behind a 4-byte-shorter header, so completed messages are simply
# received_bytes // reply_length. The first reply of each run is checked byte for byte.

CONNECT_TIMEOUT = 10.0
BATCH = 250  # connections opened concurrently while building up fan-out or idle sets
CLOSE_FRAME_LEN = 4  # a server's close frame carrying only a status code


class Conn(asyncio.Protocol):
    """One client socket: optional hand-made upgrade, then byte counting."""

    def __init__(self, upgrade: bytes | None, keep: int = 0, compress: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.upgrade = upgrade
        self.handshaking = upgrade is not None
        self.head = bytearray()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.rx = 0
        self.reads = 0  # data_received calls after the handshake: how replies were chunked
        self.keep = keep
        self.first = bytearray()
        self.on_rx: Callable[[Conn, int], None] | None = None
        # With compression: the negotiated parameters, and a hook that sees every read.
        self.compress = compress
        self.params: dict[str, int | bool] = {}
        self.on_data: Callable[[bytes], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.upgrade is not None:
            self.transport.write(self.upgrade)
        else:
            self.upgraded.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 16384:
                    self._fail("handshake response too long")
                return
            problem = check_upgrade_response(bytes(self.head[:end]), self.compress)
            if problem is not None:
                self._fail(problem)
                return
            if self.compress:
                self.params = negotiated(bytes(self.head[:end])) or {}
            self.handshaking = False
            data = bytes(self.head[end + 4 :])
            self.head = bytearray()
            self.upgraded.set_result(None)
            if not data:
                return
        n = len(data)
        self.reads += 1
        if len(self.first) < self.keep:
            self.first += data[: self.keep - len(self.first)]
        self.rx += n
        if self.on_data is not None:
            self.on_data(data)
        if self.on_rx is not None:
            self.on_rx(self, n)

    def reset(self) -> None:
        """Abort with SO_LINGER 0, so the kernel sends RST and keeps no TIME_WAIT state."""
        if self.lost.done():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _fail(self, problem: str) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(RuntimeError(problem))
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)


class LoadGen:
    """Runs scenarios against one server process and reports that process's CPU and RSS."""

    def __init__(self, port: int, pid: int, proto: str, warmup: float, duration: float) -> None:
        self.port = port
        self.pid = pid
        self.raw = proto == "raw"
        self.warmup = warmup
        self.duration = duration
        self.gen_cpu: float | None = None
        self.chunks: dict[str, float] = {}
        self.cores: dict[int, float] = {}

    # --- helpers ---

    async def open(self, path: str, keep: int = 0, hello: bytes = b"",
                   compress: bool = False) -> Conn:
        loop = asyncio.get_running_loop()
        req = None if self.raw else upgrade_request(path, self.port, OFFER if compress else "")
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: Conn(req, keep, compress), HOST, self.port),
            CONNECT_TIMEOUT,
        )
        await asyncio.wait_for(conn.upgraded, CONNECT_TIMEOUT)
        if hello:
            conn.transport.write(hello)
        return conn

    async def open_many(self, n: int, path: str, hello: bytes = b"",
                        compress: bool = False) -> tuple[list[Conn], str]:
        """Open up to n connections in concurrent batches; stop at the first failing batch."""
        conns: list[Conn] = []
        error = ""
        while len(conns) < n:
            k = min(BATCH, n - len(conns))
            got = await asyncio.gather(
                *(self.open(path, hello=hello, compress=compress) for _ in range(k)),
                return_exceptions=True,
            )
            for g in got:
                if isinstance(g, BaseException):
                    error = error or f"{type(g).__name__}: {g}"
                else:
                    conns.append(g)
            if error:
                break
        return conns, error

    async def close_all(self, conns: list[Conn], timeout: float = 10.0) -> None:
        """End connections after a WebSocket close handshake, with a reset, not a FIN.

        The close frames keep servers from logging an abnormal closure per connection (which
        would bleed CPU into the next measurement); the reset keeps 10,000s of sockets out of
        TIME_WAIT, which would slow every later connect() on the machine.
        """
        if not conns:
            return
        waits = []
        for c in conns:
            if c.transport.is_closing():
                continue
            if self.raw:
                c.reset()
                continue
            start = c.rx

            def on_rx(conn: Conn, _n: int, start: int = start) -> None:
                if conn.rx >= start + CLOSE_FRAME_LEN:
                    conn.reset()

            c.on_rx = on_rx
            c.transport.write(CLIENT_CLOSE)
            waits.append(c.lost)
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for c in conns:
            c.reset()

    async def settle(self, limit: float = 5.0) -> None:
        """Wait until the server is idle (below 5% of a core) so runs do not overlap."""
        end = time.perf_counter() + limit
        while time.perf_counter() < end:
            cpu0 = tree_cpu(self.pid)
            # 50 ms is long enough to see a busy server (one that is still echoing what the
            # last run left in flight), and it is paid before every run of the full bench.
            await asyncio.sleep(0.05)
            if tree_cpu(self.pid) - cpu0 < 0.0025:
                return

    def frames(self, s: Scenario) -> tuple[bytes, bytes]:
        """(request bytes, expected reply bytes) for one message of scenario s."""
        payload = payload_for(s)
        if s.kind == "fanout":
            # The publisher sends a masked frame; subscribers get it unmasked. On raw TCP the
            # publisher sends the unmasked frame itself so every delivery has the same size.
            reply = server_frame(OP_TEXT, payload)
            return (reply if self.raw else client_frame(OP_TEXT, payload)), reply
        req = client_frame(s.opcode, payload)
        return req, (req if self.raw else server_frame(s.opcode, payload))

    async def window(self, count: Callable[[], int],
                     reads: Callable[[], int] | None = None) -> tuple[int, float, float]:
        """Warm up, then return (messages, wall seconds, server CPU seconds) for one run.

        Also keeps, for run() to report, the generator's CPU share, and how the byte stream
        was chunked: the generator's receives (`reads`) and the server's read/write syscalls.
        """
        await asyncio.sleep(self.warmup)
        procs = proc_tree(self.pid)
        io0, r0 = proc_io(self.pid), reads() if reads else 0
        each0 = [_cpu_or_zero(p) for p in procs]
        times0 = [_times_or_zero(p) for p in procs]
        c0, cpu0, t0 = count(), tree_cpu(self.pid), time.perf_counter()
        own0 = time.process_time()
        await asyncio.sleep(self.duration)
        c1, cpu1, t1 = count(), tree_cpu(self.pid), time.perf_counter()
        # The generator's own CPU share shows whether it, not the server, was the limit.
        self.gen_cpu = (time.process_time() - own0) / (t1 - t0)
        each1 = [_cpu_or_zero(p) for p in procs]
        times1 = [_times_or_zero(p) for p in procs]
        io1, r1 = proc_io(self.pid), reads() if reads else 0
        # Cores each server process used (several with workers, their supervisor first).
        self.cores = {p: (b - a) / (t1 - t0) for p, a, b in zip(procs, each0, each1, strict=True)}
        n = max(c1 - c0, 1)
        chunks: dict[str, float] = {}
        if reads is not None:
            chunks["gen_reads_per_msg"] = (r1 - r0) / n
        if io0 and io1:
            chunks["srv_reads_per_msg"] = (io1["syscr"] - io0["syscr"]) / n
            chunks["srv_writes_per_msg"] = (io1["syscw"] - io0["syscw"]) / n
        user = sum(b[0] - a[0] for a, b in zip(times0, times1, strict=True))
        system = sum(b[1] - a[1] for a, b in zip(times0, times1, strict=True))
        if user + system > 0:
            # How much of the server's CPU the kernel took (ticks: about ±0.01 s each).
            chunks["srv_sys_share"] = system / (user + system)
        self.chunks = chunks
        return c1 - c0, t1 - t0, cpu1 - cpu0

    # --- scenarios ---

    async def pipeline(self, s: Scenario) -> dict[str, Any]:
        req, reply = self.frames(s)
        rlen, window = len(reply), s.window
        batch = req * window
        conn = await self.open("/echo", keep=rlen)
        loop = asyncio.get_running_loop()
        drained: asyncio.Future[None] = loop.create_future()
        state = {"sent": window, "stop": False}

        def on_rx(c: Conn, _n: int) -> None:
            done = c.rx // rlen
            if state["stop"]:
                if done >= state["sent"] and not drained.done():
                    drained.set_result(None)
                return
            k = done + window - state["sent"]
            if k > 0:
                # Top the window back up with one write of k pre-built frames.
                c.transport.write(batch if k == window else batch[: k * len(req)])
                state["sent"] += k

        conn.on_rx = on_rx
        conn.transport.write(batch)
        try:
            n, wall, cpu = await self.window(lambda: conn.rx // rlen, lambda: conn.reads)
            state["stop"] = True
            if conn.rx // rlen >= state["sent"] and not drained.done():
                drained.set_result(None)
            await asyncio.wait_for(drained, 10)
        finally:
            await self.close_all([conn])
        if bytes(conn.first) != reply:
            return {"error": f"echo mismatch: got {bytes(conn.first[:40])!r}"}
        return {"count": n, "elapsed": wall, "cpu": cpu}

    async def multipipe(self, s: Scenario, n_conns: int) -> dict[str, Any]:
        """`n_conns` connections with `s.window` messages in flight each, counted together.

        For many workers: the kernel spreads the connections over them, and the generator
        must stay cheap, since on 2 cores it takes CPU from them. So each connection tops its
        window up only once half of it came back (one write per half window), and asks the
        kernel with SO_RCVLOWAT not to wake it for less than half a window of replies (one
        read per half window, however the server splits its writes). Half a window always
        stays in flight, so the server is never starved and the low mark is always reached.
        """
        req, reply = self.frames(s)
        rlen, window = len(reply), s.window
        half = window // 2
        batch = req * window
        conns, error = await self.open_many(n_conns, "/echo")
        if error:
            await self.close_all(conns)
            return {"error": f"only {len(conns)} of {n_conns} connections: {error}"}
        for c in conns:
            _rcvlowat(c, half * rlen)
        loop = asyncio.get_running_loop()
        drained: asyncio.Future[None] = loop.create_future()
        sent = dict.fromkeys(conns, window)
        state = {"stop": False, "pending": n_conns}

        def on_rx(c: Conn, _n: int) -> None:
            done = c.rx // rlen
            if state["stop"]:
                if done >= sent[c]:
                    state["pending"] -= 1
                    c.on_rx = None
                    if state["pending"] == 0 and not drained.done():
                        drained.set_result(None)
                return
            k = done + window - sent[c]
            if k >= half:
                c.transport.write(batch if k == window else batch[: k * len(req)])
                sent[c] += k

        for c in conns:
            c.keep = rlen
            c.on_rx = on_rx
            c.transport.write(batch)
        try:
            await asyncio.sleep(0.05)
            held = conns_per_process(self.pid, self.port)
            n, wall, cpu = await self.window(lambda: sum(c.rx for c in conns) // rlen,
                                             lambda: sum(c.reads for c in conns))
            state["stop"] = True
            for c in conns:
                _rcvlowat(c, 1)  # the last replies may be fewer than half a window
                if c.rx // rlen >= sent[c]:
                    c.on_rx = None
                    state["pending"] -= 1
            if state["pending"] <= 0 and not drained.done():
                drained.set_result(None)
            await asyncio.wait_for(drained, 10)
        finally:
            await self.close_all(conns)
        wrong = [c for c in conns if bytes(c.first) != reply]
        if wrong:
            return {"error": f"echo mismatch: got {bytes(wrong[0].first[:40])!r}"}
        # Connections and CPU (in cores) of each worker; the supervisor's CPU apart.
        procs = list(self.cores)
        workers = procs[1:] or procs  # with workers, the first process is their supervisor
        extra: dict[str, Any] = {
            "conns": n_conns, "window": window, "workers": len(workers),
            "conns_per_worker": [held.get(p, 0) for p in workers],
            "cores_per_worker": [round(self.cores[p], 3) for p in workers]}
        if len(procs) > 1:
            extra["supervisor_cores"] = round(self.cores[procs[0]], 4)
        return {"count": n, "elapsed": wall, "cpu": cpu, "extra": extra}

    async def storm(self, s: Scenario, n_conns: int) -> dict[str, Any]:
        req, reply = self.frames(s)
        rlen = len(reply)
        bad: list[str] = []

        async def one() -> None:
            conn = await self.open("/echo", keep=rlen)
            closing = [self.raw]

            def on_rx(c: Conn, _n: int) -> None:
                if not closing[0] and c.rx >= rlen:
                    closing[0] = True
                    c.transport.write(CLIENT_CLOSE)
                if c.rx >= rlen + (0 if self.raw else CLOSE_FRAME_LEN):
                    # Close once the server's close frame is in, so neither side waits on
                    # the other's TCP close; on raw TCP the echo alone ends the exchange.
                    c.transport.close()

            conn.on_rx = on_rx
            conn.transport.write(req)
            try:
                await asyncio.wait_for(conn.lost, CONNECT_TIMEOUT)
            except asyncio.TimeoutError:
                conn.transport.abort()
                raise
            if bytes(conn.first) != reply:
                bad.append(f"echo mismatch: {bytes(conn.first[:40])!r}")

        async def round_() -> int:
            got = await asyncio.gather(*(one() for _ in range(n_conns)), return_exceptions=True)
            errs = [g for g in got if isinstance(g, BaseException)]
            if errs:
                bad.append(f"{len(errs)} failed, e.g. {type(errs[0]).__name__}: {errs[0]}")
            return len(got) - len(errs)

        await round_()  # warm-up round
        bad.clear()
        # One round per run: every storm connection ends in TIME_WAIT on the side that closed
        # first, and a full run's worth of rounds would fill the port range for later cells.
        cpu0, t0 = tree_cpu(self.pid), time.perf_counter()
        done = await round_()
        wall, cpu = time.perf_counter() - t0, tree_cpu(self.pid) - cpu0
        if bad:
            return {"error": bad[0]}
        return {"count": done, "elapsed": wall, "cpu": cpu}

    async def fanout(self, s: Scenario, n_subs: int) -> dict[str, Any]:
        req, reply = self.frames(s)
        rlen = len(reply)
        hello = b"FANOUT\n" if self.raw else b""
        conns, error = await self.open_many(n_subs, "/fanout", hello)
        try:
            if error:
                return {"error": f"only {len(conns)} of {n_subs} subscribers: {error}"}
            for c in conns:
                c.keep = rlen
            # Servers register a subscriber after the handshake, possibly in a task that has
            # not run yet when the 101 arrives: let them settle before the first publish.
            await asyncio.sleep(0.3)
            total = [0]
            loop = asyncio.get_running_loop()
            first_round: asyncio.Future[None] = loop.create_future()
            pub = conns[0]
            state = {"published": 1, "stop": False}
            window = s.window

            def on_rx(_c: Conn, n: int) -> None:
                total[0] += n
                delivered = total[0] // rlen
                if not first_round.done():
                    if delivered >= n_subs:
                        first_round.set_result(None)
                    return
                if state["stop"]:
                    return
                # Publish message k only once (k - window) messages reached everyone, so
                # the server is never asked to buffer without bound.
                allowed = delivered // n_subs + window
                k = allowed - state["published"]
                if k > 0:
                    pub.transport.write(req * k)
                    state["published"] = allowed

            for c in conns:
                c.on_rx = on_rx
            pub.transport.write(req)
            try:
                await asyncio.wait_for(first_round, 10)
            except asyncio.TimeoutError:
                got = sum(1 for c in conns if c.rx >= rlen)
                return {"error": f"first message reached {got} of {n_subs} subscribers"}
            wrong = [c for c in conns if bytes(c.first) != reply]
            if wrong:
                return {"error": f"delivery mismatch: {bytes(wrong[0].first[:40])!r}"}
            # Kick the windowed publisher off.
            pub.transport.write(req * window)
            state["published"] += window
            n, wall, cpu = await self.window(lambda: total[0] // rlen)
            state["stop"] = True
            # Let the messages still in flight arrive before the subscribers leave.
            end = time.perf_counter() + 5
            while total[0] // rlen < state["published"] * n_subs and time.perf_counter() < end:
                await asyncio.sleep(0.02)
            return {"count": n, "elapsed": wall, "cpu": cpu, "extra": {"subscribers": n_subs}}
        finally:
            await self.close_all(conns)

    # --- scenarios with permessage-deflate ---

    def _messages(self, s: Scenario) -> list[bytes]:
        cache: dict[str, list[bytes]] = self.__dict__.setdefault("_msg_cache", {})
        if s.name not in cache:
            cache[s.name] = scenario_messages(s)
        return cache[s.name]

    async def zpipeline(self, s: Scenario) -> dict[str, Any]:
        """Round trips or a window of compressed messages in flight on one connection."""
        messages = self._messages(s)
        conn = await self.open("/echo", compress=True)
        frames = client_frames(messages, int(conn.params["client_max_window_bits"]))
        counter = FrameCounter()
        window, nframes = s.window, len(frames)
        loop = asyncio.get_running_loop()
        drained: asyncio.Future[None] = loop.create_future()
        state = {"sent": 0, "next": 0, "stop": False}

        def send(k: int) -> None:
            i = state["next"]
            out = []
            for _ in range(k):
                out.append(frames[i])
                i = i + 1 if i + 1 < nframes else 0
            state["next"] = i
            state["sent"] += k
            conn.transport.write(b"".join(out))

        def on_data(data: bytes) -> None:
            counter.feed(data)
            if state["stop"]:
                if counter.frames >= state["sent"] and not drained.done():
                    drained.set_result(None)
                return
            k = counter.frames + window - state["sent"]
            if k > 0:
                send(k)

        marks: list[int] = []

        def count() -> int:
            marks.append(counter.rx)
            return counter.frames

        conn.on_data = on_data
        send(window)
        try:
            n, wall, cpu = await self.window(count)
            state["stop"] = True
            if counter.frames >= state["sent"] and not drained.done():
                drained.set_result(None)
            await asyncio.wait_for(drained, 10)
        finally:
            conn.on_data = None
            await self.close_all([conn])
        problem = check_first(counter, messages[0], conn.params)
        if problem:
            return {"error": problem}
        return {"count": n, "elapsed": wall, "cpu": cpu,
                "extra": {"wire_bytes": (marks[1] - marks[0]) / max(n, 1),
                          "text_bytes": sum(map(len, messages)) / nframes,
                          "params": conn.params}}

    async def zfanout(self, s: Scenario, n_subs: int) -> dict[str, Any]:
        """One compressed publication to every subscriber, a window of them in flight."""
        messages = self._messages(s)
        conns, error = await self.open_many(n_subs, "/fanout", compress=True)
        try:
            if error:
                return {"error": f"only {len(conns)} of {n_subs} subscribers: {error}"}
            pub = conns[0]
            frames = client_frames(messages, int(pub.params["client_max_window_bits"]))
            nframes = len(frames)
            counters = [FrameCounter() for _ in conns]
            await asyncio.sleep(0.3)  # as in fanout(): let every server register its subscribers
            total = [0]
            loop = asyncio.get_running_loop()
            first_round: asyncio.Future[None] = loop.create_future()
            state = {"published": 0, "next": 0, "stop": False}
            window = s.window

            def publish(k: int) -> None:
                i = state["next"]
                out = []
                for _ in range(k):
                    out.append(frames[i])
                    i = i + 1 if i + 1 < nframes else 0
                state["next"] = i
                state["published"] += k
                pub.transport.write(b"".join(out))

            def on_data_for(counter: FrameCounter) -> Callable[[bytes], None]:
                def on_data(data: bytes) -> None:
                    total[0] += counter.feed(data)
                    if not first_round.done():
                        if total[0] >= n_subs:
                            first_round.set_result(None)
                        return
                    if state["stop"]:
                        return
                    k = total[0] // n_subs + window - state["published"]
                    if k > 0:
                        publish(k)
                return on_data

            for c, counter in zip(conns, counters, strict=True):
                c.on_data = on_data_for(counter)
            publish(1)
            try:
                await asyncio.wait_for(first_round, 10)
            except asyncio.TimeoutError:
                got = sum(1 for c in counters if c.frames)
                return {"error": f"first message reached {got} of {n_subs} subscribers"}
            for counter in counters:
                problem = check_first(counter, messages[0], pub.params)
                if problem:
                    return {"error": f"delivery: {problem}"}
            publish(window)
            marks: list[int] = []

            def count() -> int:
                marks.append(sum(c.rx for c in counters))
                return total[0]

            n, wall, cpu = await self.window(count)
            state["stop"] = True
            end = time.perf_counter() + 5
            while total[0] < state["published"] * n_subs and time.perf_counter() < end:
                await asyncio.sleep(0.02)
            return {"count": n, "elapsed": wall, "cpu": cpu,
                    "extra": {"subscribers": n_subs,
                              "wire_bytes": (marks[1] - marks[0]) / max(n, 1),
                              "text_bytes": sum(map(len, messages)) / nframes,
                              "params": pub.params}}
        finally:
            for c in conns:
                c.on_data = None
            await self.close_all(conns)

    async def idle(self, _s: Scenario, n_conns: int) -> dict[str, Any]:
        # Warm the server's allocator and lazy imports so the delta is per-connection cost.
        warm, _ = await self.open_many(100, "/echo")
        await self.close_all(warm)
        await self.settle()
        rss0 = proc_rss_kib(self.pid)
        t0 = time.perf_counter()
        conns, error = await self.open_many(n_conns, "/echo")
        build = time.perf_counter() - t0
        try:
            await asyncio.sleep(1.0)  # let handler tasks start and settle
            rss1 = proc_rss_kib(self.pid)
        finally:
            await self.close_all(conns, timeout=30)
        if not conns:
            return {"error": f"no connection opened: {error}"}
        extra: dict[str, Any] = {"open": len(conns), "wanted": n_conns, "rss0_kib": rss0,
                                 "rss1_kib": rss1, "build_s": round(build, 3)}
        if error:
            extra["stopped_by"] = error
        return {"count": len(conns), "elapsed": build, "value": (rss1 - rss0) / len(conns),
                "cpu": 0.0, "extra": extra}

    async def run(self, names: list[str], runs: int, quick: bool) -> None:
        for name in names:
            s = SCENARIOS[name]
            # Memory is not noisy the way throughput is, and 10,000 connections take a
            # while to build: one run of the idle scenario is enough.
            for i in range(1 if s.kind == "idle" else runs):
                started = time.perf_counter()
                await self.settle()
                try:
                    if s.compress and s.kind in ("rt", "pipe"):
                        res = await asyncio.wait_for(self.zpipeline(s), self.duration + 30)
                    elif s.compress and s.kind == "fanout":
                        res = await asyncio.wait_for(
                            self.zfanout(s, s.n_conns(quick)), self.duration + 60)
                    elif s.kind == "mpipe":
                        res = await asyncio.wait_for(
                            self.multipipe(s, s.n_conns(quick)), self.duration + 30)
                    elif s.kind in ("rt", "pipe", "bulk"):
                        res = await asyncio.wait_for(self.pipeline(s), self.duration + 30)
                    elif s.kind == "storm":
                        res = await asyncio.wait_for(
                            self.storm(s, s.n_conns(quick)), self.duration + 60)
                    elif s.kind == "fanout":
                        res = await asyncio.wait_for(
                            self.fanout(s, s.n_conns(quick)), self.duration + 60)
                    else:
                        res = await asyncio.wait_for(self.idle(s, s.n_conns(quick)), 120)
                except Exception as e:  # one failed scenario must not hide the others
                    res = {"error": f"{type(e).__name__}: {e}"}
                # Wall time of the whole run, settling and set-up included: what the
                # runner's estimate of a full run's length is made of.
                res.update(scenario=name, run=i, wall_s=round(time.perf_counter() - started, 2))
                if self.gen_cpu is not None and "error" not in res:
                    res["gen_cpu"] = round(self.gen_cpu, 3)
                    res.setdefault("extra", {}).update(
                        {k: round(v, 4) for k, v in self.chunks.items()})
                self.gen_cpu, self.chunks, self.cores = None, {}, {}
                if "error" not in res and "value" not in res:
                    res["value"] = res["count"] / res["elapsed"]
                emit(res)
                try:
                    tree_cpu(self.pid)
                except OSError:
                    emit({"scenario": name, "run": i, "error": "server process died"})
                    return


def _rcvlowat(conn: Conn, nbytes: int) -> None:
    sock = conn.transport.get_extra_info("socket")
    if sock is not None and hasattr(socket, "SO_RCVLOWAT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)


def _times_or_zero(pid: int) -> tuple[float, float]:
    try:
        return proc_times(pid)
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0


def _cpu_or_zero(pid: int) -> float:
    try:
        return proc_cpu(pid)
    except OSError:
        return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="server process to measure")
    ap.add_argument("--proto", choices=("ws", "raw"), default="ws")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1.5)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="smaller connection counts")
    args = ap.parse_args(argv)
    raise_nofile()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios: {unknown}")
    gen = LoadGen(args.port, args.pid, args.proto, args.warmup, args.duration)
    # The generator always runs on uvloop so it is the same fast client for every server.
    run_with_loop("uvloop", lambda: gen.run(names, args.runs, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
