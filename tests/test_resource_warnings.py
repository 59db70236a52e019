"""An object dropped while open says so (ResourceWarning), as aiosqlite's
do; since the suite turns warnings into errors, every other test proves it
leaks nothing. Each object is collected as soon as it is dropped: no part of
it keeps it alive in a reference cycle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiorecords import Archive, CaptureFile, RecordsReader, RecordsWriter


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_dropped_capture_reader_warns_and_gives_back_its_file(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "c.capture")
    async with CaptureFile(path, to_write=True) as cf:
        await cf.append("one")
    before = open_descriptors()
    reader = await CaptureFile(path)
    assert await reader.record_at(1) == "one"
    with pytest.warns(ResourceWarning, match="c.capture"):
        del reader
    assert open_descriptors() == before


async def test_a_dropped_records_writer_and_reader_warn(tmp_path: Path) -> None:
    path = str(tmp_path / "r.log")
    writer = RecordsWriter(path)
    await writer.write(b"one")
    await writer.flush()
    with pytest.warns(ResourceWarning, match="r.log"):
        del writer
    reader = RecordsReader(path)
    assert await reader.read() == b"one"
    with pytest.warns(ResourceWarning, match="r.log"):
        del reader


async def test_a_dropped_archive_warns(tmp_path: Path) -> None:
    path = str(tmp_path / "a.gar")
    archive = await Archive.open(path, "rdwr")
    async with archive.append("e") as out:
        await out.write(b"x")
    del out  # a stream of the archive keeps its file (and says it is closed)
    with pytest.warns(ResourceWarning, match="a.gar"):
        del archive


async def test_closed_objects_do_not_warn(tmp_path: Path) -> None:
    path = str(tmp_path / "c.capture")
    cf = await CaptureFile(path, to_write=True)
    await cf.close()
    del cf  # no warning: the suite's filter would make one an error
    never_opened = CaptureFile(path)
    del never_opened
