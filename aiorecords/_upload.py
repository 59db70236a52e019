"""New objects on an fsspec file system: written in parts, published whole.

Object stores have no append, no rename and no fsync: a new object is
uploaded in parts and appears, whole, when the upload completes. An
`Upload` is that: `write()` hands it bytes in order, `commit()` makes
the object appear (the writer's close), `discard()` makes sure it never
does.

On S3 (s3fs) the multipart upload is awaited on the event loop, and a new
object is created conditionally (``If-None-Match: *``): of two writers
racing to create one name, one gets `FileExistsError` and nothing of its
own is published. Other file systems are written through fsspec's own file
objects in worker threads, one hop per part; there, "the name is free" is
checked before the upload begins, not when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
from typing import Any, Final

from . import _io, _remote
from ._lifetime import finish, open_owned
from .errors import FileChangedError, StorageError, StorageNotSupported

__all__ = ["PART_SIZE", "Upload", "start_upload", "upload"]

#: Bytes sent in one part (S3's smallest part but the last is 5 MiB).
PART_SIZE: Final = 8 * 1024 * 1024
# S3 allows 10,000 parts: parts grow 2x every 1,000 so that an object can
# pass 80 GB while memory holds one part.
_PARTS_PER_SIZE: Final = 1000


def _exists_error(url: str) -> FileExistsError:
    return FileExistsError(
        errno.EEXIST,
        "an object of that name exists (pass replace=True to replace it; "
        "an object cannot be appended to)",
        url,
    )


class Upload:
    """One new object being uploaded: bytes in order, then commit or discard.

    One task uses it at a time (its writer holds a lock). A request under
    way when its task is cancelled is finished first: a part is sent, or
    not, never abandoned halfway.
    """

    def __init__(self, url: str, exclusive: bool) -> None:
        self.url = url
        self.exclusive = exclusive
        """True if the object must be new (committing over one fails)."""
        self.size = 0
        """Bytes written so far."""
        self.ended = False
        """Committed or discarded: nothing more can be written."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` to the object; a full part is sent.

        Cancellation: a part being sent is sent first; ``data`` is taken.
        """
        if self.ended:
            raise StorageError(OSError(errno.EBADF, "upload ended"), "write", self.url)
        self.size += len(data)
        await self._write(data)

    async def commit(self) -> None:
        """Send what is left and make the object appear, whole.

        Raises `FileExistsError` if the object must be new and one of that
        name appeared meanwhile (where the store can tell: S3); then nothing
        of this upload is published.

        Cancellation: the commit runs to its end; then the cancellation is
        raised.
        """
        if self.ended:
            return
        self.ended = True
        await finish(self._commit_or_discard())

    async def _commit_or_discard(self) -> None:
        try:
            await self._commit()
        except BaseException:
            # Its own error is the one to raise; the abort is best effort
            # (an abandoned multipart upload is also reaped by the store's
            # lifecycle rules, where set).
            with contextlib.suppress(Exception):
                await self._discard()
            raise

    async def discard(self) -> None:
        """Make sure the object never appears (an unfinished upload is
        aborted, its parts deleted).

        Cancellation: the abort runs to its end; then the cancellation is
        raised.
        """
        if self.ended:
            return
        self.ended = True
        await finish(self._discard())

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    async def _commit(self) -> None:
        raise NotImplementedError

    async def _discard(self) -> None:
        raise NotImplementedError


class S3Upload(Upload):
    """A multipart upload to S3, awaited on the loop (s3fs's client)."""

    def __init__(self, fs: Any, path: str, url: str, exclusive: bool) -> None:
        super().__init__(url, exclusive)
        self.fs = fs
        self.path = path
        self.bucket, self.key, _ = fs.split_path(path)
        self._pending = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _part_size(self) -> int:
        return PART_SIZE << (len(self._parts) // _PARTS_PER_SIZE)

    async def _call(self, method: str, **arguments: Any) -> Any:
        try:
            with _remote.failures_named(method, self.url, passing=(FileExistsError,)):
                return await self.fs._call_s3(
                    method, Bucket=self.bucket, Key=self.key, **arguments
                )
        except FileExistsError:  # a conditional create that lost
            raise _exists_error(self.url) from None

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        pending += data
        while len(pending) >= self._part_size():
            size = self._part_size()
            part = bytes(pending[:size])
            del pending[:size]
            await finish(self._send(part))

    async def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            started = await self._call("create_multipart_upload")
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        sent = await self._call(
            "upload_part", UploadId=self._upload_id, PartNumber=number, Body=part
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def _commit(self) -> None:
        condition = {"IfNoneMatch": "*"} if self.exclusive else {}
        if self._upload_id is None:
            # Smaller than one part: one request.
            body, self._pending = bytes(self._pending), bytearray()
            await self._call("put_object", Body=body, **condition)
        else:
            if self._pending:
                last, self._pending = bytes(self._pending), bytearray()
                await self._send(last)
            await self._call(
                "complete_multipart_upload",
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                **condition,
            )
            self._upload_id = None
        self.fs.invalidate_cache(self.path)

    async def _discard(self) -> None:
        self._pending = bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            await self._call("abort_multipart_upload", UploadId=upload_id)


class FileUpload(Upload):
    """An upload through an fsspec file object opened for writing without
    autocommit (published by its commit()), in worker-thread hops: one per
    part."""

    def __init__(self, file: Any, url: str, exclusive: bool) -> None:
        super().__init__(url, exclusive)
        self.file = file
        self._pending = bytearray()

    async def _hop(self, operation: str, function: Any, *args: Any) -> None:
        with _remote.failures_named(operation, self.url):
            await _io.offload(function, *args)

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        pending += data
        if len(pending) >= PART_SIZE:
            part, self._pending = bytes(pending), bytearray()
            await self._hop("write", self.file.write, part)

    async def _commit(self) -> None:
        part, self._pending = bytes(self._pending), bytearray()
        await self._hop("commit", _write_and_commit, self.file, part)

    async def _discard(self) -> None:
        self._pending = bytearray()
        await self._hop("discard", _discard_file, self.file)


def _write_and_commit(file: Any, last: bytes) -> None:
    if last:
        file.write(last)
    file.close()
    file.commit()


def _discard_file(file: Any) -> None:
    file.discard()
    file.close()


def _open_file(fs: Any, path: str, url: str, exclusive: bool) -> Any:
    if exclusive and fs.exists(path):
        raise _exists_error(url)
    return fs.open(path, "wb", autocommit=False)


async def start_upload(
    url: str,
    *,
    fs: Any = None,
    storage_options: dict[str, Any] | None = None,
    replace: bool = False,
) -> Upload:
    """Begin a new object at ``url`` (or the path ``url`` on ``fs``).

    Without ``replace``, an object already there raises `FileExistsError`
    now; with it, the new object replaces any old one when committed.

    Cancellation: nothing is left begun (an upload begun as the
    cancellation came is discarded).
    """
    starting = asyncio.ensure_future(_start(url, fs, storage_options, replace))
    try:
        return await finish(starting)
    except asyncio.CancelledError:
        if starting.done() and not starting.cancelled() and not starting.exception():
            await starting.result().discard()
        raise


async def _start(
    url: str, fs: Any, storage_options: dict[str, Any] | None, replace: bool
) -> Upload:
    fs, path, url = await _remote.file_system(url, fs, storage_options)
    exclusive = not replace
    if _remote.is_async_fs(fs) and hasattr(fs, "_call_s3"):
        upload = S3Upload(fs, path, url, exclusive)
        if exclusive and await _remote.exists(fs, path, url):
            raise _exists_error(url)
        return upload
    if _remote.is_async_fs(fs):
        raise StorageNotSupported(
            f"{url}: writing to {type(fs).__name__} is not supported yet "
            "(S3 and synchronous fsspec file systems are)"
        )
    with _remote.failures_named("open", url, passing=(FileExistsError,)):
        file = await _io.offload(
            functools.partial(_open_file, fs, path, url, exclusive)
        )
    return FileUpload(file, url, exclusive)


async def upload(
    path: _io.PathLike,
    url: str,
    *,
    fs: Any = None,
    storage_options: dict[str, Any] | None = None,
    replace: bool = False,
) -> int:
    """Copy the local file ``path`` to a new object ``url`` (an fsspec URL, or
    a path on the file system ``fs``), whole; return its size in bytes.

    This is how a capture file goes to object storage (its commits rewrite
    its master nodes in place, which an object cannot do): commit and close
    it, then upload it. Any file can be uploaded so, a log or an archive
    too. The object appears only once every byte is sent; without
    ``replace``, an object already there raises `FileExistsError` (on S3
    also one created by someone else during the upload). A file written to
    while it is copied raises
    [`FileChangedError`][aiorecords.errors.FileChangedError] and nothing is
    published: upload it when nobody writes it.

    Memory holds one part (8 MiB) at a time; the file is read by a worker
    thread, one hop per part.

    Cancellation: nothing is published, the upload is aborted and the file
    closed; then the cancellation is raised.
    """
    name = _io.path_of(path)
    if name is None:
        raise TypeError(f"a local path is needed, not {type(path).__name__}")
    io = await open_owned(
        functools.partial(_io.open_file, name, writable=False), _closer
    )
    try:
        return await _copy(io, name, url, fs, storage_options, replace)
    finally:
        (await _io.run_to_completion(io.close))[0].unwrap()


def _closer(io: _io.FileIO) -> Any:
    return io.close


async def _copy(
    io: _io.FileIO,
    name: str,
    url: str,
    fs: Any,
    storage_options: dict[str, Any] | None,
    replace: bool,
) -> int:
    before = await _io.offload(io.state)
    target = await start_upload(
        url, fs=fs, storage_options=storage_options, replace=replace
    )
    try:
        unchanged = await _send_file(io, target, before)
    except BaseException:
        await target.discard()
        raise
    if not unchanged:
        await target.discard()
        raise FileChangedError(
            "was written to while it was being uploaded; nothing was "
            "published (upload it when nobody writes it)",
            path=name,
            change="modified",
        )
    await target.commit()
    return target.size


async def _send_file(io: _io.FileIO, target: Upload, before: tuple[int, ...]) -> bool:
    """Send the file's bytes; whether it stayed as it was meanwhile."""
    size, offset = before[0], 0
    while offset < size:
        chunk = await _io.offload(io.pread, offset, min(PART_SIZE, size - offset))
        if not chunk:
            return False
        await target.write(chunk)
        offset += len(chunk)
    return await _io.offload(io.state) == before
