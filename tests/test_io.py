"""The one I/O layer: positional I/O, syncs, locks, durable creation, threads."""

from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

from aiorecords import StorageError, _io


@pytest.fixture
def file(tmp_path):
    name = str(tmp_path / "data")
    with open(name, "wb"):
        pass
    io = _io.open_file(name, writable=True)
    yield io
    io.close()


def test_positional_reads_and_writes(file: _io.FileIO) -> None:
    file.pwrite(10, b"hello")
    file.pwrite(0, memoryview(b"0123456789"))
    assert file.pread(0, 15) == b"0123456789hello"
    assert file.pread(12, 100) == b"llo"  # short only at the end of the file
    assert file.pread(100, 10) == b""
    assert file.size() == 15
    file.truncate(20)
    assert file.pread(15, 5) == bytes(5)
    file.datasync()
    file.sync()


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="preadv2 RWF_NOWAIT")
def test_cached_reads_never_wait_for_the_disk(file: _io.FileIO) -> None:
    data = os.urandom(5 * 4096)
    file.pwrite(0, data)
    assert file.read_cached(0, 8192) == data[:8192]  # just written: cached
    assert file.read_cached(len(data) - 100, 4096) == data[-100:]
    assert file.read_cached(len(data), 10) == b""  # the end of the file
    file.datasync()
    os.posix_fadvise(file.fd, 0, 0, os.POSIX_FADV_DONTNEED)
    # Dropped from the cache (where the file system lets it go): refused,
    # never waited for. A thread's read brings it back.
    assert file.read_cached(4096, 4096) in (None, data[4096:8192])
    assert file.pread(4096, 4096) == data[4096:8192]
    assert file.read_cached(4096, 4096) == data[4096:8192]
    previous = _io.allow_cached_reads(False)
    try:
        assert file.read_cached(0, 10) is None
    finally:
        _io.allow_cached_reads(previous)


def test_a_cached_read_fails_as_a_storage_error(file: _io.FileIO) -> None:
    file.pwrite(0, b"data")

    def fail(operation: str, path: str, offset: int, length: int) -> None:
        raise OSError(errno.EIO, "injected")

    _io.add_observer(fail)
    try:
        with pytest.raises(StorageError) as caught:
            file.read_cached(0, 4)
    finally:
        _io.remove_observer(fail)
    assert caught.value.errno == errno.EIO


def test_failures_are_storage_errors(tmp_path) -> None:
    name = str(tmp_path / "ro")
    with open(name, "wb") as f:
        f.write(b"x")
    io = _io.open_file(name, writable=False)
    with pytest.raises(StorageError) as caught:
        io.pwrite(0, b"y")
    assert caught.value.errno == errno.EBADF
    assert caught.value.operation == "pwrite"
    assert caught.value.filename == name
    assert isinstance(caught.value, OSError)
    assert "pwrite failed" in str(caught.value)
    io.close()
    io.close()  # idempotent
    assert io.closed


def test_missing_file_is_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        _io.open_file(str(tmp_path / "missing"), writable=False)


def test_observers_see_every_call_and_can_fail_it(file: _io.FileIO) -> None:
    seen: list[tuple[str, int, int]] = []

    def watch(operation: str, path: str, offset: int, length: int) -> None:
        seen.append((operation, offset, length))
        if operation == "fdatasync":
            raise OSError(errno.EIO, "injected")

    _io.add_observer(watch)
    try:
        file.pwrite(7, b"abc")
        file.pread(0, 4)
        with pytest.raises(StorageError, match="injected") as caught:
            file.datasync()
    finally:
        _io.remove_observer(watch)
    assert caught.value.errno == errno.EIO
    assert seen == [("pwrite", 7, 3), ("pread", 0, 4), ("fdatasync", 0, 0)]


def test_open_file_description_locks(tmp_path) -> None:
    name = str(tmp_path / "locked")
    with open(name, "wb"):
        pass
    first = _io.open_file(name, writable=True)
    second = _io.open_file(name, writable=True)
    assert first.lock(100, 1, exclusive=True, wait=False)
    # Two descriptors in one process exclude each other ...
    assert not second.lock(100, 1, exclusive=True, wait=False)
    assert not second.lock(100, 1, exclusive=False, wait=False)
    # ... and closing some other descriptor of the file keeps the lock
    # (a POSIX lockf lock would be lost here).
    third = _io.open_file(name, writable=False)
    third.close()
    assert not second.lock(100, 1, exclusive=True, wait=False)
    assert second.lock(101, 10, exclusive=True, wait=False)  # other bytes are free
    first.unlock(100, 1)
    assert second.lock(100, 1, exclusive=False, wait=False)
    assert first.lock(100, 1, exclusive=False, wait=False)  # shared locks coexist
    first.close()
    second.close()


def test_closing_releases_locks(tmp_path) -> None:
    name = str(tmp_path / "locked")
    with open(name, "wb"):
        pass
    first = _io.open_file(name, writable=True)
    first.lock(0, 1, exclusive=True, wait=False)
    first.close()
    second = _io.open_file(name, writable=True)
    assert second.lock(0, 1, exclusive=True, wait=False)
    second.close()


def test_dropped_file_gives_back_its_descriptor(tmp_path) -> None:
    name = str(tmp_path / "dropped")
    with open(name, "wb"):
        pass
    io = _io.open_file(name, writable=True)
    fd = io.fd
    # Closed, and said so: a leak the test suite (warnings as errors) sees.
    with pytest.warns(ResourceWarning, match="left open"):
        del io
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_durable_creation_helpers(tmp_path) -> None:
    target = str(tmp_path / "target")
    temp = _io.create_temp_beside(target)
    assert os.path.dirname(temp.path) == str(tmp_path)
    assert os.path.basename(temp.path).startswith(".target.")
    temp.pwrite(0, b"complete")
    temp.sync()
    _io.replace(temp.path, target)
    _io.sync_directory(target)
    temp.close()
    with open(target, "rb") as f:
        assert f.read() == b"complete"
    assert os.listdir(tmp_path) == ["target"]
    _io.unlink_quietly(target)
    _io.unlink_quietly(target)  # already gone: no error
    assert os.listdir(tmp_path) == []


async def test_run_to_completion_never_abandons_the_thread() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = []

    def work() -> str:
        started.set()
        assert release.wait(10)
        finished.append(True)
        return "result"

    task = asyncio.create_task(_io.run_to_completion(work))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.05)
    assert not done  # still waiting for the thread
    task.cancel()  # cancelling again changes nothing
    release.set()
    outcome, cancelled = await task
    assert finished == [True]
    assert outcome.unwrap() == "result"
    assert isinstance(cancelled, asyncio.CancelledError)


async def test_offload_raises_the_threads_error_or_the_cancellation() -> None:
    def fail() -> None:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        await _io.offload(fail)
    assert await _io.offload(sum, [1, 2, 3]) == 6

    release = threading.Event()
    done = []

    def slow() -> None:
        assert release.wait(10)
        done.append(1)

    task = asyncio.create_task(_io.offload(slow))
    await asyncio.sleep(0)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == [1]


async def test_worker_pool_is_per_process() -> None:
    name = await _io.offload(lambda: threading.current_thread().name)
    assert name.startswith("aiorecords-io")
