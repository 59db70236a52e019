"""Paths that name no regular file: a named pipe, a character device.

A pipe with no writer would hang an open for reading; a device or pipe has
no size and no offsets; and a writer that replaces what is at its path with
a new file must never replace one of these (``/dev/null`` named by mistake,
by a process running as root). Every reader, writer and command refuses
them at once, naming the path, and leaves them where they are.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from test_cli import aiorecords, make_archive, make_log

from aiorecords import (
    Archive,
    CaptureFile,
    RecordsReader,
    RecordsWriter,
    StorageError,
    TFRecordReader,
    TFRecordWriter,
)


def make_fifo(directory: Path) -> Path:
    path = directory / "pipe"
    os.mkfifo(path)
    return path


def make_device(directory: Path) -> Path:
    """A character device node of our own (the same device as /dev/null),
    so that a failure replaces it and not the real one."""
    path = directory / "device"
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs privileges")
    return path


@pytest.fixture(params=["fifo", "device"])
def special(request, tmp_path: Path) -> Path:
    return make_fifo(tmp_path) if request.param == "fifo" else make_device(tmp_path)


def still_there(path: Path, was: os.stat_result) -> bool:
    now = os.lstat(path)
    return stat.S_IFMT(now.st_mode) == stat.S_IFMT(was.st_mode) and (
        now.st_ino == was.st_ino
    )


async def refused(action: Callable[[], Awaitable[object]], path: Path) -> StorageError:
    """The StorageError ``action`` raises, naming ``path``; within seconds
    (a hang is the failure this guards against)."""
    with pytest.raises(StorageError) as caught:
        await asyncio.wait_for(action(), 20)
    assert str(path.name) in str(caught.value)
    assert "not a regular file" in str(caught.value)
    return caught.value


async def test_readers_refuse_it_without_hanging(special: Path) -> None:
    path = str(special)

    async def records() -> object:
        async with RecordsReader(path) as reader:
            return [record async for record in reader]

    async def tfrecords() -> object:
        async with TFRecordReader(path) as reader:
            return [record async for record in reader]

    async def capture() -> object:
        return await CaptureFile(path)

    async def archive() -> object:
        async with Archive.open(path) as opened:
            return await opened.contents()

    was = os.lstat(special)
    for action in (records, tfrecords, capture, archive):
        await refused(action, special)
    assert still_there(special, was)


async def test_writers_never_replace_it(special: Path) -> None:
    path = str(special)
    was = os.lstat(special)

    async def log(**how: bool) -> None:
        async with RecordsWriter(path, **how) as writer:
            await writer.write(b"x")

    async def tfrecord(**how: bool) -> None:
        async with TFRecordWriter(path, **how) as writer:
            await writer.write(b"x")

    async def capture(**how: bool) -> None:
        async with CaptureFile(path, to_write=True, **how) as cf:
            await cf.add_record("x")
            await cf.commit()

    async def archive() -> None:
        async with Archive.open(path, "rdwr") as opened, opened.append("n") as out:
            await out.write(b"x")

    attempts = [
        lambda: log(replace=True),
        lambda: log(append=True),
        lambda: tfrecord(replace=True),
        lambda: tfrecord(append=True),
        lambda: capture(),
        lambda: capture(force_new_empty_file=True),
        archive,
    ]
    for attempt in attempts:
        # StorageError, or for a new log FileExistsError ("a file ... exists")
        with pytest.raises(OSError, match=r"regular file|exists"):
            await asyncio.wait_for(attempt(), 20)
        assert still_there(special, was)


async def test_the_command_line_refuses_it_and_leaves_it(
    special: Path, tmp_path: Path
) -> None:
    await make_log(tmp_path / "source.log")
    was = os.lstat(special)
    name = special.name
    for command in ("info", "cat", "verify", "tail"):
        done = aiorecords(command, name, cwd=tmp_path, check_status=2)
        assert f"{name}: not a regular file" in done.stderr.decode()
    for command in ("info", "cat"):  # each format's own path
        for fmt in ("capture", "records", "archive", "tfrecord"):
            done = aiorecords(
                command, "--format", fmt, name, cwd=tmp_path, check_status=2
            )
            assert "not a regular file" in done.stderr.decode()
    for force in ([], ["--force"]):
        done = aiorecords(
            "convert", *force, "--to", "records", "source.log", name,
            cwd=tmp_path, check_status=2,
        )  # fmt: skip
        assert "is not a regular file" in done.stderr.decode()
    assert still_there(special, was)
    assert sorted(os.listdir(tmp_path)) == sorted([name, "source.log"])


async def test_extract_over_it_leaves_it(tmp_path: Path) -> None:
    await make_archive(tmp_path / "a.gar", ["entry.txt"])
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "entry.txt")
    was = os.lstat(out / "entry.txt")
    for force in ([], ["--force"]):
        aiorecords(
            "extract", "a.gar", "-C", "out", *force, cwd=tmp_path, check_status=2
        )
        assert still_there(out / "entry.txt", was)
    assert os.listdir(out) == ["entry.txt"]
