"""Many tasks on one TFRecordWriter, compressed, cancelled at random, closed
from another task: to a local file, to S3 (the upload path, where the
compression runs in worker-thread hops between parts). Every acknowledged
record is in the file, each task's in its order, and the stream is whole
(it inflates to its end). (A file object's writer is poisoned by a
cancelled write, as documented: the object cannot say what it wrote.)"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from aiorecords import ClosedError, TFRecordReader, TFRecordWriter

from .conftest import S3
from .storm import storm


async def run_storm(writer: TFRecordWriter, seed: int) -> tuple[dict, set, int]:
    rng = random.Random(seed)
    acknowledged: dict[bytes, int] = {}
    attempted: set[bytes] = set()

    async def one_task(task: int) -> None:
        for index in itertools.count():
            size = rng.choice([10, 3_000, 70_000])
            record = f"{task}:{index}:".encode().ljust(size, b"z")
            attempted.add(record)
            try:
                await writer.write(record)
            except ClosedError:
                return
            acknowledged[record] = task

    tasks = await storm(
        one_task,
        workers=8,
        enough=lambda: len(acknowledged) >= 600,
        close=writer.close,
        rng=rng,
        cancel_rate=0.05,
    )
    return acknowledged, attempted, tasks


def check(got: list[bytes], acknowledged: dict, attempted: set, tasks: int) -> None:
    assert len(got) == len(set(got))
    assert set(acknowledged) <= set(got) <= attempted
    for task in range(tasks):
        numbers = [int(r.split(b":")[1]) for r in got if r.startswith(b"%d:" % task)]
        assert numbers == sorted(numbers)


async def read_back(source, **options) -> list[bytes]:
    async with TFRecordReader(source, strict=True, **options) as reader:
        return [record async for record in reader]


@pytest.mark.parametrize("seed", range(3))
async def test_a_local_compressed_file(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "storm.tfrecord.gz"
    writer = TFRecordWriter(
        path, compression="gzip", buffer_size=64 * 1024, index=False
    )
    result = await run_storm(writer, seed)
    check(await read_back(path, compression="gzip"), *result)


async def test_a_compressed_object_on_s3(s3: S3) -> None:
    bucket = s3.bucket("tfrecord-storm")
    url = f"{bucket}/storm.tfrecord.zlib"
    writer = TFRecordWriter(
        url, compression="zlib", buffer_size=256 * 1024, storage_options=s3.options
    )
    result = await run_storm(writer, 7)
    check(await read_back(url, compression="zlib", storage_options=s3.options), *result)
    assert s3.unfinished_uploads(bucket) == []
