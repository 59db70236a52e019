"""Archives read from fsspec file systems: HTTP against a real server on
loopback and a real S3 protocol server (moto), both asynchronous and read on
the event loop, and fsspec's memory file system (synchronous, read by worker
threads), beside the same bytes read from a local file."""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from aiorecords import Archive, ArchiveEntry, SkippedRegion
from aiorecords.archive._format import V1, V2
from aiorecords.errors import (
    ArchiveReadOnly,
    ClosedError,
    CorruptArchiveError,
    StorageError,
    StorageNotSupported,
)

from ..archive.build import Element, archive_bytes
from .conftest import Objects

MiB = 1024 * 1024


def elements(seed: int, count: int = 40, big: int = 0) -> list[Element]:
    """Entries of every codec, names repeating (the newest wins), sizes from
    nothing to ``big`` bytes."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        size = rng.choice((0, 1, 700, 20_000, 300_000, big or 5))
        data = rng.randbytes(size // 2) * 2  # compressible, a little
        codec = rng.choice((None, "gzip", "zstd"))
        data_gzip = codec is None and rng.random() < 0.2
        out.append(
            Element(
                f"dir/{i % 13}.bin",
                gzip.compress(data, mtime=0) if data_gzip else data,
                codec,
                data_gzip,
                timestamp=i,
                comment="c" * rng.randrange(3),
            )
        )
    return out


def facts(entries: list[ArchiveEntry]) -> list[tuple[object, ...]]:
    return [(e.name, e.offset, e.size, e.stored_size, e.compression) for e in entries]


async def same_as_local(source: str, local: Path, **options: object) -> None:
    """Everything read from ``source`` is what the local file gives."""
    async with (
        Archive.open(source, **options) as remote,  # type: ignore[arg-type]
        Archive.open(str(local)) as here,
    ):
        assert remote.path == source or remote.path.endswith(source)
        expected = await here.contents()
        got = await remote.contents()
        assert facts(got) == facts(expected)
        assert (await remote.latest()).keys() == (await here.latest()).keys()
        for entry in got:
            assert await remote.read_bytes(entry) == await here.read_bytes(entry)
        name = expected[-1].name
        assert (await remote.find(name)).offset == (await here.find(name)).offset
        with pytest.raises(KeyError):
            await remote.find("no such name")


async def stream_into(
    archive: Archive,
    entry: ArchiveEntry | str,
    got: bytearray,
    then: Callable[[], object] | None = None,
) -> None:
    """Stream an entry into ``got``; call ``then`` once 1 MiB has come."""
    async with archive.read(entry) as stream:
        async for chunk in stream:
            got += chunk
            if then is not None and len(got) >= MiB:
                then()


@pytest.mark.parametrize("layout", [V1, V2], ids=["v1", "v2"])
async def test_an_archive_reads_the_same_over_http(
    http_objects: Objects, tmp_path: Path, layout
) -> None:
    data = archive_bytes(*elements(1), layout=layout)
    local = tmp_path / "a.archive"
    local.write_bytes(data)
    url = http_objects.put("a.archive", data)
    await same_as_local(url, local)


async def test_an_archive_reads_the_same_from_s3(s3, tmp_path: Path) -> None:
    data = archive_bytes(*elements(2, big=3 * MiB))
    local = tmp_path / "a.archive"
    local.write_bytes(data)
    url = s3.put("archives/a.archive", data)
    await same_as_local(url, local, storage_options=s3.options)


async def test_an_archive_reads_the_same_from_memory_and_a_given_fs(
    memory_fs, tmp_path: Path
) -> None:
    data = archive_bytes(*elements(3))
    local = tmp_path / "a.archive"
    local.write_bytes(data)
    memory_fs.pipe_file("/ar/a.archive", data)
    await same_as_local("memory://ar/a.archive", local)
    # The seed's openfile_filesys: a file system and a path on it.
    await same_as_local("/ar/a.archive", local, fs=memory_fs)


async def test_a_file_url_is_the_local_file(tmp_path: Path) -> None:
    local = tmp_path / "a.archive"
    local.write_bytes(archive_bytes(*elements(4, count=5)))
    async with Archive.open(local.as_uri(), "rdwr") as archive:
        assert archive.path == str(local)
        async with archive.append("new") as out:
            await out.write(b"x")
    async with Archive.open(str(local)) as archive:
        assert (await archive.read_bytes("new")) == b"x"


async def test_a_small_archive_costs_one_request(
    http_objects: Objects, tmp_path: Path
) -> None:
    # Under a range (1 MiB): listed, found and read with one GET; listing
    # again reads nothing (the object does not change until refresh()).
    data = archive_bytes(*elements(5, count=30)[:30])
    assert len(data) < MiB
    url = http_objects.put("small.archive", data)
    async with Archive.open(url) as archive:
        entries = await archive.contents()
        await archive.contents()
        await archive.find(entries[-1].name)
        assert len(http_objects.ranges) == 1
        assert http_objects.ranges[0][1:] == (0, len(data))


async def test_listing_a_large_archive_reads_little_of_it(
    http_objects: Objects, tmp_path: Path
) -> None:
    # Entries of 4 MiB: the listing reads the ranges with headers and
    # trailers, not the payloads; reading one entry reads its ranges.
    rng = random.Random(6)
    big = [Element(f"e{i}", rng.randbytes(4 * MiB)) for i in range(6)]
    data = archive_bytes(*big)
    url = http_objects.put("large.archive", data)
    async with Archive.open(url) as archive:
        entries = await archive.contents()
        assert [e.name for e in entries] == [f"e{i}" for i in reversed(range(6))]
        listed = sum(end - start for _, start, end in http_objects.ranges)
        assert listed <= 16 * MiB < len(data)
        http_objects.ranges.clear()
        assert await archive.read_bytes("e2") == big[2].data
        read = sum(end - start for _, start, end in http_objects.ranges)
        assert 4 * MiB <= read <= 4 * MiB + 3 * 8 * MiB


@pytest.mark.parametrize(
    "damage", ["truncated", "a payload bit", "a header bit", "garbage after"]
)
async def test_damaged_objects_read_as_the_damaged_file_does(
    http_objects: Objects, tmp_path: Path, damage: str
) -> None:
    items = elements(7, count=20)
    data = bytearray(archive_bytes(*items))
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "a payload bit":
        data[len(data) // 2] ^= 0x04
    elif damage == "a header bit":
        data[40] ^= 0x01
    else:
        data += random.Random(2).randbytes(70_000)
    local = tmp_path / "d.archive"
    local.write_bytes(bytes(data))
    url = http_objects.put("d.archive", bytes(data))

    async def everything(source: str) -> tuple[object, ...]:
        regions: list[SkippedRegion] = []
        outcomes: list[object] = []
        async with Archive.open(source) as archive:
            try:
                await archive.contents()
                outcomes.append("listed")
            except CorruptArchiveError as error:
                outcomes.append(("damaged at", error.offset, error.path == source))
            entries = await archive.contents(recover=True, on_corruption=regions.append)
            for entry in entries:
                try:
                    outcomes.append(await archive.read_bytes(entry))
                except CorruptArchiveError as error:
                    outcomes.append(("entry damaged", entry.name, error.path == source))
        return facts(entries), regions, outcomes

    assert await everything(url) == await everything(str(local))


async def test_forged_lengths_read_no_more_than_the_object(
    http_objects: Objects, tmp_path: Path
) -> None:
    # The middle element's trailer is forged, its checksum right, to claim
    # a payload of an exabyte: it is damage (stepped over with recover=True,
    # as in a local file), and no range past the object is asked for.
    items = [Element(name, name.encode() * 3000) for name in ("a", "b", "c")]
    data = bytearray(archive_bytes(*items))
    local = tmp_path / "forged.archive"
    local.write_bytes(bytes(data))
    async with Archive.open(str(local)) as archive:
        c, b, _ = await archive.contents()
    size = V2.trailer_size
    data[c.offset - size : c.offset] = V2.encode_trailer(
        b.offset, 1 << 60, 1 << 60, 1 << 60, b.payload_crc, 0
    )
    local.write_bytes(bytes(data))
    url = http_objects.put("forged.archive", bytes(data))
    for source in (url, str(local)):
        async with Archive.open(source) as archive:
            with pytest.raises(CorruptArchiveError):
                await archive.contents()
            regions: list[SkippedRegion] = []
            entries = await archive.contents(recover=True, on_corruption=regions.append)
            assert [e.name for e in entries] == ["c", "a"]
            assert len(regions) == 1
            assert await archive.read_bytes("c") == b"c" * 3000
    assert all(end <= len(data) for _, _, end in http_objects.ranges)


async def test_a_missing_or_foreign_object_is_a_typed_error_naming_it(
    http_objects: Objects, memory_fs
) -> None:
    for url in (f"{http_objects.url}/nothing.archive", "memory://no/such.archive"):
        with pytest.raises(StorageError) as raised:
            await Archive.open(url)
        assert url in str(raised.value)
    url = http_objects.put("not.archive", b"this is not an archive" * 10)
    with pytest.raises(CorruptArchiveError) as corrupt:
        await Archive.open(url)
    assert corrupt.value.path == url
    url = http_objects.put("empty.archive", b"")
    with pytest.raises(CorruptArchiveError, match="empty"):
        await Archive.open(url)


async def test_an_object_is_never_appended_to_and_is_read_only(
    http_objects: Objects, memory_fs
) -> None:
    url = http_objects.put("ro.archive", archive_bytes(Element("a", b"1")))
    memory_fs.pipe_file("/x.archive", archive_bytes(Element("a", b"1")))
    for mode in ("rdwr", "rdwr_exclusive"):
        with pytest.raises(StorageNotSupported):
            await Archive.open(url, mode)  # type: ignore[arg-type]
        with pytest.raises(StorageNotSupported, match="appended"):
            await Archive.open("/x.archive", mode, fs=memory_fs)  # type: ignore[arg-type]
    assert memory_fs.cat_file("/x.archive") == archive_bytes(Element("a", b"1"))
    async with Archive.open(url) as archive:
        with pytest.raises(ArchiveReadOnly):
            async with archive.append("b") as out:
                await out.write(b"2")
        with pytest.raises(ArchiveReadOnly):
            await archive.sync()
        await archive.keep_page_cache_clean()  # nothing to do: not an error


async def test_a_server_gone_mid_read_gives_no_partial_entry(
    http_objects: Objects,
) -> None:
    rng = random.Random(8)
    payload = rng.randbytes(20 * MiB)
    url = http_objects.put("cut.archive", archive_bytes(Element("big", payload)))
    async with Archive.open(url) as archive:
        [entry] = await archive.contents()
        http_objects.fail_after = len(http_objects.ranges) + 1
        with pytest.raises(StorageError) as raised:
            await archive.read_bytes(entry)
        assert url in str(raised.value)
        got = bytearray()
        with pytest.raises(StorageError):
            await stream_into(archive, entry, got)
        assert payload.startswith(got)
        assert len(got) < len(payload)


async def test_s3_stopped_mid_read(s3_own) -> None:
    rng = random.Random(9)
    payload = rng.randbytes(48 * MiB)  # more than the ranges read ahead
    url = s3_own.put("cut.archive", archive_bytes(Element("big", payload)))
    options = s3_own.options_failing_fast
    got = bytearray()
    async with Archive.open(url, storage_options=options) as archive:
        with pytest.raises(StorageError) as raised:
            await stream_into(archive, "big", got, then=s3_own.server.stop)
    assert url in str(raised.value)
    assert payload.startswith(got)
    assert len(got) < len(payload)


async def test_refresh_sees_a_replaced_object(memory_fs, s3) -> None:
    first = [Element("a", b"1"), Element("b", b"2")]
    second = [*first, Element("a", b"3")]
    memory_fs.pipe_file("/r/a.archive", archive_bytes(*first))
    url = s3.put("r/a.archive", archive_bytes(*first))
    for source, options in (("memory://r/a.archive", {}), (url, s3.options)):
        async with Archive.open(source, storage_options=options) as archive:
            assert await archive.read_bytes("a") == b"1"
            assert not await archive.refresh()
            if source.startswith("memory"):
                memory_fs.pipe_file("/r/a.archive", archive_bytes(*second))
            else:
                s3.client().put_object(
                    Bucket=url.split("/")[2],
                    Key="r/a.archive",
                    Body=archive_bytes(*second),
                )
            # What the object held when it was opened, until refresh().
            assert len(await archive.contents()) == 2
            assert await archive.refresh()
            assert len(await archive.contents()) == 3
            assert await archive.read_bytes("a") == b"3"
            assert not await archive.refresh()


async def test_many_tasks_with_cancellations_and_a_close_at_random(
    http_objects: Objects,
) -> None:
    # Tasks list, find and stream entries of one remote archive at once;
    # some are cancelled at random moments, and the archive is closed at a
    # random moment. Every answer given is right; after the close every
    # call is refused; nothing is left running.
    items = elements(10, count=30, big=2 * MiB)
    data = archive_bytes(*items)
    url = http_objects.put("busy.archive", data)
    newest = {item.name: item for item in items}
    rng = random.Random(11)
    for trial in range(12):
        archive = await Archive.open(url)
        answers: list[tuple[str, bytes]] = []

        async def worker(
            seed: int, archive: Archive = archive, answers: list = answers
        ) -> None:
            local = random.Random(seed)
            for _ in range(6):
                name = local.choice(list(newest))
                action = local.random()
                if action < 0.2:
                    await archive.contents()
                elif action < 0.4:
                    await archive.find(name)
                else:
                    async with archive.read(name) as stream:
                        got = b""
                        async for chunk in stream:
                            got += chunk
                    answers.append((name, got))

        tasks = [asyncio.ensure_future(worker(trial * 100 + n)) for n in range(6)]
        for _ in range(rng.randrange(40)):
            await asyncio.sleep(0)
        cancelled = set()
        for task in tasks:
            if rng.random() < 0.3:
                task.cancel()
                cancelled.add(task)
        if rng.random() < 0.5:
            await asyncio.sleep(0)
            await archive.close()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            # Only the tasks this test cancelled end cancelled; the others
            # end, or meet the close.
            if isinstance(outcome, asyncio.CancelledError):
                assert task in cancelled
            else:
                assert outcome is None or isinstance(outcome, ClosedError), repr(
                    outcome
                )
        await archive.close()
        for name, got in answers:
            expected = newest[name]
            want = (
                gzip.decompress(expected.data) if expected.data_gzip else expected.data
            )
            assert got == want, name
        with pytest.raises(ClosedError):
            await archive.contents()
