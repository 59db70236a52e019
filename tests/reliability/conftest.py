"""The reliability suites report what they ran at the end of the test run."""

from __future__ import annotations

import os

import pytest

#: Counts the suites add to: ``COUNTS["crash states, capture"] += n``.
COUNTS: dict[str, int] = {}


def count(what: str, n: int = 1) -> None:
    """Add ``n`` to the count of ``what`` (shown in the summary)."""
    COUNTS[what] = COUNTS.get(what, 0) + n


def scale(ci: int, large: int) -> int:
    """``large`` under ``AIORECORDS_RELIABILITY=large`` (the nox session
    ``reliability``), else ``ci``."""
    return large if os.environ.get("AIORECORDS_RELIABILITY") == "large" else ci


def trials(ci: int, large: int) -> int:
    """`scale()` of a count of random trials, halved under
    ``AIORECORDS_RELIABILITY=half``: CI's second run of the whole suite (on
    the pure-Python code, beside the first) takes the longest suites at
    half their trials, so that both runs fit CI's time."""
    if os.environ.get("AIORECORDS_RELIABILITY") == "half":
        return ci // 2
    return scale(ci, large)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section("reliability counts")
    for what in sorted(COUNTS):
        terminalreporter.write_line(f"{what}: {COUNTS[what]:,}")
