"""Profile one server under one load: `python -m bench.profile LIB --scenario pipe_32_text`."""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import LIBS, SCENARIOS
from bench.run import ROOT, Server, _env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("lib", choices=[*LIBS, "picows-afn", "fixed"])
    ap.add_argument("--scenario", default="pipe_32_text", choices=sorted(SCENARIOS))
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    ap.add_argument("--save", type=Path, help="keep the .prof file here")
    ap.add_argument("--compress", action="store_true",
                    help="permessage-deflate on (implied by the z_ scenarios)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wskit-prof-") as tmp:
        prof = args.save or Path(tmp) / "server.prof"
        compress = args.compress or SCENARIOS[args.scenario].compress
        srv = Server(args.lib, args.loop, Path(tmp),
                     extra=["--profile", str(prof), *(["--compress"] if compress else [])])
        try:
            problem = srv.wait_ready()
            if problem:
                print(problem, file=sys.stderr)
                return 1
            proto = "raw" if args.lib == "raw" else "ws"
            out = subprocess.run(
                [sys.executable, "-m", "bench.loadgen", "--port", str(srv.port),
                 "--pid", str(srv.proc.pid), "--proto", proto, "--scenarios", args.scenario,
                 "--runs", "1", "--duration", str(args.duration)],
                cwd=ROOT, env=_env(), capture_output=True, text=True,
                timeout=args.duration + 120,
            )
            print(out.stdout.strip())
        finally:
            srv.stop()
        if not prof.exists():
            print(f"no profile written; server log: {srv.tail()}", file=sys.stderr)
            return 1
        stats = pstats.Stats(str(prof))
        stats.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
