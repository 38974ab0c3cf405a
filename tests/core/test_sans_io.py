"""The core is sans-I/O: no module under ``src/wskit/core/`` touches the event loop or the OS."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import wskit.core

CORE = Path(wskit.core.__file__).parent
SRC = CORE.parent.parent

#: docs/architecture.md, rule 1: no event loop, sockets, clocks, threads or TLS in the core.
FORBIDDEN = frozenset({"asyncio", "socket", "time", "threading", "selectors", "ssl"})
#: Their C halves and close relatives, which would be the same thing by another name.
FORBIDDEN_LOW = frozenset({"_asyncio", "_socket", "_thread", "_ssl", "select", "uvloop"})


def core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no modules found under {CORE}"
    return files


def forbidden_imports(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Every (line, module) where ``source`` imports a forbidden module, however it is spelt."""
    found = []
    banned = FORBIDDEN | FORBIDDEN_LOW
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names = [node.module]
        elif isinstance(node, ast.Call):
            # __import__("asyncio") and importlib.import_module("asyncio").
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names = [arg.value]
        found += [(getattr(node, "lineno", 0), n) for n in names if n.split(".")[0] in banned]
    return found


class TestStaticImports:
    """docs/architecture.md rule 1 (the sans-I/O rule behind RFC 6455 §1.3): read by ``ast``."""

    @pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
    def test_module_imports_no_io(self, path: Path) -> None:
        assert forbidden_imports(path.read_text(encoding="utf-8"), str(path)) == []

    def test_the_modules_of_this_issue_are_checked(self) -> None:
        names = {p.name for p in core_files()}
        assert {"frames.py", "connection.py", "masking.py", "errors.py"} <= names

    @pytest.mark.parametrize(
        "source",
        [
            "import asyncio",
            "import socket as s",
            "import os, time",
            "from threading import Lock",
            "from asyncio.events import AbstractEventLoop",
            "import selectors",
            "from ssl import SSLContext",
            "import _thread",
            "def f():\n    import time\n",
            "try:\n    import uvloop\nexcept ImportError:\n    pass\n",
            "x = __import__('socket')",
            "import importlib\nm = importlib.import_module('asyncio.tasks')",
        ],
    )
    def test_the_checker_catches_every_spelling(self, source: str) -> None:
        assert forbidden_imports(source) != []

    @pytest.mark.parametrize(
        "source",
        [
            "import secrets",
            "from .frames import Frame",
            "import codecs",
            "from . import time_utils",
        ],
    )
    def test_the_checker_allows_the_rest(self, source: str) -> None:
        assert forbidden_imports(source) == []


_PROBE = r"""
import importlib, json, pkgutil, sys, types

src = sys.argv[1]
# Import wskit.core without running wskit/__init__.py, which loads the asyncio layer on purpose.
pkg = types.ModuleType("wskit")
pkg.__path__ = [src + "/wskit"]
sys.modules["wskit"] = pkg
before = set(sys.modules)
import wskit.core
loaded = []
for info in pkgutil.walk_packages(wskit.core.__path__, "wskit.core."):
    importlib.import_module(info.name)
    loaded.append(info.name)
print(json.dumps({"before": sorted(before), "after": sorted(sys.modules), "loaded": loaded}))
"""


class TestRuntimeImports:
    """docs/architecture.md rule 1: importing every core module in a fresh process loads no I/O."""

    def test_importing_the_core_loads_no_io_module(self) -> None:
        result = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE, str(SRC)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        before, after = set(report["before"]), set(report["after"])
        assert {"wskit.core.frames", "wskit.core.connection", "wskit.core.masking"} <= set(
            report["loaded"]
        )
        # Nothing of the I/O layer may appear, even indirectly through the standard library.
        assert "asyncio" not in after
        assert "socket" not in after
        new = {m.split(".")[0] for m in after - before}
        assert not new & (FORBIDDEN | FORBIDDEN_LOW), sorted(new & (FORBIDDEN | FORBIDDEN_LOW))
        assert not any(
            m.startswith("wskit.")
            and not m.startswith(("wskit.core", "wskit._speedups", "wskit._httpparse"))
            for m in after
        ), sorted(after)
