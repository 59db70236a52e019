"""RecordsWriter and RecordsReader, as the records API describes them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import struct
from pathlib import Path

import aiofiles
import pytest
from crc32c import crc32c

from aiorecords import (
    ClosedError,
    CorruptRecordError,
    RecordsReader,
    RecordsWriter,
    SkippedRegion,
    _io,
    records,
)
from aiorecords.records._log import BLOCK_SIZE, FULL, mask_crc

from ..helpers.turns import TurnCounter


@pytest.fixture
def log_path(tmp_path) -> str:
    return str(tmp_path / "app.log")


def sample(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, 6, 7, 8, 100, 1000, 32_761, 32_760, 70_000, 150_000]
    return [
        rng.randbytes(rng.choice(sizes) if rng.random() < 0.3 else rng.randrange(300))
        for _ in range(count)
    ]


async def write_all(path: str, data: list[bytes], **options) -> None:
    async with RecordsWriter(path, **options) as writer:
        for record in data:
            await writer.write(record)


async def read_all(source, **options) -> list[bytes]:
    async with RecordsReader(source, **options) as reader:
        return [record async for record in reader]


# -- writing -------------------------------------------------------------------


async def test_round_trip(log_path: str) -> None:
    data = sample(300)
    await write_all(log_path, data)
    assert await read_all(log_path) == data


async def test_str_and_bytes_like_records(log_path: str) -> None:
    await write_all(log_path, ["text ü", b"bytes", bytearray(b"ba"), memoryview(b"mv")])
    assert await read_all(log_path) == ["text ü".encode(), b"bytes", b"ba", b"mv"]
    with pytest.raises(TypeError):
        async with RecordsWriter(log_path, replace=True) as writer:
            await writer.write(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("buffer_size", [1, 5_000, 1 << 20])
async def test_write_many_writes_what_writes_one_by_one_would(
    tmp_path, buffer_size: int
) -> None:
    data = [*sample(200), "text ü", bytearray(b"ba"), memoryview(b"mv")]
    one_by_one, many = str(tmp_path / "one.log"), str(tmp_path / "many.log")
    await write_all(one_by_one, [b"first", *data], buffer_size=buffer_size)
    async with RecordsWriter(many, buffer_size=buffer_size) as writer:
        await writer.write(b"first")
        assert await writer.write_many(iter(data)) == len(data)
        assert await writer.write_many([]) == 0
    with open(one_by_one, "rb") as f, open(many, "rb") as g:
        assert g.read() == f.read()


async def test_write_many_keeps_what_came_before_a_bad_record(log_path: str) -> None:
    with pytest.raises(TypeError):
        async with RecordsWriter(log_path) as writer:
            await writer.write_many([b"a", b"b", 5, b"never"])  # type: ignore[list-item]
    assert await read_all(log_path) == [b"a", b"b"]


@pytest.mark.parametrize("how", ["write", "write_many"])
async def test_writing_stops_when_another_task_closes_the_writer(
    log_path: str, how: str
) -> None:
    """Records framed before close() began are written, none after; and
    nothing is ever written to the closed descriptor."""
    produced = 0
    closing = asyncio.Event()

    def records():
        nonlocal produced
        for n in itertools.count():
            produced += 1
            if n == 300:
                closing.set()  # over 128 KiB framed: the writer lets others run
            yield n.to_bytes(4, "big") * 250

    writer = RecordsWriter(log_path)

    async def close_it() -> None:
        await closing.wait()
        await writer.close()

    async def write_them() -> None:
        if how == "write_many":
            await writer.write_many(records())
        else:
            for record in records():
                await writer.write(record)

    closer = asyncio.create_task(close_it())
    with pytest.raises(ClosedError):
        await write_them()
    await closer
    got = await read_all(log_path)
    assert got == [n.to_bytes(4, "big") * 250 for n in range(len(got))]
    assert 300 <= len(got) <= produced


@pytest.mark.parametrize("how", ["write", "write_many"])
async def test_a_writer_of_tiny_records_lets_other_tasks_run(
    log_path: str, how: str
) -> None:
    """Twenty thousand 1-byte records are 160 KB framed, far below the 1 MiB
    flush: the writer must still pause every few hundred records, not only
    every 128 KiB, or other tasks would wait milliseconds for the loop."""
    records = [bytes([n & 255]) for n in range(20_000)]
    async with RecordsWriter(log_path) as writer, TurnCounter() as other:
        if how == "write_many":
            await writer.write_many(records)
        else:
            for record in records:
                await writer.write(record)
        turns = other.turns
    assert turns >= 20_000 // 500
    assert await read_all(log_path) == records


async def test_pad_last_block_like_the_app_engine_writer(log_path: str) -> None:
    await write_all(log_path, [b"abc"])
    assert os.path.getsize(log_path) == BLOCK_SIZE
    with open(log_path, "rb") as f:
        data = f.read()
    assert data[10:] == bytes(BLOCK_SIZE - 10)
    await write_all(log_path, [b"abc"], pad_last_block=False, replace=True)
    assert os.path.getsize(log_path) == 10  # what LevelDB writes
    await write_all(log_path, [b"x" * (BLOCK_SIZE - 7)], replace=True)
    assert os.path.getsize(log_path) == BLOCK_SIZE  # already on a boundary


async def test_bytes_are_exactly_the_format(log_path: str) -> None:
    await write_all(log_path, [b"foo", b""], pad_last_block=False)
    expected = b""
    for data in (b"foo", b""):
        crc = mask_crc(crc32c(bytes([FULL]) + data))
        expected += struct.pack("<IHB", crc, len(data), FULL) + data
    with open(log_path, "rb") as f:
        assert f.read() == expected


async def test_replace_true_replaces_the_file(log_path: str) -> None:
    await write_all(log_path, [b"old"] * 100)
    await write_all(log_path, [b"new"], replace=True)
    assert await read_all(log_path) == [b"new"]
    assert os.listdir(os.path.dirname(log_path)) == ["app.log"]


@pytest.mark.parametrize("existing", ["log", "empty file", "dangling link"])
async def test_a_writer_never_replaces_a_file_unasked(
    log_path: str, existing: str
) -> None:
    """Issue 14: a service restarting without append=True lost its log."""
    if existing == "log":
        await write_all(log_path, [b"old"] * 3)
    elif existing == "empty file":
        Path(log_path).write_bytes(b"")
    else:
        os.symlink(log_path + ".elsewhere", log_path)
    before = os.readlink(log_path) if existing == "dangling link" else None
    content = None if before else Path(log_path).read_bytes()
    writer = RecordsWriter(log_path)
    with pytest.raises(FileExistsError, match=r"append=True .* replace=True") as caught:
        await writer.write(b"new")
    assert caught.value.filename == log_path
    await writer.close()
    if before:
        assert os.readlink(log_path) == before
        assert not os.path.exists(log_path + ".elsewhere")
    else:
        assert Path(log_path).read_bytes() == content
    assert sorted(os.listdir(os.path.dirname(log_path))) == ["app.log"]
    # Run twice, the README's example keeps both runs' records.
    await write_all(log_path + ".2", [b"a", b"b", b"c"], append=True)
    await write_all(log_path + ".2", [b"a", b"b", b"c"], append=True)
    assert len(await read_all(log_path + ".2")) == 6


def test_append_and_replace_contradict() -> None:
    with pytest.raises(ValueError, match="contradict"):
        RecordsWriter("x.log", append=True, replace=True)


@pytest.mark.parametrize("pad", [True, False])
async def test_append_continues_inside_the_last_block(log_path: str, pad: bool) -> None:
    first, second = sample(50, 1), sample(50, 2)
    await write_all(log_path, first, pad_last_block=pad)
    await write_all(log_path, second, append=True, pad_last_block=False)
    assert await read_all(log_path) == first + second
    if not pad:
        # The same bytes as one writer would have written.
        with open(log_path, "rb") as f:
            appended = f.read()
        await write_all(log_path + "2", first + second, pad_last_block=False)
        with open(log_path + "2", "rb") as f:
            assert f.read() == appended


async def test_append_to_a_missing_file_creates_it(log_path: str) -> None:
    await write_all(log_path, [b"one"], append=True)
    assert await read_all(log_path) == [b"one"]


async def test_append_cuts_a_torn_record_first(log_path: str, caplog) -> None:
    await write_all(log_path, [b"kept", b"x" * 5000], pad_last_block=False)
    with open(log_path, "r+b") as f:
        f.truncate(os.path.getsize(log_path) - 100)  # a writer died mid-record
    with caplog.at_level(logging.WARNING, logger="aiorecords"):
        await write_all(log_path, [b"after"], append=True)
    assert "torn record" in caplog.text
    assert await read_all(log_path, strict=True) == [b"kept", b"after"]


async def test_flush_and_sync(log_path: str, io_trace) -> None:
    writer = RecordsWriter(log_path, buffer_size=1 << 30)
    await writer.write(b"one")
    assert os.path.getsize(log_path) == 0  # still buffered
    await writer.flush()
    assert os.path.getsize(log_path) == 10
    io_trace.clear()
    await writer.write(b"two")
    await writer.sync()
    assert io_trace.operations("pwrite", "fdatasync") == ["pwrite", "fdatasync"]
    await writer.close()
    await writer.close()  # twice is fine
    with pytest.raises(ClosedError):
        await writer.write(b"late")


async def test_large_buffers_go_out_as_they_fill(log_path: str, io_trace) -> None:
    async with RecordsWriter(log_path, buffer_size=BLOCK_SIZE) as writer:
        for _ in range(100):
            await writer.write(b"y" * 1000)
        assert os.path.getsize(log_path) > 90 * 1000
    writes = io_trace.operations("pwrite")
    assert 3 <= len(writes) <= 5  # one per full buffer, not one per record


async def test_writer_on_an_async_file_object(tmp_path) -> None:
    path = str(tmp_path / "object.log")
    data = sample(40, 3)
    async with aiofiles.open(path, "wb") as f:
        writer = RecordsWriter(f)  # no async with: as in the records API
        for record in data:
            await writer.write(record)
        await writer.sync()
        await writer.close()  # pads; the file object stays open
        assert not f.closed
    assert os.path.getsize(path) % BLOCK_SIZE == 0
    async with aiofiles.open(path, "rb") as f:
        reader = RecordsReader(f)
        assert await reader.read() == data[0]
        rest = [record async for record in reader]
    assert rest == data[1:]


# -- reading -------------------------------------------------------------------


async def test_read_raises_eof_error_at_the_end(log_path: str) -> None:
    await write_all(log_path, [b"a", b"b"])
    reader = RecordsReader(log_path)
    assert await reader.read() == b"a"
    assert await reader.read() == b"b"
    with pytest.raises(EOFError):
        await reader.read()
    with pytest.raises(EOFError):
        await reader.read()
    await reader.close()
    with pytest.raises(ClosedError):
        await reader.read()


async def test_seek_and_tell(log_path: str) -> None:
    data = [bytes([n]) * 1000 for n in range(100)]
    await write_all(log_path, data, pad_last_block=False)
    async with RecordsReader(log_path) as reader:
        assert await reader.tell() == 0
        assert await reader.read() == data[0]
        position = await reader.tell()
        assert position == 1007
        rest = [record async for record in reader]
        assert rest == data[1:]
        await reader.seek(position)  # seek(tell()) goes on with the next one
        assert await reader.read() == data[1]
        await reader.seek(1008)  # inside record 1: the next record starts it
        assert await reader.read() == data[2]
        await reader.seek(0)
        assert await reader.read() == data[0]
        await reader.seek(10**9)
        with pytest.raises(EOFError):
            await reader.read()


async def test_seeking_while_iterating(log_path: str) -> None:
    data = [str(n).encode() for n in range(5000)]
    await write_all(log_path, data)
    async with RecordsReader(log_path) as reader:
        seen = []
        async for record in reader:
            seen.append(record)
            if len(seen) == 11:
                await reader.seek(0)
    assert seen == data[:11] + data


async def test_start_and_stop(log_path: str) -> None:
    data = sample(200, 4)
    await write_all(log_path, data)
    async with RecordsReader(log_path) as reader:
        starts = []
        for _ in data:
            starts.append(await reader.tell())
            await reader.read()
    # tell() after a record is where the next one may start; find the real
    # starts through readers bounded by each candidate offset.
    middle = len(data) // 2
    first = await read_all(log_path, stop=starts[middle] + 1)
    second = await read_all(log_path, start=starts[middle] + 1)
    assert first + second == data


@pytest.mark.parametrize("size_seed", range(5))
async def test_split_ranges_read_every_record_once(tmp_path, size_seed: int) -> None:
    path = str(tmp_path / "split.log")
    data = sample(400, size_seed)
    await write_all(path, data, pad_last_block=size_seed % 2 == 0)
    size = os.path.getsize(path)
    for n in (1, 2, 3, 5, 8, 13, 40, 1000):
        ranges = await records.split(path, n)
        assert len(ranges) <= n
        assert ranges[0][0] == 0
        assert ranges[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(start % BLOCK_SIZE == 0 for start, _ in ranges)
        parts = await asyncio.gather(
            *(read_all(path, start=start, stop=stop) for start, stop in ranges)
        )
        assert [record for part in parts for record in part] == data


async def test_split_of_an_empty_file(log_path: str) -> None:
    open(log_path, "wb").close()
    assert await records.split(log_path, 4) == []
    with pytest.raises(ValueError, match="at least 1"):
        await records.split(log_path, 0)


def damage(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x55]))


async def test_damage_is_reported_and_skipped(log_path: str, caplog) -> None:
    data = [bytes([n]) * 3000 for n in range(40)]
    await write_all(log_path, data)
    damage(log_path, 3007 * 2 + 100)  # inside the third record
    regions: list[SkippedRegion] = []
    with caplog.at_level(logging.WARNING, logger="aiorecords"):
        got = await read_all(log_path, on_corruption=regions.append)
    assert got[:2] == data[:2]
    assert set(got) <= set(data)
    assert data[11] in got  # the next block is read again
    # The rest of the block goes; then the end of the record that spanned
    # into the next block has lost its start, as LevelDB reports it.
    assert regions[0] == SkippedRegion(3007 * 2, BLOCK_SIZE, "checksum mismatch")
    assert regions[1].reason == "missing start of fragmented record(2)"
    assert regions[1].start == BLOCK_SIZE + 7
    assert len(regions) == 2
    assert "checksum mismatch" in caplog.text
    assert "offset 6014" in caplog.text


async def test_strict_mode_raises_with_the_offset(log_path: str) -> None:
    data = [bytes([n]) * 3000 for n in range(40)]
    await write_all(log_path, data)
    damage(log_path, 3007 * 2 + 100)
    reader = RecordsReader(log_path, strict=True)
    assert await reader.read() == data[0]
    assert await reader.read() == data[1]
    with pytest.raises(CorruptRecordError) as caught:
        await reader.read()
    assert caught.value.offset == 6014
    assert caught.value.path == log_path
    assert "checksum mismatch" in str(caught.value)
    await reader.close()


async def test_a_corrupt_length_allocates_nothing(log_path: str) -> None:
    """A record that claims to be huge is dropped at max_record_size."""
    import tracemalloc

    await write_all(log_path, [b"x" * 3_000_000, b"after"])
    tracemalloc.start()
    try:
        got = await read_all(log_path, max_record_size=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [b"after"]
    assert peak < 2_000_000


@pytest.mark.parametrize("cached_reads", [True, False])
@pytest.mark.parametrize("size", [7, 100, 1024, 20_000])
async def test_reading_holds_about_a_block_whatever_the_file_size(
    log_path: str, size: int, cached_reads: bool
) -> None:
    """The reader's memory does not grow with the file: it reads one block at
    a time (from the page cache, or through a worker thread)."""
    import tracemalloc

    count = min((4 << 20) // size, 50_000)  # 0.35 to 4 MiB
    async with RecordsWriter(log_path) as writer:
        await writer.write_many(bytes([n & 255]) * size for n in range(count))
    await read_all(log_path)  # imports, the worker pool: not the reader's
    previous = _io.allow_cached_reads(cached_reads)
    tracemalloc.start()
    try:
        seen = 0
        async with RecordsReader(log_path) as reader:
            async for _ in reader:
                seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        _io.allow_cached_reads(previous)
    assert seen == count
    # The block read, its copy being decoded, and the records decoded from
    # one block not yet handed out (measured: 3.5 to 7 blocks, for 4 MiB or
    # 8 MiB alike, where reading 8 blocks at a time took 26).
    assert peak < 8 * BLOCK_SIZE


@pytest.mark.parametrize("cached_reads", [True, False])
async def test_a_reader_of_tiny_records_lets_other_tasks_run(
    log_path: str, cached_reads: bool
) -> None:
    """Twenty thousand 1-byte records fill only five blocks: the reader must
    pause every few hundred records, not only per block or per 256 KiB."""
    records = [bytes([n & 255]) for n in range(20_000)]
    await write_all(log_path, records)
    previous = _io.allow_cached_reads(cached_reads)
    try:
        async with RecordsReader(log_path) as reader, TurnCounter() as other:
            got = [record async for record in reader]
            turns = other.turns
    finally:
        _io.allow_cached_reads(previous)
    assert got == records
    assert turns >= 20_000 // 500


async def test_reader_on_a_file_object_starts_where_it_stands(log_path: str) -> None:
    data = [b"first" * 10, b"second", b"third"]
    await write_all(log_path, data)
    async with aiofiles.open(log_path, "rb") as f:
        await f.seek(1)  # inside the first record
        assert await read_all(f) == data[1:]


# -- following a growing file ------------------------------------------------


async def test_follow_yields_records_as_they_are_written(log_path: str) -> None:
    writer = RecordsWriter(log_path, pad_last_block=False, buffer_size=1)
    await writer.write(b"before")
    reader = RecordsReader(log_path)
    follow = reader.follow()
    assert await anext(follow) == b"before"
    for n in range(20):
        record = f"live {n}".encode() * (n * 400)
        await writer.write(record)  # buffer_size=1: written at once
        assert await asyncio.wait_for(anext(follow), 10) == record
    await writer.close()
    await follow.aclose()
    await reader.close()


async def test_follow_never_yields_a_half_written_record(log_path: str) -> None:
    whole = bytearray()
    from aiorecords.records._log import LogEncoder

    encoder = LogEncoder()
    for n in range(3):
        encoder.encode(bytes([n]) * 50_000, whole)
    with open(log_path, "wb") as f:
        f.write(whole[:60_000])  # the first record, and part of the second
    reader = RecordsReader(log_path)
    follow = reader.follow()
    assert await anext(follow) == bytes([0]) * 50_000
    pending = asyncio.ensure_future(anext(follow))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done  # waiting: the second record is not whole
    with open(log_path, "ab") as f:
        f.write(whole[60_000:120_000])
    assert await asyncio.wait_for(pending, 10) == bytes([1]) * 50_000
    with open(log_path, "ab") as f:
        f.write(whole[120_000:])
    assert await asyncio.wait_for(anext(follow), 10) == bytes([2]) * 50_000
    await follow.aclose()
    await reader.close()


@pytest.mark.parametrize("pad", [True, False])
async def test_a_follower_mid_record_sees_a_torn_tail_rewritten_shorter(
    log_path: str, pad: bool
) -> None:
    """A record torn across a block boundary (a writer killed while writing
    it: its FIRST fragment whole, its next one cut short), read by a
    follower, which then holds that FIRST fragment and waits at the block
    boundary. A restarting writer cuts the torn record off and writes a
    short record in its place (with ``pad``, padding up to that same
    boundary, so the file's size is what the follower already read to). The
    follower yields the new record, without waiting for the file to grow
    again (it once waited forever when no more came)."""
    from aiorecords.records._log import LogEncoder

    whole = bytearray()
    encoder = LogEncoder()
    encoder.encode(b"kept" * 1000, whole)
    torn_at = len(whole)
    encoder.encode(b"T" * 40_000, whole)  # FIRST to the block end, MIDDLE ...
    with open(log_path, "wb") as f:
        f.write(whole[: BLOCK_SIZE + 20])  # ... cut 13 bytes into its data
    reader = RecordsReader(log_path)
    follow = reader.follow()
    assert await asyncio.wait_for(anext(follow), 10) == b"kept" * 1000
    pending = asyncio.ensure_future(anext(follow))
    done, _ = await asyncio.wait({pending}, timeout=0.2)
    assert not done  # it holds the FIRST fragment, waiting for the rest
    await write_all(log_path, [b"after the restart"], append=True, pad_last_block=pad)
    size = os.path.getsize(log_path)
    assert size == (BLOCK_SIZE if pad else torn_at + 7 + len(b"after the restart"))
    assert await asyncio.wait_for(pending, 10) == b"after the restart"
    await follow.aclose()
    await reader.close()
    assert await read_all(log_path, strict=True) == [
        b"kept" * 1000,
        b"after the restart",
    ]


async def test_cancelling_a_follower_ends_it(log_path: str) -> None:
    await write_all(log_path, [b"only"])

    async def consume(out: list[bytes]) -> None:
        async with RecordsReader(log_path) as reader:
            async for record in reader.follow():
                out.append(record)

    seen: list[bytes] = []
    task = asyncio.create_task(consume(seen))
    while not seen:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [b"only"]


async def test_follow_stops_at_stop(log_path: str) -> None:
    await write_all(log_path, [b"a", b"b"], pad_last_block=False)
    async with RecordsReader(log_path, stop=8) as reader:  # "b" starts at 8
        assert [record async for record in reader.follow()] == [b"a"]
    async with RecordsReader(log_path, stop=9) as reader:
        assert [record async for record in reader.follow()] == [b"a", b"b"]


async def test_follow_another_process_appending(log_path: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent.parent / "helpers"))
    from records_worker import record  # type: ignore[import-not-found]

    worker = Path(__file__).parent.parent / "helpers" / "records_worker.py"
    count = 300
    open(log_path, "wb").close()
    reader = RecordsReader(log_path)
    process = subprocess.Popen([sys.executable, str(worker), log_path, str(count)])
    try:
        seen = []
        follow = reader.follow()
        while len(seen) < count:
            seen.append(await asyncio.wait_for(anext(follow), 60))
        await follow.aclose()
    finally:
        assert process.wait(timeout=60) == 0
        await reader.close()
    assert seen == [record(n) for n in range(count)]


@pytest.mark.parametrize("blocks", [1, 4])
async def test_read_size_sets_the_reads_the_page_cache_serves(
    log_path: str, io_trace, blocks: int
) -> None:
    """A block the page cache holds is read on the loop ``read_size`` at a
    time, as the worker thread reads the others: a larger read_size means
    fewer reads, and the same records."""
    records = [bytes([n & 255]) * 1000 for n in range(1024)]  # about 1 MiB
    async with RecordsWriter(log_path) as writer:
        await writer.write_many(records)
    await read_all(log_path)  # now in the page cache
    io_trace.clear()
    async with RecordsReader(log_path, read_size=blocks * BLOCK_SIZE) as reader:
        assert [r async for r in reader] == records
    reads = [c for c in io_trace.calls if c[0] == "pread"]
    assert {size for _, _, _, size in reads} == {blocks * BLOCK_SIZE}
    blocks_in_file = -(-os.path.getsize(log_path) // BLOCK_SIZE)
    assert len(reads) == -(-blocks_in_file // blocks) + 1  # and one at the end
