"""The documentation site: it builds with warnings as errors, and its guides' examples run.

How the guides are read (write them by these rules, or this test fails):

* Every ```python block in ``docs/`` is a complete program. It is written to a file in a
  fresh working directory and run with this Python (``src`` on the path); it must exit with
  status 0 within ``BLOCK_TIMEOUT`` seconds. Examples start the servers they talk to (on
  port 0, a free port) and stop them, so each runs alone.
* When the first fenced block after a Python block is a ```text block, that is the program's
  expected standard output, compared line by line (trailing spaces ignored).
* Blocks in other languages (sh, console, nginx, haproxy, ini, text) are shown, not run.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK_TIMEOUT = 30.0
_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    expected: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each Python one with its expected output."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None or not match.group(1):
            i += 1
            continue
        start, lang, body = i + 1, match.group(1), []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        blocks.append(Block(path, start, lang, "\n".join(body) + "\n"))
    for prev, block in itertools.pairwise(blocks):
        if prev.lang == "python" and block.lang == "text":
            prev.expected = block.code
    return [b for b in blocks if b.lang == "python"]


def guide_blocks() -> list[Block]:
    return [block for path in sorted(DOCS.rglob("*.md")) for block in parse(path)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    env["NO_MKDOCS_2_WARNING"] = "1"
    # The examples talk to servers they start on loopback: no proxy from the environment.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        env.pop(name, None)
    return env


BLOCKS = guide_blocks()


def test_the_guides_have_examples() -> None:
    assert len(BLOCKS) >= 10, [b.where for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_example_runs(block: Block, tmp_path: Path) -> None:
    program = tmp_path / "example.py"
    program.write_text(block.code)
    done = subprocess.run([sys.executable, str(program)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False)
    assert done.returncode == 0, f"{block.where} exited with {done.returncode}:\n{done.stderr}"
    if block.expected is not None:
        got = [line.rstrip() for line in done.stdout.strip("\n").splitlines()]
        want = [line.rstrip() for line in block.expected.strip("\n").splitlines()]
        assert got == want, f"{block.where}: the output differs from the text block below it"


def test_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, a missing page or a docstring that does not
    parse fails the build (what ``make docs`` runs)."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None, "mkdocs is not installed: pip install -e '.[docs]'"
    done = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "api" / "asgi" / "index.html").exists()
    assert (tmp_path / "site" / "guides" / "getting-started" / "index.html").exists()
