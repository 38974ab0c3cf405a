"""Build the optional C speed-ups; fall back to pure Python when no compiler is present."""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A build_ext that never fails the install: the speed-ups are optional."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "pure Python"
            print(f"wskit: C speed-ups not built ({exc}); using pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"wskit: C speed-up {ext.name} not built ({exc}); using pure Python")


ext_modules = []
if os.environ.get("WSKIT_NO_EXTENSIONS") != "1":
    # _httpparse (the server's one-step head parse) is a module apart from _speedups.
    for name in ("_speedups", "_httpparse"):
        if os.path.exists(f"src/wskit/{name}.c"):
            ext_modules.append(
                Extension(f"wskit.{name}", [f"src/wskit/{name}.c"], extra_compile_args=["-O3"])
            )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
