"""Injected I/O faults (SQLite-style): fail the Nth write-side I/O call.

A small workload per format runs once to count its write-side calls (write,
fdatasync/fsync, truncate, rename, link, directory fsync, create). Then, for
every N, it runs again with call N failing with EIO or ENOSPC, once or
persistently (every call from N on). Each run must:

- surface the failure as a typed error (:class:`~aiorecords.StorageError` or
  :class:`~aiorecords.errors.WriterFailedError`), never anything else;
- after a failed write or sync, refuse further writes on that handle with
  ``WriterFailedError`` (a sync is never retried: the kernel may have dropped
  the dirty pages), and still close;
- reopen, with the faults gone, at a valid commit at or after the last one
  acknowledged and at or before the last one attempted.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from aiorecords import (
    AiorecordsError,
    Archive,
    CaptureFile,
    RecordsReader,
    RecordsWriter,
    StorageError,
    _io,
)
from aiorecords.errors import InvalidCaptureFile, WriterFailedError

from .conftest import count

WRITE_SIDE = frozenset(
    {
        "pwrite",
        "fdatasync",
        "fsync",
        "truncate",
        "rename",
        "link",
        "fsync_dir",
        "create",
    }
)
COMMITS = 8


@dataclass
class Faults:
    """An I/O observer that fails call number ``fail_at`` (counting from 1)
    of the write-side calls on files under ``directory``."""

    directory: str
    fail_at: int = 0
    persistent: bool = False
    code: int = errno.EIO
    calls: int = 0
    injected: list[str] = field(default_factory=list)

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if operation not in WRITE_SIDE or not path.startswith(self.directory):
            return
        self.calls += 1
        if self.fail_at and (
            self.calls == self.fail_at
            or (self.persistent and self.calls > self.fail_at)
        ):
            self.injected.append(operation)
            raise OSError(self.code, os.strerror(self.code))

    def __enter__(self) -> Faults:
        _io.add_observer(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _io.remove_observer(self)


@dataclass
class Outcome:
    acked: int = 0  # the last commit that returned
    attempted: int = 0  # the last commit started
    errors: list[BaseException] = field(default_factory=list)


def payload(commit: int, n: int) -> bytes:
    size = 10 + (commit * 7919 + n * 104729) % 3000
    return (f"{commit}.{n};".encode() * size)[:size]


def per_commit(commit: int) -> int:
    return 1 + commit % 5


SYNCS = frozenset({"fdatasync", "fsync", "fsync_dir"})


async def after_failure(
    outcome: Outcome, attempt: Callable[[], Awaitable[object]]
) -> None:
    """After a failed sync the handle refuses further writes (a sync is never
    retried). A failed write or truncate may leave it usable, if it could put
    the file back as it was; the check after reopening covers that case."""
    failed = outcome.errors[-1]
    if isinstance(failed, StorageError) and failed.operation in SYNCS:
        with pytest.raises(WriterFailedError):
            await attempt()


# ----------------------------------------------------------------------
# Workloads: each returns what it acknowledged; typed errors are expected


async def capture_run(directory: str) -> Outcome:
    path = os.path.join(directory, "f.capture")
    outcome = Outcome()
    try:
        cf = CaptureFile(path, to_write=True, force_new_empty_file=True, encoding=None)
        await cf.open(to_write=True)
    except StorageError as error:
        outcome.errors.append(error)
        return outcome
    try:
        for commit in range(1, COMMITS + 1):
            outcome.attempted = commit
            try:
                for n in range(per_commit(commit)):
                    await cf.add_record(payload(commit, n))
                await cf.set_metadata(f"commit {commit}".encode())
                await cf.commit()
            except (StorageError, WriterFailedError) as error:
                outcome.errors.append(error)
                await after_failure(outcome, cf.commit)
                break
            outcome.acked = commit
    finally:
        try:
            await cf.close()
        except AiorecordsError as error:
            outcome.errors.append(error)
    return outcome


async def capture_check(directory: str, outcome: Outcome) -> None:
    path = os.path.join(directory, "f.capture")
    if not os.path.exists(path):
        assert outcome.acked == 0
        return
    cf = await CaptureFile(path, encoding=None)
    damage = cf.damaged_commit  # a commit torn by the fault, never acknowledged
    try:
        metadata = await cf.get_metadata()
        commit = 0 if metadata is None else int(metadata.split()[1])
        assert outcome.acked <= commit <= outcome.attempted
        expected = [
            payload(c, n) for c in range(1, commit + 1) for n in range(per_commit(c))
        ]
        assert [r async for r in cf] == expected
    finally:
        await cf.close()
    # And the next writer continues the file; over a torn commit, only when
    # told it may overwrite it.
    if damage is not None:
        with pytest.raises(InvalidCaptureFile, match="discard_damaged_commit"):
            await CaptureFile(path, to_write=True, encoding=None)
    cf = await CaptureFile(
        path, to_write=True, encoding=None, discard_damaged_commit=True
    )
    await cf.add_record(b"next")
    await cf.commit()
    await cf.close()


async def put(archive: Archive, name: str) -> None:
    async with archive.append(name, timestamp=0) as out:
        await out.write(b"x")


async def archive_run(directory: str) -> Outcome:
    path = os.path.join(directory, "a.gar")
    outcome = Outcome()
    try:
        archive = await Archive.open(path, mode="rdwr", durable=True)
    except StorageError as error:
        outcome.errors.append(error)
        return outcome
    try:
        for n in range(1, COMMITS + 1):
            outcome.attempted = n
            try:
                async with archive.append(
                    f"e{n}", timestamp=n, compression=(None, "gzip", "zstd")[n % 3]
                ) as out:
                    await out.write(payload(n, 0) * 20)
            except (StorageError, WriterFailedError) as error:
                outcome.errors.append(error)
                await after_failure(outcome, lambda: put(archive, "again"))
                break
            outcome.acked = n
    finally:
        try:
            await archive.close()
        except AiorecordsError as error:
            outcome.errors.append(error)
    return outcome


async def archive_check(directory: str, outcome: Outcome) -> None:
    path = os.path.join(directory, "a.gar")
    if not os.path.exists(path):
        assert outcome.acked == 0
        return
    async with Archive.open(path, mode="rdwr") as archive:
        entries = list(reversed(await archive.contents()))
        assert outcome.acked <= len(entries) <= outcome.attempted
        for n, entry in enumerate(entries, start=1):
            assert (entry.name, entry.timestamp) == (f"e{n}", n)
            assert await archive.read_bytes(entry) == payload(n, 0) * 20
        await put(archive, "next")


async def records_run(directory: str) -> Outcome:
    path = os.path.join(directory, "r.log")
    outcome = Outcome()
    writer = RecordsWriter(path, pad_last_block=False)
    try:
        await writer.flush()  # creates the file
    except StorageError as error:
        outcome.errors.append(error)
        return outcome
    try:
        for batch in range(1, COMMITS + 1):
            outcome.attempted = batch
            try:
                for n in range(per_commit(batch)):
                    await writer.write(payload(batch, n) * 8)
                await writer.sync()
            except (StorageError, WriterFailedError) as error:
                outcome.errors.append(error)
                await after_failure(outcome, writer.sync)
                break
            outcome.acked = batch
    finally:
        try:
            await writer.close()
        except AiorecordsError as error:
            outcome.errors.append(error)
    return outcome


async def records_check(directory: str, outcome: Outcome) -> None:
    path = os.path.join(directory, "r.log")
    written = [
        payload(b, n) * 8 for b in range(1, COMMITS + 1) for n in range(per_commit(b))
    ]
    acked = sum(per_commit(b) for b in range(1, outcome.acked + 1))
    attempted = sum(per_commit(b) for b in range(1, outcome.attempted + 1))
    if not os.path.exists(path):
        assert acked == 0
        return
    async with RecordsReader(path, strict=True) as reader:
        got = [record async for record in reader]
    # Nothing was lost from the disk's point of view here (only the calls
    # failed), so the file holds a clean prefix of what was attempted.
    assert acked <= len(got) <= attempted
    assert got == written[: len(got)]
    async with RecordsWriter(path, append=True) as writer:
        await writer.write(b"next")


FORMATS: dict[
    str,
    tuple[
        Callable[[str], Awaitable[Outcome]],
        Callable[[str, Outcome], Awaitable[None]],
    ],
] = {
    "capture": (capture_run, capture_check),
    "archive": (archive_run, archive_check),
    "records": (records_run, records_check),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_every_failing_call_leaves_a_valid_file(fmt: str, tmp_path) -> None:
    run, check = FORMATS[fmt]
    clean = tmp_path / "clean"
    clean.mkdir()
    with Faults(str(clean)) as counter:
        outcome = await run(str(clean))
    assert outcome.errors == []
    assert outcome.acked == COMMITS
    total = counter.calls
    assert total > COMMITS
    runs = 0
    for fail_at in range(1, total + 1):
        for persistent in (False, True):
            for code in (errno.EIO, errno.ENOSPC):
                directory = tmp_path / f"{fail_at}-{persistent}-{code}"
                directory.mkdir()
                with Faults(str(directory), fail_at, persistent, code) as faults:
                    outcome = await run(str(directory))
                assert faults.injected, "the fault was never reached"
                assert outcome.errors, (
                    f"{fmt}: {faults.injected[0]} #{fail_at} failed silently"
                )
                for error in outcome.errors:
                    assert isinstance(error, (StorageError, WriterFailedError)), error
                storage = [e for e in outcome.errors if isinstance(e, StorageError)]
                assert storage, f"{fmt}: the OS error itself was never reported"
                assert storage[0].errno == code
                try:
                    await check(str(directory), outcome)
                except AssertionError as error:
                    raise AssertionError(
                        f"{fmt}: {faults.injected[0]} #{fail_at} failing "
                        f"({'persistently' if persistent else 'once'}, "
                        f"{errno.errorcode[code]}): {error}"
                    ) from error
                runs += 1
    count(f"write-side I/O calls in the fault workload, {fmt}", total)
    count(f"fault runs (call x once/persistent x EIO/ENOSPC), {fmt}", runs)
