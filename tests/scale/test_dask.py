"""aiorecords.dask on a real distributed.LocalCluster with worker
processes: 200 files of every format, local and on the S3 test server,
read into bags and dataframes and written back, against single-process
reads; a worker killed during a task."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

import pandas as pd
import pytest
from splits.build import FORMATS, build

import aiorecords
import aiorecords.dask

from .killer import kill_the_first_time

FILES = 200


def records_of(number: int) -> list[bytes]:
    """The records of file ``number``: a few, some large."""
    return [
        b'{"file": %d, "n": %d, "kind": "k%d"}' % (number, n, (number + n) % 5)
        + b" " * (3000 if n % 7 == 0 else 0)
        for n in range(number % 4 + 1)
    ]


@pytest.fixture(scope="module")
def local_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """FILES files of each format; the glob naming them, by format."""
    root = tmp_path_factory.mktemp("scale")

    async def make() -> None:
        for fmt in FORMATS:
            (root / fmt).mkdir()
            for number in range(FILES):
                await build(
                    root / fmt / f"part-{number:03d}.{fmt}", fmt, records_of(number)
                )

    asyncio.run(make())
    return {fmt: str(root / fmt / f"*.{fmt}") for fmt in FORMATS}


@pytest.fixture(scope="module")
def s3_files(s3, local_files: dict[str, str]) -> dict[str, str]:
    """The same files in a bucket of the S3 server (with the indexes)."""
    bucket = s3.bucket("scale")
    client = s3.client()
    for fmt, pattern in local_files.items():
        for path in sorted(Path(pattern).parent.iterdir()):
            client.put_object(
                Bucket="scale", Key=f"{fmt}/{path.name}", Body=path.read_bytes()
            )
    return {fmt: f"{bucket}/{fmt}/*.{fmt}" for fmt in FORMATS}


def single_process(pattern: str, **options) -> list[bytes]:
    storage = options.pop("storage_options", None)
    splits = aiorecords.plan_splits(pattern, storage_options=storage, **options)
    return [
        record
        for split in splits
        for record in aiorecords.read_split(split, storage_options=storage)
    ]


def expected() -> list[bytes]:
    return [record for number in range(FILES) for record in records_of(number)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_read_on_the_cluster_equals_one_process(
    client, local_files: dict[str, str], fmt: str
) -> None:
    bag = aiorecords.dask.read(local_files[fmt], target_bytes=16_384)
    assert bag.npartitions >= FILES
    assert bag.compute() == single_process(local_files[fmt], target_bytes=16_384)
    assert bag.compute() == expected()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_read_from_s3_on_the_cluster(
    client, s3, s3_files: dict[str, str], fmt: str
) -> None:
    # The format named: telling it costs a request per file (tested apart).
    bag = aiorecords.dask.read(s3_files[fmt], storage_options=s3.options, format=fmt)
    assert bag.npartitions >= FILES
    assert bag.compute() == expected()


def test_task_keys_are_deterministic(local_files: dict[str, str]) -> None:
    first = aiorecords.dask.read(local_files["records"], target_bytes=4096)
    second = aiorecords.dask.read(local_files["records"], target_bytes=4096)
    assert first.__dask_keys__() == second.__dask_keys__()
    other = aiorecords.dask.read(local_files["records"], target_bytes=4096, strict=True)
    assert first.__dask_keys__() != other.__dask_keys__()


def test_a_worker_killed_during_a_task_loses_and_doubles_nothing(
    client, tmp_path: Path
) -> None:
    data = [b"record %d " % n * 50 for n in range(3000)]
    path = asyncio.run(build(tmp_path / "damaged.log", "records", data))
    raw = bytearray(Path(path).read_bytes())
    raw[100_000] ^= 0xFF  # damage: the reader calls on_corruption there
    Path(path).write_bytes(bytes(raw))
    marker = tmp_path / "killed"
    pids_before = set(client.run(os.getpid).values())
    bag = aiorecords.dask.read(
        path,
        target_bytes=64 * 1024,
        on_corruption=functools.partial(kill_the_first_time, str(marker)),
    )
    got = bag.compute()
    assert marker.exists(), "no worker was killed"
    assert int(marker.read_text()) in pids_before
    assert got == single_process(path, target_bytes=64 * 1024)
    assert len(got) == len(set(got))


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_gives_one_whole_file_per_partition(
    client, local_files: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    bag = aiorecords.dask.read(
        local_files["records"], target_bytes=1 << 30
    ).repartition(12)
    out = tmp_path / "out"
    out.mkdir()
    names = aiorecords.dask.write(bag, str(out / f"part-*.{fmt}"), format=fmt)
    assert names == [str(out / f"part-{n:02d}.{fmt}") for n in range(12)]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(n) for n in names)
    assert aiorecords.dask.read(str(out / f"part-*.{fmt}")).compute() == expected()
    # Written again (a task run twice), the files are replaced, not doubled.
    aiorecords.dask.write(bag, str(out / f"part-*.{fmt}"), format=fmt)
    assert aiorecords.dask.read(str(out / f"part-*.{fmt}")).compute() == expected()


@pytest.mark.parametrize("fmt", ["records", "capture"])
def test_write_to_s3(client, s3, local_files: dict[str, str], fmt: str) -> None:
    bucket = s3.bucket(f"out-{fmt}")
    bag = aiorecords.dask.read(local_files["tfrecord"], target_bytes=1 << 30)
    bag = bag.repartition(5)
    names = aiorecords.dask.write(
        bag, f"{bucket}/part-*.x", format=fmt, storage_options=s3.options
    )
    assert sorted(s3.keys(bucket)) == [
        name.removeprefix(f"{bucket}/") for name in names
    ]
    back = aiorecords.dask.read(f"{bucket}/part-*.x", storage_options=s3.options)
    assert back.compute() == expected()
    assert s3.unfinished_uploads(bucket) == []


def decode(record: bytes) -> dict:
    import json

    row = json.loads(record)
    return None if row["n"] == 0 else row


def test_read_dataframe_and_a_groupby(client, local_files: dict[str, str]) -> None:
    meta = pd.DataFrame(
        {
            "file": pd.Series(dtype="int64"),
            "n": pd.Series(dtype="int64"),
            "kind": pd.Series(dtype="object"),
        }
    )
    frame = aiorecords.dask.read_dataframe(
        local_files["archive"], decode=decode, meta=meta, target_bytes=8192
    )
    assert frame.npartitions >= FILES
    counts = frame.groupby("kind").n.count().compute().sort_index()
    rows = [decode(r) for r in expected()]
    local = pd.DataFrame([r for r in rows if r is not None])
    assert counts.to_dict() == local.groupby("kind").n.count().sort_index().to_dict()
    assert len(frame) == len(local)
