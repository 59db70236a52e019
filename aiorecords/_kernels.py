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

from types import ModuleType
from typing import Any

__all__ = ["compiled", "fast_take_records", "record_bytes", "take_records"]

compiled: ModuleType | None
try:
    import aiorecords._speedups as compiled
except ImportError:
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
