"""Smoke test of the benchmark harness: quick mode runs and writes a complete, non-zero table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.common import QUICK_SCENARIOS, SCENARIOS  # noqa: E402
from bench.run import COLUMNS, estimate, parser, plan_from  # noqa: E402
from bench.summary import summarize  # noqa: E402

LIBS = ("picows", "raw")
LOOP = "uvloop"


def test_full_plan_is_estimated_under_15_minutes() -> None:
    """Issue 14: `make bench` stays under 15 minutes. Arithmetic on the plan (cells x runs x
    duration plus each kind's set-up, bench/run.py), not a measured time: a scenario added
    without room for it fails here, before anyone waits for a full run."""
    full = plan_from(parser().parse_args([]))
    assert set(full.scenarios) == set(SCENARIOS) and full.runs == 3
    assert estimate(full) < 15 * 60
    quick = plan_from(parser().parse_args(["--quick"]))
    assert estimate(quick) < 2 * 60


def _require(module: str) -> None:
    # The peers are the `bench` extra: CI installs it, so there a missing one is a failure.
    if os.environ.get("CI") == "true":
        __import__(module)
    else:
        pytest.importorskip(module)


def _rows(md: str, heading: str) -> list[list[str]]:
    """The body rows of the markdown table that follows `heading`."""
    section = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == list(COLUMNS)
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_run_writes_full_table(tmp_path: Path) -> None:
    for module in ("picows", "uvloop"):
        _require(module)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", ",".join(LIBS),
         "--loops", LOOP, "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "latest-quick.md").read_text()
    report = json.loads((tmp_path / "latest-quick.json").read_text())
    assert report["machine"]["uname"] and report["versions"]["python"]

    for side, heading in (("server", "## Servers"), ("client", "## Clients")):
        rows = _rows(md, heading)
        wanted = {
            (name, lib) for name in QUICK_SCENARIOS if side in SCENARIOS[name].sides
            and not SCENARIOS[name].workers  # wskit only, in a table of their own
            for lib in LIBS
        }
        got = {(r[0].split(" ", 1)[0], r[1]) for r in rows}
        assert got == wanted, f"{side}: {got ^ wanted}"
        for r in rows:
            assert len(r) == len(COLUMNS), r
            assert r[2] == LOOP
            assert _number(r[3]) > 0, r  # the median; an error text would not parse
            if not r[0].startswith("idle"):
                assert _number(r[5]) > 0, r  # CPU µs per message
            assert _number(r[7]) > 0, r  # ratio to the floor

    # How the pipelined streams were chunked: a figure for every server and both counts
    # on uvloop, where /proc/PID/io sees libuv's reads and writes.
    section = md.split("## Reads per message", 1)[1].split("\n## ", 1)[0]
    chunks = [[c.strip() for c in ln.strip("|").split("|")]
              for ln in section.splitlines() if ln.startswith("|")][2:]
    assert {(r[0], r[1]) for r in chunks} == {("pipe_32_text", lib) for lib in LIBS}
    raw = next(r for r in chunks if r[1] == "raw")
    assert all(_number(x) > 0 for x in raw[3:8]), raw
    assert "messages per server read: wskit" not in md  # wskit was not measured


def _table(md: str, heading: str) -> list[list[str]]:
    section = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_workers_slice_runs_and_reports(tmp_path: Path) -> None:
    """`serve --workers 1` and `2` under the many-connection load: it runs and reports
    every figure (never how fast: the machine may be shared)."""
    _require("uvloop")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "wskit", "--loops", LOOP,
         "--sides", "server", "--scenarios", "workers_pipe_32_text", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "latest-quick.md").read_text()
    rows = _table(md, "## Many workers")
    assert [r[0] for r in rows] == ["1", "2"], rows
    quick_conns = SCENARIOS["workers_pipe_32_text"].quick_conns
    for r in rows:
        assert _number(r[1]) > 0 and _number(r[4]) > 0, r  # msg/s, server CPU per message
        assert _number(r[6]) > 0, r  # the generator's cores
        placement = [int(x) for x in r[7].split("/")]
        assert len(placement) == int(r[0]) and sum(placement) == quick_conns, r
    assert rows[0][3] == "1.00"
    target = md.split("## Issue 14: many workers", 1)[1].split("\n## ", 1)[0]
    assert "workers_pipe_32_text: 2 workers" in target and "load generator" in target
    report = json.loads((tmp_path / "latest-quick.json").read_text())
    cells = [c for c in report["results"] if c["scenario"] == "workers_pipe_32_text"]
    assert sorted(c["lib"] for c in cells) == ["wskit-1w", "wskit-2w"]
    two = next(c for c in cells if c["lib"] == "wskit-2w")
    assert len(two["runs"][0]["extra"]["cores_per_worker"]) == 2
    # The README's condensed table carries it too.
    condensed = summarize(tmp_path / "latest-quick.json")
    assert "Many workers, `app.run(workers=N)` (workers_pipe_32_text" in condensed
    assert "1 worker " in condensed and "2 workers " in condensed
