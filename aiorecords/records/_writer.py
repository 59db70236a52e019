"""Writing LevelDB logs: `RecordsWriter`."""

from __future__ import annotations

from typing import Any

from .. import _io
from .._framed_writer import DEFAULT_BUFFER_SIZE, AsyncWritable, FramedWriter, Target
from ._log import BLOCK_SIZE, AppendPoint, LogEncoder

__all__ = ["AsyncWritable", "RecordsWriter"]


class RecordsWriter(FramedWriter):
    """Writes records in the LevelDB log format.

    ``target`` is a path or an async file object with ``write()``. A path is
    opened on first use (the ``async with``, or the first call), in one of
    three ways:

    * by default, a new log is created; if a file of that name exists, the
      first use raises `FileExistsError` and the file is left alone
      (a service that restarts without ``append=True`` does not lose its
      log);
    * with ``append=True``, an existing log is continued inside its last
      block as LevelDB does (and a missing one created). A torn record left
      at the end by a writer that died is cut off first, so that the new
      records are readable;
    * with ``replace=True``, a new log replaces any file of that name.

    A new log is created durably: its name survives a power cut once the
    file is synced.

    ``target`` may also be an fsspec URL (``"s3://bucket/events.log"``,
    with ``storage_options`` for its file system) or a path on the fsspec
    file system ``fs``: the log then streams to a new object in 8 MiB parts
    (a multipart upload, awaited on the event loop for S3) and **the close
    is the commit**: the object appears, whole, when the writer closes, and
    not before. A name already taken raises `FileExistsError` (on S3 also
    at the close, for an object created meanwhile: a conditional create);
    ``replace=True`` replaces it; ``append=True`` raises
    [`StorageNotSupported`][aiorecords.errors.StorageNotSupported], as does
    [`sync()`][aiorecords.RecordsWriter.sync]. A writer whose upload failed
    publishes nothing.

    Records are framed in memory and written ``buffer_size`` bytes at a time;
    [`flush()`][aiorecords.RecordsWriter.flush] writes what is buffered,
    [`sync()`][aiorecords.RecordsWriter.sync] also makes it durable (``fdatasync``).
    [`close()`][aiorecords.RecordsWriter.close] pads the last block with zeros if
    ``pad_last_block`` (the App Engine writer's behaviour; LevelDB's writer does not
    pad, so use ``pad_last_block=False`` for LevelDB's bytes), then flushes. Use ``async
    with``, or call [`close()`][aiorecords.RecordsWriter.close].
    """

    _kind = "RecordsWriter"

    def __init__(
        self,
        target: Target,
        *,
        pad_last_block: bool = True,
        append: bool = False,
        replace: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        storage_options: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> None:
        self.pad_last_block = pad_last_block
        super().__init__(
            target,
            append=append,
            replace=replace,
            buffer_size=buffer_size,
            storage_options=storage_options,
            fs=fs,
        )

    def _encoder_for(self, size: int) -> LogEncoder:
        return LogEncoder(size % BLOCK_SIZE)

    def _closing_bytes(self, encoder: Any) -> bytes:
        return bytes(encoder.padding()) if self.pad_last_block else b""

    @staticmethod
    def _valid_end(io: _io.FileIO, size: int) -> int:
        """The end of the file's last whole record (see `AppendPoint`)."""
        point = AppendPoint(size)
        while (wanted := point.wanted) is not None:
            point.feed(io.pread(*wanted))
        assert point.end is not None
        return point.end
