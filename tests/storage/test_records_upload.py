"""LevelDB logs written to object storage: through a real S3 protocol server
(moto, multipart uploads and conditional creates) and fsspec's memory file
system, beside the local writer's bytes; and whole files uploaded."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest

from aiorecords import CaptureFile, RecordsReader, RecordsWriter, _io, upload
from aiorecords._upload import PART_SIZE
from aiorecords.errors import (
    ClosedError,
    FileChangedError,
    StorageError,
    StorageNotSupported,
    WriterFailedError,
)

from .conftest import S3
from .storm import storm
from .test_records_remote import log_bytes, make_records

_names = itertools.count()


def new_bucket(s3: S3) -> str:
    return s3.bucket(f"upload-{next(_names)}-{random.randrange(10**8)}")


def big_records(seed: int, total: int) -> list[bytes]:
    """Records of every framing case (small, fragmented, empty) adding up to
    about ``total`` bytes."""
    rng = random.Random(seed)
    records = make_records(seed)
    size = sum(map(len, records))
    while size < total:
        record = rng.randbytes(rng.choice((0, 7, 32_761, 100_000, 300_000)))
        records.append(record)
        size += len(record)
    return records


async def read_back(url: str, **options: object) -> list[bytes]:
    async with RecordsReader(url, **options) as reader:  # type: ignore[arg-type]
        return [record async for record in reader]


@pytest.mark.parametrize("size", [0, 100_000, 2 * PART_SIZE + 12345])
@pytest.mark.parametrize("pad", [True, False])
async def test_a_log_on_s3_has_the_local_writers_bytes(
    s3: S3, tmp_path: Path, size: int, pad: bool
) -> None:
    # One put for a log under a part, a multipart upload over it; either
    # way, byte for byte what the local writer (byte-exact with LevelDB)
    # writes, and nothing left begun.
    records = big_records(size, size) if size else []
    local = tmp_path / "local.log"
    async with RecordsWriter(str(local), pad_last_block=pad) as writer:
        await writer.write_many(records)
    url = f"{new_bucket(s3)}/logs/events.log"
    async with RecordsWriter(url, pad_last_block=pad, storage_options=s3.options) as w:
        await w.write_many(records)
    assert s3.keys(url) == {"logs/events.log": local.read_bytes()}
    assert s3.unfinished_uploads(url) == []
    assert await read_back(url, storage_options=s3.options) == records


async def test_nothing_is_visible_before_the_close(s3: S3) -> None:
    bucket = new_bucket(s3)
    url = f"{bucket}/events.log"
    records = big_records(2, PART_SIZE + 1)
    writer = RecordsWriter(url, storage_options=s3.options, buffer_size=64 * 1024)
    await writer.write_many(records)
    await writer.flush()
    assert len(s3.unfinished_uploads(url)) == 1  # a part is sent, no object yet
    assert s3.keys(url) == {}
    readers_view = RecordsReader(url, storage_options=s3.options)
    with pytest.raises(StorageError, match=r"events\.log"):
        await readers_view.read()
    await readers_view.close()
    await writer.close()
    assert await read_back(url, storage_options=s3.options) == records
    assert s3.unfinished_uploads(url) == []


async def test_an_existing_object_is_replaced_only_when_asked(s3: S3) -> None:
    url = f"{new_bucket(s3)}/events.log"
    key = url.rsplit("/", 1)[1]
    s3.client().put_object(Bucket=url[5:].split("/")[0], Key=key, Body=b"theirs")
    writer = RecordsWriter(url, storage_options=s3.options)
    with pytest.raises(FileExistsError) as raised:
        await writer.write(b"mine")
    assert url in str(raised.value)
    await writer.close()
    assert s3.keys(url) == {key: b"theirs"}
    with pytest.raises(StorageNotSupported, match="appended"):
        RecordsWriter(url, append=True, storage_options=s3.options)
    async with RecordsWriter(url, replace=True, storage_options=s3.options) as w:
        await w.write(b"mine")
    assert await read_back(url, storage_options=s3.options) == [b"mine"]


@pytest.mark.parametrize("size", [10, PART_SIZE + 10])
async def test_of_two_writers_creating_one_name_one_wins_whole(
    s3: S3, size: int
) -> None:
    # Both find the name free; the second to close gets FileExistsError
    # (S3's conditional create, If-None-Match) and publishes nothing.
    url = f"{new_bucket(s3)}/race.log"
    first = RecordsWriter(url, storage_options=s3.options)
    second = RecordsWriter(url, storage_options=s3.options)
    await first.write(b"a" * size)
    await second.write(b"b" * size)
    await first.close()
    with pytest.raises(FileExistsError):
        await second.close()
    assert await read_back(url, storage_options=s3.options) == [b"a" * size]
    assert s3.unfinished_uploads(url) == []
    with pytest.raises(ClosedError):
        await second.write(b"more")


async def test_sync_says_the_close_is_the_commit(s3: S3) -> None:
    url = f"{new_bucket(s3)}/events.log"
    async with RecordsWriter(url, storage_options=s3.options) as writer:
        await writer.write(b"one")
        with pytest.raises(StorageNotSupported, match="close"):
            await writer.sync()
        await writer.write(b"two")  # the writer goes on
    assert await read_back(url, storage_options=s3.options) == [b"one", b"two"]


async def test_an_error_in_the_block_still_publishes_what_was_written(
    s3: S3,
) -> None:
    # As with a local file: what write() accepted is in the log.
    url = f"{new_bucket(s3)}/events.log"

    async def write_then_fail() -> None:
        async with RecordsWriter(url, storage_options=s3.options) as writer:
            await writer.write(b"kept")
            raise KeyError

    with pytest.raises(KeyError):
        await write_then_fail()
    assert await read_back(url, storage_options=s3.options) == [b"kept"]


async def test_a_server_gone_mid_upload_is_a_storage_error_and_no_object(
    s3_own: S3,
) -> None:
    url = f"{new_bucket(s3_own)}/cut.log"
    options = s3_own.options_failing_fast
    writer = RecordsWriter(url, storage_options=options, buffer_size=64 * 1024)
    await writer.write(b"x" * 1000)
    await writer.flush()
    s3_own.server.stop()  # type: ignore[attr-defined]
    with pytest.raises(StorageError) as raised:
        await writer.write_many(big_records(3, PART_SIZE + 1))
    assert url in str(raised.value)
    with pytest.raises(WriterFailedError):
        await writer.write(b"after")
    await writer.close()  # discards; raises nothing more


async def test_cancelled_writers_lose_no_acknowledged_record(s3: S3) -> None:
    # Many tasks write to one writer; some are cancelled at random points
    # (mid-part), and close() comes from yet another task while they run.
    # Every write that returned is in the object, each task's in its order,
    # and nothing else but writes that were under way when cancelled.
    rng = random.Random(11)
    url = f"{new_bucket(s3)}/storm.log"
    writer = RecordsWriter(url, storage_options=s3.options, buffer_size=256 * 1024)
    acknowledged: dict[bytes, int] = {}  # record -> its task
    attempted: set[bytes] = set()
    record_size = 60_000

    async def one_task(task: int) -> None:
        for index in itertools.count():
            record = f"{task}:{index}:".encode().ljust(record_size, b".")
            attempted.add(record)
            try:
                await writer.write(record)
            except ClosedError:
                return
            acknowledged[record] = task

    target = 2 * PART_SIZE // record_size  # parts done, and one under way
    tasks = await storm(
        one_task,
        workers=8,
        enough=lambda: len(acknowledged) >= target,
        close=writer.close,
        rng=rng,
        cancel_rate=0.02,
    )
    got = await read_back(url, storage_options=s3.options)
    assert len(got) == len(set(got))
    assert set(acknowledged) <= set(got) <= attempted
    for task in range(tasks):
        mine = [r for r in got if r.startswith(f"{task}:".encode())]
        numbers = [int(r.split(b":")[1]) for r in mine]
        assert numbers == sorted(numbers)
    assert s3.unfinished_uploads(url) == []


# ----------------------------------------------------------------------
# fsspec's memory file system (synchronous: worker-thread hops)


async def test_a_log_on_a_synchronous_file_system(memory_fs, tmp_path: Path) -> None:
    records = big_records(4, PART_SIZE + 1000)
    data = await log_bytes(tmp_path, records)
    async with RecordsWriter("memory://logs/a.log") as writer:
        await writer.write_many(records)
    assert memory_fs.cat_file("/logs/a.log") == data
    async with RecordsWriter("/logs/b.log", fs=memory_fs) as writer:
        await writer.write_many(records)
    assert memory_fs.cat_file("/logs/b.log") == data
    with pytest.raises(FileExistsError):
        async with RecordsWriter("memory://logs/a.log") as writer:
            await writer.write(b"x")
    assert memory_fs.cat_file("/logs/a.log") == data


# ----------------------------------------------------------------------
# Whole files uploaded: how a capture file gets to object storage


async def test_an_uploaded_capture_file_reads_as_the_local_one(
    s3: S3, tmp_path: Path
) -> None:
    path = tmp_path / "events.capture"
    async with CaptureFile(str(path), to_write=True, force_new_empty_file=True) as cf:
        for index in range(20_000):
            await cf.add_record(f"event {index} ".ljust(700, "x"))
        await cf.set_metadata(b"meta")
        await cf.commit()
    url = f"{new_bucket(s3)}/events.capture"
    assert await upload(path, url, storage_options=s3.options) == path.stat().st_size
    assert s3.keys(url) == {"events.capture": path.read_bytes()}
    remote = await CaptureFile(url, storage_options=s3.options)
    try:
        assert remote.record_count() == 20_000
        assert await remote.record_at(12_345) == f"event {12_344} ".ljust(700, "x")
        assert await remote.get_metadata() == b"meta"
    finally:
        await remote.close()
    with pytest.raises(FileExistsError):
        await upload(path, url, storage_options=s3.options)
    await upload(
        tmp_path / "events.capture", url, storage_options=s3.options, replace=True
    )
    assert s3.unfinished_uploads(url) == []


async def test_a_file_written_to_during_its_upload_is_not_published(
    s3: S3, tmp_path: Path
) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(random.Random(5).randbytes(2 * PART_SIZE + 5))

    def writer_strikes(operation: str, name: str, offset: int, length: int) -> None:
        # Another process appending, just as the second part is read.
        if operation == "pread" and name == str(path) and offset == PART_SIZE:
            with path.open("ab") as other:
                other.write(b"more")

    url = f"{new_bucket(s3)}/growing.log"
    _io.add_observer(writer_strikes)
    try:
        with pytest.raises(FileChangedError, match=r"growing\.log"):
            await upload(path, url, storage_options=s3.options)
    finally:
        _io.remove_observer(writer_strikes)
    assert s3.keys(url) == {}
    assert s3.unfinished_uploads(url) == []


async def test_a_cancelled_upload_publishes_nothing(s3: S3, tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(bytes(3 * PART_SIZE))
    url = f"{new_bucket(s3)}/big.log"
    reached = asyncio.Event()

    def second_part(operation: str, name: str, offset: int, length: int) -> None:
        if operation == "pread" and name == str(path) and offset == 2 * PART_SIZE:
            loop.call_soon_threadsafe(reached.set)

    loop = asyncio.get_running_loop()
    _io.add_observer(second_part)
    try:
        uploading = asyncio.create_task(upload(path, url, storage_options=s3.options))
        await reached.wait()
        uploading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await uploading
    finally:
        _io.remove_observer(second_part)
    assert s3.keys(url) == {}
    assert s3.unfinished_uploads(url) == []


_KILLED_WRITER = """
import asyncio, json, sys
from aiorecords import RecordsWriter

async def main():
    url, options, size = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    writer = RecordsWriter(url, storage_options=options)
    await writer.write_many(b"r" * 50_000 for _ in range(size // 50_000))
    await writer.flush()
    print("parts sent", flush=True)
    await asyncio.Event().wait()  # killed here, before any close

asyncio.run(main())
"""


async def test_a_killed_writer_publishes_nothing(s3: S3) -> None:
    # SIGKILL after parts were sent: no object (only the unfinished upload
    # a lifecycle rule reaps), and the name is free for a new writer.
    import json
    import sys

    url = f"{new_bucket(s3)}/killed.log"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WRITER,
        url,
        json.dumps(s3.options),
        str(2 * PART_SIZE),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert await child.stdout.readline() == b"parts sent\n"
    child.kill()
    await child.wait()
    assert s3.keys(url) == {}
    assert len(s3.unfinished_uploads(url)) == 1
    async with RecordsWriter(url, storage_options=s3.options) as writer:
        await writer.write(b"after")
    assert await read_back(url, storage_options=s3.options) == [b"after"]
