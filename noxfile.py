"""Development sessions: ``nox`` runs tests on every installed Python from 3.10
to 3.13, lint, types and docs; ``nox -s tests-3.12`` runs one of them."""

from __future__ import annotations

import glob
import os
import shutil

import nox

nox.options.sessions = ["tests", "lint", "types", "docs"]
nox.options.reuse_existing_virtualenvs = True

SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


def installed_pythons() -> list[str]:
    """The supported versions installed here.

    pyenv's versions are put first on PATH: its shims answer to every
    ``pythonX.Y`` but run only the versions its configuration selects.
    """
    found = []
    for version in SUPPORTED:
        pattern = os.path.expanduser(
            f"~/.pyenv/versions/{version}.*/bin/python{version}"
        )
        candidates = sorted(glob.glob(pattern))
        if candidates:
            directory = os.path.dirname(candidates[-1])
            os.environ["PATH"] = directory + os.pathsep + os.environ["PATH"]
            found.append(version)
        elif shutil.which(f"python{version}") is not None:
            found.append(version)
    return found


@nox.session(python=installed_pythons())
def tests(session: nox.Session) -> None:
    """The test suite (arguments go to pytest)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=installed_pythons())
def tests_pure(session: nox.Session) -> None:
    """The suite on the pure-Python reference code (the compiled kernels
    turned off), as the second half of CI runs it."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        *session.posargs,
        env={"AIORECORDS_NO_EXTENSIONS": "1"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[cli,dask]", "mypy")
    session.run("mypy", "--strict", "aiorecords")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        os.path.join(session.create_tmp(), "site"),
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks (slow; arguments go to bench/capture.py)."""
    session.install("-e", ".[test]")
    session.run("python", "bench/capture.py", *session.posargs)


@nox.session
def reliability(session: nox.Session) -> None:
    """The reliability suites at their large sizes (tests/reliability; slow):
    10,000 reorderings, 2,000 kills, 50,000 bit flips per format and more."""
    session.install("-e", ".[test]")
    session.env["AIORECORDS_RELIABILITY"] = "large"
    session.run("python", "-m", "pytest", "tests/reliability", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """atheris on each reader; ``nox -s fuzz -- 600`` fuzzes each for ten
    minutes (default one minute)."""
    session.install("-e", ".[test,fuzz]")
    seconds = session.posargs[0] if session.posargs else "60"
    for fmt in ("records", "archive", "capture"):
        session.run(
            "python",
            "tests/reliability/fuzz_readers.py",
            fmt,
            f"-max_total_time={seconds}",
            "-rss_limit_mb=2048",
        )
