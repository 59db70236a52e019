"""Object storage benchmark: a LevelDB log streamed from a real S3 protocol
server on loopback, aiorecords beside s3fs's own streamed read, in one run.

A moto S3 server runs in a process of its own on 127.0.0.1. A log of
``--mib`` MiB of 10 KiB records is uploaded once; then, taking turns:

* aiorecords: ``RecordsReader("s3://...", storage_options=...)`` iterated
  to the end (each range request awaited on the event loop), under a 1 ms
  heartbeat that records the worst event-loop stall;
* s3fs: ``fs.open(path, block_size=...)`` read to the end in 4 MiB chunks
  (its own read-ahead cache), in a worker thread, as a user reading the
  object as a file would; the heartbeat runs too (the machine's stall).

Capture files and archives are not read from object storage yet, so their
rows (iterating a 1,000,000-record capture file, random ``record_at``) are
not here.

    python bench/storage.py [--mib N] [--repeat N] [--read-size MIB]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import boto3
import s3fs

from aiorecords import RecordsReader, RecordsWriter

MIB = 1024 * 1024
RECORD = 10 * 1024
BUCKET = "bench"
KEY = "events.log"


class Heartbeat:
    """A task that wakes every millisecond and records its latest wake-up."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def _beat(self) -> None:
        expected = time.perf_counter() + 0.001
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - expected)
            expected = now + 0.001

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> object:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the server is starting: nothing to wait on
        yield endpoint
    finally:
        process.terminate()
        process.wait()


def options(endpoint: str) -> dict[str, object]:
    return {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }


async def make_log(path: str, mib: int) -> int:
    record = os.urandom(RECORD)
    count = mib * MIB // RECORD // 1000 * 1000
    async with RecordsWriter(path, replace=True) as writer:
        for _ in range(count // 1000):
            await writer.write_many([record] * 1000)
    return count


async def measure(run: Callable[[], Awaitable[int]]) -> tuple[float, int, float]:
    heart = Heartbeat()
    async with heart.running():
        start = time.perf_counter()
        amount = await run()
        elapsed = time.perf_counter() - start
    return elapsed, amount, heart.worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--read-size", type=int, default=8, help="MiB a request")
    args = parser.parse_args()
    read_size = args.read_size * MIB

    with tempfile.TemporaryDirectory() as directory, moto_server() as endpoint:
        path = os.path.join(directory, KEY)
        count = asyncio.run(make_log(path, args.mib))
        size = os.path.getsize(path)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(path, BUCKET, KEY)
        url = f"s3://{BUCKET}/{KEY}"
        storage_options = options(endpoint)

        async def ours() -> int:
            n = 0
            async with RecordsReader(
                url, storage_options=storage_options, remote_read_size=read_size
            ) as reader:
                async for _ in reader:
                    n += 1
            return n

        async def ours_streaming() -> tuple[float, int, float]:
            # The stall while streaming only: the reader is opened (its
            # client made, which loads botocore's service model) first.
            async with RecordsReader(
                url, storage_options=storage_options, remote_read_size=read_size
            ) as reader:
                await reader.tell()

                async def stream() -> int:
                    return sum([1 async for _ in reader])

                return await measure(stream)

        def theirs_blocking() -> int:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **storage_options)
            total = 0
            with fs.open(f"{BUCKET}/{KEY}", "rb", block_size=read_size) as f:
                while piece := f.read(4 * MIB):
                    total += len(piece)
            return total

        async def theirs() -> int:
            return await asyncio.to_thread(theirs_blocking)

        rows: dict[str, list[tuple[float, float]]] = {"ours": [], "theirs": []}
        for _ in range(args.repeat):
            for name, run, expect in (
                ("ours", ours, count),
                ("theirs", theirs, size),
            ):
                elapsed, amount, stall = asyncio.run(measure(run))
                assert amount == expect, (name, amount, expect)
                rows[name].append((size / elapsed / 1e6, stall * 1000))

        streaming = [asyncio.run(ours_streaming()) for _ in range(args.repeat)]

    ours_rates = [rate for rate, _ in rows["ours"]]
    their_rates = [rate for rate, _ in rows["theirs"]]
    ratios = [a / b for a, b in zip(ours_rates, their_rates, strict=True)]
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; moto S3 server on loopback; {args.repeat} runs "
        f"of each, taking turns; {args.mib} MiB log of {count:,} records; "
        f"{args.read_size} MiB a request"
    )
    print(
        "| workload | aiorecords MB/s | s3fs MB/s | of s3fs "
        "| worst loop stall: aiorecords / s3fs in a thread |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| stream a {args.mib} MiB log from S3 | "
        f"{statistics.median(ours_rates):,.0f} | "
        f"{statistics.median(their_rates):,.0f} | "
        f"{statistics.median(ratios):.0%} | "
        f"{max(s for _, s in rows['ours']):.1f} / "
        f"{max(s for _, s in rows['theirs']):.1f} ms |"
    )
    print(
        f"| the same, the reader opened first | "
        f"{statistics.median(size / e / 1e6 for e, _, _ in streaming):,.0f} | | | "
        f"{max(stall for _, _, stall in streaming) * 1000:.1f} ms |"
    )


if __name__ == "__main__":
    main()
