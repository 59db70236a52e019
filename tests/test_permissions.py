"""Files and directories the user may not read or write.

The tests run as root in CI, where permission bits do not apply: the
commands are then run with every capability dropped (``setpriv
--bounding-set -all``), which makes root an ordinary owner, so that a file of
mode 000 cannot be read and a directory of mode 555 cannot be written. Each
command and reader must then fail at once with one line naming the path the
user gave (never a temporary file beside it), and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import SCRIPT, make_archive, make_capture, make_log

from aiorecords import TFRecordWriter

FORMATS = {
    "capture": "c.capture",
    "records": "r.log",
    "archive": "a.gar",
    "tfrecord": "t.tfrecord",
}


def unprivileged() -> list[str]:
    """The prefix that runs a command without the power to ignore
    permission bits."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop its capabilities")
    return [setpriv, "--bounding-set", "-all"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT is not None, "the console script is not installed"
    return subprocess.run(
        [*unprivileged(), SCRIPT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def make_tfrecord(path: Path) -> None:
    async with TFRecordWriter(str(path)) as writer:
        for n in range(25):
            await writer.write(f"tf {n}".encode())


@pytest.fixture
def files(tmp_path: Path) -> Path:
    asyncio.run(make_capture(tmp_path / FORMATS["capture"]))
    asyncio.run(make_log(tmp_path / FORMATS["records"]))
    asyncio.run(make_archive(tmp_path / FORMATS["archive"], ["one", "two"]))
    asyncio.run(make_tfrecord(tmp_path / FORMATS["tfrecord"]))
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    readable = subprocess.run(
        [*unprivileged(), sys.executable, "-c", f"open({str(probe)!r}).read()"],
        capture_output=True,
        check=False,
    )
    if readable.returncode == 0:
        pytest.skip("permission bits are not enforced here")
    return tmp_path


def one_line_naming(done: subprocess.CompletedProcess[str], name: str) -> str:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr  # no traceback
    assert name in done.stderr
    assert ".tmp" not in done.stderr  # the name the user gave
    return done.stderr


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", ["info", "cat", "tail", "verify"])
def test_an_unreadable_file_is_refused_in_one_line(
    files: Path, fmt: str, command: str
) -> None:
    name = FORMATS[fmt]
    (files / name).chmod(0)
    message = one_line_naming(run(command, name, cwd=files), name)
    assert "Permission denied" in message
    # With the format given, the same: nothing is guessed from no bytes.
    message = one_line_naming(run(command, "--format", fmt, name, cwd=files), name)
    assert "Permission denied" in message


@pytest.mark.parametrize("to", FORMATS)
def test_convert_into_a_directory_that_cannot_be_written(files: Path, to: str) -> None:
    locked = files / "locked"
    locked.mkdir()
    (locked / "old").write_bytes(b"kept")
    locked.chmod(0o555)
    try:
        for force in ([], ["--force"]):
            for source in FORMATS.values():
                done = run(
                    "convert", "--to", to, *force, source, "locked/new", cwd=files
                )
                # (From a capture file, a note on its metadata may come first.)
                message = done.stderr.splitlines()[-1] if done.stderr else ""
                assert done.returncode == 2, done.stderr
                assert message == (
                    "aiorecords: locked/new: cannot write there (Permission denied)"
                )
            # Over a file that is there: it stays as it was.
            done = run(
                "convert",
                "--to",
                to,
                *force,
                FORMATS["records"],
                "locked/old",
                cwd=files,
            )
            assert done.returncode == 2, done.stderr
            assert "locked/old" in done.stderr
            assert ".tmp" not in done.stderr
    finally:
        locked.chmod(0o755)
    assert sorted(os.listdir(locked)) == ["old"]  # no temporary file left
    assert (locked / "old").read_bytes() == b"kept"


def test_convert_from_an_unreadable_file_makes_nothing(files: Path) -> None:
    (files / FORMATS["records"]).chmod(0)
    done = run(
        "convert", "--to", "capture", FORMATS["records"], "out.capture", cwd=files
    )
    assert "Permission denied" in one_line_naming(done, FORMATS["records"])
    assert not (files / "out.capture").exists()
    assert not [name for name in os.listdir(files) if name.endswith(".tmp")]


def test_extract_into_a_directory_that_cannot_be_written(files: Path) -> None:
    locked = files / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        done = run("extract", FORMATS["archive"], "-C", "locked", cwd=files)
    finally:
        locked.chmod(0o755)
    message = one_line_naming(done, "locked")
    assert "cannot write there (Permission denied)" in message
    assert "outside" not in message  # not taken for an entry name leading out
    assert os.listdir(locked) == []


def test_readers_raise_permission_error_naming_the_file(files: Path) -> None:
    """The library, not only the command line: each reader of an unreadable
    file raises PermissionError naming it, as ``open()`` does (a missing one
    FileNotFoundError), and holds no descriptor after it."""
    for name in FORMATS.values():
        (files / name).chmod(0)
    script = f"""
import asyncio, errno
import os
from aiorecords import Archive, CaptureFile, RecordsReader, TFRecordReader

async def attempt(name, action):
    before = len(os.listdir("/proc/self/fd"))
    try:
        await action()
    except PermissionError as error:
        assert error.errno == errno.EACCES, error
        assert error.filename.endswith("/" + name), error
        assert len(os.listdir("/proc/self/fd")) == before
        print(name, "refused")
    else:
        print(name, "READ")

async def capture():
    cf = CaptureFile({str(files / FORMATS["capture"])!r})
    await cf.open()

async def records():
    async with RecordsReader({str(files / FORMATS["records"])!r}) as reader:
        await reader.read()

async def archive():
    async with Archive.open({str(files / FORMATS["archive"])!r}) as ar:
        await ar.contents()

async def tfrecord():
    async with TFRecordReader({str(files / FORMATS["tfrecord"])!r}) as reader:
        await reader.read()

async def main():
    await attempt({FORMATS["capture"]!r}, capture)
    await attempt({FORMATS["records"]!r}, records)
    await attempt({FORMATS["archive"]!r}, archive)
    await attempt({FORMATS["tfrecord"]!r}, tfrecord)

asyncio.run(main())
"""
    done = subprocess.run(
        [*unprivileged(), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == [
        f"{name} refused" for name in FORMATS.values()
    ]
