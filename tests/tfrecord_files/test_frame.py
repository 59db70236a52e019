"""The TFRecord core: framing against vectors derived independently, and
the decoder fed whole, byte by byte and with trailing garbage, damaged,
torn and hostile."""

from __future__ import annotations

import gzip
import struct
import zlib

import pytest

from aiorecords import SkippedRegion
from aiorecords.tfrecord._frame import (
    TFRecordDecoder,
    compression_of_head,
    frame,
    starts_like_tfrecord,
)

from .vectors import crc32c_bitwise, framed, masked

RECORDS = [b"", b"a", b"hello tfrecord", bytes(range(256)) * 40, b"\x00" * 70_000]


def test_the_bitwise_crc_is_crc32c() -> None:
    # RFC 3720's test vector, and the check value of CRC-32C.
    assert crc32c_bitwise(bytes(32)) == 0x8A9136AA
    assert crc32c_bitwise(b"123456789") == 0xE3069283


@pytest.mark.parametrize("record", RECORDS, ids=len)
def test_framing_matches_the_vectors(record: bytes) -> None:
    out = bytearray()
    assert frame(record, out) == len(record) + 16
    assert bytes(out) == framed(record)


def test_an_empty_record_frames_as_tensorflow_does() -> None:
    # Length 0; the masked CRC of eight zero bytes; no data; the masked CRC
    # of nothing (which is the mask constant itself).
    assert framed(b"")[12:] == struct.pack("<I", 0xA282EAD8)
    out = bytearray()
    frame(b"", out)
    assert bytes(out) == framed(b"")


def decode(data: bytes, *, step: int | None = None) -> list:
    """Everything the decoder hands out, fed ``step`` bytes at a time."""
    decoder = TFRecordDecoder(max_record_size=1 << 20)
    got: list = []
    step = step or len(data) or 1
    for at in range(0, len(data), step):
        assert decoder.wanted == at
        decoder.feed(data[at : at + step])
        got += decoder.read_many(1000)
    decoder.feed_eof()
    got += decoder.read_many(1000)
    assert decoder.finished
    return got


def stream() -> bytes:
    return b"".join(framed(record) for record in RECORDS)


def records_of(items: list) -> list[bytes]:
    return [item[0] for item in items if type(item) is tuple]


@pytest.mark.parametrize("step", [None, 1, 7, 4096])
def test_fed_whole_and_in_pieces(step: int | None) -> None:
    items = decode(stream(), step=step)
    assert records_of(items) == RECORDS
    ends = [item[2] for item in items]
    assert ends[-1] == len(stream())


def test_trailing_garbage_is_a_torn_record_reported_once() -> None:
    data = stream() + b"garbage!"
    items = decode(data)
    assert records_of(items) == RECORDS
    assert items[-1] == SkippedRegion(
        len(stream()), len(data), "torn record at the end"
    )


def test_a_torn_last_record_is_reported() -> None:
    data = stream()
    cut = data[: len(data) - 3]
    items = decode(cut, step=1000)
    assert records_of(items) == RECORDS[:-1]
    start = len(data) - len(framed(RECORDS[-1]))
    assert items[-1] == SkippedRegion(start, len(cut), "torn record at the end")


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (3, "bad length checksum"),
        (9, "bad length checksum"),
        (14, "bad data checksum"),
        (-1, "bad data checksum"),
    ],
)
def test_damage_ends_the_file_there(where: int, reason: str) -> None:
    second = len(framed(RECORDS[0])) + len(framed(RECORDS[1]))
    data = bytearray(stream())
    target = second + where if where >= 0 else second + len(framed(RECORDS[2])) - 1
    data[target] ^= 0x40
    items = decode(bytes(data), step=5)
    assert records_of(items) == RECORDS[:2]
    assert items[-1] == SkippedRegion(second, len(data), reason)
    assert sum(type(item) is SkippedRegion for item in items) == 1


def test_a_huge_length_is_damage_and_allocates_nothing() -> None:
    length = struct.pack("<Q", 1 << 60)
    hostile = length + masked(length) + b"x" * 100
    decoder = TFRecordDecoder(max_record_size=1 << 20)
    decoder.feed(hostile)
    assert decoder.read_many(10) == []
    assert decoder.damage is not None
    assert "over the largest allowed" in decoder.damage[1]
    assert decoder.needs_end
    decoder.feed_eof(5_000)  # the caller knows the size: nothing more is read
    assert decoder.read_many(10) == [SkippedRegion(0, 5_000, decoder.damage[1])]


def test_stop_ends_before_the_record_starting_there() -> None:
    data = stream()
    third = len(framed(RECORDS[0])) + len(framed(RECORDS[1]))
    decoder = TFRecordDecoder(0, third, max_record_size=1 << 20)
    decoder.feed(data)
    assert records_of(decoder.read_many(100)) == RECORDS[:2]
    assert decoder.finished


def test_a_follower_sees_the_record_in_progress() -> None:
    data = framed(b"first") + framed(b"second")[:10]
    decoder = TFRecordDecoder(max_record_size=100)
    decoder.feed(data)
    assert records_of(decoder.read_many(10)) == [b"first"]
    start = len(framed(b"first"))
    assert decoder.record_in_progress == (start, data[start:])
    decoder.discard_unread()  # kept: a record may be larger than a read
    assert decoder.wanted == len(data)


def test_the_head_tells_the_format_and_compression() -> None:
    data = stream()
    assert starts_like_tfrecord(data[:12])
    assert not starts_like_tfrecord(b"\x00" * 11)
    assert not starts_like_tfrecord(b"hello world, not a record")
    assert compression_of_head(gzip.compress(data)[:32768]) == "gzip"
    assert compression_of_head(zlib.compress(data)[:32768]) == "zlib"
    assert compression_of_head(gzip.compress(b"not records at all")) is None
    assert compression_of_head(data) is None
