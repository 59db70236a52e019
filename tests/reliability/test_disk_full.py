"""A real full disk: a small tmpfs, filled by each writer until the kernel
says ENOSPC.

No injected fault: the file system runs out of room where it runs out, in
a data write, a grow, a master node or a sync. For every format the writer
must raise `StorageError` (ENOSPC, naming the file) or, after a failed
write, `WriterFailedError`; never hang, never anything untyped. Everything
acknowledged before (a returned commit, flush or append) reads back after
reopening, the file then reads as a valid one (a torn tail is reported, not
returned), a file beside it on the same disk is untouched, and once room is
made the file can be written again.

Mounting needs privileges (root here, as in CI); without them the tests
skip.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiorecords import (
    Archive,
    CaptureFile,
    RecordsReader,
    RecordsWriter,
    StorageError,
    TFRecordReader,
    TFRecordWriter,
    WriterFailedError,
)

SIZE = 4 * 1024 * 1024


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own, with an unrelated file on it."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mount / "neighbour.bin").write_bytes(b"N" * 200_000)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def neighbour_intact(disk: Path) -> bool:
    return (disk / "neighbour.bin").read_bytes() == b"N" * 200_000


def make_room(disk: Path) -> None:
    (disk / "neighbour.bin").unlink()


def payload(n: int) -> bytes:
    # Incompressible, so that a compressing writer fills the disk too.
    return n.to_bytes(4, "big") + os.urandom(3000 + n % 1000)


def is_full(error: BaseException) -> bool:
    if isinstance(error, WriterFailedError):
        return True
    return isinstance(error, StorageError) and error.errno in (
        errno.ENOSPC,
        errno.EFBIG,
    )


async def test_a_capture_file_on_a_full_disk(full_disk: Path) -> None:
    path = str(full_disk / "events.capture")
    committed: list[bytes] = []
    pending: list[bytes] = []
    error: BaseException | None = None
    cf = CaptureFile(path, to_write=True, encoding=None)
    await cf.open(to_write=True)
    try:
        for n in range(100_000):
            record = payload(n)
            await cf.add_record(record)
            pending.append(record)
            if n % 50 == 49:
                await cf.commit()
                committed += pending
                pending = []
    except Exception as caught:
        error = caught
    assert error is not None, "the disk never filled"
    assert is_full(error), repr(error)
    assert path in str(error) or isinstance(error, WriterFailedError)
    with pytest.raises(WriterFailedError):
        await cf.commit()
    await cf.close()
    assert neighbour_intact(full_disk)
    async with CaptureFile(path, encoding=None) as reader:
        stored = [r async for r in reader]
    assert stored[: len(committed)] == committed
    assert len(stored) in (len(committed), len(committed) + len(pending))
    make_room(full_disk)
    async with CaptureFile(path, to_write=True, encoding=None) as cf:
        await cf.add_record(b"after")
        await cf.commit()
    async with CaptureFile(path, encoding=None) as reader:
        assert [r async for r in reader][-1] == b"after"


@pytest.mark.parametrize("kind", ["records", "tfrecord"])
async def test_a_framed_log_on_a_full_disk(full_disk: Path, kind: str) -> None:
    path = str(full_disk / f"events.{kind}")
    writer_class = RecordsWriter if kind == "records" else TFRecordWriter
    reader_class = RecordsReader if kind == "records" else TFRecordReader
    flushed: list[bytes] = []
    written: list[bytes] = []
    error: BaseException | None = None
    writer = writer_class(path, buffer_size=64 * 1024)
    try:
        async with writer:
            for n in range(100_000):
                record = payload(n)
                await writer.write(record)
                written.append(record)
                if n % 40 == 39:
                    await writer.sync()
                    flushed = list(written)
    except Exception as caught:
        error = caught
    assert error is not None, "the disk never filled"
    assert is_full(error), repr(error)
    assert neighbour_intact(full_disk)
    async with reader_class(path) as reader:
        stored = [bytes(r) async for r in reader]
    # Everything synced is there, in order; nothing that was not written.
    assert stored[: len(flushed)] == flushed
    assert stored == written[: len(stored)]
    make_room(full_disk)
    async with writer_class(path, append=True) as writer:
        await writer.write(b"after")
    async with reader_class(path) as reader:
        again = [bytes(r) async for r in reader]
    assert again[: len(flushed)] == flushed
    assert again[-1] == b"after"


@pytest.mark.parametrize("write_behind", [False, True])
async def test_an_archive_on_a_full_disk(full_disk: Path, write_behind: bool) -> None:
    path = str(full_disk / "entries.gar")
    acknowledged: dict[str, bytes] = {}
    appended: dict[str, bytes] = {}
    error: BaseException | None = None
    archive = await Archive.open(path, "rdwr_exclusive", write_behind=write_behind)
    try:
        for n in range(100_000):
            data = payload(n)
            async with archive.append(f"e{n}") as out:
                await out.write(data)
            appended[f"e{n}"] = data
            if not write_behind:
                acknowledged[f"e{n}"] = data  # written when its block returned
            elif n % 30 == 29:
                await archive.flush()
                acknowledged = dict(appended)
    except Exception as caught:
        error = caught
    try:
        await archive.close()
    except Exception as caught:
        error = error or caught
    assert error is not None, "the disk never filled"
    assert is_full(error), repr(error)
    assert neighbour_intact(full_disk)
    async with Archive.open(path) as reader:
        for name, data in acknowledged.items():
            assert await reader.read_bytes(name) == data, name
        for entry in await reader.contents():
            assert await reader.read_bytes(entry.name) == appended[entry.name]
    make_room(full_disk)
    async with (
        Archive.open(path, "rdwr_exclusive") as writer,
        writer.append("after") as out,
    ):
        await out.write(b"after")
    async with Archive.open(path) as reader:
        assert await reader.read_bytes("after") == b"after"


@pytest.mark.parametrize("to", ["records", "capture", "archive", "tfrecord"])
async def test_convert_onto_a_full_disk_leaves_nothing(
    full_disk: Path, tmp_path: Path, to: str
) -> None:
    source = tmp_path / "source.log"
    async with RecordsWriter(str(source)) as writer:
        for n in range(2000):
            await writer.write(payload(n))
    script = Path(sys.executable).parent / "aiorecords"
    done = subprocess.run(
        [str(script), "convert", "--to", to, str(source), str(full_disk / "out")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    message = done.stderr.decode()
    assert "No space left on device" in message
    assert str(full_disk / "out") in message
    assert message.count("\n") == 1  # one line, no traceback
    assert os.listdir(full_disk) == ["neighbour.bin"]  # no temporary file left
    assert neighbour_intact(full_disk)
