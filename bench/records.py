"""LevelDB log records benchmark: the async API beside raw file I/O, in one run.

Writes, then reads back, 200 MiB of 1 KiB records and of 100-byte records
through ``RecordsWriter`` (``write`` per record, and ``write_many`` over a
generator and over a list) / ``RecordsReader`` (``async for``, and lists
of records from ``batches()``), and, in the
same run, writes and reads the very same bytes with plain ``os.write`` /
``os.read`` in 1 MiB chunks, the fastest this machine moves them. Two
settings: "cached" (the file in the page cache, writes not synced: the
costs are the CPU's) and "from disk" (the file evicted from the page cache
before each read, each write ending with an ``fdatasync``). Each pair runs
several times, the two taking turns; the table gives median rates and the
median ratio of neighbouring runs.

Stalls: a task wakes every millisecond and measures how late it wakes. The
raw job runs whole in one worker thread, so its stall column is what this
machine itself does to the loop. For aiorecords' worst stall the table also
gives the CPU time (``time.thread_time``) the event loop's thread used
between that late wake-up and the one before, 1 ms plus the stall apart:
the part of that time its own work can account for. The rest the thread
spent not running (the host or another thread had the CPU, or it waited for
the GIL or in a system call).

The header says which kernels ran: the compiled ones where the extension
is built, the pure-Python reference with ``AIORECORDS_NO_EXTENSIONS=1``.

    python bench/records.py [--mib N] [--repeat N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiorecords import RecordsReader, RecordsWriter, _kernels

CHUNK = 1024 * 1024


class Heartbeat:
    """A task that wakes every millisecond and records its latest wake-up,
    with the CPU time the loop's thread used between that wake-up and the
    one before."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_cpu = 0.0

    async def _beat(self) -> None:
        expected = time.perf_counter() + 0.001
        cpu = time.thread_time()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            now_cpu = time.thread_time()
            if now - expected > self.worst:
                self.worst = now - expected
                self.worst_cpu = now_cpu - cpu
            expected = now + 0.001
            cpu = now_cpu

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Heartbeat]:
        task = asyncio.create_task(self._beat())
        await asyncio.sleep(0.005)
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def raw_write(path: str, data: bytes, sync: bool) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        for at in range(0, len(data), CHUNK):
            os.write(fd, view[at : at + CHUNK])
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (the next read is from disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def raw_read(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    total = 0
    try:
        while chunk := os.read(fd, CHUNK):
            total += len(chunk)
    finally:
        os.close(fd)
    return total


async def measure(
    run: Callable[[], Awaitable[object]], before: Callable[[], object] | None = None
) -> tuple[float, Heartbeat]:
    """Time ``run`` (after ``before``, untimed) under a heartbeat."""
    if before is not None:
        before()
    heart = Heartbeat()
    async with heart.running():
        start = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - start
    return elapsed, heart


async def bench(mib: int, repeat: int, directory: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for size in (1024, 100):
        rows += await bench_size(size, mib, repeat, directory)
    return rows


async def bench_size(
    size: int, mib: int, repeat: int, directory: str
) -> list[tuple[str, ...]]:
    rows = []
    count = mib * 1024 * 1024 // size
    payload = bytes(range(256)) * (size // 256 + 1)
    records = [payload[n % 256 : n % 256 + size] for n in range(256)]
    ours = os.path.join(directory, f"ours-{size}.log")
    raw = os.path.join(directory, f"raw-{size}.log")

    def write_ours(sync: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with RecordsWriter(
                ours, pad_last_block=False, replace=True
            ) as writer:
                for n in range(count):
                    await writer.write(records[n & 255])
                if sync:
                    await writer.sync()

        return run

    def write_many_ours(sync: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with RecordsWriter(
                ours, pad_last_block=False, replace=True
            ) as writer:
                await writer.write_many(records[n & 255] for n in range(count))
                if sync:
                    await writer.sync()

        return run

    every = [records[n & 255] for n in range(count)]

    def write_list_ours(sync: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with RecordsWriter(
                ours, pad_last_block=False, replace=True
            ) as writer:
                await writer.write_many(every)
                if sync:
                    await writer.sync()

        return run

    async def read_ours() -> None:
        seen = 0
        async with RecordsReader(ours) as reader:
            async for _ in reader:
                seen += 1
        assert seen == count

    async def read_batches_ours() -> None:
        seen = 0
        async with RecordsReader(ours) as reader:
            async for batch in reader.batches():
                seen += len(batch)
        assert seen == count

    await write_ours(False)()  # warm-up, and the bytes the raw runs use
    with open(ours, "rb") as f:
        data = f.read()

    # The raw jobs run whole in one worker thread (one hop per 200 MiB), so
    # that the heartbeat sees what the machine does to the loop meanwhile.
    def write_raw(sync: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await asyncio.to_thread(raw_write, raw, data, sync)

        return run

    async def read_raw() -> None:
        assert await asyncio.to_thread(raw_read, raw) == len(data)

    for setting, cold in (("cached", False), ("from disk", True)):
        work = (
            ("write", write_ours(cold), write_raw(cold), None, None),
            (
                "write_many (generator)",
                write_many_ours(cold),
                write_raw(cold),
                None,
                None,
            ),
            ("write_many (list)", write_list_ours(cold), write_raw(cold), None, None),
            *(
                (
                    name,
                    reader,
                    read_raw,
                    (lambda: evict(ours)) if cold else None,
                    (lambda: evict(raw)) if cold else None,
                )
                for name, reader in (
                    ("read (async for)", read_ours),
                    ("read (batches)", read_batches_ours),
                )
            ),
        )
        for name, mine, theirs, before_mine, before_theirs in work:
            my_times, raw_times = [], []
            my_hearts, raw_hearts = [], []
            for _ in range(repeat):
                elapsed, heart = await measure(theirs, before_theirs)
                raw_times.append(elapsed)
                raw_hearts.append(heart)
                elapsed, heart = await measure(mine, before_mine)
                my_times.append(elapsed)
                my_hearts.append(heart)
            worst = max(my_hearts, key=lambda heart: heart.worst)
            raw_worst = max(heart.worst for heart in raw_hearts)
            payload_mb = count * size / 1e6
            ratios = [r / m for r, m in zip(raw_times, my_times, strict=True)]
            rows.append(
                (
                    f"{name}, {size}-byte records, {setting}",
                    f"{payload_mb / statistics.median(my_times):,.0f}",
                    f"{len(data) / 1e6 / statistics.median(raw_times):,.0f}",
                    f"{statistics.median(ratios):.0%}",
                    f"{count / statistics.median(my_times):,.0f}",
                    f"{worst.worst * 1000:.1f} / {raw_worst * 1000:.1f} ms",
                    f"{worst.worst_cpu * 1000:.1f} ms",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200, help="MiB of records per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        rows = asyncio.run(bench(args.mib, args.repeat, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    kernels = "compiled" if _kernels.compiled is not None else "pure Python"
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {kernels} kernels; {args.mib} MiB of records per run; "
        f"{args.repeat} runs of each, taking turns"
    )
    columns = [
        "aiorecords MB/s",
        "raw MB/s",
        "of raw",
        "records/s",
        "worst loop stall: aiorecords / raw in a thread",
        "loop thread's CPU time in that 1 ms + stall",
    ]
    print("| workload | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
