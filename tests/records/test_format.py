"""The LevelDB log format core: framing, checksums, and the reader's rules.

LevelDB's own reader cases (``db/log_test.cc``) are in
``tests/reliability/test_log_test_parity.py``.
"""

from __future__ import annotations

import pytest
from crc32c import crc32c

from aiorecords import SkippedRegion
from aiorecords.records._log import (
    BLOCK_SIZE,
    FIRST,
    FULL,
    HEADER_SIZE,
    LAST,
    MIDDLE,
    AppendPoint,
    LogDecoder,
    LogEncoder,
    mask_crc,
    unmask_crc,
)

from .logs import SIZES, STARTS, Log, big, extents, number, offset_log, physical

# -- checksums -----------------------------------------------------------------


def test_crc32c_standard_vectors() -> None:
    # The values LevelDB's util/crc32c_test.cc checks (from RFC 3720).
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"world", crc32c(b"hello ")) == crc32c(b"hello world")


def test_mask_is_leveldbs() -> None:
    crc = crc32c(b"foo")
    assert mask_crc(crc) != crc
    assert mask_crc(mask_crc(crc)) != crc
    assert unmask_crc(mask_crc(crc)) == crc
    assert unmask_crc(unmask_crc(mask_crc(mask_crc(crc)))) == crc
    # rotate right by 15, add 0xa282ead8 (mod 2**32)
    assert mask_crc(0) == 0xA282EAD8
    assert mask_crc(1) == (0x20000 + 0xA282EAD8) & 0xFFFFFFFF
    assert mask_crc(0x8000) == (1 + 0xA282EAD8) & 0xFFFFFFFF


# -- framing, against layouts worked out by hand ------------------------------


def encode(*records: bytes, offset: int = 0) -> bytes:
    encoder = LogEncoder(offset)
    out = bytearray()
    for record in records:
        encoder.encode(record, out)
    return bytes(out)


def test_empty_record() -> None:
    assert encode(b"") == physical(FULL, b"")
    assert len(encode(b"")) == 7


def test_record_exactly_filling_a_block() -> None:
    data = b"a" * (BLOCK_SIZE - HEADER_SIZE)
    assert encode(data, b"next") == physical(FULL, data) + physical(FULL, b"next")


def test_record_ending_eight_bytes_before_the_block_end() -> None:
    data = b"b" * (BLOCK_SIZE - HEADER_SIZE - 8)
    # Eight bytes remain: room for a header and one byte.
    assert encode(data, b"xy") == (
        physical(FULL, data) + physical(FIRST, b"x") + physical(LAST, b"y")
    )
    assert encode(data, b"z") == physical(FULL, data) + physical(FULL, b"z")


def test_record_ending_seven_bytes_before_the_block_end() -> None:
    data = b"c" * (BLOCK_SIZE - 2 * HEADER_SIZE)
    # Exactly seven bytes remain: a non-empty record starts with an empty
    # FIRST fragment, an empty one fits as a FULL one.
    assert encode(data, b"next") == (
        physical(FULL, data) + physical(FIRST, b"") + physical(LAST, b"next")
    )
    assert encode(data, b"") == physical(FULL, data) + physical(FULL, b"")


def test_record_ending_six_bytes_before_the_block_end() -> None:
    data = b"d" * (BLOCK_SIZE - HEADER_SIZE - 6)
    # Six bytes cannot hold a header: they are a zero trailer.
    assert encode(data, b"next") == physical(FULL, data) + bytes(6) + physical(
        FULL, b"next"
    )
    assert encode(data, b"") == physical(FULL, data) + bytes(6) + physical(FULL, b"")


def test_record_over_100_kib_spans_four_blocks() -> None:
    data = bytes(range(256)) * 500  # 128,000 bytes
    room = BLOCK_SIZE - HEADER_SIZE
    first = data[: room - 10]  # after "abc" (3 + 7 bytes) in the first block
    middle1 = data[len(first) : len(first) + room]
    middle2 = data[len(first) + room : len(first) + 2 * room]
    last = data[len(first) + 2 * room :]
    assert encode(b"abc", data) == (
        physical(FULL, b"abc")
        + physical(FIRST, first)
        + physical(MIDDLE, middle1)
        + physical(MIDDLE, middle2)
        + physical(LAST, last)
    )


def test_the_seed_example() -> None:
    # A: 1000 bytes, B: 97270 bytes, C: 8000 bytes (the records API document).
    a, b, c = b"A" * 1000, b"B" * 97270, b"C" * 8000
    out = encode(a, b, c)
    first = BLOCK_SIZE - 1007 - HEADER_SIZE
    assert out[:1007] == physical(FULL, a)
    assert out[1007:BLOCK_SIZE] == physical(FIRST, b[:first])
    assert out[BLOCK_SIZE : 2 * BLOCK_SIZE] == physical(
        MIDDLE, b[first : first + 32761]
    )
    rest = b[first + 32761 :]
    assert out[2 * BLOCK_SIZE : 2 * BLOCK_SIZE + 7 + len(rest)] == physical(LAST, rest)
    # Six bytes are left in the third block: a trailer. C starts block four.
    assert 2 * BLOCK_SIZE + 7 + len(rest) == 3 * BLOCK_SIZE - 6
    assert out[3 * BLOCK_SIZE - 6 : 3 * BLOCK_SIZE] == bytes(6)
    assert out[3 * BLOCK_SIZE :] == physical(FULL, c)


def test_continuing_inside_a_block() -> None:
    # 10 bytes left: a header and 3 bytes fit.
    assert encode(b"abcd", offset=BLOCK_SIZE - 10) == (
        physical(FIRST, b"abc") + physical(LAST, b"d")
    )
    assert encode(b"abcd", offset=BLOCK_SIZE - 3) == bytes(3) + physical(FULL, b"abcd")
    # At the very end of a block (the last record filled it): the next
    # record starts the next block, with no trailer.
    assert encode(b"abcd", offset=BLOCK_SIZE) == physical(FULL, b"abcd")
    with pytest.raises(ValueError, match="block offset"):
        LogEncoder(BLOCK_SIZE + 1)
    with pytest.raises(ValueError, match="block offset"):
        LogEncoder(-1)


def test_padding_to_the_block_end() -> None:
    encoder = LogEncoder()
    out = bytearray()
    encoder.encode(b"abc", out)
    out += encoder.padding()
    assert len(out) == BLOCK_SIZE
    assert out[10:] == bytes(BLOCK_SIZE - 10)
    assert encoder.padding() == b""  # at a boundary there is nothing to pad


def test_any_bytes_like_record() -> None:
    out = bytearray()
    LogEncoder().encode(memoryview(b"mv"), out)
    LogEncoder(len(out)).encode(bytearray(b"ba"), out)
    assert bytes(out) == physical(FULL, b"mv") + physical(FULL, b"ba")


# -- any feeding gives the same result -----------------------------------------


def sample_log() -> bytes:
    log = Log()
    for record in (b"", b"a", big(b"x", 40_000), b"tail" * 10, big(b"y", 32_761), b"z"):
        log.write(record)
    return bytes(log.data)


def read_fed(data: bytes, chunk: int) -> list[bytes]:
    return decoded_fed(data, chunk)[0]


def decoded_fed(data: bytes, chunk: int) -> tuple[list[bytes], SkippedRegion | None]:
    """The records, and the torn tail, of ``data`` fed ``chunk`` bytes at a
    time."""
    decoder = LogDecoder()
    records = []
    for at in range(0, len(data), chunk):
        decoder.feed(data[at : at + chunk])
        while (record := decoder.read()) is not None:
            records.append(record[0])
    decoder.feed_eof()
    while (record := decoder.read()) is not None:
        records.append(record[0])
    assert decoder.dropped == []
    return records, decoder.torn_tail


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, BLOCK_SIZE, 10**9])
def test_fed_whole_or_in_pieces(chunk: int) -> None:
    data = sample_log()
    expected = decoded_fed(data, len(data))
    assert len(expected[0]) == 6
    assert expected[1] is None
    if chunk == 1:
        data = data[: 3 * BLOCK_SIZE // 2]  # a byte at a time: keep it quick
        expected = decoded_fed(data, len(data))
        assert expected[1] is not None  # the cut is inside a record
    assert decoded_fed(data, chunk) == expected


def test_a_record_is_returned_only_when_whole() -> None:
    data = sample_log()
    decoder = LogDecoder()
    seen = 0
    for at in range(len(data)):
        decoder.feed(data[at : at + 1])
        while (record := decoder.read()) is not None:
            assert record[2] <= at + 1  # all of it has been fed
            seen += 1
    assert seen == 6


def test_trailing_garbage_is_damage_but_keeps_the_records() -> None:
    data = sample_log() + b"\x01garbage that is not a record"
    decoder = LogDecoder()
    decoder.feed(data)
    decoder.feed_eof()
    records = []
    while (record := decoder.read()) is not None:
        records.append(record)
    assert [r[0] for r in records] == read_fed(sample_log(), 10**9)
    # Short garbage at the end looks like a torn record: ignored, as LevelDB,
    # but kept apart for a verifier.
    assert decoder.dropped == []
    end = len(sample_log())
    assert decoder.torn_tail == SkippedRegion(end, len(data), "torn record at the end")


def expected_torn_tail(data: bytes, cut: int) -> SkippedRegion | None:
    """The model: a cut inside a record leaves it torn, from its first byte
    to the cut; a cut between records (or in zeros after one) leaves none.
    A cut that leaves only zero bytes of a record's header cannot be told
    from padding, so it is not torn either."""
    for start, end in extents(data):
        if start < cut < end:
            if cut - start < HEADER_SIZE and not any(data[start:cut]):
                return None
            return SkippedRegion(start, cut, "torn record at the end")
    return None


def cut_points(data: bytes) -> list[int]:
    """Every cut near a record's edges or a block's, and every 997th byte."""
    edges = {0, len(data)}
    for start, end in extents(data):
        edges |= {start, end}
    edges |= set(range(0, len(data), BLOCK_SIZE))
    near = {at + d for at in edges for d in range(-8, 9)}
    near |= set(range(0, len(data), 997))
    return sorted(at for at in near if 0 <= at <= len(data))


def padded_sample_log() -> bytes:
    """`sample_log` closed as the App Engine writer closes it: its last
    block padded with zeros."""
    data = sample_log()
    return data + bytes(-len(data) % BLOCK_SIZE)


@pytest.mark.parametrize("sample", [sample_log, padded_sample_log, offset_log])
def test_a_cut_anywhere_leaves_the_torn_record_as_torn_tail(sample: object) -> None:
    """A verifier learns of the record a file ends in the middle of (LevelDB
    drops it silently): for every cut near a record's or a block's edge,
    fed whole and in pieces of 7 and 4096 bytes, the decoder's torn tail is
    the model's, and the records before it are all read."""
    made = sample()  # type: ignore[operator]
    data = bytes(made.data) if isinstance(made, Log) else made
    whole = extents(data)
    for cut in cut_points(data):
        expected = expected_torn_tail(data, cut)
        kept = [extent for extent in whole if extent[1] <= cut]
        for chunk in (10**9, 7, 4096):
            records, torn = decoded_fed(data[:cut], chunk)
            assert torn == expected, (cut, chunk)
            assert len(records) == len(kept), (cut, chunk)


def test_garbage_alone_is_a_torn_tail_and_zeros_are_not() -> None:
    """Bytes that are not a log at all end in the first 'record' they
    seem to start: the whole of them is the torn tail (so a verifier does
    not call them a clean, empty log); zeros are padding, not torn."""
    garbage = b"\xab" * 5000  # its first "header" has a length of 43,947
    assert decoded_fed(garbage, 10**9) == (
        [],
        SkippedRegion(0, len(garbage), "torn record at the end"),
    )
    assert decoded_fed(bytes(100), 10**9) == ([], None)
    assert decoded_fed(bytes(BLOCK_SIZE + 3), 10**9) == ([], None)
    assert decoded_fed(b"", 10**9) == ([], None)


def test_stop_ends_at_the_first_record_starting_there() -> None:
    log = offset_log()
    records, _ = log.read(0, STARTS[2])
    assert [len(r) for r in records] == SIZES[:2]
    records, _ = log.read(STARTS[2], STARTS[2] + 1)
    assert [len(r) for r in records] == [SIZES[2]]  # read past stop to finish it
    records, _ = log.read(STARTS[2] + 1, STARTS[5])
    assert [len(r) for r in records] == SIZES[3:5]


def test_a_record_over_the_limit_is_dropped() -> None:
    log = Log()
    log.write(b"x" * 100_000)
    log.write(b"small")
    decoder = LogDecoder(max_record_size=50_000)
    decoder.feed(bytes(log.data))
    decoder.feed_eof()
    record = decoder.read()
    assert record is not None
    assert record[0] == b"small"
    assert [r.reason for r in decoder.dropped] == ["record larger than max_record_size"]


def test_zero_fill_is_skipped_silently() -> None:
    log = Log()
    log.write(b"before")
    log.data += bytes(BLOCK_SIZE - len(log.data))  # preallocated: zeros
    log.reopen_for_append()
    log.write(b"after")
    records, decoder = log.read()
    assert records == [b"before", b"after"]
    assert decoder.dropped == []


def test_zero_fill_ends_a_fragmented_record() -> None:
    # Found by the crash-state suite: a FIRST fragment, a block the crash
    # left zero-filled, then the LAST fragment of a later record must not be
    # joined into one record; the partial record is dropped and reported.
    first = physical(FIRST, b"a" * (BLOCK_SIZE - HEADER_SIZE))
    zeros = bytes(BLOCK_SIZE)
    last = physical(LAST, b"z" * 10)
    log = Log()
    log.data += first + zeros + last
    records, decoder = log.read()
    assert records == []
    assert [(r.length, r.reason) for r in decoder.dropped] == [
        (BLOCK_SIZE - HEADER_SIZE, "error in middle of record"),
        (10, "missing start of fragmented record(2)"),
    ]


def test_where_a_writer_may_continue() -> None:
    whole = physical(FULL, b"abc") + physical(FULL, b"defg")
    assert LogDecoder.continuation(whole) == len(whole)
    assert LogDecoder.continuation(whole + physical(FULL, b"torn")[:-2]) == len(whole)
    assert LogDecoder.continuation(whole + b"\x01\x02") == len(whole)  # a torn header
    assert LogDecoder.continuation(whole + bytes(100)) == len(whole)  # zero fill
    damaged = bytearray(whole)
    damaged[9] ^= 0xFF  # a whole record with a bad checksum is kept
    assert LogDecoder.continuation(bytes(damaged)) == len(whole)
    assert LogDecoder.continuation(b"") == 0


def test_read_many_is_read_repeated() -> None:
    """The fast path gives what read() gives, drops in place, at any limit."""
    log = Log()
    for n in range(300):
        log.write(big(number(n), (n * 997) % 70_000))
    log.data[BLOCK_SIZE + 100] ^= 0xFF  # a damaged block in the middle
    data = bytes(log.data)

    def one_by_one(start: int) -> list:
        decoder = LogDecoder(start)
        decoder.feed(data[decoder.wanted :])
        decoder.feed_eof()
        out: list = []
        while True:
            record = decoder.read()
            out.extend(decoder.dropped)
            decoder.dropped.clear()
            if record is None:
                return out
            out.append(record)

    for start in (0, 5, BLOCK_SIZE, 3 * BLOCK_SIZE + 11):
        expected = one_by_one(start)
        for limit in (1, 3, 1000):
            decoder = LogDecoder(start)
            decoder.feed(data[decoder.wanted :])
            decoder.feed_eof()
            got: list = []
            while batch := decoder.read_many(limit):
                assert sum(type(item) is tuple for item in batch) <= limit
                got.extend(batch)
            assert got == expected


# -- where an appending writer continues ---------------------------------------


def append_point(data: bytes) -> int:
    point = AppendPoint(len(data))
    while (wanted := point.wanted) is not None:
        offset, length = wanted
        point.feed(data[offset : offset + length])
    assert point.end is not None
    return point.end


def test_append_point_of_whole_records_is_the_end() -> None:
    log = Log()
    for record in (b"a", big(b"b", 70_000), b"c"):
        log.write(record)
    assert append_point(bytes(log.data)) == len(log.data)
    assert append_point(b"") == 0


@pytest.mark.parametrize("size", [40_000, 70_000, 3 * BLOCK_SIZE])
def test_append_point_cuts_a_record_torn_across_blocks(size: int) -> None:
    # Found by the kill suite: a writer killed inside a record that spans
    # blocks leaves FIRST and MIDDLE fragments, possibly ending exactly on a
    # block boundary; an appender must cut back to the FIRST fragment.
    log = Log()
    log.write(b"kept")
    kept = len(log.data)
    log.write(big(b"torn", size))
    for cut in range(kept, len(log.data)):
        assert append_point(bytes(log.data[:cut])) == kept, cut
    assert append_point(bytes(log.data)) == len(log.data)


def test_append_point_of_a_file_of_one_torn_record_is_zero() -> None:
    log = Log()
    log.write(big(b"x", 100_000))
    assert append_point(bytes(log.data[: 2 * BLOCK_SIZE])) == 0
    assert append_point(bytes(log.data[: 2 * BLOCK_SIZE + 100])) == 0


def test_append_point_keeps_a_whole_record_after_zero_fill() -> None:
    log = Log()
    log.write(b"before")
    log.data += bytes(BLOCK_SIZE - len(log.data))
    log.reopen_for_append()
    log.write(b"after")
    assert append_point(bytes(log.data)) == len(log.data)
    # A whole block ending in zeros after a whole record is padding: the
    # next writer starts after it (issue 13, item 8: cutting it shrank the
    # log under followers that had gone past it).
    assert append_point(bytes(log.data[:BLOCK_SIZE])) == BLOCK_SIZE


def test_append_point_cuts_zeros_of_a_partial_block() -> None:
    log = Log()
    log.write(b"before")
    kept = len(log.data)
    log.data += bytes(100)
    assert append_point(bytes(log.data)) == kept
