"""The public Archive API, on real files."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from pathlib import Path

import pytest

from aiorecords import (
    Archive,
    ArchiveReadOnly,
    ClosedError,
    CorruptArchiveError,
    EntryProperties,
)
from aiorecords.archive._format import FILE_HEADER, unstuff


@pytest.fixture
def gar(tmp_path: Path) -> str:
    return str(tmp_path / "site.gar")


async def add(ar: Archive, name: str, data: bytes, **options) -> None:
    async with ar.append(name, **options) as out:
        await out.write(data)


async def test_rdwr_creates_the_file_with_only_a_header(gar: str, io_trace) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        assert await ar.contents() == []
    with open(gar, "rb") as f:
        assert f.read() == FILE_HEADER
    # Created beside, synced, then given its name: never seen half made.
    ops = io_trace.operations("create", "fsync", "link", "fsync_dir")
    assert ops == ["create", "fsync", "link", "fsync_dir"]
    assert sorted(os.listdir(os.path.dirname(gar))) == ["site.gar"]


async def test_rdonly_needs_an_archive(gar: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await Archive.open(gar)
    not_archive = tmp_path / "x.gar"
    not_archive.write_bytes(b"PK\x03\x04 certainly not an archive")
    with pytest.raises(CorruptArchiveError, match="not an archive") as caught:
        await Archive.open(str(not_archive))
    assert caught.value.path == str(not_archive)
    empty = tmp_path / "empty.gar"
    empty.write_bytes(b"")
    with pytest.raises(CorruptArchiveError, match="empty"):
        await Archive.open(str(empty))
    # A writer gives an empty file its header.
    async with Archive.open(str(empty), "rdwr") as ar:
        await add(ar, "a", b"1")
    assert empty.read_bytes().startswith(FILE_HEADER)


async def test_mode_is_checked(gar: str) -> None:
    with pytest.raises(ValueError, match="mode"):
        Archive.open(gar, mode="w")  # type: ignore[arg-type]


async def test_append_then_read_back(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        async with ar.append(
            "index.html", timestamp=1700000000, gzip=True, comment="v1"
        ) as out:
            await out.write(b"<html>")
            await out.write(bytearray(b"hello"))
            await out.write(memoryview(b"</html>"))
        assert out.entry is not None
        assert out.entry.name == "index.html"
        await add(ar, "index.html", b"<html>v2</html>", comment="v2")
        await add(ar, "style.css", "body{}")  # str is written as UTF-8
        entries = await ar.contents()
        assert [e.name for e in entries] == ["style.css", "index.html", "index.html"]
        assert ar.info(entries[2]) == EntryProperties(
            entry_name="index.html",
            entry_timestamp=1700000000,
            entry_gzip=True,
            entry_comment="v1",
        )
        assert ar.info(entries[1]).entry_gzip is False
        assert entries[2] == out.entry
        async with ar.read(entries[2]) as stream:
            assert [chunk async for chunk in stream] == [b"<html>hello</html>"]
        assert await ar.read_bytes("index.html") == b"<html>v2</html>"
        assert await ar.read_bytes(entries[2]) == b"<html>hello</html>"
        assert await ar.read_bytes("style.css") == b"body{}"
        latest = await ar.latest()
        assert latest["index.html"] == entries[1]
        assert await ar.find("index.html") == entries[1]
        with pytest.raises(KeyError):
            await ar.find("missing.html")
        with pytest.raises(KeyError):
            await ar.read_bytes("missing.html")


async def test_default_timestamp_is_now_in_seconds(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        before = int(time.time())
        await add(ar, "a", b"")
        after = int(time.time())
        (entry,) = await ar.contents()
        assert before <= entry.timestamp <= after


async def test_gzip_entries_hold_real_gzip_members(gar: str) -> None:
    data = b"compress me " * 10_000
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "z", data, gzip=True)
        (entry,) = await ar.contents()
    with open(gar, "rb") as f:
        f.seek(entry.payload_offset)
        stored = f.read(entry.stored_size)
    # Stored stuffed (version 2): undone, the bytes are gzip members.
    assert b"\xe5\x01" not in stored
    assert gzip.decompress(unstuff(stored)) == data
    assert entry.stored_size < len(data) // 10


@pytest.mark.parametrize("gzip_entry", [False, True])
@pytest.mark.parametrize("compression", [None, "zstd"])
async def test_data_gzip_combinations(gar: str, gzip_entry: bool, compression) -> None:
    if gzip_entry and compression:
        return
    data = os.urandom(2000) + b"repetitive " * 300_000  # > one write buffer
    written = gzip.compress(data)
    async with Archive.open(gar, mode="rdwr") as ar:
        async with ar.append(
            "g", gzip=gzip_entry, compression=compression, data_gzip=True
        ) as out:
            for at in range(0, len(written), 4096):
                await out.write(written[at : at + 4096])
        (entry,) = await ar.contents()
        assert entry.size == len(data)
        assert await ar.read_bytes(entry) == data
    if gzip_entry:
        with open(gar, "rb") as f:
            f.seek(entry.payload_offset)
            assert unstuff(f.read(entry.stored_size)) == written


async def test_bad_options_are_refused_before_anything_is_written(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        with pytest.raises(ValueError, match="cannot be empty"):
            ar.append("")
        with pytest.raises(ValueError, match="at most 65536 bytes"):
            ar.append("n" * 65537)
        with pytest.raises(ValueError, match="at most 65536 bytes"):
            ar.append("n", comment="c" * 65537)
        with pytest.raises(ValueError, match="64-bit"):
            ar.append("n", timestamp=1 << 63)
        with pytest.raises(ValueError, match="contradicts"):
            ar.append("n", gzip=True, compression="zstd")
        with pytest.raises(ValueError, match="lz4"):
            ar.append("n", compression="lz4")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ar.append(b"name")  # type: ignore[arg-type]
        async with ar.append("n") as out:
            with pytest.raises(TypeError):
                await out.write(12)  # type: ignore[arg-type]
        assert [e.name for e in await ar.contents()] == ["n"]
        with pytest.raises(ClosedError):
            await out.write(b"too late")


async def test_data_gzip_that_is_not_gzip_adds_nothing(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "before", b"kept")
        with pytest.raises(ValueError, match="not gzip"):
            await add(ar, "bad", b"plain text, not gzip", data_gzip=True)
        with pytest.raises(ValueError, match="not gzip"):
            await add(ar, "bad", b"\x1f\x8b" + os.urandom(3 << 20), data_gzip=True)
        await add(ar, "after", b"fine")
        assert [e.name for e in await ar.contents()] == ["after", "before"]
        assert await ar.read_bytes("after") == b"fine"


async def test_from_bytes_reads_the_same_bytes(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "a", b"alpha", gzip=True)
        await add(ar, "b", b"bravo" * 100_000, compression="zstd")
        on_disk = await ar.contents()
    with open(gar, "rb") as f:
        blob = f.read()
    memory = Archive.from_bytes(blob)
    assert memory.path is None
    assert await memory.contents() == on_disk
    assert await memory.read_bytes("b") == b"bravo" * 100_000
    appending = memory.append("c")  # the call itself is fine...
    with pytest.raises(ArchiveReadOnly):
        async with appending:  # ...entering it is not
            pass
    with pytest.raises(ArchiveReadOnly):
        await memory.sync()
    await memory.keep_page_cache_clean()  # a no-op in memory
    with pytest.raises(CorruptArchiveError):
        Archive.from_bytes(b"nope")
    await memory.close()
    with pytest.raises(ClosedError):
        await memory.contents()


async def test_rdonly_refuses_to_append(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "a", b"1")
    async with Archive.open(gar) as ar:
        with pytest.raises(ArchiveReadOnly):
            async with ar.append("b"):
                pass
        assert [e.name for e in await ar.contents()] == ["a"]


async def test_the_listing_is_cached_until_the_archive_grows(
    gar: str, io_trace
) -> None:
    async with Archive.open(gar, mode="rdwr") as writer, Archive.open(gar) as reader:
        await add(writer, "a", b"1")
        assert [e.name for e in await reader.contents()] == ["a"]
        io_trace.clear()
        assert [e.name for e in await reader.contents()] == ["a"]
        assert "pread" not in io_trace.operations()  # only a size check
        await add(writer, "b", b"2")
        io_trace.clear()
        assert [e.name for e in await reader.contents()] == ["b", "a"]
        reads = [c for c in io_trace.calls if c[0] == "pread"]
        assert reads
        assert min(offset for _, _, offset, _ in reads) >= 16
        assert (await reader.latest())["b"].name == "b"
        # The writer's own listing follows its appends without reading.
        io_trace.clear()
        assert [e.name for e in await writer.contents()] == ["b", "a"]
        assert "pread" not in io_trace.operations()


async def test_the_returned_list_is_the_callers(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "a", b"1")
        first = await ar.contents()
        first.clear()
        assert len(await ar.contents()) == 1
        latest = await ar.latest()
        latest.clear()
        assert len(await ar.latest()) == 1


async def test_stream_read_sizes(gar: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "r", data, compression="zstd")
        async with ar.read("r") as stream:
            assert stream.entry.name == "r"
            assert await stream.read(10) == data[:10]
            assert await stream.read(0) == b""
            assert await stream.read1(100) == data[10:110]
            rest = await stream.read()
            assert rest == data[110:]
            assert await stream.read() == b""
        with pytest.raises(ClosedError):
            await stream.read()
        async with ar.read("r") as stream:
            chunks = [chunk async for chunk in stream]
        assert all(len(c) <= 1024 * 1024 for c in chunks)
        assert b"".join(chunks) == data


async def test_one_entry_at_a_time_per_archive(gar: str) -> None:
    """A second append waits for the first: their bytes never interleave."""
    async with Archive.open(gar, mode="rdwr") as ar:
        order: list[str] = []
        first_started = asyncio.Event()
        release_first = asyncio.Event()

        async def first() -> None:
            async with ar.append("first") as out:
                order.append("first in")
                first_started.set()
                await out.write(b"1" * 100)
                await release_first.wait()
                await out.write(b"1" * 100)
            order.append("first out")

        async def second() -> None:
            await first_started.wait()
            waiting = asyncio.ensure_future(add(ar, "second", b"2" * 100))
            await asyncio.sleep(0)
            assert not waiting.done()
            order.append("second waiting")
            release_first.set()
            await waiting
            order.append("second out")

        await asyncio.gather(first(), second())
        assert order == ["first in", "second waiting", "first out", "second out"]
        assert await ar.read_bytes("first") == b"1" * 200
        assert await ar.read_bytes("second") == b"2" * 100


async def test_nesting_entries_in_one_task_is_an_error_not_a_deadlock(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "a", b"1")
        async with ar.append("b") as out:
            await out.write(b"2")
            with pytest.raises(RuntimeError, match="one entry at a time"):
                await ar.read_bytes("a")
        async with ar.read("a") as stream:
            with pytest.raises(RuntimeError):
                async with ar.append("c"):
                    pass
            assert await stream.read() == b"1"
        assert [e.name for e in await ar.contents()] == ["b", "a"]


async def test_durable_appends_sync_payload_then_trailer(gar: str, io_trace) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        io_trace.clear()
        await add(ar, "fast", b"x")
        assert io_trace.operations("fdatasync", "fsync") == []
        await add(ar, "safe", b"y", durable=True)
        ops = io_trace.operations("pwrite", "fdatasync")
        assert ops[-4:] == ["pwrite", "fdatasync", "pwrite", "fdatasync"]
        io_trace.clear()
        await ar.sync()
        assert io_trace.operations("fdatasync") == ["fdatasync"]
    async with Archive.open(gar, mode="rdwr", durable=True) as ar:
        io_trace.clear()
        await add(ar, "default", b"z")
        assert io_trace.operations("fdatasync") == ["fdatasync", "fdatasync"]


async def test_small_entries_cost_one_thread_hop(gar: str, io_trace) -> None:
    async with Archive.open(gar, mode="rdwr_exclusive") as ar:
        io_trace.clear()
        await add(ar, "small", b"s" * 1000)
        assert io_trace.operations() == ["pwrite"]


async def test_keep_page_cache_clean(gar: str, io_trace) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "a", b"1")
        await ar.keep_page_cache_clean()
    assert "fadvise" in io_trace.operations()


async def test_closed_archives_refuse_work(gar: str) -> None:
    ar = await Archive.open(gar, mode="rdwr")
    assert not ar.closed
    assert "rdwr" in repr(ar)
    await ar.close()
    await ar.close()
    assert ar.closed
    assert "closed" in repr(ar)
    for call in (ar.contents(), ar.latest(), ar.find("a"), ar.sync()):
        with pytest.raises(ClosedError):
            await call
    with pytest.raises(ClosedError):
        async with ar.append("a"):
            pass


async def test_closing_under_an_append_leaves_no_entry(gar: str) -> None:
    ar = await Archive.open(gar, mode="rdwr")

    async def append_and_close() -> None:
        async with ar.append("torn") as out:
            await out.write(os.urandom(2 << 20))
            await ar.close()
            await out.write(os.urandom(2 << 20))

    with pytest.raises(ClosedError):
        await append_and_close()
    async with Archive.open(gar, mode="rdwr") as again:
        assert await again.contents() == []
        await add(again, "next", b"n")
        assert [e.name for e in await again.contents()] == ["next"]
        (entry,) = await again.contents()
    assert os.path.getsize(gar) == entry.end


async def test_unicode_names_and_comments(gar: str) -> None:
    name = "日本語/ファイル.txt"
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, name, b"x", comment="コメント")
    async with Archive.open(gar) as ar:
        (entry,) = await ar.contents()
        assert ar.info(entry).entry_name == name
        assert ar.info(entry).entry_comment == "コメント"


async def test_reading_a_small_entry_costs_one_thread_hop(gar: str, io_trace) -> None:
    async with Archive.open(gar, mode="rdwr_exclusive") as ar:
        await add(ar, "small", b"s" * 1000, gzip=True)
        (entry,) = await ar.contents()
        io_trace.clear()
        assert await ar.read_bytes(entry) == b"s" * 1000
        assert io_trace.operations() == ["pread"]
