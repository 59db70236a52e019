"""Writers and readers in separate processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiorecords import CaptureFile, CaptureFileAlreadyOpen

WORKER = str(Path(__file__).parent.parent / "helpers" / "capture_worker.py")


def start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: object) -> str:
    done = subprocess.run(
        [sys.executable, WORKER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout.strip()


class Holder:
    """A process holding a capture file open for writing until released."""

    def __init__(self, *args: object) -> None:
        self.process = start(*args)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "ready", line + self.process.stderr.read()  # type: ignore[union-attr]

    def release(self) -> None:
        self.process.communicate(timeout=30)
        assert self.process.returncode == 0


async def create(path: str, compression: str = "zstd") -> None:
    async with CaptureFile(path, to_write=True, compression=compression):
        pass


@pytest.mark.parametrize("locking", [True, False])
async def test_a_writer_in_another_process_excludes_this_one(
    path: str, locking: bool
) -> None:
    await create(path)
    holder = Holder("hold-writer", path, int(locking))
    try:
        for ours in (True, False):
            with pytest.raises(CaptureFileAlreadyOpen, match="another process"):
                await CaptureFile(path, to_write=True, use_os_file_locking=ours)
        with pytest.raises(CaptureFileAlreadyOpen):
            await CaptureFile(path, force_new_empty_file=True)
        reader = await CaptureFile(path)  # readers are always welcome
        await reader.close()
    finally:
        holder.release()
    async with CaptureFile(path, to_write=True):
        pass


async def test_capturefile_writer_excludes_aiorecords(path: str) -> None:
    await create(path, "zlib")
    holder = Holder("hold-peer-writer", path)
    try:
        with pytest.raises(CaptureFileAlreadyOpen):
            await CaptureFile(path, to_write=True, use_os_file_locking=True)
    finally:
        holder.release()


async def test_aiorecords_writer_excludes_capturefile(path: str) -> None:
    await create(path, "zlib")
    async with CaptureFile(path, to_write=True, use_os_file_locking=True):
        assert run("try-peer-writer", path) == "refused CaptureFileAlreadyOpen"
    assert run("try-peer-writer", path) == "opened"
    assert run("try-writer", path, 1) == "opened"


@pytest.mark.parametrize(
    ("locking", "compression"), [(False, "zstd"), (True, "zstd"), (True, "zlib")]
)
async def test_readers_in_other_processes_see_only_whole_commits(
    path: str, locking: bool, compression: str
) -> None:
    commits, per_commit = 400, 37
    target = commits * per_commit
    await create(path, compression)
    readers = [start("reader", path, target, int(locking)) for _ in range(3)]
    if compression == "zlib":
        readers.append(start("peer-reader", path, target))
    writer = run("writer", path, commits, per_commit, int(locking), compression)
    assert writer.endswith(f"done {target}")
    for process in readers:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err + out
        observed = int(out.split()[-1])
        assert observed >= 1
