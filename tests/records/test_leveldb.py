"""Interoperability with real LevelDB (through plyvel), both directions.

LevelDB's write-ahead log and its MANIFEST are files of this format: a log
holds one WriteBatch per write, a MANIFEST one VersionEdit per change.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiorecords import RecordsReader, RecordsWriter, SkippedRegion

plyvel = pytest.importorskip("plyvel", reason="plyvel has no wheel for this Python")


# -- LevelDB's WriteBatch, decoded and encoded here ----------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


@dataclass
class Batch:
    sequence: int
    operations: list[tuple[str, bytes, bytes | None]]


def decode_batch(data: bytes) -> Batch:
    sequence, count = struct.unpack_from("<QI", data)
    at = 12
    operations: list[tuple[str, bytes, bytes | None]] = []
    for _ in range(count):
        tag = data[at]
        at += 1
        size, at = read_varint(data, at)
        key = data[at : at + size]
        at += size
        if tag == 1:
            size, at = read_varint(data, at)
            operations.append(("put", key, data[at : at + size]))
            at += size
        else:
            assert tag == 0
            operations.append(("delete", key, None))
    assert at == len(data)
    return Batch(sequence, operations)


def encode_batch(batch: Batch) -> bytes:
    out = struct.pack("<QI", batch.sequence, len(batch.operations))
    for kind, key, value in batch.operations:
        if kind == "put":
            assert value is not None
            out += b"\x01" + varint(len(key)) + key + varint(len(value)) + value
        else:
            out += b"\x00" + varint(len(key)) + key
    return out


def workload(db_path: Path) -> list[list[tuple[str, bytes, bytes | None]]]:
    """Writes to a LevelDB database; returns each write's operations."""
    rng = random.Random(5)
    writes: list[list[tuple[str, bytes, bytes | None]]] = []
    db = plyvel.DB(str(db_path), create_if_missing=True)
    try:
        for n in range(300):
            key, value = b"key%d" % n, rng.randbytes(rng.randrange(200))
            db.put(key, value)
            writes.append([("put", key, value)])
        for n in range(0, 300, 7):
            db.delete(b"key%d" % n)
            writes.append([("delete", b"key%d" % n, None)])
        with db.write_batch() as batch:
            operations: list[tuple[str, bytes, bytes | None]] = []
            for n in range(50):
                batch.put(b"batch%d" % n, b"v" * n)
                operations.append(("put", b"batch%d" % n, b"v" * n))
            batch.delete(b"key1")
            operations.append(("delete", b"key1", None))
        writes.append(operations)
        for n in range(3):  # values over 64 KiB: records over several blocks
            value = rng.randbytes(70_000 + n * 40_000)
            db.put(b"big%d" % n, value)
            writes.append([("put", b"big%d" % n, value)])
    finally:
        db.close()
    return writes


def log_file(db_path: Path) -> Path:
    logs = sorted(db_path.glob("*.log"))
    assert len(logs) == 1
    return logs[0]


async def read_records(path: Path, **options: object) -> list[bytes]:
    async with RecordsReader(str(path), strict=True, **options) as reader:  # type: ignore[arg-type]
        return [record async for record in reader]


async def test_we_read_leveldbs_write_ahead_log(tmp_path: Path) -> None:
    writes = workload(tmp_path / "db")
    records = await read_records(log_file(tmp_path / "db"))
    batches = [decode_batch(record) for record in records]
    assert [batch.operations for batch in batches] == writes
    # Sequence numbers follow each other, one per operation.
    sequence = batches[0].sequence
    for batch in batches:
        assert batch.sequence == sequence
        sequence += len(batch.operations)


async def test_our_writer_writes_leveldbs_exact_bytes(tmp_path: Path) -> None:
    workload(tmp_path / "db")
    original = log_file(tmp_path / "db")
    records = await read_records(original)
    ours = tmp_path / "ours.log"
    async with RecordsWriter(str(ours), pad_last_block=False) as writer:
        for record in records:
            await writer.write(record)
    assert ours.read_bytes() == original.read_bytes()
    assert len(original.read_bytes()) > 4 * 32768


async def test_we_read_leveldbs_manifest(tmp_path: Path) -> None:
    workload(tmp_path / "db")
    manifest = next((tmp_path / "db").glob("MANIFEST-*"))
    records = await read_records(manifest)
    assert records
    # The first VersionEdit names the comparator (tag 1, a length-prefixed name).
    first = records[0]
    assert first[0] == 1
    size, at = read_varint(first, 1)
    assert first[at : at + size] == b"leveldb.BytewiseComparator"


@pytest.mark.parametrize("pad", [False, True])
async def test_leveldb_replays_a_log_we_wrote(tmp_path: Path, pad: bool) -> None:
    db_path = tmp_path / "db"
    plyvel.DB(str(db_path), create_if_missing=True).close()  # an empty database
    log = log_file(db_path)
    assert log.stat().st_size == 0
    rng = random.Random(6)
    expected: dict[bytes, bytes] = {}
    sequence = 1
    async with RecordsWriter(str(log), pad_last_block=pad, replace=True) as writer:
        for n in range(200):
            operations: list[tuple[str, bytes, bytes | None]] = []
            key = b"k%03d" % n
            value = rng.randbytes(rng.choice([0, 10, 1000, 70_000]))
            operations.append(("put", key, value))
            expected[key] = value
            if n % 9 == 0 and n:
                gone = b"k%03d" % (n - 4)
                operations.append(("delete", gone, None))
                expected.pop(gone, None)
            await writer.write(encode_batch(Batch(sequence, operations)))
            sequence += len(operations)
    db = plyvel.DB(str(db_path), paranoid_checks=True)
    try:
        assert dict(db.iterator()) == expected
    finally:
        db.close()


async def test_leveldb_replays_what_we_appended_to_its_log(tmp_path: Path) -> None:
    db_path = tmp_path / "db"
    db = plyvel.DB(str(db_path), create_if_missing=True)
    db.put(b"theirs", b"1")
    db.close()
    log = log_file(db_path)
    batches = [decode_batch(r) for r in await read_records(log)]
    sequence = batches[-1].sequence + len(batches[-1].operations)
    async with RecordsWriter(str(log), append=True, pad_last_block=False) as writer:
        await writer.write(encode_batch(Batch(sequence, [("put", b"ours", b"2")])))
    db = plyvel.DB(str(db_path), paranoid_checks=True)
    try:
        assert db.get(b"theirs") == b"1"
        assert db.get(b"ours") == b"2"
    finally:
        db.close()
    assert os.path.exists(db_path / "CURRENT")


async def test_a_log_cut_in_its_last_record_is_replayed_without_it(
    tmp_path: Path,
) -> None:
    """A log cut in the middle of its last record (its writer died there):
    LevelDB replays every write but that one, without a word, and so does
    our reader; the torn record is kept apart as `torn_tail` (from its first
    byte to the cut), for a verifier. LevelDB's whole log and MANIFEST have
    none."""
    db_path = tmp_path / "db"
    writes = workload(db_path)
    log = log_file(db_path)
    manifest = next(db_path.glob("MANIFEST-*"))
    for whole in (log, manifest):
        async with RecordsReader(str(whole), strict=True) as reader:
            assert [record async for record in reader]
            assert reader.torn_tail is None
    ends = []
    async with RecordsReader(str(log), strict=True) as reader:
        async for _ in reader:
            ends.append(await reader.tell())
    last_start = ends[-2]
    if 32768 - last_start % 32768 < 7:  # a record never starts in a trailer
        last_start += 32768 - last_start % 32768
    cut = (last_start + ends[-1]) // 2  # the last write is over 150 KB
    with open(log, "r+b") as file:
        file.truncate(cut)
    async with RecordsReader(str(log), strict=True) as reader:
        records = [record async for record in reader]
        assert len(records) == len(writes) - 1
        assert reader.torn_tail == SkippedRegion(
            last_start, cut, "torn record at the end"
        )
    db = plyvel.DB(str(db_path), paranoid_checks=True)
    try:
        assert db.get(b"big1") is not None
        assert db.get(b"big2") is None  # the torn write, dropped silently
    finally:
        db.close()
