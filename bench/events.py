"""Durable event appends: aiorecords' group commit beside SQLite and CaptureFile.

For 1, 10, 100 and 1,000 concurrent producer tasks, each appending 100-byte
JSON events as fast as acknowledgements come, for a few seconds:

* **aiorecords**: ``await capture_file.append(event)`` (durable: the
  commit that covers the event is synced before the call returns);
* **(a) aiosqlite, WAL, synchronous=FULL**, one transaction (INSERT then
  COMMIT) per event: durable;
* **(b) aiosqlite, WAL, synchronous=NORMAL**, one transaction per event:
  not durable (WAL commits are synced only at checkpoints);
* **(c) CaptureFile 1.2.0**, ``add_record`` then ``commit`` per event: not
  durable (it never syncs), and synchronous: it runs on the event loop.

It prints events acknowledged per second and the p50/p99 acknowledgement
latency, and the cost of two ``fdatasync`` calls on this machine (what one
durable commit needs at least), measured in the same run.

    python bench/events.py [--seconds S] [--producers 1,10,100,1000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from aiorecords import CaptureFile

EVENT = json.dumps(
    {"user": 12345, "action": "page_view", "path": "/articles/42", "pad": "x" * 34},
    separators=(",", ":"),
)
assert len(EVENT) == 100, len(EVENT)

Append = Callable[[str], Awaitable[object]]


async def run_producers(
    append: Append, producers: int, seconds: float
) -> tuple[float, list[float]]:
    """Events acknowledged per second, and every acknowledgement latency."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def producer() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await append(EVENT)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return len(latencies) / (time.perf_counter() - start), latencies


@contextlib.asynccontextmanager
async def aiorecords_log(directory: str):  # type: ignore[no-untyped-def]
    path = os.path.join(directory, "events.capture")
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as log:
        yield log.append


@contextlib.asynccontextmanager
async def sqlite_log(directory: str, synchronous: str):  # type: ignore[no-untyped-def]
    import aiosqlite

    path = os.path.join(directory, f"events-{synchronous}.db")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={synchronous}")
        await db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
        await db.commit()
        # One connection, one transaction per event: tasks take turns.
        turn = asyncio.Lock()

        async def append(event: str) -> None:
            async with turn:
                await db.execute("INSERT INTO events (body) VALUES (?)", (event,))
                await db.commit()

        yield append


@contextlib.asynccontextmanager
async def capturefile_log(directory: str):  # type: ignore[no-untyped-def]
    from CaptureFile import CaptureFile as PeerCaptureFile

    path = os.path.join(directory, "events-peer.capture")
    log = PeerCaptureFile(path, to_write=True, force_new_empty_file=True)

    async def append(event: str) -> None:
        log.add_record(event)
        log.commit()  # synchronous, on the event loop
        await asyncio.sleep(0)  # let the other producers have a turn

    try:
        yield append
    finally:
        log.close()


def two_fdatasyncs(directory: str, rounds: int = 200) -> float:
    """Median seconds of a small write + fdatasync, twice (a durable commit's
    minimum: data, then master node)."""
    path = os.path.join(directory, "sync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    times = []
    try:
        for n in range(rounds):
            start = time.perf_counter()
            os.pwrite(fd, EVENT.encode(), 8192 + n * 128)
            os.fdatasync(fd)
            os.pwrite(fd, b"m" * 64, 0)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.median(times)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def bench(
    seconds: float, producer_counts: list[int], directory: str
) -> list[tuple[str, ...]]:
    systems = [
        ("aiorecords append (durable)", lambda: aiorecords_log(directory)),
        ("(a) aiosqlite WAL FULL (durable)", lambda: sqlite_log(directory, "FULL")),
        ("(b) aiosqlite WAL NORMAL", lambda: sqlite_log(directory, "NORMAL")),
        ("(c) CaptureFile 1.2.0, commit per event", lambda: capturefile_log(directory)),
    ]
    rows = []
    for producers in producer_counts:
        rates = {}
        for name, make in systems:
            async with make() as append:
                rate, latencies = await run_producers(append, producers, seconds)
            rates[name] = rate
            versus = rate / rates[systems[1][0]] if systems[1][0] in rates else None
            rows.append(
                (
                    str(producers),
                    name,
                    f"{rate:,.0f}",
                    f"{percentile(latencies, 0.5) * 1000:.2f} ms",
                    f"{percentile(latencies, 0.99) * 1000:.2f} ms",
                    ""
                    if versus is None or name.startswith("(a)")
                    else f"{versus:.1f}x",
                )
            )
        # aiorecords ran before (a) was measured: fill in its ratio.
        ours = rates[systems[0][0]] / rates[systems[1][0]]
        index = len(rows) - len(systems)
        rows[index] = (*rows[index][:5], f"{ours:.1f}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--producers", default="1,10,100,1000")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    counts = [int(n) for n in args.producers.split(",")]
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        sync_cost = two_fdatasyncs(directory)
        rows = asyncio.run(bench(args.seconds, counts, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {args.seconds:g} s per run; 100-byte JSON events; "
        f"two fdatasyncs (write + sync, twice) take {sync_cost * 1000:.3f} ms here"
    )
    print("| producers | system | events/s | p50 | p99 | vs (a) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    lone = [row for row in rows if row[0] == "1" and row[1].startswith("aiorecords")]
    if lone:
        per_event = 1 / float(lone[0][2].replace(",", ""))
        print(
            f"lone producer: {per_event * 1000:.3f} ms per durable event, "
            f"{per_event / sync_cost:.2f}x the cost of two fdatasyncs"
        )


if __name__ == "__main__":
    sys.exit(main())
