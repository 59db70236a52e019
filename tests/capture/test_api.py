"""The async CaptureFile API, call by call, as the CaptureFile API describes it."""

from __future__ import annotations

import asyncio
import os

import pytest

from aiorecords import (
    CaptureFile,
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    InvalidCaptureFile,
    RecordIndexError,
)

from ..helpers.turns import TurnCounter

COMPRESSIONS = ["zstd", "zlib"]


@pytest.fixture(params=COMPRESSIONS)
def compression(request: pytest.FixtureRequest) -> str:
    return request.param


async def write(path: str, records: list, compression: str = "zstd", **kwargs) -> None:
    async with CaptureFile(
        path,
        to_write=True,
        force_new_empty_file=True,
        compression=compression,
        **kwargs,
    ) as cf:
        for record in records:
            await cf.add_record(record)
        await cf.commit()


# -- opening -------------------------------------------------------------------


async def test_constructor_does_not_open(path: str) -> None:
    cf = CaptureFile(path, to_write=True)
    assert not os.path.exists(path)
    with pytest.raises(CaptureFileNotOpen):
        await cf.add_record("x")
    assert cf.record_count() == 0


async def test_awaiting_the_object_opens_it(path: str, compression: str) -> None:
    await write(path, ["a", "b"], compression)
    cf = await CaptureFile(path)
    assert cf.record_count() == 2
    assert await cf.record_at(2) == "b"
    assert "open for reading" in repr(cf)
    await cf.close()
    assert "closed" in repr(cf)


async def test_async_with_on_an_open_object_keeps_it(path: str) -> None:
    await write(path, ["a"])
    cf = await CaptureFile(path)
    async with cf as same:
        assert same is cf
        assert await cf.record_at(1) == "a"
    with pytest.raises(CaptureFileNotOpen):
        await cf.record_at(1)


async def test_open_for_write_creates_a_missing_file(
    path: str, compression: str
) -> None:
    async with CaptureFile(
        path, to_write=True, initial_metadata=b"start", compression=compression
    ) as cf:
        assert cf.record_count() == 0
        assert await cf.get_metadata() == b"start"
    assert os.path.getsize(path) == 409600
    assert os.listdir(os.path.dirname(path)) == ["test.capture"]


async def test_open_for_read_of_a_missing_file(path: str) -> None:
    with pytest.raises(FileNotFoundError):
        await CaptureFile(path)


async def test_force_new_empty_file_replaces_the_old_one(path: str) -> None:
    await write(path, ["old"] * 10)
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as cf:
        assert cf.record_count() == 0
    cf = await CaptureFile(path, force_new_empty_file=True, initial_metadata=b"m")
    assert cf.record_count() == 0
    assert await cf.get_metadata() == b"m"
    await cf.close()


async def test_initial_metadata_is_used_only_for_a_new_file(path: str) -> None:
    await write(path, ["a"], initial_metadata=b"first")
    async with CaptureFile(path, to_write=True, initial_metadata=b"ignored") as cf:
        assert await cf.get_metadata() == b"first"


async def test_opening_twice_is_refused(path: str) -> None:
    await write(path, ["a"])
    cf = await CaptureFile(path)
    with pytest.raises(CaptureFileAlreadyOpen):
        await cf.open()
    await cf.close()
    await cf.open(to_write=True)
    assert cf.to_write
    await cf.close()


async def test_one_writer_per_file_in_a_process(path: str) -> None:
    first = await CaptureFile(path, to_write=True)
    with pytest.raises(CaptureFileAlreadyOpen, match="already open for write"):
        await CaptureFile(path, to_write=True)
    with pytest.raises(CaptureFileAlreadyOpen):
        await CaptureFile(path, force_new_empty_file=True)
    # The same file by another name is the same file.
    alias = os.path.join(os.path.dirname(path), ".", os.path.basename(path))
    with pytest.raises(CaptureFileAlreadyOpen):
        await CaptureFile(alias, to_write=True)
    reader = await CaptureFile(path)  # readers are always welcome
    await reader.close()
    await first.close()
    second = await CaptureFile(path, to_write=True)
    await second.close()


async def test_a_dropped_writer_does_not_hold_the_file(path: str) -> None:
    cf = await CaptureFile(path, to_write=True)
    # Collected at once (no reference cycle), and said so.
    with pytest.warns(ResourceWarning, match="dropped without close"):
        del cf
    cf = await CaptureFile(path, to_write=True)
    await cf.close()


async def test_not_a_capture_file(path: str) -> None:
    with open(path, "wb") as f:
        f.write(b"this is not a capture file" * 100)
    with pytest.raises(InvalidCaptureFile) as caught:
        await CaptureFile(path)
    assert path in str(caught.value)
    assert caught.value.path == path
    assert caught.value.offset == 0


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="compression"):
        CaptureFile("x", compression="lz4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple"):
        CaptureFile("x", compression_block_size=1000)
    with pytest.raises(ValueError, match="max_record_size"):
        CaptureFile("x", max_record_size=0)


async def test_an_existing_file_keeps_its_layout(path: str) -> None:
    await write(path, ["v2"], "zlib")
    async with CaptureFile(path, to_write=True, compression="zstd") as cf:
        await cf.add_record("more")
        await cf.commit()
    with open(path, "rb") as f:
        assert f.read(11) == b"MioCapture\0"
    cf = await CaptureFile(path)
    assert [r async for r in cf] == ["v2", "more"]
    await cf.close()


# -- records -------------------------------------------------------------------


async def test_add_record_returns_the_new_count(path: str, compression: str) -> None:
    async with CaptureFile(path, to_write=True, compression=compression) as cf:
        assert await cf.add_record("one") == 1
        assert await cf.add_record(b"two") == 2
        assert await cf.add_record(bytearray(b"three")) == 3
        assert await cf.add_record(memoryview(b"four")) == 4
        assert cf.record_count() == 4
        with pytest.raises(TypeError):
            await cf.add_record(5)  # type: ignore[arg-type]
        assert cf.record_count() == 4


async def test_records_come_back_as_str_or_bytes(path: str) -> None:
    await write(path, ["text", b"bytes", "ünïcode"])
    cf = await CaptureFile(path)
    assert [await cf.record_at(n) for n in (1, 2, 3)] == ["text", "bytes", "ünïcode"]
    await cf.close()
    cf = await CaptureFile(path, encoding=None)
    assert await cf.record_at(3) == "ünïcode".encode()
    assert [r async for r in cf] == [b"text", b"bytes", "ünïcode".encode()]
    await cf.close()


async def test_streams_decode_text_records(path: str) -> None:
    records = ["plain ascii", "ünïcode", "", "日本語", "mixed é and ascii" * 50]
    await write(path, [*records, b"\xff\xfe not utf-8"])
    cf = await CaptureFile(path)
    assert await cf[1:6] == records
    with pytest.raises(UnicodeDecodeError):
        await cf[1:7]
    await cf.close()
    cf = await CaptureFile(path, encoding="latin-1")
    assert await cf[6] == "ÿþ not utf-8"
    await cf.close()


async def test_str_records_are_stored_with_the_encoding(path: str) -> None:
    await write(path, ["ǅemal"], encoding="utf_16")
    cf = await CaptureFile(path, encoding=None)
    assert await cf.record_at(1) == "ǅemal".encode("utf_16")
    await cf.close()
    cf = await CaptureFile(path, encoding="utf_16")
    assert await cf.record_at(1) == "ǅemal"
    await cf.close()


@pytest.mark.parametrize("number", [0, -1, 4, 10**20])
async def test_record_numbers_out_of_range(path: str, number: int) -> None:
    await write(path, ["a", "b", "c"])
    cf = await CaptureFile(path)
    with pytest.raises(IndexError):
        await cf.record_at(number)
    with pytest.raises(RecordIndexError, match=r"out of range 1\.\.3"):
        await cf[number]
    await cf.close()


async def test_empty_file(path: str, compression: str) -> None:
    await write(path, [], compression)
    cf = await CaptureFile(path)
    assert cf.record_count() == 0
    assert [r async for r in cf] == []
    assert await cf[1:] == []
    with pytest.raises(IndexError):
        await cf.record_at(1)
    assert await cf.get_metadata() is None
    await cf.close()


async def test_empty_records(path: str, compression: str) -> None:
    await write(path, [b"", "", b"x", b""], compression)
    cf = await CaptureFile(path)
    assert [r async for r in cf] == ["", "", "x", ""]
    await cf.close()


async def test_slices_count_record_numbers(path: str) -> None:
    await write(path, [str(n) for n in range(1, 11)])
    cf = await CaptureFile(path)
    assert await cf[2:4] == ["2", "3"]
    assert await cf[:3] == ["1", "2"]
    assert await cf[9:] == ["9", "10"]
    assert await cf[8:100] == ["8", "9", "10"]
    assert await cf[1:11:3] == ["1", "4", "7", "10"]
    assert await cf[5:5] == []
    assert await cf[6:2] == []
    assert await cf[5] == "5"
    with pytest.raises(IndexError):
        await cf[0:2]
    await cf.close()


async def test_record_generator_starts_where_asked(path: str) -> None:
    await write(path, [str(n) for n in range(1, 101)])
    cf = await CaptureFile(path)
    assert [r async for r in cf.record_generator(95)] == [
        "95",
        "96",
        "97",
        "98",
        "99",
        "100",
    ]
    assert [r async for r in cf.record_generator(101)] == []
    with pytest.raises(IndexError):
        cf.record_generator(0)
    await cf.close()
    with pytest.raises(CaptureFileNotOpen):
        cf.record_generator()


async def test_iteration_ends_where_the_file_ended(path: str) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        for n in range(10):
            await cf.add_record(str(n))
        records = cf.record_generator()
        for n in range(10, 20):
            await cf.add_record(str(n))
        assert len([r async for r in records]) == 10
        # A writer reads back what it has added, committed or not.
        assert len([r async for r in cf]) == 20
        assert await cf.record_at(20) == "19"


async def test_many_records_many_blocks(path: str, compression: str) -> None:
    records = [f"record {n} " * (n % 7) for n in range(20_000)]
    async with CaptureFile(path, to_write=True, compression=compression) as cf:
        for n, record in enumerate(records):
            await cf.add_record(record)
            if n % 3000 == 0:
                await cf.commit()
        await cf.commit()
    cf = await CaptureFile(path)
    assert [r async for r in cf] == records
    for n in [1, 2, 31, 32, 33, 1024, 1025, 19_999, 20_000]:
        assert await cf.record_at(n) == records[n - 1]
    assert await cf[7777:7790] == records[7776:7789]
    await cf.close()


async def test_large_records(path: str, compression: str) -> None:
    big = os.urandom(3 * 1024 * 1024)
    records = [b"small", big, b"between", big[::-1], b"last"]
    await write(path, records, compression, encoding=None)
    cf = await CaptureFile(path, encoding=None)
    assert [r async for r in cf] == records
    assert await cf.record_at(4) == big[::-1]
    await cf.close()


async def test_record_over_max_record_size(path: str) -> None:
    async with CaptureFile(path, to_write=True, max_record_size=100) as cf:
        await cf.add_record(b"x" * 100)
        with pytest.raises(ValueError, match="over the largest allowed"):
            await cf.add_record(b"x" * 101)
        with pytest.raises(ValueError, match="101 bytes"):
            await cf.add_record(bytearray(101))
        assert cf.record_count() == 1
        with pytest.raises(ValueError, match="metadata of 101 bytes"):
            await cf.set_metadata(bytes(101))


async def test_a_reader_reads_no_more_than_max_record_size(path: str) -> None:
    record = os.urandom(200_000)
    await write(path, [record], "zlib", encoding=None)
    cf = await CaptureFile(path, encoding=None, max_record_size=100_000)
    with pytest.raises(InvalidCaptureFile, match="larger max_record_size") as caught:
        await cf.record_at(1)
    assert caught.value.path == path
    assert caught.value.offset == 86016
    await cf.close()
    cf = await CaptureFile(path, encoding=None, max_record_size=200_000)
    assert await cf.record_at(1) == record
    await cf.close()


# -- commits, visibility, metadata -------------------------------------------


async def test_uncommitted_records_are_lost_on_close(
    path: str, compression: str
) -> None:
    async with CaptureFile(path, to_write=True, compression=compression) as cf:
        await cf.add_record("kept")
        await cf.commit()
        for n in range(5000):
            await cf.add_record(f"lost {n}")
        await cf.set_metadata(b"lost")
    cf = await CaptureFile(path)
    assert [r async for r in cf] == ["kept"]
    assert await cf.get_metadata() is None
    await cf.close()
    # And the next writer continues after the last commit.
    await write_more(path, ["after"])
    cf = await CaptureFile(path)
    assert [r async for r in cf] == ["kept", "after"]
    await cf.close()


async def write_more(path: str, records: list) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        for record in records:
            await cf.add_record(record)
        await cf.commit()


async def test_readers_see_commits_after_refresh(path: str, compression: str) -> None:
    writer = await CaptureFile(path, to_write=True, compression=compression)
    reader = await CaptureFile(path)
    await writer.add_record("one")
    assert writer.record_count() == 1
    await reader.refresh()
    assert reader.record_count() == 0  # not committed yet
    await writer.commit()
    assert reader.record_count() == 0  # not refreshed yet
    await reader.refresh()
    assert reader.record_count() == 1
    assert await reader.record_at(1) == "one"
    await writer.refresh()  # a writer is always current
    assert writer.record_count() == 1
    await reader.close()
    await writer.close()
    with pytest.raises(CaptureFileNotOpen):
        await reader.refresh()


async def test_metadata_commits_with_the_records(path: str, compression: str) -> None:
    writer = await CaptureFile(path, to_write=True, compression=compression)
    reader = await CaptureFile(path)
    assert await writer.get_metadata() is None
    await writer.add_record("a")
    await writer.set_metadata(b"offset=1")
    assert await writer.get_metadata() == b"offset=1"
    await reader.refresh()
    assert await reader.get_metadata() is None
    await writer.commit()
    await reader.refresh()
    assert await reader.get_metadata() == b"offset=1"
    await writer.set_metadata(None)
    await writer.commit()
    await reader.refresh()
    assert await reader.get_metadata() is None
    big = os.urandom(100_000)
    await writer.set_metadata(big)
    await writer.commit()
    await reader.refresh()
    assert await reader.get_metadata() == big
    await reader.close()
    await writer.close()


async def test_reader_cannot_write(path: str) -> None:
    await write(path, ["a"])
    cf = await CaptureFile(path)
    with pytest.raises(CaptureFileNotOpenForWrite):
        await cf.add_record("b")
    with pytest.raises(CaptureFileNotOpenForWrite):
        await cf.set_metadata(b"m")
    with pytest.raises(CaptureFileNotOpenForWrite):
        await cf.commit()
    await cf.close()


async def test_closed_file_refuses_every_call(path: str) -> None:
    await write(path, ["a"])
    cf = await CaptureFile(path, to_write=True)
    await cf.close()
    await cf.close()  # closing twice does nothing
    for call in [
        cf.add_record("x"),
        cf.set_metadata(b"x"),
        cf.commit(),
        cf.record_at(1),
        cf.get_metadata(),
        cf.refresh(),
        cf[1:2],
    ]:
        with pytest.raises(CaptureFileNotOpen):
            await call
    with pytest.raises(CaptureFileNotOpen):
        cf.__aiter__()
    assert cf.record_count() == 1


async def test_reopening_for_write_continues(path: str, compression: str) -> None:
    cf = CaptureFile(path, to_write=True, compression=compression)
    for round_ in range(5):
        await cf.open(to_write=True)
        for n in range(700):
            await cf.add_record(f"{round_}:{n}")
        await cf.commit()
        await cf.close()
    await cf.open()
    records = [r async for r in cf]
    assert records == [f"{r}:{n}" for r in range(5) for n in range(700)]
    await cf.close()


async def test_a_producer_of_small_records_lets_other_tasks_run(path: str) -> None:
    """Twenty thousand 1-byte records fill only three compression blocks (no
    flush, no thread hop): add_record() must still pause every few hundred
    records, or other tasks would wait milliseconds for the loop."""
    async with CaptureFile(path, to_write=True, durable=False) as cf:
        async with TurnCounter() as other:
            for n in range(20_000):
                assert await cf.add_record(b"x") == n + 1
            turns = other.turns
        await cf.commit()
        assert cf.record_count() == 20_000
    assert turns >= 20_000 // 500


async def test_records_added_while_a_flush_is_out_let_it_finish(path: str) -> None:
    """One task's flush is in a worker thread while another adds small
    records without waiting: the second, once it holds a few thousand
    records in memory, waits for the flush (memory stays bounded, and the
    flushing task gets on), and nothing is lost."""
    from aiorecords.capture import _writer as capture_writer

    async with CaptureFile(path, to_write=True, durable=False) as cf:
        flushed_after = None
        added = 0

        async def flusher() -> None:
            nonlocal flushed_after
            # Large records fill blocks fast: one of these calls flushes.
            for _ in range(capture_writer.FLUSH_BLOCKS * 40):
                await cf.add_record(os.urandom(1000))
            flushed_after = added

        async def adder() -> None:
            nonlocal added
            while added < 200_000 and flushed_after is None:
                await cf.add_record(b"y")
                added += 1

        await asyncio.gather(flusher(), adder())
        await cf.commit()
        count = cf.record_count()
    # Without the wait the adder ran to its limit (200,000) before the
    # flusher got its flush's result back.
    assert flushed_after is not None
    assert flushed_after <= 2 * 4096
    async with CaptureFile(path) as cf:
        assert cf.record_count() == count
