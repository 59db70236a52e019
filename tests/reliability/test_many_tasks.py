"""Many tasks on one object, for every format (see ``storm.py``).

Each storm drives one writer (or archive, or capture file) from eight tasks
with random cancellations and a ``close()`` at a random moment, keeps a
ledger of every acknowledgement, and checks the file after reopening it:
nothing acknowledged is missing, nothing is torn or duplicated, and nothing
was written that no task wrote.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import Iterator

import pytest

from aiorecords import Archive, CaptureFile, RecordsReader, RecordsWriter, _io
from aiorecords.errors import CaptureFileNotOpen, ClosedError

from .conftest import count, scale
from .storm import Storm, run_storm

STORMS = scale(100, 1000)


# ----------------------------------------------------------------------
# LevelDB log records


class RecordsLedger:
    def __init__(self) -> None:
        self.written: list[bytes] = []  # write() returned, in order
        self.maybe: set[bytes] = set()  # write() was cancelled or refused
        self.synced = 0  # written[:synced] are durable
        self.closed_with = 0  # written[:closed_with] were flushed by close()


def records_worker(writer: RecordsWriter, ledger: RecordsLedger):
    async def work(storm: Storm, worker_id: int) -> None:
        rng = random.Random(storm.rng.random())
        for seq in range(10**9):
            action = rng.random()
            if action < 0.7:
                size = rng.choice((10, 100, 3_000, 40_000))
                record = f"{worker_id}.{seq}.".encode() + b"x" * rng.randint(0, size)
                try:
                    if rng.random() < 0.5:
                        await writer.write(record)
                    else:
                        await writer.write_many([record])
                except BaseException:
                    ledger.maybe.add(record)
                    raise
                ledger.written.append(record)
            elif action < 0.85:
                await writer.flush()
                storm.note("flushed")
            else:
                upto = len(ledger.written)
                await writer.sync()
                ledger.synced = max(ledger.synced, upto)
                storm.note("synced")

    return work


@pytest.mark.parametrize("seed", range(STORMS))
async def test_records_writer_storm(seed: int, tmp_path) -> None:
    path = str(tmp_path / "storm.log")
    rng = random.Random(seed)
    writer = RecordsWriter(
        path,
        buffer_size=rng.choice((1, 4096, 64 * 1024, 1024 * 1024)),
        pad_last_block=rng.random() < 0.5,
    )
    ledger = RecordsLedger()

    async def close() -> None:
        ledger.closed_with = max(ledger.closed_with, len(ledger.written))
        await writer.close()

    storm = Storm(rng, path)
    await run_storm(
        storm,
        records_worker(writer, ledger),
        close,
        acknowledged=lambda: ledger.synced,
    )
    async with RecordsReader(path, strict=True) as reader:
        found = [record async for record in reader]
    assert len(found) == len(set(found)), "a record is in the log twice"
    written = set(ledger.written)
    assert set(found) <= written | ledger.maybe, "a record no task wrote"
    present = set(found)
    acknowledged = ledger.written[: max(ledger.synced, ledger.closed_with)]
    missing = [r[:20] for r in acknowledged if r not in present]
    assert not missing, f"{len(missing)} acknowledged records lost: {missing[:5]}"
    # Each task's records are in the order it wrote them.
    last: dict[bytes, int] = {}
    for record in found:
        worker, seq = record.split(b".")[:2]
        assert last.get(worker, -1) < int(seq)
        last[worker] = int(seq)
    count("many-task storms, records: storms", 1)
    count("many-task storms, records: acknowledged records checked", len(acknowledged))


async def test_cancelled_flush_leaves_two_buffers(tmp_path) -> None:
    """Issue 13, item 1: a flush cancelled while its write was in the worker
    thread left the writer's two buffers as one object."""
    path = str(tmp_path / "r.log")
    writer = RecordsWriter(path, buffer_size=1 << 30)
    await writer.write(b"first")
    flush = asyncio.ensure_future(writer.flush())
    for _ in range(3):
        await asyncio.sleep(0)  # the write is in the thread by now
    flush.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flush
    expected = [b"first"]

    async def task(n: int) -> None:
        for i in range(200):
            record = f"{n}-{i}".encode() * 50
            await writer.write(record)
            expected.append(record)
            if i % 7 == 0:
                await writer.flush()
            if i % 31 == 0:
                await writer.sync()

    await asyncio.gather(*(task(n) for n in range(10)))
    await writer.sync()
    await writer.close()
    async with RecordsReader(path, strict=True) as reader:
        found = [record async for record in reader]
    assert sorted(found) == sorted(expected)


async def test_sync_after_close_is_refused(tmp_path) -> None:
    """A sync() that could not run before close() says so: it never syncs a
    closed descriptor."""
    path = str(tmp_path / "r.log")
    writer = RecordsWriter(path)
    await writer.write(b"x" * 100)
    sync = asyncio.ensure_future(writer.sync())
    await writer.close()
    with pytest.raises(ClosedError):
        await sync


# ----------------------------------------------------------------------
# Archives


class ArchiveLedger:
    def __init__(self) -> None:
        self.tried: dict[str, bytes] = {}  # every append begun
        self.acknowledged: dict[str, bytes] = {}  # its block exited cleanly


def archive_worker(archive: Archive, ledger: ArchiveLedger):
    async def work(storm: Storm, worker_id: int, seqs: Iterator[int]) -> None:
        rng = random.Random(storm.rng.random())
        for seq in seqs:
            action = rng.random()
            if action < 0.55:
                name = f"w{worker_id}/{seq}"
                data = f"{name} ".encode() * rng.choice((1, 100, 5_000, 120_000))
                ledger.tried[name] = data
                compression = rng.choice((None, "gzip", "zstd"))
                async with archive.append(name, compression=compression) as out:
                    step = rng.choice((len(data), 4096, 1 << 20))
                    for at in range(0, len(data), step):
                        await out.write(data[at : at + step])
                    if rng.random() < 0.05:
                        raise _GaveUp
                ledger.acknowledged[name] = data
            elif action < 0.7:
                before = set(ledger.acknowledged)
                entries = await archive.contents()
                names = {entry.name for entry in entries}
                assert before - names == set(), "the listing lost an entry"
            elif action < 0.9 and ledger.acknowledged:
                name = rng.choice(list(ledger.acknowledged))
                assert await archive.read_bytes(name) == ledger.acknowledged[name]
            elif archive.mode != "rdonly":
                await archive.sync()

    async def guarded(storm: Storm, worker_id: int) -> None:
        seqs = itertools.count()  # names stay unique after a restart
        while True:
            try:
                await work(storm, worker_id, seqs)
            except _GaveUp:
                storm.note("append given up in its block")

    return guarded


class _GaveUp(Exception):
    """Raised inside an append block on purpose: no entry may appear."""


@pytest.mark.parametrize("seed", range(STORMS))
async def test_archive_storm(seed: int, tmp_path) -> None:
    path = str(tmp_path / "storm.gar")
    rng = random.Random(seed)
    mode = rng.choice(("rdwr", "rdwr_exclusive"))
    archive = await Archive.open(path, mode=mode, durable=rng.random() < 0.3)
    ledger = ArchiveLedger()
    storm = Storm(rng, path)
    await run_storm(
        storm,
        archive_worker(archive, ledger),
        archive.close,
        acknowledged=lambda: len(ledger.acknowledged),
    )
    async with Archive.open(path) as reader:
        entries = await reader.contents()  # no damage: raises otherwise
        names = [entry.name for entry in entries]
        assert len(names) == len(set(names)), "an entry appears twice"
        assert set(names) <= set(ledger.tried), "an entry no task appended"
        missing = set(ledger.acknowledged) - set(names)
        assert not missing, f"acknowledged entries lost: {sorted(missing)[:5]}"
        for entry in entries:
            assert await reader.read_bytes(entry) == ledger.tried[entry.name]
    count("many-task storms, archive: storms", 1)
    count("many-task storms, archive: acknowledged entries", len(ledger.acknowledged))


async def test_append_waiting_for_the_lock_stops_at_close(tmp_path) -> None:
    """Issue 13, item 2: an append polling for the append lock went on with
    the number of the descriptor close() had closed, took locks on the file
    that got that number next and truncated it."""
    path = str(tmp_path / "a.gar")
    holder = await Archive.open(path, mode="rdwr")
    waiter = await Archive.open(path, mode="rdwr")
    async with holder.append("held") as out:
        await out.write(b"x")
        task = asyncio.ensure_future(_append(waiter, "late", b"y" * 100))
        for _ in range(20):
            await asyncio.sleep(0)  # the append is polling by now
        assert not task.done()
        await waiter.close()
        other = tmp_path / "unrelated"
        other.write_bytes(b"u" * 14_000)
        fd = os.open(other, os.O_RDWR)  # most likely the number just freed
        try:
            for _ in range(5):  # the poll comes round again
                await asyncio.sleep(0.06)  # one back-off interval, not a sync
        finally:
            os.close(fd)
    with pytest.raises(ClosedError):
        await task
    assert other.read_bytes() == b"u" * 14_000
    await holder.close()
    async with Archive.open(path) as reader:
        assert [e.name for e in await reader.contents()] == ["held"]


async def test_closing_under_an_open_append_raises(tmp_path) -> None:
    """Issue 13, item 3: closing the archive while an append block was open
    made the block exit as if it had succeeded, with no entry."""
    path = str(tmp_path / "a.gar")
    archive = await Archive.open(path, mode="rdwr")

    async def append_and_close() -> None:
        async with archive.append("e") as out:
            await out.write(b"data")
            await archive.close()

    with pytest.raises(ClosedError, match="not added"):
        await append_and_close()
    async with Archive.open(path) as reader:
        assert await reader.contents() == []


async def _append(archive: Archive, name: str, data: bytes) -> None:
    async with archive.append(name) as out:
        await out.write(data)


# ----------------------------------------------------------------------
# Capture files


class CaptureLedger:
    def __init__(self) -> None:
        self.tried: set[bytes] = set()  # every record handed to the file
        self.numbered: dict[int, bytes] = {}  # add_record returned its number
        self.acknowledged: dict[int, bytes] = {}  # committed, as far as told
        self.added_order: list[int] = []  # numbers, as add_record returned


def capture_worker(cf: CaptureFile, ledger: CaptureLedger):
    async def work(storm: Storm, worker_id: int) -> None:
        rng = random.Random(storm.rng.random())
        for seq in itertools.count():
            action = rng.random()
            record = f"{worker_id}.{seq}.".encode() * rng.choice((1, 20, 2000))
            if action < 0.45:
                ledger.tried.add(record)
                number = await cf.add_record(record)
                ledger.numbered[number] = record
                ledger.added_order.append(number)
            elif action < 0.6:
                upto = len(ledger.added_order)
                await cf.commit()
                for number in ledger.added_order[:upto]:
                    ledger.acknowledged[number] = ledger.numbered[number]
            elif action < 0.75:
                ledger.tried.add(record)
                number = await cf.append(record)
                ledger.numbered[number] = record
                ledger.acknowledged[number] = record
            elif action < 0.82:
                batch = [record + b"%d" % n for n in range(rng.randint(1, 5))]
                ledger.tried.update(batch)
                last = await cf.append_batch(batch)
                for n, data in enumerate(batch):
                    ledger.numbered[last - len(batch) + 1 + n] = data
                    ledger.acknowledged[last - len(batch) + 1 + n] = data
            elif action < 0.95 and ledger.acknowledged:
                number = rng.choice(list(ledger.acknowledged))
                assert await cf.record_at(number) == ledger.acknowledged[number]
            else:
                await cf.set_metadata(b"%d" % seq)

    return work


@pytest.mark.parametrize("seed", range(STORMS))
async def test_capture_storm(seed: int, tmp_path) -> None:
    path = str(tmp_path / "storm.capture")
    rng = random.Random(seed)
    cf = CaptureFile(
        path,
        to_write=True,
        force_new_empty_file=True,
        encoding=None,
        compression=rng.choice(("zstd", "zlib")),
        durable=rng.random() < 0.5,
    )
    await cf.open(to_write=True)
    ledger = CaptureLedger()
    storm = Storm(rng, path)
    await run_storm(
        storm,
        capture_worker(cf, ledger),
        cf.close,
        expected=(CaptureFileNotOpen, ClosedError),
        acknowledged=lambda: len(ledger.acknowledged),
    )
    reader = await CaptureFile(path, encoding=None)
    try:
        count_now = reader.record_count()
        assert max(ledger.acknowledged, default=0) <= count_now
        for number in range(1, count_now + 1):
            data = await reader.record_at(number)
            assert data in ledger.tried, f"record {number}: no task wrote it"
            if number in ledger.numbered:
                assert data == ledger.numbered[number], number
        records = [r async for r in reader.record_generator()]
        assert len(records) == count_now
        assert len(set(records)) == len(records), "a record is there twice"
    finally:
        await reader.close()
    count("many-task storms, capture: storms", 1)
    count("many-task storms, capture: acknowledged records", len(ledger.acknowledged))


class CloseWatch:
    """Notes when the I/O layer closes ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.closed = False

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if operation == "close" and path == self.path:
            self.closed = True


@pytest.mark.parametrize("fmt", ["records", "archive", "capture"])
async def test_a_second_close_waits_for_the_first(fmt: str, tmp_path) -> None:
    """Two tasks close one object while a write is out: neither returns
    before the descriptor is closed."""
    path = str(tmp_path / f"x.{fmt}")
    if fmt == "records":
        obj = RecordsWriter(path)
        await obj.write(b"x" * 2_000_000)  # a flush goes to a thread
        work = asyncio.ensure_future(obj.sync())
    elif fmt == "archive":
        obj = await Archive.open(path, mode="rdwr", durable=True)
        work = asyncio.ensure_future(_append(obj, "e", b"y" * 3_000_000))
    else:
        obj = CaptureFile(path, to_write=True, force_new_empty_file=True)
        await obj.open(to_write=True)
        for _ in range(2000):
            await obj.add_record(b"z" * 1000)
        work = asyncio.ensure_future(obj.commit())
    await asyncio.sleep(0)
    watch = CloseWatch(path)
    _io.add_observer(watch)
    try:
        first = asyncio.ensure_future(obj.close())
        await asyncio.sleep(0)
        await obj.close()
        assert watch.closed, "the second close() returned before the file closed"
        await first
    finally:
        _io.remove_observer(watch)
    await asyncio.gather(work, return_exceptions=True)


def reader_worker(reader: RecordsReader, records: list[bytes]):
    known = set(records)

    async def work(storm: Storm, worker_id: int) -> None:
        rng = random.Random(storm.rng.random())
        while True:
            action = rng.random()
            if action < 0.4:
                try:
                    record = await reader.read()
                except EOFError:
                    await reader.seek(0)
                    continue
                assert record in known, "a record that was never written"
                storm.note("read")
            elif action < 0.6:
                async for record in reader:
                    assert record in known, "a record that was never written"
                    if rng.random() < 0.1:
                        break
            elif action < 0.8:
                await reader.seek(rng.randrange(0, 200_000))
            else:
                await reader.tell()

    return work


@pytest.mark.parametrize("seed", range(STORMS // 4))
async def test_records_reader_storm(seed: int, tmp_path) -> None:
    """Many tasks reading, seeking and iterating one reader, cancelled at
    random, closed at a random moment: only records that were written, and
    no call on the file once the close has begun."""
    path = str(tmp_path / "r.log")
    rng = random.Random(seed)
    records = [b"%d." % n * rng.choice((1, 300, 9000)) for n in range(300)]
    async with RecordsWriter(path) as writer:
        await writer.write_many(records)
    reader = RecordsReader(path, read_size=32768 * rng.choice((1, 4)))
    storm = Storm(rng, path)
    await run_storm(storm, reader_worker(reader, records), reader.close)
    count("many-task storms, records reader: storms", 1)


# ----------------------------------------------------------------------
# Archive entries streamed by many tasks


def stream_worker(archive: Archive, entries: dict[str, bytes]):
    """Each worker streams whole entries with reads of random sizes, and
    checks every chunk against the bytes at its place in the entry."""

    async def work(storm: Storm, worker_id: int) -> None:
        rng = random.Random(storm.rng.random())
        while True:
            name = rng.choice(sorted(entries))
            data = entries[name]
            got = 0
            async with archive.read(name) as stream:
                while True:
                    how = rng.random()
                    if how < 0.4:
                        chunk = await stream.read1(
                            rng.choice((1, 777, 70_000, 1 << 20))
                        )
                    elif how < 0.7:
                        chunk = await stream.read(rng.choice((5, 300_000, 2_500_000)))
                    else:
                        chunk = await stream.__anext__() if got < len(data) else b""
                    assert chunk == data[got : got + len(chunk)], (
                        f"{name}: wrong bytes at {got}"
                    )
                    got += len(chunk)
                    if not chunk:
                        break
            assert got == len(data), f"{name}: {got} of {len(data)} bytes"
            storm.note("entry streamed whole")
            count("many-task storms, archive streams: entries streamed whole", 1)

    return work


@pytest.mark.parametrize("seed", range(STORMS // 4))
async def test_archive_stream_storm(seed: int, tmp_path) -> None:
    """Many tasks streaming the same large entries of one archive, in
    pieces of every size, cancelled at random and closed at a random
    moment: every chunk any of them gets is the entry's own bytes at its
    place (incompressible data, in zstd raw blocks and deflate stored
    blocks, with the trailer magic's run planted in it so that version 2
    stuffs it)."""
    path = str(tmp_path / "streams.gar")
    rng = random.Random(seed)
    run = b"\xe5\x01GAR trailer v"
    entries = {}
    async with Archive.open(path, mode="rdwr_exclusive") as archive:
        for name, compression, size in (
            ("zstd", "zstd", 3 * (1 << 20) + 4321),
            ("gzip", "gzip", 2 * (1 << 20) + 17),
            ("stored", None, (1 << 20) + 5),
            ("small zstd", "zstd", 3000),
        ):
            data = bytearray(rng.randbytes(size))
            for at in range(rng.randrange(1 << 16), size - len(run), 200_003):
                data[at : at + len(run)] = run
            entries[name] = bytes(data)
            async with archive.append(name, compression=compression) as out:
                await out.write(entries[name])
    reader = await Archive.open(path)
    storm = Storm(rng, path)
    await run_storm(
        storm,
        stream_worker(reader, entries),
        reader.close,
        tasks=6,
        acknowledged=lambda: storm.outcomes.get("entry streamed whole", 0),
    )
    count("many-task storms, archive streams: storms", 1)
