"""Archives cut into ranges of entries, from their listing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

from .. import _remote
from .._framed_reader import CorruptionCallback
from .._skipped import SkippedRegion
from ..errors import CorruptArchiveError
from ._archive import Archive
from ._format import ArchiveEntry

__all__ = ["entry_ranges", "plan_entries", "read_entries"]


def entry_ranges(
    entries: list[ArchiveEntry], size: int, target_bytes: int
) -> list[tuple[int, int]]:
    """``[start, stop)`` byte ranges covering an archive of ``size`` bytes,
    cut before an entry once those since the last cut hold ``target_bytes``
    (``entries`` oldest first); an entry belongs to the range its element
    starts in."""
    cuts = [0]
    held = 0
    for entry in entries:
        if held >= target_bytes:
            cuts.append(entry.offset)
            held = 0
        held += entry.end - entry.offset
    cuts.append(max(size, cuts[-1]))
    return list(itertools.pairwise(cuts))


async def _chosen(
    archive: Archive,
    latest_only: bool,
    recover: bool,
    on_corruption: CorruptionCallback | None = None,
) -> list[ArchiveEntry]:
    """Every entry oldest first, or only the newest of each name."""
    entries = list(
        reversed(await archive.contents(recover=recover, on_corruption=on_corruption))
    )
    if not latest_only:
        return entries
    latest = {
        entry.offset for entry in (await archive.latest(recover=recover)).values()
    }
    return [entry for entry in entries if entry.offset in latest]


def _open(path: str, storage_options: dict[str, Any] | None) -> Any:
    if not _remote.is_remote(path):
        return Archive.open(path)
    return Archive.open(path, storage_options=storage_options)


async def plan_entries(
    path: str,
    size: int,
    target_bytes: int,
    latest_only: bool,
    storage_options: dict[str, Any] | None,
) -> list[tuple[int, int]]:
    """The entry ranges of the archive ``path``, from its listing (damaged
    stretches stepped over: the readers of the ranges report them).

    Cancellation: the archive is closed.
    """
    async with _open(path, storage_options) as archive:
        entries = await _chosen(archive, latest_only, recover=True)
    return entry_ranges(entries, size, target_bytes)


async def read_entries(
    path: str,
    start: int,
    stop: int,
    *,
    latest_only: bool,
    storage_options: dict[str, Any] | None,
    strict: bool,
    on_corruption: CorruptionCallback | None,
) -> AsyncIterator[bytes]:
    """The data of each entry whose element starts in ``[start, stop)``,
    oldest first (with ``latest_only``, only entries no newer one of the
    same name replaced, in the whole archive).

    Damage raises with ``strict``; otherwise a damaged stretch of the
    listing, or a damaged entry's payload, in the range is given to
    ``on_corruption`` and stepped over.

    Cancellation: the archive is closed.
    """

    def report(region: SkippedRegion) -> None:
        if on_corruption is not None and start <= region.start < stop:
            on_corruption(region)

    async with _open(path, storage_options) as archive:
        entries = await _chosen(archive, latest_only, not strict, report)
        for entry in entries:
            if not start <= entry.offset < stop:
                continue
            try:
                data = await archive.read_bytes(entry)
            except CorruptArchiveError as error:
                if strict:
                    raise
                report(SkippedRegion(entry.offset, entry.end, error.reason))
                continue
            yield data
