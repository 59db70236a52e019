"""The ``aiorecords`` console script, which needs the ``cli`` extra.

The command line is built on click and rich, which the library itself does
not need; they come with ``pip install "aiorecords[cli]"``. Without them the
script says so in one line instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["main"]

_NEEDED = ("click", "rich")


def main(argv: list[str] | None = None) -> None:
    """Run the command line, or say which extra it needs."""
    missing = [name for name in _NEEDED if not _importable(name)]
    if missing:
        sys.stderr.write(
            f"aiorecords: the command line needs {' and '.join(missing)}, which "
            "come with its extra: pip install 'aiorecords[cli]'\n"
        )
        sys.exit(2)
    from ._cli import main as run

    run(argv)


def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None
