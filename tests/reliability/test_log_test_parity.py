"""LevelDB parity: every case of LevelDB's ``db/log_test.cc``, with the same
dropped-byte counts and reasons (bad checksum, bad length, bad type,
unexpected MIDDLE/LAST/FULL/FIRST, a torn or partial tail ignored silently,
errors never joining two records, the initial-offset table).
"""

from __future__ import annotations

import pytest

from aiorecords._skipped import SkippedRegion
from aiorecords.records._log import (
    BLOCK_SIZE,
    FIRST,
    HEADER_SIZE,
    LAST,
    MIDDLE,
    LogDecoder,
)

from ..records.logs import SIZES, STARTS, Log, big, dropped, number, offset_log, reasons


def test_empty() -> None:
    assert Log().read()[0] == []


def test_read_write() -> None:
    log = Log()
    for record in (b"foo", b"bar", b"", b"xxxx"):
        log.write(record)
    records, decoder = log.read()
    assert records == [b"foo", b"bar", b"", b"xxxx"]
    assert decoder.read() is None  # reads at the end keep saying so
    assert decoder.finished


def test_many_blocks() -> None:
    log = Log()
    for n in range(100_000):
        log.write(number(n))
    assert log.read()[0] == [number(n) for n in range(100_000)]


def test_fragmentation() -> None:
    log = Log()
    records = [b"small", big(b"medium", 50_000), big(b"large", 100_000)]
    for record in records:
        log.write(record)
    assert log.read()[0] == records


def test_marginal_trailer() -> None:
    log = Log()
    n = BLOCK_SIZE - 2 * HEADER_SIZE
    log.write(big(b"foo", n))
    assert len(log.data) == BLOCK_SIZE - HEADER_SIZE
    log.write(b"")
    log.write(b"bar")
    assert log.read()[0] == [big(b"foo", n), b"", b"bar"]


def test_marginal_trailer_2() -> None:
    log = Log()
    n = BLOCK_SIZE - 2 * HEADER_SIZE
    log.write(big(b"foo", n))
    log.write(b"bar")
    records, decoder = log.read()
    assert records == [big(b"foo", n), b"bar"]
    assert decoder.dropped == []


def test_short_trailer() -> None:
    log = Log()
    n = BLOCK_SIZE - 2 * HEADER_SIZE + 4
    log.write(big(b"foo", n))
    assert len(log.data) == BLOCK_SIZE - HEADER_SIZE + 4
    log.write(b"")
    log.write(b"bar")
    assert log.read()[0] == [big(b"foo", n), b"", b"bar"]


def test_aligned_eof() -> None:
    log = Log()
    n = BLOCK_SIZE - 2 * HEADER_SIZE + 4
    log.write(big(b"foo", n))
    assert log.read()[0] == [big(b"foo", n)]


def test_open_for_append() -> None:
    log = Log()
    log.write(b"hello")
    log.reopen_for_append()
    log.write(b"world")
    assert log.read()[0] == [b"hello", b"world"]


def test_random_read() -> None:
    import random

    rng = random.Random(301)
    records = [
        big(number(i), rng.randrange(1 << rng.randrange(17))) for i in range(500)
    ]
    log = Log()
    for record in records:
        log.write(record)
    assert log.read()[0] == records


def test_bad_record_type() -> None:
    log = Log()
    log.write(b"foo")
    log.data[6] += 100
    log.fix_checksum(0, 3)
    records, decoder = log.read()
    assert records == []
    assert dropped(decoder) == 3
    assert "unknown record type" in reasons(decoder)


def test_truncated_trailing_record_is_ignored() -> None:
    log = Log()
    log.write(b"foo")
    del log.data[-4:]  # all the payload and one header byte
    records, decoder = log.read()
    assert records == []
    assert decoder.dropped == []


def test_bad_length() -> None:
    log = Log()
    log.write(big(b"bar", BLOCK_SIZE - HEADER_SIZE))
    log.write(b"foo")
    log.data[4] += 1  # the low byte of the length
    records, decoder = log.read()
    assert records == [b"foo"]
    assert dropped(decoder) == BLOCK_SIZE
    assert "bad record length" in reasons(decoder)
    assert decoder.dropped == [SkippedRegion(0, BLOCK_SIZE, "bad record length")]


def test_bad_length_at_end_is_ignored() -> None:
    log = Log()
    log.write(b"foo")
    del log.data[-1:]
    records, decoder = log.read()
    assert records == []
    assert decoder.dropped == []


def test_checksum_mismatch() -> None:
    log = Log()
    log.write(b"foo")
    log.data[0] += 10
    records, decoder = log.read()
    assert records == []
    assert dropped(decoder) == 10
    assert "checksum mismatch" in reasons(decoder)
    assert decoder.dropped == [SkippedRegion(0, 10, "checksum mismatch")]


@pytest.mark.parametrize("kind", [MIDDLE, LAST])
def test_unexpected_middle_or_last_type(kind: int) -> None:
    log = Log()
    log.write(b"foo")
    log.data[6] = kind
    log.fix_checksum(0, 3)
    records, decoder = log.read()
    assert records == []
    assert dropped(decoder) == 3
    assert "missing start" in reasons(decoder)


def test_unexpected_full_type() -> None:
    log = Log()
    log.write(b"foo")
    log.write(b"bar")
    log.data[6] = FIRST
    log.fix_checksum(0, 3)
    records, decoder = log.read()
    assert records == [b"bar"]
    assert dropped(decoder) == 3
    assert "partial record without end" in reasons(decoder)


def test_unexpected_first_type() -> None:
    log = Log()
    log.write(b"foo")
    log.write(big(b"bar", 100_000))
    log.data[6] = FIRST
    log.fix_checksum(0, 3)
    records, decoder = log.read()
    assert records == [big(b"bar", 100_000)]
    assert dropped(decoder) == 3
    assert "partial record without end" in reasons(decoder)


def test_missing_last_is_ignored() -> None:
    log = Log()
    log.write(big(b"bar", BLOCK_SIZE))
    del log.data[-14:]  # the LAST fragment, header and all
    records, decoder = log.read()
    assert records == []
    assert decoder.dropped == []


def test_partial_last_is_ignored() -> None:
    log = Log()
    log.write(big(b"bar", BLOCK_SIZE))
    del log.data[-1:]  # a bad length in the LAST fragment
    records, decoder = log.read()
    assert records == []
    assert decoder.dropped == []


def test_skip_into_multi_record() -> None:
    # Starting inside a fragmented record: its other fragments are not
    # errors, and are skipped until a new FIRST or FULL record.
    log = Log()
    log.write(big(b"foo", 3 * BLOCK_SIZE))
    log.write(b"correct")
    records, decoder = log.read(start=BLOCK_SIZE)
    assert records == [b"correct"]
    assert decoder.dropped == []


def test_error_joins_no_records() -> None:
    # first(R1) last(R1) first(R2) last(R2), the middle two fragments lost:
    # first(R1) and last(R2) must not come back joined.
    log = Log()
    log.write(big(b"foo", BLOCK_SIZE))
    log.write(big(b"bar", BLOCK_SIZE))
    log.write(b"correct")
    log.data[BLOCK_SIZE : 2 * BLOCK_SIZE] = b"x" * BLOCK_SIZE
    records, decoder = log.read()
    assert records == [b"correct"]
    assert 2 * BLOCK_SIZE <= dropped(decoder) <= 2 * BLOCK_SIZE + 100


# The initial-offset table of log_test.cc.
@pytest.mark.parametrize(
    ("initial_offset", "first_expected"),
    [
        (0, 0),
        (1, 1),
        (10000, 1),
        (10007, 1),
        (10008, 2),
        (20014, 2),
        (20015, 3),
        (BLOCK_SIZE - 4, 3),
        (BLOCK_SIZE + 1, 3),
        (2 * BLOCK_SIZE + 1, 3),
        (2 * (HEADER_SIZE + 1000) + (2 * BLOCK_SIZE - 1000) + 3 * HEADER_SIZE, 3),
        (3 * BLOCK_SIZE - 3, 5),
    ],
)
def test_initial_offset(initial_offset: int, first_expected: int) -> None:
    log = offset_log()
    decoder = LogDecoder(initial_offset)
    decoder.feed(bytes(log.data[decoder.wanted :]))
    decoder.feed_eof()
    for index in range(first_expected, len(SIZES)):
        record = decoder.read()
        assert record is not None
        assert len(record[0]) == SIZES[index]
        assert record[1] == STARTS[index]
        assert record[0][:1] == bytes([ord("a") + index])
    assert decoder.read() is None


@pytest.mark.parametrize("past_end", [0, 5])
def test_initial_offset_at_or_past_the_end(past_end: int) -> None:
    log = offset_log()
    decoder = LogDecoder(len(log.data) + past_end)
    data = bytes(log.data[decoder.wanted :]) if decoder.wanted < len(log.data) else b""
    decoder.feed(data)
    decoder.feed_eof()
    assert decoder.read() is None
