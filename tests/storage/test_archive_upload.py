"""Archives written to object storage: built in a local file, streamed to a
new object as entries complete, published by the close. Against a real S3
protocol server (moto: multipart uploads, conditional creates) and fsspec's
memory file system, beside the same appends made to a local archive."""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path

import pytest

from aiorecords import Archive
from aiorecords._upload import PART_SIZE
from aiorecords.errors import (
    ClosedError,
    StorageError,
    StorageNotSupported,
    WriterFailedError,
)

from ..archive.build import Element
from .conftest import S3
from .storm import storm
from .test_archive_remote import elements

_names = itertools.count()


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the archives are built in, checked empty
    after each test: the local file goes with the close."""
    built = tmp_path / "tmpdir"
    built.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(built))
    yield built
    assert list(built.iterdir()) == []


def new_bucket(s3: S3) -> str:
    return s3.bucket(f"archive-{next(_names)}-{random.randrange(10**8)}")


class Failed(Exception):
    pass


async def append_all(archive: Archive, items: list[Element], fail_every: int) -> None:
    """Append ``items``; every ``fail_every``-th block raises after writing
    half its data (no entry: the bytes are cut off)."""
    for index, item in enumerate(items):
        try:
            async with archive.append(
                item.name,
                timestamp=item.timestamp,
                comment=item.comment,
                compression=item.compression,  # type: ignore[arg-type]
                data_gzip=item.data_gzip,
            ) as out:
                half = len(item.data) // 2
                await out.write(item.data[:half])
                if fail_every and index % fail_every == fail_every - 1:
                    raise Failed
                await out.write(item.data[half:])
        except Failed:
            pass


async def object_bytes(url: str, **options: object) -> bytes:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **options)
    return bytes(fs.cat_file(path))


@pytest.mark.parametrize("fail_every", [0, 3])
async def test_an_archive_on_s3_has_the_local_archives_bytes(
    s3: S3, tmp_path: Path, fail_every: int
) -> None:
    # Entries of every codec, some over a part, some failing mid-way (cut
    # off locally; on S3 never sent): the object is the local file's bytes.
    items = elements(31, count=30, big=3 * PART_SIZE // 2)
    local = tmp_path / "local.archive"
    async with Archive.open(str(local), "rdwr") as archive:
        await append_all(archive, items, fail_every)
    url = f"{new_bucket(s3)}/a.archive"
    async with Archive.open(url, "rdwr", storage_options=s3.options) as archive:
        await append_all(archive, items, fail_every)
        assert archive.mode == "rdwr"
    assert s3.keys(url) == {"a.archive": local.read_bytes()}
    assert s3.unfinished_uploads(url) == []
    async with (
        Archive.open(url, storage_options=s3.options) as remote,
        Archive.open(str(local)) as here,
    ):
        assert await remote.contents() == await here.contents()
        for entry in (await here.latest()).values():
            assert await remote.read_bytes(entry.name) == await here.read_bytes(entry)


async def test_parts_go_as_entries_complete_and_nothing_shows_before_the_close(
    s3: S3,
) -> None:
    url = f"{new_bucket(s3)}/growing.archive"
    big = random.Random(1).randbytes(PART_SIZE + 1000)
    archive = await Archive.open(url, "rdwr", storage_options=s3.options)
    async with archive.append("big") as out:
        await out.write(big)
    assert len(s3.unfinished_uploads(url)) == 1  # a part sent, no object
    assert s3.keys(url) == {}
    # The archive being written reads its own entries (from its local file).
    assert await archive.read_bytes("big") == big
    assert [e.name for e in await archive.contents()] == ["big"]
    async with archive.append("small") as out:
        await out.write(b"small")
    await archive.close()
    async with Archive.open(url, storage_options=s3.options) as remote:
        assert [e.name for e in await remote.contents()] == ["small", "big"]
        assert await remote.read_bytes("big") == big
    assert s3.unfinished_uploads(url) == []


async def test_an_empty_archive_is_published_at_its_close(s3: S3) -> None:
    url = f"{new_bucket(s3)}/empty.archive"
    async with Archive.open(url, "rdwr", storage_options=s3.options):
        pass
    async with Archive.open(url, storage_options=s3.options) as remote:
        assert await remote.contents() == []


async def archive_with_one_entry(archive: Archive) -> None:
    async with archive.append("a") as out:
        await out.write(b"1")


async def test_an_existing_object_is_never_appended_to(s3: S3) -> None:
    url = f"{new_bucket(s3)}/there.archive"
    async with Archive.open(url, "rdwr", storage_options=s3.options) as archive:
        await archive_with_one_entry(archive)
    before = s3.keys(url)
    for mode in ("rdwr", "rdwr_exclusive"):
        with pytest.raises(StorageNotSupported, match="appended") as raised:
            await Archive.open(url, mode, storage_options=s3.options)  # type: ignore[arg-type]
        assert url in str(raised.value)
    assert s3.keys(url) == before


async def test_of_two_archives_creating_one_name_the_first_closed_wins(
    s3: S3,
) -> None:
    url = f"{new_bucket(s3)}/race.archive"
    first = await Archive.open(url, "rdwr", storage_options=s3.options)
    second = await Archive.open(url, "rdwr_exclusive", storage_options=s3.options)
    for archive, name in ((first, "first"), (second, "second")):
        async with archive.append(name) as out:
            await out.write(name.encode())
    await first.close()
    with pytest.raises(FileExistsError):
        await second.close()
    async with Archive.open(url, storage_options=s3.options) as remote:
        assert [e.name for e in await remote.contents()] == ["first"]
    assert s3.unfinished_uploads(url) == []


async def test_durability_is_the_close(s3: S3) -> None:
    url = f"{new_bucket(s3)}/durable.archive"
    with pytest.raises(StorageNotSupported, match="close"):
        await Archive.open(url, "rdwr", durable=True, storage_options=s3.options)
    async with Archive.open(url, "rdwr", storage_options=s3.options) as archive:
        with pytest.raises(StorageNotSupported, match="close"):
            await archive.sync()
        with pytest.raises(StorageNotSupported, match="close"):
            archive.append("x", durable=True)
        async with archive.append("kept") as out:
            await out.write(b"1")
    async with Archive.open(url, storage_options=s3.options) as remote:
        assert await remote.read_bytes("kept") == b"1"


async def test_a_server_gone_mid_write_publishes_nothing(s3_own: S3) -> None:
    url = f"{new_bucket(s3_own)}/cut.archive"
    options = s3_own.options_failing_fast
    archive = await Archive.open(url, "rdwr", storage_options=options)
    async with archive.append("small") as out:
        await out.write(b"1")
    s3_own.server.stop()  # type: ignore[attr-defined]
    with pytest.raises(StorageError) as raised:
        async with archive.append("big") as out:
            await out.write(bytes(PART_SIZE + 1))
    assert url in str(raised.value)
    with pytest.raises(WriterFailedError):
        async with archive.append("after") as out:
            await out.write(b"2")
    await archive.close()  # publishes nothing; the abort's failure is logged


async def test_many_tasks_cancelled_and_a_close_lose_no_acknowledged_entry(
    s3: S3,
) -> None:
    # Tasks append entries to one archive, some cancelled at random points
    # (mid-entry, mid-part); close() comes from another task while they
    # run. Every append whose block exited cleanly is in the object with
    # its data; nothing else is but appends under way at the close.
    rng = random.Random(8)
    url = f"{new_bucket(s3)}/storm.archive"
    archive = await Archive.open(url, "rdwr", storage_options=s3.options)
    acknowledged: dict[str, bytes] = {}
    attempted: dict[str, bytes] = {}

    async def one_task(task: int) -> None:
        for index in itertools.count():
            name = f"{task}/{index}"
            data = rng.randbytes(rng.choice((10, 50_000, 600_000)))
            attempted[name] = data
            try:
                async with archive.append(name, compression="zstd") as out:
                    for at in range(0, len(data), 100_000):
                        await out.write(data[at : at + 100_000])
            except ClosedError:
                return
            acknowledged[name] = data

    await storm(
        one_task,
        workers=6,
        enough=lambda: sum(map(len, acknowledged.values())) >= 2 * PART_SIZE,
        close=archive.close,
        rng=rng,
        cancel_rate=0.01,
    )
    async with Archive.open(url, storage_options=s3.options) as remote:
        published = {e.name: e for e in await remote.contents()}
        assert set(acknowledged) <= set(published) <= set(attempted)
        for name, entry in published.items():
            assert await remote.read_bytes(entry) == attempted[name]
    assert s3.unfinished_uploads(url) == []


async def test_an_archive_on_a_synchronous_file_system(
    memory_fs, tmp_path: Path
) -> None:
    items = elements(32, count=12)
    local = tmp_path / "local.archive"
    async with Archive.open(str(local), "rdwr") as archive:
        await append_all(archive, items, 4)
    async with Archive.open("/m.archive", "rdwr", fs=memory_fs) as archive:
        await append_all(archive, items, 4)
    assert memory_fs.cat_file("/m.archive") == local.read_bytes()
