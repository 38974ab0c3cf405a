"""Run the whole benchmark and write bench/results/latest.{md,json}: `python -m bench.run`."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import (
    COMPRESSING_LIBS,
    EXIT_UNAVAILABLE,
    HOST,
    LIBS,
    LOOPS,
    QUICK_SCENARIOS,
    SCENARIOS,
    listening,
    proc_tree,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# With --pin the library under test gets one core and its fixed peer the other. Off by
# default: on this 2-vCPU VM a wake-up on an idle pinned vCPU costs tens of µs, billed to
# the woken process, which tripled round-trip CPU per message in side-by-side runs, while
# the scheduler's own placement let wake-ups land on a running core.
SUT_CPU, PEER_CPU = 1, 0
# The fixed echo server that every client library is measured against.
FIXED_SERVER = ("fixed", "uvloop")


@dataclass
class Cell:
    """All runs of one (side, scenario, library, loop) combination."""

    side: str
    scenario: str
    lib: str
    loop: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def ok_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if "error" not in r]

    def summary(self) -> dict[str, Any]:
        ok = self.ok_runs()
        out: dict[str, Any] = {
            "side": self.side, "scenario": self.scenario, "lib": self.lib, "loop": self.loop,
            "unit": SCENARIOS[self.scenario].unit, "runs": self.runs,
        }
        errors = [r["error"] for r in self.runs if "error" in r]
        if self.error or not ok:
            out["error"] = self.error or (errors[0] if errors else "no runs")
            return out
        values = [r["value"] for r in ok]
        out.update(median=statistics.median(values), min=min(values), max=max(values))
        cpu = [r["cpu"] / r["count"] * 1e6 for r in ok if r.get("cpu") and r.get("count")]
        out["cpu_us"] = statistics.median(cpu) if cpu else None
        wire = [r["extra"]["wire_bytes"] for r in ok if "wire_bytes" in r.get("extra", {})]
        if wire:
            # Bytes the server wrote per message (per delivery for fan-out), headers included.
            out["wire_bytes"] = statistics.median(wire)
            out["text_bytes"] = ok[0]["extra"]["text_bytes"]
        # How the byte stream was chunked and where the CPU went (loadgen.window()).
        for key in CHUNK_KEYS:
            got = [r["extra"][key] for r in ok if key in r.get("extra", {})]
            if got:
                out[key] = statistics.median(got)
        gen = [r["gen_cpu"] for r in ok if r.get("gen_cpu") is not None]
        if gen:
            out["gen_cores"] = statistics.median(gen)
        cores = [r["cpu"] / r["elapsed"] for r in ok if r.get("cpu") and r.get("elapsed")]
        if cores:
            out["server_cores"] = statistics.median(cores)
        if errors:
            out["failed_runs"] = len(errors)
        return out


#: Per-run figures of the generator's window that a cell keeps the median of.
CHUNK_KEYS = ("gen_reads_per_msg", "srv_reads_per_msg", "srv_writes_per_msg", "srv_sys_share")


# --- processes ---


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # src/ first so the working tree's wskit is the one measured, installed or not.
    paths = [str(ROOT / "src"), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


PIN = "none"
#: Wall seconds of each server process and each client driver, for the report.
TIMES: list[dict[str, Any]] = []


def _pin(pid: int, cpu: int) -> None:
    if PIN == "none" or not hasattr(os, "sched_setaffinity"):
        return
    if PIN == "same":
        cpu = SUT_CPU
    if (os.cpu_count() or 1) > cpu:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def free_port() -> int:
    """A bindable port below the ephemeral range, so no client socket can already hold it."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Server:
    """A server process under test (or the fixed echo server), killed on exit."""

    def __init__(self, lib: str, loop: str, logdir: Path,
                 extra: list[str] | None = None, pin: bool = True) -> None:
        self.lib, self.loop = lib, loop
        self.port = free_port()
        self.log = logdir / f"server-{lib}-{loop}-{self.port}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.servers", lib, "--port", str(self.port),
             "--loop", loop, *(extra or [])],
            cwd=ROOT, env=_env(), stdout=self._log, stderr=subprocess.STDOUT,
        )
        if pin:
            _pin(self.proc.pid, SUT_CPU)
        # The supervisor and its workers, once known: none may outlive stop().
        self.family: list[tuple[int, str]] = []

    def wait_ready(self, timeout: float = 20.0, listeners: int = 1) -> str:
        """Empty string once the port accepts connections, else why it never will.

        With workers, once `listeners` sockets listen on the port (one per worker), so that
        no connection goes to the first worker only because the second was not up yet.
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rc = self.proc.poll()
            if rc is not None:
                tail = self.tail()
                if rc == EXIT_UNAVAILABLE:
                    return "not available: " + tail.removeprefix("UNAVAILABLE: ")
                return f"server exited with {rc}: {tail}"
            if listeners > 1:
                if listening(self.port) >= listeners:
                    self.family = [(p, _started(p)) for p in proc_tree(self.proc.pid)]
                    return ""
            else:
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex((HOST, self.port)) == 0:
                        return ""
            time.sleep(0.05)
        return "server did not start listening"

    def tail(self) -> str:
        self._log.flush()
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid, started in self.family[1:]:
            # Only the very worker (same start time) in case its pid was reused since.
            if _started(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()


def _started(pid: int) -> str:
    """The start time of `pid` (field 22 of /proc/PID/stat), or "" if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@contextlib.contextmanager
def server(lib: str, loop: str, logdir: Path, extra: list[str] | None = None,
           pin: bool = True) -> Iterator[Server]:
    srv = Server(lib, loop, logdir, extra, pin)
    try:
        yield srv
    finally:
        srv.stop()


def run_driver(args: list[str], timeout: float, logdir: Path, tag: str) -> tuple[
        list[dict[str, Any]], str]:
    """Run a load generator or client process; its JSON lines and an error, if any."""
    errlog = logdir / f"{tag}.log"
    with open(errlog, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=_env(),
                                stdout=subprocess.PIPE, stderr=err)
        _pin(proc.pid, PEER_CPU)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            return _parse(out), f"timed out after {timeout:.0f} s"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    records = _parse(out)
    if proc.returncode == EXIT_UNAVAILABLE:
        lines = errlog.read_text(errors="replace").strip().splitlines()
        reason = lines[-1].removeprefix("UNAVAILABLE: ") if lines else ""
        return records, f"not available: {reason}"
    if proc.returncode != 0:
        lines = errlog.read_text(errors="replace").strip().splitlines()
        return records, f"exited with {proc.returncode}: {lines[-1] if lines else ''}"
    return records, ""


def _parse(out: bytes) -> list[dict[str, Any]]:
    records = []
    for line in out.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


# --- the run ---


@dataclass
class Plan:
    libs: list[str]
    loops: list[str]
    scenarios: list[str]
    sides: list[str]
    runs: int
    duration: float
    warmup: float
    quick: bool

    def driver_args(self, names: list[str]) -> list[str]:
        args = ["--scenarios", ",".join(names), "--runs", str(self.runs),
                "--duration", str(self.duration), "--warmup", str(self.warmup)]
        return [*args, "--quick"] if self.quick else args

    def budget(self, names: list[str]) -> float:
        """A generous upper bound on one driver process's time, so a hang cannot stall us."""
        return 60 + len(names) * self.runs * (self.duration + self.warmup + 30)


# --- how long a run takes ---

#: Wall seconds of one run beyond its warm-up and measured window, by scenario kind, on this
#: 2-core VM with nothing else running: settling, connecting, draining and closing, a fixed
#: part and a part per connection (storm and idle have no window: one round of the storm
#: after a warm-up round, one build of 10,000 connections). Rough figures from the runs'
#: `wall_s` and the lengths of the runs of 2026-11-25 and 2026-12-01.
SERVER_RUN = {"rt": (0.1, 0.0), "pipe": (0.1, 0.0), "bulk": (0.15, 0.0), "mpipe": (0.65, 0.0),
              "storm": (0.2, 0.0018), "fanout": (0.5, 0.0008), "idle": (1.5, 0.0006)}
#: The client drivers do not wait for the fixed server to settle; their storms connect with
#: each library's client, which costs more than the generator's hand-made upgrade.
CLIENT_RUN = {"rt": (0.05, 0.0), "pipe": (0.05, 0.0), "bulk": (0.1, 0.0),
              "storm": (0.2, 0.0025)}
#: Starting a server process until it listens, and a driver process until it sends.
SERVER_START, DRIVER_START = 1.0, 0.5
#: One-time cost per compressed scenario in a driver: building and compressing its messages.
COMPRESSED_PREP = 1.0


def run_seconds(plan: Plan, name: str, side: str = "server") -> float:
    """Estimated wall time of all runs of one scenario in one cell."""
    s = SCENARIOS[name]
    fixed, per_conn = (SERVER_RUN if side == "server" else CLIENT_RUN)[s.kind]
    timed = 0.0 if s.kind in ("storm", "idle") else plan.warmup + plan.duration
    runs = 1 if s.kind == "idle" else plan.runs
    one = fixed + per_conn * s.n_conns(plan.quick) + timed
    return runs * one + (COMPRESSED_PREP if s.compress else 0.0)


def estimate(plan: Plan) -> float:
    """Estimated wall time of the whole plan on an idle machine (cells x runs x duration,
    plus the fixed costs above); a loaded machine takes longer, mostly to connect."""
    total = 0.0
    if "server" in plan.sides:
        wanted = [n for n in plan.scenarios if "server" in SCENARIOS[n].sides]
        plain = [n for n in wanted if not SCENARIOS[n].workers]
        for _loop in plan.loops:
            for lib in plan.libs:
                for compress in (False, True):
                    names = [n for n in plain if SCENARIOS[n].compress == compress]
                    if names and (not compress or lib in COMPRESSING_LIBS):
                        total += SERVER_START + DRIVER_START + sum(
                            run_seconds(plan, n) for n in names)
        for n in wanted:
            if SCENARIOS[n].workers and "wskit" in plan.libs:
                counts = len(SCENARIOS[n].workers)
                total += counts * (SERVER_START + plan.runs * DRIVER_START
                                   + run_seconds(plan, n))
    if "client" in plan.sides:
        names = [n for n in plan.scenarios if "client" in SCENARIOS[n].sides]
        if names:
            total += SERVER_START + len(plan.loops) * len(plan.libs) * (
                DRIVER_START + sum(run_seconds(plan, n, "client") for n in names))
    return total


def run_server_side(plan: Plan, cells: dict[tuple[str, ...], Cell], logdir: Path,
                    log: Any) -> None:
    # Idle memory first, on the fresh process, so earlier scenarios' buffers do not hide
    # or inflate the per-connection cost.
    wanted = sorted((n for n in plan.scenarios if "server" in SCENARIOS[n].sides),
                    key=lambda n: SCENARIOS[n].kind != "idle")
    # One server process per library without compression, and one with it for the
    # scenarios that negotiate permessage-deflate (only the libraries that compress).
    plain = [n for n in wanted if not SCENARIOS[n].workers]
    groups = [([n for n in plain if not SCENARIOS[n].compress], False),
              ([n for n in plain if SCENARIOS[n].compress], True)]
    for loop in plan.loops:
        for lib in plan.libs:
            for names, compress in groups:
                if names and (not compress or lib in COMPRESSING_LIBS):
                    _serve_and_load(plan, cells, logdir, log, lib, loop, names, compress)
    for name in wanted:
        if SCENARIOS[name].workers and "wskit" in plan.libs:
            _workers(plan, cells, logdir, log, name)


def workers_lib(n: int) -> str:
    """The library column of `serve --workers n` cells."""
    return f"wskit-{n}w"


def _workers(plan: Plan, cells: dict[tuple[str, ...], Cell], logdir: Path, log: Any,
             name: str) -> None:
    """wskit's `app.run(workers=N)` for each N of the scenario, all servers up at once and
    measured in turn, run by run, so that a change of the shared machine's load touches
    every worker count alike. app.run picks uvloop when it is installed, as users get it."""
    t0 = time.monotonic()
    counts = SCENARIOS[name].workers
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    for n in counts:
        cells[("server", name, workers_lib(n), loop)] = Cell("server", name, workers_lib(n), loop)
    with contextlib.ExitStack() as stack:
        # Never pinned, whatever --pin says: forked workers inherit the supervisor's CPU set,
        # and N workers on one core would measure nothing.
        servers = {n: stack.enter_context(
            server("wskit", loop, logdir, ["--workers", str(n)], pin=False)) for n in counts}
        problems = {n: srv.wait_ready(listeners=n) for n, srv in servers.items()}
        up = [n for n in counts if not problems[n]]
        one = Plan(**{**plan.__dict__, "runs": 1})
        for i in range(plan.runs):
            for n in up:
                srv = servers[n]
                records, problem = run_driver(
                    ["bench.loadgen", "--port", str(srv.port), "--pid", str(srv.proc.pid),
                     "--proto", "ws", *one.driver_args([name])],
                    one.budget([name]), logdir, f"loadgen-workers{n}-{i}")
                for r in records:
                    r["run"] = i
                    cells[("server", name, workers_lib(n), loop)].runs.append(r)
                if srv.proc.poll() is not None and not problem:
                    problem = f"server died: {srv.tail()}"
                problems[n] = problems[n] or problem
    for n in counts:
        c = cells[("server", name, workers_lib(n), loop)]
        if problems[n] and not c.ok_runs():
            c.error = problems[n]
    TIMES.append({"side": "server", "group": f"wskit workers {name}", "loop": loop,
                  "s": round(time.monotonic() - t0, 1)})
    trouble = "; ".join(f"{n} workers: {p}" for n, p in problems.items() if p)
    print(f"  server wskit workers {'/'.join(map(str, counts)):<11} {loop:<7} "
          f"{time.monotonic() - t0:5.1f} s" + (f"  ({trouble})" if trouble else ""),
          file=log, flush=True)


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _serve_and_load(plan: Plan, cells: dict[tuple[str, ...], Cell], logdir: Path, log: Any,
                    lib: str, loop: str, names: list[str], compress: bool) -> None:
    t0 = time.monotonic()
    for n in names:
        cells[("server", n, lib, loop)] = Cell("server", n, lib, loop)
    with server(lib, loop, logdir, ["--compress"] if compress else None) as srv:
        problem = srv.wait_ready()
        if not problem:
            records, problem = run_driver(
                ["bench.loadgen", "--port", str(srv.port), "--pid", str(srv.proc.pid),
                 "--proto", "raw" if lib == "raw" else "ws", *plan.driver_args(names)],
                plan.budget(names), logdir, f"loadgen-{lib}-{loop}")
            for r in records:
                cells[("server", r["scenario"], lib, loop)].runs.append(r)
            if srv.proc.poll() is not None and not problem:
                problem = f"server died: {srv.tail()}"
    for n in names:
        c = cells[("server", n, lib, loop)]
        if problem and not c.ok_runs():
            c.error = problem
    label = lib + (" deflate" if compress else "")
    TIMES.append({"side": "server", "group": label, "loop": loop,
                  "s": round(time.monotonic() - t0, 1)})
    print(f"  server {label:<18} {loop:<7} {time.monotonic() - t0:5.1f} s"
          + (f"  ({problem})" if problem else ""), file=log, flush=True)


def run_client_side(plan: Plan, cells: dict[tuple[str, ...], Cell], logdir: Path,
                    log: Any) -> None:
    names = [n for n in plan.scenarios if "client" in SCENARIOS[n].sides]
    if not names:
        return
    fixed_lib, fixed_loop = FIXED_SERVER
    with server(fixed_lib, fixed_loop, logdir) as srv:
        ready = srv.wait_ready()
        for loop in plan.loops:
            for lib in plan.libs:
                t0 = time.monotonic()
                problem = ready and f"fixed echo server: {ready}"
                for n in names:
                    cells[("client", n, lib, loop)] = Cell("client", n, lib, loop)
                if not problem:
                    records, problem = run_driver(
                        ["bench.clients", lib, "--port", str(srv.port), "--loop", loop,
                         *plan.driver_args(names)],
                        plan.budget(names), logdir, f"client-{lib}-{loop}")
                    for r in records:
                        cells[("client", r["scenario"], lib, loop)].runs.append(r)
                for n in names:
                    c = cells[("client", n, lib, loop)]
                    if problem and not c.ok_runs():
                        c.error = problem
                TIMES.append({"side": "client", "group": lib, "loop": loop,
                              "s": round(time.monotonic() - t0, 1)})
                print(f"  client {lib:<10} {loop:<7} {time.monotonic() - t0:5.1f} s"
                      + (f"  ({problem})" if problem else ""), file=log, flush=True)


# --- reporting ---


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        uname = " ".join(platform.uname())
    return {"uname": uname, "cpu": cpu, "cores": os.cpu_count()}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("picows", "websockets", "aiohttp", "uvloop", "aiofastnet"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        res = subprocess.run(
            [sys.executable, "-c", "import wskit; print(wskit.__version__)"],
            capture_output=True, text=True, env=_env(), timeout=30)
        out["wskit"] = res.stdout.strip() or "not importable"
    except (OSError, subprocess.SubprocessError):
        out["wskit"] = "not importable"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10).stdout
        out["wskit_commit"] = rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def add_ratios(summaries: list[dict[str, Any]]) -> None:
    """CPU per message relative to picows and to the raw-TCP floor of the same run."""
    by_key = {(s["side"], s["scenario"], s["lib"], s["loop"]): s for s in summaries}
    for s in summaries:
        for ref, key in (("picows", "x_picows"), ("raw", "x_floor")):
            r = by_key.get((s["side"], s["scenario"], ref, s["loop"]))
            if r is None or "error" in s or "error" in r:
                continue
            # Idle memory compares KiB per connection; everything else CPU per message.
            metric = "median" if s["unit"] == "KiB/conn" else "cpu_us"
            if s.get(metric) and r.get(metric):
                s[key] = s[metric] / r[metric]


def _num(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


COLUMNS = ("scenario", "library", "loop", "median", "spread (min–max)", "CPU µs/msg",
           "× picows", "× floor")


def table(summaries: list[dict[str, Any]], side: str) -> str:
    rows = [s for s in summaries if s["side"] == side and not SCENARIOS[s["scenario"]].compress
            and not SCENARIOS[s["scenario"]].workers]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in rows:
        scen = f"{s['scenario']} ({s['unit']})"
        if "error" in s:
            lines.append(f"| {scen} | {s['lib']} | {s['loop']} | {s['error'][:80]} "
                         "| – | – | – | – |")
            continue
        cpu = _num(s["cpu_us"]) if s.get("cpu_us") else "–"
        xp = f"{s['x_picows']:.2f}" if "x_picows" in s else "–"
        xf = f"{s['x_floor']:.2f}" if "x_floor" in s else "–"
        spread = f"{_num(s['min'])}–{_num(s['max'])}"
        lines.append(f"| {scen} | {s['lib']} | {s['loop']} | {_num(s['median'])} | {spread} "
                     f"| {cpu} | {xp} | {xf} |")
    return "\n".join(lines)


CHUNK_COLUMNS = ("scenario", "library", "loop", "CPU µs/msg", "msg/server read",
                 "msg/server write", "msg/generator read", "CPU µs/server read",
                 "server sys %")


def _per(x: float | None) -> str:
    """Messages per read from reads per message."""
    return _num(1 / x) if x else "–"


def chunk_table(summaries: list[dict[str, Any]]) -> str:
    """How the pipelined byte stream was chunked: the floor's cost is per read, not per
    message, so its CPU per message is only comparable at the same messages per read."""
    lines = ["| " + " | ".join(CHUNK_COLUMNS) + " |", "|" + "---|" * len(CHUNK_COLUMNS)]
    for s in summaries:
        if (s["side"] != "server" or SCENARIOS[s["scenario"]].kind != "pipe"
                or SCENARIOS[s["scenario"]].compress or "error" in s):
            continue
        reads = s.get("srv_reads_per_msg")
        per_read = _num(s["cpu_us"] / reads) if reads and s.get("cpu_us") else "–"
        sys_share = s.get("srv_sys_share")
        lines.append(
            f"| {s['scenario']} | {s['lib']} | {s['loop']} | "
            f"{_num(s['cpu_us']) if s.get('cpu_us') else '–'} | {_per(reads)} | "
            f"{_per(s.get('srv_writes_per_msg'))} | {_per(s.get('gen_reads_per_msg'))} | "
            f"{per_read} | {f'{sys_share * 100:.0f}' if sys_share is not None else '–'} |")
    return "\n".join(lines)


WORKER_COLUMNS = ("workers", "median msg/s", "spread (min–max)", "× 1 worker",
                  "server CPU µs/msg", "server cores", "generator cores", "conns per worker")


def workers_table(summaries: list[dict[str, Any]]) -> str:
    """`serve --workers N` side by side: throughput, its ratio to one worker, and the CPU
    of every server process and of the load generator, which shares the cores."""
    lines = ["| " + " | ".join(WORKER_COLUMNS) + " |", "|" + "---|" * len(WORKER_COLUMNS)]
    for s, base in _worker_cells(summaries):
        n = SCENARIOS[s["scenario"]].workers[_worker_index(s)]
        if "error" in s:
            lines.append(f"| {n} | {s['error'][:80]} |" + " – |" * (len(WORKER_COLUMNS) - 2))
            continue
        ratio = f"{s['median'] / base['median']:.2f}" if base and "error" not in base else "–"
        placement = "; ".join("/".join(map(str, r["extra"]["conns_per_worker"]))
                              for r in s["runs"] if "conns_per_worker" in r.get("extra", {}))
        lines.append(
            f"| {n} | {_num(s['median'])} | {_num(s['min'])}–{_num(s['max'])} | {ratio} | "
            f"{_num(s['cpu_us']) if s.get('cpu_us') else '–'} | "
            f"{s.get('server_cores', 0):.2f} | {s.get('gen_cores', 0):.2f} | {placement} |")
    return "\n".join(lines)


def _worker_index(s: dict[str, Any]) -> int:
    counts = SCENARIOS[s["scenario"]].workers
    return [workers_lib(n) for n in counts].index(s["lib"])


def _worker_cells(summaries: list[dict[str, Any]]) -> list[tuple[dict[str, Any],
                                                                 dict[str, Any] | None]]:
    """Each workers cell with the one-worker cell of its scenario (None if not measured)."""
    cells = [s for s in summaries if SCENARIOS[s["scenario"]].workers]
    out = []
    for s in cells:
        first = workers_lib(SCENARIOS[s["scenario"]].workers[0])
        base = next((b for b in cells if b["scenario"] == s["scenario"] and b["lib"] == first),
                    None)
        out.append((s, base))
    return out


def workers_targets(summaries: list[dict[str, Any]]) -> list[str]:
    """Issue 14: `serve --workers 2` delivers at least 1.8x one worker's throughput."""
    lines = []
    for s, base in _worker_cells(summaries):
        n = SCENARIOS[s["scenario"]].workers[_worker_index(s)]
        if n != 2 or base is None or "error" in s or "error" in base:
            continue
        ratio = s["median"] / base["median"]
        gen = s.get("gen_cores", 0.0)
        lines.append(
            f"- {s['scenario']}: 2 workers {_num(s['median'])} msg/s, 1 worker "
            f"{_num(base['median'])}: {ratio:.2f}x ({'met' if ratio >= 1.8 else 'NOT met'}); "
            f"the server used {s.get('server_cores', 0):.2f} and {base.get('server_cores', 0):.2f}"
            f" cores, the load generator {gen:.2f} and {base.get('gen_cores', 0):.2f} of the "
            f"{os.cpu_count()} it shares with them")
    return lines


DEFLATE_COLUMNS = ("scenario", "library", "loop", "median", "spread (min–max)", "CPU µs/msg",
                   "wire B/msg", "× websockets", "× aiohttp")


def deflate_table(summaries: list[dict[str, Any]]) -> str:
    """The permessage-deflate cells: CPU and bytes written per message, ratios to both peers."""
    by_key = {(s["side"], s["scenario"], s["lib"], s["loop"]): s for s in summaries}
    rows = [s for s in summaries if SCENARIOS[s["scenario"]].compress]
    lines = ["| " + " | ".join(DEFLATE_COLUMNS) + " |", "|" + "---|" * len(DEFLATE_COLUMNS)]
    for s in rows:
        scen = f"{s['scenario']} ({s['unit']})"
        if "error" in s:
            lines.append(f"| {scen} | {s['lib']} | {s['loop']} | {s['error'][:80]} "
                         "| – | – | – | – | – |")
            continue
        ratios = []
        for ref in ("websockets", "aiohttp"):
            r = by_key.get((s["side"], s["scenario"], ref, s["loop"]))
            ok = r is not None and "error" not in r and r.get("cpu_us") and s.get("cpu_us")
            ratios.append(f"{s['cpu_us'] / r['cpu_us']:.2f}" if ok and r else "–")
        cpu = _num(s["cpu_us"]) if s.get("cpu_us") else "–"
        wire = f"{s['wire_bytes']:.0f}" if s.get("wire_bytes") else "–"
        lines.append(f"| {scen} | {s['lib']} | {s['loop']} | {_num(s['median'])} "
                     f"| {_num(s['min'])}–{_num(s['max'])} | {cpu} | {wire} "
                     f"| {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def deflate_targets(summaries: list[dict[str, Any]]) -> list[str]:
    """Issue 14's compression target: CPU at most 0.5x each peer's, bytes no more than theirs."""
    by_key = {(s["side"], s["scenario"], s["lib"], s["loop"]): s for s in summaries}
    lines = []
    for s in summaries:
        if s["lib"] != "wskit" or not SCENARIOS[s["scenario"]].compress or "error" in s:
            continue
        parts = []
        for ref in ("websockets", "aiohttp"):
            r = by_key.get((s["side"], s["scenario"], ref, s["loop"]))
            if r is None or "error" in r or not r.get("cpu_us") or not s.get("cpu_us"):
                continue
            x = s["cpu_us"] / r["cpu_us"]
            wire = (s.get("wire_bytes") or 0) / (r.get("wire_bytes") or 1)
            met = "met" if x <= 0.5 and wire <= 1.0 else "NOT met"
            parts.append(f"{ref} CPU {x:.2f}x, bytes {wire:.2f}x ({met})")
        if parts:
            lines.append(f"- {s['scenario']} {s['loop']}: " + "; ".join(parts))
    return lines


def _metric(s: dict[str, Any]) -> float | None:
    """What a cell is judged on: KiB per connection for idle memory, else CPU per message."""
    v = s.get("median") if s["unit"] == "KiB/conn" else s.get("cpu_us")
    return None if "error" in s or not v else float(v)


def targets(summaries: list[dict[str, Any]]) -> list[str]:
    """Issue 6's targets for wskit, checked against this run's cells."""
    by_key = {(s["side"], s["scenario"], s["lib"], s["loop"]): s for s in summaries}
    wskit = [s for s in summaries if s["lib"] == "wskit" and not SCENARIOS[s["scenario"]].compress
             and not SCENARIOS[s["scenario"]].workers]
    if not wskit:
        return ["- wskit was not measured in this run"]
    missing = [f"{s['side']} {s['scenario']} {s['loop']}" for s in wskit if _metric(s) is None]
    checks: list[tuple[str, list[tuple[str, float, float]]]] = [
        ("CPU (idle: KiB) at or below picows", []),
        ("2x or better than websockets", []),
        ("server pipe_32_text within 2.5x of the floor's CPU", []),
        ("bulk_1m_bin within 1.5x of the floor's CPU per MiB", []),
        ("idle memory at most 6 KiB per connection", []),
        ("fanout_1000 at most 0.8x picows' CPU per delivery", []),
    ]
    for s in wskit:
        mine = _metric(s)
        if mine is None:
            continue
        name = f"{s['side']} {s['scenario']} {s['loop']}"

        def ref(lib: str, s: dict[str, Any] = s) -> float | None:
            r = by_key.get((s["side"], s["scenario"], lib, s["loop"]))
            return None if r is None else _metric(r)

        for i, (lib, limit) in enumerate((("picows", 1.0), ("websockets", 0.5))):
            other = ref(lib)
            if other is not None:
                checks[i][1].append((name, mine / other, limit))
        floor = ref("raw")
        if floor is not None and s["scenario"] == "pipe_32_text" and s["side"] == "server":
            checks[2][1].append((name, mine / floor, 2.5))
        if floor is not None and s["scenario"] == "bulk_1m_bin":
            checks[3][1].append((name, mine / floor, 1.5))
        if s["scenario"] == "idle_10k":
            checks[4][1].append((name, mine, 6.0))
        if s["scenario"] == "fanout_1000":
            other = ref("picows")
            if other is not None:
                checks[5][1].append((name, mine / other, 0.8))
    lines = []
    for title, results in checks:
        if not results:
            continue
        failed = [(n, v, lim) for n, v, lim in results if v > lim]
        status = "met" if not failed else f"NOT met in {len(failed)} of {len(results)} cells"
        detail = "; ".join(f"{n}: {v:.2f}" for n, v, _ in failed)
        lines.append(f"- {title}: {status}" + (f" ({detail})" if detail else ""))
        if title.startswith("server pipe_32_text"):
            lines.extend(_floor_context(by_key))
    if missing:
        lines.append(f"- no figure for: {', '.join(missing)}")
    return lines


def _floor_context(by_key: dict[tuple[str, ...], dict[str, Any]]) -> list[str]:
    """Messages per server read of wskit and of the floor, beside the floor check: a ratio
    of CPU per message is only fair if both processed the stream in the same read sizes."""
    lines = []
    for loop in LOOPS:
        w, r = by_key.get(("server", "pipe_32_text", "wskit", loop)), by_key.get(
            ("server", "pipe_32_text", "raw", loop))
        if not w or not r or "error" in w or "error" in r:
            continue
        key = "srv_reads_per_msg" if r.get("srv_reads_per_msg") else "gen_reads_per_msg"
        what = "per server read" if key == "srv_reads_per_msg" else "per generator read"
        if not w.get(key) or not r.get(key):
            continue
        lines.append(
            f"  - {loop}: messages {what}: wskit {_num(1 / w[key])}, floor {_num(1 / r[key])};"
            f" the floor's CPU per read {_num(r['cpu_us'] / r[key])} µs"
            + (f", {r['srv_sys_share'] * 100:.0f}% of it in the kernel"
               if r.get("srv_sys_share") is not None else ""))
    return lines


def render(report: dict[str, Any]) -> str:
    m, v, cfg = report["machine"], report["versions"], report["config"]
    vers = ", ".join(f"{k} {val}" for k, val in v.items())
    out = [
        f"# wskit benchmark — {report['date']}",
        "",
        f"- machine: `{m['uname']}`; CPU: {m['cpu']} ({m['cores']} cores)",
        f"- versions: {vers}",
        f"- {'quick' if cfg['quick'] else 'full'} run: {cfg['runs']} run(s) of {cfg['duration']} s "
        f"per cell (idle memory: 1 run), {report['elapsed_s']:.0f} s in all",
        "- median of the runs, spread = min–max; CPU µs/msg = CPU time of the process under "
        "test per message (per connection for storm, per delivery for fan-out, per MiB for "
        "bulk); × picows and × floor = that CPU (KiB for idle memory) divided by picows' and "
        "by the raw-TCP floor's on the same loop in this run (below 1 is better)",
        "",
        "## Servers (driven by the fixed load generator on uvloop)",
        "",
        table(report["results"], "server"),
        "",
        "## Clients (against the fixed header-only echo server, bench/fixed_echo.py, on "
        f"{FIXED_SERVER[1]}; the raw floor sends the same pre-built frames after a hand-made "
        "upgrade)",
        "",
        table(report["results"], "client"),
        "",
        "## Servers with permessage-deflate (each library's default settings; picows and "
        "the floor do not compress)",
        "",
        "wire B/msg = bytes the server wrote per message (per delivery for fan-out), frame "
        "headers included; × = CPU per message divided by that peer's in this run.",
        "",
        deflate_table(report["results"]),
        "",
        "## Reads per message in the pipelined scenarios (servers above)",
        "",
        "The floor's CPU is per read and write, not per message: its CPU per message is "
        "its CPU per read divided by the messages each read brings, so the × floor ratio "
        "is fair only where both read alike. msg/server read and write: uvloop only (libuv "
        "uses read/write, counted in /proc/PID/io; asyncio's recv/send are not); msg/generator"
        " read: how the server's replies arrived; server sys %: the kernel's share of the "
        "server's CPU (clock ticks).",
        "",
        chunk_table(report["results"]),
        "",
        "## Many workers: `app.run(workers=N)` (SO_REUSEPORT), pipelined 32 B text",
        "",
        "All server processes are counted (the supervisor and its workers). The load "
        "generator is one uvloop process on the same cores: a half-window top-up and "
        "SO_RCVLOWAT make it read and write once per half window; its CPU is what the "
        "workers could not have.",
        "",
        workers_table(report["results"]),
        "",
        "## Issue 6 targets for wskit (ratios of the medians above)",
        "",
        *targets(report["results"]),
        "",
        "## Issue 14: many workers",
        "",
        *(workers_targets(report["results"]) or ["- not measured in this run"]),
        "",
        "## Issue 14 compression targets for wskit: CPU at most 0.5x each peer's, bytes on "
        "the wire no more than theirs",
        "",
        *deflate_targets(report["results"]),
        "",
    ]
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="one short run per cell, a subset of scenarios (smoke test)")
    ap.add_argument("--only", help=f"comma-separated libraries (default: {','.join(LIBS)})")
    ap.add_argument("--loops", help="comma-separated loops (default: asyncio,uvloop)")
    ap.add_argument("--scenarios", help="comma-separated scenarios (default: all)")
    ap.add_argument("--sides", default="server,client", help="server, client or both")
    ap.add_argument("--runs", type=int, help="runs per cell (default 3; 1 with --quick)")
    ap.add_argument("--duration", type=float, help="seconds measured per run")
    ap.add_argument("--pin", choices=("none", "same", "split"), default=PIN,
                    help="CPU placement of the process under test and its peer")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where latest.md/json go")
    return ap


def plan_from(args: argparse.Namespace) -> Plan:
    """What the command line asks for; raises ValueError naming unknown names."""
    libs = args.only.split(",") if args.only else list(LIBS)
    # picows and the floor are the references for the ratio columns: always measure them.
    for ref in ("picows", "raw"):
        if ref not in libs:
            libs.append(ref)
    scenarios = (args.scenarios.split(",") if args.scenarios
                 else list(QUICK_SCENARIOS if args.quick else SCENARIOS))
    loops = args.loops.split(",") if args.loops else list(LOOPS)
    bad = ([x for x in scenarios if x not in SCENARIOS] + [x for x in loops if x not in LOOPS]
           + [x for x in libs if x not in (*LIBS, "picows-afn")])
    if bad:
        raise ValueError(f"unknown names: {bad}")
    return Plan(
        libs=libs, loops=loops, scenarios=scenarios,
        sides=[s for s in args.sides.split(",") if s in ("server", "client")],
        runs=args.runs or (1 if args.quick else 3),
        duration=args.duration or (0.3 if args.quick else 1.0),
        warmup=0.1 if args.quick else 0.3,
        quick=args.quick,
    )


def main(argv: list[str] | None = None) -> int:
    global PIN
    ap = parser()
    args = ap.parse_args(argv)
    PIN = args.pin
    try:
        plan = plan_from(args)
    except ValueError as e:
        ap.error(str(e))
    started = time.monotonic()
    print(f"estimated {estimate(plan) / 60:.1f} min on an idle machine", file=sys.stderr,
          flush=True)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cells: dict[tuple[str, ...], Cell] = {}
    log = sys.stderr
    with tempfile.TemporaryDirectory(prefix="wskit-bench-") as tmp:
        logdir = Path(tmp)
        if "server" in plan.sides:
            print("servers:", file=log, flush=True)
            run_server_side(plan, cells, logdir, log)
        if "client" in plan.sides:
            print("clients:", file=log, flush=True)
            run_client_side(plan, cells, logdir, log)

    order = {n: i for i, n in enumerate(SCENARIOS)}
    counts = sorted({n for sc in SCENARIOS.values() for n in sc.workers})
    lib_order = {n: i for i, n in enumerate(
        [*LIBS, "picows-afn", *(workers_lib(k) for k in counts)])}
    summaries = [c.summary() for c in sorted(
        cells.values(),
        key=lambda c: (c.side != "server", order[c.scenario], lib_order[c.lib], c.loop))]
    add_ratios(summaries)
    report = {
        "date": date,
        "machine": machine_info(),
        "versions": versions(),
        "config": {"quick": plan.quick, "runs": plan.runs, "duration": plan.duration,
                   "warmup": plan.warmup, "libs": plan.libs, "loops": plan.loops,
                   "scenarios": plan.scenarios, "sides": plan.sides,
                   "fixed_echo_server": list(FIXED_SERVER), "pinned": PIN},
        "elapsed_s": time.monotonic() - started,
        "estimate_s": round(estimate(plan)),
        "times": TIMES,
        "results": summaries,
    }
    md = render(report)
    # A quick smoke run must never overwrite the full run's tables.
    stem = "latest-quick" if plan.quick else "latest"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.md").write_text(md)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(md)
    print(f"wrote {args.out / stem}.md and .json in {report['elapsed_s']:.0f} s", file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
