"""The archive byte layout: file header, element header, trailer."""

from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from aiorecords.archive._format import (
    CURRENT,
    FILE_HEADER,
    FILE_HEADER_SIZE,
    LAYOUTS,
    MAX_COMMENT,
    MAX_NAME,
    V1,
    V2,
    Codec,
    ElementLayout,
    check_file_header,
)
from aiorecords.errors import CorruptArchiveError

from .build import Element, archive_bytes, listing

# Version 1 is the layout of this page's binary tests; what holds for both
# layouts is tested on both.
HEADER_SIZE = V1.header_size
TRAILER_SIZE = V1.trailer_size
TRAILER_MAGIC = V1.trailer_magic
encode_header = V1.encode_header
decode_header = V1.decode_header
header_lengths = V1.header_lengths
encode_trailer = V1.encode_trailer
decode_trailer = V1.decode_trailer
trailer_candidates = V1.trailer_candidates

both_layouts = pytest.mark.parametrize("layout", [V1, V2], ids=["v1", "v2"])


@pytest.mark.parametrize("version", [1, 2])
def test_file_header_is_signature_version_and_checksum(version: int) -> None:
    head = LAYOUTS[version].file_header
    assert len(head) == FILE_HEADER_SIZE == 16
    assert head[:8] == b"\x89GAR\r\n\x1a\n"
    assert struct.unpack_from("<L", head, 8) == (version,)
    assert struct.unpack_from("<L", head, 12) == (crc32c(head[:12]),)
    assert check_file_header(head) is LAYOUTS[version]
    assert check_file_header(head + b"anything after it") is LAYOUTS[version]


def test_new_archives_are_version_2() -> None:
    assert CURRENT is V2
    assert V2.file_header == FILE_HEADER


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (FILE_HEADER[:15], "too short"),
        (b"PK\x03\x04" + FILE_HEADER[4:], "not an archive"),
        (FILE_HEADER[:12] + b"\0\0\0\0", "checksum"),
    ],
)
def test_a_bad_file_header_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(CorruptArchiveError, match=message) as caught:
        check_file_header(data)
    assert caught.value.offset == 0


@pytest.mark.parametrize("version", [0, 3, 0xFFFFFFFF])
def test_an_unknown_version_is_refused_by_name(version: int) -> None:
    head = FILE_HEADER[:8] + struct.pack("<L", version)
    with pytest.raises(CorruptArchiveError, match=f"version {version} is not"):
        check_file_header(head + struct.pack("<L", crc32c(head)))


@both_layouts
@pytest.mark.parametrize("timestamp", [-5, 0, (1 << 63) - 1, -(1 << 63)])
def test_header_round_trip(layout: ElementLayout, timestamp: int) -> None:
    header, crc = layout.encode_header(
        1000, "näme/ü.html", timestamp, "a comment ✓", Codec.GZIP
    )
    assert len(header) == layout.header_size + len("näme/ü.html".encode()) + 13
    assert layout.header_lengths(header[: layout.header_size], 1000) == len(header)
    decoded = layout.decode_header(header, 1000)
    assert (decoded.name, decoded.comment, decoded.timestamp) == (
        "näme/ü.html",
        "a comment ✓",
        timestamp,
    )
    assert (decoded.codec, decoded.start, decoded.size, decoded.crc) == (
        Codec.GZIP,
        1000,
        len(header),
        crc,
    )


@pytest.mark.parametrize(
    ("name", "comment", "timestamp"),
    [
        ("", "", 0),
        ("x" * (MAX_NAME + 1), "", 0),
        ("é" * (MAX_NAME // 2 + 1), "", 0),
        ("n", "c" * (MAX_COMMENT + 1), 0),
        ("n", "", 1 << 63),
        ("n", "", -(1 << 63) - 1),
    ],
)
@both_layouts
def test_header_limits_are_enforced(
    layout: ElementLayout, name: str, comment: str, timestamp: int
) -> None:
    with pytest.raises(ValueError, match=r"empty|at most|64-bit"):
        layout.encode_header(16, name, timestamp, comment, Codec.NONE)


@both_layouts
def test_the_largest_names_and_comments_fit(layout: ElementLayout) -> None:
    header, _ = layout.encode_header(
        16, "n" * MAX_NAME, (1 << 63) - 1, "c" * MAX_COMMENT, Codec.ZSTD
    )
    decoded = layout.decode_header(header, 16)
    assert len(decoded.name) == MAX_NAME
    assert len(decoded.comment) == MAX_COMMENT


def _fixed(**fields: int) -> bytes:
    """A header's fixed part with some fields replaced (checksum left 0)."""
    values = {
        "codec": 0,
        "flags": 0,
        "name_len": 1,
        "comment_len": 0,
    }
    values.update(fields)
    return struct.pack(
        "<4sBBHqQLLL",
        b"GARe",
        values["codec"],
        values["flags"],
        0,
        0,
        16,
        values["name_len"],
        values["comment_len"],
        0,
    )


@pytest.mark.parametrize(
    "fixed",
    [
        _fixed(name_len=0xFFFFFFFF),
        _fixed(name_len=MAX_NAME + 1),
        _fixed(name_len=0),
        _fixed(comment_len=MAX_COMMENT + 1),
        _fixed(codec=3),
        _fixed(flags=1),
        b"GARx" + _fixed()[4:],
        _fixed()[:-1],
    ],
)
def test_an_impossible_header_is_refused_before_its_strings_are_read(
    fixed: bytes,
) -> None:
    with pytest.raises(CorruptArchiveError) as caught:
        header_lengths(fixed, 16)
    assert caught.value.offset == 16


@both_layouts
def test_a_header_is_checked_whole(layout: ElementLayout) -> None:
    header, _ = layout.encode_header(16, "name", 1, "comment", Codec.NONE)
    for at in range(len(header)):
        for flip in (0x01, 0x80):
            damaged = bytearray(header)
            damaged[at] ^= flip
            with pytest.raises(CorruptArchiveError):
                layout.decode_header(bytes(damaged), 16)
    with pytest.raises(CorruptArchiveError, match="starts at 16"):
        layout.decode_header(header, 17)
    with pytest.raises(CorruptArchiveError, match="cut short"):
        layout.decode_header(header[:-1], 16)


def test_a_name_that_is_not_utf8_is_refused() -> None:
    fixed = _fixed(name_len=2)[:-4]
    strings = b"\xff\xfe"
    header = fixed + struct.pack("<L", crc32c(strings, crc32c(fixed))) + strings
    with pytest.raises(CorruptArchiveError, match="UTF-8"):
        decode_header(header, 16)


@both_layouts
def test_trailer_round_trip(layout: ElementLayout) -> None:
    trailer = layout.encode_trailer(16, 200, 10, 20, 0xDEADBEEF, 0x1234)
    assert len(trailer) == layout.trailer_size
    magic_at = trailer.index(layout.trailer_magic)
    crc_size = 4 if layout is V1 else 5
    assert magic_at == layout.trailer_size - len(layout.trailer_magic) - crc_size
    decoded = layout.decode_trailer(trailer, 216)
    assert (decoded.start, decoded.length, decoded.stored, decoded.data) == (
        16,
        200,
        10,
        20,
    )
    assert (decoded.payload_crc, decoded.header_crc) == (0xDEADBEEF, 0x1234)


def _signed(body: bytes) -> bytes:
    return body + struct.pack("<L", crc32c(body))


@pytest.mark.parametrize(
    ("trailer", "end"),
    [
        (encode_trailer(16, 100, 10, 20, 0, 0), 117),  # not where it says
        (encode_trailer(16, 100, 10, 20, 0, 0)[:-1] + b"\0", 116),  # checksum
        (encode_trailer(8, 100, 10, 20, 0, 0), 108),  # inside the file header
        (encode_trailer(16, 100, 60, 20, 0, 0), 116),  # stored > room
        (encode_trailer(16, 100, 10, 20, 0, 0)[:-1], 116),  # cut short
        (_signed(struct.pack("<QQQQLL4s", 16, 1 << 63, 1, 1, 0, 0, b"GARt")), 16),
        (_signed(struct.pack("<QQQQLL4s", 16, 100, 1, 1 << 63, 0, 0, b"GARt")), 116),
        (_signed(struct.pack("<QQQQLL4s", 16, 100, 1, 1, 0, 0, b"GARx")), 116),
    ],
)
def test_an_impossible_trailer_is_refused(trailer: bytes, end: int) -> None:
    with pytest.raises(CorruptArchiveError):
        decode_trailer(trailer, end)


def test_trailer_candidates_are_every_magic_last_first() -> None:
    chunk = b"..GARt1234..GARt5678GARt12"
    # Each candidate ends 4 bytes (the trailer checksum) after its magic;
    # one too near the end of the chunk to be whole is not a candidate.
    assert trailer_candidates(chunk, 1000) == [1000 + 20, 1000 + 10]
    assert trailer_candidates(b"GARtGARtGARt", 0) == [12, 8]


@both_layouts
def test_entry_end_is_just_past_the_trailer(layout: ElementLayout) -> None:
    data = archive_bytes(Element("a", b"x" * 10), Element("b", b"y" * 3), layout=layout)
    newest, oldest = listing(data).entries
    assert oldest.offset == FILE_HEADER_SIZE
    assert oldest.end == newest.offset
    assert newest.end == len(data)
    assert newest.payload_offset == newest.offset + layout.header_size + 1
    assert newest.end == newest.payload_offset + 3 + layout.trailer_size
