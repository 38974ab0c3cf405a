"""Case tables shared by the conformance modules, and the helper that turns them into params."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from .peer import ROLES

__all__ = ["CASE_ARGS", "cases"]

#: The argument names of a table-driven conformance test.
CASE_ARGS = "role, case, loop_kind"


#: Every how many cases of a table one also runs on the pure-Python frame functions.
PURE_EVERY = 5


def cases(table: Iterable[tuple[str, Any]], *, roles: Sequence[str] = ROLES,
          uvloop_every: int = 8) -> list[Any]:
    """pytest params ``(role, case, loop_kind)`` with ids ``<role>-<case id>[-uvloop|-pure]``.

    Every case runs on asyncio, with the compiled frame functions when they are built, for
    every role it applies to; every ``uvloop_every``-th case (0: none) also runs on uvloop, and
    every ``PURE_EVERY``-th (from the third) also with the pure-Python twins of the compiled
    functions (``-pure``, see conftest.py; docs/architecture.md, rule 7).
    """
    params = []
    for i, (case_id, case) in enumerate(table):
        for role in roles:
            params.append(pytest.param(role, case, "asyncio", id=f"{role}-{case_id}"))
            if uvloop_every and i % uvloop_every == 0:
                params.append(pytest.param(role, case, "uvloop", id=f"{role}-{case_id}-uvloop"))
            if i % PURE_EVERY == 2:
                params.append(pytest.param(role, case, "asyncio", id=f"{role}-{case_id}-pure"))
    return params
