"""Scale-out benchmark: files of every format read through Dask with one and
with two worker processes, beside the single-process ``aread_split`` loop
over the same splits, in one run, taking turns.

``--files`` files of each format, ``--mib`` MiB in all per format (2 GiB in
256 files by default), are written once into ``--dir`` (a temporary
directory by default, removed at the end): LevelDB logs, capture files
(zstd), archives (entries of 64 KiB) and TFRecord files (with their
``.tfindex``), of records of 100 to 1,900 bytes. Then, for each format,
taking turns ``--repeat`` times:

* one process: ``aplan_splits()`` and an ``async for`` over
  ``aread_split()`` of each split, in order, on one event loop, counting
  records and bytes;
* Dask, one worker: ``aiorecords.dask.read(...)`` on a
  ``distributed.LocalCluster`` of one worker process of one thread, each
  partition reduced to its count and bytes in the worker (so that what is
  measured is the reading, not sending records to the client);
* Dask, two workers: the same on a cluster of two worker processes.

The clusters are started before the clock starts. Planning is timed in
every case (Dask plans on the client). The files are in the page cache
after the first turn (the machine's memory holds them): this measures the
reading and decoding, not the disk.

    python bench/scale.py [--mib N] [--files N] [--repeat N] [--formats a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from distributed import Client, LocalCluster

import aiorecords
import aiorecords.dask

MIB = 1024 * 1024
FORMATS = ("records", "capture", "archive", "tfrecord")


#: Text the records are cut from (made once: cutting is fast, drawing each
#: record's characters afresh would take longer than the reading measured).
_TEXT = bytes(
    random.Random(0).choices(b"abcdefghijklmnopqrstuvwxyz0123456789 ,:{}", k=1 << 20)
)


def records_for(size: int, seed: int) -> list[bytes]:
    """Records of 100 to 1,900 bytes of text, ``size`` bytes in all."""
    rng = random.Random(seed)
    out, total = [], 0
    while total < size:
        length = rng.randrange(100, 1900)
        start = rng.randrange(len(_TEXT) - length)
        out.append(_TEXT[start : start + length])
        total += length
    return out


async def build(path: str, fmt: str, records: list[bytes]) -> None:
    if fmt == "records":
        async with aiorecords.RecordsWriter(path, replace=True) as writer:
            await writer.write_many(records)
    elif fmt == "tfrecord":
        async with aiorecords.TFRecordWriter(path, index=True, replace=True) as writer:
            await writer.write_many(records)
    elif fmt == "capture":
        async with aiorecords.CaptureFile(
            path, to_write=True, force_new_empty_file=True, encoding=None, durable=False
        ) as capture:
            for record in records:
                await capture.add_record(record)
            await capture.commit()
    else:
        async with await aiorecords.Archive.open(path, "rdwr") as archive:
            entry, held = bytearray(), 0
            number = 0
            for record in records:
                entry += record
                if len(entry) >= 64 * 1024:
                    async with archive.append(f"e{number}", compression="zstd") as out:
                        await out.write(bytes(entry))
                    number += 1
                    entry = bytearray()
                held += len(record)
            if entry:
                async with archive.append(f"e{number}", compression="zstd") as out:
                    await out.write(bytes(entry))


async def build_all(directory: str, fmt: str, files: int, mib: int) -> str:
    os.makedirs(os.path.join(directory, fmt), exist_ok=True)
    each = mib * MIB // files
    for number in range(files):
        path = os.path.join(directory, fmt, f"part-{number:04d}.{fmt}")
        await build(path, fmt, records_for(each, number))
    return os.path.join(directory, fmt, f"part-*.{fmt}")


def counted(part: list[bytes]) -> list[tuple[int, int]]:
    """A partition reduced in its worker: its records and their bytes."""
    return [(len(part), sum(map(len, part)))]


def one_process(pattern: str) -> tuple[int, int]:
    async def loop() -> tuple[int, int]:
        count = size = 0
        for split in await aiorecords.aplan_splits(pattern):
            async for record in aiorecords.aread_split(split):
                count += 1
                size += len(record)
        return count, size

    return asyncio.run(loop())


def through_dask(client: Client, pattern: str) -> tuple[int, int]:
    bag = aiorecords.dask.read(pattern).map_partitions(counted)
    parts = client.compute(bag).result()
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def timed(run: Callable[[], tuple[int, int]]) -> tuple[float, tuple[int, int]]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=2048, help="MiB per format")
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    formats = args.formats.split(",")
    directory = args.dir or tempfile.mkdtemp(prefix="aiorecords-scale-")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {args.files} files, {args.mib} MiB per format"
    )
    try:
        patterns = {}
        for fmt in formats:
            start = time.perf_counter()
            patterns[fmt] = asyncio.run(build_all(directory, fmt, args.files, args.mib))
            print(f"# wrote the {fmt} files in {time.perf_counter() - start:.0f} s")
        one = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        two = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        with one, two, Client(one) as client_one, Client(two) as client_two:
            rows = []
            for fmt in formats:
                times: dict[str, list[float]] = {"one": [], "dask1": [], "dask2": []}
                results = set()
                for _ in range(args.repeat):
                    pattern = patterns[fmt]
                    turns: list[tuple[str, Callable[[], tuple[int, int]]]] = [
                        ("one", functools.partial(one_process, pattern)),
                        ("dask1", functools.partial(through_dask, client_one, pattern)),
                        ("dask2", functools.partial(through_dask, client_two, pattern)),
                    ]
                    for name, run in turns:
                        seconds, result = timed(run)
                        times[name].append(seconds)
                        results.add(result)
                assert len(results) == 1, f"{fmt}: the three disagree: {results}"
                (count, size) = results.pop()
                best = {name: min(values) for name, values in times.items()}
                rows.append((fmt, count, size, best, times))
        print()
        print(
            "| format | records | MB | one process MB/s | Dask, 1 worker MB/s "
            "| Dask, 2 workers MB/s | 2 workers / 1 | 1 worker / one process |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for fmt, count, size, best, _ in rows:
            mb = size / 1e6
            print(
                f"| {fmt} | {count:,} | {mb:,.0f} | {mb / best['one']:.0f} "
                f"| {mb / best['dask1']:.0f} | {mb / best['dask2']:.0f} "
                f"| {best['dask1'] / best['dask2']:.2f}x "
                f"| {best['one'] / best['dask1']:.0%} |"
            )
        print()
        for fmt, _, _, _, times in rows:
            spread = ", ".join(
                f"{name} {statistics.median(values):.2f} s (median of {len(values)})"
                for name, values in times.items()
            )
            print(f"# {fmt}: {spread}")
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
