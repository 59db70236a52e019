"""TFRecord files cut by their index, or read whole."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from typing import Any, Final

from .. import _formats, _io, _remote
from .._framed_reader import CorruptionCallback
from .._skipped import SkippedRegion
from ..errors import CorruptionError, StorageError
from ._frame import compression_of_head, starts_with_header
from ._index import IndexCuts, index_path_of
from ._reader import TFRecordReader
from ._stream import Compression

__all__ = ["compression_of_file", "plan_tfrecord", "read_tfrecord"]

#: Bytes of an index read at a time.
_INDEX_PIECE: Final = 1024 * 1024


async def compression_of_file(
    path: str, storage_options: dict[str, Any] | None
) -> Compression | None:
    """The compression of the TFRecord file ``path``, told by its first
    bytes (None: stored as it is, or not a TFRecord file).

    Cancellation: nothing is left open.
    """
    head = await _formats.head(path, _formats.HEAD_SIZE, storage_options)
    if starts_with_header(head):
        return None
    return compression_of_head(head)  # type: ignore[return-value]


def _cut_local(path: str, cuts: IndexCuts) -> bool:
    """Feed the local index ``path`` to ``cuts``; False if there is none."""
    try:
        io = _io.open_file(path, writable=False)
    except FileNotFoundError:
        return False
    try:
        offset = 0
        while cuts.valid and (data := io.pread(offset, _INDEX_PIECE)):
            cuts.feed(data)
            offset += len(data)
    finally:
        io.close()
    return True


async def _cut_remote(
    url: str, cuts: IndexCuts, storage_options: dict[str, Any] | None
) -> bool:
    try:
        remote = await _remote.open_remote(url, storage_options=storage_options)
    except StorageError as error:
        if error.errno == errno.ENOENT:
            return False
        raise
    offset = 0
    while cuts.valid and offset < remote.size:
        data = await remote.read(offset, _INDEX_PIECE)
        cuts.feed(data)
        offset += len(data)
    await remote.close()
    return True


async def plan_tfrecord(
    path: str, size: int, target_bytes: int, storage_options: dict[str, Any] | None
) -> list[tuple[int, int]]:
    """Byte ranges of the TFRecord file ``path``: cut before records its
    ``.tfindex`` lists, about ``target_bytes`` apart; the whole file if it
    has no index that describes it (missing, damaged, or another file's) or
    is compressed.

    Cancellation: nothing is left open.
    """
    whole = [(0, size)]
    if size == 0 or await compression_of_file(path, storage_options) is not None:
        return whole
    index = index_path_of(path)
    cuts = IndexCuts(target_bytes)
    if _remote.is_remote(path):
        found = await _cut_remote(index, cuts, storage_options)
    else:
        found = await _io.offload(_cut_local, _remote.local_path(index) or index, cuts)
    return (cuts.ranges(size) if found else None) or whole


async def read_tfrecord(
    path: str,
    start: int,
    stop: int,
    *,
    storage_options: dict[str, Any] | None,
    strict: bool,
    on_corruption: CorruptionCallback | None,
) -> AsyncIterator[bytes]:
    """The records whose header starts in ``[start, stop)`` (a compressed
    file: all of them). Damage ends the range: the region reported ends at
    ``stop``, where the next range's reader goes on (its start is a record's,
    from the index).

    Cancellation: the reader is closed.
    """

    damaged = False

    def report(region: SkippedRegion) -> None:
        nonlocal damaged
        damaged = True
        if on_corruption is not None:
            on_corruption(
                SkippedRegion(region.start, min(region.end, stop), region.reason)
            )

    compression = await compression_of_file(path, storage_options)
    reader = TFRecordReader(
        path,
        compression=compression,
        start=start if compression is None else None,
        stop=stop if compression is None else None,
        strict=strict,
        on_corruption=report if compression is None else on_corruption,
        storage_options=storage_options,
    )
    async with reader:
        async for record in reader:
            yield record
        if compression is None and not damaged and await reader.tell() != stop:
            # The records did not end where the next range starts: the index
            # lists an offset inside a record (another file's index, with the
            # same size; or a forged one). The next range would read from
            # the middle of a record, so the split is refused, not guessed.
            raise CorruptionError(
                f"lists a record at offset {stop} of {path!r}, where none "
                f"starts (a record runs from before it to offset "
                f"{await reader.tell()}): it is not this file's index; remove "
                "it or write it again",
                path=index_path_of(path),
                offset=stop,
            )
