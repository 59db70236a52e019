"""LevelDB logs read from fsspec file systems: fsspec's memory file system
(synchronous, read by a worker thread) and its HTTP file system against a
real server on loopback (asynchronous, read on the event loop), beside the
same bytes read from a local file."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from aiorecords import RecordsReader, RecordsWriter, SkippedRegion
from aiorecords.errors import ClosedError, StorageError
from aiorecords.records import split

from .conftest import Objects

BLOCK = 32 * 1024


def make_records(seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [
        rng.randbytes(rng.choice((0, 1, 100, 5_000, 40_000, 200_000)))
        for _ in range(120)
    ]


async def log_bytes(tmp_path: Path, records: list[bytes]) -> bytes:
    path = tmp_path / "local.log"
    async with RecordsWriter(str(path)) as writer:
        await writer.write_many(records)
    return path.read_bytes()


async def read_all(
    source: str, **options: object
) -> tuple[list[bytes], list[SkippedRegion]]:
    skipped: list[SkippedRegion] = []
    async with RecordsReader(source, on_corruption=skipped.append, **options) as reader:  # type: ignore[arg-type]
        records = [record async for record in reader]
    return records, skipped


@pytest.mark.parametrize("read_size", [BLOCK, 3 * BLOCK, 4 * 1024 * 1024])
async def test_a_log_reads_the_same_over_http(
    http_objects: Objects, tmp_path: Path, read_size: int
) -> None:
    records = make_records()
    data = await log_bytes(tmp_path, records)
    url = http_objects.put("events.log", data)
    got, skipped = await read_all(url, remote_read_size=read_size)
    assert got == records
    assert skipped == []
    # Whole ranges of the asked size, each asked once (a few at a time:
    # the next ones are read ahead).
    starts = sorted(start for _, start, _ in http_objects.ranges)
    assert starts == list(range(0, len(data), read_size))


async def test_a_log_reads_the_same_from_memory(memory_fs, tmp_path: Path) -> None:
    records = make_records(8)
    data = await log_bytes(tmp_path, records)
    memory_fs.pipe_file("/logs/a.log", data)
    assert (await read_all("memory://logs/a.log", remote_read_size=BLOCK))[0] == records
    # The seed's openfile_filesys: a file system instance and a path on it.
    got, _ = await read_all("/logs/a.log", fs=memory_fs)
    assert got == records


async def test_a_file_url_is_the_local_file(tmp_path: Path) -> None:
    records = make_records(9)
    await log_bytes(tmp_path, records)
    url = (tmp_path / "local.log").as_uri()
    async with RecordsReader(url) as reader:
        assert reader.name == str(tmp_path / "local.log")
        assert [record async for record in reader] == records


@pytest.mark.parametrize(
    "damage",
    ["truncated mid-record", "a bit flipped", "zeros at the end", "garbage after"],
)
async def test_damaged_objects_read_as_the_damaged_file_does(
    http_objects: Objects, tmp_path: Path, damage: str
) -> None:
    data = bytearray(await log_bytes(tmp_path, make_records(10)))
    if damage == "truncated mid-record":
        data = data[: len(data) * 2 // 3 + 5]
    elif damage == "a bit flipped":
        data[len(data) // 2] ^= 0x10
    elif damage == "zeros at the end":
        data += bytes(50_000)
    else:
        data += random.Random(1).randbytes(70_000)
    local = tmp_path / "damaged.log"
    local.write_bytes(bytes(data))
    url = http_objects.put("damaged.log", bytes(data))
    remote = await read_all(url, remote_read_size=2 * BLOCK)
    assert remote == await read_all(str(local))
    if damage == "a bit flipped":
        assert remote[1], "the damage was reported"


async def test_a_missing_object_is_a_storage_error_naming_it(
    http_objects: Objects, memory_fs
) -> None:
    for url in (f"{http_objects.url}/nothing.log", "memory://no/such.log"):
        with pytest.raises(StorageError) as raised:
            await read_all(url)
        assert url in str(raised.value)


async def test_a_server_gone_mid_read_is_a_storage_error_after_whole_records(
    http_objects: Objects, tmp_path: Path
) -> None:
    records = make_records(11)
    url = http_objects.put("cut.log", await log_bytes(tmp_path, records))
    http_objects.fail_after = 3
    got: list[bytes] = []

    async def read_into_got() -> None:
        async with RecordsReader(url, remote_read_size=BLOCK) as reader:
            async for record in reader:
                got.append(record)

    with pytest.raises(StorageError) as raised:
        await read_into_got()
    assert url in str(raised.value)
    assert got == records[: len(got)], "only whole records, in order"
    assert len(got) < len(records)


@pytest.mark.parametrize("status", [429, 503])
async def test_a_store_that_says_slow_down_is_a_throttling_error(
    http_objects: Objects, tmp_path: Path, status: int
) -> None:
    from aiorecords import Archive, CaptureFile
    from aiorecords.errors import StorageThrottled

    url = http_objects.put("busy.log", await log_bytes(tmp_path, make_records(9)))
    http_objects.refuse_with = status
    with pytest.raises(StorageThrottled) as raised:
        await read_all(url)
    assert url in str(raised.value)
    assert raised.value.errno == 16
    assert isinstance(raised.value, StorageError)
    for other in (CaptureFile(url, encoding=None), Archive.open(url)):
        with pytest.raises(StorageThrottled, match="slow down"):
            await other


def test_s3s_slow_down_is_a_throttling_error() -> None:
    # What s3fs raises for S3's SlowDown once its retries run out (moto
    # never throttles): its translation of botocore's error, chained to it.
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    from aiorecords._remote import failure
    from aiorecords.errors import StorageThrottled

    slow_down = ClientError(
        {
            "Error": {
                "Code": "SlowDown",
                "Message": "Please reduce your request rate.",
            },
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },
        "GetObject",
    )
    try:
        raise translate_boto_error(slow_down) from slow_down
    except OSError as raised:
        error = failure(raised, "read", "s3://bucket/key")
    assert isinstance(error, StorageThrottled)
    assert "s3://bucket/key" in str(error)
    not_found = ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
    assert not isinstance(
        failure(translate_boto_error(not_found), "read", "s3://b/k"), StorageThrottled
    )


async def test_split_ranges_of_a_url_are_those_of_the_file(
    http_objects: Objects, tmp_path: Path
) -> None:
    records = make_records(12)
    data = await log_bytes(tmp_path, records)
    url = http_objects.put("split.log", data)
    ranges = await split(url, 5)
    assert ranges == await split(str(tmp_path / "local.log"), 5)
    got = []
    for start, stop in ranges:
        async with RecordsReader(url, start=start, stop=stop) as reader:
            got += [record async for record in reader]
    assert got == records


async def test_follow_is_refused_on_object_storage(http_objects: Objects) -> None:
    url = http_objects.put("f.log", b"")
    reader = RecordsReader(url)
    with pytest.raises(ValueError, match="follow"):
        async for _ in reader.follow():
            pass
    await reader.close()


async def test_no_record_is_handed_out_after_close(
    http_objects: Objects, tmp_path: Path
) -> None:
    # Records decoded before close() stay unread: every call after it
    # raises, for an object in storage as for a local file.
    records = make_records(13)
    url = http_objects.put("c.log", await log_bytes(tmp_path, records))
    for source in (url, str(tmp_path / "local.log")):
        reader = RecordsReader(source, remote_read_size=BLOCK)
        async with reader:
            assert await reader.read() == records[0]
        with pytest.raises(ClosedError):
            await reader.read()
        with pytest.raises(ClosedError):
            await reader.tell()
        with pytest.raises(ClosedError):
            async for _ in reader:
                pass


# ----------------------------------------------------------------------
# A real S3 protocol server (moto), through s3fs in async mode


async def test_a_log_reads_the_same_from_s3(s3, tmp_path: Path) -> None:
    records = make_records(14)
    data = await log_bytes(tmp_path, records)
    url = s3.put("logs/events.log", data)
    got, skipped = await read_all(
        url, storage_options=s3.options, remote_read_size=2 * BLOCK
    )
    assert got == records
    assert skipped == []
    ranges = await split(url, 3, storage_options=s3.options)
    assert ranges == await split(str(tmp_path / "local.log"), 3)


async def test_a_missing_s3_object_is_a_storage_error(s3) -> None:
    url = s3.put("here.log", b"")
    missing = url.replace("here.log", "not-here.log")
    with pytest.raises(StorageError) as raised:
        await read_all(missing, storage_options=s3.options)
    assert missing in str(raised.value)


async def test_s3_stopped_mid_read(s3_own, tmp_path: Path) -> None:
    records = make_records(15)
    url = s3_own.put("cut.log", await log_bytes(tmp_path, records))
    options = s3_own.options_failing_fast
    got: list[bytes] = []

    async def read_until_stopped() -> None:
        async with RecordsReader(
            url, storage_options=options, remote_read_size=BLOCK
        ) as reader:
            async for record in reader:
                got.append(record)
                if len(got) == 5:
                    s3_own.server.stop()

    with pytest.raises(StorageError) as raised:
        await read_until_stopped()
    assert url in str(raised.value)
    assert got == records[: len(got)]
    assert len(got) < len(records)


async def test_readers_in_one_loop_share_one_client(
    http_objects: Objects, tmp_path: Path
) -> None:
    # A file system (and its client session) per loop, not per reader: the
    # second reader's requests go over the first one's connection.
    records = make_records(16)[:3]  # one range: one request at a time
    url = http_objects.put("shared.log", await log_bytes(tmp_path, records))
    for _ in range(3):
        assert (await read_all(url))[0] == records
    assert len(http_objects.connections) == 1


async def test_reading_ahead_survives_cancellations_and_seeks(
    http_objects: Objects, tmp_path: Path
) -> None:
    # Cancel reads at random moments (the requests in flight go on and
    # serve the next read), seek about (what was read ahead is dropped),
    # then close with requests in flight: every record is the right one.
    records = make_records(17)
    data = await log_bytes(tmp_path, records)
    url = http_objects.put("ahead.log", data)
    offsets = []
    async with RecordsReader(str(tmp_path / "local.log")) as local:
        offsets = [await local.tell()]
        for _ in records:
            await local.read()
            offsets.append(await local.tell())
    rng = random.Random(3)
    reader = RecordsReader(url, remote_read_size=BLOCK)
    async with reader:
        index = 0
        for _ in range(300):
            if rng.random() < 0.1:
                index = rng.randrange(len(records))
                await reader.seek(offsets[index])
            task = asyncio.ensure_future(reader.read())
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            if rng.random() < 0.3:
                task.cancel()
            try:
                record = await task
            except asyncio.CancelledError:
                continue  # nothing lost: the next read goes on from here
            except EOFError:
                index = 0
                await reader.seek(0)
                continue
            assert record == records[index]
            index += 1
    assert http_objects.ranges, "read over HTTP"


async def test_what_storage_cannot_do_yet_is_refused_clearly(tmp_path: Path) -> None:
    # Never a local file named "s3:/...": a typed error naming the URL.
    from aiorecords import CaptureFile
    from aiorecords.errors import StorageNotSupported

    url = "s3://bucket/x"
    with pytest.raises(StorageNotSupported, match="s3://bucket/x"):
        RecordsWriter(url, append=True)
    with pytest.raises(StorageNotSupported, match="capture file"):
        await CaptureFile(url, to_write=True)
    assert not Path("s3:").exists()
