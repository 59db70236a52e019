"""Durable event appends: group commit, append, append_batch, back-pressure,
optimistic concurrency, and live follow."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aiorecords import (
    CaptureFile,
    ConflictError,
    RecordsReader,
    RecordsWriter,
    StorageError,
    WriterFailedError,
    _io,
    _watch,
)
from aiorecords.capture._layout import HEADER_SIZE, Layout, decode_header

WORKER = str(Path(__file__).parent.parent / "helpers" / "capture_worker.py")


class Gate:
    """Holds the worker thread at its first fdatasync until opened."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.open = threading.Event()

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if operation == "fdatasync" and not self.reached.is_set():
            self.reached.set()
            assert self.open.wait(10)

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 10)


@pytest.fixture
def gate():
    held = Gate()
    _io.add_observer(held)
    try:
        yield held
    finally:
        held.open.set()
        _io.remove_observer(held)


def layout_of(cf: CaptureFile) -> Layout:
    """The layout of a capture file, from its first page (the core's
    decoder: no private attribute of the object)."""
    with open(cf.file_name, "rb") as f:
        return decode_header(f.read(HEADER_SIZE))


def commits_made(io_trace, cf: CaptureFile) -> int:
    """Commits seen by the trace: writes of a master node."""
    slots = layout_of(cf).slots
    return sum(
        1 for op, _, offset, _ in io_trace.calls if op == "pwrite" and offset in slots
    )


async def test_a_lone_commit_starts_at_once(path: str, io_trace) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("one")
        io_trace.clear()
        await cf.commit()
        assert io_trace.operations("fdatasync") == ["fdatasync"]
        assert len([c for c in io_trace.calls if c[0] == "pwrite"]) == 1


async def test_commits_that_come_during_a_commit_share_the_next(
    path: str, gate, io_trace
) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("first")
        first = asyncio.ensure_future(cf.commit())
        await gate.wait_reached()
        # 50 tasks add a record and commit while the first commit syncs.
        io_trace.clear()

        async def add_and_commit(n: int) -> int:
            count = await cf.add_record(f"record {n}")
            await cf.commit()
            return count

        others = [asyncio.ensure_future(add_and_commit(n)) for n in range(50)]
        await asyncio.sleep(0)
        assert cf.record_count() == 51  # added at once, during the commit
        assert not any(task.done() for task in others)
        gate.open.set()
        await first
        counts = await asyncio.gather(*others)
        assert sorted(counts) == list(range(2, 52))
        # The first commit was past its master node's write when the trace
        # was cleared; all 50 shared the one commit after it.
        assert commits_made(io_trace, cf) == 1
    reader = await CaptureFile(path)
    assert reader.record_count() == 51
    await reader.close()


async def test_append_returns_the_number_once_committed(path: str, io_trace) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        assert await cf.append("a") == 1
        assert await cf.append(b"b") == 2
        reader = await CaptureFile(path)
        assert reader.record_count() == 2  # committed: another reader sees it
        assert [r async for r in reader] == ["a", "b"]
        await reader.close()


async def test_many_concurrent_appends_need_few_commits(
    path: str, gate, io_trace
) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        first = asyncio.ensure_future(cf.append("first"))
        await gate.wait_reached()
        io_trace.clear()
        appends = [asyncio.ensure_future(cf.append(f"event {n}")) for n in range(200)]
        await asyncio.sleep(0)
        gate.open.set()
        assert await first == 1
        numbers = await asyncio.gather(*appends)
        assert sorted(numbers) == list(range(2, 202))
        assert commits_made(io_trace, cf) == 1
    reader = await CaptureFile(path)
    got = [r async for r in reader]
    await reader.close()
    assert got[0] == "first"
    assert sorted(got[1:]) == sorted(f"event {n}" for n in range(200))
    # Each number is where its record is.
    assert all(got[number - 1] == f"event {n}" for n, number in enumerate(numbers))


async def test_expected_count_is_optimistic_concurrency(path: str) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        assert await cf.append("created", expected_count=0) == 1
        with pytest.raises(ConflictError) as caught:
            await cf.append("stale", expected_count=0)
        assert (caught.value.expected, caught.value.actual) == (0, 1)
        assert cf.record_count() == 1
        # Two writers read version 1 and race: exactly one wins.
        results = await asyncio.gather(
            cf.append("winner?", expected_count=1),
            cf.append("winner?", expected_count=1),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["ConflictError", "int"]
        assert cf.record_count() == 2
        assert await cf.append_batch(["x", "y"], expected_count=2) == 4
        with pytest.raises(ConflictError):
            await cf.append_batch(["z"], expected_count=2)
        assert cf.record_count() == 4


async def test_a_batch_is_contiguous_and_committed_whole(path: str) -> None:
    async with CaptureFile(path, to_write=True, encoding=None) as cf:
        big = [os.urandom(3000) for _ in range(200)]  # several blocks

        async def single(n: int) -> int:
            return await cf.append(f"single {n}".encode())

        results = await asyncio.gather(
            cf.append_batch(big),
            *(single(n) for n in range(20)),
            cf.append_batch([b"b1", b"b2", b"b3"]),
        )
        last_big, last_small = results[0], results[-1]
        records = [r async for r in cf]
        assert records[last_big - 200 : last_big] == big
        assert records[last_small - 3 : last_small] == [b"b1", b"b2", b"b3"]
    reader = await CaptureFile(path, encoding=None)
    assert reader.record_count() == 223
    await reader.close()


async def test_a_batch_with_a_record_too_large_adds_nothing(path: str) -> None:
    async with CaptureFile(path, to_write=True, max_record_size=100) as cf:
        with pytest.raises(ValueError, match="over the largest"):
            await cf.append_batch(["ok", "x" * 101])
        assert cf.record_count() == 0
        with pytest.raises(TypeError):
            await cf.append(12)  # type: ignore[arg-type]


async def test_back_pressure_bounds_the_appends_waiting(path: str, gate) -> None:
    async with CaptureFile(path, to_write=True, max_pending_appends=10) as cf:
        first = asyncio.ensure_future(cf.append("first"))
        await gate.wait_reached()
        appends = [asyncio.ensure_future(cf.append(f"e{n}")) for n in range(30)]
        for _ in range(5):
            await asyncio.sleep(0)
        # "first" and nine more wait for commits; the other 21 wait for room.
        assert cf.record_count() == 10
        gate.open.set()
        await first
        assert sorted(await asyncio.gather(*appends)) == list(range(2, 32))
        with pytest.raises(ValueError, match="max_pending_appends"):
            CaptureFile(path, max_pending_appends=0)


async def test_a_cancelled_append_waiting_for_room_adds_nothing(
    path: str, gate
) -> None:
    async with CaptureFile(path, to_write=True, max_pending_appends=1) as cf:
        first = asyncio.ensure_future(cf.append("first"))
        await gate.wait_reached()
        waiting = asyncio.ensure_future(cf.append("never"))
        await asyncio.sleep(0)
        assert cf.record_count() == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.open.set()
        await first
        assert [r async for r in cf] == ["first"]


async def test_a_cancelled_append_keeps_its_record_for_the_next_commit(
    path: str, gate
) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        first = asyncio.ensure_future(cf.append("first"))
        await gate.wait_reached()
        second = asyncio.ensure_future(cf.append("second"))
        await asyncio.sleep(0)
        assert cf.record_count() == 2
        second.cancel()  # before its commit started: it stops waiting
        with pytest.raises(asyncio.CancelledError):
            await second
        gate.open.set()
        await first
        reader = await CaptureFile(path)
        assert reader.record_count() == 1
        await cf.commit()
        await reader.refresh()
        assert reader.record_count() == 2
        await reader.close()


async def test_a_failed_commit_fails_every_caller_in_it(path: str) -> None:
    failures = 0

    def fail_second_sync(operation: str, name: str, offset: int, length: int) -> None:
        nonlocal failures
        if operation == "fdatasync" and name.endswith(".capture"):
            failures += 1
            if failures == 1:
                raise OSError(errno.EIO, "I/O error")

    async with CaptureFile(path, to_write=True) as cf:
        _io.add_observer(fail_second_sync)
        try:
            results = await asyncio.gather(
                *(cf.append(f"e{n}") for n in range(10)), return_exceptions=True
            )
        finally:
            _io.remove_observer(fail_second_sync)
        # Those in the failed commit get its error; any that came after it,
        # the refusal of a writer whose file is in an unknown state.
        assert isinstance(results[0], StorageError)
        assert all(isinstance(r, (StorageError, WriterFailedError)) for r in results)
        with pytest.raises(WriterFailedError):
            await cf.append("refused")


# ----------------------------------------------------------------------
# follow()


@pytest.fixture
def no_polling(monkeypatch):
    """Only in-process wake-ups can end a follower's wait (polls take 60 s)."""
    from aiorecords import _watch

    # The one back-off of every format's followers.
    monkeypatch.setattr(_watch, "FOLLOW_FIRST_WAIT", 60.0)
    monkeypatch.setattr(_watch, "FOLLOW_LAST_WAIT", 60.0)


async def take(iterator, n: int) -> list:
    out = []
    async for item in iterator:
        out.append(item)
        if len(out) == n:
            break
    return out


async def test_follow_yields_what_is_there_then_each_commit(
    path: str, no_polling
) -> None:
    async with CaptureFile(path, to_write=True) as writer:
        for n in range(5):
            await writer.add_record(f"old {n}")
        await writer.commit()
        reader = await CaptureFile(path)
        following = reader.follow(3)
        assert await take(following, 3) == ["old 2", "old 3", "old 4"]
        nxt = asyncio.ensure_future(take(following, 2))
        await asyncio.sleep(0)
        assert not nxt.done()
        await writer.add_record("new 0")
        await writer.add_record("new 1")
        for _ in range(5):
            await asyncio.sleep(0)
        assert not nxt.done()  # not committed: not given
        await writer.commit()
        assert await asyncio.wait_for(nxt, 10) == ["new 0", "new 1"]
        await following.aclose()
        await reader.close()
    assert _watch._watches == {}


async def test_a_writer_following_itself_sees_only_commits(
    path: str, no_polling
) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        following = cf.follow()
        await cf.add_record("pending")
        nxt = asyncio.ensure_future(take(following, 1))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not nxt.done()
        await cf.commit()
        assert await asyncio.wait_for(nxt, 10) == ["pending"]
        assert [await cf.append(f"e{n}") for n in range(3)] == [2, 3, 4]
        assert await asyncio.wait_for(take(following, 3), 10) == ["e0", "e1", "e2"]
        await following.aclose()


async def test_follow_from_beyond_the_end_waits_for_that_record(
    path: str, no_polling
) -> None:
    async with CaptureFile(path, to_write=True) as writer:
        reader = await CaptureFile(path)
        task = asyncio.ensure_future(take(reader.follow(3), 1))
        await writer.append("1")
        await writer.append("2")
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        await writer.append("3")
        assert await asyncio.wait_for(task, 10) == ["3"]
        with pytest.raises(IndexError):
            reader.follow(0)
        await reader.close()


async def test_cancelling_a_follower_ends_it_cleanly(path: str) -> None:
    async with CaptureFile(path, to_write=True) as writer:
        await writer.append("only")
        reader = await CaptureFile(path)

        async def consume(seen: list[str]) -> None:
            async for record in reader.follow():
                seen.append(record)

        seen: list[str] = []
        task = asyncio.ensure_future(consume(seen))
        while not seen:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["only"]
        assert _watch._watches == {}
        await reader.close()


async def test_follow_sees_another_process_commits_in_order(path: str) -> None:
    async with CaptureFile(path, to_write=True):
        pass
    reader = await CaptureFile(path)
    producer = subprocess.Popen(
        [sys.executable, WORKER, "writer", path, "40", "25", "0", "zstd"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sys.path.insert(0, str(Path(WORKER).parent))
    from capture_worker import record

    try:
        got = await asyncio.wait_for(take(reader.follow(), 1000), 120)
    finally:
        _, err = producer.communicate(timeout=120)
    assert producer.returncode == 0, err
    assert got == [record(n) for n in range(1, 1001)]
    await reader.close()


async def test_records_follow_is_woken_by_a_writer_here(
    tmp_path: Path, no_polling
) -> None:
    log = str(tmp_path / "live.log")
    async with RecordsWriter(log, pad_last_block=False) as writer:
        await writer.write(b"first")
        await writer.flush()
        async with RecordsReader(log) as reader:
            following = reader.follow()
            assert await asyncio.wait_for(take(following, 1), 10) == [b"first"]
            nxt = asyncio.ensure_future(take(following, 2))
            await asyncio.sleep(0)
            await writer.write(b"second")
            await writer.write(b"third")
            for _ in range(5):
                await asyncio.sleep(0)
            assert not nxt.done()  # buffered, not yet in the file
            await writer.flush()
            assert await asyncio.wait_for(nxt, 10) == [b"second", b"third"]
            await following.aclose()
    assert _watch._watches == {}


async def test_a_small_commit_rewrites_only_the_master_pages_that_changed(
    path: str, io_trace
) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        for n in range(4):  # both slots have been written whole by now
            await cf.append("x" * 100 + str(n))
        layout = layout_of(cf)
        io_trace.clear()
        await cf.append("one more small event")
        master = [
            (offset, length)
            for op, _, offset, length in io_trace.calls
            if op == "pwrite"
        ]
        written = sum(length for _, length in master)
        assert written <= 2 * layout.page_size < layout.master_size
    # The file is what whole writes would have made: both libraries agree.
    reader = await CaptureFile(path)
    assert reader.record_count() == 5
    assert await reader.record_at(5) == "one more small event"
    await reader.close()
