"""Every exception aiorecords raises on purpose.

All of them derive from [`AiorecordsError`][aiorecords.errors.AiorecordsError]. Where a
builtin exception already says the right thing they derive from it as well, so existing
``except OSError`` or ``except IndexError`` clauses keep working:

```text
AiorecordsError
├── StorageError (also OSError)         the OS failed a read, write or sync
│   └── StorageThrottled                the store asked for fewer requests
├── StorageNotSupported (also ValueError) not possible on that storage (yet)
├── CorruptionError                     the bytes are not what the format allows
│   ├── InvalidCaptureFile              not a capture file, or a damaged one
│   │   └── RecordNotText               not text (also UnicodeDecodeError)
│   ├── CorruptRecordError              a damaged log or TFRecord record (strict)
│   └── CorruptArchiveError             a damaged archive element
├── CaptureFileError                    a capture file used in the wrong state
│   ├── CaptureFileNotOpen
│   ├── CaptureFileNotOpenForWrite
│   └── CaptureFileAlreadyOpen
├── ClosedError                         a reader or writer used after close()
├── FileChangedError                    a file changed under its reader
├── ArchiveLocked                       another writer holds the archive
├── RecordsLocked                       another writer holds the log
├── ArchiveReadOnly                     an archive opened read-only was written
├── ConflictError                       an append's expected record count was wrong
├── WriterFailedError                   an earlier I/O error poisoned this writer
├── RecordIndexError (also IndexError)  no record has that number
├── UnknownFormatError (also ValueError) a file of no format aiorecords reads
└── EventLoopError (also RuntimeError)  called with no asyncio loop (under trio)
```

The capture file names (``InvalidCaptureFile``, ``CaptureFileNotOpen``,
``CaptureFileNotOpenForWrite``, ``CaptureFileAlreadyOpen``) are those of the
CaptureFile API that aiorecords mirrors.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AiorecordsError",
    "StorageError",
    "StorageNotSupported",
    "StorageThrottled",
    "CorruptionError",
    "InvalidCaptureFile",
    "RecordNotText",
    "CaptureFileError",
    "CaptureFileNotOpen",
    "CaptureFileNotOpenForWrite",
    "CaptureFileAlreadyOpen",
    "ArchiveLocked",
    "RecordsLocked",
    "ArchiveReadOnly",
    "ConflictError",
    "ClosedError",
    "FileChangedError",
    "CorruptArchiveError",
    "CorruptRecordError",
    "WriterFailedError",
    "RecordIndexError",
    "EventLoopError",
]


class AiorecordsError(Exception):
    """The root of every exception aiorecords raises on purpose.

    Every one of them pickles with its attributes (a Dask worker's error
    reaches the client whole).
    """

    def __reduce__(self) -> Any:
        # Not cls(*args): most take keyword-only fields, which the default
        # reduction would lose or fail on when the error is unpickled.
        args = self.args
        if isinstance(self, OSError) and self.filename is not None:
            args = (self.errno, self.strerror, self.filename)  # not in args
        return (_rebuilt, (type(self), args, dict(self.__dict__)))


def _rebuilt(
    cls: type[AiorecordsError], args: tuple[Any, ...], state: dict[str, Any]
) -> AiorecordsError:
    """An error unpickled: made as its base exception makes itself from
    ``args`` (OSError's errno and strerror included), then given its fields."""
    error = cls.__new__(cls, *args)
    # The base's own __init__ (OSError's sets errno, strerror, filename).
    base = OSError if isinstance(error, OSError) else Exception
    base.__init__(error, *args)
    error.__dict__.update(state)
    return error


class StorageError(AiorecordsError, OSError):
    """The operating system failed an I/O call (for example ``EIO`` or ``ENOSPC``).

    It is an `OSError` too: ``errno``, ``strerror`` and ``filename`` are
    those of the failed call, and `operation` names the call
    (``"pwrite"``, ``"fdatasync"``, ...).
    """

    operation: str

    def __init__(self, error: OSError, operation: str, path: str | None) -> None:
        super().__init__(error.errno, error.strerror, path)
        self.operation = operation

    def __str__(self) -> str:
        return f"{self.operation} failed: {super().__str__()}"


class StorageThrottled(StorageError):
    """The object store refused a request to slow its caller down (HTTP 429
    or 503: S3's ``SlowDown``, a ``Throttling`` error, ...) after the file
    system's own retries ran out. Nothing was made of partial data: read or
    write again later, or with fewer requests at once. ``errno`` is
    ``EBUSY``."""


class StorageNotSupported(AiorecordsError, ValueError):
    """What was asked cannot be done where the bytes are: appending to an
    object (a log's or an archive's), syncing before the close that
    publishes a new object, opening a capture file for writing on object
    storage (upload it whole), or following an object (see the storage
    guide)."""


class CorruptionError(AiorecordsError):
    """The bytes of a file are not what its format allows.

    `path` names the file (``None`` for data held in memory) and
    `offset` the byte where the damage was found (``None`` when it is
    not one place).
    """

    path: str | None
    offset: int | None
    reason: str
    """The message without the file and offset."""

    def __init__(
        self, message: str, *, path: str | None = None, offset: int | None = None
    ) -> None:
        super().__init__(_located(message, path, offset))
        self.path = path
        self.offset = offset
        self.reason = message


def _located(message: str, path: str | None, offset: int | None) -> str:
    where = []
    if path is not None:
        where.append(repr(path))
    if offset is not None:
        where.append(f"offset {offset}")
    return f"{', '.join(where)}: {message}" if where else message


class InvalidCaptureFile(CorruptionError):
    """The file is not a capture file, has an unsupported version, or is damaged."""


class RecordNotText(InvalidCaptureFile, UnicodeDecodeError):
    """A record is not text in the file's encoding: it was stored as bytes,
    or a damaged or forged index points into other bytes. Open the file with
    ``encoding=None`` to read records as bytes. Also a
    `UnicodeDecodeError`, which is what decoding raised."""

    def __init__(
        self,
        message: str,
        error: UnicodeDecodeError,
        *,
        path: str | None = None,
        offset: int | None = None,
    ) -> None:
        # UnicodeDecodeError's own fields, then CorruptionError's (whose
        # __init__ would reach UnicodeDecodeError's through the MRO).
        UnicodeDecodeError.__init__(
            self, error.encoding, error.object, error.start, error.end, error.reason
        )
        self.path = path
        self.offset = offset
        self.message = message
        self.located = _located(message, path, offset)

    @property
    def reason(self) -> str:  # CorruptionError's meaning, not the codec's
        """The message without the file and offset."""
        return self.message

    @reason.setter
    def reason(self, value: str) -> None:
        pass  # UnicodeDecodeError.__init__ sets the codec's reason

    def __str__(self) -> str:
        return self.located

    def __reduce__(self) -> Any:
        error = UnicodeDecodeError(
            self.encoding, self.object, self.start, self.end, "not text"
        )
        return (
            type(self),
            (self.message, error),
            {"path": self.path, "offset": self.offset, "located": self.located},
        )


class CorruptRecordError(CorruptionError):
    """A LevelDB log record is damaged (raised by readers in strict mode)."""


class CorruptArchiveError(CorruptionError):
    """An archive element is damaged (its offset is given), or the file is
    not an archive."""


class CaptureFileError(AiorecordsError):
    """A capture file was used in a state that does not allow the call."""


class CaptureFileNotOpen(CaptureFileError):
    """The capture file object is closed."""


class CaptureFileNotOpenForWrite(CaptureFileError):
    """The capture file is open for reading only."""


class CaptureFileAlreadyOpen(CaptureFileError):
    """The object is already open, or another writer holds the file."""


class ClosedError(AiorecordsError):
    """The reader or writer was used after it was closed."""


class FileChangedError(AiorecordsError):
    """The file a follower follows is no longer the one it was following:
    another file took its name (a writer that replaced it, ``mv``, log
    rotation), or it was cut shorter than what the follower has already
    given out. What was given out stays valid; follow the name again to
    read the new file from its start.

    Also raised by [`upload()`][aiorecords.upload] when the file was written
    to while it was being copied (``change`` is then ``"modified"``): the
    copy could mix two states of it, so none was published.
    """

    path: str
    """The file followed."""
    change: str
    """``"replaced"``, ``"truncated"`` or ``"modified"``."""

    def __init__(self, message: str, *, path: str, change: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.change = change


class ArchiveLocked(AiorecordsError):
    """Another writer has the archive open with ``mode="rdwr_exclusive"``."""


class RecordsLocked(AiorecordsError):
    """Another [`RecordsWriter`][aiorecords.RecordsWriter] (in this process or
    another) is writing the log file: two writers would interleave their
    blocks."""


class ArchiveReadOnly(AiorecordsError):
    """The archive was opened with ``mode="rdonly"`` or from bytes, and a
    call tried to change it."""


class ConflictError(AiorecordsError):
    """An append with ``expected_count`` found another record count: another
    writer appended first (optimistic concurrency). Nothing was added."""

    expected: int
    """The record count the caller expected."""
    actual: int
    """The record count the file had."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class WriterFailedError(AiorecordsError):
    """An earlier I/O error left this writer's view of the file unknown.

    After a failed write or sync the kernel may have dropped the dirty pages,
    so retrying could report success for data that never reached the disk.
    The handle refuses further writes; close it and open the file again, which
    shows the last commit that did reach the disk.
    """


class RecordIndexError(AiorecordsError, IndexError):
    """No record has that number (record numbers start at 1)."""


class UnknownFormatError(AiorecordsError, ValueError):
    """A file whose first bytes are no format's that aiorecords reads (or
    an empty file) where its format was to be told from them: name the
    format (``format=``, ``--format``)."""

    path: str
    """The file."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class EventLoopError(AiorecordsError, RuntimeError):
    """aiorecords was called with no asyncio event loop running in the
    thread: from trio (directly or through anyio's trio backend), or from
    synchronous code. aiorecords runs on asyncio, including anyio's asyncio
    backend."""
