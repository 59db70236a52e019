"""Building archive bytes in memory with the format core, for the tests."""

from __future__ import annotations

from dataclasses import dataclass

from aiorecords._core.archive import (
    FILE_HEADER,
    TRAILER_SIZE,
    ArchiveEntry,
    Codec,
    encode_header,
    encode_trailer,
)
from aiorecords._core.archive_stream import EntryDecoder, EntryEncoder
from aiorecords._core.archive_walk import Listing, extend_listing

CODECS = {None: Codec.NONE, "gzip": Codec.GZIP, "zstd": Codec.ZSTD}


@dataclass
class Element:
    """An element to build: what an append is given."""

    name: str
    data: bytes
    compression: str | None = None
    data_gzip: bool = False
    timestamp: int = 1
    comment: str = ""


def element_bytes(start: int, element: Element) -> bytes:
    """The bytes of ``element`` placed at offset ``start``."""
    codec = CODECS[element.compression]
    header, header_crc = encode_header(
        start, element.name, element.timestamp, element.comment, codec
    )
    encoder = EntryEncoder(codec, element.data_gzip)
    stored = b"".join(encoder.feed(element.data)) + encoder.finish()
    length = len(header) + len(stored) + TRAILER_SIZE
    trailer = encode_trailer(
        start,
        length,
        encoder.stored_size,
        encoder.data_size,
        encoder.crc,
        header_crc,
    )
    return header + stored + trailer


def archive_bytes(*elements: Element) -> bytes:
    """A whole archive holding ``elements``, oldest first."""
    out = bytearray(FILE_HEADER)
    for element in elements:
        out += element_bytes(len(out), element)
    return bytes(out)


def reader(data: bytes):
    """A ``pread`` over ``data`` that, like a file's, refuses to read before
    the start."""

    def pread(offset: int, size: int) -> bytes:
        assert offset >= 0, offset
        assert size >= 0, size
        return data[offset : offset + size]

    return pread


def listing(data: bytes) -> Listing:
    """The listing of the archive ``data``, walked from scratch."""
    return extend_listing(reader(data), len(data), Listing())


def payload(data: bytes, entry: ArchiveEntry, limit: int = 1 << 20) -> bytes:
    """The data of ``entry`` decoded from ``data``, ``limit`` bytes a step."""
    decoder = EntryDecoder(
        reader(data),
        entry.payload_offset,
        entry.stored_size,
        CODECS[entry.compression],
        entry.size,
        entry.payload_crc,
    )
    parts = []
    while chunk := decoder.read(limit):
        parts.append(chunk)
    return b"".join(parts)
