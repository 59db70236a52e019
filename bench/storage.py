"""Object storage benchmark: a LevelDB log, a capture file and an archive
read from a real S3 protocol server on loopback, aiorecords beside s3fs's
own streamed read of the same object, in one run.

A moto S3 server runs in a process of its own on 127.0.0.1. A log of
``--mib`` MiB of 10 KiB records is uploaded once; then, taking turns:

* aiorecords: ``RecordsReader("s3://...", storage_options=...)`` iterated
  to the end (each range request awaited on the event loop), under a 1 ms
  heartbeat that records the worst event-loop stall;
* s3fs: ``fs.open(path, block_size=...)`` read to the end in 4 MiB chunks
  (its own read-ahead cache), in a worker thread, as a user reading the
  object as a file would; the heartbeat runs too (the machine's stall).

The same two, taking turns, for a capture file of ``--records`` records
(100 to 300 bytes, zstd) iterated to the end, and an archive of 10 MiB
entries (``--mib`` MiB) listed and read. Then 1,000 random ``record_at`` on
the capture file: on one open file (the first lookups miss, later ones find
ranges and blocks held), again for the same numbers (warm), and 100 each on
a newly opened file (cold); the range requests each costs are counted.

Two rows put the stalls in context: the heartbeat alone while another
process reads the log by 8 MiB ranges (the stall the machine causes with
nothing of ours running), and a new process's first open to its first
record (which makes the loop's S3 client), with s3fs imported at start-up
and not.

    python bench/storage.py [--mib N] [--records N] [--repeat N] [--read-size MIB]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import boto3
import s3fs

from aiorecords import Archive, CaptureFile, RecordsReader, RecordsWriter
from aiorecords._remote import RemoteFile

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


def s3_client(endpoint: str) -> Any:
    """A boto3 client of the moto server (to put and check objects)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


async def make_log(path: str, mib: int) -> int:
    record = os.urandom(RECORD)
    count = mib * MIB // RECORD // 1000 * 1000
    async with RecordsWriter(path, replace=True) as writer:
        for _ in range(count // 1000):
            await writer.write_many([record] * 1000)
    return count


async def make_capture(path: str, records: int) -> None:
    rng = random.Random(1)
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None, durable=False
    ) as cf:
        for n in range(records):
            await cf.add_record(b"%d " % n + rng.randbytes(rng.randrange(100, 300)))
        await cf.commit()


async def make_archive(path: str, mib: int) -> None:
    async with Archive.open(path, "rdwr") as archive:
        for n in range(mib // 10):
            async with archive.append(f"entry-{n}") as out:
                for _ in range(10):
                    await out.write(os.urandom(MIB))


# A fresh interpreter opening the log and reading its first record under a
# 1 ms heartbeat: the stall of the first open of a process, which makes the
# loop's S3 client (and imports s3fs, unless the program did at start-up).
FIRST_OPEN = """
import asyncio, json, sys, time
if sys.argv[3] == "imported":
    import s3fs
from aiorecords import RecordsReader

async def main():
    worst = 0.0
    async def beat():
        nonlocal worst
        expected = time.perf_counter() + 0.001
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - expected)
            expected = now + 0.001
    task = asyncio.create_task(beat())
    await asyncio.sleep(0.005)
    start = time.perf_counter()
    options = {"key": "testing", "secret": "testing", "endpoint_url": sys.argv[1],
               "client_kwargs": {"region_name": "us-east-1"}}
    async with RecordsReader(sys.argv[2], storage_options=options) as reader:
        await reader.read()
    took = time.perf_counter() - start
    task.cancel()
    print(json.dumps([took, worst]))

asyncio.run(main())
"""


def first_open(endpoint: str, url: str, s3fs_imported: bool) -> tuple[float, float]:
    """Seconds to the first record, and the worst stall, in a new process."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            FIRST_OPEN,
            endpoint,
            url,
            "imported" if s3fs_imported else "not",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    took, worst = json.loads(out)
    return took, worst


# Another process reading the object in 8 MiB ranges with boto3 while this
# one runs nothing but the heartbeat: the stall the machine itself causes.
READ_BY_RANGES = """
import sys, boto3
client = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
size = int(sys.argv[4])
for offset in range(0, size, 8 << 20):
    wanted = f"bytes={offset}-{min(offset + (8 << 20), size) - 1}"
    client.get_object(Bucket=sys.argv[2], Key=sys.argv[3], Range=wanted)["Body"].read()
"""


async def machine_floor(endpoint: str, key: str, size: int) -> float:
    heart = Heartbeat()
    async with heart.running():
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", READ_BY_RANGES, endpoint, BUCKET, key, str(size)
        )
        await child.wait()
    return heart.worst


class Requests:
    """Counts the range requests aiorecords makes (a benchmark's wrapper)."""

    count = 0
    _read = RemoteFile.read

    @classmethod
    def install(cls) -> None:
        async def counted(self: RemoteFile, offset: int, size: int) -> bytes:
            cls.count += 1
            return await cls._read(self, offset, size)

        RemoteFile.read = counted  # type: ignore[method-assign]


async def lookups(url: str, storage_options: dict[str, object], total: int) -> str:
    rng = random.Random(2)
    async with CaptureFile(url, encoding=None, storage_options=storage_options) as cf:
        numbers = [rng.randrange(1, cf.record_count() + 1) for _ in range(1000)]
        rows = []
        for label, wanted in (("first pass", numbers), ("warm", numbers)):
            before, start = Requests.count, time.perf_counter()
            for n in wanted:
                await cf.record_at(n)
            elapsed = time.perf_counter() - start
            rows.append((label, Requests.count - before, elapsed, len(wanted)))
    cold_requests, cold_time = 0, 0.0
    for n in numbers[:100]:
        async with CaptureFile(
            url, encoding=None, storage_options=storage_options
        ) as cf:
            before, start = Requests.count, time.perf_counter()
            await cf.record_at(n)
            cold_time += time.perf_counter() - start
            cold_requests += Requests.count - before
    rows.append(("cold (a newly opened file)", cold_requests, cold_time, 100))
    lines = [
        f"| {label} | {n:,} | {requests / n:.2f} | {elapsed / n * 1e3:.2f} |"
        for label, requests, elapsed, n in rows
    ]
    header = (
        f"| random record_at of {total:,} records | lookups | range requests "
        "per lookup | ms per lookup |\n| --- | ---: | ---: | ---: |"
    )
    return "\n".join([header, *lines])


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
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--read-size", type=int, default=8, help="MiB a request")
    args = parser.parse_args()
    read_size = args.read_size * MIB

    with tempfile.TemporaryDirectory() as directory, moto_server() as endpoint:
        path = os.path.join(directory, KEY)
        count = asyncio.run(make_log(path, args.mib))
        size = os.path.getsize(path)
        client = s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        capture = os.path.join(directory, "events.capture")
        asyncio.run(make_capture(capture, args.records))
        archive = os.path.join(directory, "assets.archive")
        asyncio.run(make_archive(archive, args.mib))
        objects = {"log": path, "capture": capture, "archive": archive}
        for local in objects.values():
            client.upload_file(local, BUCKET, os.path.basename(local))
        storage_options = options(endpoint)

        def url_of(kind: str) -> str:
            return f"s3://{BUCKET}/{os.path.basename(objects[kind])}"

        async def read_log() -> int:
            n = 0
            async with RecordsReader(
                url_of("log"),
                storage_options=storage_options,
                remote_read_size=read_size,
            ) as reader:
                async for _ in reader:
                    n += 1
            return n

        async def read_capture() -> int:
            async with CaptureFile(
                url_of("capture"), encoding=None, storage_options=storage_options
            ) as cf:
                return sum([1 async for _ in cf])

        async def read_archive() -> int:
            total = 0
            async with Archive.open(
                url_of("archive"), storage_options=storage_options
            ) as ar:
                for entry in await ar.contents():
                    async with ar.read(entry) as stream:
                        async for chunk in stream:
                            total += len(chunk)
            return total

        async def log_streaming() -> tuple[float, int, float]:
            # The stall while streaming only: the reader is opened (its
            # client made, which loads botocore's service model) first.
            async with RecordsReader(
                url_of("log"),
                storage_options=storage_options,
                remote_read_size=read_size,
            ) as reader:
                await reader.tell()

                async def stream() -> int:
                    return sum([1 async for _ in reader])

                return await measure(stream)

        def theirs_blocking(kind: str) -> int:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **storage_options)
            total = 0
            key = f"{BUCKET}/{os.path.basename(objects[kind])}"
            with fs.open(key, "rb", block_size=read_size) as f:
                while piece := f.read(4 * MIB):
                    total += len(piece)
            return total

        workloads = {
            "log": (read_log, count),
            "capture": (read_capture, args.records),
            "archive": (read_archive, args.mib // 10 * 10 * MIB),
        }
        rows: dict[str, dict[str, list[tuple[float, float]]]] = {
            kind: {"ours": [], "theirs": []} for kind in workloads
        }
        for _ in range(args.repeat):
            for kind, (ours, expect) in workloads.items():
                size = os.path.getsize(objects[kind])

                async def theirs(kind: str = kind) -> int:
                    return await asyncio.to_thread(theirs_blocking, kind)

                for name, run, wanted in (
                    ("ours", ours, expect),
                    ("theirs", theirs, size),
                ):
                    elapsed, amount, stall = asyncio.run(measure(run))
                    assert amount == wanted, (kind, name, amount, wanted)
                    rows[kind][name].append((size / elapsed / 1e6, stall * 1000))

        streaming = [asyncio.run(log_streaming()) for _ in range(args.repeat)]
        floors = [
            asyncio.run(machine_floor(endpoint, KEY, os.path.getsize(path)))
            for _ in range(args.repeat)
        ]
        first_opens = {
            imported: [
                first_open(endpoint, url_of("log"), imported)
                for _ in range(args.repeat)
            ]
            for imported in (False, True)
        }
        Requests.install()
        lookup_table = asyncio.run(
            lookups(url_of("capture"), storage_options, args.records)
        )
        sizes = {kind: os.path.getsize(local) for kind, local in objects.items()}

    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; moto S3 server on loopback; {args.repeat} runs "
        f"of each, taking turns; {args.read_size} MiB a request for the log; "
        "MB/s are of the object's bytes"
    )
    print(
        "| workload | aiorecords MB/s | s3fs MB/s | of s3fs "
        "| worst loop stall: aiorecords / s3fs in a thread |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {
        "log": f"stream a {sizes['log'] / MIB:.0f} MiB log of {count:,} records",
        "capture": f"iterate a {sizes['capture'] / MIB:.0f} MiB capture file of "
        f"{args.records:,} records",
        "archive": f"list and read a {sizes['archive'] / MIB:.0f} MiB archive "
        "(10 MiB entries)",
    }
    for kind, label in labels.items():
        ours_rates = [rate for rate, _ in rows[kind]["ours"]]
        their_rates = [rate for rate, _ in rows[kind]["theirs"]]
        ratios = [a / b for a, b in zip(ours_rates, their_rates, strict=True)]
        print(
            f"| {label} | {statistics.median(ours_rates):,.0f} | "
            f"{statistics.median(their_rates):,.0f} | "
            f"{statistics.median(ratios):.0%} | "
            f"{max(s for _, s in rows[kind]['ours']):.1f} / "
            f"{max(s for _, s in rows[kind]['theirs']):.1f} ms |"
        )
    print(
        f"| the log again, the reader opened first | "
        f"{statistics.median(sizes['log'] / e / 1e6 for e, _, _ in streaming):,.0f}"
        f" | | | {max(stall for _, _, stall in streaming) * 1000:.1f} ms |"
    )
    print(
        f"| nothing but the heartbeat, another process reading the log by 8 MiB "
        f"ranges (the machine's own stall) | | | | {max(floors) * 1000:.1f} ms |"
    )
    print()
    print(
        "| first open of a new process, to its first record | ms | worst loop stall |"
    )
    print("| --- | ---: | ---: |")
    for imported, label in (
        (False, "s3fs not imported before"),
        (True, "s3fs imported at start-up"),
    ):
        runs = first_opens[imported]
        print(
            f"| {label} | {statistics.median(t for t, _ in runs) * 1000:.0f} | "
            f"{min(w for _, w in runs) * 1000:.1f} to "
            f"{max(w for _, w in runs) * 1000:.1f} ms |"
        )
    print()
    print(lookup_table)


if __name__ == "__main__":
    main()
