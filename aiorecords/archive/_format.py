"""The byte layout of archives of named entries ("gar"), as pure code.

An archive is a file header followed by elements, each::

    header   fixed size, then the name and the comment
    payload  the stored bytes (compressed, or not; stuffed in version 2)
    trailer  fixed size

A reader walks from the end: the trailer says where its element starts, so
the element before ends there. Headers carry no lengths (an entry is
streamed, its size unknown until it is finished); the trailer, written last,
is what makes an element exist. See ``docs/formats/archive.md`` for every
byte and the reasons. Two versions exist (`ElementLayout`); new
archives are written in version 2, whose payload bytes can never be taken
for structure.

Integers are little-endian.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c

from .._kernels import compiled
from ..errors import CorruptArchiveError

__all__ = [
    "CURRENT",
    "FILE_HEADER",
    "FILE_HEADER_SIZE",
    "HEADER_MAGIC",
    "LAYOUTS",
    "MAX_COMMENT",
    "MAX_NAME",
    "V1",
    "V2",
    "ArchiveEntry",
    "Codec",
    "ElementLayout",
    "archive_version",
    "is_archive",
    "Header",
    "Stuffer",
    "Trailer",
    "check_file_header",
    "file_header",
    "stuff",
    "unfinished_run",
    "unstuff",
]

# The first bytes of every archive: a high byte (not text), the name, a line
# ending pair and an end-of-file character that text-mode transfers mangle,
# then the format version and a checksum (PNG's idea).
_MAGIC: Final = b"\x89GAR\r\n\x1a\n"
_FILE_HEADER: Final = struct.Struct("<8sLL")
FILE_HEADER_SIZE: Final = _FILE_HEADER.size  # 16


def file_header(version: int) -> bytes:
    """The file header of an archive of format ``version``."""
    head = _MAGIC + struct.pack("<L", version)
    return head + struct.pack("<L", crc32c(head))


HEADER_MAGIC: Final = b"GARe"

#: Longest entry name and comment, in bytes of UTF-8.
MAX_NAME: Final = 65536
MAX_COMMENT: Final = 65536

_MAX_LENGTH: Final = 1 << 63
_U64: Final = 1 << 64


class Codec:
    """How a payload is stored: the codec byte of an element header."""

    NONE: Final = 0
    GZIP: Final = 1
    ZSTD: Final = 2
    NAMES: Final = {NONE: None, GZIP: "gzip", ZSTD: "zstd"}
    """The API's name of each codec byte."""
    BY_NAME: Final = {name: codec for codec, name in NAMES.items()}
    """The codec byte of each API name."""


@dataclass(frozen=True, slots=True)
class Header:
    """An element header, decoded."""

    codec: int
    timestamp: int
    start: int
    name: str
    comment: str
    size: int
    """Bytes of the header, strings included."""
    crc: int


@dataclass(frozen=True, slots=True)
class Trailer:
    """An element trailer, decoded."""

    start: int
    length: int
    stored: int
    data: int
    payload_crc: int
    header_crc: int


# ----------------------------------------------------------------------
# Byte stuffing (version 2)
#
# A version-2 trailer's magic is 16 bytes, E5 01 then "GAR trailer v2". A
# payload is stored with a 00 put after every run of the magic's first 15
# bytes, so the magic never occurs in it; undoing that is taking out the
# 00 after every such run. The run never occurs in random or compressed
# data in practice, so stuffing almost never changes anything, and both
# ways cost one search for a 15-byte pattern, which CPython does at several
# GB/s (a long pattern lets it skip ahead). E5 occurs once in the magic and
# 00 not at all, so runs never overlap and an inserted 00 never forms one.

_MAGIC_V2: Final = b"\xe5\x01GAR trailer v2"
_RUN: Final = _MAGIC_V2[:-1]
_PUT: Final = b"\x00"
_RUN_AND_PUT: Final = _RUN + _PUT
# Past this many escapes in one piece, bytes.replace does the work.
_FEW: Final = 64


def _runs(data: bytes) -> list[int] | None:
    """Where the magic's first 15 bytes occur in ``data``; None if more
    than _FEW times."""
    found: list[int] = []
    at = data.find(_RUN)
    while at >= 0:
        if len(found) >= _FEW:
            return None
        found.append(at)
        at = data.find(_RUN, at + len(_RUN))
    return found


def stuff(data: bytes) -> bytes:
    """``data`` as a version-2 archive stores it: a 00 after every run of
    the trailer magic's first 15 bytes.

    ``data`` is a whole payload, or a piece of one that does not end inside
    such a run (see :class:`Stuffer`)."""
    found = _runs(data)
    if found is None:
        return data.replace(_RUN, _RUN_AND_PUT)
    if not found:
        return data
    cuts = [0, *(at + len(_RUN) for at in found), len(data)]
    return _PUT.join(data[a:b] for a, b in itertools.pairwise(cuts))


def unstuff(data: bytes) -> bytes | None:
    """The bytes that :func:`stuff` made ``data`` from; None if ``data``
    could not have been made so (a run not followed by 00).

    ``data`` is a whole stored payload, or a piece of one that does not end
    inside a run and its 00 (see :func:`unfinished_run`).
    """
    found = _runs(data)
    if found is None:
        if data.count(_RUN) != data.count(_RUN_AND_PUT):
            return None
        return data.replace(_RUN_AND_PUT, _RUN)
    if not found:
        return data
    size = len(_RUN)
    if any(data[at + size : at + size + 1] != _PUT for at in found):
        return None
    # Keep each run, drop the 00 put after it.
    starts = [0, *(at + size + 1 for at in found)]
    ends = [*(at + size for at in found), len(data)]
    return b"".join(data[a:b] for a, b in zip(starts, ends, strict=True))


def unfinished_run(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a run and its 00 that the
    bytes after it may complete (0 to 15)."""
    at = data.rfind(b"\xe5", max(0, len(data) - len(_RUN)))
    if at >= 0 and _RUN_AND_PUT.startswith(data[at:]):
        return len(data) - at
    return 0


class Stuffer:
    """Stuffs a payload that arrives in pieces: the beginning of a run that
    ends a piece is held back until the next piece says whether it is one."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """The stored bytes for the next piece of the payload."""
        if self._held:
            data = self._held + data
        keep = unfinished_run(data)
        if keep == len(_RUN):
            keep = 0  # a whole run: stuffed now
        self._held = data[len(data) - keep :]
        return stuff(data[: len(data) - keep])

    def finish(self) -> bytes:
        """The last stored bytes: what was held back, as it is (no run, and
        the trailer that follows starts with 00, which completes none)."""
        held, self._held = self._held, b""
        return held


# ----------------------------------------------------------------------
# Fixed-width fields of seven bits a byte (version 2)


# Decoding joins the septets of a field two by two, then four, eight and
# sixteen: each step closes the gaps (of 1, 2, 4 and 8 bits) between
# neighbouring groups. Several fields are decoded at once, each padded to a
# lane of 16 bytes of one integer, so that the steps cost the same for one
# field or eight.
_LANE: Final = 16
_MAX_FIELDS: Final = 8


def _lanes(unit: int, keep: int, fields: int) -> int:
    """A mask keeping the low ``keep`` bits of every ``unit`` bits, over
    ``fields`` lanes."""
    bits = 8 * _LANE * fields
    return sum(((1 << keep) - 1) << at for at in range(0, bits, unit))


_STEPS: Final = ((8, 7), (16, 14), (32, 28), (64, 56))
# For n fields, n lanes' worth of masks: the smaller the integers, the
# faster each step.
_JOIN: Final = [
    tuple(
        (_lanes(2 * unit, keep, n), _lanes(2 * unit, keep, n) << unit, unit - keep)
        for unit, keep in _STEPS
    )
    for n in range(_MAX_FIELDS + 1)
]
# Encoding undoes the joins, widest first: each step opens the gaps again.
_SPLIT: Final = [
    tuple(
        (low, (low << (unit - gap)) & ~low, gap)
        for (low, _, gap), (unit, _) in zip(steps, _STEPS, strict=True)
    )[::-1]
    for steps in _JOIN
]
_PADDING: Final = [bytes(_LANE - width) for width in range(_LANE + 1)]
_LANE_MASK: Final = (1 << (8 * _LANE)) - 1
_HIGH_BITS: Final = [
    int.from_bytes(b"\x80" * n, "little") for n in range(_LANE * _MAX_FIELDS + 1)
]


def _septet_fields(data: bytes, spans: tuple[tuple[int, int], ...]) -> list[int] | None:
    """The values of the septet fields ``data[at:at + width]`` for each
    ``(at, width)`` of ``spans`` (widths at most 16, at most 8 fields); None
    if a byte of one has its high bit set (never written so)."""
    pieces = []
    for at, width in spans:
        pieces.append(data[at : at + width])
        pieces.append(_PADDING[width])
    joined = b"".join(pieces)
    x = int.from_bytes(joined, "little")
    if x & _HIGH_BITS[len(joined)]:
        return None
    for low, high, gap in _JOIN[len(spans)]:
        x = (x & low) | ((x & high) >> gap)
    bits = 8 * _LANE
    return [(x >> (bits * n)) & _LANE_MASK for n in range(len(spans))]


def _to_septet_fields(fields: tuple[tuple[int, int], ...]) -> bytes:
    """Each ``(value, width)`` of ``fields`` in ``width`` bytes of seven bits,
    low first, one after another (at most 8 fields of at most 16 bytes;
    every value fits its width)."""
    bits = 8 * _LANE
    x = 0
    for n, (value, _) in enumerate(fields):
        x |= value << (bits * n)
    for low, moved, gap in _SPLIT[len(fields)]:
        x = (x & low) | ((x & moved) << gap)
    lanes = x.to_bytes(_LANE * len(fields), "little")
    return b"".join(
        [lanes[_LANE * n : _LANE * n + width] for n, (_, width) in enumerate(fields)]
    )


def _septets(value: int, width: int) -> bytes:
    """``value`` (unsigned) in ``width`` bytes of seven bits, low first."""
    return _to_septet_fields(((value, width),))


def entry_strings(name: str, timestamp: int, comment: str) -> tuple[bytes, bytes]:
    """An entry's name and comment in UTF-8, checked with its timestamp;
    `ValueError` for what no element can hold."""
    name_bytes = name.encode("utf-8")
    comment_bytes = comment.encode("utf-8")
    if not name_bytes:
        raise ValueError("an entry name cannot be empty")
    if len(name_bytes) > MAX_NAME:
        raise ValueError(f"an entry name is at most {MAX_NAME} bytes of UTF-8")
    if len(comment_bytes) > MAX_COMMENT:
        raise ValueError(f"a comment is at most {MAX_COMMENT} bytes of UTF-8")
    if not -(1 << 63) <= timestamp < 1 << 63:
        raise ValueError("a timestamp is a signed 64-bit integer")
    return name_bytes, comment_bytes


class ElementLayout:
    """How the elements of one format version are laid out.

    Version 1 writes the fixed fields of headers and trailers as binary
    integers and payloads as they are. Version 2 writes every integer in
    bytes of seven bits, and stuffs payloads (`stuff()`), so that the
    trailer's magic, which begins E5 01, can occur nowhere else in the
    archive: payload bytes can never be taken for a trailer (see
    ``docs/formats/archive.md``).
    """

    __slots__ = (
        "_crc_size",
        "_magic_at",
        "file_header",
        "header_size",
        "stuffed",
        "trailer_magic",
        "trailer_size",
        "version",
    )

    version: int
    header_size: int
    """Bytes of a header's fixed part (the name and the comment follow)."""
    trailer_size: int
    trailer_magic: bytes
    stuffed: bool
    """Whether payloads are stored stuffed."""
    file_header: bytes

    def __repr__(self) -> str:
        return f"<archive element layout, version {self.version}>"

    # Per version: the fixed fields, packed and unpacked.

    def _pack_header(
        self, codec: int, timestamp: int, start: int, name_len: int, comment_len: int
    ) -> bytes:
        """A header's fixed part without its checksum."""
        raise NotImplementedError

    def _pack_crc(self, crc: int) -> bytes:
        raise NotImplementedError

    def _unpack_header(
        self, fixed: bytes
    ) -> tuple[bytes, int, int, int, int, int, int, int] | None:
        """magic, codec, flags, timestamp, start, name and comment lengths and
        checksum; None if the fields cannot be read."""
        raise NotImplementedError

    def _pack_trailer(self, fields: tuple[int, int, int, int, int, int]) -> bytes:
        """A trailer without its checksum (its magic last)."""
        raise NotImplementedError

    def _unpack_trailer(
        self, data: bytes
    ) -> tuple[int, int, int, int, int, int, bytes, int] | None:
        raise NotImplementedError

    # The same for every version.

    def encode_header(
        self, start: int, name: str, timestamp: int, comment: str, codec: int
    ) -> tuple[bytes, int]:
        """The header bytes of an element starting at ``start``, and its checksum."""
        name_bytes, comment_bytes = entry_strings(name, timestamp, comment)
        fixed = self._pack_header(
            codec, timestamp, start, len(name_bytes), len(comment_bytes)
        )
        crc = crc32c(comment_bytes, crc32c(name_bytes, crc32c(fixed)))
        return fixed + self._pack_crc(crc) + name_bytes + comment_bytes, crc

    def header_fields(
        self, fixed: bytes, offset: int
    ) -> tuple[bytes, int, int, int, int, int, int, int]:
        """The fields of a header's fixed part, checked; raises
        [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] (at ``offset``)
        for one that cannot start a header."""
        if len(fixed) < self.header_size:
            raise CorruptArchiveError("element header is cut short", offset=offset)
        if fixed[:4] != HEADER_MAGIC:
            raise CorruptArchiveError("no element header here", offset=offset)
        fields = self._unpack_header(fixed)
        if fields is None:
            raise CorruptArchiveError(
                "element header is damaged (a field holds a byte never written)",
                offset=offset,
            )
        _, codec, flags, _, _, name_len, comment_len, _ = fields
        if codec not in Codec.NAMES or flags:
            raise CorruptArchiveError(
                f"unknown codec {codec} or flags {flags}", offset=offset
            )
        if not 0 < name_len <= MAX_NAME or comment_len > MAX_COMMENT:
            raise CorruptArchiveError(
                "impossible name or comment length", offset=offset
            )
        return fields

    def header_lengths(self, fixed: bytes, offset: int) -> int:
        """How many bytes the whole header takes, from its fixed part.

        Raises [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] (at
        ``offset``) for a fixed part that cannot start a header, before anything is
        allocated for its strings.
        """
        fields = self.header_fields(fixed, offset)
        return self.header_size + fields[5] + fields[6]

    def decode_header(
        self,
        data: bytes,
        offset: int,
        fields: tuple[bytes, int, int, int, int, int, int, int] | None = None,
    ) -> Header:
        """Decode a whole header (``header_lengths`` bytes) found at ``offset``
        (``fields``: its `header_fields()`, if already read)."""
        if fields is None:
            fields = self.header_fields(data, offset)
        _, codec, _, timestamp, start, name_len, comment_len, crc = fields
        size = self.header_size + name_len + comment_len
        if len(data) < size:
            raise CorruptArchiveError("element header is cut short", offset=offset)
        fixed = data[: self.header_size - self._crc_size]
        strings = data[self.header_size : size]
        if crc32c(strings, crc32c(fixed)) != crc:
            raise CorruptArchiveError(
                "element header checksum does not match", offset=offset
            )
        if start != offset:
            raise CorruptArchiveError(
                f"element header says it starts at {start}", offset=offset
            )
        try:
            name = strings[:name_len].decode("utf-8")
            comment = strings[name_len:].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptArchiveError(
                "entry name or comment is not UTF-8", offset=offset
            ) from None
        return Header(codec, timestamp, start, name, comment, size, crc)

    def encode_trailer(
        self,
        start: int,
        length: int,
        stored: int,
        data: int,
        payload_crc: int,
        header_crc: int,
    ) -> bytes:
        """The trailer bytes that end (and so create) an element."""
        body = self._pack_trailer(
            (start, length, stored, data, payload_crc, header_crc)
        )
        return body + self._pack_crc(crc32c(body))

    def frame(
        self,
        start: int,
        name: str,
        timestamp: int,
        comment: str,
        codec: int,
        stored: int,
        data_size: int,
        payload_crc: int,
    ) -> tuple[bytes, int, bytes]:
        """The header of an element at ``start``, its checksum, and the
        trailer that ends it after ``stored`` payload bytes (of ``data_size``
        bytes of data, with checksum ``payload_crc``).

        The reference of the compiled ``archive_frame`` kernel, which makes
        version 2's in one call (writing small entries in batches is
        otherwise mostly the septets of these two)."""
        header, header_crc = self.encode_header(start, name, timestamp, comment, codec)
        trailer = self.encode_trailer(
            start,
            len(header) + stored + self.trailer_size,
            stored,
            data_size,
            payload_crc,
            header_crc,
        )
        return header, header_crc, trailer

    def decode_trailer(self, data: bytes, end: int) -> Trailer:
        """Decode the trailer whose last byte is just before ``end``.

        Raises [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] (at the
        trailer's offset) for bytes that are not a trailer, or whose lengths do not fit
        where it lies.
        """
        offset = end - self.trailer_size
        if len(data) != self.trailer_size or offset < FILE_HEADER_SIZE:
            raise CorruptArchiveError(
                "element trailer is cut short", offset=max(offset, 0)
            )
        at = self._magic_at
        if data[at : at + len(self.trailer_magic)] != self.trailer_magic:
            raise CorruptArchiveError("no element trailer here", offset=offset)
        fields = self._unpack_trailer(data)
        if fields is None:
            raise CorruptArchiveError(
                "element trailer is damaged (a field holds a byte never written)",
                offset=offset,
            )
        start, length, stored, size, payload_crc, header_crc, _, crc = fields
        if crc32c(data[: self.trailer_size - self._crc_size]) != crc:
            raise CorruptArchiveError(
                "element trailer checksum does not match", offset=offset
            )
        if (
            start < FILE_HEADER_SIZE
            or length >= _MAX_LENGTH
            or start + length != end
            or stored + self.header_size + self.trailer_size > length
            or size >= _MAX_LENGTH
        ):
            raise CorruptArchiveError("element lengths do not fit", offset=offset)
        return Trailer(start, length, stored, size, payload_crc, header_crc)

    def trailer_candidates(self, chunk: bytes, chunk_start: int) -> list[int]:
        """Ends of the places in ``chunk`` that could end a trailer, last first.

        A damaged or torn tail is stepped over by looking backwards for the
        trailer magic; each candidate must then decode, and its element's
        header must name the same start, to be believed.
        """
        found = []
        magic = self.trailer_magic
        after = self.trailer_size - self._magic_at  # magic and checksum
        limit = len(chunk)
        while (at := chunk.rfind(magic, 0, limit)) >= 0:
            end = at + after
            if end <= len(chunk):
                found.append(chunk_start + end)
            limit = at + len(magic) - 1  # next: one starting before this
        return found

    def _measure(self) -> None:
        """Note where the checksums and the magic lie (for the subclasses)."""
        self._crc_size = len(self._pack_crc(0))
        self._magic_at = self.trailer_size - len(self.trailer_magic) - self._crc_size


class _Version1(ElementLayout):
    """Binary integers; payloads as written."""

    __slots__ = ()
    _HEADER: Final = struct.Struct("<4sBBHqQLLL")  # 36 bytes
    # element start, element length, stored length, data length, payload
    # checksum, header checksum, magic, trailer checksum
    _TRAILER: Final = struct.Struct("<QQQQLL4sL")  # 48 bytes

    def __init__(self) -> None:
        self.version = 1
        self.header_size = self._HEADER.size
        self.trailer_size = self._TRAILER.size
        self.trailer_magic = b"GARt"
        self.stuffed = False
        self.file_header = file_header(1)
        self._measure()

    def _pack_header(
        self, codec: int, timestamp: int, start: int, name_len: int, comment_len: int
    ) -> bytes:
        return self._HEADER.pack(
            HEADER_MAGIC, codec, 0, 0, timestamp, start, name_len, comment_len, 0
        )[:-4]

    def _pack_crc(self, crc: int) -> bytes:
        return struct.pack("<L", crc)

    def _unpack_header(
        self, fixed: bytes
    ) -> tuple[bytes, int, int, int, int, int, int, int]:
        magic, codec, flags, _, timestamp, start, name_len, comment_len, crc = (
            self._HEADER.unpack_from(fixed)
        )
        return magic, codec, flags, timestamp, start, name_len, comment_len, crc

    def _pack_trailer(self, fields: tuple[int, int, int, int, int, int]) -> bytes:
        return self._TRAILER.pack(*fields, self.trailer_magic, 0)[:-4]

    def _unpack_trailer(
        self, data: bytes
    ) -> tuple[int, int, int, int, int, int, bytes, int]:
        return self._TRAILER.unpack(data)


# Version 2 widths, in bytes of seven bits: 64-bit integers take 10 (70
# bits), checksums 5, name and comment lengths (at most 2**16) 3.
_W64: Final = 10
_W32: Final = 5
_WLEN: Final = 3


class _Version2(ElementLayout):
    """Integers in bytes of seven bits; payloads stuffed."""

    __slots__ = ()

    def __init__(self) -> None:
        self.version = 2
        # magic, codec, flags, timestamp, start, name and comment lengths, checksum
        self.header_size = 4 + 1 + 1 + _W64 + _W64 + _WLEN + _WLEN + _W32  # 37
        # a zero byte, start, length, stored, data, payload and header
        # checksums, magic, checksum
        self.trailer_size = 1 + 4 * _W64 + 2 * _W32 + len(_MAGIC_V2) + _W32  # 72
        self.trailer_magic = _MAGIC_V2
        self.stuffed = True
        self.file_header = file_header(2)
        self._measure()

    def _pack_header(
        self, codec: int, timestamp: int, start: int, name_len: int, comment_len: int
    ) -> bytes:
        fields = (
            (timestamp % _U64, _W64),  # two's complement
            (start, _W64),
            (name_len, _WLEN),
            (comment_len, _WLEN),
        )
        return HEADER_MAGIC + bytes((codec, 0)) + _to_septet_fields(fields)

    def _pack_crc(self, crc: int) -> bytes:
        return _septets(crc, _W32)

    _HEADER_SPANS: Final = ((6, _W64), (16, _W64), (26, _WLEN), (29, _WLEN), (32, _W32))

    def _unpack_header(
        self, fixed: bytes
    ) -> tuple[bytes, int, int, int, int, int, int, int] | None:
        values = _septet_fields(fixed, self._HEADER_SPANS)
        if values is None:
            return None
        timestamp, start, name_len, comment_len, crc = values
        if timestamp >= _U64 or start >= _U64 or crc >= 1 << 32:
            return None
        if timestamp >= 1 << 63:
            timestamp -= _U64
        return (
            fixed[:4],
            fixed[4],
            fixed[5],
            timestamp,
            start,
            name_len,
            comment_len,
            crc,
        )

    def _pack_trailer(self, fields: tuple[int, int, int, int, int, int]) -> bytes:
        start, length, stored, data, payload_crc, header_crc = fields
        septets = _to_septet_fields(
            (
                (start, _W64),
                (length, _W64),
                (stored, _W64),
                (data, _W64),
                (payload_crc, _W32),
                (header_crc, _W32),
            )
        )
        # A zero byte first: after a payload ending in the beginning of a
        # run, it completes no magic.
        return b"\x00" + septets + self.trailer_magic

    _TRAILER_SPANS: Final = (
        (1, _W64),
        (11, _W64),
        (21, _W64),
        (31, _W64),
        (41, _W32),
        (46, _W32),
        (67, _W32),
    )

    def _unpack_trailer(
        self, data: bytes
    ) -> tuple[int, int, int, int, int, int, bytes, int] | None:
        values = _septet_fields(data, self._TRAILER_SPANS) if not data[0] else None
        if values is None:
            return None
        start, length, stored, size, payload_crc, header_crc, crc = values
        if payload_crc >= 1 << 32 or header_crc >= 1 << 32 or crc >= 1 << 32:
            return None
        return start, length, stored, size, payload_crc, header_crc, data[51:67], crc


V1: Final[ElementLayout] = _Version1()
V2: Final[ElementLayout] = _Version2()
#: The layouts by format version.
LAYOUTS: Final = {1: V1, 2: V2}
#: The layout new archives are written in.
CURRENT: Final = V2
#: The file header of a new archive.
FILE_HEADER: Final = CURRENT.file_header


def frame_element(
    layout: ElementLayout,
    start: int,
    name: str,
    timestamp: int,
    comment: str,
    codec: int,
    stored: int,
    data_size: int,
    payload_crc: int,
) -> tuple[bytes, int, bytes]:
    """``layout.frame(...)``: through the compiled kernel for version 2,
    where it is built."""
    if compiled is None or layout.version != 2:
        return layout.frame(
            start, name, timestamp, comment, codec, stored, data_size, payload_crc
        )
    name_bytes, comment_bytes = entry_strings(name, timestamp, comment)
    framed: tuple[bytes, int, bytes] = compiled.archive_frame(
        start,
        name_bytes,
        comment_bytes,
        timestamp,
        codec,
        stored,
        data_size,
        payload_crc,
    )
    return framed


def is_archive(head: bytes) -> bool:
    """Whether a file's first bytes begin with an archive's signature."""
    return head[:8] == _MAGIC


def archive_version(head: bytes) -> int | None:
    """The format version an archive's first bytes name; None if they are
    too few (under 12) or not an archive's."""
    if len(head) < 12 or not is_archive(head):
        return None
    version: int = _FILE_HEADER.unpack_from(head.ljust(FILE_HEADER_SIZE, b"\0"))[1]
    return version


def check_file_header(data: bytes) -> ElementLayout:
    """The layout of the archive that ``data`` starts; raises
    [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] unless it starts an
    archive."""
    if len(data) < FILE_HEADER_SIZE:
        raise CorruptArchiveError("too short to be an archive", offset=0)
    magic, version, crc = _FILE_HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CorruptArchiveError("not an archive (unknown signature)", offset=0)
    if crc32c(data[:12]) != crc:
        raise CorruptArchiveError("archive header checksum does not match", offset=0)
    layout = LAYOUTS.get(version)
    if layout is None:
        newest = max(LAYOUTS)
        raise CorruptArchiveError(
            f"archive format version {version} is not supported (this version "
            f"of aiorecords reads versions 1 to {newest})",
            offset=8,
        )
    return layout


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One element of an archive: its metadata and where its bytes lie."""

    name: str
    """The entry's name."""
    timestamp: int
    """The timestamp it was appended with (seconds since the epoch, unless
    the writer gave another value)."""
    compression: str | None
    """``"gzip"``, ``"zstd"``, or None for a payload stored as written."""
    comment: str
    """The comment it was appended with ("" if none)."""
    offset: int
    """File offset of the element."""
    payload_offset: int
    """File offset of its stored payload."""
    stored_size: int
    """Bytes of payload in the file (compressed if the entry is, and in a
    version-2 archive stuffed: see ``docs/formats/archive.md``)."""
    size: int
    """Bytes of the entry's data (uncompressed)."""
    payload_crc: int
    """CRC-32C of the stored payload, as its trailer records it."""
    end: int
    """File offset just past the element."""
