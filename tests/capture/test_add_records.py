"""CaptureFile.add_records (issue 18): many records in one call, as that
many add_record() calls would add them, on every path a record can take
(the in-memory one, a flush in a worker thread, a closing or failed file)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from aiorecords import CaptureFile, CaptureFileNotOpen, CaptureFileNotOpenForWrite

from ..helpers.cancelling import cancel_at_random_until_done
from ..helpers.turns import TurnCounter


def sample(count: int, seed: int = 0) -> list[Any]:
    """Records of every accepted type and of sizes around block sizes."""
    rng = random.Random(seed)
    out: list[Any] = []
    for n in range(count):
        size = rng.choice([0, 1, 40, 100, 3000, 40_000]) if rng.random() < 0.1 else 60
        data = rng.randbytes(size)
        kind = n % 5
        if kind == 0:
            out.append(f"event {n} é")
        elif kind == 1:
            out.append(bytearray(data))
        elif kind == 2:
            out.append(memoryview(data))
        else:
            out.append(data)
    return out


def stored(record: Any) -> bytes:
    return record.encode() if isinstance(record, str) else bytes(record)


async def written_with(path: str, compression: str, add: Any) -> bytes:
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, compression=compression,
        durable=False, compression_block_size=8192,
    ) as cf:  # fmt: skip
        await add(cf)
        await cf.commit()
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
async def test_the_file_is_byte_for_byte_what_add_record_makes(
    tmp_path, compression: str
) -> None:
    data = sample(5000)

    async def one_by_one(cf: CaptureFile) -> None:
        for record in data:
            await cf.add_record(record)

    async def at_once(cf: CaptureFile) -> None:
        assert await cf.add_records(data) == len(data)

    async def from_a_generator(cf: CaptureFile) -> None:
        assert await cf.add_records(record for record in data) == len(data)

    expected = await written_with(str(tmp_path / "a"), compression, one_by_one)
    assert await written_with(str(tmp_path / "b"), compression, at_once) == expected
    assert await written_with(str(tmp_path / "c"), compression, from_a_generator) == (
        expected
    )
    async with CaptureFile(str(tmp_path / "b"), encoding=None) as cf:
        assert [r async for r in cf] == [stored(r) for r in data]


async def test_the_count_and_the_errors_of_an_empty_or_closed_call(path: str) -> None:
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as cf:
        assert await cf.add_records([]) == 0
        assert await cf.add_records([b"a", "b"]) == 2
        assert await cf.add_records(iter(())) == 2
        await cf.commit()
    with pytest.raises(CaptureFileNotOpen):
        await cf.add_records([b"c"])
    async with CaptureFile(path) as reader:
        with pytest.raises(CaptureFileNotOpenForWrite):
            await reader.add_records([b"c"])


async def test_a_bad_record_stops_the_call_after_those_before_it(path: str) -> None:
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, max_record_size=1000
    ) as cf:
        with pytest.raises(TypeError):
            await cf.add_records([b"one", "two", 3, b"four"])  # type: ignore[list-item]
        assert cf.record_count() == 2
        with pytest.raises(ValueError, match="1000"):
            await cf.add_records([b"three", b"x" * 1001, b"five"])
        assert cf.record_count() == 3
        await cf.commit()
    async with CaptureFile(path, encoding=None) as cf:
        assert [r async for r in cf] == [b"one", b"two", b"three"]


async def test_a_long_call_lets_other_tasks_run(path: str) -> None:
    async with (
        CaptureFile(path, to_write=True, durable=False) as cf,
        TurnCounter() as other,
    ):
        assert await cf.add_records(b"x" for _ in range(20_000)) == 20_000
        turns = other.turns
    assert turns >= 20_000 // 500


@pytest.mark.parametrize("seed", range(4))
async def test_cancelled_anywhere_it_adds_every_record_it_took(
    path: str, seed: int
) -> None:
    """add_records over one iterator, cancelled at random steps and called
    again with it until it is used up: each record is added once, in
    order, and the commit holds them all."""
    rng = random.Random(seed)
    data = [stored(r) for r in sample(6000, seed)]
    records = iter(data)
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None,
        compression_block_size=4096,
    ) as cf:  # fmt: skip
        await cancel_at_random_until_done(lambda: cf.add_records(records), rng, 6)
        assert cf.record_count() == len(data)
        await cf.commit()
    async with CaptureFile(path, encoding=None) as cf:
        assert [r async for r in cf] == data


async def test_tasks_adding_at_once_and_a_close_lose_no_commit(path: str) -> None:
    """Four tasks add lists and generators while a fifth commits and then
    closes at a random moment: each task's records keep their order, every
    record of a commit that returned is in the file, and a task caught by
    the close gets CaptureFileNotOpen, never a torn file."""
    rng = random.Random(7)
    for trial in range(12):
        cf = CaptureFile(
            path, to_write=True, force_new_empty_file=True, encoding=None,
            compression_block_size=4096,
        )  # fmt: skip
        await cf
        committed: list[int] = []

        async def producer(tag: int, cf: CaptureFile = cf) -> None:
            for n in range(0, 3000, 300):
                batch = [b"%d:%d" % (tag, n + k) for k in range(300)]
                await cf.add_records(batch if tag % 2 else iter(batch))

        async def committer(
            cf: CaptureFile = cf, committed: list[int] = committed
        ) -> None:
            for _ in range(rng.randrange(1, 8)):
                await asyncio.sleep(0)
                await cf.commit()
                committed.append(cf.committed_count())
            await cf.close()

        results = await asyncio.gather(
            *(producer(tag) for tag in range(4)), committer(), return_exceptions=True
        )
        for result in results:
            assert result is None or isinstance(result, CaptureFileNotOpen), result
        await cf.close()
        async with CaptureFile(path, encoding=None) as reader:
            records = [r async for r in reader]
        assert len(records) == (committed[-1] if committed else 0), trial
        for tag in range(4):
            mine = [r for r in records if r.startswith(b"%d:" % tag)]
            assert mine == [b"%d:%d" % (tag, n) for n in range(len(mine))]
