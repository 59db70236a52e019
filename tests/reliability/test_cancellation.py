"""Cancellation: commits and appends cancelled at random moments.

1,000 capture commits and 1,000 archive appends per backend (plain asyncio
tasks, and anyio task groups whose scope is cancelled), each cancelled after
a random 0 to 5 ms. After each, a fresh reader must see the commit or the
entry whole or not at all; the writer must stay usable. Every 50th trial
closes the writer instead while the work is in flight: ``close()`` must wait
for it, and no write-side I/O call may reach the file after ``close()``
returns (an I/O observer watches every call). Once per run the file is also
watched for a second after the last close: no size or mtime change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from aiorecords import Archive, CaptureFile, _io

from .conftest import count, trials

TRIALS = trials(1_000, 10_000)
WRITE_SIDE = frozenset({"pwrite", "fdatasync", "fsync", "truncate", "rename", "link"})


class AfterClose:
    """Fails the test if a write-side call reaches ``path`` while closed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.closed = False
        self.late: list[str] = []

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        if self.closed and path == self.path and operation in WRITE_SIDE:
            self.late.append(f"{operation} {offset} {length}")

    def __enter__(self) -> AfterClose:
        _io.add_observer(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _io.remove_observer(self)


async def cancel_after(
    backend: str, work: Callable[[], Awaitable[None]], delay: float
) -> bool:
    """Run ``work``, cancelling it after ``delay`` seconds; True if it
    finished first."""
    finished = False

    async def run() -> None:
        nonlocal finished
        await work()
        finished = True

    if backend == "asyncio":
        task = asyncio.ensure_future(run())
        if delay:
            await asyncio.sleep(delay)  # the moment to cancel at, not a wait
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            if delay:
                await anyio.sleep(delay)
            group.cancel_scope.cancel()
    return finished


def delay(rng: random.Random) -> float:
    """0 to 5 ms; one time in ten, none at all (cancelled before it runs)."""
    return 0.0 if rng.random() < 0.1 else rng.uniform(0, 0.005)


def record(commit: int, n: int) -> bytes:
    return f"{commit}/{n} ".encode() * (1 + (commit * 31 + n) % 200)


@pytest.mark.parametrize("backend", ["asyncio", "anyio"])
async def test_cancelled_commits_are_all_or_nothing(backend: str, tmp_path) -> None:
    path = str(tmp_path / "c.capture")
    rng = random.Random(backend)
    writer = CaptureFile(path, to_write=True, force_new_empty_file=True, encoding=None)
    await writer.open(to_write=True)
    committed: list[bytes] = []  # what the file holds
    pending: list[bytes] = []  # added to the writer, not yet committed
    outcomes = {"committed": 0, "not committed": 0, "closed in flight": 0}
    with AfterClose(_io.canonical_path(path)) as watch:
        for trial in range(1, TRIALS + 1):
            for n in range(1 + trial % 5):
                data = record(trial, n)
                await writer.add_record(data)
                pending.append(data)
            await writer.set_metadata(str(len(committed) + len(pending)).encode())
            closing = trial % 50 == 0
            if closing:
                commit = asyncio.ensure_future(writer.commit())
                await asyncio.sleep(rng.uniform(0, 0.005))
                await writer.close()
                watch.closed = True
                with contextlib.suppress(Exception):  # closed under it: either way
                    await commit
                outcomes["closed in flight"] += 1
            else:
                await cancel_after(backend, writer.commit, delay(rng))
            # A fresh reader sees the commit whole, or not at all.
            reader = await CaptureFile(path, encoding=None)
            try:
                found = reader.record_count()
                assert found in (len(committed), len(committed) + len(pending)), trial
                metadata = await reader.get_metadata()
                assert metadata is None or int(metadata) == found
                tail = [
                    await reader.record_at(i)
                    for i in range(max(1, found - 5), found + 1)
                ]
            finally:
                await reader.close()
            if found == len(committed) + len(pending):
                committed += pending
                pending = []
                outcomes["committed"] += 1
            else:
                outcomes["not committed"] += 1
            assert tail == committed[-len(tail) :] if tail else not committed
            if closing:
                assert watch.late == [], f"I/O after close(): {watch.late}"
                pending = []  # uncommitted records are discarded by close()
                watch.closed = False
                writer = await CaptureFile(path, to_write=True, encoding=None)
        await writer.close()
        watch.closed = True
        await still_for_a_second(path)
        assert watch.late == []
    assert outcomes["committed"] > 0
    if backend == "asyncio":  # a task cancelled before it first runs
        assert outcomes["not committed"] > 0
    for outcome, n in outcomes.items():
        count(f"cancelled commits ({backend}): {outcome}", n)


@pytest.mark.parametrize("backend", ["asyncio", "anyio"])
async def test_cancelled_appends_are_all_or_nothing(backend: str, tmp_path) -> None:
    path = str(tmp_path / "a.gar")
    rng = random.Random(backend)
    archive = await Archive.open(path, mode="rdwr", durable=True)
    present: dict[str, bytes] = {}
    outcomes = {"appended": 0, "not appended": 0, "closed in flight": 0}
    with AfterClose(_io.canonical_path(path)) as watch:
        for trial in range(1, TRIALS + 1):
            name = f"e{trial}"
            data = record(trial, 0) * (1 + trial % 300)

            async def append(
                archive: Archive = archive,
                name: str = name,
                data: bytes = data,
                trial: int = trial,
            ) -> None:
                compression = ("gzip", None, "zstd")[trial % 3]
                async with archive.append(
                    name, timestamp=trial, compression=compression
                ) as out:
                    for at in range(0, len(data), 10_000):
                        await out.write(data[at : at + 10_000])

            closing = trial % 50 == 0
            if closing:
                task = asyncio.ensure_future(append())
                await asyncio.sleep(rng.uniform(0, 0.005))
                await archive.close()
                watch.closed = True
                with contextlib.suppress(Exception):  # closed under it: either way
                    await task
                outcomes["closed in flight"] += 1
                assert watch.late == [], f"I/O after close(): {watch.late}"
            else:
                await cancel_after(backend, append, delay(rng))
            async with Archive.open(path) as reader:
                entries = {e.name: e for e in await reader.contents()}
                assert set(entries) - {name} == set(present)
                if name in entries:
                    assert await reader.read_bytes(entries[name]) == data
                    present[name] = data
                    outcomes["appended"] += 1
                else:
                    outcomes["not appended"] += 1
            if closing:
                watch.closed = False
                archive = await Archive.open(path, mode="rdwr", durable=True)
        await archive.close()
        watch.closed = True
        await still_for_a_second(path)
        assert watch.late == []
    assert outcomes["appended"] > 0
    if backend == "asyncio":  # a task cancelled before it first runs
        assert outcomes["not appended"] > 0
    for outcome, n in outcomes.items():
        count(f"cancelled archive appends ({backend}): {outcome}", n)


async def still_for_a_second(path: str) -> None:
    """No thread still writes: the file's size and mtime stay put."""
    before = os.stat(path)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # watching, not waiting for an event
        now = os.stat(path)
        assert (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
