"""The compiled per-record kernels, when they are there.

``aiorecords._speedups`` is built by ``pip install`` where a C compiler is
found, and is optional: without it (no compiler, an unusual platform, or
``AIORECORDS_NO_EXTENSIONS=1`` in the environment, which makes its import
fail) every format runs its pure-Python kernels. Those are the reference:
each compiled kernel does exactly what its Python twin in the format's core
does, and the tests compare the two on random and damaged input.

Each core picks its kernels once, at import, from `compiled`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Final

__all__ = [
    "KERNELS",
    "UNLIMITED",
    "compiled",
    "fast_take_records",
    "frame_each",
    "record_bytes",
    "take_records",
]

#: No stop, no byte budget, no size limit: past any offset or size, and
#: still a 64-bit signed integer, as the kernels take them.
UNLIMITED: Final = 1 << 62

#: Every kernel the cores call. A module without one of them is an older
#: build (an editable install whose C file changed since it was built) and
#: is not used: the reference code runs, with a warning saying how to
#: rebuild, rather than the import failing.
KERNELS: Final = (
    "archive_elements",
    "archive_frame",
    "capture_add",
    "capture_items",
    "crc32c",
    "log_encode",
    "log_full_records",
    "take_records",
    "tf_frame",
    "tf_good_records",
)

compiled: ModuleType | None
try:
    import aiorecords._speedups as compiled
except ImportError:
    compiled = None
else:
    missing = [name for name in KERNELS if not hasattr(compiled, name)]
    if missing:
        where = getattr(compiled, "__file__", "?")
        warnings.warn(
            f"aiorecords._speedups at {where} is an older build "
            f"(it lacks {', '.join(missing)}); the pure-Python code is used. "
            "Rebuild it with: pip install -e .",
            RuntimeWarning,
            stacklevel=1,
        )
        compiled = None


def record_bytes(
    data: bytes | bytearray | memoryview | str,
) -> bytes | bytearray | memoryview:
    """A record as bytes (``str`` as UTF-8), as the compiled kernels take it."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise TypeError(f"a record is bytes or str, not {type(data).__name__}")


def frame_each(
    frame: Callable[[bytes | bytearray | memoryview, bytearray], object],
    records: Sequence[bytes | bytearray | memoryview | str],
    start: int,
    stop: int,
    out: bytearray,
    max_bytes: int,
) -> int:
    """``records[start:stop]`` framed one at a time by ``frame`` until
    ``out`` has grown by ``max_bytes``; the index reached. A record that is
    neither bytes nor str raises `TypeError` after those before it are
    framed, as one write() at a time would. (The framing kernels' reference
    loop; they also take back what the call framed on an error.)"""
    stop = min(stop, len(records))
    if not 0 <= start <= stop:
        raise ValueError("start outside the records")
    size = len(out)
    index = start
    while index < stop and len(out) - size < max_bytes:
        frame(record_bytes(records[index]), out)
        index += 1
    return index


def take_records(
    pending: list[Any], index: int, max_bytes: int, out: list[bytes]
) -> tuple[int, int]:
    """The reference of the compiled ``take_records`` kernel: the data of
    the decoded records ``pending[index:]`` (``(data, start, end)`` tuples)
    appended to ``out`` until one that is not a record (a region dropped) or
    until they reach ``max_bytes``; ``(index reached, bytes taken)``."""
    size = 0
    append = out.append
    stop = len(pending)
    while index < stop:
        item = pending[index]
        if type(item) is not tuple:
            break
        data = item[0]
        append(data)
        size += len(data)
        index += 1
        if size >= max_bytes:
            break
    return index, size


fast_take_records = compiled.take_records if compiled else take_records
