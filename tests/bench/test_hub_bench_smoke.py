"""Smoke test of the hub benchmark: a tiny run of the wskit setups measures every delivery."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_hub_bench_quick(tmp_path: Path, require: Callable[[str], str]) -> None:
    require("redis-server")
    out = tmp_path / "hub"
    subprocess.run(
        [sys.executable, "-m", "bench.hub", "--only", "wskit-memory,wskit-redis",
         "--subscribers", "20", "--runs", "1", "--rounds", "1", "--warmup", "0.1",
         "--duration", "0.3",
         "--out", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )
    results = json.loads(out.with_suffix(".json").read_text())["results"]
    assert [r["setup"] for r in results] == ["wskit-memory", "wskit-redis"]
    for result in results:
        assert "error" not in result, result
        assert result["deliveries_per_s"] > 0 and result["cpu_us_per_delivery"] > 0
    # One Redis PUBLISH per publish, however many subscribers (not 20); the window of
    # messages in flight at the ends of a run blurs the ratio a little.
    assert results[1]["redis_calls_per_publish"] == pytest.approx(1.0, abs=0.3)
    assert "| wskit Hub('redis://...'), 2 workers |" in out.with_suffix(".md").read_text()
