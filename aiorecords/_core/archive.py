"""The byte layout of archives of named entries ("gar"), as pure code.

An archive is a file header followed by elements, each::

    header   fixed 36 bytes, then the name and the comment
    payload  the stored bytes (compressed, or not)
    trailer  fixed 48 bytes

A reader walks from the end: the trailer says where its element starts, so
the element before ends there. Headers carry no lengths (an entry is
streamed, its size unknown until it is finished); the trailer, written last,
is what makes an element exist. See ``docs/formats/archive.md`` for every
byte and the reasons.

Integers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c

from ..errors import CorruptArchiveError

__all__ = [
    "FILE_HEADER",
    "FILE_HEADER_SIZE",
    "HEADER_MAGIC",
    "HEADER_SIZE",
    "MAX_COMMENT",
    "MAX_NAME",
    "TRAILER_MAGIC",
    "TRAILER_SIZE",
    "ArchiveEntry",
    "Codec",
    "Header",
    "Trailer",
    "check_file_header",
    "decode_header",
    "decode_trailer",
    "encode_header",
    "encode_trailer",
    "header_lengths",
    "trailer_candidates",
]

# The first bytes of every archive: a high byte (not text), the name, a line
# ending pair and an end-of-file character that text-mode transfers mangle,
# then the format version and a checksum (PNG's idea).
_MAGIC: Final = b"\x89GAR\r\n\x1a\n"
_VERSION: Final = 1
_FILE_HEADER: Final = struct.Struct("<8sLL")
FILE_HEADER_SIZE: Final = _FILE_HEADER.size  # 16


def _file_header() -> bytes:
    head = _MAGIC + struct.pack("<L", _VERSION)
    return head + struct.pack("<L", crc32c(head))


#: The file header of an archive of the current version.
FILE_HEADER: Final = _file_header()

HEADER_MAGIC: Final = b"GARe"
TRAILER_MAGIC: Final = b"GARt"

#: Longest entry name and comment, in bytes of UTF-8.
MAX_NAME: Final = 65536
MAX_COMMENT: Final = 65536

# magic, codec, flags, reserved(2), timestamp, element start, name length,
# comment length, header checksum (of the 32 bytes before it, then of the
# name and the comment that follow)
_HEADER: Final = struct.Struct("<4sBBHqQLLL")
HEADER_SIZE: Final = _HEADER.size  # 36, then the name and the comment

# element start, element length, stored length, data length, payload
# checksum, header checksum, magic, trailer checksum
_TRAILER: Final = struct.Struct("<QQQQLL4sL")
TRAILER_SIZE: Final = _TRAILER.size  # 48

_MAX_LENGTH: Final = 1 << 63


class Codec:
    """How a payload is stored: the codec byte of an element header."""

    NONE: Final = 0
    GZIP: Final = 1
    ZSTD: Final = 2
    NAMES: Final = {NONE: None, GZIP: "gzip", ZSTD: "zstd"}


def check_file_header(data: bytes) -> None:
    """Raise :class:`CorruptArchiveError` unless ``data`` starts an archive."""
    if len(data) < FILE_HEADER_SIZE:
        raise CorruptArchiveError("too short to be an archive", offset=0)
    magic, version, crc = _FILE_HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CorruptArchiveError("not an archive (unknown signature)", offset=0)
    if crc32c(data[:12]) != crc:
        raise CorruptArchiveError("archive header checksum does not match", offset=0)
    if version > _VERSION:
        raise CorruptArchiveError(
            f"archive format version {version} is newer than the supported "
            f"version {_VERSION}",
            offset=8,
        )


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


def encode_header(
    start: int, name: str, timestamp: int, comment: str, codec: int
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
    fixed = _HEADER.pack(
        HEADER_MAGIC,
        codec,
        0,
        0,
        timestamp,
        start,
        len(name_bytes),
        len(comment_bytes),
        0,
    )[:-4]
    crc = crc32c(comment_bytes, crc32c(name_bytes, crc32c(fixed)))
    return fixed + struct.pack("<L", crc) + name_bytes + comment_bytes, crc


def header_lengths(fixed: bytes, offset: int) -> int:
    """How many bytes the whole header takes, from its fixed part.

    Raises :class:`CorruptArchiveError` (at ``offset``) for a fixed part that
    cannot start a header, before anything is allocated for its strings.
    """
    if len(fixed) < _HEADER.size:
        raise CorruptArchiveError("element header is cut short", offset=offset)
    magic, codec, flags, _, _, _, name_len, comment_len, _ = _HEADER.unpack_from(fixed)
    if magic != HEADER_MAGIC:
        raise CorruptArchiveError("no element header here", offset=offset)
    if codec not in Codec.NAMES or flags:
        raise CorruptArchiveError(
            f"unknown codec {codec} or flags {flags}", offset=offset
        )
    if not 0 < name_len <= MAX_NAME or comment_len > MAX_COMMENT:
        raise CorruptArchiveError("impossible name or comment length", offset=offset)
    return int(_HEADER.size + name_len + comment_len)


def decode_header(data: bytes, offset: int) -> Header:
    """Decode a whole header (``header_lengths`` bytes) found at ``offset``."""
    size = header_lengths(data, offset)
    if len(data) < size:
        raise CorruptArchiveError("element header is cut short", offset=offset)
    _, codec, _, _, timestamp, start, name_len, _, crc = _HEADER.unpack_from(data)
    fixed = data[: _HEADER.size - 4]
    strings = data[_HEADER.size : size]
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


@dataclass(frozen=True, slots=True)
class Trailer:
    """An element trailer, decoded."""

    start: int
    length: int
    stored: int
    data: int
    payload_crc: int
    header_crc: int


def encode_trailer(
    start: int, length: int, stored: int, data: int, payload_crc: int, header_crc: int
) -> bytes:
    """The trailer bytes that end (and so create) an element."""
    body = _TRAILER.pack(
        start, length, stored, data, payload_crc, header_crc, TRAILER_MAGIC, 0
    )
    return body[:-4] + struct.pack("<L", crc32c(body[:-4]))


def decode_trailer(data: bytes, end: int) -> Trailer:
    """Decode the trailer whose last byte is just before ``end``.

    Raises :class:`CorruptArchiveError` (at the trailer's offset) for bytes
    that are not a trailer, or whose lengths do not fit where it lies.
    """
    offset = end - TRAILER_SIZE
    if len(data) != TRAILER_SIZE or offset < FILE_HEADER_SIZE:
        raise CorruptArchiveError("element trailer is cut short", offset=max(offset, 0))
    start, length, stored, size, payload_crc, header_crc, magic, crc = _TRAILER.unpack(
        data
    )
    if magic != TRAILER_MAGIC:
        raise CorruptArchiveError("no element trailer here", offset=offset)
    if crc32c(data[:-4]) != crc:
        raise CorruptArchiveError(
            "element trailer checksum does not match", offset=offset
        )
    if (
        start < FILE_HEADER_SIZE
        or length >= _MAX_LENGTH
        or start + length != end
        or stored + HEADER_SIZE + TRAILER_SIZE > length
        or size >= _MAX_LENGTH
    ):
        raise CorruptArchiveError("element lengths do not fit", offset=offset)
    return Trailer(start, length, stored, size, payload_crc, header_crc)


def trailer_candidates(chunk: bytes, chunk_start: int) -> list[int]:
    """Ends of the places in ``chunk`` that could end a trailer, last first.

    A damaged or torn tail is stepped over by looking backwards for the
    trailer magic; each candidate must then decode, and its element's header
    must name the same start, to be believed.
    """
    found = []
    limit = len(chunk)
    while (at := chunk.rfind(TRAILER_MAGIC, 0, limit)) >= 0:
        end = at + 8  # the magic is followed by the trailer's checksum
        if end <= len(chunk):
            found.append(chunk_start + end)
        limit = at + len(TRAILER_MAGIC) - 1  # next: one starting before this
    return found


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One element of an archive: its metadata and where its bytes lie."""

    name: str
    timestamp: int
    compression: str | None
    """``"gzip"``, ``"zstd"``, or None for a payload stored as written."""
    comment: str
    offset: int
    """File offset of the element."""
    payload_offset: int
    stored_size: int
    """Bytes stored (compressed, if the entry is)."""
    size: int
    """Bytes of the entry's data (uncompressed)."""
    payload_crc: int

    @property
    def end(self) -> int:
        """File offset just past the element."""
        return self.payload_offset + self.stored_size + TRAILER_SIZE
