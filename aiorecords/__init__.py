"""aiorecords: asyncio-native record logs.

Append records, commit them atomically and durably, and read them back by
number or as async streams, from many tasks and processes at once, without
stalling the event loop.

* [`CaptureFile`][aiorecords.CaptureFile]: transactional, compressed record logs with
  random
  access (byte-compatible with CaptureFile 1.2.0 in its zlib mode).
* [`RecordsWriter`][aiorecords.RecordsWriter] and
  [`RecordsReader`][aiorecords.RecordsReader]: LevelDB log records
  (32 KiB blocks, masked CRC-32C), byte-exact with LevelDB.
* [`Archive`][aiorecords.Archive]: archives of named entries, appended only, read from
  the
  end, each entry streamed in and out in bounded memory.
* [`TFRecordWriter`][aiorecords.TFRecordWriter] and
  [`TFRecordReader`][aiorecords.TFRecordReader]: TensorFlow's TFRecord files
  (optionally GZIP or ZLIB compressed, with a ``.tfindex``).
* [`plan_splits()`][aiorecords.plan_splits] and
  [`read_split()`][aiorecords.read_split]: every format cut into pieces read
  apart, by Dask (`aiorecords.dask`) or any engine.
* [`upload()`][aiorecords.upload]: a local file copied whole to object storage
  (how a capture file gets there).
"""

from ._cache import set_block_cache_size
from ._skipped import SkippedRegion
from ._splits import Split, aplan_splits, aread_split, plan_splits, read_split
from ._upload import upload
from .archive import Archive, ArchiveEntry, EntryProperties, EntryReader, EntryWriter
from .capture import CaptureFile, Record
from .errors import (
    AiorecordsError,
    ArchiveLocked,
    ArchiveReadOnly,
    CaptureFileAlreadyOpen,
    CaptureFileError,
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    ClosedError,
    ConflictError,
    CorruptArchiveError,
    CorruptionError,
    CorruptRecordError,
    EventLoopError,
    FileChangedError,
    InvalidCaptureFile,
    RecordIndexError,
    RecordNotText,
    RecordsLocked,
    StorageError,
    StorageNotSupported,
    StorageThrottled,
    UnknownFormatError,
    WriterFailedError,
)
from .records import RecordsReader, RecordsWriter
from .tfrecord import TFRecordReader, TFRecordWriter

__version__ = "0.1.0"


def _report_public_module(names: list[str], module: str) -> None:
    """Make public objects name the module users import them from (as trio
    does), not the private one that defines them: reprs, pickles and
    tracebacks then show ``aiorecords.CaptureFile``."""
    namespace = globals()
    for name in names:
        thing = namespace[name]
        defined_in = getattr(thing, "__module__", "")
        if any(part.startswith("_") for part in defined_in.split(".")):
            thing.__module__ = module


__all__ = [
    "Archive",
    "ArchiveEntry",
    "CaptureFile",
    "EntryProperties",
    "EntryReader",
    "EntryWriter",
    "Record",
    "RecordsReader",
    "RecordsWriter",
    "SkippedRegion",
    "Split",
    "TFRecordReader",
    "TFRecordWriter",
    "aplan_splits",
    "aread_split",
    "plan_splits",
    "read_split",
    "set_block_cache_size",
    "upload",
    # errors
    "AiorecordsError",
    "ArchiveLocked",
    "RecordsLocked",
    "ArchiveReadOnly",
    "CaptureFileAlreadyOpen",
    "CaptureFileError",
    "CaptureFileNotOpen",
    "CaptureFileNotOpenForWrite",
    "ClosedError",
    "ConflictError",
    "CorruptArchiveError",
    "CorruptionError",
    "CorruptRecordError",
    "FileChangedError",
    "InvalidCaptureFile",
    "EventLoopError",
    "RecordIndexError",
    "RecordNotText",
    "StorageError",
    "StorageNotSupported",
    "StorageThrottled",
    "UnknownFormatError",
    "WriterFailedError",
]

_report_public_module(__all__, "aiorecords")
