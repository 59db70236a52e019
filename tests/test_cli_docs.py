"""The command lines shown in the README and the docs run as written: the
session of docs/cli.md, and on every other page each ``aiorecords`` line of
its console blocks, after the page's Python programs (which make the files
they use)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def session() -> list[str]:
    page = (ROOT / "docs" / "cli.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", page, re.S)
    return [line[2:] for line in blocks[0].splitlines() if line.startswith("$ ")]


def test_the_documented_session_runs(tmp_path: Path) -> None:
    commands = session()
    assert len(commands) >= 10
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_directory = os.path.dirname(sys.executable)
    environment = {
        **os.environ,
        "PATH": bin_directory + os.pathsep + os.environ["PATH"],
    }
    for command in commands:
        done = subprocess.run(
            command.replace("python ", f"{sys.executable} ", 1),
            shell=True,
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stderr.decode()}"
        assert done.stdout or done.stderr, command  # each says what it did
        assert b"Traceback" not in done.stderr
    assert (tmp_path / "out" / "00000001").read_bytes().startswith(b'{"id": 1')


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def pages_with_commands() -> list[tuple[Path, list[str]]]:
    found = []
    for page in PAGES:
        if page.name == "cli.md":
            continue
        text = page.read_text()
        commands = [
            line.split("  #")[0].strip()
            for block in re.findall(r"```console\n(.*?)```", text, re.S)
            for line in block.splitlines()
            if line.startswith("aiorecords ")
        ]
        if commands:
            found.append((page, commands))
    return found


@pytest.mark.parametrize(
    ("page", "commands"), pages_with_commands(), ids=lambda v: getattr(v, "name", "")
)
def test_the_commands_on_each_page_run(
    page: Path, commands: list[str], tmp_path: Path
) -> None:
    text = page.read_text()
    for code in re.findall(r"```python\n(.*?)```", text, re.S):
        if "asyncio.run(" in code or "anyio.run(" in code:
            script = tmp_path / "program.py"
            script.write_text(code)
            subprocess.run(
                [sys.executable, str(script)],
                cwd=tmp_path,
                check=True,
                timeout=120,
                capture_output=True,
            )
    bin_directory = os.path.dirname(sys.executable)
    environment = {
        **os.environ,
        "PATH": bin_directory + os.pathsep + os.environ["PATH"],
    }
    for command in commands:
        done = subprocess.run(
            command,
            shell=True,
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{page.name}: {command}: {done.stderr.decode()}"
