"""TFRecord files against a model: a list of records, and one bad byte
(after which a TFRecord reader can give nothing more)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorecords import SkippedRegion
from aiorecords.tfrecord._frame import TFRecordDecoder, frame

record_lists = st.lists(
    st.one_of(st.binary(max_size=40), st.integers(0, 70_000).map(lambda n: b"q" * n)),
    max_size=30,
)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def encode(records: list[bytes]) -> tuple[bytes, list[int]]:
    out = bytearray()
    starts = []
    for record in records:
        starts.append(len(out))
        frame(record, out)
    return bytes(out), starts


def decode(data: bytes, chunk: int) -> tuple[list[bytes], list[SkippedRegion]]:
    decoder = TFRecordDecoder(max_record_size=1 << 20)
    items: list = []
    for at in range(0, len(data), chunk):
        decoder.feed(data[at : at + chunk])
        items += decoder.read_many(7)
    decoder.feed_eof()
    while not decoder.finished:
        items += decoder.read_many(7)
    return (
        [item[0] for item in items if type(item) is tuple],
        [item for item in items if type(item) is SkippedRegion],
    )


@SETTINGS
@given(record_lists, st.integers(1, 50_000))
def test_every_record_comes_back_whatever_the_feeding(
    records: list[bytes], chunk: int
) -> None:
    data, _ = encode(records)
    assert decode(data, chunk) == (records, [])


@SETTINGS
@given(record_lists.filter(bool), st.data(), st.integers(1, 50_000))
def test_one_bad_byte_keeps_the_records_before_its_record(
    records: list[bytes], data: st.DataObject, chunk: int
) -> None:
    encoded, starts = encode(records)
    where = data.draw(st.integers(0, len(encoded) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(encoded)
    damaged[where] ^= flip
    hit = max(n for n, start in enumerate(starts) if start <= where)
    got, regions = decode(bytes(damaged), chunk)
    # Everything before the damaged record, and none of it or after it
    # (a CRC-32C catches any change of one byte); the rest is one region.
    assert got == records[:hit]
    assert regions == [SkippedRegion(starts[hit], len(encoded), regions[0].reason)]


@SETTINGS
@given(record_lists, st.data())
def test_a_cut_file_keeps_the_whole_records_before_the_cut(
    records: list[bytes], data: st.DataObject
) -> None:
    encoded, starts = encode(records)
    cut = data.draw(st.integers(0, len(encoded)))
    whole = [r for r, s in zip(records, starts, strict=True) if s + len(r) + 16 <= cut]
    got, regions = decode(encoded[:cut], 999)
    assert got == whole
    torn = cut - sum(len(r) + 16 for r in whole)
    assert [region.length for region in regions] == ([torn] if torn else [])
