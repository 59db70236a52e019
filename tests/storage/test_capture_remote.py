"""Capture files read from fsspec file systems: HTTP against a real server
on loopback, a real S3 protocol server (moto), and fsspec's memory file
system; files of aiorecords' own layout and files CaptureFile 1.2.0 wrote,
beside the same bytes read from a local file."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from CaptureFile import CaptureFile as PeerCaptureFile

from aiorecords import CaptureFile
from aiorecords.errors import (
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    InvalidCaptureFile,
    StorageError,
    StorageNotSupported,
)

from .conftest import Objects

MiB = 1024 * 1024


def make_records(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        b"%d:" % n + rng.randbytes(rng.choice((0, 10, 100, 3000))) for n in range(count)
    ]


async def ours(path: Path, records: list[bytes], compression: str = "zstd") -> bytes:
    async with CaptureFile(
        str(path),
        to_write=True,
        force_new_empty_file=True,
        encoding=None,
        compression=compression,  # type: ignore[arg-type]
    ) as cf:
        for n, record in enumerate(records, 1):
            await cf.add_record(record)
            if n % 7_000 == 0:
                await cf.commit()
        await cf.set_metadata(b"the metadata")
        await cf.commit()
    return path.read_bytes()


def theirs(path: Path, records: list[bytes]) -> bytes:
    peer = PeerCaptureFile(
        str(path), to_write=True, force_new_empty_file=True, encoding=None
    )
    for n, record in enumerate(records, 1):
        peer.add_record(record)
        if n % 7_000 == 0:
            peer.commit()
    peer.set_metadata(b"the metadata")
    peer.commit()
    peer.close()
    return path.read_bytes()


async def same_as_local(source: str, local: Path, **options: object) -> None:
    rng = random.Random(3)
    async with (
        CaptureFile(source, encoding=None, **options) as remote,  # type: ignore[arg-type]
        CaptureFile(str(local), encoding=None) as here,
    ):
        count = here.record_count()
        assert remote.record_count() == count
        assert await remote.get_metadata() == await here.get_metadata()
        assert [r async for r in remote] == [r async for r in here]
        for n in [1, count, *rng.sample(range(1, count + 1), 200)]:
            assert await remote.record_at(n) == await here.record_at(n)
        assert (
            await remote[count // 3 : count // 3 + 500]
            == await here[count // 3 : count // 3 + 500]
        )
        with pytest.raises(IndexError):
            await remote.record_at(count + 1)


@pytest.mark.parametrize("writer", ["zstd", "zlib", "CaptureFile 1.2.0"])
async def test_a_capture_file_reads_the_same_over_http(
    http_objects: Objects, tmp_path: Path, writer: str
) -> None:
    local = tmp_path / "c.capture"
    records = make_records(1, 30_000)
    if writer == "CaptureFile 1.2.0":
        data = theirs(local, records)
    else:
        data = await ours(local, records, writer)
    url = http_objects.put("c.capture", data)
    await same_as_local(url, local)


async def test_capture_files_read_the_same_from_s3(s3, tmp_path: Path) -> None:
    records = make_records(2, 25_000)
    for writer in ("ours", "theirs"):
        local = tmp_path / f"{writer}.capture"
        data = (
            await ours(local, records) if writer == "ours" else theirs(local, records)
        )
        url = s3.put(f"captures/{writer}.capture", data)
        await same_as_local(url, local, storage_options=s3.options)


async def test_memory_and_a_given_fs(memory_fs, tmp_path: Path) -> None:
    local = tmp_path / "c.capture"
    memory_fs.pipe_file("/c/c.capture", await ours(local, make_records(3, 9_000)))
    await same_as_local("memory://c/c.capture", local)
    await same_as_local("/c/c.capture", local, fs=memory_fs)


async def test_record_at_costs_the_index_path_cold_and_nothing_warm(
    http_objects: Objects, tmp_path: Path
) -> None:
    # A file of several MiB: a cold lookup reads the ranges of its index
    # path and data block, a few; the same lookup again reads none.
    local = tmp_path / "big.capture"
    records = [random.Random(n).randbytes(200) for n in range(60_000)]
    data = await ours(local, records)
    assert len(data) > 8 * MiB
    url = http_objects.put("big.capture", data)
    async with CaptureFile(url, encoding=None) as cf:
        opened = len(http_objects.ranges)
        assert opened <= 2  # the first page, the master nodes
        costs = []
        for n in (17, 31_000, 59_999, 45_000):
            before = len(http_objects.ranges)
            assert await cf.record_at(n) == records[n - 1]
            cold = len(http_objects.ranges) - before
            costs.append(cold)
            assert await cf.record_at(n) == records[n - 1]
            assert len(http_objects.ranges) == before + cold, "warm: no request"
        assert max(costs) <= 4, costs
        assert sum(costs) >= 2, costs
    assert all(end - start <= MiB for _, start, end in http_objects.ranges)


async def test_writing_on_storage_is_refused(
    http_objects: Objects, memory_fs, tmp_path: Path
) -> None:
    local = tmp_path / "c.capture"
    url = http_objects.put("c.capture", await ours(local, make_records(4, 10)))
    for kwargs in ({"to_write": True}, {"force_new_empty_file": True}):
        with pytest.raises(StorageNotSupported, match="read-only"):
            CaptureFile(url, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(StorageNotSupported):
            CaptureFile("/x.capture", fs=memory_fs, **kwargs)  # type: ignore[arg-type]
    assert not memory_fs.exists("/x.capture")
    cf = CaptureFile(url, encoding=None)
    with pytest.raises(StorageNotSupported):
        await cf.open(to_write=True)
    async with cf:
        with pytest.raises(CaptureFileNotOpenForWrite):
            await cf.add_record(b"x")
        with pytest.raises(StorageNotSupported, match="refresh"):
            cf.follow()


async def test_missing_damaged_and_truncated_objects(
    http_objects: Objects, tmp_path: Path
) -> None:
    url = f"{http_objects.url}/nothing.capture"
    with pytest.raises(StorageError) as raised:
        await CaptureFile(url)
    assert url in str(raised.value)
    local = tmp_path / "c.capture"
    data = await ours(local, make_records(5, 20_000))
    # Cut short of its last commit: refused, naming the URL, as locally.
    cut = http_objects.put("cut.capture", data[: len(data) // 2])
    with pytest.raises(InvalidCaptureFile) as invalid:
        await CaptureFile(cut)
    assert invalid.value.path == cut
    # A damaged data block: the same error at the same record as locally.
    damaged = bytearray(data)
    damaged[len(data) // 3] ^= 0x20
    (tmp_path / "d.capture").write_bytes(bytes(damaged))
    url = http_objects.put("d.capture", bytes(damaged))

    async def outcome(source: str) -> object:
        async with CaptureFile(source, encoding=None) as cf:
            got = 0
            try:
                async for _ in cf:
                    got += 1
            except InvalidCaptureFile as error:
                return got, type(error), error.offset, error.path == source
            return got

    assert await outcome(url) == await outcome(str(tmp_path / "d.capture"))


async def test_refresh_sees_a_replaced_object(memory_fs, tmp_path: Path) -> None:
    local = tmp_path / "c.capture"
    records = make_records(6, 5_000)
    memory_fs.pipe_file("/r/c.capture", await ours(local, records[:2_000]))
    async with CaptureFile("memory://r/c.capture", encoding=None) as cf:
        assert cf.record_count() == 2_000
        assert await cf.record_at(1_500) == records[1_499]
        memory_fs.pipe_file("/r/c.capture", await ours(local, records))
        await cf.refresh()
        assert cf.record_count() == 5_000
        assert await cf.record_at(4_999) == records[4_998]
        assert [r async for r in cf] == records


async def test_a_server_gone_mid_stream_is_a_typed_error(
    http_objects: Objects, tmp_path: Path
) -> None:
    local = tmp_path / "c.capture"
    records = [random.Random(n).randbytes(500) for n in range(60_000)]
    url = http_objects.put("c.capture", await ours(local, records))
    got: list[bytes] = []

    async def stream(cf: CaptureFile) -> None:
        async for record in cf:
            got.append(record)

    async with CaptureFile(url, encoding=None) as cf:
        http_objects.fail_after = len(http_objects.ranges) + 1
        with pytest.raises(StorageError) as raised:
            await stream(cf)
    assert url in str(raised.value)
    assert got == records[: len(got)]
    assert len(got) < len(records)


async def test_many_tasks_with_cancellations_and_a_close_at_random(
    http_objects: Objects, tmp_path: Path
) -> None:
    local = tmp_path / "c.capture"
    records = [random.Random(n).randbytes(300) for n in range(40_000)]
    url = http_objects.put("c.capture", await ours(local, records))
    rng = random.Random(7)
    for trial in range(10):
        cf = await CaptureFile(url, encoding=None)
        answers: list[tuple[int, bytes]] = []

        async def worker(
            seed: int, cf: CaptureFile = cf, answers: list = answers
        ) -> None:
            local_rng = random.Random(seed)
            for _ in range(8):
                n = local_rng.randrange(1, len(records) + 1)
                if local_rng.random() < 0.7:
                    answers.append((n, await cf.record_at(n)))
                else:
                    async for record in cf.record_generator(n):
                        answers.append((n, record))
                        n += 1
                        if n % 3_000 == 0:
                            break

        tasks = [asyncio.ensure_future(worker(trial * 10 + k)) for k in range(6)]
        for _ in range(rng.randrange(60)):
            await asyncio.sleep(0)
        cancelled = set()
        for task in tasks:
            if rng.random() < 0.3:
                task.cancel()
                cancelled.add(task)
        if rng.random() < 0.5:
            await cf.close()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            # Only the tasks this test cancelled end cancelled; the others
            # end, or meet the close.
            if isinstance(outcome, asyncio.CancelledError):
                assert task in cancelled
            else:
                assert outcome is None or isinstance(outcome, CaptureFileNotOpen), repr(
                    outcome
                )
        await cf.close()
        for n, record in answers:
            assert record == records[n - 1], n
        with pytest.raises(CaptureFileNotOpen):
            await cf.record_at(1)
