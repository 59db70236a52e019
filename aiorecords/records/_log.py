"""The LevelDB log format: 32 KiB blocks of checksummed, fragmented records.

A file is a sequence of 32,768-byte blocks (the last one may be partial).
Each block holds physical records::

    checksum: uint32  (little-endian; masked CRC-32C of the type and the data)
    length:   uint16  (little-endian)
    type:     uint8   (FULL=1, FIRST=2, MIDDLE=3, LAST=4)
    data:     length bytes

A record that does not fit in the rest of a block is split into a FIRST
fragment, MIDDLE fragments and a LAST one. A record never starts in the last
six bytes of a block: they are zero-filled and skipped. With exactly seven
bytes left, a non-empty record starts with an empty FIRST fragment.

`LogEncoder` writes exactly what LevelDB's ``log::Writer`` writes;
`LogDecoder` reads as LevelDB's ``log::Reader`` does, including how
it drops damaged bytes (and reports them), ignores a torn tail, and starts
at an arbitrary offset. Both are pure code over bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from crc32c import crc32c

from .._crc import MASK_DELTA, mask_crc, unmask_crc
from .._kernels import UNLIMITED, compiled, frame_each
from .._skipped import SkippedRegion

__all__ = [
    "BLOCK_SIZE",
    "FIRST",
    "FULL",
    "HEADER_SIZE",
    "LAST",
    "MIDDLE",
    "LogDecoder",
    "LogEncoder",
    "AppendPoint",
    "Record",
    "byte_ranges",
    "encode_records",
    "full_records",
    "mask_crc",
    "starts_like_log",
    "unmask_crc",
]

BLOCK_SIZE: Final = 32768
HEADER_SIZE: Final = 7
ZERO, FULL, FIRST, MIDDLE, LAST = 0, 1, 2, 3, 4

_HEADER: Final = struct.Struct("<IHB")
# CRC-32C of each type byte alone, extended by the data (as LevelDB does).
_TYPE_CRC: Final = tuple(crc32c(bytes([kind])) for kind in range(256))
_ZEROS: Final = bytes(HEADER_SIZE)
_FULL_CRC: Final = _TYPE_CRC[FULL]
_pack_header: Final = _HEADER.pack


def byte_ranges(size: int, per_range: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``size`` bytes, each starting on a
    block boundary and ``per_range`` bytes long (rounded up to whole
    blocks) but the last; one empty range for an empty file."""
    step = max(1, -(-per_range // BLOCK_SIZE)) * BLOCK_SIZE
    if size == 0:
        return [(0, 0)]
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def _header(kind: int, data: bytes | bytearray | memoryview) -> bytes:
    return _HEADER.pack(mask_crc(crc32c(data, _TYPE_CRC[kind])), len(data), kind)


def starts_like_log(head: bytes) -> bool:
    """Whether ``head`` (a file's first block, or the whole of a shorter
    file) begins with a whole LevelDB log fragment whose checksum holds."""
    if len(head) < HEADER_SIZE:
        return False
    checksum, length, kind = _HEADER.unpack_from(head)
    if kind not in (FULL, FIRST, MIDDLE, LAST) or length > BLOCK_SIZE - HEADER_SIZE:
        return False
    data = head[HEADER_SIZE : HEADER_SIZE + length]
    return len(data) == length and crc32c(data, _TYPE_CRC[kind]) == unmask_crc(checksum)


class LogEncoder:
    """Frames records as LevelDB's ``log::Writer`` does.

    ``block_offset`` is where in its block the output starts: 0 for a new
    file, the file size modulo the block size to continue an existing one.
    """

    __slots__ = ("block_offset",)

    def __init__(self, block_offset: int = 0) -> None:
        # 32768: the last record ended the block exactly (the next starts
        # a new one), as LevelDB's writer allows.
        if not 0 <= block_offset <= BLOCK_SIZE:
            raise ValueError("block offset must be in 0..32768")
        self.block_offset = block_offset

    def encode(self, data: bytes | bytearray | memoryview, out: bytearray) -> None:
        """Append the physical records of one record to ``out``."""
        offset = self.block_offset
        left = len(data)
        if BLOCK_SIZE - offset >= HEADER_SIZE + left:
            # The common case, kept lean: the whole record fits in this block.
            crc = crc32c(data, _FULL_CRC)
            out += _pack_header(
                (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF, left, FULL
            )
            out += data
            self.block_offset = offset + HEADER_SIZE + left
            return
        view = memoryview(data)
        begin = True
        while True:
            room = BLOCK_SIZE - offset
            if room < HEADER_SIZE:
                out += _ZEROS[:room]  # the trailer
                offset = 0
                room = BLOCK_SIZE
            size = min(left, room - HEADER_SIZE)
            end = size == left
            kind = (FULL if end else FIRST) if begin else (LAST if end else MIDDLE)
            fragment = view[:size]
            out += _header(kind, fragment)
            out += fragment
            offset += HEADER_SIZE + size
            view = view[size:]
            left -= size
            begin = False
            if end:
                break
        self.block_offset = offset

    def encode_many(
        self,
        records: Sequence[bytes | bytearray | memoryview | str],
        start: int,
        stop: int,
        out: bytearray,
        max_bytes: int,
    ) -> int:
        """Append the physical records of ``records[start:stop]`` to ``out``,
        in order, until ``out`` has grown by ``max_bytes`` or more; return the
        index reached. (``str`` is framed as UTF-8.)

        A record that is neither bytes nor str raises `TypeError` after the
        records before it are framed, as `encode()` one at a time would.
        """
        try:
            self.block_offset, reached = fast_encode_records(
                records, start, stop, self.block_offset, out, max_bytes
            )
        except (TypeError, UnicodeError):
            # Nothing of the call was framed: again one by one, so that the
            # records before the bad one are, and it raises.
            frame_each(self.encode, records, start, stop, out, UNLIMITED)
            raise
        return reached

    def padding(self) -> bytes:
        """Zeros up to the end of the current block (none at a boundary).

        The App Engine ``RecordsWriter`` pads its last block this way on close.
        """
        if self.block_offset == 0:
            return b""
        pad = bytes(BLOCK_SIZE - self.block_offset)
        self.block_offset = 0
        return pad


def encode_records(
    records: Sequence[bytes | bytearray | memoryview | str],
    start: int,
    stop: int,
    block_offset: int,
    out: bytearray,
    max_bytes: int,
) -> tuple[int, int]:
    """The reference of the compiled ``log_encode`` kernel: frame
    ``records[start:stop]`` from ``block_offset`` on until ``out`` has grown
    by ``max_bytes``; ``(block offset, index reached)``. On an error
    nothing of the call is left in ``out``."""
    encoder = LogEncoder(block_offset)
    size = len(out)
    try:
        index = frame_each(encoder.encode, records, start, stop, out, max_bytes)
    except BaseException:
        del out[size:]
        raise
    return encoder.block_offset, index


#: One logical record and where it lies in the file: ``(data, start, end)``,
#: ``start`` the offset of its first physical record, ``end`` the offset just
#: past its last one. (A plain tuple: the reader makes millions of them.)
Record = tuple[bytes, int, int]


class LogDecoder:
    """Reads records as LevelDB's ``log::Reader`` does, fed bytes as they come.

    Feed it the file from `wanted` on (`feed()`), then call
    `read()` until it returns None: it wants more bytes or, after
    `feed_eof()`, the file is done (`finished`). Bytes it has to
    drop are appended to `dropped` as [`SkippedRegion`][aiorecords.SkippedRegion]
    (LevelDB's reporter sees the same counts and reasons), except those LevelDB drops
    silently: a torn record at the end of the file, and zero-filled
    (preallocated) space. The torn record is kept apart, as `torn_tail`,
    for a verifier to report.

    ``start`` is LevelDB's initial offset: the first record returned is the
    first one whose first fragment starts at or after it. ``stop`` ends the
    reading before the first record that starts at or after it (a record in
    progress is still finished). A record over ``max_record_size`` is dropped
    as damaged, so a damaged file cannot make the decoder gather an unbounded
    record; nothing else it holds is larger than what it was fed.
    """

    __slots__ = (
        "_at_eof",
        "_block_start",
        "_buffer",
        "_buffer_start",
        "_fragments",
        "_fragments_size",
        "_in_record",
        "_pos",
        "_record_start",
        "_resyncing",
        "_skip_block",
        "_stopped",
        "dropped",
        "max_record_size",
        "start",
        "stop",
        "torn_tail",
    )

    def __init__(
        self, start: int = 0, stop: int | None = None, max_record_size: int = 1 << 62
    ) -> None:
        if start < 0:
            raise ValueError("start cannot be negative")
        self.start = start
        self.stop = stop
        self.max_record_size = max_record_size
        self.dropped: list[SkippedRegion] = []
        #: The record the file ends in the middle of, once the end is fed
        #: and reached: LevelDB drops it without a report (its writer died
        #: writing it, or is still writing), so it is not in `dropped`.
        self.torn_tail: SkippedRegion | None = None
        first_block = start - start % BLOCK_SIZE
        if start % BLOCK_SIZE > BLOCK_SIZE - 6:
            first_block += BLOCK_SIZE  # a record cannot start in a trailer
        self._block_start = first_block  # file offset of the current block
        self._pos = 0  # position in the current block
        self._buffer = b""  # the bytes fed and still needed ...
        self._buffer_start = first_block  # ... from this file offset
        self._at_eof = False
        self._skip_block = False
        self._resyncing = start > 0
        self._in_record = False
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._record_start = 0
        self._stopped = False

    @property
    def wanted(self) -> int:
        """The file offset of the next byte to feed."""
        return self._buffer_start + len(self._buffer)

    @property
    def position(self) -> int:
        """The offset just past what has been decoded."""
        return self._block_start + self._pos

    @property
    def finished(self) -> bool:
        """True when no more records can come (end of file, or ``stop``)."""
        return self._stopped

    @property
    def record_in_progress(self) -> tuple[int, bytes] | None:
        """``(offset, header)`` of the fragmented record being assembled: the
        file offset of its FIRST fragment and the 7 header bytes that
        fragment has in the file; None between records.

        A follower checks that those bytes are still there before it joins
        later fragments to the record: a writer restarting after a crash
        cuts a torn record back to its FIRST fragment and writes others in
        its place (see `AppendPoint`).
        """
        if not self._in_record:
            return None
        first = self._fragments[0]
        return self._record_start, _header(FIRST, first)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Give the next bytes of the file, from `wanted` on."""
        if self._at_eof:
            raise RuntimeError("feed() after feed_eof()")
        done = self._block_start - self._buffer_start
        if done >= len(self._buffer):
            # All decoded (the usual case, fed block by block): let the old
            # bytes go before copying the new ones.
            self._buffer = b""
            self._buffer = bytes(data)
        elif done:
            self._buffer = self._buffer[done:] + bytes(data)
        else:
            self._buffer += bytes(data)
        self._buffer_start = self._block_start

    def feed_eof(self, at: int | None = None) -> None:
        """Say the file ends where the bytes fed so far end (``at`` is for
        formats that stop at damage; a log is read to its end)."""
        self._at_eof = True

    @property
    def needs_end(self) -> bool:
        """Always False: damage in a log is stepped over, never the end."""
        return False

    def discard_unread(self) -> None:
        """Forget the bytes fed beyond `position` (they will be fed
        again). A follower does this before each read: a writer that restarts
        after a crash may rewrite a torn tail the follower already saw."""
        if self._at_eof:
            raise RuntimeError("discard_unread() after feed_eof()")
        self._buffer = self._buffer[: self.position - self._buffer_start]

    @staticmethod
    def continuation(tail: bytes | bytearray | memoryview) -> int:
        """Where a writer may continue a file whose last, partial block is
        ``tail``: after the last physical record that is whole.

        A record the file ends in the middle of (a writer died writing it),
        or zero fill to the end, is not kept: records appended after it would
        be dropped with it by a reader. Damaged but whole records are kept
        (a reader reports them), so nothing readable is ever cut.
        """
        pos = 0
        size = len(tail)
        while size - pos >= HEADER_SIZE:
            _, length, kind = _HEADER.unpack_from(tail, pos)
            end = pos + HEADER_SIZE + length
            if end > size:
                return pos  # torn
            if kind == ZERO and length == 0 and not any(tail[pos:]):
                return pos  # zero fill to the end
            pos = end
        return pos if not any(tail[pos:]) or size - pos < HEADER_SIZE else size

    def _drop(self, size: int, reason: str, start: int | None = None) -> None:
        """Report ``size`` dropped bytes, from ``start`` (default: just before
        the position); nothing that lies before ``self.start``, as LevelDB."""
        if not size or self.position - size < self.start:
            return
        if start is None:
            start = self.position - size
        self.dropped.append(SkippedRegion(start, start + size, reason))

    def _reset_record(self) -> None:
        self._in_record = False
        self._fragments = []
        self._fragments_size = 0

    def _drop_record(self, reason: str, extra: int = 0) -> None:
        self._drop(self._fragments_size + extra, reason, self._record_start)
        self._reset_record()

    def read(self) -> Record | None:
        """The next record, or None if more bytes (or the end) are needed."""
        while not self._stopped:
            if (
                self.stop is not None
                and not self._in_record
                and self.position >= self.stop
            ):
                self._stopped = True  # nothing more can start in the range
                return None
            physical = self._physical()
            if physical is None:
                return None
            kind, data, where = physical
            if self._resyncing and kind != _BEFORE_START:
                # Started inside a record: skip its remaining fragments.
                if kind == MIDDLE:
                    continue
                self._resyncing = False
                if kind == LAST:
                    continue
            if kind in (FULL, FIRST) and self.stop is not None and where >= self.stop:
                self._stopped = True
                return None
            if kind == FULL:
                if self._in_record and self._fragments_size:
                    self._drop_record("partial record without end(1)")
                self._reset_record()
                return (bytes(data), where, self.position)
            if kind == FIRST:
                if self._in_record and self._fragments_size:
                    self._drop_record("partial record without end(2)")
                self._fragments = [bytes(data)]
                self._fragments_size = len(data)
                self._record_start = where
                self._in_record = True
            elif kind in (MIDDLE, LAST):
                if not self._in_record:
                    number = 1 if kind == MIDDLE else 2
                    self._drop(
                        len(data), f"missing start of fragmented record({number})"
                    )
                    continue
                self._fragments.append(bytes(data))
                self._fragments_size += len(data)
                if self._fragments_size > self.max_record_size:
                    self._drop_record("record larger than max_record_size")
                    self._resyncing = True  # skip the rest of it
                    if kind == LAST:
                        self._resyncing = False
                elif kind == LAST:
                    record = (
                        b"".join(self._fragments),
                        self._record_start,
                        self.position,
                    )
                    self._reset_record()
                    return record
            elif kind == _BAD:
                if self._in_record:
                    self._drop_record("error in middle of record")
            elif kind != _BEFORE_START:
                if self._in_record:
                    self._drop_record(f"unknown record type {kind}", len(data))
                else:
                    self._drop(len(data), f"unknown record type {kind}")
        return None

    def read_many(self, limit: int) -> list[Record | SkippedRegion]:
        """Up to ``limit`` records, with the regions dropped on the way in
        their places (they do not count towards the limit); empty when more
        bytes (or the end) are needed.

        The same as calling `read()` repeatedly, with a fast path for the
        usual case: whole records in one physical record each.
        """
        out: list[Record | SkippedRegion] = []
        append = out.append
        dropped = self.dropped
        stop = self.stop if self.stop is not None else UNLIMITED
        count = 0
        while count < limit:
            if not (
                self._in_record or self._resyncing or self._skip_block or self._stopped
            ):
                self._block_start, self._pos, taken = fast_full_records(
                    self._buffer,
                    self._buffer_start,
                    self._block_start,
                    self._pos,
                    self.start,
                    stop,
                    limit - count,
                    out,
                )
                count += taken
                if count >= limit:
                    break
            record = self.read()
            if dropped:
                out.extend(dropped)
                dropped.clear()
            if record is None:
                break
            append(record)
            count += 1
        return out

    def _physical(self) -> tuple[int, memoryview | bytes, int] | None:
        """The next physical record as ``(type, data, offset)``; type is
        ``_BAD`` for one that was dropped and ``_BEFORE_START`` for one that
        begins before ``start``. None when more bytes are needed or the file
        has ended.
        """
        while True:
            buffer = self._buffer
            base = self._block_start - self._buffer_start
            available = min(len(buffer) - base, BLOCK_SIZE)
            complete = available == BLOCK_SIZE
            pos = self._pos
            if self._skip_block:
                self._pos = available
                if complete:
                    self._next_block()
                    continue
                self._end_if_eof(torn=False)  # the rest was dropped already
                return None
            if available - pos < HEADER_SIZE:
                if complete:
                    self._next_block()  # a trailer to skip
                    continue
                # A torn header at the end is not an error (zeros there are
                # the padding of a closed writer, not even a torn header).
                tail = buffer[base + pos : base + available]
                self._end_if_eof(torn=self._in_record or any(tail))
                return None
            at = base + pos
            checksum, length, kind = _HEADER.unpack_from(buffer, at)
            end = pos + HEADER_SIZE + length
            if end > available:
                if complete:
                    self._pos = BLOCK_SIZE
                    self._drop(BLOCK_SIZE - pos, "bad record length")
                    self._next_block()
                    return (_BAD, b"", 0)
                # The writer died in the middle of the record: not an error.
                self._end_if_eof()
                return None
            if kind == ZERO and length == 0:
                # Zero-filled (preallocated) space: skip the block silently,
                # but it still ends a fragmented record in progress (as in
                # LevelDB): what follows it belongs to another record.
                self._skip_block = True
                return (_BAD, b"", 0)
            data = memoryview(buffer)[at + HEADER_SIZE : base + end]
            if crc32c(data, _TYPE_CRC[kind]) != unmask_crc(checksum):
                # The length may be what is damaged: trust nothing after it.
                self._pos = available
                self._drop(available - pos, "checksum mismatch")
                self._skip_block = True
                return (_BAD, b"", 0)
            self._pos = end
            where = self._block_start + pos
            if where < self.start:
                return (_BEFORE_START, b"", where)
            return (kind, data, where)

    def _next_block(self) -> None:
        self._block_start += BLOCK_SIZE
        self._pos = 0
        self._skip_block = False

    def _end_if_eof(self, torn: bool = True) -> None:
        """At the end of the file, stop; a record in progress is dropped
        silently (the writer died before finishing it), and noted as
        `torn_tail` if ``torn``."""
        if self._at_eof:
            if torn:
                start = self._record_start if self._in_record else self.position
                if start >= self.start:
                    self.torn_tail = SkippedRegion(
                        start, self.wanted, "torn record at the end"
                    )
            self._reset_record()
            self._stopped = True


def full_records(
    buffer: bytes | bytearray | memoryview,
    buffer_start: int,
    block_start: int,
    pos: int,
    start: int,
    stop: int,
    limit: int,
    out: list[Record | SkippedRegion],
) -> tuple[int, int, int]:
    """The decoder's fast path, and the reference of the compiled
    ``log_full_records`` kernel: up to ``limit`` whole FULL records from
    ``block_start + pos`` on (``buffer`` holds the file from
    ``buffer_start``), appended to ``out``; trailers of complete blocks are
    stepped over. It stops before anything else (another fragment type, zero
    fill, a checksum that fails, a record not all in the buffer, a record
    starting at or after ``stop`` or before ``start``), which the general
    path then handles. Returns ``(block_start, pos, count)``.
    """
    append = out.append
    unpack = _HEADER.unpack_from
    full_crc = _FULL_CRC
    size = len(buffer)
    offset = buffer_start  # of the buffer in the file
    base = block_start - offset  # of the block in the buffer
    count = 0
    while count < limit:
        at = base + pos
        if offset + at < start:
            break
        block_end = base + min(size - base, BLOCK_SIZE)
        last = min(block_end - HEADER_SIZE, stop - offset - 1)
        while at <= last and count < limit:
            checksum, length, kind = unpack(buffer, at)
            end = at + HEADER_SIZE + length
            if kind != FULL or end > block_end:
                break
            data = bytes(buffer[at + HEADER_SIZE : end])
            crc = crc32c(data, full_crc)
            if ((((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF) != checksum:
                break
            append((data, offset + at, offset + end))
            count += 1
            at = end
        pos = at - base
        if (
            count < limit
            and block_end - at < HEADER_SIZE
            and block_end - base == BLOCK_SIZE
            and offset + at < stop
        ):
            base += BLOCK_SIZE  # over the trailer, to the next block
            pos = 0
            continue
        break
    return base + offset, pos, count


# The compiled kernels where they are built (aiorecords._kernels).
fast_full_records = compiled.log_full_records if compiled else full_records
fast_encode_records = compiled.log_encode if compiled else encode_records

# Pseudo-types for physical records the reader drops or skips.
_BAD: Final = -1
_BEFORE_START: Final = -2


class AppendPoint:
    """Where a writer may continue a log file: just past its last whole
    logical record.

    A writer that died in the middle of a record spanning blocks leaves its
    FIRST and MIDDLE fragments behind; records appended after them would be
    read as damage ("partial record without end"), so they are cut too, back
    to the FIRST fragment, however many blocks back it lies. The blocks are
    examined from the last backwards, one at a time::

        point = AppendPoint(size)
        while (want := point.wanted) is not None:
            point.feed(read(*want))
        io.truncate(point.end)
    """

    __slots__ = ("_block", "_open", "end", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        #: The answer, once known.
        self.end: int | None = None if size else 0
        self._block = (size - 1) // BLOCK_SIZE * BLOCK_SIZE if size else 0
        self._open = False  # a record continues past the blocks seen

    @property
    def wanted(self) -> tuple[int, int] | None:
        """``(offset, length)`` of the block to feed next; None when done."""
        if self.end is not None:
            return None
        return self._block, min(BLOCK_SIZE, self.size - self._block)

    def feed(self, block: bytes | bytearray | memoryview) -> None:
        """Give the block `wanted` asked for."""
        if self.end is not None:
            raise RuntimeError("the append point is already known")
        start = self._block
        fragments = _whole_fragments(block)
        if not self._open:
            tail = LogDecoder.continuation(block)
            fragments = [f for f in fragments if f[1] <= tail]
            if not fragments:
                if start == 0:
                    self.end = tail
                    return
                # The block holds nothing whole: what came before decides.
                self._open = True
                self._block -= BLOCK_SIZE
                return
            _, end, kind = fragments[-1]
            if kind in (FULL, LAST) or kind not in (FIRST, MIDDLE):
                if len(block) == BLOCK_SIZE and not any(block[tail:]):
                    # A whole block ending in zeros after a whole record:
                    # padding (the App Engine writer's close) or a trailer.
                    # The next writer starts at the next block, as padding
                    # means; cutting it would shrink the log under a reader
                    # that has already gone past it.
                    self.end = start + BLOCK_SIZE
                    return
                self.end = start + max(end, tail)
                return
            self._open = True
        # Looking for where the unfinished record began.
        for begin, end, kind in reversed(fragments):
            if kind == FIRST:
                self.end = start + begin
                return
            if kind != MIDDLE:  # the record before it ended here
                self.end = start + end
                return
        if start == 0:
            self.end = 0
            return
        self._block -= BLOCK_SIZE


def _whole_fragments(
    block: bytes | bytearray | memoryview,
) -> list[tuple[int, int, int]]:
    """``(start, end, type)`` of each whole physical record of a block, in
    order, stopping at zero fill or a torn one (checksums are not checked:
    a damaged record is still a record, and a reader reports it)."""
    out = []
    pos = 0
    size = len(block)
    while size - pos >= HEADER_SIZE:
        _, length, kind = _HEADER.unpack_from(block, pos)
        end = pos + HEADER_SIZE + length
        if end > size or (kind == ZERO and length == 0):
            break
        out.append((pos, end, kind))
        pos = end
    return out
