"""Kill tests: writer processes SIGKILLed at random moments.

For each format, a writer process continues one file (capture commits,
durable archive appends, synced batches of LevelDB records) and reports each
acknowledged write; it is killed a random 0 to 40 ms after it has opened
the file (one writer in four while it is still opening it). After each kill
the file is reopened: every acknowledged commit or entry is there, and
nothing partial; then the next writer continues the same file. (SIGKILL
loses no page cache, so this proves consistency at every instant of a
writer's life; the crash-state suite covers what the disk may lose.)
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time

import pytest

from aiorecords import Archive, CaptureFile, RecordsReader, RecordsWriter

from .conftest import count, scale
from .kill_zygote import capture_record, entry_data, log_record, records_in

KILLS = scale(200, 2_000)
ZYGOTE = os.path.join(os.path.dirname(__file__), "kill_zygote.py")


class Zygote:
    """The forking process, and what its writers report."""

    def __init__(self, fmt: str, path: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, ZYGOTE, fmt, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(ZYGOTE))),
        )
        assert self.process.stdout is not None
        self.out = self.process.stdout.fileno()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.out, selectors.EVENT_READ)
        self.pending = b""

    def lines(self, timeout: float | None) -> list[str]:
        """The lines that arrive within ``timeout`` seconds (None: wait for
        at least one)."""
        if not self.selector.select(timeout):
            return []
        data = os.read(self.out, 65536)
        if not data:
            raise AssertionError("the zygote exited")
        self.pending += data
        *complete, self.pending = self.pending.split(b"\n")
        return [line.decode() for line in complete]

    def run_and_kill(
        self, seed: int, lifetime: float, while_opening: bool, hint: str = ""
    ) -> tuple[int, int]:
        """Start a writer and kill it ``lifetime`` seconds after it started
        (``while_opening``: the kill may land while it opens and recovers the
        file) or after it opened the file; the last number it acknowledged
        (0 if none) and the acks seen."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"go {seed} {hint}\n".encode())
        self.process.stdin.flush()
        pid = None
        ready = killed = dead = False
        last = acks = 0
        deadline = None
        while not dead:
            # The lines may come in any order: the writer's and the zygote's.
            if deadline is None and not killed and pid and (while_opening or ready):
                deadline = time.monotonic() + lifetime
            timeout = None if deadline is None else max(0, deadline - time.monotonic())
            if deadline is not None and timeout == 0:
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                deadline = None
                killed = True
                continue
            for line in self.lines(timeout):
                word, _, value = line.partition(" ")
                if word == "pid":
                    pid = int(value)
                elif word == "ready":
                    ready = True
                elif word == "ack":
                    last = int(value)
                    acks += 1
                elif word == "dead":
                    dead = True
                else:
                    raise AssertionError(f"unexpected output {line!r}")
        return last, acks

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.selector.close()


async def check_capture(path: str, acked: int) -> int:
    cf = await CaptureFile(path, encoding=None)
    try:
        metadata = await cf.get_metadata()
        commit = 0 if metadata is None else int(metadata)
        assert commit >= acked
        expected = [
            capture_record(c, n)
            for c in range(1, commit + 1)
            for n in range(records_in(c))
        ]
        assert cf.record_count() == len(expected)
        # The newest commits in full; the older ones were checked before.
        tail = max(0, len(expected) - 60)
        got = [await cf.record_at(i + 1) for i in range(tail, len(expected))]
        assert got == expected[tail:]
        return commit
    finally:
        await cf.close()


async def check_archive(path: str, acked: int) -> int:
    async with Archive.open(path) as archive:
        entries = list(reversed(await archive.contents()))
        assert len(entries) >= acked
        for n, entry in enumerate(entries, start=1):
            assert (entry.name, entry.timestamp) == (f"e{n}", n)
        for entry in entries[-10:]:
            assert await archive.read_bytes(entry) == entry_data(entry.timestamp)
        return len(entries)


class LogPrefix:
    """The records of the log already checked and acknowledged (so never cut
    again): how many, and where they end. Each check reads on from there, so
    that the checks do not grow with the log."""

    count = 0
    end = 0


async def check_records(path: str, acked: int) -> int:
    assert os.path.getsize(path) >= LogPrefix.end, "acknowledged records were cut"
    n = LogPrefix.count
    async with RecordsReader(path, start=LogPrefix.end, strict=True) as reader:
        async for record in reader:
            assert record == log_record(n)
            n += 1
            if n <= acked:
                LogPrefix.count, LogPrefix.end = n, await reader.tell()
    assert n >= acked
    return n


async def create_capture(path: str) -> None:
    cf = CaptureFile(path, to_write=True, force_new_empty_file=True)
    await cf.open(to_write=True)
    await cf.close()


async def create_archive(path: str) -> None:
    async with Archive.open(path, mode="rdwr"):
        pass


async def create_records(path: str) -> None:
    async with RecordsWriter(path, pad_last_block=False):
        pass


FORMATS = {
    "capture": (create_capture, check_capture),
    "archive": (create_archive, check_archive),
    "records": (create_records, check_records),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_killed_writers_lose_nothing_acknowledged(fmt: str, tmp_path) -> None:
    create, check = FORMATS[fmt]
    LogPrefix.count = LogPrefix.end = 0
    path = str(tmp_path / f"killed.{fmt}")
    await create(path)
    rng = random.Random(fmt)
    zygote = Zygote(fmt, path)
    total_acks = 0
    found = 0
    try:
        for kill in range(KILLS):
            hint = f"{LogPrefix.count} {LogPrefix.end}" if fmt == "records" else ""
            acked, acks = zygote.run_and_kill(
                kill, rng.uniform(0, 0.04), while_opening=kill % 4 == 0, hint=hint
            )
            total_acks += acks
            try:
                now = await check(path, acked)
            except AssertionError as error:
                raise AssertionError(f"{fmt}: after kill {kill}: {error}") from error
            assert now >= found, "committed data went missing"
            found = now
    finally:
        zygote.close()
    if fmt == "records":  # and once more, the whole log from the start
        LogPrefix.count = LogPrefix.end = 0
        assert await check_records(path, found) == found
    assert total_acks > KILLS // 4, "the writers were killed before doing anything"
    count(f"writers SIGKILLed, {fmt}", KILLS)
    count(f"acknowledged writes before the kills, {fmt}", total_acks)
