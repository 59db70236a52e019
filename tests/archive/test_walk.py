"""Walking an archive back from its end: torn tails, damage, hostile bytes."""

from __future__ import annotations

import os
import random
import struct
import tracemalloc

import pytest
from crc32c import crc32c

from aiorecords._codecs import DecodeError
from aiorecords._wants import answer_reads
from aiorecords.archive._format import (
    CURRENT,
    FILE_HEADER,
    FILE_HEADER_SIZE,
    V1,
    Codec,
)
from aiorecords.archive._stream import EntryDecoder
from aiorecords.archive._walk import (
    WINDOW,
    Listing,
    extend_listing,
    find_back,
    valid_end,
)
from aiorecords.errors import CorruptArchiveError

from .build import (
    CODECS,
    Decoding,
    Element,
    archive_bytes,
    element_bytes,
    listing,
    payload,
    reader,
    walk,
)

ELEMENTS = [
    Element("a", b"first a"),
    Element("b", b"b" * 300, compression="gzip", comment="zipped"),
    Element("a", b"second a " * 20, compression="zstd", timestamp=-7),
    Element("c", b""),
    Element("d/e.html", bytes(range(256)), comment="ünïcode"),
]


HEADER_SIZE = CURRENT.header_size
TRAILER_SIZE = CURRENT.trailer_size


def summary(entries) -> list[tuple[str, int, str]]:
    return [(e.name, e.timestamp, e.comment) for e in entries]


def expected(elements: list[Element]) -> list[tuple[str, int, str]]:
    return [(e.name, e.timestamp, e.comment) for e in reversed(elements)]


def test_elements_are_listed_newest_first_with_their_data() -> None:
    data = archive_bytes(*ELEMENTS)
    found = listing(data)
    assert summary(found.entries) == expected(ELEMENTS)
    assert found.end == found.size == len(data)
    assert found.damage == ()
    for entry, element in zip(found.entries, reversed(ELEMENTS), strict=True):
        assert payload(data, entry) == element.data
        assert entry.compression == element.compression
        assert entry.size == len(element.data)
    assert found.latest["a"] is found.entries[2]
    assert set(found.latest) == {"a", "b", "c", "d/e.html"}


def test_an_empty_archive_has_no_entries() -> None:
    data = archive_bytes()
    assert listing(data).entries == ()
    assert (
        walk(valid_end(len(data), FILE_HEADER_SIZE, CURRENT), data) == FILE_HEADER_SIZE
    )


def test_every_prefix_lists_exactly_the_whole_elements_in_it() -> None:
    """The archive fed one byte at a time: a growing file, or one cut by a
    crash anywhere. The walk from scratch and the incremental one agree."""
    data = archive_bytes(*ELEMENTS)
    ends = [e.end for e in reversed(listing(data).entries)]
    known = Listing(CURRENT)
    for size in range(FILE_HEADER_SIZE, len(data) + 1):
        prefix = data[:size]
        whole = [
            element for element, end in zip(ELEMENTS, ends, strict=True) if end <= size
        ]
        scratch = walk(extend_listing(size, Listing(CURRENT)), prefix)
        assert summary(scratch.entries) == expected(whole), size
        assert scratch.damage == ()
        assert scratch.end == max([FILE_HEADER_SIZE, *(e for e in ends if e <= size)])
        known = walk(extend_listing(size, known), prefix)
        assert known.entries == scratch.entries
        assert known.end == scratch.end
        assert walk(valid_end(size, FILE_HEADER_SIZE, CURRENT), prefix) == scratch.end


@pytest.mark.parametrize(
    "garbage",
    [
        b"\0",
        b"\0" * 5000,
        b"GARt",
        b"GARe" + b"\xff" * 40,
        os.urandom(3 * WINDOW),
        b"GARtGARt" * 100,
        b"\xe5\x01Gt",
        b"\xe5\x01Gt\x00\x00\x00\x00\x00" * 100,
        b"\xe5\x01",
        b"\xe5\x01GAR trailer v2" * 20,
    ],
)
def test_trailing_garbage_is_a_torn_tail(garbage: bytes) -> None:
    data = archive_bytes(*ELEMENTS)
    found = listing(data + garbage)
    assert summary(found.entries) == expected(ELEMENTS)
    assert found.end == len(data)
    assert found.damage == ()
    size = len(data) + len(garbage)
    assert answer_reads(
        valid_end(size, FILE_HEADER_SIZE, CURRENT), reader(data + garbage)
    ) == len(data)


def test_a_torn_element_holding_an_archive_is_not_mistaken_for_elements() -> None:
    """An archive stored as an entry holds trailers of its own: cut short,
    the outer element must not let them pass for elements."""
    inner = archive_bytes(*ELEMENTS)
    data = archive_bytes(Element("outer", b"before"))
    torn = element_bytes(len(data), Element("nested.gar", inner))[:-TRAILER_SIZE]
    for cut in (len(torn), len(torn) - 10, HEADER_SIZE + 20 + len(inner)):
        found = listing(data + torn[:cut])
        assert summary(found.entries) == [("outer", 1, "")]
    whole = data + element_bytes(len(data), Element("nested.gar", inner))
    outer = listing(whole)
    assert [e.name for e in outer.entries] == ["nested.gar", "outer"]
    assert payload(whole, outer.entries[0]) == inner


def test_a_large_torn_tail_is_stepped_over_window_by_window() -> None:
    data = archive_bytes(*ELEMENTS)
    torn = element_bytes(len(data), Element("big", os.urandom(5 * WINDOW)))
    found = listing(data + torn[: 4 * WINDOW + 123])
    assert summary(found.entries) == expected(ELEMENTS)


def test_a_damaged_element_is_reported_and_stepped_over() -> None:
    data = bytearray(archive_bytes(*ELEMENTS))
    entries = listing(bytes(data)).entries  # newest first
    victim = entries[2]  # the second "a"
    data[victim.end - 2] ^= 0xFF  # its trailer checksum
    found = listing(bytes(data))
    assert len(found.damage) == 1
    damage = found.damage[0]
    assert (damage.region.start, damage.region.end) == (victim.offset, victim.end)
    assert damage.region.start <= damage.offset < damage.region.end
    assert "checksum" in damage.region.reason or "damaged" in damage.region.reason
    assert [e.offset for e in found.entries] == [
        e.offset for e in entries if e is not victim
    ]


def test_damage_in_the_last_trailer_cannot_be_told_from_a_torn_tail() -> None:
    data = bytearray(archive_bytes(*ELEMENTS))
    data[-1] ^= 0xFF
    found = listing(bytes(data))
    assert summary(found.entries) == expected(ELEMENTS[:-1])
    assert found.damage == ()


def test_a_damaged_last_header_behind_a_whole_trailer_is_damage() -> None:
    data = bytearray(archive_bytes(*ELEMENTS))
    last = listing(bytes(data)).entries[0]
    data[last.offset + HEADER_SIZE] ^= 0xFF  # a byte of its name
    found = listing(bytes(data))
    assert summary(found.entries) == expected(ELEMENTS[:-1])
    assert [(d.region.start, d.region.end) for d in found.damage] == [
        (last.offset, last.end)
    ]


def test_every_single_byte_of_damage_is_caught() -> None:
    """Flip each byte after the file header in turn: no flip goes unseen.

    Each element either is listed unchanged and reads back its data, or
    holds the flipped byte and is then listed as damage, dropped as a torn
    tail (only the last one), or fails its checksum when read.
    """
    elements = [
        Element("a", b"alpha" * 3),
        Element("b", b"bravo" * 40, compression="gzip", comment="c"),
        Element("z", b"zulu" * 30, compression="zstd"),
    ]
    clean = archive_bytes(*elements)
    originals = listing(clean).entries
    rng = random.Random(5)
    for at in range(FILE_HEADER_SIZE, len(clean)):
        data = bytearray(clean)
        data[at] ^= 1 << rng.randrange(8)
        damaged = bytes(data)
        found = answer_reads(
            extend_listing(len(damaged), Listing(CURRENT)), reader(damaged)
        )
        holder = next(e for e in originals if e.offset <= at < e.end)
        listed = {e.offset: e for e in found.entries}
        for original, element in zip(originals, reversed(elements), strict=True):
            if original is not holder:
                assert listed[original.offset] == original, at
                assert payload(damaged, original) == element.data, at
        if holder.offset in listed:
            entry = listed[holder.offset]
            with pytest.raises(DecodeError):
                payload(damaged, entry)
        elif holder is originals[0] and not found.damage:
            pass  # the newest element's trailer: a torn tail
        else:
            assert any(
                d.region.start <= holder.offset and holder.end <= d.region.end
                for d in found.damage
            ), at


def test_find_stops_at_the_newest_match() -> None:
    elements = [Element(f"n{i % 7}", os.urandom(10_000)) for i in range(100)]
    data = archive_bytes(*elements)
    reads: list[int] = []

    def counting(offset: int, size: int) -> bytes:
        reads.append(offset)
        return data[offset : offset + size]

    found, grown = answer_reads(find_back(len(data), Listing(CURRENT), "n5"), counting)
    assert found is not None
    assert found.name == "n5"
    assert payload(data, found) == elements[96].data
    assert grown is None  # the walk stopped early: no full listing
    assert min(reads) >= len(data) - WINDOW  # one window, not the archive
    found, grown = answer_reads(
        find_back(len(data), Listing(CURRENT), "missing"), reader(data)
    )
    assert found is None
    assert grown is not None
    assert len(grown.entries) == len(elements)
    found, _ = walk(find_back(len(data), grown, "n1"), data)
    assert found is grown.latest["n1"]
    assert payload(data, found) == elements[99].data


def test_find_refuses_to_guess_past_damage() -> None:
    data = bytearray(archive_bytes(*ELEMENTS))
    entries = listing(bytes(data)).entries
    data[entries[1].end - 2] ^= 0xFF  # the trailer of "c"
    damaged = bytes(data)
    found, _ = answer_reads(
        find_back(len(damaged), Listing(CURRENT), "d/e.html"), reader(damaged)
    )
    assert found is not None  # newer than the damage
    with pytest.raises(CorruptArchiveError) as caught:
        walk(find_back(len(damaged), Listing(CURRENT), "a"), damaged)
    assert caught.value.offset is not None
    known = answer_reads(
        extend_listing(len(damaged), Listing(CURRENT)), reader(damaged)
    )
    with pytest.raises(CorruptArchiveError):
        walk(find_back(len(damaged), known, "missing"), damaged)


def read_to_the_end(decoder: EntryDecoder) -> None:
    while decoder.read():
        pass


def _signed(body: bytes) -> bytes:
    return body + struct.pack("<L", crc32c(body))


def test_hostile_lengths_allocate_nothing_large() -> None:
    """Trailers and headers whose checksums are right but whose lengths are
    absurd: refused, with no allocation anywhere near what they claim.
    (Written in version 1, whose binary fields are easy to forge.)"""
    base = archive_bytes(Element("ok", b"fine"), layout=V1)
    start = len(base)
    header, header_crc = V1.encode_header(start, "x", 0, "", Codec.NONE)
    hostile = [
        # A trailer claiming a stored payload of 2**62 bytes.
        _signed(
            struct.pack("<QQQQLL4s", start, 1 << 62, 1 << 62, 1, 0, header_crc, b"GARt")
        ),
        # A whole element whose trailer claims 2**62 bytes of data.
        header
        + V1.encode_trailer(
            start, len(header) + V1.trailer_size, 0, (1 << 62), 0, header_crc
        ),
        # A header claiming a 4 GiB name, behind a plausible trailer.
        struct.pack("<4sBBHqQLLL", b"GARe", 0, 0, 0, 0, start, 0xFFFFFFFF, 0, 0)
        + V1.encode_trailer(start, V1.header_size + V1.trailer_size, 0, 0, 0, 0),
    ]
    tracemalloc.start()
    try:
        for tail in hostile:
            data = base + tail
            found = listing(data)
            for entry in found.entries:
                if entry.name == "x":
                    decoder = Decoding(
                        reader(data),
                        entry.payload_offset,
                        entry.stored_size,
                        CODECS[entry.compression],
                        entry.size,
                        entry.payload_crc,
                        False,
                    )
                    with pytest.raises(DecodeError):
                        read_to_the_end(decoder)
            assert "ok" in found.latest
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_trailer_magic_near_the_start_is_not_read_before_the_file() -> None:
    for gap in range(0, 60, 4):
        data = FILE_HEADER + b"\0" * gap + b"\xe5\x01GAR trailer v212345" + b"GARe"
        assert listing(data).entries == ()
        assert answer_reads(
            valid_end(len(data), FILE_HEADER_SIZE, CURRENT), reader(data)
        ) == (FILE_HEADER_SIZE)
        data = V1.file_header + b"\0" * gap + b"GARt1234" + b"GARe"
        assert listing(data).entries == ()
        assert answer_reads(
            valid_end(len(data), FILE_HEADER_SIZE, V1), reader(data)
        ) == (FILE_HEADER_SIZE)
