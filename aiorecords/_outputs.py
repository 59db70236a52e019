"""Records written into a new file of any format that appears whole or not
at all: for Dask's `write()` and the command line's ``convert``.

A file is built under a temporary name (beside its destination, or in
``TMPDIR`` for an object: a capture file's commits and an archive's appends
rewrite and truncate, which an object cannot), then published: renamed
over the destination, or uploaded whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, TypeVar

from . import _io, _remote
from ._formats import Format
from ._upload import upload
from .archive import Archive
from .capture import CaptureFile
from .records import RecordsWriter
from .tfrecord import TFRecordWriter

__all__ = ["publish", "write_records"]

T = TypeVar("T")

#: Records a capture file is committed after, while it is built.
_COMMIT_EVERY = 10_000

Records = AsyncIterable[bytes | str]


async def write_records(
    records: Records,
    path: str,
    to: Format,
    *,
    compression: str | None = None,
    metadata: bytes | None = None,
    tick: Callable[[bytes | str], None] | None = None,
) -> int:
    """Write ``records`` into a new local file ``path`` of the format ``to``;
    how many. An archive's entries are named by their number (``00000001``,
    ...); ``compression`` is a capture file's (``"zstd"``, ``"zlib"``) or a
    TFRecord file's (``"gzip"``, ``"zlib"``); ``metadata`` a capture
    file's. ``tick`` is called with each record written.

    Cancellation: the file is left as far as it was written (the caller
    removes a temporary one).
    """
    count = 0

    def step(record: bytes | str) -> None:
        nonlocal count
        count += 1
        if tick is not None:
            tick(record)

    if to == "capture":
        capture = CaptureFile(
            path,
            to_write=True,
            force_new_empty_file=True,
            encoding=None,
            compression=compression or "zstd",  # type: ignore[arg-type]
        )
        await capture.open(to_write=True)
        try:
            async for record in records:
                await capture.add_record(record)
                step(record)
                if count % _COMMIT_EVERY == 0:
                    await capture.commit()
            if metadata is not None:
                await capture.set_metadata(metadata)
            await capture.commit()
        finally:
            await capture.close()
    elif to in ("records", "tfrecord"):
        writer = (
            RecordsWriter(path)
            if to == "records"
            else TFRecordWriter(path, compression=compression)  # type: ignore[arg-type]
        )
        async with writer:
            async for record in records:
                await writer.write(record)
                step(record)
            await writer.sync()
    else:
        async with Archive.open(path, mode="rdwr_exclusive", durable=False) as archive:
            async for record in records:
                async with archive.append(
                    f"{count + 1:08d}", compression="zstd"
                ) as out:
                    await out.write(
                        record.encode() if isinstance(record, str) else record
                    )
                step(record)
            await archive.sync()
    return count


async def publish(
    build: Callable[[str], Awaitable[T]],
    destination: str,
    *,
    storage_options: dict[str, Any] | None,
    replace: bool,
) -> T:
    """Build a file with ``build(temporary_path)``, then give it the name
    ``destination`` (a path or URL), replacing a file there if ``replace``
    (else `FileExistsError`, and nothing is published); what ``build``
    returned. The temporary file is removed whatever happens.

    Cancellation: nothing is published (unless the rename or the upload's
    completion had begun), and the temporary file is removed.
    """
    remote = _remote.is_remote(destination)
    local = destination if remote else _remote.local_path(destination) or destination
    temp = await _io.offload(
        _io.temp_name_local if remote else _io.temp_name_beside, local
    )
    try:
        result = await build(temp)
        if remote:
            await upload(
                temp, destination, storage_options=storage_options, replace=replace
            )
        else:
            await _io.offload(_publish_local, temp, local, replace)
    finally:
        await _io.run_to_completion(_io.unlink_quietly, temp)
    return result


def _publish_local(temp: str, destination: str, replace: bool) -> None:
    if not _io.publish_file(temp, destination, overwrite=replace):
        raise FileExistsError(17, "a file of that name exists", destination)
    _io.sync_directory(destination)
