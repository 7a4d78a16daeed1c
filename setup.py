"""Builds modeldiff's one optional C module, ``modeldiff._walk._sums`` (see its source).

Everything else is in pyproject.toml. The module only makes weight_diff faster; modeldiff
computes the same numbers without it. So a machine without a C compiler still installs
modeldiff: a failed build is reported and skipped, as markupsafe and simplejson do.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that reports a failure instead of failing the install, unless
    MODELDIFF_REQUIRE_SUMS=1 (CI sets it: there the module must be built)."""

    def run(self) -> None:
        try:
            super().run()  # builds the one extension
        except Exception as e:  # no compiler, no Python headers, ...
            if os.environ.get("MODELDIFF_REQUIRE_SUMS") == "1":
                raise
            print(f"modeldiff: the optional C module was not built ({e}); weight_diff "
                  "computes the same statistics in torch, more slowly", file=sys.stderr)


setup(
    ext_modules=[Extension("modeldiff._walk._sums", ["modeldiff/_walk/_sums.c"],
                           extra_compile_args=["-O3"] if os.name != "nt" else [])],
    cmdclass={"build_ext": OptionalBuildExt},
)
