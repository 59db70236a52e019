"""Building archive bytes in memory with the format core, for the tests."""

from __future__ import annotations

from dataclasses import dataclass

from aiorecords._wants import answer_reads
from aiorecords.archive._format import (
    CURRENT,
    ArchiveEntry,
    Codec,
    ElementLayout,
    check_file_header,
)
from aiorecords.archive._stream import CHUNK, EntryDecoder, EntryEncoder
from aiorecords.archive._walk import Listing, extend_listing

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


def element_bytes(
    start: int, element: Element, layout: ElementLayout = CURRENT
) -> bytes:
    """The bytes of ``element`` placed at offset ``start``."""
    codec = CODECS[element.compression]
    header, header_crc = layout.encode_header(
        start, element.name, element.timestamp, element.comment, codec
    )
    encoder = EntryEncoder(codec, element.data_gzip, layout.stuffed)
    stored = b"".join(encoder.feed(element.data)) + encoder.finish()
    length = len(header) + len(stored) + layout.trailer_size
    trailer = layout.encode_trailer(
        start,
        length,
        encoder.stored_size,
        encoder.data_size,
        encoder.crc,
        header_crc,
    )
    return header + stored + trailer


def archive_bytes(*elements: Element, layout: ElementLayout = CURRENT) -> bytes:
    """A whole archive holding ``elements``, oldest first."""
    out = bytearray(layout.file_header)
    for element in elements:
        out += element_bytes(len(out), element, layout)
    return bytes(out)


def reader(data: bytes):
    """A ``pread`` over ``data`` that, like a file's, refuses to read before
    the start."""

    def pread(offset: int, size: int) -> bytes:
        assert offset >= 0, offset
        assert size >= 0, size
        return data[offset : offset + size]

    return pread


class Decoding:
    """An `EntryDecoder` driven over a ``pread`` function: its reads are
    answered as a worker thread answers them."""

    def __init__(self, pread, *arguments) -> None:
        self.decoder = EntryDecoder(*arguments)
        self.pread = pread

    @property
    def done(self) -> bool:
        return self.decoder.done

    def read(self, limit: int = CHUNK) -> bytes:
        return answer_reads(self.decoder.read(limit), self.pread)


def walk(steps, data: bytes):
    """Run a walk of the archive ``data`` to its end, answering its reads."""
    return answer_reads(steps, reader(data))


def listing(data: bytes) -> Listing:
    """The listing of the archive ``data``, walked from scratch (in the
    layout its file header names)."""
    layout = check_file_header(data)
    return answer_reads(extend_listing(len(data), Listing(layout)), reader(data))


def payload(data: bytes, entry: ArchiveEntry, limit: int = 1 << 20) -> bytes:
    """The data of ``entry`` decoded from ``data``, ``limit`` bytes a step."""
    decoder = Decoding(
        reader(data),
        entry.payload_offset,
        entry.stored_size,
        CODECS[entry.compression],
        entry.size,
        entry.payload_crc,
        check_file_header(data).stuffed,
    )
    parts = []
    while chunk := decoder.read(limit):
        parts.append(chunk)
    return b"".join(parts)
