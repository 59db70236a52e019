"""Capture file benchmark: aiorecords against CaptureFile 1.2.0, in one run.

Workloads (see docs/performance.md):

1. append N JSON events of about 100 bytes with varying content, committing
   every 1,000 (aiorecords durable, aiorecords durable=False, CaptureFile);
2. iterate over all of them;
3. 20,000 random ``record_at``;
4. the longest event-loop stall a 1 ms heartbeat task sees during 1 and 2.

CaptureFile is synchronous; it is run from a coroutine, as an async program
that used it would, so its stall column shows what it does to the loop.

    python bench/capture.py [--records N] [--lookups N] [--dir DIR]
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
from collections.abc import AsyncIterator, Callable
from typing import Any

from CaptureFile import CaptureFile as SyncCaptureFile

from aiorecords import CaptureFile, set_block_cache_size
from aiorecords._cache import block_cache


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
    """A task that wakes every millisecond and records the longest late wake-up."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

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
        self.worst = 0.0
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(0.005)
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


REPEAT = 3


async def timed(run: Callable[[], Any]) -> tuple[float, float]:
    """Median seconds over REPEAT runs of awaiting ``run()``, and the worst
    event-loop stall seen in any of them."""
    times = []
    worst = 0.0
    for _ in range(REPEAT):
        async with Heartbeat().running() as heart:
            start = time.perf_counter()
            await run()
            times.append(time.perf_counter() - start)
        worst = max(worst, heart.worst)
    return statistics.median(times), worst


async def bench(records: int, lookups: int, directory: str) -> list[dict[str, Any]]:
    events = make_events(records)
    rng = random.Random(7)
    numbers = [rng.randint(1, records) for _ in range(lookups)]
    rows: list[dict[str, Any]] = []

    def row(
        name: str, library: str, count: int, seconds: float, stall: float | None
    ) -> None:
        rows.append(
            {
                "workload": name,
                "library": library,
                "ops": count,
                "seconds": seconds,
                "per_s": count / seconds,
                "stall_ms": None if stall is None else stall * 1000,
            }
        )

    # -- warm-up: first touches of memory and files, not measured ---------
    warm = os.path.join(directory, "warm.capture")
    async with CaptureFile(warm, to_write=True, force_new_empty_file=True) as cf:
        for event in events[: len(events) // 10]:
            await cf.add_record(event)
        await cf.commit()
    peer = SyncCaptureFile(warm + ".peer", to_write=True, force_new_empty_file=True)
    for event in events[: len(events) // 10]:
        peer.add_record(event)
    peer.commit()
    peer.close()

    # -- CaptureFile 1.2.0 ------------------------------------------------
    peer_path = os.path.join(directory, "peer.capture")

    async def peer_append() -> None:
        cf = SyncCaptureFile(peer_path, to_write=True, force_new_empty_file=True)
        for number, event in enumerate(events, 1):
            cf.add_record(event)
            if number % 1000 == 0:
                cf.commit()
                await asyncio.sleep(0)  # let the loop run between commits
        cf.commit()
        cf.close()

    seconds, stall = await timed(peer_append)
    row(
        "append, commit every 1,000",
        "CaptureFile 1.2.0 (no fsync)",
        records,
        seconds,
        stall,
    )

    async def peer_iterate() -> None:
        cf = SyncCaptureFile(peer_path)
        count = 0
        for count, _ in enumerate(cf, 1):
            if count % 1000 == 0:
                await asyncio.sleep(0)
        assert count == records
        cf.close()

    seconds, stall = await timed(peer_iterate)
    row("iterate", "CaptureFile 1.2.0", records, seconds, stall)

    async def peer_lookups() -> None:
        cf = SyncCaptureFile(peer_path)
        for number in numbers:
            cf.record_at(number)
        cf.close()

    seconds, _ = await timed(peer_lookups)
    row("random record_at", "CaptureFile 1.2.0", lookups, seconds, None)

    # -- aiorecords --------------------------------------------------------
    for durable in (False, True):
        path = os.path.join(directory, f"aio-{durable}.capture")

        async def append(path: str = path, durable: bool = durable) -> None:
            async with CaptureFile(
                path, to_write=True, force_new_empty_file=True, durable=durable
            ) as cf:
                for number, event in enumerate(events, 1):
                    await cf.add_record(event)
                    if number % 1000 == 0:
                        await cf.commit()
                await cf.commit()

        seconds, stall = await timed(append)
        label = (
            "aiorecords zstd, durable" if durable else "aiorecords zstd, durable=False"
        )
        row("append, commit every 1,000", label, records, seconds, stall)

    path = os.path.join(directory, "aio-True.capture")

    async def iterate() -> None:
        cf = await CaptureFile(path)
        count = 0
        async for _ in cf:
            count += 1
        assert count == records
        await cf.close()

    seconds, stall = await timed(iterate)
    row("iterate", "aiorecords zstd", records, seconds, stall)

    async def lookups_run() -> None:
        # A fresh open each run: its blocks start out of the cache.
        cf = await CaptureFile(path)
        for number in numbers:
            await cf.record_at(number)
        await cf.close()

    seconds, _ = await timed(lookups_run)
    row("random record_at", "aiorecords zstd", lookups, seconds, None)

    # The same lookups with the block cache off: every lookup reads and
    # decompresses its block in a worker thread.
    capacity = block_cache.capacity
    set_block_cache_size(0)
    try:
        seconds, _ = await timed(lookups_run)
    finally:
        set_block_cache_size(capacity)
    row("random record_at", "aiorecords zstd, block cache off", lookups, seconds, None)

    sizes = {
        "CaptureFile 1.2.0": os.path.getsize(peer_path),
        "aiorecords zstd": os.path.getsize(path),
    }
    print(f"file sizes: {sizes}")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    peers = {r["workload"]: r for r in rows if r["library"].startswith("CaptureFile")}
    lines = [
        "| workload | library | ops/s | vs CaptureFile | worst loop stall |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        peer = peers[r["workload"]]
        ratio = r["per_s"] / peer["per_s"]
        stall = "-" if r["stall_ms"] is None else f"{r['stall_ms']:.1f} ms"
        lines.append(
            f"| {r['workload']} | {r['library']} | {r['per_s']:,.0f} "
            f"| {ratio:.2f}x | {stall} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--dir", default=None, help="where to write the files")
    parser.add_argument("--repeat", type=int, default=5, help="runs per workload")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        rows = asyncio.run(bench(args.records, args.lookups, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.records:,} records, {args.lookups:,} lookups, "
        f"median of {REPEAT} runs"
    )
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
