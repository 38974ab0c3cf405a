"""Fixtures of the hub tests: real redis-server processes (missing in CI: the test fails)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .redis_servers import RedisCluster, RedisServer


def require_program(name: str) -> str:
    """Path of ``name``; skips locally when it is missing, fails in CI (CI=true)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but was not found on PATH")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the tests that do not stop it (each test uses its own topics)."""
    server = RedisServer(require_program("redis-server")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone, which it may kill and start again."""
    server = RedisServer(require_program("redis-server")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster(require_program("redis-server"), require_program("redis-cli"))
    try:
        yield cluster.start()
    finally:
        cluster.close()
