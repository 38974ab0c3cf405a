"""The package as users get it: ``python -m build`` makes an sdist and a wheel; each installs
into a fresh virtual environment and passes a smoke test there, with the C speed-ups, and
built from the sdist with no C compiler (CC=/bin/false), without them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import wskit

ROOT = Path(__file__).resolve().parent.parent

# Run in the fresh environment, from a directory without the checkout: import, the speed-ups
# as expected, a server and a client doing one round trip, the console script's entry point.
SMOKE = r"""
import asyncio, sys
import wskit
from wskit.core import masking

want_speedups = sys.argv[1] == "yes"
assert masking.HAS_SPEEDUPS is want_speedups, masking.HAS_SPEEDUPS
assert "site-packages" in wskit.__file__, wskit.__file__

async def main():
    app = wskit.App()

    @app.websocket("echo")
    def echo(req, ws):
        ws.on_text(lambda ws, text: ws.send(text[::-1]))

    await app.start("127.0.0.1", 0)
    try:
        async with wskit.connect(f"ws://127.0.0.1:{app.port}/echo") as ws:
            ws.send("packaged")
            assert await ws.receive() == "degakcap"
    finally:
        await app.shutdown()

asyncio.run(main())
print("smoke ok", wskit.__version__, "speedups" if want_speedups else "pure Python")
"""


def _run(args: list[str], *, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run outside the checkout's environment (no PYTHONPATH, no active venv)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean.update(env or {})
    done = subprocess.run(args, capture_output=True, text=True, env=clean, cwd=cwd,
                          timeout=240, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(path)])
    return path / "bin" / "python"


@pytest.mark.slow
def test_build_install_and_smoke(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # sdist first, then the wheel built from the sdist: a file missing from the sdist fails here.
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
    (sdist,) = dist.glob("wskit-*.tar.gz")
    (wheel,) = dist.glob("wskit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wskit/py.typed" in names and "wskit/static/index.html" in names
    assert any(n.startswith("wskit/_speedups") and n.endswith(".so") for n in names)
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta
    assert "Project-URL: Source" in meta and "Classifier: Typing :: Typed" in meta
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    python = _venv(tmp_path / "with-c")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    done = _run([str(python), "-c", SMOKE, "yes"], cwd=tmp_path)
    assert "smoke ok" in done.stdout
    script = python.parent / "wskit"
    assert "serve" in _run([str(script), "--help"], cwd=tmp_path).stdout
    version = _run([str(python), "-m", "wskit", "--version"], cwd=tmp_path).stdout
    assert version.strip() == f"wskit {wskit.__version__}"

    # No compiler: the build of the extension fails and the install goes on in pure Python.
    python = _venv(tmp_path / "no-c")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(sdist)],
         env={"CC": "/bin/false"})
    done = _run([str(python), "-c", SMOKE, "no"], cwd=tmp_path)
    assert "pure Python" in done.stdout
