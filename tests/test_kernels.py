"""Issue 18: the compiled kernels (aiorecords._speedups) against their
pure-Python references, on random and damaged input.

Each kernel must give what its Python twin gives: the same bytes framed,
the same records with the same offsets, the same place it stops (so that
the core's general path then reports the same drops, with the same
reasons). The decoders are also run whole with each set of kernels, fed
whole, byte by byte and with trailing garbage.

These tests need the extension. Without it they are skipped, unless
AIORECORDS_REQUIRE_EXTENSION=1 (as CI sets for its first run), which makes
a missing extension a failure.
"""

from __future__ import annotations

import os
import random
import struct
import sys
from typing import Any

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorecords import SkippedRegion, _kernels
from aiorecords._wants import answer_reads
from aiorecords.archive import _walk
from aiorecords.archive._format import (
    HEADER_MAGIC,
    V1,
    V2,
    ArchiveEntry,
    ElementLayout,
    _septets,
    _to_septet_fields,
    frame_element,
)
from aiorecords.archive._walk import Listing, extend_listing, find_back
from aiorecords.capture import _index
from aiorecords.records import _log
from aiorecords.records._log import BLOCK_SIZE, LogDecoder, LogEncoder
from aiorecords.tfrecord import _frame
from aiorecords.tfrecord._frame import TFRecordDecoder

from .archive.build import Element, archive_bytes, element_bytes

compiled: Any = _kernels.compiled
if compiled is None:
    if os.environ.get("AIORECORDS_REQUIRE_EXTENSION") == "1":
        pytest.fail(
            "aiorecords._speedups was not built (AIORECORDS_REQUIRE_EXTENSION=1)",
            pytrace=False,
        )
    pytestmark = pytest.mark.skip(reason="aiorecords._speedups is not built")

FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Record sizes around the places framing changes: empty, small, the end of
# a block (32,761 is the most a block holds), spanning blocks, and past the
# kernel's switch to the crc32c package for long data (16 KiB).
sizes = st.one_of(
    st.integers(0, 300),
    st.integers(32_750, 32_780),
    st.integers(16_380, 16_390),
    st.integers(0, 70_000),
)


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    """Records as writers are given them: bytes mostly, some str,
    bytearray and memoryview."""
    out: list[Any] = []
    for size in draw(st.lists(sizes, max_size=12)):
        data = random.Random(size).randbytes(size)
        kind = draw(st.sampled_from(["bytes", "bytes", "str", "bytearray", "view"]))
        if kind == "str":
            out.append("é" * (size // 2))
        elif kind == "bytearray":
            out.append(bytearray(data))
        elif kind == "view":
            out.append(memoryview(b"??" + data)[2:])
        else:
            out.append(data)
    return out


# -- CRC-32C -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 63, 4096, 16_383, 16_384, 70_001])
def test_crc32c_is_the_packages(size: int) -> None:
    data = random.Random(size).randbytes(size + 3)
    for start in range(3):  # unaligned starts too
        piece = data[start : start + size]
        assert compiled.crc32c(piece) == crc32c.crc32c(piece)
        assert compiled.crc32c(piece, 12345) == crc32c.crc32c(piece, 12345)
    assert compiled.crc32c(b"123456789") == 0xE3069283


# -- encoders ------------------------------------------------------------------


@FAST
@given(
    records(),
    # BLOCK_SIZE itself: the last record ended its block exactly.
    st.one_of(
        st.integers(0, BLOCK_SIZE),
        st.sampled_from([BLOCK_SIZE - 7, BLOCK_SIZE - 6, BLOCK_SIZE]),
    ),
    st.integers(0, 14),
    st.integers(1, 100_000),
)
def test_log_encode_frames_as_the_reference(
    batch: list[Any], offset: int, start: int, max_bytes: int
) -> None:
    start = min(start, len(batch))
    ours, theirs = bytearray(b"x"), bytearray(b"x")
    assert compiled.log_encode(
        batch, start, start + 5, offset, ours, max_bytes
    ) == _log.encode_records(batch, start, start + 5, offset, theirs, max_bytes)
    assert ours == theirs


@FAST
@given(records(), st.integers(0, 14), st.integers(1, 100_000))
def test_tf_frame_frames_as_the_reference(
    batch: list[Any], start: int, max_bytes: int
) -> None:
    start = min(start, len(batch))
    ours, theirs = bytearray(b"x"), bytearray(b"x")
    assert compiled.tf_frame(
        batch, start, start + 5, ours, max_bytes
    ) == _frame.frame_records(batch, start, start + 5, theirs, max_bytes)
    assert ours == theirs


@pytest.mark.parametrize("kernel", ["compiled", "reference"])
def test_a_bad_record_leaves_nothing_of_the_call(kernel: str) -> None:
    batch = [b"a" * 40_000, b"b", 7, b"c"]
    for frame in (
        lambda out: (
            compiled.log_encode if kernel == "compiled" else _log.encode_records
        )(batch, 0, 4, 100, out, 1 << 40),
        lambda out: (
            compiled.tf_frame if kernel == "compiled" else _frame.frame_records
        )(batch, 0, 4, out, 1 << 40),
    ):
        out = bytearray(b"kept")
        with pytest.raises(TypeError, match="a record is bytes or str, not int"):
            frame(out)
        assert out == b"kept"
    with pytest.raises(UnicodeEncodeError):
        compiled.log_encode(["\udc80"], 0, 1, 0, bytearray(), 1)


def test_the_encoders_frame_what_comes_before_a_bad_record() -> None:
    """As write() one record at a time would: the records before the bad
    one are framed, then it raises."""
    out, expected = bytearray(), bytearray()
    encoder = LogEncoder(5)
    with pytest.raises(TypeError):
        encoder.encode_many([b"one", "two", None, b"four"], 0, 4, out, 1 << 40)  # type: ignore[list-item]
    reference = LogEncoder(5)
    reference.encode(b"one", expected)
    reference.encode(b"two", expected)
    assert out == expected
    assert encoder.block_offset == reference.block_offset


# -- capture blocks ------------------------------------------------------------


def capture_block(rng: random.Random) -> tuple[bytes, tuple[int, ...]]:
    """A block of sized items (ASCII, UTF-8, not UTF-8, empty), the offsets
    of them, and at random offsets that are wrong: past the end, inside an
    item, of an item whose length runs past the end."""
    block = bytearray(rng.randbytes(rng.randrange(3)))
    offsets = []
    for _ in range(rng.randrange(40)):
        kind = rng.randrange(4)
        if kind == 0:
            item = bytes(rng.choice(b"abc xyz{}:,") for _ in range(rng.randrange(60)))
        elif kind == 1:
            item = "été ☃ ok".encode()[: rng.randrange(14)]  # cut: maybe not UTF-8
        elif kind == 2:
            item = rng.randbytes(rng.randrange(30))
        else:
            item = b""
        offsets.append(len(block))
        block += struct.pack(">L", len(item)) + item
    if rng.random() < 0.5 and offsets:
        wrong = rng.choice(
            [
                len(block),
                len(block) - 2,
                len(block) + 10,
                rng.randrange(len(block) + 1),
            ]
        )
        offsets.insert(rng.randrange(len(offsets) + 1), wrong)
    if rng.random() < 0.2:
        block += struct.pack(">L", 1 << 31)  # a length past the end
        offsets.append(len(block) - 4)
    return bytes(block), tuple(offsets)


def items_or_error(block: bytes, offsets: tuple[int, ...], mode: str) -> Any:
    text = block.decode("latin-1") if mode == "latin-1" else None
    out: list[Any] = ["before"]
    try:
        _index.frame_items(block, offsets, 4096, text, out, utf8=mode == "utf8")
    except Exception as error:  # the same error, after the same items
        return out, type(error), str(error)
    return out


@pytest.mark.parametrize("mode", ["bytes", "latin-1", "utf8"])
def test_capture_items_frames_as_the_reference(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(mode)
    for _ in range(3000):
        block, offsets = capture_block(rng)
        ours = items_or_error(block, offsets, mode)
        with monkeypatch.context() as patch:
            patch.setattr(_index, "fast_capture_items", None)
            theirs = items_or_error(block, offsets, mode)
        assert ours == theirs, (block, offsets)


def test_capture_items_refuses_a_start_outside_the_offsets() -> None:
    for start in (-1, 2):
        with pytest.raises(ValueError, match="start outside"):
            compiled.capture_items(b"\0\0\0\0", (0,), start, False, [])
    assert compiled.capture_items(b"\0\0\0\0", (0,), 1, False, []) == 1


# -- decoding kernels ----------------------------------------------------------


def damaged_log(rng: random.Random) -> bytes:
    """A log of random records, then damaged at random: bit flips, a cut,
    zero fill, fragments of another kind."""
    out = bytearray()
    encoder = LogEncoder(rng.choice([0, 0, rng.randrange(BLOCK_SIZE)]))
    for _ in range(rng.randrange(60)):
        size = rng.choice([rng.randrange(200), rng.randrange(40_000), 0])
        encoder.encode(rng.randbytes(size), out)
    for _ in range(rng.randrange(4)):
        if not out:
            break
        where = rng.randrange(len(out))
        damage = rng.randrange(4)
        if damage == 0:
            out[where] ^= 1 << rng.randrange(8)
        elif damage == 1:
            del out[where:]
        elif damage == 2:
            end = where + rng.randrange(1, 40)
            out[where:end] = bytes(len(out[where:end]))  # zero fill
        else:
            out[where : where + 7] = struct.pack("<IHB", 0, 3, rng.choice([2, 3, 4, 9]))
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32), st.data())
def test_log_full_records_stops_where_the_reference_does(
    seed: int, data: st.DataObject
) -> None:
    rng = random.Random(seed)
    log = damaged_log(rng)
    buffer_start = data.draw(st.integers(0, len(log)))
    blocks = (len(log) - buffer_start) // BLOCK_SIZE
    block_start = buffer_start + data.draw(st.integers(0, blocks)) * BLOCK_SIZE
    pos = data.draw(st.integers(0, BLOCK_SIZE))
    # Offsets where records start are where the limits matter most.
    starts = record_starts(log) or [0]
    start = data.draw(st.sampled_from([0, rng.randrange(len(log) + 10), *starts]))
    stop = data.draw(st.sampled_from([1 << 62, rng.randrange(len(log) + 10), *starts]))
    if data.draw(st.booleans()):
        # A position on a record, as the decoder holds them.
        where = rng.choice(starts)
        block_start = where - where % BLOCK_SIZE
        pos = where - block_start
        buffer_start = min(buffer_start, block_start)
    limit = data.draw(st.integers(0, 400))
    buffer = log[buffer_start:]
    ours: list[Any] = []
    theirs: list[Any] = []
    args = (buffer, buffer_start, block_start, pos, start, stop, limit)
    assert compiled.log_full_records(*args, ours) == _log.full_records(*args, theirs)
    assert ours == theirs


def record_starts(log: bytes) -> list[int]:
    """The offsets of the records a pure decoder finds in ``log``."""
    decoder = LogDecoder()
    decoder.feed(log)
    decoder.feed_eof()
    found = []
    while (record := decoder.read()) is not None:
        found.append(record[1])
    return found


def damaged_tfrecords(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randrange(40)):
        _frame.frame(rng.randbytes(rng.choice([rng.randrange(100), 20_000])), out)
    for _ in range(rng.randrange(3)):
        if out:
            where = rng.randrange(len(out))
            if rng.random() < 0.5:
                out[where] ^= 1 << rng.randrange(8)
            else:
                del out[where:]
    return bytes(out)


def tf_record_ends(stream: bytes) -> list[int]:
    """The offsets just past each whole record of ``stream``."""
    decoder = TFRecordDecoder(max_record_size=1 << 30)
    decoder.feed(stream)
    return [end for _, _, end in decoder.read_many(1000) if type(end) is int]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32), st.data())
def test_tf_good_records_stops_where_the_reference_does(
    seed: int, data: st.DataObject
) -> None:
    rng = random.Random(seed)
    stream = damaged_tfrecords(rng)
    at = data.draw(st.integers(0, len(stream)))
    base = data.draw(st.integers(0, 1 << 40))
    ends = [base + end for end in tf_record_ends(stream)]
    stop = data.draw(
        st.sampled_from([1 << 62, base + rng.randrange(len(stream) + 1), *ends])
    )
    if data.draw(st.booleans()) and ends:
        at = rng.choice(ends) - base
    largest = data.draw(st.sampled_from([1 << 62, 0, 50, 20_000]))
    limit = data.draw(st.integers(0, 100))
    buffer = bytearray(stream)
    ours: list[Any] = []
    theirs: list[Any] = []
    args = (buffer, at, base, stop, largest, limit)
    assert compiled.tf_good_records(*args, ours) == _frame.good_records(*args, theirs)
    assert ours == theirs


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.binary(max_size=50), st.integers(0, 9), st.integers(0, 9)),
            st.just(SkippedRegion(1, 2, "gone")),
        ),
        max_size=30,
    ),
    st.integers(0, 32),
    st.integers(1, 300),
)
def test_take_records_takes_what_the_reference_does(
    pending: list[Any], index: int, max_bytes: int
) -> None:
    index = min(index, len(pending))
    ours: list[bytes] = []
    theirs: list[bytes] = []
    assert compiled.take_records(
        pending, index, max_bytes, ours
    ) == _kernels.take_records(pending, index, max_bytes, theirs)
    assert ours == theirs


@pytest.mark.parametrize(
    "call",
    [
        lambda: compiled.log_full_records(b"", 10, 0, 0, 0, 1, 1, []),
        lambda: compiled.log_full_records(b"", 0, 0, BLOCK_SIZE + 1, 0, 1, 1, []),
        lambda: compiled.tf_good_records(b"abc", 4, 0, 1, 1, 1, []),
        lambda: compiled.log_encode([], 0, 1, BLOCK_SIZE + 1, bytearray(), 1),
        lambda: compiled.log_encode([], 1, 0, 0, bytearray(), 1),
    ],
)
def test_positions_outside_the_buffer_are_refused(call: Any) -> None:
    with pytest.raises(ValueError, match=r"outside|block offset|negative"):
        call()


# -- walking archives back -------------------------------------------------------


def random_element(rng: random.Random) -> Element:
    return Element(
        name=rng.choice(["a", "é/ü", "x" * rng.randrange(1, 300), "名前"]),
        data=rng.randbytes(rng.choice([0, 1, 30, rng.randrange(3000)])),
        compression=rng.choice([None, None, "gzip", "zstd"]),
        timestamp=rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randrange(2**40)]),
        comment=rng.choice(["", "c", "ç" * rng.randrange(100)]),
    )


def forge_trailer(fields: tuple[int, ...], magic: bytes = V2.trailer_magic) -> bytes:
    """A version-2 trailer holding any values (up to 2**70 and 2**35), its
    checksum right."""
    widths = (10, 10, 10, 10, 5, 5)
    body = b"\0" + _to_septet_fields(tuple(zip(fields, widths, strict=True))) + magic
    return body + _septets(crc32c.crc32c(body), 5)


def forge_header(
    codec: int, flags: int, timestamp: int, start: int, name: bytes, comment: bytes
) -> tuple[bytes, int]:
    """A version-2 header holding any values, its checksum right; and it."""
    fixed = (
        HEADER_MAGIC
        + bytes((codec, flags))
        + _to_septet_fields(
            ((timestamp, 10), (start, 10), (len(name), 3), (len(comment), 3))
        )
    )
    crc = crc32c.crc32c(comment, crc32c.crc32c(name, crc32c.crc32c(fixed)))
    return fixed + _septets(crc, 5) + name + comment, crc


def forged_element(rng: random.Random, start: int) -> bytes:
    """An element whose checksums all hold but one of whose fields lies, or
    is at the edge of what is allowed."""
    name = rng.choice([b"n", b"\xff\xfe", b"", b"x" * 65536, b"x" * 65537])
    comment = rng.choice([b"", b"\xc3", b"y" * 65537])
    codec = rng.choice([0, 1, 2, 3, 255])
    flags = rng.choice([0, 0, 1])
    timestamp = rng.choice([0, 2**63, 2**64 - 1, 2**64, 2**70 - 1])
    said_start = rng.choice([start, start, start + 1, 2**64 + start])
    header, header_crc = forge_header(
        codec, flags, timestamp, said_start, name, comment
    )
    payload = rng.randbytes(rng.randrange(20))
    length = len(header) + len(payload) + V2.trailer_size
    fields = [start, length, len(payload), rng.randrange(100), 7, header_crc]
    lie = rng.randrange(9)
    if lie < 6:
        fields[lie] = (
            rng.choice(
                [
                    0,
                    15,
                    2**32,
                    2**35 - 1,
                    2**62,
                    2**63 - 1,
                    2**63,
                    2**64 + fields[lie],
                    2**70 - 1,
                ]
            )
            if lie < 4
            else rng.choice([2**32, 2**35 - 1, header_crc ^ 1])
        )
    magic = V2.trailer_magic if lie != 6 else b"\xe5\x01GAR trailer v3"
    trailer = forge_trailer(tuple(fields), magic)
    if lie == 7:
        trailer = b"\1" + trailer[1:]  # the zero byte, and the checksum wrong
    return header + payload + trailer


def damaged_archive(rng: random.Random) -> bytes:
    data = bytearray(V2.file_header)
    for _ in range(rng.randrange(1, 40)):
        if rng.random() < 0.15:
            data += forged_element(rng, len(data))
        else:
            data += element_bytes(len(data), random_element(rng))
    for _ in range(rng.choice([0, 0, 1, 3])):
        data[rng.randrange(16, len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def walk_both(data: bytes, base: int, end: int, floor: int, most: int = 512) -> None:
    window = data[base:]
    fast: list[ArchiveEntry] = []
    slow: list[ArchiveEntry] = []
    kind = (_walk._CODEC_NAMES, ArchiveEntry, _walk._ENTRY_SLOTS)
    reached = compiled.archive_elements(window, base, end, floor, *kind, most, fast)
    assert reached == _walk.whole_elements(window, base, end, floor, V2, slow, most)
    assert fast == slow
    assert len(fast) <= most
    assert all(type(entry) is ArchiveEntry for entry in fast)
    assert [hash(entry) for entry in fast] == [hash(entry) for entry in slow]


def element_ends(data: bytes) -> list[int]:
    found = answer_reads(extend_listing(len(data), Listing(V2)), data_reader(data))
    return [entry.end for entry in found.entries]


def data_reader(data: bytes) -> Any:
    return lambda offset, size: data[offset : offset + size]


@FAST
@given(
    st.integers(16, 2**62),
    st.text(min_size=1, max_size=40) | st.just("n" * 65536),
    st.text(max_size=40) | st.just("c" * 65536),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, 2]),
    st.integers(0, 2**62),
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**32 - 1),
)
def test_archive_frame_frames_as_the_reference(
    start: int,
    name: str,
    comment: str,
    timestamp: int,
    codec: int,
    stored: int,
    data_size: int,
    crc: int,
) -> None:
    fields = (start, name, timestamp, comment, codec, stored, data_size, crc)
    assert frame_element(V2, *fields) == V2.frame(*fields)
    header, header_crc, trailer = frame_element(V2, *fields)
    # And what it makes decodes back to the same fields.
    decoded = V2.decode_trailer(trailer, start + len(header) + stored + V2.trailer_size)
    assert (decoded.start, decoded.stored, decoded.data) == (start, stored, data_size)
    assert (decoded.payload_crc, decoded.header_crc) == (crc, header_crc)
    assert V2.decode_header(header, start).name == name


def test_archive_frame_refuses_what_no_element_holds() -> None:
    for name, comment, timestamp in (
        ("", "", 0),
        ("n" * 65537, "", 0),
        ("n", "c" * 65537, 0),
        ("n", "", 2**63),
    ):
        for frame in (frame_element, ElementLayout.frame):
            with pytest.raises(ValueError, match=r"name|comment|timestamp"):
                frame(V2, 16, name, timestamp, comment, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="fields"):
        compiled.archive_frame(16, b"n", b"", 0, 0, 2**63, 0, 0)
    assert frame_element(V1, 16, "a", 1, "", 0, 3, 3, 7) == V1.frame(
        16, "a", 1, "", 0, 3, 3, 7
    )


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32))
def test_archive_elements_walks_as_the_reference(seed: int) -> None:
    """Windows anywhere over damaged and forged archives, walked from any
    end down to any floor: the same entries, and the same stop."""
    rng = random.Random(seed)
    data = damaged_archive(rng) + rng.choice(
        [b"", rng.randbytes(rng.randrange(1, 200))]
    )
    ends = element_ends(data) or [len(data)]
    for _ in range(5):
        end = rng.choice([len(data), rng.choice(ends), rng.randrange(len(data) + 100)])
        base = rng.choice([0, 16, rng.randrange(len(data) + 1)])
        floor = rng.choice([0, 16, rng.randrange(end + 1)])
        walk_both(data, base, end, floor, rng.choice([512, 0, 1, rng.randrange(40)]))


def test_archive_elements_take_every_forged_element_as_the_reference() -> None:
    rng = random.Random(1818)
    for _ in range(3000):
        data = bytes(V2.file_header) + forged_element(rng, 16)
        walk_both(data, 0, len(data), 16)


def test_archive_elements_leave_version_1_to_the_reference() -> None:
    data = archive_bytes(Element("a", b"1"), Element("b", b"2"), layout=V1)
    out: list[ArchiveEntry] = []
    assert _walk.fast_whole_elements(data, 0, len(data), 16, V1, out) == 16
    assert [entry.name for entry in out] == ["b", "a"]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32))
def test_listing_and_finding_are_the_same_with_either_kernel(seed: int) -> None:
    rng = random.Random(seed)
    data = damaged_archive(rng)
    known = Listing(V2)
    if rng.random() < 0.5:  # a listing of a prefix, extended
        cut = rng.choice(element_ends(data) or [16])
        known = answer_reads(extend_listing(cut, known), data_reader(data))
    name = rng.choice(["a", "é/ü", "名前", "none"])

    def walks() -> tuple[Any, Any]:
        listing = answer_reads(extend_listing(len(data), known), data_reader(data))
        try:
            found, grown = answer_reads(
                find_back(len(data), known, name), data_reader(data)
            )
            summary = (
                None if grown is None else (grown.entries, grown.damage, grown.end)
            )
            result: Any = (found, summary)
        except Exception as error:  # damage before a match: the same error
            result = repr(error)
        return (listing.entries, listing.damage, listing.end, listing.latest), result

    fast = walks()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_walk, "fast_whole_elements", _walk.whole_elements)
        assert walks() == fast


# -- the decoders whole, with each set of kernels -------------------------------


def decode(decoder: Any, data: bytes, piece: int) -> list[Any]:
    """Everything a decoder gives (records and regions), fed ``piece``
    bytes at a time; read_many with small limits, as readers slice."""
    out: list[Any] = []
    for at in range(0, len(data), piece):
        decoder.feed(data[at : at + piece])
        while batch := decoder.read_many(7):
            out.extend(batch)
    decoder.feed_eof()
    while batch := decoder.read_many(7):
        out.extend(batch)
    return out + list(getattr(decoder, "dropped", []))


def both_ways(
    make: Any, data: bytes, pieces: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    for piece in pieces:
        fast = decode(make(), data, piece)
        with monkeypatch.context() as patch:
            patch.setattr(_log, "fast_full_records", _log.full_records)
            patch.setattr(_frame, "fast_good_records", _frame.good_records)
            assert decode(make(), data, piece) == fast, piece


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_the_log_decoder_gives_the_same_with_either_kernels(seed: int) -> None:
    rng = random.Random(seed)
    log = damaged_log(rng)
    start = rng.choice([0, 0, rng.randrange(len(log) + 1)])
    stop = rng.choice([None, rng.randrange(len(log) + 1), *record_starts(log)[:5]])
    garbage = rng.choice([b"", rng.randbytes(rng.randrange(1, 100))])
    with pytest.MonkeyPatch.context() as monkeypatch:
        both_ways(
            lambda: LogDecoder(start, stop, max_record_size=30_000),
            log + garbage,
            (len(log) + len(garbage) + 1, 1 + rng.randrange(5000)),
            monkeypatch,
        )


def test_the_log_decoder_byte_by_byte_gives_the_same_with_either_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(18)
    log = damaged_log(rng)[:40_000] + b"\x01\x02garbage"
    both_ways(LogDecoder, log, (1,), monkeypatch)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_the_tfrecord_decoder_gives_the_same_with_either_kernels(seed: int) -> None:
    rng = random.Random(seed)
    stream = damaged_tfrecords(rng) + rng.choice([b"", rng.randbytes(30)])
    stop = rng.choice([None, rng.randrange(len(stream) + 1), *tf_record_ends(stream)])
    largest = rng.choice([50, 1 << 30])
    with pytest.MonkeyPatch.context() as monkeypatch:
        both_ways(
            lambda: TFRecordDecoder(0, stop, max_record_size=largest),
            stream,
            (len(stream) + 1, 1, 1 + rng.randrange(3000)),
            monkeypatch,
        )


# -- leaks ---------------------------------------------------------------------


def resident_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def test_a_million_calls_leak_nothing() -> None:
    """Every kernel called a million times in all (with the error paths
    among them): the resident size stays where it was."""
    log, stream = bytearray(), bytearray()
    records = [b"r" * 90, "s" * 10, bytearray(20), memoryview(b"m" * 30)]
    pending = [(b"x", 0, 1), (b"y", 1, 2), SkippedRegion(2, 3, "gone")]
    block = b"\0\0\0\2ab\0\0\0\1\xff\0\0\0\t"  # the last runs past the end
    offsets = (0, 6, 11)
    archive = archive_bytes(Element("a", b"x"), Element("é", b"y" * 100, comment="c"))
    undecodable = bytes(V2.file_header) + forge_header(0, 0, 0, 16, b"\xff", b"")[0]
    undecodable += forge_trailer(
        (16, len(undecodable) - 16 + V2.trailer_size, 0, 0, 0, crc32c.crc32c(b""))
    )
    entry_kind = (_walk._CODEC_NAMES, ArchiveEntry, _walk._ENTRY_SLOTS)

    def round_of_calls(times: int) -> None:
        for _ in range(times):
            log.clear()
            stream.clear()
            compiled.log_encode(records, 0, 4, 0, log, 1 << 20)
            compiled.tf_frame(records, 0, 4, stream, 1 << 20)
            compiled.log_full_records(bytes(log), 0, 0, 0, 0, 1 << 62, 9, [])
            compiled.tf_good_records(stream, 0, 0, 1 << 62, 1 << 20, 9, [])
            compiled.take_records(pending, 0, 100, [])
            compiled.crc32c(b"abc")
            compiled.capture_add(
                records, 0, 4, bytearray(), bytearray(), 1 << 62, 1 << 20, 1 << 20,
                1 << 20, True,
            )  # fmt: skip
            compiled.capture_items(block, (0, 11), 0, True, [])
            compiled.archive_elements(archive, 0, len(archive), 16, *entry_kind, 9, [])
            compiled.archive_frame(16, b"name", b"", -5, 2, 10, 20, 30)
            with pytest.raises(ValueError, match="fields"):
                compiled.archive_frame(16, b"", b"", 0, 0, 0, 0, 0)
            compiled.archive_elements(
                undecodable, 0, len(undecodable), 16, *entry_kind, 9, []
            )
            compiled.capture_items(block, offsets, 0, False, [])
            with pytest.raises(UnicodeDecodeError):
                compiled.capture_items(block, (6,), 0, True, [])
            for bad in ([7], ["\udc80"]):
                with pytest.raises((TypeError, UnicodeEncodeError)):
                    compiled.log_encode(bad, 0, 1, 0, log, 1)
                with pytest.raises((TypeError, UnicodeEncodeError)):
                    compiled.tf_frame(bad, 0, 1, stream, 1)

    round_of_calls(10_000)  # the allocator's pools warmed up
    before = resident_kib()
    round_of_calls(100_000)  # ten calls each: a million
    assert resident_kib() - before < 2048


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ came in 3.12")
def test_a_record_that_empties_the_list_while_it_is_framed() -> None:
    """A hostile record: a bytearray whose buffer export (Python code, since
    3.12) empties the list being framed. The kernels go on with the record
    they hold and stop at the list's new end: no read past it, no crash."""
    records: list[Any] = []

    class Hostile(bytearray):
        def __buffer__(self, flags: int) -> memoryview:
            records.clear()
            return super().__buffer__(flags)

    for frame, reference in (
        (
            lambda out: compiled.log_encode(records, 0, 4, 0, out, 1 << 20)[1],
            lambda out: _log.encode_records([b"a", b"bb"], 0, 2, 0, out, 1 << 20),
        ),
        (
            lambda out: compiled.tf_frame(records, 0, 4, out, 1 << 20),
            lambda out: _frame.frame_records([b"a", b"bb"], 0, 2, out, 1 << 20),
        ),
    ):
        records[:] = [b"a", Hostile(b"bb"), b"c", b"d"]
        out, expected = bytearray(), bytearray()
        assert frame(out) == 2
        reference(expected)
        assert out == expected


def test_a_listing_of_thousands_of_small_elements_is_the_references() -> None:
    """More elements than one kernel call takes, in one window and across
    windows, with damage among them: the same listing, and the same finds."""
    rng = random.Random(5)
    data = bytearray(V2.file_header)
    for n in range(4000):
        data += element_bytes(len(data), Element(f"e{n % 1500}", rng.randbytes(n % 50)))
    data[len(data) // 2] ^= 0x10  # one damaged element in the middle
    data = bytes(data)

    def walks() -> tuple[Any, ...]:
        listing = answer_reads(
            extend_listing(len(data), Listing(V2)), data_reader(data)
        )
        found = answer_reads(
            find_back(len(data), Listing(V2), "e1499"), data_reader(data)
        )
        return listing.entries, listing.damage, listing.latest, found[0]

    fast = walks()
    assert len(fast[0]) > 3900
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_walk, "fast_whole_elements", _walk.whole_elements)
        assert walks() == fast
