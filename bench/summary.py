"""Condenses bench/results/latest.json into the README's table: CPU µs per message per library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LIBS = ["wskit", "picows", "websockets", "aiohttp", "raw"]
SCENARIOS = ["rt_32_text", "rt_1k_bin", "pipe_32_text", "pipe_1k_bin", "bulk_1m_bin",
             "storm_500", "fanout_1000", "idle_10k"]
#: With permessage-deflate: only the libraries that compress.
DEFLATE_SCENARIOS = ["z_rt_500_json", "z_pipe_500_json", "z_pipe_4k_json", "z_fanout_1000"]
DEFLATE_LIBS = ["wskit", "websockets", "aiohttp"]
#: wskit's `serve --workers N` side by side (cells wskit-1w, wskit-2w).
WORKERS_SCENARIOS = ["workers_pipe_32_text"]


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def summarize(path: Path) -> str:
    data = json.loads(path.read_text())
    cells = {(r["side"], r["scenario"], r["lib"], r["loop"]): r for r in data["results"]}
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    lines = [
        f"Run of {data['date']} on `{data['machine'].get('uname', data['machine'])}`"
        if isinstance(data["machine"], dict) else f"Run of {data['date']} on {data['machine']}",
        "",
        f"Versions: {versions}.",
        "",
        "CPU time of the process under test per message, asyncio / uvloop (µs; per MiB for "
        "bulk, per connection for storm, per delivery for fan-out, KiB per connection for "
        "idle); lower is better. `raw` is a TCP echo without WebSocket (the floor).",
        "",
        "| side | scenario | " + " | ".join(LIBS) + " |",
        "|---|---|" + "---|" * len(LIBS),
    ]
    seen = [(side, scenario) for side in ("server", "client") for scenario in SCENARIOS
            if any(k[0] == side and k[1] == scenario for k in cells)]
    for side, scenario in seen:
        row = []
        for lib in LIBS:
            parts = []
            for loop in ("asyncio", "uvloop"):
                cell = cells.get((side, scenario, lib, loop))
                value = None
                if cell:
                    value = cell["median"] if scenario.startswith("idle") else cell["cpu_us"]
                parts.append(_number(value))
            row.append(" / ".join(parts))
        lines.append(f"| {side} | {scenario} | " + " | ".join(row) + " |")
    zrows = [n for n in DEFLATE_SCENARIOS if any(k[1] == n for k in cells)]
    if zrows:
        lines += [
            "",
            "With permessage-deflate negotiated (each library's defaults), server side: CPU µs "
            "per message, asyncio / uvloop, then bytes written per message (uvloop).",
            "",
            "| scenario | " + " | ".join(DEFLATE_LIBS) + " | "
            + " | ".join(f"{lib} B/msg" for lib in DEFLATE_LIBS) + " |",
            "|---|" + "---|" * (2 * len(DEFLATE_LIBS)),
        ]
        for scenario in zrows:
            cpu, wire = [], []
            for lib in DEFLATE_LIBS:
                parts = []
                for loop in ("asyncio", "uvloop"):
                    cell = cells.get(("server", scenario, lib, loop))
                    parts.append(_number(cell.get("cpu_us") if cell else None))
                cpu.append(" / ".join(parts))
                cell = cells.get(("server", scenario, lib, "uvloop"))
                value = cell.get("wire_bytes") if cell else None
                wire.append(f"{value:.0f}" if value else "–")
            lines.append(f"| {scenario} | " + " | ".join(cpu) + " | " + " | ".join(wire) + " |")
    lines += _workers_lines(data["results"])
    return "\n".join(lines)


def _workers_count(lib: str) -> int:
    return int(lib.split("-")[1][:-1])  # wskit-2w


def _workers_label(lib: str) -> str:
    n = _workers_count(lib)
    return f"{n} worker" + ("s" if n > 1 else "")


def _workers_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per workers scenario: msg/s of each worker count, the ratio to one worker,
    and the CPU per message of all server processes and the generator's cores."""
    out = []
    for scenario in WORKERS_SCENARIOS:
        cells = sorted((r for r in results if r["scenario"] == scenario and "error" not in r
                        and r.get("median")), key=lambda r: _workers_count(r["lib"]))
        if not cells:
            continue
        base = cells[0]["median"]
        parts = [f"{_workers_label(c['lib'])} {c['median']:,.0f} msg/s "
                 f"({c['median'] / base:.2f}x; {_number(c.get('cpu_us'))} µs/msg, generator "
                 f"{c.get('gen_cores', 0):.2f} cores)" for c in cells]
        out += ["", f"Many workers, `app.run(workers=N)` ({scenario}, {cells[0]['loop']}): "
                + "; ".join(parts) + "."]
    return out


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.json")))
