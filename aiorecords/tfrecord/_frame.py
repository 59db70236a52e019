"""The TFRecord framing, sans I/O: TensorFlow's ``io::RecordWriter`` and
``RecordReader`` as pure code over bytes.

A record is framed as::

    uint64  length        little-endian
    uint32  masked CRC-32C of the 8 length bytes
    byte    data[length]
    uint32  masked CRC-32C of the data

with LevelDB's mask (`aiorecords._crc`). There are no blocks and no
markers, so a reader cannot find the next record after damage: a bad
length or checksum ends what can be read of the file.

`TFRecordDecoder` is push-style: it says where it wants bytes
(`TFRecordDecoder.wanted`), is fed them, and hands out records.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final

from crc32c import crc32c

from .._crc import MASK_DELTA, mask_crc, unmask_crc
from .._kernels import UNLIMITED, compiled, frame_each
from .._skipped import SkippedRegion

__all__ = [
    "FOOTER_SIZE",
    "HEADER_SIZE",
    "Record",
    "WINDOW_BITS",
    "TFRecordDecoder",
    "compression_of_head",
    "frame",
    "frame_many",
    "frame_records",
    "good_records",
    "starts_like_tfrecord",
    "starts_with_header",
]

HEADER_SIZE: Final = 12
FOOTER_SIZE: Final = 4
_LENGTH: Final = struct.Struct("<Q")
_CRC: Final = struct.Struct("<I")
_HEADER: Final = struct.Struct("<QI")
#: Bytes of a record in progress a follower checks are still in the file.
_CHECKED_PREFIX: Final = 4096

#: A record handed out: its data, the offset of its header and the offset
#: just past its footer.
Record = tuple[bytes, int, int]


def frame(data: bytes | bytearray | memoryview, out: bytearray) -> int:
    """Append the framed record ``data`` to ``out``; return its framed size."""
    length = _LENGTH.pack(len(data))
    out += length
    out += _CRC.pack(mask_crc(crc32c(length)))
    out += data
    out += _CRC.pack(mask_crc(crc32c(data)))
    return HEADER_SIZE + len(data) + FOOTER_SIZE


def frame_records(
    records: Sequence[bytes | bytearray | memoryview | str],
    start: int,
    stop: int,
    out: bytearray,
    max_bytes: int,
) -> int:
    """The reference of the compiled ``tf_frame`` kernel: frame
    ``records[start:stop]`` (``str`` as UTF-8) until ``out`` has grown by
    ``max_bytes``; the index reached. On an error nothing of the call is
    left in ``out``."""
    size = len(out)
    try:
        return frame_each(frame, records, start, stop, out, max_bytes)
    except BaseException:
        del out[size:]
        raise


def frame_many(
    records: Sequence[bytes | bytearray | memoryview | str],
    start: int,
    stop: int,
    out: bytearray,
    max_bytes: int,
) -> int:
    """`frame()` for ``records[start:stop]``, until ``out`` has grown by
    ``max_bytes``; the index reached. A record that is neither bytes nor str
    raises `TypeError` after the records before it are framed."""
    try:
        return fast_frame_records(records, start, stop, out, max_bytes)
    except (TypeError, UnicodeError):
        frame_each(frame, records, start, stop, out, UNLIMITED)
        raise


def good_records(
    buffer: bytes | bytearray | memoryview,
    at: int,
    base: int,
    stop: int,
    max_record_size: int,
    limit: int,
    out: list[Record | SkippedRegion],
) -> int:
    """The decoder's fast path, and the reference of the compiled
    ``tf_good_records`` kernel: up to ``limit`` whole records from
    ``buffer[at:]`` on whose checksums hold, appended to ``out`` with file
    offsets (``base`` is the offset of ``buffer[0]``). It stops before
    anything else (a record starting at or after ``stop``, one not all in
    the buffer, a checksum that fails, a length over ``max_record_size``),
    which the decoder then handles; returns where it stopped."""
    append = out.append
    unpack = _HEADER.unpack_from
    unpack_crc = _CRC.unpack_from
    size = len(buffer)
    count = 0
    while count < limit:
        start = base + at
        if start >= stop or size - at < HEADER_SIZE:
            break
        length, checksum = unpack(buffer, at)
        crc = crc32c(buffer[at : at + 8])
        if (
            (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF != checksum
            or length > max_record_size
            or size - at < HEADER_SIZE + length + FOOTER_SIZE
        ):
            break
        data_at = at + HEADER_SIZE
        end = data_at + length
        data = bytes(buffer[data_at:end])
        crc = crc32c(data)
        if (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF != unpack_crc(
            buffer, end
        )[0]:
            break
        at = end + FOOTER_SIZE
        append((data, start, base + at))
        count += 1
    return at


# The compiled kernels where they are built (aiorecords._kernels).
fast_good_records = compiled.tf_good_records if compiled else good_records
fast_frame_records = compiled.tf_frame if compiled else frame_records


def _header_holds(head: bytes | bytearray | memoryview) -> bool:
    _, checksum = _HEADER.unpack_from(head)
    return unmask_crc(checksum) == crc32c(bytes(head[:8]))


def starts_with_header(head: bytes) -> bool:
    """Whether a file's first bytes are a TFRecord header whose checksum
    holds (a file stored as it is, not compressed)."""
    return len(head) >= HEADER_SIZE and _header_holds(head)


#: zlib's window bits for each compression TensorFlow offers.
WINDOW_BITS: Final = {"gzip": 31, "zlib": 15}


def compression_of_head(head: bytes) -> str | None:
    """``"gzip"`` or ``"zlib"`` if a file's first bytes are a stream of
    that kind holding a TFRecord header whose checksum holds; None if not."""
    for kind, wbits in WINDOW_BITS.items():
        try:
            inflated = zlib.decompressobj(wbits).decompress(head, HEADER_SIZE)
        except zlib.error:
            continue
        if len(inflated) == HEADER_SIZE and _header_holds(inflated):
            return kind
    return None


def starts_like_tfrecord(head: bytes) -> bool:
    """Whether a file's first bytes begin with a TFRecord header whose
    checksum holds, stored as it is or compressed (GZIP or ZLIB)."""
    return starts_with_header(head) or compression_of_head(head) is not None


class TFRecordDecoder:
    """Decodes TFRecord framing from bytes fed in order.

    ``start`` is the offset of a record's header (0 for a whole file);
    records whose header starts at or after ``stop`` are not handed out. A
    length over ``max_record_size`` is damage: no buffer of that size is
    ever made. After damage (a bad length checksum, a bad data checksum, an
    impossible length) nothing more is decoded: `damage` tells where and
    why, and the region to the end of the stream is handed out once the end
    is fed. Bytes ending inside a record are a torn record, handed out as
    a region too.
    """

    __slots__ = (
        "_buffer",
        "_buffer_start",
        "_eof",
        "_max_record_size",
        "_stop",
        "damage",
        "finished",
    )

    def __init__(
        self, start: int = 0, stop: int | None = None, *, max_record_size: int
    ) -> None:
        self._buffer = bytearray()
        self._buffer_start = start  # offset of the first buffered byte
        self._stop = stop
        self._max_record_size = max_record_size
        self._eof: int | None = None
        self.damage: tuple[int, str] | None = None
        """Where decoding stopped for damage, and why; None while it holds."""
        self.finished = False
        """True once nothing more will be handed out."""

    @property
    def wanted(self) -> int:
        """The offset of the next byte to feed."""
        return self._buffer_start + len(self._buffer)

    @property
    def position(self) -> int:
        """The offset of the next record's header (the end of the last one
        handed out)."""
        return self._buffer_start

    @property
    def needs_end(self) -> bool:
        """True after damage, until the end is fed: only the stream's size
        is still of interest (to report the region lost)."""
        return self.damage is not None and self._eof is None

    @property
    def record_in_progress(self) -> tuple[int, bytes] | None:
        """``(offset, first bytes)`` of the record partly fed (its header and
        up to 4 KiB of its data), None between records. A follower checks
        those bytes are still in the file before it joins more to them: a
        writer restarting after a crash writes over a torn record."""
        if not self._buffer or self.damage is not None:
            return None
        return self._buffer_start, bytes(self._buffer[:_CHECKED_PREFIX])

    def discard_unread(self) -> None:
        """Nothing to do: a record partly fed is kept (it may be far larger
        than a read; fed again from its start, it could never be whole).
        A follower checks it with `record_in_progress`, and starts over
        from `position` if the file became shorter than what was fed."""

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Give the bytes at `wanted`."""
        if self.damage is None:
            self._buffer += data
        else:  # only the end is still of interest
            self._buffer_start += len(data)

    def feed_eof(self, at: int | None = None) -> None:
        """The stream ends after the bytes fed, or at ``at`` (its size, when
        the caller knows it and need not feed the bytes after damage)."""
        self._eof = self.wanted if at is None else at

    def read_many(self, limit: int) -> list[Record | SkippedRegion]:
        """Up to ``limit`` records (and a dropped region, at the end), from
        the bytes fed so far."""
        out: list[Record | SkippedRegion] = []
        if self.finished:
            return out
        buffer = self._buffer
        at = 0
        base = self._buffer_start
        size = len(buffer)
        stop = UNLIMITED if self._stop is None else self._stop
        largest = min(self._max_record_size, UNLIMITED)
        while len(out) < limit and self.damage is None:
            # The whole, sound records; then the one it stopped before.
            at = fast_good_records(
                buffer, at, base, stop, largest, limit - len(out), out
            )
            if len(out) >= limit:
                break
            start = base + at
            if self._stop is not None and start >= self._stop:
                self.finished = True
                break
            if size - at < HEADER_SIZE:
                break
            length, checksum = _HEADER.unpack_from(buffer, at)
            if unmask_crc(checksum) != crc32c(buffer[at : at + 8]):
                self.damage = (start, "bad length checksum")
            elif length > self._max_record_size:
                self.damage = (
                    start,
                    f"record of {length} bytes is over the largest allowed, "
                    f"{self._max_record_size}",
                )
            elif size - at < HEADER_SIZE + length + FOOTER_SIZE:
                break
            else:
                data_at = at + HEADER_SIZE
                end = data_at + length
                data = bytes(buffer[data_at:end])
                (stored,) = _CRC.unpack_from(buffer, end)
                if unmask_crc(stored) != crc32c(data):
                    self.damage = (start, "bad data checksum")
                else:
                    at = end + FOOTER_SIZE
                    out.append((data, start, base + at))
        if at:
            del buffer[:at]
            self._buffer_start += at
        if self.damage is not None:
            self._buffer_start = self.wanted
            del buffer[:]
        self._finish_at_eof(out, limit)
        return out

    def _finish_at_eof(self, out: list[Record | SkippedRegion], limit: int) -> None:
        if self._eof is None or self.finished or len(out) >= limit:
            return
        if self.damage is not None:
            start, reason = self.damage
            out.append(SkippedRegion(start, max(self._eof, start), reason))
        elif self._buffer:
            out.append(
                SkippedRegion(self._buffer_start, self._eof, "torn record at the end")
            )
        self.finished = True
