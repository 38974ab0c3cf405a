"""Fixtures of the conformance suite: ``play`` runs one scenario against a wskit endpoint.

Every case runs through the shared ``run`` fixture (a fresh loop per case). The big tables
run on asyncio only, with a sample of their cases on uvloop too (see ``tables.cases``), to
keep the whole suite well under a minute and a half on two cores.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from wskit.core import connection, frames, masking

from .peer import ROLES, Peer, open_peer

Scenario = Callable[[Peer], Awaitable[None]]


@pytest.fixture(autouse=True)
def _pure_python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases whose id ends in ``-pure`` run on the pure-Python twins of the compiled frame
    functions and masking (the core looks them up in its modules at call time)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or not callspec.id.endswith("-pure"):
        return
    for name in ("parse_frames", "build_frame", "build_masked_frame"):
        monkeypatch.setattr(frames, name, getattr(frames, f"{name}_python"))
    monkeypatch.setattr(frames, "generate_mask", masking.generate_mask_python)
    for module in (masking, frames, connection):
        if hasattr(module, "apply_mask"):
            monkeypatch.setattr(module, "apply_mask", masking.apply_mask_python)


@pytest.fixture(autouse=True)
def _quiet_wskit(caplog: pytest.LogCaptureFixture) -> None:
    # Failing connections is the point of these cases; wskit's warnings would only be noise.
    caplog.set_level(logging.CRITICAL, logger="wskit")


@pytest.fixture
def play(run: Callable[..., Any]) -> Callable[..., None]:
    """``play(role, scenario, **options)``: connect a raw peer to a wskit echo endpoint of
    that role (``options`` go to ``open_peer``) and run ``await scenario(peer)``."""

    def player(role: str, scenario: Scenario, *, timeout: float = 20.0, **options: Any) -> None:
        async def main() -> None:
            async with open_peer(role, **options) as peer:
                await scenario(peer)

        run(main(), timeout)

    return player


@pytest.fixture(params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    """The role wskit plays, for tests that are not table-driven."""
    return str(request.param)
