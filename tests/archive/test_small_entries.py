"""Small entries without a worker-thread hop each: read on the loop from the
page cache, and appended with write-behind (queued, written in batches)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gzip
import itertools
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorecords import (
    Archive,
    ClosedError,
    CorruptArchiveError,
    StorageError,
    _io,
)
from aiorecords.archive import _behind
from aiorecords.errors import WriterFailedError

from ..helpers.cancelling import cancel_at_random_until_done


@pytest.fixture
def gar(tmp_path: Path) -> str:
    return str(tmp_path / "small.gar")


async def add(ar: Archive, name: str, data: bytes, **options) -> None:
    async with ar.append(name, **options) as out:
        await out.write(data)


class Threads:
    """The threads each I/O primitive ran in: the loop's, or a worker's."""

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if path.endswith(".gar"):
            self.calls.append((operation, threading.get_ident() == self.loop_thread))

    def on_loop(self, operation: str) -> list[bool]:
        return [loop for op, loop in self.calls if op == operation]


@contextlib.contextmanager
def watched(cached_reads: bool = True):
    threads = Threads()
    previous = _io.allow_cached_reads(cached_reads)
    _io.add_observer(threads)
    try:
        yield threads
    finally:
        _io.remove_observer(threads)
        _io.allow_cached_reads(previous)


# -- reading on the loop ---------------------------------------------------------

# (size, compression): around 64 KiB stored and as data, incompressible
# or not.
SHAPES = [
    (0, None),
    (1, None),
    (65_535, None),
    (65_536, None),
    (65_537, None),
    (1_000, "gzip"),
    (60_000, "zstd"),
    (200_000, "zstd"),  # small when stored, large as data: read in a thread
]


def shaped(size: int, compression: str | None) -> bytes:
    if compression is None:
        return os.urandom(size)
    return (b"compressible " * (size // 13 + 1))[:size]


@pytest.mark.parametrize("cached_reads", [True, False])
async def test_small_entries_are_read_on_the_loop_from_the_page_cache(
    gar: str, cached_reads: bool
) -> None:
    written = {}
    async with Archive.open(gar, "rdwr_exclusive") as ar:
        for size, compression in SHAPES:
            name = f"{size}-{compression}"
            written[name] = shaped(size, compression)
            await add(ar, name, written[name], compression=compression)
    async with Archive.open(gar) as ar:
        for entry in await ar.contents():
            small = entry.stored_size <= 65_536 and entry.size <= 65_536
            with watched(cached_reads) as threads:
                assert await ar.read_bytes(entry) == written[entry.name]
                async with ar.read(entry) as stream:
                    assert b"".join([c async for c in stream]) == written[entry.name]
            on_loop = threads.on_loop("pread")
            if entry.stored_size:  # (an empty payload may read nothing)
                assert on_loop, entry.name
                assert all(on_loop) == (small and cached_reads), (entry.name, on_loop)
                assert any(on_loop) == (small and cached_reads), (entry.name, on_loop)


@pytest.mark.parametrize("cached_reads", [True, False])
async def test_a_damaged_small_entry_names_its_file_and_offset(
    gar: str, cached_reads: bool
) -> None:
    async with Archive.open(gar, "rdwr") as ar:
        await add(ar, "before", b"b" * 100)
        await add(ar, "damaged", b"d" * 5000, compression="gzip")
        entry = await ar.find("damaged")
    with open(gar, "r+b") as f:
        f.seek(entry.payload_offset + entry.stored_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x40]))
    async with Archive.open(gar) as ar:
        with watched(cached_reads), pytest.raises(CorruptArchiveError) as caught:
            await ar.read_bytes(entry)
        assert caught.value.path == gar
        assert caught.value.offset == entry.offset
        assert await ar.read_bytes("before") == b"b" * 100


async def test_an_entry_cut_off_under_the_reader_fails_cleanly(gar: str) -> None:
    async with Archive.open(gar, "rdwr") as ar:
        await add(ar, "whole", os.urandom(3000))
        await add(ar, "cut", os.urandom(3000))
    async with Archive.open(gar) as ar:
        cut = await ar.find("cut")
        os.truncate(gar, cut.payload_offset + 100)  # someone else cut the file
        with watched() as threads, pytest.raises(CorruptArchiveError, match="ends"):
            await ar.read_bytes(cut)
        # The page cache held only part of it: read (and refused) in a thread.
        assert threads.on_loop("pread")[-1] is False


async def test_reading_on_the_loop_never_waits_for_an_append(gar: str) -> None:
    """read_bytes() of a cached small entry takes no lock: an append (by
    another task, holding the object's entry lock) does not delay it."""
    async with Archive.open(gar, "rdwr") as ar:
        await add(ar, "old", b"o" * 10)
        old = await ar.find("old")
        inside = asyncio.Event()
        leave = asyncio.Event()

        async def appending() -> None:
            async with ar.append("new") as out:
                await out.write(b"n")
                inside.set()
                await leave.wait()

        task = asyncio.create_task(appending())
        await inside.wait()
        assert await ar.read_bytes(old) == b"o" * 10
        leave.set()
        await task
        assert await ar.read_bytes("new") == b"n"


# -- write-behind ------------------------------------------------------------------


async def test_queued_entries_are_written_by_flush_listing_or_close(
    gar: str, io_trace
) -> None:
    async with Archive.open(gar, "rdwr_exclusive", write_behind=True) as ar:
        io_trace.clear()
        writers = []
        for n in range(50):
            async with ar.append(f"e{n}") as out:
                await out.write(b"x" * n)
            writers.append(out)
        assert io_trace.operations("pwrite") == []  # all queued
        assert all(out.entry is None for out in writers)
        async with Archive.open(gar) as other:
            assert await other.contents() == []  # not in the file yet
        await ar.flush()
        assert io_trace.operations("pwrite") == ["pwrite"]  # in one write
        assert [out.entry.name for out in writers] == [f"e{n}" for n in range(50)]
        async with Archive.open(gar) as other:
            assert len(await other.contents()) == 50
        # This object's own listings and finds write the queue first.
        await add(ar, "queued", b"q")
        assert (await ar.contents())[0].name == "queued"
        await add(ar, "found", b"f")
        assert (await ar.find("found")).size == 1
        assert await ar.read_bytes("found") == b"f"
        await add(ar, "at close", b"c")
    async with Archive.open(gar) as ar:
        assert (await ar.contents())[0].name == "at close"


async def test_a_megabyte_queued_is_written_in_the_background(gar: str) -> None:
    async with Archive.open(gar, "rdwr_exclusive", write_behind=True) as ar:
        for n in range(200):
            await add(ar, f"e{n}", os.urandom(10_000))
        # No one asked, but two megabytes queued: batches went out meanwhile.
        await asyncio.sleep(0)
        background = ar._opened.behind._background
        assert background is not None
        await background
        async with Archive.open(gar) as other:
            assert len(await other.contents()) >= 100


async def test_the_queue_is_bounded(gar: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exit waits once 8 MiB wait: what is held stays bounded."""
    most = 0
    async with Archive.open(gar, "rdwr_exclusive", write_behind=True) as ar:
        behind = ar._opened.behind
        for n in range(1000):
            await add(ar, f"e{n}", os.urandom(50_000))
            most = max(most, behind._queued_bytes)
    assert most < _behind.LIMIT
    async with Archive.open(gar) as ar:
        assert len(await ar.contents()) == 1000


@pytest.mark.parametrize("mode", ["rdwr", "rdwr_exclusive"])
async def test_durable_entries_are_synced_before_their_block_exits(
    gar: str, mode: str, io_trace
) -> None:
    async with Archive.open(gar, mode, write_behind=True) as ar:
        await add(ar, "queued", b"q" * 10)
        io_trace.clear()
        await add(ar, "durable", b"d" * 10, durable=True)
        # The queue and the durable payload, synced; then its trailer.
        assert io_trace.operations("pwrite", "fdatasync") == [
            "pwrite",
            "fdatasync",
            "pwrite",
            "fdatasync",
        ]
    async with Archive.open(gar) as ar:
        assert [e.name for e in await ar.contents()] == ["durable", "queued"]


async def test_large_and_data_gzip_entries_go_after_the_queue(gar: str) -> None:
    big = os.urandom(3 << 20)
    async with Archive.open(gar, "rdwr_exclusive", write_behind=True) as ar:
        await add(ar, "small 1", b"1")
        await add(ar, "big", big)  # outgrows memory: written as it streams
        await add(ar, "small 2", b"2")
        await add(ar, "gz", gzip.compress(b"g" * 100), data_gzip=True)
        with pytest.raises(ValueError, match="not gzip"):
            await add(ar, "not gz", b"plain", data_gzip=True)
        await add(ar, "small 3", b"3")
    async with Archive.open(gar) as ar:
        assert [e.name for e in await ar.contents()] == [
            "small 3",
            "gz",
            "small 2",
            "big",
            "small 1",
        ]
        assert await ar.read_bytes("big") == big
        assert await ar.read_bytes("gz") == b"g" * 100


async def test_write_behind_is_refused_for_readers(gar: str) -> None:
    with pytest.raises(ValueError, match="write_behind"):
        Archive.open(gar, write_behind=True)


entries = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=20),
        st.one_of(st.binary(max_size=3000), st.integers(1_000_000, 1_100_000)),
        st.sampled_from([None, "gzip", "zstd"]),
        st.integers(-(2**63), 2**63 - 1),
        st.text(max_size=10),
        st.booleans(),  # durable
        st.booleans(),  # flush after it
    ),
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(entries, st.sampled_from(["rdwr", "rdwr_exclusive"]))
async def test_write_behind_writes_the_same_bytes(
    tmp_path: Path, appended: list, mode: str
) -> None:
    """Any entries (some larger than memory holds, some durable, flushes
    between) make the file that appending them one hop each makes, byte for
    byte."""
    files = []
    for behind in (False, True):
        path = str(tmp_path / f"{behind}-{mode}.gar")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        async with Archive.open(path, mode, write_behind=behind) as ar:
            for name, data, compression, timestamp, comment, durable, flush in appended:
                if isinstance(data, int):
                    data = random.Random(data).randbytes(data)
                await add(
                    ar,
                    name,
                    data,
                    compression=compression,
                    timestamp=timestamp,
                    comment=comment,
                    durable=durable,
                )
                if flush:
                    await ar.flush()
        files.append(Path(path).read_bytes())
    assert files[0] == files[1]


async def test_many_tasks_cancellations_and_a_close_lose_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """Six tasks append (some durable) and flush on one write-behind archive;
    each is cancelled at random moments; a seventh closes it at a random
    moment. An entry is acknowledged once a flush (or a durable exit, or
    the close) returned after its block did. Then: every acknowledged entry
    is in the file, whole; everything in the file was appended by someone,
    once; nothing is damaged."""
    for trial in range(12):
        await ledger_trial(str(tmp_path / f"ledger-{trial}.gar"), random.Random(trial))


async def ledger_trial(path: str, rng: random.Random) -> None:
    mode = rng.choice(["rdwr", "rdwr_exclusive"])
    ar = await Archive.open(path, mode, write_behind=True)
    exited: dict[str, bytes] = {}  # block exited cleanly: queued or written
    acknowledged: dict[str, bytes] = {}
    attempted: dict[str, bytes] = {}

    attempts = itertools.count()

    async def one(name: str, data: bytes, durable: bool) -> None:
        # Each attempt its own name: one cancelled in its exit may still be
        # added (queued, or written), and then its retry is another entry.
        name = f"{name}#{next(attempts)}"
        attempted[name] = data
        await add(ar, name, data, durable=durable)
        exited[name] = data
        if durable:
            acknowledged[name] = data
        if rng.random() < 0.1:
            before = dict(exited)
            await ar.flush()
            acknowledged.update(before)

    async def producer(who: int) -> None:
        for n in range(rng.randrange(20, 80)):
            name = f"{who}/{n}"
            data = rng.randbytes(rng.choice([0, 10, 3000, 70_000]))
            durable = rng.random() < 0.1
            try:
                await cancel_at_random_until_done(
                    functools.partial(one, name, data, durable), rng, 6
                )
            except (ClosedError, WriterFailedError):
                return

    async def closer() -> None:
        for _ in range(rng.randrange(200)):
            await asyncio.sleep(0)
        before = dict(exited)
        await ar.close()
        acknowledged.update(before)

    await asyncio.gather(*(producer(who) for who in range(6)), closer())
    await ar.close()
    async with Archive.open(path) as check:
        found = await check.contents()  # raises on any damage
        names = [entry.name for entry in found]
        assert len(names) == len(set(names)), "an entry written twice"
        for entry in found:
            assert entry.name in attempted
            assert await check.read_bytes(entry) == attempted[entry.name]
        missing = set(acknowledged) - set(names)
        assert not missing, f"{path}: acknowledged entries lost: {missing}"


async def test_a_failed_batch_loses_only_its_entries_and_says_so(gar: str) -> None:
    async with Archive.open(gar, "rdwr_exclusive", write_behind=True) as ar:
        await add(ar, "kept", b"k")
        await ar.flush()
        await add(ar, "lost 1", b"1")
        await add(ar, "lost 2", b"2")

        def full(operation: str, path: str, offset: int, length: int) -> None:
            if operation == "pwrite" and path.endswith(".gar"):
                raise OSError(errno.ENOSPC, "No space left on device")

        _io.add_observer(full)
        try:
            with pytest.raises(StorageError) as caught:
                await ar.flush()
        finally:
            _io.remove_observer(full)
        assert caught.value.errno == errno.ENOSPC
        # Queued entries may have been lost: nothing is taken on after that.
        with pytest.raises(WriterFailedError):
            await add(ar, "refused", b"r")
        with pytest.raises(WriterFailedError):
            await ar.flush()
        with pytest.raises(WriterFailedError, match="2 entries"):
            await ar.close()
    async with Archive.open(gar) as ar:
        assert [e.name for e in await ar.contents()] == ["kept"]
    assert os.path.getsize(gar) == (await _end_of(gar))


async def _end_of(path: str) -> int:
    async with Archive.open(path) as ar:
        return (await ar.contents())[0].end


def test_a_file_that_cannot_grow_keeps_every_flushed_entry(tmp_path: Path) -> None:
    """A real limit (RLIMIT_FSIZE: the kernel refuses to grow the file, a
    write stops short, then fails) hits a write-behind writer in a process
    of its own; it reports what it flushed. Those are all there, and the
    file lists with no damage and no torn tail."""
    path = tmp_path / "limited.gar"
    script = textwrap.dedent(
        f"""
        import asyncio, os, resource, signal, sys
        from aiorecords import Archive
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))

        async def main():
            ar = await Archive.open({str(path)!r}, "rdwr_exclusive", write_behind=True)
            n = 0
            try:
                while True:
                    for _ in range(37):
                        async with ar.append(f"e{{n}}") as out:
                            await out.write(bytes([n % 256]) * 9000)
                        n += 1
                    await ar.flush()
                    print(n, flush=True)
            except Exception as error:
                print("error", type(error).__name__, flush=True)
            try:
                await ar.close()
            except Exception as error:
                print("close", type(error).__name__, flush=True)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.split()
    assert "error" in lines, done.stdout + done.stderr
    flushed = max(int(word) for word in lines if word.isdigit())
    assert flushed > 100

    async def check() -> None:
        async with Archive.open(str(path)) as ar:
            found = await ar.contents()
            assert len(found) == flushed  # the failed batch was cut off
            for entry in found[:50]:
                n = int(entry.name[1:])
                assert await ar.read_bytes(entry) == bytes([n % 256]) * 9000
        assert path.stat().st_size == found[0].end

    asyncio.run(check())


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_a_close_during_a_flush_writes_what_the_flush_could_not(
    gar: str, steps: int
) -> None:
    """A close that begins while a flush is taking the append locks (a hop
    of its own, with "rdwr"): the flush is refused its write, and the close
    writes those entries instead."""
    ar = await Archive.open(gar, "rdwr", write_behind=True)
    for n in range(20):
        await add(ar, f"e{n}", b"x" * n)
    flushing = asyncio.create_task(ar.flush())
    for _ in range(steps):
        await asyncio.sleep(0)
    await ar.close()
    with contextlib.suppress(ClosedError):
        await flushing
    async with Archive.open(gar) as check:
        assert len(await check.contents()) == 20
