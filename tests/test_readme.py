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
  that calls ``app.run("127.0.0.1", PORT)`` with a port of its own (not the demo's 8080 or
  8443, and not another server example's), so that the reader can run it beside the demo.
  It is run on a free port (PORT rewritten), every block marked
  ``<!-- readme-test: client of NAME -->`` is run against it in README order (PORT
  rewritten in them too), then it is sent SIGTERM: it must exit with 0 and print no traceback.
* When the first fenced block after a Python block is a ```text block, that is the program's
  expected standard output, compared line by line (trailing spaces ignored).
* A ```text block marked ``<!-- readme-test: stderr -->`` after that (or right after the
  Python block) is its expected standard error: the same comparison, except that a line
  ``...`` stands for any number of lines (the frames of a traceback).

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
    stderr: str | None = None
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
    taken: set[int] = set()  # the lines of the stderr blocks that follow a program
    for index, block in enumerate(blocks):
        if block.lang != "python":
            continue
        after = blocks[index + 1:index + 3]
        if after and after[0].lang == "text" and after[0].directive != "stderr":
            block.expected = after.pop(0).code
        if after and after[0].lang == "text" and after[0].directive == "stderr":
            block.stderr = after[0].code
            taken.add(after[0].line)
        words = block.directive.split()
        if words[:1] == ["server"] and len(words) == 2:
            servers[words[1]] = block
            programs.append(block)
        elif words[:2] == ["client", "of"] and len(words) == 3:
            if words[2] not in servers:
                raise AssertionError(f"README.md line {block.line}: no server {words[2]!r} above")
            servers[words[2]].clients.append(block)
        elif words == ["stderr"]:
            raise AssertionError(f"README.md line {block.line}: a stderr block is a text block")
        elif words:
            raise AssertionError(
                f"README.md line {block.line}: unknown directive {block.directive!r}")
        else:
            programs.append(block)
    for block in blocks:
        if block.directive == "stderr" and block.lang == "text" and block.line not in taken:
            raise AssertionError(f"README.md line {block.line}: a stderr block after no program")
    return programs


def server_port(block: Block) -> int:
    """The port a server example listens on, from its ``app.run("127.0.0.1", PORT)``."""
    found = re.findall(r'\.run\("127\.0\.0\.1", (\d+)\)', block.code)
    assert len(found) == 1, f"README.md line {block.line}: no app.run(\"127.0.0.1\", PORT)"
    return int(found[0])


def matches(got: str, want: str) -> bool:
    """``got`` line by line against ``want``, where a line ``...`` stands for any lines."""
    pattern = "".join(
        r"(?:.*\n)*?" if line == "..." else re.escape(line) + r"\n"
        for line in (line.rstrip() for line in want.rstrip().splitlines()))
    text = "".join(line.rstrip() + "\n" for line in got.rstrip().splitlines())
    return re.fullmatch(pattern, text) is not None


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


def rewrite(code: str, port: int, tls_port: int, ports: dict[int, int] | None = None) -> str:
    """The README's ports, 8080 and 8443 (and a server example's), become those of the test."""
    for old, new in {8080: port, 8443: tls_port, **(ports or {})}.items():
        code = re.sub(rf"\b{old}\b", str(new), code)
    return code


def run_program(block: Block, code: str, workdir: Path,
                rewritten: Any = lambda text: text) -> None:
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
        want = [line.rstrip() for line in rewritten(block.expected).rstrip().splitlines()]
        assert got == want, f"{where} printed something else:\n{done.stdout}\n{done.stderr}"
    if block.stderr is not None:
        assert matches(done.stderr, rewritten(block.stderr)), (
            f"{where} printed something else on stderr:\n{done.stderr}")


# -- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", PROGRAMS, ids=[block.id for block in PROGRAMS])
def test_example_runs(block: Block, demo: Server, demo_tls: Server, workdir: Path) -> None:
    if not block.directive:
        def demo_ports(text: str) -> str:
            return rewrite(text, demo.port, demo_tls.port)

        run_program(block, demo_ports(block.code), workdir, demo_ports)
        return
    # A server example: serve it on a free port, run its clients, stop it like Ctrl-C would.
    port = free_port()
    own = {server_port(block): port}

    def ports(text: str) -> str:
        return rewrite(text, demo.port, demo_tls.port, own)

    path = workdir / f"server_line{block.line}.py"
    path.write_text(ports(block.code), encoding="utf-8")
    log = workdir / f"server_line{block.line}.log"
    with log.open("wb") as output:
        proc = subprocess.Popen([sys.executable, str(path)], cwd=workdir, env=python_env(),
                                stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            wait_for_port(port, proc)
            for client in block.clients:
                run_program(client, ports(client.code), workdir, ports)
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


def test_a_server_example_has_clients_and_a_port_of_its_own() -> None:
    """A reader runs the server examples beside the demo (8080, 8443): each has its own port,
    and its clients talk to that port, not the demo's (issue 16)."""
    servers = [block for block in PROGRAMS if block.directive]
    assert len(servers) >= 2, "the README lost its server examples"
    ports = [server_port(block) for block in servers]
    assert len(set(ports)) == len(ports), f"two server examples share a port: {ports}"
    for block, port in zip(servers, ports, strict=True):
        where = f"README.md line {block.line}"
        assert port not in (8080, 8443), f"{where}: a server example on the demo's port"
        assert block.clients, f"{where}: a server example with no client"
        for client in block.clients:
            assert str(port) in client.code and "8080" not in client.code, (
                f"README.md line {client.line}: a client of {block.directive!r} that does not "
                f"talk to its port {port}")
    for block in PROGRAMS:
        if not block.directive:
            assert not re.search(r"\.(run|serve|start)\(\"", block.code), (
                f"README.md line {block.line}: a server example without its directive")
            assert not re.search(rf"\b({'|'.join(map(str, ports))})\b", block.code), (
                f"README.md line {block.line}: a client of a server example without its directive")


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
    err = "\n".join(["```python", "p()", "```", "```text", "out", "```",
                     "<!-- readme-test: stderr -->", "```text", "err", "```",
                     "```python", "q()", "```", "<!-- readme-test: stderr -->", "```text", "e2",
                     "```"])
    first, second = python_programs(err)
    assert (first.expected, first.stderr, second.expected, second.stderr) == (
        "out\n", "err\n", None, "e2\n")
    with pytest.raises(AssertionError, match="after no program"):
        python_programs("```text\nx\n```\n<!-- readme-test: stderr -->\n```text\ny\n```\n")
    assert matches("a\nTraceback\n  File x\n  line\nError: e\n", "a\nTraceback\n...\nError: e")
    assert matches("a\nb\n", "a\n...\nb")
    assert not matches("a\nb\nc\n", "a\nc")
    assert not matches("a\n", "a\n...\nb")


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


def _api_reference(text: str) -> str:
    return text.split("\n## API reference\n", 1)[1].split("\n## ", 1)[0]


def test_every_export_is_documented() -> None:
    """Each name of ``wskit.__all__`` is in the API reference, as ``wskit.NAME`` or ``NAME``
    at the start of a code span: a new export without its documentation fails here."""
    reference = _api_reference(README.read_text(encoding="utf-8"))
    missing = [name for name in wskit.__all__
               if not re.search(rf"`(?:wskit\.)?{re.escape(name)}(?![\w])", reference)]
    assert not missing, f"exported but not in the README's API reference: {missing}"


#: Public members of WebSocket that are not for applications (their docstrings say so).
#: The Receiver interface the binding calls (docs/architecture.md, Seams), and the server's
#: report of a handler that raised.
INTERNAL_MEMBERS = {"on_close", "answers_pending", "connection_ended", "listener_failed",
                    "receive_events", "receive_messages"}


def test_the_websocket_table_lists_every_member() -> None:
    """Every public method and property of ``wskit.WebSocket`` has its row in the table."""
    reference = _api_reference(README.read_text(encoding="utf-8"))
    table = reference.split("### `wskit.WebSocket`", 1)[1].split("\n#", 1)[0]
    first_column = re.findall(r"^\| (.*?) \|", table, re.MULTILINE)
    documented = {name for cell in first_column
                  for name in re.findall(r"`(?:await |async for \w+ in )?(\w+)", cell)}
    members = {name for name in dir(wskit.WebSocket) if not name.startswith("_")}
    missing = sorted(members - documented - INTERNAL_MEMBERS)
    assert not missing, f"WebSocket members missing from the README's table: {missing}"
    assert members >= INTERNAL_MEMBERS


@pytest.mark.parametrize("command", ["serve", "connect"])
def test_the_usage_blocks_name_every_option(command: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The README's ``python -m wskit COMMAND ...`` block lists every option of ``--help``."""
    from wskit import cli

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    # Each option line of the help: its spellings ("-k, --insecure"), before the description.
    spellings = [re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", line.split("  ")[0])
                 for line in (line.strip() for line in capsys.readouterr().out.splitlines())
                 if line.startswith("-")]
    options = [names for names in spellings if names and "--help" not in names]
    assert len(options) >= 4
    blocks = [b.code for b in parse(README.read_text(encoding="utf-8"))
              if b.lang == "text" and b.code.startswith(f"python -m wskit {command} ")]
    assert len(blocks) == 1, f"one usage block for {command}"
    missing = [names[-1] for names in options if not any(
        re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", blocks[0]) for name in names)]
    assert not missing, f"options of `{command}` missing from the README's usage: {missing}"


def test_app_run_is_documented_with_every_argument() -> None:
    """The README's ``app.run(...)`` names every parameter of ``App.run``, with its default."""
    reference = _api_reference(README.read_text(encoding="utf-8"))
    found = re.search(r"`app\.run\((.*?)\)`", reference)
    assert found is not None
    documented = dict(re.findall(r"(\w+)=([^,]+)", found.group(1)))
    parameters = inspect.signature(wskit.App.run).parameters
    assert set(documented) == set(parameters) - {"self"}
    for name, value in documented.items():
        assert ast.literal_eval(value) == parameters[name].default, name
