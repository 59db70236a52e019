"""Capture file benchmark: aiorecords against CaptureFile 1.2.0, in one run.

Workloads (the table goes in docs/performance.md):

1. append N JSON events of about 100 bytes with varying content, committing
   every 1,000 (aiorecords durable, aiorecords durable=False, CaptureFile;
   aiorecords both ways again with each 1,000 added by one ``add_records``);
2. iterate over all of them;
3. 20,000 random ``record_at`` (each run opens the file afresh, so its
   blocks start out of the cache);
4. the longest event-loop stall a 1 ms heartbeat task sees during 1 and 2.

The libraries take turns, workload by workload, run after run, and each ratio
is the median of the ratios of neighbouring runs: on a shared machine whose
speed drifts, that compares like with like. CaptureFile is synchronous; it
is called from a coroutine, as an async program using it would, yielding to
the loop after each commit (and every 1,000 records when reading), so its
stall column shows what it does to the loop.

The header says which kernels ran (``AIORECORDS_NO_EXTENSIONS=1`` for the
pure-Python ones).

    python bench/capture.py [--records N] [--lookups N] [--repeat N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from CaptureFile import CaptureFile as SyncCaptureFile

from aiorecords import CaptureFile, _kernels, set_block_cache_size
from aiorecords._cache import block_cache
from aiorecords.capture._opened import read_commit

PEER = "CaptureFile 1.2.0"


def make_events(count: int, seed: int = 1) -> list[str]:
    """JSON events of about 100 bytes whose fields vary from one to the next."""
    rng = random.Random(seed)
    actions = ["view", "click", "purchase", "signup", "logout", "search"]
    events = []
    for number in range(count):
        event = {
            "id": number,
            "ts": 1_700_000_000_000 + number * 37 + rng.randrange(37),
            "user": f"u{rng.randrange(100_000):05d}",
            "action": rng.choice(actions),
            "amount": round(rng.random() * 500, 2),
            "ok": rng.random() < 0.97,
        }
        events.append(json.dumps(event, separators=(",", ":")))
    return events


class Heartbeat:
    """A task that wakes every millisecond and records its latest wake-up."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def _beat(self) -> None:
        interval = 0.001
        expected = time.perf_counter() + interval
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            self.worst = max(self.worst, now - expected)
            expected = now + interval

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


@dataclass
class Series:
    """The runs of one library on one workload."""

    library: str
    run: Callable[[], Awaitable[None]]
    ops: int
    watch_loop: bool = True
    seconds: list[float] = field(default_factory=list)
    stall: float = 0.0

    async def once(self) -> float:
        heart = Heartbeat()
        async with heart.running():
            start = time.perf_counter()
            await self.run()
            elapsed = time.perf_counter() - start
        self.seconds.append(elapsed)
        self.stall = max(self.stall, heart.worst)
        return elapsed


@dataclass
class Row:
    workload: str
    library: str
    per_second: float
    ratio: float
    stall_ms: float | None


async def compare(workload: str, series: list[Series], repeat: int) -> list[Row]:
    """Run the series in turn ``repeat`` times; the first one is the peer."""
    for _ in range(repeat):
        for one in series:
            await one.once()
    peer = series[0]
    rows = []
    for one in series:
        ratios = [p / s for p, s in zip(peer.seconds, one.seconds, strict=True)]
        rows.append(
            Row(
                workload,
                one.library,
                one.ops / statistics.median(one.seconds),
                statistics.median(ratios),
                one.stall * 1000 if one.watch_loop else None,
            )
        )
    return rows


async def bench(records: int, lookups: int, repeat: int, directory: str) -> list[Row]:
    events = make_events(records)
    rng = random.Random(7)
    numbers = [rng.randint(1, records) for _ in range(lookups)]
    peer_path = os.path.join(directory, "peer.capture")
    paths = {
        durable: os.path.join(directory, f"aiorecords-{durable}.capture")
        for durable in (False, True)
    }

    # -- 1: append --------------------------------------------------------
    async def peer_append() -> None:
        cf = SyncCaptureFile(peer_path, to_write=True, force_new_empty_file=True)
        for number, event in enumerate(events, 1):
            cf.add_record(event)
            if number % 1000 == 0:
                cf.commit()
                await asyncio.sleep(0)
        cf.commit()
        cf.close()

    def our_append(durable: bool, many: bool = False) -> Callable[[], Awaitable[None]]:
        """A commit every 1,000 events; with ``many``, each 1,000 added by
        one add_records() call."""

        async def append() -> None:
            async with CaptureFile(
                paths[durable],
                to_write=True,
                force_new_empty_file=True,
                durable=durable,
            ) as cf:
                if many:
                    for start in range(0, len(events), 1000):
                        await cf.add_records(events[start : start + 1000])
                        await cf.commit()
                else:
                    for number, event in enumerate(events, 1):
                        await cf.add_record(event)
                        if number % 1000 == 0:
                            await cf.commit()
                    await cf.commit()

        return append

    # Warm up: first touches of memory and of the file system are not measured.
    warm = Series("warm-up", our_append(False), records)
    await warm.once()
    await Series("warm-up", peer_append, records).once()

    rows = await compare(
        "append, commit every 1,000",
        [
            Series(f"{PEER} (no fsync)", peer_append, records),
            Series("aiorecords zstd, durable=False", our_append(False), records),
            Series("aiorecords zstd, durable (fdatasync)", our_append(True), records),
            Series(
                "aiorecords zstd, add_records, durable=False",
                our_append(False, many=True),
                records,
            ),
            Series(
                "aiorecords zstd, add_records, durable (fdatasync)",
                our_append(True, many=True),
                records,
            ),
        ],
        repeat,
    )

    # -- 2: iterate -------------------------------------------------------
    async def peer_iterate() -> None:
        cf = SyncCaptureFile(peer_path)
        count = 0
        for count, _ in enumerate(cf, 1):
            if count % 1000 == 0:
                await asyncio.sleep(0)
        assert count == records
        cf.close()

    async def our_iterate() -> None:
        cf = await CaptureFile(paths[True])
        count = 0
        async for _ in cf:
            count += 1
        assert count == records
        await cf.close()

    rows += await compare(
        "iterate",
        [
            Series(PEER, peer_iterate, records),
            Series("aiorecords zstd", our_iterate, records),
        ],
        repeat,
    )

    # -- 3: random record_at ------------------------------------------------
    async def peer_lookups() -> None:
        cf = SyncCaptureFile(peer_path)
        for number in numbers:
            cf.record_at(number)
        cf.close()

    async def our_lookups() -> None:
        cf = await CaptureFile(paths[True])
        for number in numbers:
            await cf.record_at(number)
        await cf.close()

    async def our_lookups_uncached() -> None:
        capacity = block_cache.capacity
        set_block_cache_size(0)
        try:
            await our_lookups()
        finally:
            set_block_cache_size(capacity)

    rows += await compare(
        "random record_at",
        [
            Series(PEER, peer_lookups, lookups, watch_loop=False),
            Series("aiorecords zstd", our_lookups, lookups, watch_loop=False),
            Series(
                "aiorecords zstd, block cache off",
                our_lookups_uncached,
                lookups,
                watch_loop=False,
            ),
        ],
        repeat,
    )
    # The bytes of data written (the files are preallocated in steps, so
    # their sizes on disk say less). Read from each library's committed state.
    peer = SyncCaptureFile(peer_path)
    peer_bytes = peer._current_master_node.file_limit
    peer.close()
    _, commit = await read_commit(paths[True])
    our_bytes = commit.file_limit
    print(f"data written: {PEER} {peer_bytes:,} bytes,", end=" ")
    print(f"aiorecords zstd {our_bytes:,} bytes")
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| workload | library | ops/s | vs CaptureFile | worst loop stall |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        stall = "-" if r.stall_ms is None else f"{r.stall_ms:.1f} ms"
        cells = [
            r.workload,
            r.library,
            f"{r.per_second:,.0f}",
            f"{r.ratio:.2f}x",
            stall,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per workload")
    parser.add_argument("--dir", default=None, help="where to write the files")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        rows = asyncio.run(bench(args.records, args.lookups, args.repeat, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    kernels = "compiled" if _kernels.compiled is not None else "pure Python"
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {kernels} kernels; "
        f"{args.records:,} records, {args.lookups:,} lookups; "
        f"{args.repeat} runs of each, taking turns"
    )
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
