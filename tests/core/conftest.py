"""Core fixtures: each frame speed-up and its pure twin in turn (docs/architecture.md, rule 7)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from wskit.core import frames, masking

IN_CI = os.environ.get("CI", "").lower() == "true"

# The frame functions that have a compiled twin, by the name frames.py selects them under.
FRAME_FUNCTIONS = ("parse_frames", "build_frame", "parse_messages")


def c_frame_function(name: str) -> Callable[..., Any]:
    """The compiled twin of ``frames.<name>_python``; skip without a build, fail in CI."""
    function = getattr(masking.speedups, name, None)
    if function is None:
        message = f"wskit._speedups.{name} is not built (no C compiler when wskit was installed)"
        if IN_CI:
            pytest.fail(f"{message}, but CI=true, where the C build is required")
        pytest.skip(message)
    return function  # type: ignore[no-any-return]


@pytest.fixture(params=["python", "c"])
def frame_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with frames.parse_frames, build_frame and parse_messages from one
    implementation.

    Every caller (FrameParser, encode_frame, Connection) looks them up in ``frames`` at call
    time, so patching the module switches the whole core.
    """
    for name in FRAME_FUNCTIONS:
        if request.param == "c":
            function = c_frame_function(name)
        else:
            function = getattr(frames, f"{name}_python")
        monkeypatch.setattr(frames, name, function)
    return str(request.param)


@pytest.fixture(scope="module")
def c_parse() -> Callable[..., Any]:
    """The compiled parse_frames (tests/core/test_speedups.py compares it with the pure one)."""
    return c_frame_function("parse_frames")


@pytest.fixture(scope="module")
def c_messages() -> Callable[..., Any]:
    """The compiled parse_messages."""
    return c_frame_function("parse_messages")


@pytest.fixture(scope="module")
def c_build() -> Callable[..., Any]:
    """The compiled build_frame."""
    return c_frame_function("build_frame")
