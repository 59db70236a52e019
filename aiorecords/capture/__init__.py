"""Capture files: transactional, compressed record logs with random access.

[`CaptureFile`][aiorecords.CaptureFile] mirrors the API of the CaptureFile package
(1.2.0) with async methods. Records are appended, committed atomically (and, by default,
durably), and read back by number, by slice or as an async stream.

The format work is done by this package's sans-IO cores (``_layout``,
``_index``, ``_stream``, ``_writer``); its drivers move bytes between them and
the file through `aiorecords._io`, with one worker-thread hop per commit,
per flush of several full blocks, or per batch of reads, and none per record.
"""

from ._file import CaptureFile, Record

__all__ = ["CaptureFile", "Record"]
