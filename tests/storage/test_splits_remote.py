"""The split contract on object storage (the S3 test server) and HTTP:
every format planned, its format told from its first bytes, read apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from splits.build import FORMATS, build, sample

import aiorecords
from aiorecords import FileChangedError, aplan_splits, aread_split


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remote-splits")
    made = {}
    for fmt in FORMATS:
        made[fmt] = Path(asyncio.run(build(root / f"data.{fmt}", fmt, sample(120))))
    return made


async def test_every_format_planned_and_read_from_s3(
    s3, files: dict[str, Path]
) -> None:
    bucket = s3.bucket("splits")
    client = s3.client()
    for fmt, path in files.items():
        client.put_object(
            Bucket="splits", Key=f"{fmt}/{path.name}", Body=path.read_bytes()
        )
    client.put_object(  # the TFRecord file's index goes with it
        Bucket="splits",
        Key="tfrecord/data.tfindex",
        Body=(path.parent / "data.tfindex").read_bytes(),
    )
    for fmt in FORMATS:
        splits = await aplan_splits(
            f"{bucket}/{fmt}/", target_bytes=30_000, storage_options=s3.options
        )
        assert {split.format for split in splits} == {fmt}
        assert len(splits) > 1
        assert all(split.path.startswith(f"{bucket}/{fmt}/data.") for split in splits)
        got = [
            record
            for split in splits
            async for record in aread_split(split, storage_options=s3.options)
        ]
        assert got == sample(120), fmt


async def test_an_object_replaced_after_planning_is_refused(s3) -> None:
    bucket = s3.bucket("replaced")
    client = s3.client()
    client.put_object(Bucket="replaced", Key="a.log", Body=_log([b"one", b"two"]))
    [split] = await aplan_splits(f"{bucket}/a.log", storage_options=s3.options)
    client.put_object(Bucket="replaced", Key="a.log", Body=_log([b"uno", b"dos"]))
    with pytest.raises(FileChangedError) as raised:
        [r async for r in aread_split(split, storage_options=s3.options)]
    assert raised.value.path == f"{bucket}/a.log"


def _log(records: list[bytes]) -> bytes:
    from aiorecords.records._log import LogEncoder

    out = bytearray()
    encoder = LogEncoder()
    for record in records:
        encoder.encode(record, out)
    return bytes(out)


async def test_a_split_over_http(http_objects, files: dict[str, Path]) -> None:
    url = http_objects.put("data.capture", files["capture"].read_bytes())
    splits = await aplan_splits(url, target_bytes=20_000)
    assert len(splits) > 1
    got = [record for split in splits async for record in aread_split(split)]
    assert got == sample(120)
    # And synchronously (the library's loop thread), as a worker reads.
    assert [r for split in splits for r in aiorecords.read_split(split)] == got
