"""Capture files cut into ranges of record numbers, from the index alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import _remote
from ..errors import FileChangedError
from ._file import CaptureFile
from ._opened import read_commit

__all__ = ["open_to_read", "plan_numbers", "read_numbers", "record_ranges"]


def open_to_read(path: str, storage_options: dict[str, Any] | None) -> CaptureFile:
    """A capture file at a path or URL, to read records as bytes."""
    if not _remote.is_remote(path):
        return CaptureFile(path, encoding=None)
    return CaptureFile(path, encoding=None, storage_options=storage_options)


def record_ranges(count: int, size: int, target_bytes: int) -> list[tuple[int, int]]:
    """``[first, stop)`` ranges of record numbers (from 1) covering ``count``
    records, each about ``target_bytes`` of a file of ``size`` bytes (at
    least one record); one empty range for an empty file."""
    if count == 0:
        return [(1, 1)]
    per_range = max(1, count * target_bytes // max(size, 1))
    return [
        (first, min(first + per_range, count + 1))
        for first in range(1, count + 1, per_range)
    ]


async def plan_numbers(
    path: str, size: int, target_bytes: int, storage_options: dict[str, Any] | None
) -> list[tuple[int, int]]:
    """The record ranges of the capture file ``path`` (its committed records,
    counted from its master node and index: no record is read), sized by
    the bytes its commit uses (a capture file is preallocated past them).

    Cancellation: the file is closed.
    """
    storage = (None, storage_options) if _remote.is_remote(path) else None
    _, commit = await read_commit(path, storage)
    used = min(size, commit.file_limit) or size
    async with open_to_read(path, storage_options) as capture:
        return record_ranges(capture.record_count(), used, target_bytes)


async def read_numbers(
    path: str, first: int, stop: int, *, storage_options: dict[str, Any] | None
) -> AsyncIterator[bytes]:
    """Records ``first`` to ``stop - 1`` of the capture file ``path``.

    Cancellation: the file is closed.
    """
    async with open_to_read(path, storage_options) as capture:
        if capture.record_count() < stop - 1:
            raise FileChangedError(
                f"holds {capture.record_count()} records, not the {stop - 1} "
                "or more planned",
                path=path,
                change="truncated",
            )
        if first >= stop:
            return
        number = first
        async for record in capture.record_generator(first):
            yield record  # type: ignore[misc]  # bytes: encoding=None
            number += 1
            if number >= stop:
                break
