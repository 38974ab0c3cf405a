"""Shared fixtures: every transport test runs on asyncio and on uvloop, over real loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

IN_CI = os.environ.get("CI") == "true"

# wskit's client reads proxies from the environment as curl does: a proxy set on the machine
# that runs the tests (for apt or pip) would carry every test connection to 127.0.0.1. The
# tests that are about proxies set the variables themselves.
for _name in [name for name in os.environ if name.lower().endswith("_proxy")]:
    del os.environ[_name]

LOOPS = ["asyncio", "uvloop"]


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop") if not IN_CI else __import__("uvloop")
        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(loop_kind: str) -> Callable[..., Any]:
    """``run(coro, timeout=30)`` runs a coroutine to completion on a fresh loop of the kind."""

    def runner(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        loop = new_loop(loop_kind)
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return runner


def require_program(name: str) -> str:
    """Path of an outside program; skips locally when missing, fails in CI (no silent skips)."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but was not found on PATH")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture
def require() -> Callable[[str], str]:
    """The ``require_program`` helper as a fixture, for test folders with their own conftest."""
    return require_program


@pytest.fixture(scope="session")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Real proxies, started once: tinyproxy (HTTP CONNECT) and microsocks (SOCKS5), each
    plain and with credentials (tests/proxies.py). Keys: http, http-auth, socks, socks-auth
    (the SOCKS ones as host:port, to prefix with socks5:// or socks5h://)."""
    from proxies import microsocks, tinyproxy

    tiny, socks = require_program("tinyproxy"), require_program("microsocks")
    folder = tmp_path_factory.mktemp("proxies")
    with contextlib.ExitStack() as stack:
        yield {
            "http": stack.enter_context(tinyproxy(tiny, folder)),
            "http-auth": stack.enter_context(tinyproxy(tiny, folder, auth=True)),
            "socks": stack.enter_context(microsocks(socks)),
            "socks-auth": stack.enter_context(microsocks(socks, auth=True)),
        }


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the tests that type-check a snippet against wskit (same options:
    ``--strict``, an empty config, wskit through MYPYPATH): the first fills it, the others
    reuse its analysis of wskit and the standard library."""
    return tmp_path_factory.mktemp("mypy-cache")
