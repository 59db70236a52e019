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

    def step(self, data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
        """Inflate from the start of ``data``, at most a chunk: how many bytes
        of ``data`` that used, and the output. With nothing left to feed,
        ``data`` empty gives what the inflater still holds."""
        if not data and not self._mid_member:
            return 0, b""
        self._mid_member = True
        try:
            out = self._inflater.decompress(data, CHUNK)
        except zlib.error as error:
            raise DecodeError(f"gzip data is damaged ({error})") from None
        if self._inflater.eof:
            # A member ended; what follows it is the next member's.
            used = len(data) - len(self._inflater.unused_data)
            self._inflater = zlib.decompressobj(_GZIP)
            self._mid_member = False
            self._members += 1
        else:
            used = len(data) - len(self._inflater.unconsumed_tail)
        return used, out

    def finish(self) -> None:
        """Raise `DecodeError` if the stream stopped inside a member."""
        if self._mid_member:
            raise DecodeError("gzip data ends before its stream does")


# A zstd block regenerates at most this many bytes (the format's
# Block_Maximum_Size), whatever its compressed size (an RLE block is 4 bytes).
_ZSTD_BLOCK_MAX: Final = 128 * 1024
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# Where the frame walk stands: each names the unit that comes next.
_HEADER, _BLOCK, _CHECKSUM, _DONE = range(4)
# Stored bytes a step may want beyond a chunk: a chunk's worth of whole
# incompressible blocks is a chunk plus their 3-byte headers and the frame's.
SLACK: Final = 4096
# An inflated payload is read again once fewer stored bytes than this are
# held, so that a step has enough to make a whole chunk.
_REFILL: Final = CHUNK // 2


class ZstdInflater:
    """Decompresses one zstd frame a bounded step at a time.

    python-zstandard's push decompressor gives all the output of what it is
    fed, so a few bytes of RLE blocks could make gigabytes. The frame is
    therefore walked here, unit by unit (the frame header, each block, the
    checksum), and `step()` feeds it only whole units whose output fits a
    chunk. A step's output is one piece, so a chunk of incompressible data
    is one chunk out, with no joins.
    """

    __slots__ = ("_checksum", "_decompressor", "_state")

    def __init__(self) -> None:
        # Output a chunk at a time (what a step makes at most): no joins.
        self._decompressor = zstandard.ZstdDecompressor().decompressobj(
            write_size=CHUNK
        )
        self._state = _HEADER
        self._checksum = False

    def step(self, data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
        """Decompress the whole units at the start of ``data`` whose output
        fits a chunk: how many bytes of ``data`` that used, and their
        output. Using none means ``data`` ends inside its first unit: step
        again with the same bytes and more after them.

        Raises `DecodeError` for a damaged header, as soon as its bytes
        are in ``data``.
        """
        # Released on the way out, an error's too: a view kept by a
        # traceback would pin a caller's bytearray against resizing.
        with memoryview(data) as view:
            end = self._whole_units(view)
            if not end:
                return 0, b""
            try:
                with view[:end] as units:
                    return end, self._decompressor.decompress(units)
            except zstandard.ZstdError as error:
                raise DecodeError(f"zstd data is damaged ({error})") from None

    def _whole_units(self, view: memoryview) -> int:
        """How many bytes at the start of ``view`` make whole units whose
        output fits a chunk; the walk's state moves past them."""
        at = out = 0
        size = len(view)
        state, checksum = self._state, self._checksum
        while at < size:
            if state == _DONE:
                raise DecodeError("bytes follow the end of the compressed data")
            if state == _CHECKSUM:
                if size - at < 4:
                    break
                at, state = at + 4, _DONE
                continue
            if state == _HEADER:
                unit = _frame_header_size(view[at : at + 5])
                if unit is None or size - at < unit:
                    break
                checksum = bool(view[at + 4] & 0x04)
                at, state = at + unit, _BLOCK
                continue
            if size - at < 3:
                break
            header = int.from_bytes(view[at : at + 3], "little")
            kind, regenerated = (header >> 1) & 3, header >> 3
            if kind == 3:
                raise DecodeError("zstd data is damaged (reserved block type)")
            if regenerated > _ZSTD_BLOCK_MAX:
                raise DecodeError("zstd data is damaged (block too large)")
            # A compressed block's header gives its compressed size; what it
            # regenerates is at most the maximum.
            unit = 3 + (1 if kind == 1 else regenerated)
            if kind == 2:
                regenerated = _ZSTD_BLOCK_MAX
            if size - at < unit or (out and out + regenerated > CHUNK):
                break
            at, out = at + unit, out + regenerated
            if header & 1:  # the frame's last block
                state = _CHECKSUM if checksum else _DONE
        self._state, self._checksum = state, checksum
        return at

    def finish(self) -> None:
        """Raise `DecodeError` if the data stopped inside the frame."""
        if self._state != _DONE or not self._decompressor.eof:
            raise DecodeError("zstd data ends before its frame does")


def _frame_header_size(head: memoryview) -> int | None:
    """The size of the zstd frame header that ``head`` (its first five
    bytes) begins; None if fewer than five bytes are there yet."""
    if len(head) < 5:
        return None
    if bytes(head[:4]) != _ZSTD_MAGIC:
        raise DecodeError("zstd data is damaged (not a zstd frame)")
    descriptor = head[4]
    if descriptor & 0x08:
        raise DecodeError("zstd data is damaged (reserved frame header bit)")
    single = descriptor & 0x20
    content_size = (0, 2, 4, 8)[descriptor >> 6] or (1 if single else 0)
    return 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size


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
    unstuffed as they are read if the archive stuffs payloads.

    An inflater may leave the end of a read unused (the start of a block it
    needs whole): those bytes are `held`. While they are the file's own
    bytes (always, unstuffed; stuffed, unless the read held a run to undo,
    which almost never happens), the next read starts again where they
    start and the file gives them again with what follows, in one piece
    with no copy; their checksum is taken as they are used, so that what is
    checked is what is decoded. Bytes changed by unstuffing are checked as
    they are read, and the next read's are joined to them.
    """

    __slots__ = ("_changed", "_end", "_position", "_read_to", "crc", "held", "stuffed")

    def __init__(self, offset: int, size: int, stuffed: bool) -> None:
        self._position = offset  # where the held bytes start in the file
        self._read_to = offset  # the first stored byte not yet read
        self._end = offset + size
        self._changed = False  # the held bytes are not the file's own
        self.stuffed = stuffed
        self.crc = 0
        self.held = memoryview(b"")

    @property
    def left(self) -> int:
        """How many stored bytes are not read yet."""
        return self._end - self._read_to

    def want(self, size: int) -> Read | None:
        """The stored bytes to read next (up to ``size``, and more than are
        held); None if every stored byte is read."""
        if not self.left:
            return None
        start = self._read_to if self._changed else self._position
        size = min(size, self._end - start)
        if self.stuffed:
            size = min(max(size, 16), self._end - start)  # past a held-back end
        return Read(start, size)

    def _plain(self, want: Read, data: bytes) -> bytes:
        """``data`` checked and unstuffed; what is read moves past it."""
        if len(data) != want.size:
            raise DecodeError("the archive ends inside an entry")
        if self.stuffed:
            if want.offset + want.size != self._end and (cut := unfinished_run(data)):
                # A run and the 00 after it are undone together: read what
                # may begin one with what follows, next time.
                data = data[:-cut]
            plain = unstuff(data)
            if plain is None:
                raise DecodeError(
                    "stuffed payload holds a run of the trailer magic without "
                    "the 00 after it"
                )
        else:
            plain = data
        self._read_to = want.offset + len(data)
        if plain is not data and len(plain) != len(data):
            self.crc = crc32c(data, self.crc)  # the file's bytes, not these
            self._changed = True
        return plain

    def take(self, want: Read, data: bytes) -> bytes:
        """The entry's data in ``data``, the bytes `want()` asked for, all
        used at once (for a payload stored as it is)."""
        plain = self._plain(want, data)
        if not self._changed:
            self.crc = crc32c(plain, self.crc)
        self._changed = False
        self._position = self._read_to
        return plain

    def hold(self, want: Read, data: bytes) -> None:
        """Hold ``data``, the bytes `want()` asked for, to be `use()`d."""
        was_changed = self._changed
        plain = self._plain(want, data)
        if was_changed:
            # Held bytes already checked: these join them.
            self.held = memoryview(bytes(self.held) + plain)
        else:
            # ``data`` starts where the held bytes do. Bytes changed now were
            # checked as read, and so were those held again with them.
            self.held = memoryview(plain)

    def use(self, size: int) -> None:
        """The first ``size`` held bytes are used."""
        if not self._changed:
            self.crc = crc32c(self.held[:size], self.crc)
            self._position += size
        self.held = self.held[size:]
        if not self.held:
            self._changed = False
            self._position = self._read_to


class _Inflater(Protocol):
    def step(self, data: bytes | bytearray | memoryview) -> tuple[int, bytes]: ...

    def finish(self) -> None: ...


class EntryDecoder:
    """An entry's data, read from its stored bytes a bounded piece at a time."""

    __slots__ = (
        "_done",
        "_inflater",
        "_leftover",
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
        source, inflater = self._source, self._inflater
        if inflater is None:
            want = source.want(limit)
            if want is None:
                return b""
            return self._cut(source.take(want, (yield want)), limit)
        stalled = False
        while True:
            if source.left and (stalled or len(source.held) < _REFILL):
                # Too little is held for a chunk of output, or it ends inside
                # what the inflater needs whole: read more.
                want = source.want(CHUNK + SLACK)
                assert want is not None
                source.hold(want, (yield want))
            used, out = inflater.step(source.held)
            if used:
                source.use(used)
            if out:
                return self._cut(out, limit)
            stalled = not used
            if stalled and not source.left:
                inflater.finish()  # raises if the data stopped short
                return b""

    def _cut(self, out: bytes, limit: int) -> bytes:
        """``out``, counted; what passes ``limit`` is kept for next time."""
        self._count(out)
        if len(out) > limit:
            out, self._leftover = out[:limit], out[limit:]
        return out

    def _count(self, out: bytes) -> bytes:
        self.data_size += len(out)
        if self.data_size > self.size:
            raise DecodeError("entry holds more data than its trailer says")
        return out

    def _finish(self) -> None:
        self._done = True
        if self._source.left or self._source.held:
            raise DecodeError("bytes follow the end of the compressed data")
        if self._source.crc != self.crc:
            raise DecodeError("entry checksum does not match")
        if self.data_size != self.size:
            raise DecodeError("entry holds less data than its trailer says")
