"""What commit() writes and syncs, in what order; faults; cancellation."""

from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

from aiorecords import CaptureFile, StorageError, WriterFailedError, _io
from aiorecords.capture._layout import Layout

V2 = Layout(native=False)


def records(count: int) -> list[str]:
    return [f"record {n} " + "x" * (n % 50) for n in range(count)]


async def test_commit_syncs_data_then_master(path: str, io_trace) -> None:
    async with CaptureFile(path, to_write=True, compression="zlib") as cf:
        for record in records(3000):  # several blocks
            await cf.add_record(record)
        io_trace.clear()
        await cf.commit()
        calls = [
            c for c in io_trace.calls if c[0] in ("pwrite", "fdatasync", "truncate")
        ]
        kinds = [c[0] for c in calls]
        assert kinds[-3:] == ["fdatasync", "pwrite", "fdatasync"]
        assert set(kinds[:-3]) == {"pwrite"}
        assert all(c[2] >= V2.data_start for c in calls[:-3])  # data pages
        master = calls[-2]
        assert master[2] in V2.slots
        assert master[3] == V2.master_size


async def test_a_commit_without_new_pages_syncs_once(path: str, io_trace) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("small")
        io_trace.clear()
        await cf.commit()
        assert io_trace.operations("pwrite", "fdatasync", "fsync") == [
            "pwrite",
            "fdatasync",
        ]


async def test_not_durable_never_syncs(path: str, io_trace) -> None:
    async with CaptureFile(path, to_write=True, durable=False) as cf:
        for record in records(3000):
            await cf.add_record(record)
        await cf.commit()
    assert not io_trace.operations("fsync", "fdatasync", "fsync_dir")
    cf = await CaptureFile(path)
    assert cf.record_count() == 3000
    await cf.close()


async def test_new_file_is_built_aside_synced_and_renamed(path: str, io_trace) -> None:
    async with CaptureFile(path, to_write=True, initial_metadata=b"m"):
        pass
    ops = [
        (op, name) for op, name, _, _ in io_trace.calls if op not in ("pread", "lock")
    ]
    created = ops[0][1]
    assert ops[0][0] == "create"
    assert created.startswith(".test.capture.")
    assert created.endswith(".tmp")
    sequence = [op for op, _ in ops]
    assert (
        sequence.index("fsync") < sequence.index("rename") < sequence.index("fsync_dir")
    )
    assert os.listdir(os.path.dirname(path)) == ["test.capture"]


async def test_a_failed_creation_leaves_nothing(path: str) -> None:
    def fail_rename(operation: str, name: str, offset: int, length: int) -> None:
        if operation == "rename":
            raise OSError(errno.EIO, "injected")

    _io.add_observer(fail_rename)
    try:
        with pytest.raises(StorageError):
            await CaptureFile(path, to_write=True)
    finally:
        _io.remove_observer(fail_rename)
    assert os.listdir(os.path.dirname(path)) == []
    async with CaptureFile(path, to_write=True):  # and the path is free again
        pass


class FailAt:
    """An I/O observer that fails the ``nth`` call of ``operation``."""

    def __init__(self, operation: str, nth: int, code: int = errno.EIO) -> None:
        self.operation = operation
        self.remaining = nth
        self.code = code

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if operation == self.operation:
            self.remaining -= 1
            if self.remaining == 0:
                raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize(
    ("operation", "code"),
    [("fdatasync", errno.EIO), ("pwrite", errno.ENOSPC), ("fdatasync", errno.ENOSPC)],
)
@pytest.mark.parametrize("nth", [1, 2])
async def test_a_failed_commit_poisons_the_writer(
    path: str, operation: str, code: int, nth: int
) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        for record in records(500):
            await cf.add_record(record)
        await cf.commit()
        for record in records(3000):
            await cf.add_record(record)
        fault = FailAt(operation, nth, code)
        _io.add_observer(fault)
        try:
            with pytest.raises(StorageError) as caught:
                await cf.commit()
        finally:
            _io.remove_observer(fault)
        assert caught.value.errno == code
        assert isinstance(caught.value, OSError)
        assert caught.value.operation == operation
        # Never retry after a failed sync: the writer refuses until reopened.
        with pytest.raises(WriterFailedError):
            await cf.commit()
        with pytest.raises(WriterFailedError):
            await cf.add_record("more")
    cf = await CaptureFile(path)
    # The first commit at least; the second only if its master node got out.
    assert cf.record_count() in (500, 3500)
    assert await cf.record_at(500) == records(500)[-1]
    await cf.close()
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("after reopening")
        await cf.commit()


class Gate:
    """Holds the worker thread at one I/O operation until the test opens it."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.reached = threading.Event()
        self.open = threading.Event()
        self.calls_after_close: list[str] = []
        self.closed = False

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if self.closed:
            self.calls_after_close.append(operation)
        if operation == self.operation and not self.reached.is_set():
            self.reached.set()
            assert self.open.wait(10)

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 10)


@pytest.fixture
def gate():
    gates: list[Gate] = []

    def make(operation: str) -> Gate:
        g = Gate(operation)
        gates.append(g)
        _io.add_observer(g)
        return g

    yield make
    for g in gates:
        g.open.set()
        _io.remove_observer(g)


async def test_cancelled_commit_in_its_worker_completes(path: str, gate) -> None:
    cf = await CaptureFile(path, to_write=True)
    for record in records(2000):
        await cf.add_record(record)
    held = gate("fdatasync")
    task = asyncio.create_task(cf.commit())
    await held.wait_reached()
    task.cancel()
    # The task cannot finish while the worker still writes.
    done, _ = await asyncio.wait({task}, timeout=0.05)
    assert not done
    held.open.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The commit reached the file, and the object is still usable.
    reader = await CaptureFile(path)
    assert reader.record_count() == 2000
    await reader.close()
    await cf.add_record("next")
    await cf.commit()
    await cf.close()
    reader = await CaptureFile(path)
    assert reader.record_count() == 2001
    await reader.close()


async def test_commit_cancelled_before_its_worker_commits_nothing(
    path: str, gate
) -> None:
    cf = await CaptureFile(path, to_write=True)
    await cf.add_record("first")
    held = gate("fdatasync")
    first = asyncio.create_task(cf.commit())
    await held.wait_reached()
    # While the commit is in its worker, an add does not wait for it (the
    # record joins the writer when the commit is done); a second commit
    # waits for its turn, and is cancelled before it gets it.
    assert await cf.add_record("second") == 2
    assert cf.record_count() == 2
    second = asyncio.create_task(cf.commit())
    await asyncio.sleep(0)  # it starts, and queues behind the first commit
    assert not second.done()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    held.open.set()
    await first
    reader = await CaptureFile(path)
    assert [r async for r in reader] == ["first"]
    await reader.close()
    await cf.commit()  # the pending record is still there
    await cf.close()
    reader = await CaptureFile(path)
    assert [r async for r in reader] == ["first", "second"]
    await reader.close()


async def test_close_waits_for_work_in_flight(path: str, gate) -> None:
    cf = await CaptureFile(path, to_write=True)
    for record in records(2000):
        await cf.add_record(record)
    held = gate("pwrite")
    commit = asyncio.create_task(cf.commit())
    await held.wait_reached()
    closing = asyncio.create_task(cf.close())
    done, _ = await asyncio.wait({closing}, timeout=0.05)
    assert not done
    held.open.set()
    await closing
    held.closed = True
    assert commit.done()
    await commit  # it finished its commit before the file was closed
    await asyncio.sleep(0.05)
    assert held.calls_after_close == []
    reader = await CaptureFile(path)
    assert reader.record_count() == 2000
    await reader.close()


async def test_cancelled_add_record_keeps_the_record(
    path: str, gate, monkeypatch
) -> None:
    from aiorecords.capture import _writer as capture_writer

    monkeypatch.setattr(capture_writer, "FLUSH_BLOCKS", 2)
    cf = await CaptureFile(path, to_write=True)
    held = gate("pwrite")
    count = 0
    task = None
    while task is None:
        count += 1
        attempt = asyncio.create_task(cf.add_record(os.urandom(1000)))
        await asyncio.sleep(0)
        if not attempt.done():
            task = attempt  # this one is flushing
    await held.wait_reached()
    task.cancel()
    held.open.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cf.record_count() == count
    await cf.commit()
    await cf.close()
    reader = await CaptureFile(path)
    assert reader.record_count() == count
    await reader.close()


async def test_memory_stays_bounded_between_commits(path: str) -> None:
    """Full blocks go to disk as they fill, even with no commit for 64 MiB."""
    import tracemalloc

    async with CaptureFile(path, to_write=True, encoding=None) as cf:
        tracemalloc.start()
        try:
            for _ in range(16_384):
                await cf.add_record(os.urandom(4096))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024 * 1024
        assert os.path.getsize(path) > 64 * 1024 * 1024  # it went to the file
        await cf.commit()
    cf = await CaptureFile(path)
    assert cf.record_count() == 16_384
    await cf.close()
