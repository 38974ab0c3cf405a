"""README.md's Python examples, run for real: each one is a program that must work as shown.

How the README is read (write the README by these rules, or this test fails):

* Every ```python block is a complete program. It is written to a file in a fresh working
  directory and run with this Python (``src`` on the path); it must exit with status 0
  within ``BLOCK_TIMEOUT`` seconds.
* An unmarked block is a client of the demo server: the README has the reader start
  ``make serve`` at 127.0.0.1:8080 first. The test starts ``python -m wskit serve --port 0``
  and rewrites the number 8080 in the block to its port. Port 8443 is the same demo served
  with TLS (rewritten likewise), with a certificate from ``python -m trustme`` as the README
  tells; the authority ``client.pem`` is in the block's working directory.
* ``<!-- readme-test: server NAME -->`` on the line before a block marks a server program
  that calls ``app.run("127.0.0.1", 8080)``. It is run on a free port (8080 rewritten),
  every block marked ``<!-- readme-test: client of NAME -->`` is run against it in README
  order, then it is sent SIGTERM: it must exit with 0 and print no traceback.
* When the first fenced block after a Python block is a ```text block, that is the program's
  expected standard output, compared line by line (trailing spaces ignored).

Besides running them, the test checks that every example of the spec has its twin, that the
limit tables give the real defaults, and that the sections others fill in are there.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cli_process import Server, free_port, python_env, stop, wait_for_port

import wskit

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK_TIMEOUT = 20.0

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")
_HEADING = re.compile(r"^#+\s+(.*)$")


@dataclass
class Block:
    lang: str
    code: str
    line: int
    heading: str
    directive: str = ""
    expected: str | None = None
    clients: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"line{self.line}-{slug}"


def parse(text: str) -> list[Block]:
    """Every fenced block, with the directive and the heading above it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    heading = ""
    previous = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            found = _HEADING.match(line)
            if found:
                heading = found.group(1)
            if line.strip():
                previous = line.strip()
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md line {start + 1}: unclosed code fence")
        directive = _DIRECTIVE.match(previous)
        blocks.append(Block(fence.group(1), "\n".join(body) + "\n", start + 1, heading,
                            directive.group(1) if directive else ""))
        previous = ""
        i += 1
    return blocks


def python_programs(text: str) -> list[Block]:
    """The Python blocks to run: plain clients and servers (with their clients attached)."""
    blocks = parse(text)
    programs: list[Block] = []
    servers: dict[str, Block] = {}
    for index, block in enumerate(blocks):
        if block.lang != "python":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is not None and following.lang == "text":
            block.expected = following.code
        words = block.directive.split()
        if words[:1] == ["server"] and len(words) == 2:
            servers[words[1]] = block
            programs.append(block)
        elif words[:2] == ["client", "of"] and len(words) == 3:
            if words[2] not in servers:
                raise AssertionError(f"README.md line {block.line}: no server {words[2]!r} above")
            servers[words[2]].clients.append(block)
        elif words:
            raise AssertionError(
                f"README.md line {block.line}: unknown directive {block.directive!r}")
        else:
            programs.append(block)
    return programs


PROGRAMS = python_programs(README.read_text(encoding="utf-8"))


# -- the servers the examples talk to ----------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples' working directory, with the trustme certificate the README has them make."""
    path = tmp_path_factory.mktemp("readme")
    subprocess.run([sys.executable, "-m", "trustme", "-q", "-d", str(path)], check=True,
                   timeout=BLOCK_TIMEOUT)
    return path


@pytest.fixture(scope="module")
def demo() -> Iterator[Server]:
    with Server("--log-level", "warning") as server:
        yield server


@pytest.fixture(scope="module")
def demo_tls(workdir: Path) -> Iterator[Server]:
    with Server("--log-level", "warning", "--certfile", str(workdir / "server.pem"),
                "--keyfile", str(workdir / "server.key")) as server:
        yield server


def rewrite(code: str, port: int, tls_port: int) -> str:
    """The README's ports, 8080 and 8443, become those the test listens on."""
    code = re.sub(r"\b8080\b", str(port), code)
    return re.sub(r"\b8443\b", str(tls_port), code)


def run_program(block: Block, code: str, workdir: Path) -> None:
    """Run one client program; fail with its output unless it exits 0 and prints as shown."""
    path = workdir / f"example_line{block.line}.py"
    path.write_text(code, encoding="utf-8")
    try:
        done = subprocess.run([sys.executable, str(path)], cwd=workdir, env=python_env(),
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md line {block.line} did not finish in {BLOCK_TIMEOUT} s:\n"
                    f"{exc.stdout!r}\n{exc.stderr!r}")
    where = f"README.md line {block.line} ({block.heading})"
    assert done.returncode == 0, f"{where} exited with {done.returncode}:\n{done.stderr}"
    if block.expected is not None:
        got = [line.rstrip() for line in done.stdout.rstrip().splitlines()]
        want = [line.rstrip() for line in block.expected.rstrip().splitlines()]
        assert got == want, f"{where} printed something else:\n{done.stdout}\n{done.stderr}"


# -- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", PROGRAMS, ids=[block.id for block in PROGRAMS])
def test_example_runs(block: Block, demo: Server, demo_tls: Server, workdir: Path) -> None:
    if not block.directive:
        run_program(block, rewrite(block.code, demo.port, demo_tls.port), workdir)
        return
    # A server example: serve it on a free port, run its clients, stop it like Ctrl-C would.
    port = free_port()
    path = workdir / f"server_line{block.line}.py"
    path.write_text(rewrite(block.code, port, demo_tls.port), encoding="utf-8")
    log = workdir / f"server_line{block.line}.log"
    with log.open("wb") as output:
        proc = subprocess.Popen([sys.executable, str(path)], cwd=workdir, env=python_env(),
                                stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            wait_for_port(port, proc)
            for client in block.clients:
                run_program(client, rewrite(client.code, port, demo_tls.port), workdir)
        finally:
            status = stop(proc)
    printed = log.read_text(encoding="utf-8", errors="replace")
    assert status == 0, f"README.md line {block.line}: the server exited with {status}:\n{printed}"
    assert "Traceback" not in printed, printed


def test_every_block_is_found() -> None:
    """The parser sees every Python block of the README: none escapes the test silently."""
    text = README.read_text(encoding="utf-8")
    counted = sum(1 + len(block.clients) for block in PROGRAMS)
    assert counted == text.count("```python\n") >= 12
    for block in PROGRAMS:
        ast.parse(block.code)  # a syntax error names the block here too


def test_a_server_example_has_clients() -> None:
    servers = [block for block in PROGRAMS if block.directive]
    assert servers, "the README lost its server example"
    for block in servers:
        assert block.clients, f"README.md line {block.line}: a server example with no client"
        assert 'run("127.0.0.1", 8080)' in block.code


def test_parse_rules() -> None:
    """The rules of the module docstring, on a small made-up README."""
    text = "\n".join([
        "# A", "<!-- readme-test: server s -->", "```python", "serve()", "```",
        "## B", "<!-- readme-test: client of s -->", "```python", "print(1)", "```",
        "prints:", "```text", "1", "```", "```python", "print(2)", "```", "```sh", "x", "```",
    ])
    programs = python_programs(text)
    assert [(b.heading, b.directive, b.line) for b in programs] == [
        ("A", "server s", 3), ("B", "", 15)]
    client = programs[0].clients[0]
    assert (client.code, client.expected, client.heading) == ("print(1)\n", "1\n", "B")
    assert programs[1].expected is None
    with pytest.raises(AssertionError, match="no server"):
        python_programs("<!-- readme-test: client of nope -->\n```python\nx\n```\n")
    with pytest.raises(AssertionError, match="unknown directive"):
        python_programs("<!-- readme-test: fragment -->\n```python\nx\n```\n")
    with pytest.raises(AssertionError, match="unclosed"):
        parse("```python\nx\n")


# -- the twins, the tables and the sections ----------------------------------------------------

# Each Swift call of the spec and what its Python twin must contain.
SPEC_TWINS = {
    "routing.websocket(": "@app.websocket(",
    "WebSocket.connect(": "wskit.connect(",
    "send(string:": '.send("',
    "onString": ".on_text(",
    "send(bytes:": ".send(memoryview(",
    "send(data:": '.send(b"',
    "onByteBuffer": ".on_buffer(",
    "onData": ".on_binary(",
    ".catch": ".catch(",
    ".finally": ".finally_(",
}


def test_every_spec_example_has_a_twin() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = parse(text)
    spec = (Path(__file__).resolve().parents[2] / "shared" / "spec" / "vapor3-websocket.md")
    if spec.exists():
        # Every Swift block of the spec is quoted in the README, in the same order.
        # (The README leaves out the spec's ``import WebSocket`` line.)
        wanted = [b.code.replace("import WebSocket\n\n", "").strip()
                  for b in parse(spec.read_text(encoding="utf-8")) if b.lang == "swift"]
        assert [b.code.strip() for b in blocks if b.lang == "swift"] == wanted
    for index, block in enumerate(blocks):
        if block.lang != "swift":
            continue
        # The twin is the next Python block.
        twin = next(b for b in blocks[index + 1:] if b.lang == "python")
        calls = [swift for swift in SPEC_TWINS if swift in block.code]
        assert calls, f"README.md line {block.line}: a Swift block with no known call"
        for swift in calls:
            assert SPEC_TWINS[swift] in twin.code, (
                f"README.md line {twin.line}: the twin of {swift} lacks {SPEC_TWINS[swift]}")


def _table_defaults(text: str, title: str) -> dict[str, Any]:
    """``| `name` | `default` | meaning |`` rows of the table under the heading ``title``."""
    section = text.split(title, 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.MULTILINE)
    assert rows, f"no table under {title}"
    return {name: _constant(ast.parse(value, mode="eval").body) for name, value in rows}


def _constant(node: ast.expr) -> Any:
    """Literals, tuples, and the ``1 << 20`` and ``64 * 1024`` the tables write sizes with."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.Mult)):
        left, right = _constant(node.left), _constant(node.right)
        return left << right if isinstance(node.op, ast.LShift) else left * right
    if isinstance(node, ast.Tuple):
        return tuple(_constant(item) for item in node.elts)
    return ast.literal_eval(node)


@pytest.mark.parametrize(("title", "function"), [
    ("### `wskit.App(", wskit.App.__init__),
    ("### `wskit.connect(", wskit.connect),
])
def test_limit_tables_match_the_code(title: str, function: Any) -> None:
    """The README's argument tables name every argument with its real default."""
    documented = _table_defaults(README.read_text(encoding="utf-8"), title)
    parameters = inspect.signature(function).parameters
    actual = {name: p.default for name, p in parameters.items()
              if p.kind is p.KEYWORD_ONLY}
    assert set(documented) == set(actual)
    for name, default in actual.items():
        if isinstance(default, (tuple, list)):
            assert tuple(documented[name]) == tuple(default), name
        else:
            assert documented[name] == default, name


def test_sections() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make serve" in text and "make test" in text
    for title in ("## Compression", "## Interop", "## Benchmarks"):
        assert f"\n{title}\n" in text, f"README.md lost {title}"
