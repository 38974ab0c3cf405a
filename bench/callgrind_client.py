"""Instructions per round trip of a client, by callgrind: `python -m bench.callgrind_client`."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clients import DRIVERS, State
from bench.common import HOST, SCENARIOS, run_with_loop

# Each client process runs exactly n round trips of one scenario against bench/fixed_echo.py,
# under `valgrind --tool=callgrind`; the difference of the runs with n and 2n, divided by n,
# is what one round trip costs the client (start-up, imports and the handshake cancel out).
# Instruction counts are deterministic where wall time on a shared machine is not; glibc's
# malloc still moves them by a few hundred per round trip between runs of a 1 KiB scenario.

ROOT = Path(__file__).resolve().parent.parent


class _Counted(State):
    """Stops the driver's pipe after exactly `n` echoes (its `stop` is read per message)."""

    __slots__ = ("n",)

    @property  # type: ignore[override]
    def stop(self) -> bool:
        return self.done >= self.n

    @stop.setter
    def stop(self, value: bool) -> None:
        pass


async def _round_trips(lib: str, port: int, scenario: str, n: int) -> None:
    d = DRIVERS[lib]()
    await d.setup()
    s = SCENARIOS[scenario]
    msg = d.message(s)
    conn = await d.connect(f"ws://{HOST}:{port}/echo")
    st = _Counted()
    st.n = n
    await d.pipe(conn, msg, s.window, st)
    if st.done != n or st.first != d.expected(s):
        raise SystemExit(f"{lib}: {st.done} echoes, first {str(st.first)[:40]}")
    await d.close(conn)
    await d.teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


def _instructions(lib: str, port: int, scenario: str, loop: str, n: int, out: Path) -> int:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
           "-m", "bench.callgrind_client", "--child", lib, "--port", str(port),
           "--scenario", scenario, "--loop", loop, "-n", str(n)]
    subprocess.run(cmd, cwd=ROOT, env=_env(), check=True, capture_output=True)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def measure(lib: str, scenario: str, loop: str, n: int, tmp: Path) -> float:
    """Instructions of `lib`'s client per round trip of `scenario` on `loop`."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, uvloop; from bench.fixed_echo import serve_fixed; "
         "uvloop.run(serve_fixed(int(sys.argv[1])))", str(port)], cwd=ROOT, env=_env())
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        one = _instructions(lib, port, scenario, loop, n, tmp / f"{lib}.{n}.out")
        two = _instructions(lib, port, scenario, loop, 2 * n, tmp / f"{lib}.{2 * n}.out")
    finally:
        server.terminate()
        server.wait()
    return (two - one) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--libs", default="wskit,picows")
    ap.add_argument("--scenarios", default="rt_32_text,rt_1k_bin")
    ap.add_argument("--loops", default="asyncio,uvloop")
    ap.add_argument("-n", type=int, default=2000, help="round trips of the shorter run")
    ap.add_argument("--child", metavar="LIB", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    ap.add_argument("--loop", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child: Any = run_with_loop(args.loop, lambda: _round_trips(
            args.child, args.port, args.scenario, args.n))
        return int(child or 0)
    with tempfile.TemporaryDirectory(prefix="wskit-cg-") as tmp:
        for scenario in args.scenarios.split(","):
            for loop in args.loops.split(","):
                row = {lib: measure(lib, scenario, loop, args.n, Path(tmp))
                       for lib in args.libs.split(",")}
                cells = "  ".join(f"{lib} {ir:8.0f}" for lib, ir in row.items())
                print(f"{scenario:12} {loop:8} Ir per round trip: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
