"""Streaming an archive entry's payload in and out, in bounded memory.

`EntryEncoder` turns the bytes written to an entry into the bytes
stored (compressing them, or inflating bytes that arrive gzip-compressed),
chunk by chunk. `EntryDecoder` turns stored bytes back into the
entry's data, chunk by chunk, checking the payload's checksum and sizes at
the end. Neither ever holds more than a chunk's worth of output, whatever
the input claims; both are pure code (the decoder reads through a ``pread``
function it is given).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Final

import zstandard
from crc32c import crc32c

from .._codecs import ZSTD_LEVEL, DecodeError
from ._format import Codec, Stuffer, unfinished_run, unstuff

__all__ = ["CHUNK", "EntryDecoder", "EntryEncoder", "GzipInflater"]

#: The most output any step produces at once.
CHUNK: Final = 1024 * 1024

_GZIP: Final = 31  # zlib's wbits for a gzip member
_GZIP_LEVEL: Final = 6


class GzipInflater:
    """Inflates a gzip stream (one member or several) a bounded step at a time."""

    __slots__ = ("_inflater", "_members", "_mid_member")

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(_GZIP)
        self._mid_member = False
        self._members = 0

    def feed(
        self, data: bytes | bytearray | memoryview, limit: int = CHUNK
    ) -> Iterator[bytes]:
        """The data inflated from ``data``, in pieces of at most ``limit`` bytes."""
        pending = bytes(data)
        while pending:
            self._mid_member = True
            try:
                out = self._inflater.decompress(pending, limit)
            except zlib.error as error:
                raise DecodeError(f"gzip data is damaged ({error})") from None
            if out:
                yield out
            if self._inflater.unconsumed_tail:
                pending = self._inflater.unconsumed_tail
            elif self._inflater.eof:
                # A member ended; what follows is the next member.
                pending = self._inflater.unused_data
                self._inflater = zlib.decompressobj(_GZIP)
                self._mid_member = False
                self._members += 1
            else:
                pending = b""
        # The inflater may hold output it has not given yet.
        while not self._inflater.eof and self._mid_member:
            try:
                out = self._inflater.decompress(b"", limit)
            except zlib.error as error:  # pragma: no cover - zlib raises above
                raise DecodeError(f"gzip data is damaged ({error})") from None
            if not out:
                break
            yield out

    def finish(self) -> None:
        """Raise `DecodeError` if the stream stopped inside a member."""
        if self._mid_member:
            raise DecodeError("gzip data ends before its stream does")


class EntryEncoder:
    """The stored bytes of an entry, from the bytes written to it.

    ``codec`` says how to store (`Codec`); ``data_gzip`` that the bytes
    written are themselves gzip: stored as they are if the codec is gzip
    (they are still inflated, to check them and count the data), inflated
    and stored otherwise; ``stuffed`` that the stored bytes are stuffed
    (version 2), after compression. The checksum and the stored size are of
    the bytes as the file holds them.
    """

    __slots__ = (
        "_compressor",
        "_inflater",
        "_stuffer",
        "codec",
        "crc",
        "data_gzip",
        "data_size",
        "stored_size",
    )

    def __init__(self, codec: int, data_gzip: bool, stuffed: bool) -> None:
        self.codec = codec
        self.data_gzip = data_gzip
        self._stuffer = Stuffer() if stuffed else None
        self.crc = 0
        self.stored_size = 0
        self.data_size = 0
        self._inflater = GzipInflater() if data_gzip else None
        self._compressor: zlib._Compress | zstandard.ZstdCompressionObj | None = None
        if codec == Codec.GZIP and not data_gzip:
            self._compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP)
        elif codec == Codec.ZSTD:
            # A compressor of its own: this entry's stream must not share one.
            self._compressor = zstandard.ZstdCompressor(
                level=ZSTD_LEVEL, write_checksum=True
            ).compressobj()

    @property
    def stuffed(self) -> bool:
        """Whether the stored bytes are stuffed (version 2)."""
        return self._stuffer is not None

    def _stored(self, data: bytes) -> bytes:
        if self._stuffer is not None:
            data = self._stuffer.feed(data)
        if data:
            self.crc = crc32c(data, self.crc)
            self.stored_size += len(data)
        return data

    def _store(self, data: bytes) -> bytes:
        """The stored bytes for some of the entry's data."""
        self.data_size += len(data)
        if self._compressor is not None:
            return self._stored(self._compressor.compress(data))
        if self.codec == Codec.NONE:
            return self._stored(data)
        return b""  # gzip bytes passed through are stored as written

    def feed(self, written: bytes | bytearray | memoryview) -> Iterator[bytes]:
        """The stored bytes for ``written``, in bounded pieces."""
        if self._inflater is None:
            stored = self._store(bytes(written))
            if stored:
                yield stored
            return
        if self.codec == Codec.GZIP:
            yield self._stored(bytes(written))
        for data in self._inflater.feed(written):
            stored = self._store(data)
            if stored:
                yield stored

    def finish(self) -> bytes:
        """The last stored bytes; raises `DecodeError` for bytes written
        as gzip that were not a whole gzip stream."""
        if self._inflater is not None:
            self._inflater.finish()
        last = b""
        if self._compressor is not None:
            last = self._stored(self._compressor.flush())
        if self._stuffer is not None and (tail := self._stuffer.finish()):
            self.crc = crc32c(tail, self.crc)
            self.stored_size += len(tail)
            last += tail
        return last


class _PayloadSource:
    """The stored bytes of one entry, read in order, their checksum kept;
    unstuffed as they are read if the archive stuffs payloads."""

    __slots__ = ("_end", "_position", "_pread", "crc", "stuffed")

    def __init__(
        self, pread: Callable[[int, int], bytes], offset: int, size: int, stuffed: bool
    ) -> None:
        self._pread = pread
        self._position = offset
        self._end = offset + size
        self.stuffed = stuffed
        self.crc = 0

    @property
    def left(self) -> int:
        return self._end - self._position

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left, CHUNK)
        if size <= 0:
            return b""
        if self.stuffed:
            size = min(max(size, 16), self.left)  # more than a held-back end
        final = size == self.left
        data = self._pread(self._position, size)
        if len(data) != size:
            raise DecodeError("the archive ends inside an entry")
        if self.stuffed and not final and (cut := unfinished_run(data)):
            # A run and the 00 after it are undone together: read what may
            # begin one with what follows, next time.
            data = data[:-cut]
        self._position += len(data)
        self.crc = crc32c(data, self.crc)
        if not self.stuffed:
            return data
        plain = unstuff(data)
        if plain is None:
            raise DecodeError(
                "stuffed payload holds a run of the trailer magic without "
                "the 00 after it"
            )
        return plain


class EntryDecoder:
    """An entry's data, read from its stored bytes a bounded piece at a time."""

    __slots__ = (
        "_done",
        "_inflater",
        "_leftover",
        "_pending",
        "_reader",
        "_source",
        "crc",
        "data_size",
        "size",
    )

    def __init__(
        self,
        pread: Callable[[int, int], bytes],
        offset: int,
        stored_size: int,
        codec: int,
        data_size: int,
        crc: int,
        stuffed: bool,
    ) -> None:
        self._source = _PayloadSource(pread, offset, stored_size, stuffed)
        self.crc = crc
        self.size = data_size
        self.data_size = 0
        self._pending: Iterator[bytes] = iter(())
        self._leftover = b""
        self._done = False
        self._inflater = GzipInflater() if codec == Codec.GZIP else None
        # A stream reader gives bounded output however much a frame claims
        # (it needs only the source's read()).
        self._reader = (
            zstandard.ZstdDecompressor().stream_reader(
                self._source,  # type: ignore[arg-type]
                read_size=CHUNK,
            )
            if codec == Codec.ZSTD
            else None
        )

    @property
    def done(self) -> bool:
        """True once all the data has been given and checked."""
        return self._done

    def read(self, limit: int = CHUNK) -> bytes:
        """Up to ``limit`` bytes of data (fewer only at the end), or b"" at
        the end. The call that reaches the end also checks the payload's
        checksum and sizes, so that `done` is then true.

        Raises `DecodeError` if the stored bytes are damaged.
        """
        if self._done:
            return b""
        limit = max(1, min(limit, CHUNK))
        parts = []
        got = 0
        while got < limit:
            piece = self._next(limit - got)
            if not piece:
                self._finish()
                break
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _next(self, limit: int) -> bytes:
        """The next piece of data, at most ``limit`` bytes; b"" at the end."""
        if self._leftover:
            piece, self._leftover = self._leftover[:limit], self._leftover[limit:]
            return piece
        while True:
            for out in self._pending:
                self._count(out)
                if len(out) > limit:
                    out, self._leftover = out[:limit], out[limit:]
                return out
            if self._reader is not None:
                try:
                    return self._count(self._reader.read(limit))
                except zstandard.ZstdError as error:
                    raise DecodeError(f"zstd data is damaged ({error})") from None
            data = self._source.read(CHUNK if self._inflater else limit)
            if not data:
                if self._inflater is not None:
                    self._inflater.finish()
                return b""
            if self._inflater is None:
                out = self._count(data)
                if len(out) > limit:  # a stuffed read may give a few bytes more
                    out, self._leftover = out[:limit], out[limit:]
                return out
            self._pending = self._inflater.feed(data)

    def _count(self, out: bytes) -> bytes:
        self.data_size += len(out)
        if self.data_size > self.size:
            raise DecodeError("entry holds more data than its trailer says")
        return out

    def _finish(self) -> None:
        self._done = True
        if self._source.left:
            raise DecodeError("bytes follow the end of the compressed data")
        if self._source.crc != self.crc:
            raise DecodeError("entry checksum does not match")
        if self.data_size != self.size:
            raise DecodeError("entry holds less data than its trailer says")
