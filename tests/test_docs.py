"""The complete programs in the README and the docs run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def programs() -> list[tuple[str, str]]:
    """Python blocks that are whole programs (they call asyncio.run)."""
    found = []
    for page in PAGES:
        for number, code in enumerate(
            re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        ):
            if "asyncio.run(" in code:
                found.append((f"{page.relative_to(ROOT)}#{number}", code))
    return found


@pytest.mark.parametrize(
    ("where", "code"), programs(), ids=lambda value: value if "#" in str(value) else ""
)
def test_program_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where}:\n{done.stderr}"


def test_there_are_programs_to_run() -> None:
    assert len(programs()) >= 2
