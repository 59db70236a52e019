"""LevelDB logs cut into byte ranges for readers in parallel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .._skipped import SkippedRegion
from ._reader import CorruptionCallback, RecordsReader

__all__ = ["read_range"]


async def read_range(
    path: str,
    start: int,
    stop: int,
    *,
    storage_options: dict[str, Any] | None,
    strict: bool,
    on_corruption: CorruptionCallback | None,
) -> AsyncIterator[bytes]:
    """The records whose first fragment starts in ``[start, stop)`` (LevelDB's
    initial offset: the reader resyncs at the first record starting there).

    A dropped region is given to ``on_corruption`` by the range it starts
    in: the reader of the range before also meets it, finishing its last
    record past ``stop``. Fragments at the start of a range whose record
    began before it are skipped without a report, as LevelDB's reader skips
    them at an initial offset (if that record was lost, the reader of the
    range before reports why).

    Cancellation: the reader is closed.
    """

    def report(region: SkippedRegion) -> None:
        if on_corruption is not None and start <= region.start < stop:
            on_corruption(region)

    reader = RecordsReader(
        path,
        start=start,
        stop=stop,
        strict=strict,
        on_corruption=report,
        storage_options=storage_options,
    )
    async with reader:
        async for record in reader:
            yield record
