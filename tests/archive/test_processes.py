"""Archives shared by processes: locks, concurrent writers, killed writers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiorecords import Archive, ArchiveLocked

sys.path.insert(0, str(Path(__file__).parent.parent / "helpers"))
from archive_worker import entry, forever_repeats

WORKER = str(Path(__file__).parent.parent / "helpers" / "archive_worker.py")


@pytest.fixture
def gar(tmp_path: Path) -> str:
    return str(tmp_path / "shared.gar")


def start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, WORKER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


class Holder:
    """Another process holding the archive open with rdwr_exclusive."""

    def __init__(self, path: str) -> None:
        self.process = start("hold", path)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "ready", line + self.process.stderr.read()  # type: ignore[union-attr]

    def release(self) -> None:
        self.process.communicate(timeout=30)
        assert self.process.returncode == 0


async def test_an_exclusive_writer_elsewhere_locks_out_writers_not_readers(
    gar: str,
) -> None:
    async with Archive.open(gar, mode="rdwr") as ar, ar.append("before") as out:
        await out.write(b"1")
    holder = Holder(gar)  # it also opened and closed a second descriptor
    try:
        with pytest.raises(ArchiveLocked):
            await Archive.open(gar, mode="rdwr_exclusive")
        async with Archive.open(gar, mode="rdwr") as ar:
            with pytest.raises(ArchiveLocked):
                async with ar.append("refused"):
                    pass
            assert [e.name for e in await ar.contents()] == ["before"]
        async with Archive.open(gar) as reader:
            assert await reader.read_bytes("before") == b"1"
    finally:
        holder.release()
    async with Archive.open(gar, mode="rdwr_exclusive") as ar:
        assert [e.name for e in await ar.contents()] == ["before"]


async def test_an_exclusive_writer_here_locks_out_other_processes(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr_exclusive"):
        done = run("try", gar)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "ArchiveLocked"
    done = run("try", gar)
    assert done.stdout.strip() == "appended", done.stderr


async def test_wait_true_waits_for_the_lock(gar: str) -> None:
    holder = Holder(gar)
    async with Archive.open(gar, mode="rdwr", wait=True) as ar:

        async def append_when_free() -> None:
            async with ar.append("waited") as out:
                await out.write(b"w")

        async def own_it_when_free() -> None:
            exclusive = await Archive.open(gar, mode="rdwr_exclusive", wait=True)
            await exclusive.close()

        appending = asyncio.ensure_future(append_when_free())
        owning = asyncio.ensure_future(own_it_when_free())
        # Both are polling for the lock: let them try a few times.
        for _ in range(50):
            await asyncio.sleep(0)
        assert not appending.done()
        assert not owning.done()
        await asyncio.to_thread(holder.release)
        await asyncio.gather(appending, owning)
        assert [e.name for e in await ar.contents()] == ["waited"]


async def test_a_cancelled_wait_for_the_lock_leaves_nothing_open(gar: str) -> None:
    holder = Holder(gar)
    try:
        waiting = asyncio.ensure_future(
            Archive.open(gar, mode="rdwr_exclusive", wait=True)
        )
        for _ in range(20):
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        holder.release()
    async with Archive.open(gar, mode="rdwr_exclusive"):
        pass


async def test_rdwr_writers_in_several_processes_append_in_turn(gar: str) -> None:
    async with Archive.open(gar, mode="rdwr"):
        pass
    workers = [start("append", gar, f"w{i}", 40) for i in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err
    async with Archive.open(gar) as ar:
        entries = await ar.contents()
        assert len(entries) == 160
        for entry_ in entries:
            _, n = entry_.name.split("/")
            assert await ar.read_bytes(entry_) == entry(int(n))
        assert {e.name for e in entries} == {
            f"w{i}/{n}" for i in range(4) for n in range(40)
        }


async def test_a_killed_writer_leaves_a_torn_tail_the_next_append_overwrites(
    gar: str,
) -> None:
    done = run("die", gar, 5)
    assert done.returncode == -9, done.stderr
    async with Archive.open(gar) as reader:
        assert [e.name for e in await reader.contents()] == [
            f"whole/{n}" for n in reversed(range(5))
        ]
        end = (await reader.contents())[0].end
    assert os.path.getsize(gar) > end + (1 << 20)  # the torn bytes are there
    async with Archive.open(gar, mode="rdwr") as ar:
        async with ar.append("next") as out:
            await out.write(b"after the crash")
        entries = await ar.contents()
        assert entries[0].offset == end  # written over the torn tail
        assert os.path.getsize(gar) == entries[0].end
        for n in range(5):
            assert await ar.read_bytes(f"whole/{n}") == entry(n)
        assert await ar.read_bytes("next") == b"after the crash"


async def test_writers_killed_anywhere_lose_nothing_complete(gar: str) -> None:
    """Kill a writer at arbitrary points, again and again: every entry whose
    block had exited is there, whole; the one it was writing never shows."""
    confirmed = 0
    for round_ in range(4):
        worker = start("forever", gar)
        assert worker.stdout is not None
        # Let it get some way, then kill it wherever it is.
        for _ in range(3 + round_ * 2):
            line = worker.stdout.readline()
            assert line, worker.stderr.read()  # type: ignore[union-attr]
            confirmed += 1
        worker.kill()
        printed, _ = worker.communicate(timeout=30)
        confirmed += len(printed.split())  # lines it printed before dying
        async with Archive.open(gar) as ar:
            entries = await ar.contents()
            # Entries finished after the last line was read may be there too.
            assert len(entries) >= confirmed
            for found in entries:
                k = int(found.name)
                assert await ar.read_bytes(found) == entry(k) * forever_repeats(k)
