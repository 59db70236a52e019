"""Reading TFRecord files: `TFRecordReader`."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

from .. import _io
from .._framed_reader import (
    DEFAULT_READ_SIZE,
    REMOTE_READ_SIZE,
    CorruptionCallback,
    FramedReader,
    Source,
)
from .._limits import DEFAULT_MAX_RECORD_SIZE
from .._skipped import SkippedRegion
from ._frame import TFRecordDecoder
from ._stream import Compression, Inflater

__all__ = ["TFRecordReader"]


class TFRecordReader(FramedReader):
    """Reads the records of a TFRecord file, as TensorFlow's
    ``tf.data.TFRecordDataset`` does.

    ``source`` is a path, an fsspec URL (with ``storage_options``), a path on
    the fsspec file system ``fs``, or an async file object, as for
    [`RecordsReader`][aiorecords.RecordsReader], and is read the same way:
    blocks the page cache holds on the event loop, others by worker-thread
    hops, objects in ranges awaited on the loop.

    ``compression`` is ``"gzip"`` or ``"zlib"`` for a file compressed whole,
    as TensorFlow's ``compression_type`` (None: stored as it is). A
    compressed file is inflated in worker threads, a bounded piece at a
    time; its offsets (``start``, ``stop``, `seek()`, `tell()` and the
    regions reported) are those of the inflated stream, and it cannot be
    followed.

    TFRecord framing has no markers to find a record by, so damage (a bad
    length or checksum, a length over ``max_record_size``, which is never
    allocated) ends the file: the records before it are given, and the rest
    of the file is reported as one [`SkippedRegion`][aiorecords.SkippedRegion]
    (logged, and given to ``on_corruption``); so is a torn record at the
    end, which a writer that died leaves. With ``strict=True`` either raises
    [`CorruptRecordError`][aiorecords.errors.CorruptRecordError] naming the
    offset, as TensorFlow raises ``DataLossError``.

    ``start`` and ``stop`` restrict the reader to the records whose header
    starts in ``[start, stop)``; ``start`` must be a record's offset (0, or
    one from a ``.tfindex``, or from `tell()`).
    """

    _kind = "TFRecordReader"

    def __init__(
        self,
        source: Source,
        *,
        compression: Compression | None = None,
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
        if compression not in (None, "gzip", "zlib"):
            raise ValueError('compression is None, "gzip" or "zlib"')
        self.compression = compression
        """``"gzip"``, ``"zlib"``, or None."""
        self._inflater: Inflater | None = None
        self._inflated = 0  # offset in the inflated stream reached
        self._raw_at_end = False
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

    def _decoder_for(
        self, start: int, stop: int | None, max_record_size: int
    ) -> TFRecordDecoder:
        return TFRecordDecoder(start, stop, max_record_size=max_record_size)

    def follow(self) -> AsyncIterator[bytes]:
        """Yield the records, then wait for more as the file grows, as
        [`RecordsReader.follow()`][aiorecords.RecordsReader.follow] does: each
        record only once it is whole and its checksums hold. A writer that
        restarts after a crash and writes over a torn record is followed
        into its new records. A compressed file cannot be followed
        (`ValueError`).

        Cancellation: cancelling the iterating task ends it cleanly; a read
        already in a worker thread finishes first.
        """
        if self.compression is not None:
            raise ValueError(
                f"{self.name}: a compressed TFRecord file cannot be followed "
                "(its stream is inflated from the start)"
            )
        return super().follow()

    async def _read_at(self, wanted: int) -> tuple[bytes | bytearray, bool]:
        if self.compression is None:
            return await super()._read_at(wanted)
        if self._inflater is None or wanted < self._inflated:
            # From the start (a first read, or a seek back): offsets are
            # the inflated stream's.
            self._inflater = Inflater(self.compression)
            self._inflated = 0
            self._raw_at_end = False
        while True:
            out = await self._inflate_next(self._inflater)
            if out is None:
                return b"", True
            begin = self._inflated
            self._inflated += len(out)
            if self._inflated > wanted or (not out and self._ended()):
                return out[wanted - begin :], self._ended()

    def _ended(self) -> bool:
        inflater = self._inflater
        assert inflater is not None
        return inflater.ended or (self._raw_at_end and inflater.needs_input)

    async def _inflate_next(self, inflater: Inflater) -> bytes | None:
        """The next inflated piece (empty at the end); None if the stream is
        damaged (reported, or raised with ``strict``)."""
        raw: bytes | bytearray = b""
        if inflater.needs_input and not self._raw_at_end and not inflater.ended:
            raw, self._raw_at_end = await super()._read_at(inflater.consumed)
        elif inflater.needs_input:
            return b""
        try:
            return await _io.offload(inflater.inflate, raw)
        except zlib.error as error:
            self._report(
                SkippedRegion(
                    self._inflated,
                    self._inflated,
                    f"the {self.compression} stream is damaged near compressed "
                    f"byte {inflater.consumed}: {error}",
                )
            )
            return None

    async def _stream_end(self) -> int | None:
        if self.compression is not None:
            return None  # known only once inflated to its end
        return await super()._stream_end()
