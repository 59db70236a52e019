"""A TFRecord file and its ``.tfindex`` under many tasks at once.

Five tasks write records and lists of records to one indexed writer, some
of them cancelled at random moments, while the file is closed at another:
whatever was acknowledged is in the file, and the index the close gives its
name to lists exactly the file's records, one after another from offset 0
to its end (what splits and random access trust).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from aiorecords import ClosedError, TFRecordReader, TFRecordWriter


@pytest.mark.parametrize("seed", range(40))
async def test_the_index_lists_the_records_after_a_close_at_random(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    path = str(tmp_path / "s.tfrecord")
    writer = TFRecordWriter(
        path, index=True, buffer_size=rng.choice([1, 4096, 1 << 20])
    )
    acknowledged: list[bytes] = []

    async def worker(own: random.Random) -> None:
        while True:
            if own.random() < 0.5:
                batch = [
                    own.randbytes(own.randint(0, 3000))
                    for _ in range(own.randint(1, 20))
                ]
                await writer.write_many(batch)
                acknowledged.extend(batch)
            else:
                record = own.randbytes(own.randint(0, 5000))
                await writer.write(record)
                acknowledged.append(record)
            if own.random() < 0.1:
                await writer.flush()

    tasks = [
        asyncio.ensure_future(worker(random.Random(seed * 10 + n))) for n in range(5)
    ]
    for _ in range(rng.randint(1, 200)):
        await asyncio.sleep(0)  # (turns of the loop, not time)
        if rng.random() < 0.02:
            rng.choice(tasks).cancel()
    await writer.close()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        assert isinstance(outcome, (asyncio.CancelledError, ClosedError)), outcome
    async with TFRecordReader(path, strict=True) as reader:
        stored = [record async for record in reader]
    assert not Counter(acknowledged) - Counter(stored)
    fields = Path(path).with_suffix(".tfindex").read_text().split()
    entries = list(zip(map(int, fields[0::2]), map(int, fields[1::2]), strict=True))
    assert len(entries) == len(stored)
    at = 0
    for (offset, length), record in zip(entries, stored, strict=True):
        assert (offset, length) == (at, 16 + len(record))
        at += length
    assert at == os.path.getsize(path)
