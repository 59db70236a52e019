"""TFRecordWriter and TFRecordReader: the records API's shape, TensorFlow's
framing, compression, the index, damage, following and appending."""

from __future__ import annotations

import asyncio
import gzip
import random
import zlib
from pathlib import Path

import pytest

from aiorecords import (
    CorruptRecordError,
    RecordsLocked,
    SkippedRegion,
    StorageNotSupported,
    TFRecordReader,
    TFRecordWriter,
)

from .vectors import framed


def sample(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, 11, 12, 13, 1000, 40_000, 200_000]
    return [
        rng.randbytes(rng.choice(sizes) if rng.random() < 0.2 else rng.randrange(200))
        for _ in range(count)
    ]


async def write_all(path: Path | str, data: list[bytes], **options) -> None:
    async with TFRecordWriter(path, **options) as writer:
        for record in data:
            await writer.write(record)


async def read_all(source, **options) -> list[bytes]:
    async with TFRecordReader(source, **options) as reader:
        return [record async for record in reader]


async def test_the_file_is_the_framed_records(tmp_path: Path) -> None:
    data = sample(300)
    await write_all(tmp_path / "a.tfrecord", data)
    expected = b"".join(framed(record) for record in data)
    assert (tmp_path / "a.tfrecord").read_bytes() == expected
    assert await read_all(tmp_path / "a.tfrecord") == data


@pytest.mark.parametrize("buffer_size", [1, 5_000, 1 << 20])
async def test_write_many_and_str_records(tmp_path: Path, buffer_size: int) -> None:
    data = sample(200)
    async with TFRecordWriter(tmp_path / "m.tfrecord", buffer_size=buffer_size) as w:
        assert await w.write_many(iter(data)) == 200
        await w.write("text ü")
    assert await read_all(tmp_path / "m.tfrecord") == [*data, "text ü".encode()]


@pytest.mark.parametrize("kind", ["gzip", "zlib"])
async def test_compressed_files_are_one_stream_of_the_framing(
    tmp_path: Path, kind: str
) -> None:
    data = sample(400)
    path = tmp_path / f"c.tfrecord.{kind}"
    await write_all(path, data, compression=kind, buffer_size=20_000)
    raw = path.read_bytes()
    inflated = gzip.decompress(raw) if kind == "gzip" else zlib.decompress(raw)
    assert inflated == b"".join(framed(record) for record in data)
    assert await read_all(path, compression=kind) == data
    # The reader's offsets are the inflated stream's: start after a record.
    second = len(framed(data[0]))
    assert await read_all(path, compression=kind, start=second) == data[1:]


async def test_a_compressed_file_without_records_is_a_valid_stream(
    tmp_path: Path,
) -> None:
    async with TFRecordWriter(tmp_path / "e.gz", compression="gzip"):
        pass
    assert gzip.decompress((tmp_path / "e.gz").read_bytes()) == b""
    assert await read_all(tmp_path / "e.gz", compression="gzip") == []


async def test_a_damaged_compressed_stream_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.gz"
    await write_all(path, sample(300), compression="gzip")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 50] = bytes(50)
    path.write_bytes(bytes(raw))
    regions: list[SkippedRegion] = []
    got = await read_all(path, compression="gzip", on_corruption=regions.append)
    assert regions
    assert got == sample(300)[: len(got)]
    with pytest.raises(CorruptRecordError):
        await read_all(path, compression="gzip", strict=True)


async def test_damage_ends_the_file_with_its_region_and_offset(tmp_path: Path) -> None:
    data = sample(50)
    path = tmp_path / "d.tfrecord"
    await write_all(path, data)
    raw = bytearray(path.read_bytes())
    tenth = sum(len(framed(record)) for record in data[:10])
    raw[tenth + 13] ^= 1  # inside the 11th record
    path.write_bytes(bytes(raw))
    regions: list[SkippedRegion] = []
    assert await read_all(path, on_corruption=regions.append) == data[:10]
    assert [(r.start, r.end) for r in regions] == [(tenth, len(raw))]
    with pytest.raises(CorruptRecordError) as raised:
        await read_all(path, strict=True)
    assert raised.value.offset == tenth
    assert raised.value.path == str(path)


async def test_a_torn_tail_is_reported_and_strict_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "t.tfrecord"
    await write_all(path, [b"one", b"two" * 100])
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])
    regions: list[SkippedRegion] = []
    assert await read_all(path, on_corruption=regions.append) == [b"one"]
    assert regions == [
        SkippedRegion(len(framed(b"one")), len(whole) - 5, "torn record at the end")
    ]
    with pytest.raises(CorruptRecordError):
        await read_all(path, strict=True)


async def test_append_cuts_a_torn_record_first(tmp_path: Path) -> None:
    path = tmp_path / "a.tfrecord"
    await write_all(path, [b"one", b"two"])
    path.write_bytes(path.read_bytes()[:-3])  # a writer died in "two"
    await write_all(path, [b"three"], append=True)
    assert await read_all(path, strict=True) == [b"one", b"three"]


async def test_new_files_refuse_a_taken_name_and_writers_exclude_each_other(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.tfrecord"
    await write_all(path, [b"kept"])
    with pytest.raises(FileExistsError):
        await write_all(path, [b"lost"])
    assert await read_all(path) == [b"kept"]
    async with TFRecordWriter(path, append=True) as first:
        await first.write(b"a")
        with pytest.raises(RecordsLocked):
            async with TFRecordWriter(path, append=True):
                pass
    with pytest.raises(ValueError, match="compressed"):
        TFRecordWriter(path, append=True, compression="gzip")


async def test_the_index_is_written_beside_and_published_at_the_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.tfrecord"
    data = sample(100)
    writer = TFRecordWriter(path, index=True, buffer_size=1000)
    async with writer:
        for record in data:
            await writer.write(record)
        await writer.flush()
        assert not (tmp_path / "events.tfindex").exists()  # not before the close
    lines = (tmp_path / "events.tfindex").read_text().splitlines()
    offset = 0
    for line, record in zip(lines, data, strict=True):
        assert line == f"{offset} {len(record) + 16}"
        offset += len(record) + 16
    # A new file replaces an old index; a writer without records, too.
    async with TFRecordWriter(path, index=True, replace=True):
        pass
    assert (tmp_path / "events.tfindex").read_text() == ""


async def test_an_index_is_for_local_files(tmp_path: Path) -> None:
    with pytest.raises(StorageNotSupported):
        TFRecordWriter("s3://bucket/x.tfrecord", index=True)


async def test_follow_yields_records_as_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "f.tfrecord"
    writer = TFRecordWriter(path, buffer_size=1)
    await writer.write(b"before")
    reader = TFRecordReader(path)
    follow = reader.follow()
    assert await anext(follow) == b"before"
    for n in range(20):
        record = f"live {n}".encode() * (n * 400)
        await writer.write(record)
        assert await asyncio.wait_for(anext(follow), 10) == record
    await writer.close()
    await follow.aclose()
    await reader.close()


async def test_follow_never_yields_a_half_written_record(tmp_path: Path) -> None:
    path = tmp_path / "h.tfrecord"
    whole = b"".join(framed(bytes([n]) * 50_000) for n in range(3))
    path.write_bytes(whole[:60_000])
    reader = TFRecordReader(path)
    follow = reader.follow()
    assert await anext(follow) == bytes([0]) * 50_000
    pending = asyncio.ensure_future(anext(follow))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done
    with path.open("ab") as f:
        f.write(whole[60_000:])
    assert await asyncio.wait_for(pending, 10) == bytes([1]) * 50_000
    assert await asyncio.wait_for(anext(follow), 10) == bytes([2]) * 50_000
    await follow.aclose()
    await reader.close()


async def test_a_follower_goes_on_into_a_restarted_writers_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.tfrecord"
    path.write_bytes(framed(b"one") + framed(b"torn" * 1000)[:100])
    reader = TFRecordReader(path)
    follow = reader.follow()
    assert await anext(follow) == b"one"
    pending = asyncio.ensure_future(anext(follow))
    await asyncio.wait({pending}, timeout=0.05)
    await write_all(path, [b"two", b"three"], append=True)  # cuts the torn one
    assert await asyncio.wait_for(pending, 10) == b"two"
    assert await asyncio.wait_for(anext(follow), 10) == b"three"
    await follow.aclose()
    await reader.close()


async def test_a_compressed_file_cannot_be_followed(tmp_path: Path) -> None:
    await write_all(tmp_path / "c.gz", [b"x"], compression="gzip")
    async with TFRecordReader(tmp_path / "c.gz", compression="gzip") as reader:
        with pytest.raises(ValueError, match="cannot be followed"):
            reader.follow()


async def test_seek_and_tell(tmp_path: Path) -> None:
    data = sample(30)
    path = tmp_path / "s.tfrecord"
    await write_all(path, data)
    async with TFRecordReader(path) as reader:
        for _ in range(5):
            await reader.read()
        at = await reader.tell()
        rest = [record async for record in reader]
        await reader.seek(at)
        assert [record async for record in reader] == rest == data[5:]
        with pytest.raises(EOFError):
            await reader.read()
