"""Concurrency: one writer and 8 reader processes; two writers on one file.

The writer makes 10,000 commits to a capture file while 8 reader processes
(half using OS byte-range locks on the master nodes, half not) refresh as
fast as they can: none may see a partial commit, a count that goes
backwards, or a record that later changes (see ``concurrent_reader.py``).

A second writer of a capture file, an exclusive archive or a LevelDB log is
refused at once with the documented error, in the same process and from
another process, with and without OS locking where the format offers the
choice.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from aiorecords import (
    Archive,
    ArchiveLocked,
    CaptureFile,
    CaptureFileAlreadyOpen,
    RecordsLocked,
    RecordsWriter,
)

from .concurrent_reader import record
from .conftest import count, trials

COMMITS = trials(10_000, 100_000)
READERS = 8
HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


async def test_readers_never_see_a_partial_commit(tmp_path) -> None:
    path = str(tmp_path / "shared.capture")
    writer = CaptureFile(path, to_write=True, force_new_empty_file=True, encoding=None)
    await writer.open(to_write=True)
    rng = random.Random(1)
    plan = [1 + rng.randrange(3) for _ in range(COMMITS)]
    final = sum(plan)
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "concurrent_reader.py"),
                path,
                str(final),
                str(n % 2),
                str(n),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(READERS)
    ]
    number = 0
    try:
        for records in plan:
            for _ in range(records):
                number += 1
                await writer.add_record(record(number))
            await writer.set_metadata(str(number).encode())
            await writer.commit()
    finally:
        await writer.close()
    views = 0
    for reader in readers:
        out, _ = reader.communicate(timeout=120)
        assert reader.returncode == 0, out
        views += int(out.split()[1])
    count("commits with 8 reader processes", COMMITS)
    count("consistent views seen by the readers", views)


# ----------------------------------------------------------------------
# Two writers


def second_writer_in_a_process(fmt: str, path: str, locking: bool) -> str:
    code = f"""
import asyncio, sys
sys.path.insert(0, {ROOT!r})
from aiorecords import *

async def main():
    try:
        if {fmt!r} == "capture":
            cf = await CaptureFile({path!r}, to_write=True,
                                   use_os_file_locking={locking!r})
            await cf.close()
        elif {fmt!r} == "archive":
            archive = await Archive.open({path!r}, mode="rdwr_exclusive")
            await archive.close()
        else:
            async with RecordsWriter({path!r}, append=True) as writer:
                await writer.write(b"second")
    except (CaptureFileAlreadyOpen, ArchiveLocked, RecordsLocked) as error:
        print(type(error).__name__)
        return
    print("opened")

asyncio.run(main())
"""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # "At once": a process start and an import, not a wait for the lock.
    assert time.monotonic() - started < 10
    return result.stdout.strip()


@pytest.mark.parametrize("locking", [False, True])
async def test_a_second_capture_writer_is_refused(locking: bool, tmp_path) -> None:
    path = str(tmp_path / "one.capture")
    first = await CaptureFile(
        path, to_write=True, force_new_empty_file=True, use_os_file_locking=locking
    )
    try:
        started = time.monotonic()
        with pytest.raises(CaptureFileAlreadyOpen):
            await CaptureFile(path, to_write=True, use_os_file_locking=locking)
        assert time.monotonic() - started < 1
        assert (
            second_writer_in_a_process("capture", path, locking)
            == "CaptureFileAlreadyOpen"
        )
    finally:
        await first.close()
    assert second_writer_in_a_process("capture", path, locking) == "opened"
    count("second writers refused, capture", 2)


async def test_a_second_exclusive_archive_writer_is_refused(tmp_path) -> None:
    path = str(tmp_path / "one.gar")
    async with Archive.open(path, mode="rdwr_exclusive"):
        with pytest.raises(ArchiveLocked):
            await Archive.open(path, mode="rdwr_exclusive")
        assert second_writer_in_a_process("archive", path, True) == "ArchiveLocked"
    assert second_writer_in_a_process("archive", path, True) == "opened"
    count("second writers refused, archive", 2)


@pytest.mark.parametrize("append", [False, True])
async def test_a_second_records_writer_is_refused(append: bool, tmp_path) -> None:
    path = str(tmp_path / "one.log")
    async with RecordsWriter(path) as first:
        await first.write(b"first")
        await first.flush()
        # Replacing (or continuing) a file a writer holds is refused.
        with pytest.raises(RecordsLocked):
            async with RecordsWriter(path, append=append, replace=not append) as second:
                await second.write(b"clobber")
        with pytest.raises(FileExistsError):  # neither asked for
            async with RecordsWriter(path) as second:
                await second.write(b"clobber")
        assert second_writer_in_a_process("records", path, True) == "RecordsLocked"
        await first.write(b"still first")
    assert second_writer_in_a_process("records", path, True) == "opened"
    count("second writers refused, records", 2)
