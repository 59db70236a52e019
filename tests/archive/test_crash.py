"""Appends that do not finish, faults, damage, and what the archive makes of them."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from aiorecords import (
    Archive,
    CorruptArchiveError,
    SkippedRegion,
    StorageError,
    WriterFailedError,
    _io,
)
from aiorecords.archive._format import FILE_HEADER


@pytest.fixture
def gar(tmp_path: Path) -> str:
    return str(tmp_path / "crash.gar")


async def add(ar: Archive, name: str, data: bytes, **options) -> None:
    async with ar.append(name, **options) as out:
        await out.write(data)


async def names(ar: Archive, **options) -> list[str]:
    return [e.name for e in await ar.contents(**options)]


@pytest.mark.parametrize("mode", ["rdwr", "rdwr_exclusive"])
async def test_an_append_that_raises_leaves_nothing(gar: str, mode: str) -> None:
    async with Archive.open(gar, mode=mode) as ar:  # type: ignore[arg-type]
        await add(ar, "kept", b"k")
        size = os.path.getsize(gar)
        for written in (0, 100, 5 << 20):

            async def change_mind(size: int = written) -> None:
                async with ar.append("lost") as out:
                    await out.write(os.urandom(size))
                    raise RuntimeError("changed my mind")

            with pytest.raises(RuntimeError):
                await change_mind()
            assert os.path.getsize(gar) == size
            assert await names(ar) == ["kept"]
        await add(ar, "next", b"n")
        assert await names(ar) == ["next", "kept"]


class GateInWrites:
    """Holds the n-th pwrite of a file in its worker thread until released,
    so a test can cancel the task while its thread is mid-write."""

    def __init__(self, name: str, nth: int) -> None:
        self.name = name
        self.nth = nth
        self.seen = 0
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if operation == "pwrite" and os.path.basename(path) == self.name:
            self.seen += 1
            if self.seen == self.nth:
                self.reached.set()
                self.release.wait(30)


@pytest.mark.parametrize("nth", [1, 2, 3])
async def test_cancelled_mid_write_leaves_nothing_and_waits_for_its_thread(
    gar: str, nth: int
) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "kept", b"k")
        size = os.path.getsize(gar)
        gate = GateInWrites("crash.gar", nth)

        async def append_big() -> None:
            async with ar.append("lost", compression="zstd") as out:
                for _ in range(4):
                    await out.write(os.urandom(1 << 20))

        _io.add_observer(gate)
        try:
            task = asyncio.ensure_future(append_big())
            await asyncio.to_thread(gate.reached.wait, 30)
            task.cancel()
            await asyncio.sleep(0)
            assert not task.done()  # still waiting for its thread
            gate.release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            _io.remove_observer(gate)
        assert os.path.getsize(gar) == size
        assert await names(ar) == ["kept"]
        await add(ar, "next", b"n")
        assert await names(ar) == ["next", "kept"]
        assert await ar.read_bytes("next") == b"n"


async def test_cancelled_while_writing_the_trailer_the_entry_may_exist(
    gar: str,
) -> None:
    """Once its trailer is on its way the entry is made; the cancellation
    then arrives after, and the entry is whole."""
    async with Archive.open(gar, mode="rdwr_exclusive") as ar:
        gate = GateInWrites("crash.gar", 1)
        _io.add_observer(gate)
        try:
            task = asyncio.ensure_future(add(ar, "small", b"s" * 100))
            await asyncio.to_thread(gate.reached.wait, 30)
            task.cancel()
            gate.release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            _io.remove_observer(gate)
        assert await names(ar) == ["small"]
        assert await ar.read_bytes("small") == b"s" * 100


def failing(operation_name: str, nth: int = 1, err: int = errno.EIO):
    count = 0

    def observer(operation: str, path: str, offset: int, length: int) -> None:
        nonlocal count
        if operation == operation_name and path.endswith(".gar"):
            count += 1
            if count == nth:
                raise OSError(err, os.strerror(err))

    return observer


async def test_a_failed_write_cuts_the_entry_off(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "kept", b"k")
        observer = failing("pwrite", err=errno.ENOSPC)
        _io.add_observer(observer)
        try:
            with pytest.raises(StorageError) as caught:
                await add(ar, "lost", os.urandom(3 << 20))
        finally:
            _io.remove_observer(observer)
        assert caught.value.errno == errno.ENOSPC
        assert await names(ar) == ["kept"]
        await add(ar, "next", b"n")  # a full disk is not a poisoned file
        assert await names(ar) == ["next", "kept"]


async def test_a_failed_sync_poisons_the_writer(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "kept", b"k")
        observer = failing("fdatasync")
        _io.add_observer(observer)
        try:
            with pytest.raises(StorageError):
                await add(ar, "lost", b"x", durable=True)
        finally:
            _io.remove_observer(observer)
        with pytest.raises(WriterFailedError):
            await add(ar, "refused", b"r")
        assert await names(ar) == ["kept"]  # reading still works
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "after reopening", b"a")
        assert await names(ar) == ["after reopening", "kept"]


async def test_a_write_error_swallowed_inside_the_block_adds_nothing(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        observer = failing("pwrite")
        _io.add_observer(observer)

        async def swallow_the_error() -> None:
            async with ar.append("lost") as out:
                with pytest.raises(StorageError):
                    await out.write(os.urandom(2 << 20))
                with pytest.raises(WriterFailedError):
                    await out.write(b"more")

        try:
            with pytest.raises(WriterFailedError):
                await swallow_the_error()
        finally:
            _io.remove_observer(observer)
        assert await names(ar) == []


async def damaged_archive(gar: str) -> list[int]:
    """Five entries, the third one's trailer damaged; their offsets."""
    async with Archive.open(gar, mode="rdwr") as ar:
        for n in range(5):
            await add(ar, f"e{n}", f"entry {n}".encode() * 100, gzip=n % 2 == 1)
        entries = await ar.contents()
    with open(gar, "r+b") as f:
        f.seek(entries[2].end - 30)
        f.write(b"\xff\xff")
    return [e.offset for e in entries]


async def test_damage_names_its_offset_and_recover_steps_over_it(
    gar: str, caplog: pytest.LogCaptureFixture
) -> None:
    offsets = await damaged_archive(gar)
    async with Archive.open(gar) as ar:
        with pytest.raises(CorruptArchiveError) as caught:
            await ar.contents()
        error = caught.value
        assert error.path == gar
        assert offsets[2] <= error.offset < offsets[1]
        assert "recover=True" in str(error)
        skipped: list[SkippedRegion] = []
        with caplog.at_level(logging.WARNING, logger="aiorecords"):
            found = await names(ar, recover=True, on_corruption=skipped.append)
        assert found == ["e4", "e3", "e1", "e0"]
        assert [(r.start, r.end) for r in skipped] == [(offsets[2], offsets[1])]
        assert "damaged archive bytes" in caplog.text
        for entry in await ar.contents(recover=True):
            n = int(entry.name[1:])
            assert await ar.read_bytes(entry) == f"entry {n}".encode() * 100
        # The newer entries are found without going near the damage...
        assert (await ar.find("e4")).name == "e4"
        # ...the older ones only by listing with recover=True.
        with pytest.raises(CorruptArchiveError):
            await ar.find("e0")
        assert "e0" in await ar.latest(recover=True)
        with pytest.raises(CorruptArchiveError):
            await ar.latest()


async def test_appends_after_damage_are_still_readable(gar: str) -> None:
    await damaged_archive(gar)
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "new", b"fresh")
        assert await ar.read_bytes("new") == b"fresh"
        assert (await names(ar, recover=True))[:2] == ["new", "e4"]


async def test_a_damaged_payload_is_caught_when_read(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "p", b"payload " * 1000, compression="zstd")
        (entry,) = await ar.contents()
    with open(gar, "r+b") as f:
        f.seek(entry.payload_offset + 5)
        f.write(b"\x00\x00\x00")
    async with Archive.open(gar) as ar:
        assert await names(ar) == ["p"]  # listing does not read payloads
        with pytest.raises(CorruptArchiveError) as caught:
            await ar.read_bytes("p")
        assert caught.value.offset == entry.offset
        assert "'p' is damaged" in str(caught.value)


async def test_a_garbage_tail_is_cut_by_the_next_append(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "kept", b"k")
    with open(gar, "ab") as f:
        f.write(b"GARe" + os.urandom(70_000) + b"GARt" + os.urandom(44))
    async with Archive.open(gar, mode="rdwr") as ar:
        assert await names(ar) == ["kept"]
        await add(ar, "new", b"n")
        assert await names(ar) == ["new", "kept"]
        assert os.path.getsize(gar) == (await ar.contents())[0].end
    async with Archive.open(gar, mode="rdwr_exclusive") as ar:
        assert await names(ar) == ["new", "kept"]


async def test_rdwr_exclusive_cuts_a_torn_tail_when_it_opens(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr") as ar:
        await add(ar, "kept", b"k")
        (entry,) = await ar.contents()
    with open(gar, "ab") as f:
        f.write(os.urandom(1000))
    async with Archive.open(gar, mode="rdwr_exclusive") as ar:
        assert os.path.getsize(gar) == entry.end
        await add(ar, "next", b"n")
        assert await names(ar) == ["next", "kept"]


async def test_streaming_a_large_entry_uses_bounded_memory(gar: str) -> None:
    chunk = os.urandom(1 << 20)
    async with Archive.open(gar, mode="rdwr") as ar:
        tracemalloc.start()
        try:
            async with ar.append("big", compression="zstd") as out:
                for _ in range(48):
                    await out.write(chunk)
            async with ar.read("big") as stream:
                total = 0
                async for piece in stream:
                    total += len(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == 48 << 20
        assert peak < 12 << 20  # a few buffers of a megabyte, not 48


async def test_a_hostile_archive_is_refused_without_large_allocations(
    tmp_path: Path,
) -> None:
    """Random bytes behind a valid file header, including trailer magics:
    listing finds nothing, allocates little, and raises nothing unexpected."""
    junk = bytearray(os.urandom(1 << 20))
    for at in range(0, len(junk) - 8, 4099):
        junk[at : at + 4] = b"GARt"
        junk[at + 100 : at + 104] = b"GARe"
    hostile = tmp_path / "hostile.gar"
    hostile.write_bytes(FILE_HEADER + bytes(junk))
    tracemalloc.start()
    try:
        async with Archive.open(str(hostile)) as ar:
            assert await ar.contents(recover=True) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
