"""The optional compiled kernels (the rest of the build is pyproject.toml).

``optional=True``: where no C compiler (or no Python headers) is found the
extension is skipped with a warning and the package installs as pure
Python; aiorecords then runs its reference code.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "aiorecords._speedups",
            sources=["aiorecords/_speedups.c"],
            optional=True,
        )
    ]
)
