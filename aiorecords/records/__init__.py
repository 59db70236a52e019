"""LevelDB log records: the App Engine ``records`` API, async.

[`RecordsWriter`][aiorecords.RecordsWriter] frames records into 32 KiB blocks exactly as
LevelDB's ``log::Writer`` does (and, with ``pad_last_block=True``, pads the
last block on close as the App Engine ``RecordsWriter`` does).
[`RecordsReader`][aiorecords.RecordsReader] reads them back as LevelDB's ``log::Reader``
does, reporting (or, with ``strict=True``, refusing) damaged bytes.
[`split()`][aiorecords.records.split] cuts a file into byte ranges for readers working
in parallel.

Both take a path, or an async file object (such as one from
``aiofiles.open``). With a path, every system call goes through
`aiorecords._io`: one worker-thread hop per buffer written; a block the
page cache holds is read without one (``preadv2`` with ``RWF_NOWAIT`` never
waits for the disk), any other by one hop per block; none per record.
Decoding is in-memory work done on the event loop.
"""

from ._reader import RecordsReader, split
from ._writer import RecordsWriter

__all__ = ["RecordsReader", "RecordsWriter", "split"]

# Public: split() is documented here, the classes at the top level.
split.__module__ = __name__
