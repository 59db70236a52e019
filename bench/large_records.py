"""Large records in a capture file: the time to add and commit one, and what
it does to the event loop, beside CaptureFile 1.2.0 in the same run.

For records of 16 and 64 MiB (bytes, incompressible, and text), each system
adds one record and commits it, several times, taking turns, while a task
wakes every millisecond and measures how late it wakes: the worst lateness
is the loop stall. CaptureFile 1.2.0 is synchronous, so it runs on the loop
and stalls it for all of its time; an idle loop, beside nothing, is the
control column.

    python bench/large_records.py [--repeat N] [--dir DIR]
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

from aiorecords import CaptureFile, _kernels

MIB = 1024 * 1024


class Heartbeat:
    """A task waking every millisecond; ``worst`` is its worst lateness."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def _beat(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.ensure_future(self._beat())
        await asyncio.sleep(0.005)  # let it start
        try:
            yield
            await asyncio.sleep(0.005)  # its wake-up after the last step
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def measure(run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    heart = Heartbeat()
    async with heart.running():
        start = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - start
    return elapsed, heart.worst


async def bench(repeat: int, directory: str) -> list[tuple[str, ...]]:
    from CaptureFile import CaptureFile as PeerCaptureFile

    rows = []
    for size in (16 * MIB, 64 * MIB):
        as_bytes = os.urandom(MIB) * (size // MIB)
        as_text = ("event " * (size // 6 + 1))[:size]
        ours_path = os.path.join(directory, "ours.capture")
        peer_path = os.path.join(directory, "peer.capture")

        def ours(
            record: bytes | str, path: str = ours_path
        ) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                async with CaptureFile(
                    path,
                    to_write=True,
                    force_new_empty_file=True,
                    encoding=None if isinstance(record, bytes) else "utf_8",
                ) as capture:
                    await capture.add_record(record)
                    await capture.commit()

            return run

        def peer(
            record: bytes | str, path: str = peer_path
        ) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                capture = PeerCaptureFile(
                    path,
                    to_write=True,
                    force_new_empty_file=True,
                    encoding=None if isinstance(record, bytes) else "utf_8",
                )
                capture.add_record(record)
                capture.commit()
                capture.close()

            return run

        async def idle() -> None:
            await asyncio.sleep(0.2)

        for kind, record in (("bytes", as_bytes), ("text", as_text)):
            times: dict[str, list[float]] = {"ours": [], "peer": []}
            stalls: dict[str, list[float]] = {"ours": [], "peer": [], "idle": []}
            for _ in range(repeat):
                for name, job in (("peer", peer(record)), ("ours", ours(record))):
                    elapsed, worst = await measure(job)
                    times[name].append(elapsed)
                    stalls[name].append(worst)
                stalls["idle"].append((await measure(idle))[1])
            for name, label in (
                ("ours", "aiorecords zstd"),
                ("peer", "CaptureFile 1.2.0"),
            ):
                rows.append(
                    (
                        f"one {size // MIB} MiB record ({kind})",
                        label,
                        f"{statistics.median(times[name]) * 1000:,.0f} ms",
                        f"{max(stalls[name]) * 1000:.1f} ms",
                        f"{max(stalls['idle']) * 1000:.1f} ms",
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        rows = asyncio.run(bench(args.repeat, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    kernels = "compiled" if _kernels.compiled is not None else "pure Python"
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {kernels} kernels; {args.repeat} runs of each, "
        "taking turns"
    )
    columns = ["add + commit (median)", "worst loop stall", "idle loop's worst stall"]
    print("| workload | library | " + " | ".join(columns) + " |")
    print("| --- | --- |" + " ---: |" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
