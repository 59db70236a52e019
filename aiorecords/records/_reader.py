"""Reading LevelDB logs: `RecordsReader`, and `split()` for readers in
parallel."""

from __future__ import annotations

from typing import Any

from .. import _io, _remote
from .._framed_reader import (
    DEFAULT_READ_SIZE,
    REMOTE_READ_SIZE,
    AsyncReadable,
    CorruptionCallback,
    FramedReader,
    Source,
)
from .._limits import DEFAULT_MAX_RECORD_SIZE
from .._skipped import SkippedRegion
from ._log import BLOCK_SIZE, LogDecoder, byte_ranges

__all__ = ["AsyncReadable", "CorruptionCallback", "RecordsReader", "split"]


class RecordsReader(FramedReader):
    """Reads records in the LevelDB log format, as LevelDB's reader does.

    ``source`` is a path, an fsspec URL (``"s3://bucket/events.log"``,
    ``"https://..."``, ``"memory://..."``; with ``storage_options`` for its
    file system), a path on the fsspec file system ``fs``, or an async file
    object with ``read(n)``, ``seek(offset)`` and ``tell()`` (reading then
    starts at its current position, unless ``start`` is given). An object
    on an asynchronous file system (s3fs, gcsfs, HTTP, ...) is read on the
    event loop, ``remote_read_size`` bytes a request; other file systems are
    read by a worker thread. fsspec is the optional ``aiorecords[fsspec]``.

    A damaged physical record (bad checksum, impossible length, unknown
    type, fragments out of order) is dropped with the rest of its block, as
    LevelDB drops it; each drop is logged on the ``aiorecords`` logger and
    given to ``on_corruption`` as a [`SkippedRegion`][aiorecords.SkippedRegion]. With
    ``strict=True`` the first one raises
    [`CorruptRecordError`][aiorecords.errors.CorruptRecordError] instead. A torn record
    at the end of the file (a writer died while writing it) and zero-filled
    space are not damage: they end the file, silently, as in LevelDB (a
    verifier finds the torn record in
    [`torn_tail`][aiorecords.RecordsReader.torn_tail]).

    ``start`` and ``stop`` restrict the reader to the records whose first
    fragment starts in ``[start, stop)`` (see [`split()`][aiorecords.records.split]);
    [`seek()`][aiorecords.RecordsReader.seek] moves to the first record starting at or
    after an offset.

    The reader reads ``read_size`` bytes at a time (a whole number of
    blocks, one by default) and holds about that, plus the record it is
    assembling (at most ``max_record_size``). Bytes in the page cache are
    read without waiting for the disk, on the event loop; the others by a
    worker thread, as are the bytes of a file object. A larger
    ``read_size`` reads faster (four blocks: about 1.5 times as many 1 KiB
    records a second from the page cache) for that much more memory.
    """

    _kind = "RecordsReader"

    def __init__(
        self,
        source: Source,
        *,
        start: int | None = None,
        stop: int | None = None,
        strict: bool = False,
        on_corruption: CorruptionCallback | None = None,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        read_size: int = DEFAULT_READ_SIZE,
        storage_options: dict[str, Any] | None = None,
        fs: Any = None,
        remote_read_size: int = REMOTE_READ_SIZE,
    ) -> None:
        super().__init__(
            source,
            start=start,
            stop=stop,
            strict=strict,
            on_corruption=on_corruption,
            max_record_size=max_record_size,
            read_size=read_size,
            storage_options=storage_options,
            fs=fs,
            remote_read_size=remote_read_size,
        )

    @property
    def torn_tail(self) -> SkippedRegion | None:
        """Once the reader has reached the end of the file: the record the
        file ends in the middle of, from its first byte to the end, or None.

        LevelDB's reader drops such a record without a report, as this one
        does (its writer died writing it, or is still writing it), so it is
        not given to ``on_corruption``; `aiorecords verify` reports it. A
        reader that stops at ``stop`` before the end, or follows the file,
        never reaches the end, and `seek()` forgets it.
        """
        decoder = self._decoder
        return decoder.torn_tail if isinstance(decoder, LogDecoder) else None

    def _decoder_for(
        self, start: int, stop: int | None, max_record_size: int
    ) -> LogDecoder:
        return LogDecoder(start, stop, max_record_size)


async def split(
    path: _io.PathLike,
    n: int,
    *,
    storage_options: dict[str, Any] | None = None,
    fs: Any = None,
) -> list[tuple[int, int]]:
    """Cut a records file into at most ``n`` byte ranges ``(start, stop)``.

    The ranges cover the file and start on block boundaries. Reading each
    with ``RecordsReader(path, start=start, stop=stop)`` gives every record
    exactly once: a reader yields the records whose first fragment starts in
    its range, reading past ``stop`` only to finish the last one. ``path``
    may be an fsspec URL or a path on ``fs``, as for `RecordsReader`.

    Cancellation: nothing is left open.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    where, on_storage = _remote.locate(path, fs)
    if on_storage:
        remote = await _remote.open_remote(
            str(path), fs=fs, storage_options=storage_options
        )
        try:
            size = remote.size
        finally:
            await remote.close()
    else:
        name = _io.path_of(where)
        if name is None:
            raise TypeError("split() takes a path or a URL")
        size = await _io.offload(_io.file_size, name)
    blocks = -(-size // BLOCK_SIZE)
    return byte_ranges(size, -(-blocks // n) * BLOCK_SIZE)[:n] if size else []
