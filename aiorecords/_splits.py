"""One split contract for every format: files cut into pieces that readers
anywhere (a Dask worker, another process, another machine) read apart, and
whose records, piece after piece, are those of one full read.

A `Split` names its file, its format, the file's identity when it was
planned and its range: bytes for a LevelDB log and a TFRecord file (a
reader resyncs at the first record starting in the range), record numbers
for a capture file, bytes of element offsets for an archive. Reading a
split checks the identity at its end: a file that changed meanwhile raises
`FileChangedError` rather than end as if its records were those planned.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Final

from . import _bridge, _formats, _io, _remote
from ._formats import Format
from ._framed_reader import CorruptionCallback
from .archive._splits import plan_entries, read_entries
from .capture._splits import plan_numbers, read_numbers
from .errors import FileChangedError
from .records._log import byte_ranges
from .records._splits import read_range
from .tfrecord._index import INDEX_SUFFIX
from .tfrecord._splits import plan_tfrecord, read_tfrecord

__all__ = [
    "DEFAULT_TARGET_BYTES",
    "Split",
    "aplan_splits",
    "aread_split",
    "plan_splits",
    "read_split",
]

#: Bytes of file a split covers, by default.
DEFAULT_TARGET_BYTES: Final = 64 * 1024 * 1024
#: Files looked at at once while planning (each costs a few requests on
#: object storage).
_PLANNING_AT_ONCE: Final = 16


@dataclasses.dataclass(frozen=True)
class Split:
    """A piece of one file, to be read on its own with
    [`read_split()`][aiorecords.read_split] or
    [`aread_split()`][aiorecords.aread_split]: small, frozen and picklable.

    The range's unit depends on the format: byte offsets for ``"records"``
    (LevelDB logs: the records whose first fragment starts in
    ``[start, stop)``) and ``"tfrecord"`` (the records whose header starts
    there), record numbers (from 1) for ``"capture"``, and byte offsets of
    entries for ``"archive"`` (the entries whose element starts there; with
    `latest_only`, only those that no newer entry of the same name
    replaced, anywhere in the archive).
    """

    path: str
    """The local path or fsspec URL of the file."""
    format: Format
    """``"records"``, ``"capture"``, ``"archive"`` or ``"tfrecord"``."""
    identity: tuple[Any, ...]
    """What the file was when the split was planned: its size and
    modification time (a local file), or its size and version (ETag,
    generation or modification time: an object)."""
    start: int
    """The first offset (or record number) of the range."""
    stop: int
    """The offset (or record number) just past the range."""
    latest_only: bool = False
    """Archives: only the newest entry of each name."""

    @property
    def size(self) -> int:
        """The file's size in bytes when the split was planned."""
        return int(self.identity[0])


def _options_for(path: str, storage_options: dict[str, Any] | None) -> Any:
    return storage_options if _remote.is_remote(path) else None


async def identity_of(
    path: str, storage_options: dict[str, Any] | None
) -> tuple[Any, ...]:
    """The identity of the file or object ``path`` now (see `Split.identity`).

    Cancellation: nothing changes.
    """
    if _remote.is_remote(path):
        remote = await _remote.open_remote(path, storage_options=storage_options)
        await remote.close()
        return remote.version
    local = _remote.local_path(path) or path
    return await _io.offload(_io.file_identity, local)


async def _expand(
    urlpaths: str | Iterable[str], storage_options: dict[str, Any] | None
) -> list[str]:
    patterns = [urlpaths] if isinstance(urlpaths, str) else list(urlpaths)
    paths: list[str] = []
    for pattern in patterns:
        if _remote.is_remote(pattern):
            found = await _remote.expand(pattern, storage_options)
        else:
            local = _remote.local_path(pattern) or pattern
            found = await _io.offload(_io.expand_paths, local)
        if len(found) > 1 or found != [pattern]:
            # What a glob or a directory gave: TFRecord indexes beside
            # their files are not files of records.
            found = [path for path in found if not path.endswith(INDEX_SUFFIX)]
        paths += found
    return paths


async def aplan_splits(
    urlpaths: str | Iterable[str],
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    storage_options: dict[str, Any] | None = None,
    format: Format | None = None,
    latest_only: bool = False,
) -> list[Split]:
    """[`plan_splits()`][aiorecords.plan_splits], awaited on the caller's loop.

    Cancellation: nothing is left open; no plan is made.
    """
    if target_bytes < 1:
        raise ValueError("target_bytes must be positive")
    if format is not None and format not in _formats.FORMATS:
        raise ValueError(f"format must be one of {', '.join(_formats.FORMATS)}")
    paths = await _expand(urlpaths, storage_options)
    if not paths:
        raise FileNotFoundError(f"no files match {urlpaths!r}")
    gate = asyncio.Semaphore(_PLANNING_AT_ONCE)

    async def plan_one(path: str) -> list[Split]:
        async with gate:
            return await _plan_file(
                path,
                target_bytes,
                _options_for(path, storage_options),
                format,
                latest_only,
            )

    planned = await asyncio.gather(*(plan_one(path) for path in paths))
    return [split for splits in planned for split in splits]


async def _plan_file(
    path: str,
    target_bytes: int,
    storage_options: dict[str, Any] | None,
    given: Format | None,
    latest_only: bool,
) -> list[Split]:
    identity = await identity_of(path, storage_options)
    fmt = given or await _formats.detect(path, storage_options)
    size = int(identity[0])
    if fmt == "records":
        ranges = byte_ranges(size, target_bytes)
    elif fmt == "capture":
        ranges = await plan_numbers(path, size, target_bytes, storage_options)
    elif fmt == "archive":
        ranges = await plan_entries(
            path, size, target_bytes, latest_only, storage_options
        )
    else:
        ranges = await plan_tfrecord(path, size, target_bytes, storage_options)
    if await identity_of(path, storage_options) != identity:
        raise FileChangedError(
            "changed while its splits were planned; plan again once nothing writes it",
            path=path,
            change="modified",
        )
    return [
        Split(path, fmt, identity, start, stop, latest_only and fmt == "archive")
        for start, stop in ranges
    ]


def plan_splits(
    urlpaths: str | Iterable[str],
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    storage_options: dict[str, Any] | None = None,
    format: Format | None = None,
    latest_only: bool = False,
) -> list[Split]:
    """Cut files into [`Split`][aiorecords.Split]s of about ``target_bytes``
    each, every split of a file in order, the files in sorted order.

    ``urlpaths`` is a path or URL, or a list of them; each may be a glob
    (``"logs/*.log"``, ``"s3://bucket/day=*/part-*"``) or a directory (its
    files, not those of its subdirectories); the ``.tfindex`` files these
    find beside TFRecord files are left out. URLs are read with fsspec
    (``storage_options`` for their file system). Each file's format is told
    by its first bytes unless ``format`` names it. How each is cut:

    * LevelDB logs by byte ranges on block boundaries (a reader resyncs at
      the first record starting in its range, as LevelDB's initial offset);
    * capture files by ranges of record numbers, from the index alone;
    * archives by ranges of entries, from the listing (``latest_only=True``
      keeps only the newest entry of each name across the whole archive);
    * TFRecord files by their ``.tfindex`` (see
      [`TFRecordWriter`][aiorecords.TFRecordWriter]) when there is one and the
      file is not compressed, else one split per file.

    Every file gives at least one split (an empty one, for an empty file).
    Synchronous: the work runs on the library's own event loop, in a thread
    of its own, so this may be called with or without a loop running in the
    caller's thread. From async code, ``await aplan_splits(...)``.
    """
    return _bridge.run(
        aplan_splits(
            urlpaths,
            target_bytes=target_bytes,
            storage_options=storage_options,
            format=format,
            latest_only=latest_only,
        )
    )


async def aread_split(
    split: Split,
    *,
    storage_options: dict[str, Any] | None = None,
    strict: bool = False,
    on_corruption: CorruptionCallback | None = None,
) -> AsyncIterator[bytes]:
    """The records of ``split`` (an archive's: the data of its entries), in
    order.

    Damage is handled as each format's reader handles it: dropped, logged
    and given to ``on_corruption`` as a
    [`SkippedRegion`][aiorecords.SkippedRegion] (a LevelDB log resyncs at the
    next block; a TFRecord file ends there; an archive steps over the entry);
    with ``strict=True`` it raises instead. Over all the splits of a file,
    each region is reported once.

    The file's identity is checked after the last record (a local file's
    before the first, too): a file changed since the split was planned
    raises [`FileChangedError`][aiorecords.errors.FileChangedError]
    (``change`` is ``"modified"``) rather than end as if its records were
    those planned. Records given before that came from the changed file:
    a consumer that must not act on them keeps them until the end (as a
    Dask partition does).

    Cancellation: the file is closed; the records not yet given are not read.
    """
    path = split.path
    options = _options_for(path, storage_options)
    if options is None and not _remote.is_remote(path):
        # A local file is checked first as well (a stat costs nothing; an
        # object's HEAD would cost a request per split).
        await _check_identity(split, options)
    if split.format == "records":
        records = read_range(
            path,
            split.start,
            split.stop,
            storage_options=options,
            strict=strict,
            on_corruption=on_corruption,
        )
    elif split.format == "capture":
        records = read_numbers(path, split.start, split.stop, storage_options=options)
    elif split.format == "archive":
        records = read_entries(
            path,
            split.start,
            split.stop,
            latest_only=split.latest_only,
            storage_options=options,
            strict=strict,
            on_corruption=on_corruption,
        )
    elif split.format == "tfrecord":
        records = read_tfrecord(
            path,
            split.start,
            split.stop,
            storage_options=options,
            strict=strict,
            on_corruption=on_corruption,
        )
    else:
        raise ValueError(f"{path}: no format is called {split.format!r}")
    async for record in records:
        yield record
    await _check_identity(split, options)


async def _check_identity(split: Split, storage_options: dict[str, Any] | None) -> None:
    now = await identity_of(split.path, storage_options)
    if now != split.identity:
        raise FileChangedError(
            f"changed since the split was planned (was {split.identity}, is "
            f"{now}); plan its splits again",
            path=split.path,
            change="modified",
        )


def read_split(
    split: Split,
    *,
    storage_options: dict[str, Any] | None = None,
    strict: bool = False,
    on_corruption: CorruptionCallback | None = None,
) -> Iterator[bytes]:
    """The records of ``split``, as [`aread_split()`][aiorecords.aread_split]
    gives them, for synchronous code: an engine's worker, a script.

    It needs no event loop in the calling thread and leaves alone one that
    runs there: the reading runs on the library's own loop, in a thread of
    its own, and the records come across in batches (up to 1,000 records or
    4 MiB), not one thread hop each. Closing the iterator early closes the
    file. ``on_corruption`` is called in that thread.
    """
    return _bridge.iterate(
        aread_split(
            split,
            storage_options=storage_options,
            strict=strict,
            on_corruption=on_corruption,
        )
    )
