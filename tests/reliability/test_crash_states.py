"""Crash states (ALICE-style): every state a crash could leave, reopened.

A workload of 50 commits (capture file), 50 durable appends (archive) or 50
synced batches (LevelDB log records) runs once with every change recorded;
then every prefix of its changes, every prefix with the unsynced changes
dropped, zero-filled or garbage-filled, and random reorderings of the
unsynced changes (writes split at 4096-byte boundaries) are rebuilt in a
fresh directory and reopened. Each must show everything acknowledged before
the crash point, and nothing that was never written.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable

import pytest

from aiorecords import Archive, CaptureFile, RecordsReader, RecordsWriter

from .conftest import count, scale
from .crashfs import VARIANTS, Trace, crash_state, materialize

COMMITS = 50


def capture_record(commit: int, n: int) -> bytes:
    size = 50 + (commit * 7919 + n * 104729) % 1500
    return (f"{commit}:{n}:".encode() * size)[:size]


def records_in(commit: int) -> int:
    return 3 + (commit * 37) % 45


def capture_expected(commit: int) -> list[bytes]:
    return [
        capture_record(c, n) for c in range(1, commit + 1) for n in range(records_in(c))
    ]


def entry_data(n: int) -> bytes:
    size = (n * 7919) % 60_000 if n % 7 else 200_000
    return (f"entry {n} ".encode() * (size // 8 + 1))[:size]


def log_record(batch: int, n: int) -> bytes:
    size = 1 + (batch * 7919 + n * 104729) % 40_000
    return (f"{batch}/{n} ".encode() * size)[:size]


def log_batch_size(batch: int) -> int:
    return 1 + batch % 4


# ----------------------------------------------------------------------
# Workloads, each run once with its changes recorded


async def capture_workload(directory: str) -> Trace:
    path = os.path.join(directory, "log.capture")
    with Trace(directory) as trace:
        cf = CaptureFile(path, to_write=True, force_new_empty_file=True, encoding=None)
        await cf.open(to_write=True)
        trace.ack(0)
        for commit in range(1, COMMITS + 1):
            for n in range(records_in(commit)):
                await cf.add_record(capture_record(commit, n))
            await cf.set_metadata(f"commit {commit}".encode())
            await cf.commit()
            trace.ack(commit)
        await cf.close()
    return trace


async def archive_workload(directory: str) -> Trace:
    path = os.path.join(directory, "site.gar")
    with Trace(directory) as trace:
        async with Archive.open(path, mode="rdwr", durable=True) as archive:
            trace.ack(0)
            for n in range(1, COMMITS + 1):
                compression = (None, "gzip", "zstd")[n % 3]
                async with archive.append(
                    f"page/{n % 9}", timestamp=n, compression=compression
                ) as out:
                    data = entry_data(n)
                    for at in range(0, len(data), 70_000):
                        await out.write(data[at : at + 70_000])
                trace.ack(n)
    return trace


async def records_workload(directory: str) -> Trace:
    path = os.path.join(directory, "app.log")
    with Trace(directory) as trace:
        async with RecordsWriter(path, pad_last_block=False) as writer:
            written = 0
            for batch in range(COMMITS):
                for n in range(log_batch_size(batch)):
                    await writer.write(log_record(batch, n))
                    written += 1
                await writer.sync()
                trace.ack(written)
    return trace


# ----------------------------------------------------------------------
# What a reopened crash state must show


async def check_capture(directory: str, acked: list[object]) -> None:
    path = os.path.join(directory, "log.capture")
    if not os.path.exists(path):
        assert not acked, "the file was acknowledged as created"
        return
    last = max(acked, default=0)
    cf = await CaptureFile(path, encoding=None)
    try:
        found = cf.record_count()
        metadata = await cf.get_metadata()
        commit = 0 if metadata is None else int(metadata.split()[1])
        assert commit >= last, f"commit {last} was acknowledged, found {commit}"
        expected = capture_expected(commit)
        assert found == len(expected)
        assert [r async for r in cf] == expected
    finally:
        await cf.close()


async def check_archive(directory: str, acked: list[object]) -> None:
    path = os.path.join(directory, "site.gar")
    if not os.path.exists(path):
        assert not acked, "the archive was acknowledged as created"
        return
    last = max(acked, default=0)
    async with Archive.open(path) as archive:
        entries = list(reversed(await archive.contents()))  # oldest first
        assert len(entries) >= last
        assert len(entries) <= COMMITS
        for n, entry in enumerate(entries, start=1):
            assert entry.timestamp == n
            assert await archive.read_bytes(entry) == entry_data(n)


async def check_records(directory: str, acked: list[object]) -> None:
    path = os.path.join(directory, "app.log")
    written = [
        log_record(batch, n)
        for batch in range(COMMITS)
        for n in range(log_batch_size(batch))
    ]
    if not os.path.exists(path):
        assert not acked, "the log was acknowledged as created"
        return
    last = max(acked, default=0)
    async with RecordsReader(path) as reader:
        got = [record async for record in reader]
    assert got[:last] == written[:last]
    # After what was synced: records in order, as a crash left them, some
    # perhaps lost, none changed.
    rest = iter(written[last:])
    for record in got[last:]:
        assert any(record == candidate for candidate in rest)


FORMATS: dict[
    str,
    tuple[
        Callable[[str], Awaitable[Trace]],
        Callable[[str, list[object]], Awaitable[None]],
    ],
] = {
    "capture": (capture_workload, check_capture),
    "archive": (archive_workload, check_archive),
    "records": (records_workload, check_records),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_every_crash_state_keeps_what_was_acknowledged(
    fmt: str, tmp_path
) -> None:
    workload, check = FORMATS[fmt]
    work = tmp_path / "work"
    work.mkdir()
    trace = await workload(str(work))
    reorderings = scale(1_000, 10_000)
    rng = random.Random(fmt)
    states = 0
    started = time.monotonic()
    scratch = tempfile.mkdtemp(dir=tmp_path)

    async def run(point: int, variant: str) -> None:
        nonlocal states
        state = crash_state(trace, point, variant, rng)
        shutil.rmtree(scratch)
        os.mkdir(scratch)
        materialize(state, scratch)
        acked = trace.acked_before(point)
        try:
            await check(scratch, acked)
        except AssertionError as error:
            raise AssertionError(
                f"{fmt}: crash after change {point} ({variant}): {error}"
            ) from error
        states += 1

    points = list(trace.crash_points())
    for point in points:
        for variant in VARIANTS:
            await run(point, variant)
    for _ in range(reorderings):
        await run(rng.choice(points), "reordered")
        await asyncio.sleep(0)
    count(f"crash states checked, {fmt}", states)
    count(f"changes traced, {fmt}", trace.changes)
    count(f"random reorderings, {fmt}", reorderings)
    assert states == len(points) * len(VARIANTS) + reorderings
    assert time.monotonic() - started < 300
