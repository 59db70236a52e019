"""Shared fixtures and helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aiorecords import _io

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def path(tmp_path: Path) -> str:
    """A path for a new file in a fresh temporary directory."""
    return str(tmp_path / "test.capture")


class IOTrace:
    """Records the I/O layer's primitives as ``(operation, path)`` pairs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, int]] = []

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        self.calls.append((operation, os.path.basename(path), offset, length))

    def operations(self, *names: str) -> list[str]:
        """The operations made, keeping only ``names`` if any are given."""
        return [c[0] for c in self.calls if not names or c[0] in names]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def io_trace():
    """Every I/O primitive run while the test runs."""
    trace = IOTrace()
    _io.add_observer(trace)
    try:
        yield trace
    finally:
        _io.remove_observer(trace)
