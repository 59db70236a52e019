"""Every Python sample in the README and the docs runs as written.

A sample is either a whole program (it calls ``asyncio.run`` or
``anyio.run``) or a fragment
written as at an asyncio REPL, with ``await`` at the top level; fragments run
in order within their page, in one directory, so a later one can read what
an earlier one wrote. ``console`` samples of the command line are run by
``tests/test_cli_docs.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def whole_program(code: str) -> bool:
    return "asyncio.run(" in code or "anyio.run(" in code


def programs() -> list[tuple[str, str]]:
    """Python blocks that are whole programs (they start an event loop)."""
    found = []
    for page in PAGES:
        for number, code in enumerate(
            re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        ):
            if whole_program(code):
                found.append((f"{page.relative_to(ROOT)}#{number}", code))
    return found


def fragments() -> list[tuple[str, list[str]]]:
    """Per page, its Python blocks that are not whole programs."""
    found = []
    for page in PAGES:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        pieces = [code for code in blocks if not whole_program(code)]
        if pieces:
            found.append((str(page.relative_to(ROOT)), pieces))
    return found


# Runs fragments as the asyncio REPL does: top-level await allowed.
RUNNER = """
import ast, asyncio, sys

async def main():
    namespace = {"__name__": "__main__"}
    for path in sys.argv[1:]:
        code = compile(open(path).read(), path, "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if result is not None:
            await result

asyncio.run(main())
"""


@pytest.mark.parametrize(("page", "pieces"), fragments(), ids=lambda v: str(v)[:40])
def test_fragments_run(page: str, pieces: list[str], tmp_path: Path) -> None:
    paths = []
    for number, code in enumerate(pieces):
        path = tmp_path / f"fragment{number}.py"
        path.write_text(code)
        paths.append(str(path))
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *paths],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{page}:\n{done.stderr}"


@pytest.mark.parametrize(
    ("where", "code"), programs(), ids=lambda value: value if "#" in str(value) else ""
)
def test_program_runs(where: str, code: str, tmp_path: Path) -> None:
    """Each program runs, and runs again in the same directory, as a user
    trying it would (issue 14: the README's log example lost its first
    run's records when run twice)."""
    script = tmp_path / "program.py"
    script.write_text(code)
    for run in ("first", "second"):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{where}, {run} run:\n{done.stderr}"


def test_there_are_programs_to_run() -> None:
    assert len(programs()) >= 2
