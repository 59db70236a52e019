"""Streaming an archive entry's payload in and out, in bounded memory.

`EntryEncoder` turns the bytes written to an entry into the bytes
stored (compressing them, or inflating bytes that arrive gzip-compressed),
chunk by chunk. `EntryDecoder` turns stored bytes back into the
entry's data, chunk by chunk, checking the payload's checksum and sizes at
the end. Neither ever holds more than a chunk's worth of output, whatever
the input claims; both are pure code. The decoder is push-style: each
`EntryDecoder.read()` is a generator that yields the stored byte ranges it
wants ([`Read`][aiorecords._wants.Read]) and returns the data they decode to.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator, Iterator
from typing import Final, Protocol

import zstandard
from crc32c import crc32c

from .._codecs import ZSTD_LEVEL, DecodeError
from .._wants import Read
from ._format import Codec, Stuffer, unfinished_run, unstuff

__all__ = ["CHUNK", "EntryDecoder", "EntryEncoder", "GzipInflater", "ZstdInflater"]

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


# A zstd block regenerates at most this many bytes (the format's
# Block_Maximum_Size), whatever its compressed size (an RLE block is 4 bytes).
_ZSTD_BLOCK_MAX: Final = 128 * 1024
# Blocks completed per call of the decompressor: its output is then at most
# this many blocks and part of one more, a chunk.
_ZSTD_BLOCKS_PER_STEP: Final = CHUNK // _ZSTD_BLOCK_MAX - 1
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# States of the frame walk.
_HEADER, _BLOCK_HEADER, _BLOCK_BODY, _CHECKSUM, _DONE = range(5)


class ZstdInflater:
    """Decompresses one zstd frame a bounded step at a time.

    python-zstandard's push decompressor gives all the output of what it is
    fed, so a few bytes of RLE blocks could make gigabytes. The frame is
    therefore walked here, block header by block header, and fed to it a few
    whole blocks at a time: no step makes more than a chunk.
    """

    __slots__ = (
        "_checksum",
        "_decompressor",
        "_header",
        "_last",
        "_left",
        "_state",
    )

    def __init__(self) -> None:
        # Output a chunk at a time (what a step makes at most): no joins.
        self._decompressor = zstandard.ZstdDecompressor().decompressobj(
            write_size=CHUNK
        )
        self._state = _HEADER
        self._header = b""  # the frame or block header gathered so far
        self._left = 0  # bytes of the current block body, or checksum
        self._checksum = False
        self._last = 0  # the block being read is the frame's last

    def feed(
        self, data: bytes | bytearray | memoryview, limit: int = CHUNK
    ) -> Iterator[bytes]:
        """The data decompressed from ``data``, a bounded piece at a time
        (``limit`` is for the interface's sake: pieces are at most a chunk)."""
        view = memoryview(data)
        while view:
            piece, view = self._split(view)
            try:
                out = self._decompressor.decompress(piece)
            except zstandard.ZstdError as error:
                raise DecodeError(f"zstd data is damaged ({error})") from None
            if out:
                yield out

    def _split(self, view: memoryview) -> tuple[memoryview, memoryview]:
        """The first piece of ``view`` to decompress (ending once a few
        blocks are complete), and the rest."""
        at = 0
        blocks = 0
        while at < len(view) and blocks < _ZSTD_BLOCKS_PER_STEP:
            state = self._state
            if state == _DONE:
                raise DecodeError("bytes follow the end of the compressed data")
            if state in (_BLOCK_BODY, _CHECKSUM):
                step = min(self._left, len(view) - at)
                at += step
                self._left -= step
                if not self._left:
                    if state == _CHECKSUM:
                        self._state = _DONE
                    else:
                        blocks += 1
                        self._end_block()
                continue
            wanted = self._header_size()
            take = min(wanted - len(self._header), len(view) - at)
            self._header += bytes(view[at : at + take])
            at += take
            if len(self._header) == wanted or (
                state == _HEADER and len(self._header) == 5
            ):
                self._parse_header()
        return view[:at], view[at:]

    def _header_size(self) -> int:
        if self._state == _BLOCK_HEADER:
            return 3
        if len(self._header) < 5:
            return 5
        descriptor = self._header[4]
        single = descriptor & 0x20
        content_size = (0, 2, 4, 8)[descriptor >> 6] or (1 if single else 0)
        return 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size

    def _parse_header(self) -> None:
        header = self._header
        if self._state == _BLOCK_HEADER:
            value = int.from_bytes(header, "little")
            kind, size = (value >> 1) & 3, value >> 3
            self._last = value & 1
            if kind == 3:
                raise DecodeError("zstd data is damaged (reserved block type)")
            if size > _ZSTD_BLOCK_MAX:
                raise DecodeError("zstd data is damaged (block too large)")
            self._header = b""
            self._left = 1 if kind == 1 else size
            self._state = _BLOCK_BODY
            if not self._left:
                self._end_block()
            return
        if header[:4] != _ZSTD_MAGIC:
            raise DecodeError("zstd data is damaged (not a zstd frame)")
        if header[4] & 0x08:
            raise DecodeError("zstd data is damaged (reserved frame header bit)")
        if len(header) < self._header_size():
            return  # the descriptor is known; the rest of the header comes
        self._checksum = bool(header[4] & 0x04)
        self._header = b""
        self._state = _BLOCK_HEADER

    def _end_block(self) -> None:
        if not self._last:
            self._state = _BLOCK_HEADER
        elif self._checksum:
            self._state, self._left = _CHECKSUM, 4
        else:
            self._state = _DONE

    def finish(self) -> None:
        """Raise `DecodeError` if the data stopped inside the frame."""
        if self._state != _DONE or not self._decompressor.eof:
            raise DecodeError("zstd data ends before its frame does")


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

    __slots__ = ("_end", "_position", "crc", "stuffed")

    def __init__(self, offset: int, size: int, stuffed: bool) -> None:
        self._position = offset
        self._end = offset + size
        self.stuffed = stuffed
        self.crc = 0

    @property
    def left(self) -> int:
        return self._end - self._position

    def want(self, size: int) -> Read | None:
        """The stored bytes to read next (up to ``size``); None at the end."""
        size = min(size, self.left, CHUNK)
        if size <= 0:
            return None
        if self.stuffed:
            size = min(max(size, 16), self.left)  # more than a held-back end
        return Read(self._position, size)

    def take(self, want: Read, data: bytes) -> bytes:
        """The entry's data in ``data``, the bytes `want()` asked for."""
        if len(data) != want.size:
            raise DecodeError("the archive ends inside an entry")
        final = want.size == self.left
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


class _Inflater(Protocol):
    def feed(
        self, data: bytes | bytearray | memoryview, limit: int = ...
    ) -> Iterator[bytes]: ...

    def finish(self) -> None: ...


class EntryDecoder:
    """An entry's data, read from its stored bytes a bounded piece at a time."""

    __slots__ = (
        "_done",
        "_inflater",
        "_leftover",
        "_pending",
        "_source",
        "crc",
        "data_size",
        "size",
    )

    def __init__(
        self,
        offset: int,
        stored_size: int,
        codec: int,
        data_size: int,
        crc: int,
        stuffed: bool,
    ) -> None:
        self._source = _PayloadSource(offset, stored_size, stuffed)
        self.crc = crc
        self.size = data_size
        self.data_size = 0
        self._pending: Iterator[bytes] = iter(())
        self._leftover = b""
        self._done = False
        self._inflater: _Inflater | None = (
            GzipInflater()
            if codec == Codec.GZIP
            else ZstdInflater()
            if codec == Codec.ZSTD
            else None
        )

    @property
    def done(self) -> bool:
        """True once all the data has been given and checked."""
        return self._done

    def read(self, limit: int = CHUNK) -> Generator[Read, bytes, bytes]:
        """Up to ``limit`` bytes of data (fewer only at the end), or b"" at
        the end, reading the stored bytes it yields for. The call that
        reaches the end also checks the payload's checksum and sizes, so
        that `done` is then true.

        Raises `DecodeError` if the stored bytes are damaged.
        """
        if self._done:
            return b""
        limit = max(1, min(limit, CHUNK))
        parts = []
        got = 0
        while got < limit:
            piece = yield from self._next(limit - got)
            if not piece:
                self._finish()
                break
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read1(self, limit: int = CHUNK) -> Generator[Read, bytes, bytes]:
        """The next piece of data as it comes, at most ``limit`` bytes (at
        least one, or b"" at the end): a stream's step, which gathers
        nothing more and so copies nothing. As with `read()`, the call that
        gives the last data also checks the end.
        """
        if self._done:
            return b""
        piece = yield from self._next(max(1, min(limit, CHUNK)))
        if not piece:
            self._finish()
        elif not self._source.left and not self._leftover:
            # Every stored byte is read (no want comes of this): what the
            # decompressor still holds, or the end, is known now.
            more = yield from self._next(CHUNK)
            if more:
                self._leftover = more + self._leftover if self._leftover else more
            else:
                self._finish()
        return piece

    def _next(self, limit: int) -> Generator[Read, bytes, bytes]:
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
            want = self._source.want(CHUNK if self._inflater else limit)
            data = b"" if want is None else self._source.take(want, (yield want))
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
