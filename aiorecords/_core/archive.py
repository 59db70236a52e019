"""The byte layout of archives of named entries ("gar"), as pure code.

An archive is a file header followed by elements, each::

    header   fixed size, then the name and the comment
    payload  the stored bytes (compressed, or not; stuffed in version 2)
    trailer  fixed size

A reader walks from the end: the trailer says where its element starts, so
the element before ends there. Headers carry no lengths (an entry is
streamed, its size unknown until it is finished); the trailer, written last,
is what makes an element exist. See ``docs/formats/archive.md`` for every
byte and the reasons. Two versions exist (:class:`ElementLayout`); new
archives are written in version 2, whose payload bytes can never be taken
for structure.

Integers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c

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
    "Header",
    "Trailer",
    "check_file_header",
    "file_header",
    "stuff",
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
# Byte stuffing (version 2): the escape byte, and what follows it.

_ESCAPE: Final = b"\xe5"
_ESCAPED: Final = b"\xe5\x00"


def stuff(data: bytes) -> bytes:
    """``data`` as a version-2 payload stores it: every 0xE5 byte followed by
    0x00, so that the pair E5 01 (which starts every trailer) never occurs."""
    return data.replace(_ESCAPE, _ESCAPED)


def unstuff(data: bytes) -> bytes | None:
    """The bytes that :func:`stuff` made ``data`` from; None if ``data``
    could not have been made so (an E5 not followed by 00).

    ``data`` must not end between an E5 and its 00.
    """
    escapes = data.count(_ESCAPE)
    if not escapes:
        return data
    if data.count(_ESCAPED) != escapes:
        return None
    return data.replace(_ESCAPED, _ESCAPE)


# ----------------------------------------------------------------------
# Fixed-width fields of seven bits a byte (version 2)


def _septets(value: int, width: int) -> bytes:
    """``value`` (unsigned) in ``width`` bytes of seven bits, low first."""
    return bytes((value >> (7 * i)) & 0x7F for i in range(width))


def _from_septets(data: bytes, at: int, width: int) -> int | None:
    """The value of the septets at ``data[at:at + width]``; None if one of
    them has its high bit set (never written so)."""
    value = 0
    for i, byte in enumerate(data[at : at + width]):
        if byte & 0x80:
            return None
        value |= byte << (7 * i)
    return value


class ElementLayout:
    """How the elements of one format version are laid out.

    Version 1 writes the fixed fields of headers and trailers as binary
    integers and payloads as they are. Version 2 writes every integer in
    bytes of seven bits, and stuffs payloads (:func:`stuff`), so that the
    trailer's magic, which begins E5 01, can occur nowhere else in the
    archive: payload bytes can never be taken for a trailer (see
    ``docs/formats/archive.md``).
    """

    __slots__ = (
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
        fixed = self._pack_header(
            codec, timestamp, start, len(name_bytes), len(comment_bytes)
        )
        crc = crc32c(comment_bytes, crc32c(name_bytes, crc32c(fixed)))
        return fixed + self._pack_crc(crc) + name_bytes + comment_bytes, crc

    def header_lengths(self, fixed: bytes, offset: int) -> int:
        """How many bytes the whole header takes, from its fixed part.

        Raises :class:`CorruptArchiveError` (at ``offset``) for a fixed part
        that cannot start a header, before anything is allocated for its
        strings.
        """
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
        return self.header_size + name_len + comment_len

    def decode_header(self, data: bytes, offset: int) -> Header:
        """Decode a whole header (``header_lengths`` bytes) found at ``offset``."""
        size = self.header_lengths(data, offset)
        if len(data) < size:
            raise CorruptArchiveError("element header is cut short", offset=offset)
        fields = self._unpack_header(data)
        assert fields is not None  # header_lengths read them
        _, codec, _, timestamp, start, name_len, _, crc = fields
        fixed = data[: self.header_size - len(self._pack_crc(0))]
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

    def decode_trailer(self, data: bytes, end: int) -> Trailer:
        """Decode the trailer whose last byte is just before ``end``.

        Raises :class:`CorruptArchiveError` (at the trailer's offset) for
        bytes that are not a trailer, or whose lengths do not fit where it
        lies.
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
        if crc32c(data[: self.trailer_size - len(self._pack_crc(0))]) != crc:
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

    @property
    def _magic_at(self) -> int:
        """Where the magic lies in a trailer."""
        return self.trailer_size - len(self.trailer_magic) - len(self._pack_crc(0))


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
        # start, length, stored, data, payload and header checksums, magic, checksum
        self.trailer_size = 4 * _W64 + 2 * _W32 + 4 + _W32  # 59
        self.trailer_magic = b"\xe5\x01Gt"
        self.stuffed = True
        self.file_header = file_header(2)

    def _pack_header(
        self, codec: int, timestamp: int, start: int, name_len: int, comment_len: int
    ) -> bytes:
        return b"".join(
            (
                HEADER_MAGIC,
                bytes((codec, 0)),
                _septets(timestamp % _U64, _W64),  # two's complement
                _septets(start, _W64),
                _septets(name_len, _WLEN),
                _septets(comment_len, _WLEN),
            )
        )

    def _pack_crc(self, crc: int) -> bytes:
        return _septets(crc, _W32)

    def _unpack_header(
        self, fixed: bytes
    ) -> tuple[bytes, int, int, int, int, int, int, int] | None:
        at = 6
        values = []
        for width in (_W64, _W64, _WLEN, _WLEN, _W32):
            value = _from_septets(fixed, at, width)
            if value is None:
                return None
            values.append(value)
            at += width
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
        return b"".join(
            (
                _septets(start, _W64),
                _septets(length, _W64),
                _septets(stored, _W64),
                _septets(data, _W64),
                _septets(payload_crc, _W32),
                _septets(header_crc, _W32),
                self.trailer_magic,
            )
        )

    def _unpack_trailer(
        self, data: bytes
    ) -> tuple[int, int, int, int, int, int, bytes, int] | None:
        values = []
        at = 0
        for width in (_W64, _W64, _W64, _W64, _W32, _W32):
            value = _from_septets(data, at, width)
            if value is None:
                return None
            values.append(value)
            at += width
        magic = data[at : at + 4]
        crc = _from_septets(data, at + 4, _W32)
        if crc is None:
            return None
        start, length, stored, size, payload_crc, header_crc = values
        return start, length, stored, size, payload_crc, header_crc, magic, crc


V1: Final[ElementLayout] = _Version1()
V2: Final[ElementLayout] = _Version2()
#: The layouts by format version.
LAYOUTS: Final = {1: V1, 2: V2}
#: The layout new archives are written in.
CURRENT: Final = V2
#: The file header of a new archive.
FILE_HEADER: Final = CURRENT.file_header


def check_file_header(data: bytes) -> ElementLayout:
    """The layout of the archive that ``data`` starts; raises
    :class:`CorruptArchiveError` unless it starts an archive."""
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
