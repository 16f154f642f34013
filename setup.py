"""The one compiled part of procmagic: the SysV queue's push/pop in C (procmagic/core/_queue_fast.c).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no C
compiler, no Python headers) setuptools says so and installs the rest, and procmagic uses its
pure-Python queue path (the same behaviour, a little slower; see docs/performance.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "procmagic.core._queue_fast",
            sources=["procmagic/core/_queue_fast.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        ),
    ],
)
