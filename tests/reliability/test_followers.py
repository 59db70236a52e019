"""Followers across writer restarts: whatever happens to the writers, a live
follower yields exactly what a fresh reader of the final file yields, or
raises FileChangedError when the file it follows is replaced or cut short.

Each scenario keeps a follower running while writers come and go: clean
closes, padded closes (the App Engine writer's default), writers killed in
the middle of a record that spans blocks (a torn tail that the next writer
cuts off), SIGKILLed writer processes, a file replaced by another, and a
file truncated under the follower.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiorecords import CaptureFile, RecordsReader, RecordsWriter
from aiorecords.errors import FileChangedError
from aiorecords.records._log import LogEncoder

from .conftest import count, scale

HELPERS = Path(__file__).parent.parent / "helpers"
SCENARIOS = scale(30, 300)


#: The followers a test made, closed after it whatever its outcome (a
#: reader left open by a failed test would warn later, inside another).
_MADE: list[Follower] = []


@pytest.fixture(autouse=True)
async def _close_followers():
    yield
    while _MADE:
        follower = _MADE.pop()
        follower.task.cancel()
        await asyncio.gather(follower.task, return_exceptions=True)
        await follower.reader.close()


class Follower:
    """A follow() running in a task, gathering what it yields."""

    def __init__(self, path: str) -> None:
        self.reader = RecordsReader(path)
        self.seen: list[bytes] = []
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._run())
        _MADE.append(self)

    async def _run(self) -> None:
        try:
            async for record in self.reader.follow():
                self.seen.append(record)
        except FileChangedError as error:
            self.error = error

    async def caught_up(self, n: int) -> None:
        """Wait until the follower has yielded ``n`` records (failing after
        30 s: a follower that missed records never gets there)."""
        deadline = time.monotonic() + 30
        while len(self.seen) < n and not self.task.done():
            assert time.monotonic() < deadline, f"saw {len(self.seen)} of {n}"
            await asyncio.sleep(0.001)  # polling what the follower gathered
        assert len(self.seen) >= n, (len(self.seen), n, self.task)

    async def settle(self) -> None:
        """Let the follower read all there is (it polls at most 100 ms
        apart), then stop it."""
        size = -1
        while True:
            now = os.path.getsize(self.reader.name)
            seen = len(self.seen)
            await asyncio.sleep(0.25)  # more than the longest poll interval
            if now == size and seen == len(self.seen):
                break
            size = now
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.reader.close()


async def fresh_read(path: str) -> list[bytes]:
    async with RecordsReader(path) as reader:
        return [record async for record in reader]


def torn(record: bytes, at: int, cut: int) -> bytes:
    """The first ``cut`` bytes of ``record`` framed at file offset ``at``:
    what a writer killed while writing it leaves."""
    out = bytearray()
    LogEncoder(at % 32768).encode(record, out)
    return bytes(out[:cut])


@pytest.mark.parametrize("seed", range(SCENARIOS))
async def test_follower_across_restarts(seed: int, tmp_path) -> None:
    rng = random.Random(seed)
    path = str(tmp_path / "f.log")
    written = 0
    async with RecordsWriter(path, pad_last_block=False) as writer:
        await writer.write(b"first")
    written += 1
    follower = Follower(path)
    await follower.caught_up(1)
    for restart in range(rng.randint(2, 6)):
        how = rng.choice(("clean", "padded", "torn", "torn across blocks"))
        records = [
            f"{restart}.{n}.".encode() * rng.choice((1, 50, 3000))
            for n in range(rng.randint(1, 20))
        ]
        pad = how == "padded"
        async with RecordsWriter(path, append=True, pad_last_block=pad) as writer:
            for record in records:
                await writer.write(record)
                if rng.random() < 0.3:
                    await writer.flush()
        written += len(records)
        if how.startswith("torn"):
            size = os.path.getsize(path)
            big = b"T" * rng.choice((5_000, 40_000, 100_000))
            whole = len(torn(big, size, 10**9))
            low = 8 if how == "torn" else 32768 - size % 32768 + 8
            cut = rng.randint(min(low, whole - 1), whole - 1)
            with open(path, "ab") as f:
                f.write(torn(big, size, cut))
        if rng.random() < 0.7:
            await follower.caught_up(written)  # the follower is at the tail
        count(f"followers across restarts: {how}")
    async with RecordsWriter(path, append=True, pad_last_block=False) as writer:
        await writer.write(b"last")
    await follower.settle()
    assert follower.error is None, follower.error
    expected = await fresh_read(path)
    assert expected[-1] == b"last"
    assert follower.seen == expected


async def test_follower_across_sigkilled_writers(tmp_path) -> None:
    """Writer processes SIGKILLed at random moments, each next one appending
    after the torn tail the last left; the follower runs throughout."""
    path = str(tmp_path / "k.log")
    rng = random.Random(7)
    async with RecordsWriter(path, pad_last_block=False) as writer:
        await writer.write(b"first")
    follower = Follower(path)
    await follower.caught_up(1)
    script = str(HELPERS / "records_worker.py")
    for _ in range(scale(8, 40)):
        process = subprocess.Popen([sys.executable, script, path, "100000"])
        size = os.path.getsize(path)
        grown = size + rng.randint(1, 400_000)
        while os.path.getsize(path) < grown and process.poll() is None:
            await asyncio.sleep(0.001)  # watching the file grow
        process.send_signal(signal.SIGKILL)
        process.wait()
        count("followers across restarts: writer processes SIGKILLed")
    async with RecordsWriter(path, append=True, pad_last_block=False) as writer:
        await writer.write(b"last")
    await follower.settle()
    assert follower.error is None
    expected = await fresh_read(path)
    assert follower.seen == expected


async def test_padded_close_then_append_reaches_the_follower(tmp_path) -> None:
    """Issue 13, item 8: the next writer cut the padding and wrote inside
    the block the follower had passed; the follower never saw its records."""
    path = str(tmp_path / "p.log")
    async with RecordsWriter(path) as writer:  # pads on close
        await writer.write(b"before")
    follower = Follower(path)
    await follower.caught_up(1)
    async with RecordsWriter(path, append=True) as writer:
        await writer.write(b"after")
    await follower.caught_up(2)
    await follower.settle()
    assert follower.seen == [b"before", b"after"] == await fresh_read(path)


@pytest.mark.parametrize("how", ["replaced", "truncated", "removed"])
async def test_follower_notices_its_file_changed(tmp_path, how: str) -> None:
    """Issue 13, item 10: a replaced or truncated file raises FileChangedError."""
    path = str(tmp_path / "c.log")
    async with RecordsWriter(path) as writer:
        for n in range(100):
            await writer.write(b"%d" % n * 100)
    follower = Follower(path)
    await follower.caught_up(100)
    if how == "replaced":
        async with RecordsWriter(path, pad_last_block=False, replace=True) as writer:
            await writer.write(b"new file")
    elif how == "truncated":
        os.truncate(path, 1000)
    else:
        os.unlink(path)
    await asyncio.wait_for(follower.task, 10)
    assert isinstance(follower.error, FileChangedError)
    assert follower.error.change == ("truncated" if how == "truncated" else "replaced")
    assert follower.error.path == path
    await follower.reader.close()


# ----------------------------------------------------------------------
# Capture files

CAPTURE_WRITER = """
import asyncio, sys
from aiorecords import CaptureFile

async def main(path, tag):
    cf = await CaptureFile(path, to_write=True, discard_damaged_commit=True)
    n = 0
    while True:
        for _ in range(1 + n % 7):
            await cf.add_record(f"{tag}.{n} " + "y" * (n % 300))
            n += 1
        await cf.commit()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


class CaptureFollower:
    def __init__(self, cf: CaptureFile) -> None:
        self.cf = cf
        self.seen: list[str | bytes] = []
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async for record in self.cf.follow():
                self.seen.append(record)
        except FileChangedError as error:
            self.error = error

    async def caught_up(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.seen) < n and not self.task.done():
            assert time.monotonic() < deadline, f"saw {len(self.seen)} of {n}"
            await asyncio.sleep(0.001)  # polling what the follower gathered


async def test_capture_follower_across_killed_and_restarted_writers(tmp_path) -> None:
    path = str(tmp_path / "f.capture")
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as cf:
        await cf.add_record("first")
        await cf.commit()
    reader = await CaptureFile(path)
    follower = CaptureFollower(reader)
    await follower.caught_up(1)
    rng = random.Random(3)
    for restart in range(scale(6, 30)):
        if restart % 3 == 2:  # a clean writer in this process
            # After a kill mid-commit the newest master node may be torn.
            async with CaptureFile(
                path, to_write=True, discard_damaged_commit=True
            ) as cf:
                for n in range(rng.randint(1, 50)):
                    await cf.add_record(f"clean {restart}.{n}")
                await cf.commit()
            continue
        process = subprocess.Popen(
            [sys.executable, "-c", CAPTURE_WRITER, path, str(restart)]
        )
        # Killed once the follower has seen it commit a few records.
        await follower.caught_up(len(follower.seen) + rng.randint(1, 200))
        process.send_signal(signal.SIGKILL)
        process.wait()
        count("followers across restarts: capture writer processes SIGKILLed")
    async with CaptureFile(path, to_write=True, discard_damaged_commit=True) as cf:
        await cf.add_record("last")
        await cf.commit()
    fresh = await CaptureFile(path)
    try:
        expected = [record async for record in fresh]
    finally:
        await fresh.close()
    await follower.caught_up(len(expected))
    follower.task.cancel()
    await asyncio.gather(follower.task, return_exceptions=True)
    await reader.close()
    assert follower.error is None
    assert follower.seen == expected


@pytest.mark.parametrize("how", ["replaced", "truncated", "removed"])
async def test_capture_follower_notices_its_file_changed(tmp_path, how: str) -> None:
    """Issue 13, item 10: a capture follower kept following the old file."""
    path = str(tmp_path / "c.capture")
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as cf:
        for n in range(3000):
            await cf.add_record(f"record {n} " * 10)
        await cf.commit()
    reader = await CaptureFile(path)
    follower = CaptureFollower(reader)
    await follower.caught_up(3000)
    if how == "replaced":
        async with CaptureFile(path, to_write=True, force_new_empty_file=True) as cf:
            await cf.add_record("a new file")
            await cf.commit()
    elif how == "truncated":
        os.truncate(path, 100_000)
    else:
        os.unlink(path)
    await asyncio.wait_for(follower.task, 10)
    assert isinstance(follower.error, FileChangedError), follower.error
    assert follower.error.change == ("truncated" if how == "truncated" else "replaced")
    await reader.close()
