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
    """The supported versions found on PATH or under pyenv (which is put on PATH)."""
    found = []
    for version in SUPPORTED:
        if shutil.which(f"python{version}") is None:
            pattern = os.path.expanduser(
                f"~/.pyenv/versions/{version}.*/bin/python{version}"
            )
            candidates = sorted(glob.glob(pattern))
            if not candidates:
                continue
            os.environ["PATH"] = (
                os.path.dirname(candidates[-1]) + os.pathsep + os.environ["PATH"]
            )
        found.append(version)
    return found


@nox.session(python=installed_pythons())
def tests(session: nox.Session) -> None:
    """The test suite (arguments go to pytest)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".", "mypy")
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
