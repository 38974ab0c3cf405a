"""Smoke test of the ASGI bench: uvicorn's default protocol and wskit's both measure non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_asgi_bench_quick_round_trip() -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.asgi", "--quick", "--ws", "auto,wskit",
         "--scenarios", "rt_32_text"],
        cwd=ROOT, check=True, timeout=120, capture_output=True,
    )
    data = json.loads((ROOT / "bench" / "results" / "asgi-latest-quick.json").read_text())
    cells = {cell["ws"]: cell for cell in data["cells"]}
    assert set(cells) == {"auto", "wskit"}
    for cell in cells.values():
        assert "error" not in cell, cell
        assert cell["median"] > 0 and cell["cpu_us"] > 0
