"""Writing TFRecord files: `TFRecordWriter`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _io
from .._framed_writer import DEFAULT_BUFFER_SIZE, FramedWriter, Target
from .._kernels import frame_each
from .._limits import DEFAULT_MAX_RECORD_SIZE
from ..errors import StorageNotSupported
from ._frame import TFRecordDecoder, frame, frame_many
from ._index import index_line, index_path_of
from ._stream import Compression, Deflater

__all__ = ["TFRecordWriter"]

#: Bytes of an existing file read at a time while looking for its end.
_SCAN_SIZE = 1024 * 1024


class _Framer:
    """Frames records, noting each one's index line if asked."""

    __slots__ = ("index", "offset")

    def __init__(self, offset: int, indexed: bool) -> None:
        self.offset = offset  # of the next record, in the uncompressed stream
        self.index: bytearray | None = bytearray() if indexed else None

    def encode(self, data: bytes | bytearray | memoryview, out: bytearray) -> None:
        length = frame(data, out)
        if self.index is not None:
            self.index += index_line(self.offset, length)
        self.offset += length

    def encode_many(
        self,
        records: Sequence[bytes | bytearray | memoryview | str],
        start: int,
        stop: int,
        out: bytearray,
        max_bytes: int,
    ) -> int:
        if self.index is not None:
            # Each record's index line needs its offset: one at a time.
            return frame_each(self.encode, records, start, stop, out, max_bytes)
        before = len(out)
        try:
            return frame_many(records, start, stop, out, max_bytes)
        finally:
            self.offset += len(out) - before


class TFRecordWriter(FramedWriter):
    """Writes records with TensorFlow's TFRecord framing (as
    ``tf.io.TFRecordWriter``): each record's length and data, each with its
    masked CRC-32C.

    ``target`` is opened as a [`RecordsWriter`][aiorecords.RecordsWriter]'s
    is: a new file by default (`FileExistsError` if the name is taken),
    ``append=True`` to continue one (a torn record at its end, left by a
    writer that died, is cut off first: the file is read through once to
    find its last whole record), ``replace=True`` to replace one; an fsspec
    URL or a path on ``fs`` streams a new object, which appears whole at
    the close. One writer per file, in any process
    ([`RecordsLocked`][aiorecords.errors.RecordsLocked]).

    ``compression`` (``"gzip"`` or ``"zlib"``, TensorFlow's
    ``compression_type``) compresses the whole file as one stream, in
    worker threads a buffer at a time, each buffer flushed to a byte
    boundary so that what was written can be read back; such a file cannot
    be appended to.

    ``index=True`` also writes the ``tfrecord`` package's ``.tfindex`` of a
    new local file (beside it: ``events.tfrecord`` gets ``events.tfindex``,
    see [`plan_splits()`][aiorecords.plan_splits]), or ``index`` names the
    index file. It is written under a temporary name as records are, and
    takes its name at the close; an old index of the file is removed when
    the file is created.

    Records are framed in memory and written ``buffer_size`` bytes at a
    time, as by [`RecordsWriter`][aiorecords.RecordsWriter] (`write()`,
    `write_many()`, `flush()`, `sync()`, `close()`, ``async with``).
    """

    _kind = "TFRecordWriter"

    def __init__(
        self,
        target: Target,
        *,
        compression: Compression | None = None,
        index: bool | str = False,
        append: bool = False,
        replace: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        storage_options: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> None:
        if compression not in (None, "gzip", "zlib"):
            raise ValueError('compression is None, "gzip" or "zlib"')
        if compression is not None and append:
            raise ValueError("a compressed TFRecord file cannot be appended to")
        path = _io.path_of(target)
        self.compression = compression
        """``"gzip"``, ``"zlib"``, or None."""
        self._converts = compression is not None
        self.max_record_size = max_record_size
        self._deflater = Deflater(compression) if compression is not None else None
        self.index_path: str | None = None
        """The index file written, if any."""
        if index:
            if path is None or fs is not None or "://" in path:
                raise StorageNotSupported(
                    "an index is written beside a local file; write the file "
                    "locally, then upload both"
                )
            if append:
                raise ValueError("an index is written with a new file, not appended")
            self.index_path = index if isinstance(index, str) else index_path_of(path)
        self._index_io: _io.FileIO | None = None
        self._index_at = 0
        # The close's flush runs even with nothing buffered: it ends the
        # compressed stream, and gives the index its name.
        self._finishes = self._converts or self.index_path is not None
        super().__init__(
            target,
            append=append,
            replace=replace,
            buffer_size=buffer_size,
            storage_options=storage_options,
            fs=fs,
        )

    def _encoder_for(self, size: int) -> _Framer:
        return _Framer(size, self.index_path is not None)

    @staticmethod
    def _valid_end(io: _io.FileIO, size: int) -> int:
        """The end of the file's last whole record whose checksums hold."""
        decoder = TFRecordDecoder(max_record_size=1 << 62)
        while not decoder.finished and decoder.damage is None:
            data = io.pread(decoder.wanted, _SCAN_SIZE)
            if data:
                decoder.feed(data)
            else:
                decoder.feed_eof()
            decoder.read_many(1 << 30)
        return decoder.position

    def _converted(self, data: bytearray, final: bool) -> bytes | bytearray:
        assert self._deflater is not None
        return self._deflater.deflate(data, final)

    def _side_data(self) -> Any:
        encoder = self._encoder
        if not isinstance(encoder, _Framer) or encoder.index is None:
            return None
        lines, encoder.index = encoder.index, bytearray()
        return lines

    def _write_out(
        self, io: _io.FileIO, offset: int, data: bytearray, final: bool, side: Any
    ) -> int:
        written = super()._write_out(io, offset, data, final, side)
        if self.index_path is not None:
            if self._index_io is None:
                self._index_io = _io.create_temp_beside(self.index_path)
            if side:
                self._index_io.pwrite(self._index_at, side)
                self._index_at += len(side)
            if final:
                self._index_io.close()
                _io.replace(self._index_io.path, self.index_path)
        return written

    def _open_for_writing(self, path: str) -> tuple[_io.FileIO, int]:
        opened = super()._open_for_writing(path)
        if self.index_path is not None:
            _io.unlink_quietly(self.index_path)  # the old file's, if any
        return opened

    async def close(self) -> None:
        """Flush (ending a compressed stream), close the file, and give the
        index (if written) its name. Closing twice does nothing.

        Cancellation: the close runs to its end all the same; the
        cancellation is raised afterwards.
        """
        try:
            await super().close()
        finally:
            index = self._index_io
            if index is not None and not index.closed:
                # The close's last flush did not run (an I/O error): the
                # index of a file that failed is not published.
                await _io.run_to_completion(_discard, index)


def _discard(io: _io.FileIO) -> None:
    io.close()
    _io.unlink_quietly(io.path)
