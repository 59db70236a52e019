"""The records format against a model: a list of records, and one bad byte."""

from __future__ import annotations

import asyncio
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorecords import CorruptRecordError, RecordsReader, RecordsWriter, _io
from aiorecords.records._log import BLOCK_SIZE, LogDecoder, LogEncoder

from .logs import extents

BOUNDARY_SIZES = [
    0,
    1,
    6,
    7,
    8,
    100,
    32_753,
    32_754,
    32_760,
    32_761,
    32_762,
    65_529,
    100_000,
]

record_sizes = st.one_of(
    st.integers(0, 300),
    st.sampled_from(BOUNDARY_SIZES),
    st.integers(0, 3 * BLOCK_SIZE),
)
record_lists = st.lists(record_sizes, max_size=40).map(
    lambda sizes: [
        bytes([n % 251]) * size + n.to_bytes(4, "big") for n, size in enumerate(sizes)
    ]
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def encode(records: list[bytes], pad: bool) -> bytes:
    encoder = LogEncoder()
    out = bytearray()
    for record in records:
        encoder.encode(record, out)
    if pad:
        out += encoder.padding()
    return bytes(out)


def decode(data: bytes, chunk: int) -> tuple[list[bytes], list]:
    decoder = LogDecoder()
    out = []
    for at in range(0, len(data), chunk):
        decoder.feed(data[at : at + chunk])
        while (record := decoder.read()) is not None:
            out.append(record[0])
    decoder.feed_eof()
    while (record := decoder.read()) is not None:
        out.append(record[0])
    return out, decoder.dropped


def spans(records: list[bytes], data: bytes) -> list[tuple[int, int]]:
    found = extents(data)
    assert len(found) == len(records)
    return found


def is_subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    items = iter(whole)
    return all(any(item == wanted for item in items) for wanted in part)


@SETTINGS
@given(
    records=record_lists,
    pad=st.booleans(),
    chunk=st.sampled_from([1000, 4096, 32768, 10**9]),
)
def test_what_is_written_is_read(records: list[bytes], pad: bool, chunk: int) -> None:
    data = encode(records, pad)
    got, dropped = decode(data, chunk)
    assert got == records
    assert dropped == []


@SETTINGS
@given(
    records=record_lists.filter(bool),
    pad=st.booleans(),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_one_bad_byte_loses_only_its_block(
    records: list[bytes], pad: bool, where: float, bit: int
) -> None:
    data = bytearray(encode(records, pad))
    offset = int(where * len(data))
    data[offset] ^= 1 << bit
    got, dropped = decode(bytes(data), 4096)
    # Never a wrong record, never two joined: what comes back is a subsequence.
    assert is_subsequence(got, records)
    block = offset - offset % BLOCK_SIZE
    last_block = (len(data) - 1) - (len(data) - 1) % BLOCK_SIZE
    for record, (start, end) in zip(
        records, spans(records, encode(records, pad)), strict=True
    ):
        if end <= block or start >= block + BLOCK_SIZE:
            assert record in got  # untouched by the damage
    if block != last_block and len(got) < len(records):
        assert dropped  # a loss before the last block is always reported


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_lists,
    pad=st.booleans(),
    buffer=st.sampled_from([1, 1000, 1 << 20]),
    damage=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)),
    cached_reads=st.booleans(),
)
def test_through_the_async_api(
    records: list[bytes],
    pad: bool,
    buffer: int,
    damage: float | None,
    cached_reads: bool,
) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "model.log")
            async with RecordsWriter(
                path, pad_last_block=pad, buffer_size=buffer
            ) as writer:
                for record in records:
                    await writer.write(record)
            with open(path, "rb") as f:
                data = f.read()
            assert data == encode(records, pad)
            if damage is not None and data:
                offset = int(damage * len(data))
                with open(path, "r+b") as f:
                    f.seek(offset)
                    f.write(bytes([data[offset] ^ 0xFF]))
            async with RecordsReader(path, read_size=3 * BLOCK_SIZE) as reader:
                got = [record async for record in reader]
            assert is_subsequence(got, records)
            if damage is None:
                assert got == records
            failure: CorruptRecordError | None = None
            try:
                async with RecordsReader(path, strict=True) as reader:
                    strict = [record async for record in reader]
            except CorruptRecordError as error:
                failure = error
            if failure is None:
                assert is_subsequence(strict, records)
            else:
                assert damage is not None
                assert failure.offset is not None

    # Bytes in the page cache are read on the loop, others by a worker
    # thread (read_size at a time): both paths, on the same files.
    previous = _io.allow_cached_reads(cached_reads)
    try:
        asyncio.run(run())
    finally:
        _io.allow_cached_reads(previous)
