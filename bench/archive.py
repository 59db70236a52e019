"""Archive benchmark: the async Archive API beside raw file I/O and zipfile.

Four workloads, each run several times with its peer taking turns:

* 10,000 entries of 10 KiB: appended (in ``rdwr_exclusive`` and in ``rdwr``
  mode, and with ``write_behind=True``, each entry its own ``async with``
  block), then listed and read back by a fresh reader. The peer writes the
  same 10,000 payloads with one ``os.write`` each and reads them back with
  one ``os.pread`` each.
* The same entries beside the peer people would pick instead: a zip file
  (stored, the standard library's ``zipfile``) appended to entry by entry
  and read back, its whole job in one worker thread.
* 300,000 small entries: listed by a fresh object, and by ``aiorecords ls``
  (a process of its own), beside ``zipfile``'s listing of a zip holding the
  same entries (``infolist()``, and ``python -m zipfile -l``).
* One entry of 1 GiB, streamed in and out in 1 MiB writes and chunks
  (stored as written, and zstd-compressed). The peer writes and reads 1 GiB
  with ``os.write`` / ``os.read`` in 1 MiB chunks. Each streaming run is a
  separate process, which reports its peak resident memory above its own
  baseline (the interpreter with aiorecords imported).

Files stay in the page cache and nothing is synced: the costs measured are
the library's. The table gives median rates, the median ratio of
neighbouring runs, and the worst event-loop stall a 1 ms heartbeat saw,
beside the worst it saw while the peer's whole job ran in one worker thread
(what the machine itself imposes on the loop).

    python bench/archive.py [--repeat N] [--gib N (0: no big entry)] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable

from aiorecords import Archive

MIB = 1024 * 1024
ENTRIES = 10_000
ENTRY_SIZE = 10 * 1024


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


async def measure(
    run: Callable[[], Awaitable[object]], before: Callable[[], object] | None = None
) -> tuple[float, float]:
    """Time ``run`` (after ``before``, untimed) and the worst loop stall."""
    if before is not None:
        before()
    heart = Heartbeat()
    async with heart.running():
        start = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - start
    return elapsed, heart.worst


def memory_status() -> dict[str, int]:
    """This process's resident memory now and at its peak, in bytes (Linux)."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found


# ----------------------------------------------------------------------
# 10,000 entries of 10 KiB


def payloads() -> list[bytes]:
    block = os.urandom(ENTRY_SIZE + 256)
    return [block[n % 256 : n % 256 + ENTRY_SIZE] for n in range(ENTRIES)]


async def small_entries(repeat: int, directory: str) -> list[tuple[str, ...]]:
    data = payloads()
    ours = os.path.join(directory, "small.gar")
    raw = os.path.join(directory, "small.raw")

    def append(mode: str, write_behind: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with Archive.open(
                ours,
                mode=mode,  # type: ignore[arg-type]
                write_behind=write_behind,
            ) as archive:
                for n, payload in enumerate(data):
                    async with archive.append(f"entries/{n}.bin", timestamp=n) as out:
                        await out.write(payload)

        return run

    async def read_ours() -> None:
        total = 0
        async with Archive.open(ours) as archive:
            for entry in await archive.contents():
                total += len(await archive.read_bytes(entry))
        assert total == ENTRIES * ENTRY_SIZE

    def write_raw_blocking() -> None:
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for payload in data:
                os.write(fd, payload)
        finally:
            os.close(fd)

    def read_raw_blocking() -> None:
        fd = os.open(raw, os.O_RDONLY)
        try:
            total = sum(
                len(os.pread(fd, ENTRY_SIZE, n * ENTRY_SIZE)) for n in range(ENTRIES)
            )
        finally:
            os.close(fd)
        assert total == ENTRIES * ENTRY_SIZE

    # The peer runs whole in one worker thread: its stall is the machine's.
    async def write_raw() -> None:
        await asyncio.to_thread(write_raw_blocking)

    async def read_raw() -> None:
        await asyncio.to_thread(read_raw_blocking)

    def remove_ours() -> None:
        # Unlinking a big cached file takes the kernel a while: not timed.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ours)

    def remove_raw() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(raw)

    remove_ours()
    await append("rdwr_exclusive")()  # warm-up
    await write_raw()
    rows = []
    work = (
        (
            "append 10,000 x 10 KiB (rdwr_exclusive)",
            append("rdwr_exclusive"),
            write_raw,
        ),
        ("append 10,000 x 10 KiB (rdwr)", append("rdwr"), write_raw),
        (
            "append 10,000 x 10 KiB (rdwr_exclusive, write_behind)",
            append("rdwr_exclusive", True),
            write_raw,
        ),
        ("list and read back 10,000 x 10 KiB", read_ours, read_raw),
    )
    for name, mine, theirs in work:
        mine_times, raw_times, stalls = [], [], []
        writes = name.startswith("append")
        raw_stalls = []
        for _ in range(repeat):
            elapsed, stall = await measure(theirs, remove_raw if writes else None)
            raw_times.append(elapsed)
            raw_stalls.append(stall)
            elapsed, stall = await measure(mine, remove_ours if writes else None)
            mine_times.append(elapsed)
            stalls.append(stall)
        megabytes = ENTRIES * ENTRY_SIZE / 1e6
        ratios = [r / m for r, m in zip(raw_times, mine_times, strict=True)]
        rows.append(
            (
                name,
                f"{megabytes / statistics.median(mine_times):,.0f}",
                f"{megabytes / statistics.median(raw_times):,.0f}",
                f"{statistics.median(ratios):.0%}",
                f"{ENTRIES / statistics.median(mine_times):,.0f} entries/s",
                f"{max(stalls) * 1000:.1f} / {max(raw_stalls) * 1000:.1f} ms",
            )
        )
    return rows


# ----------------------------------------------------------------------
# The same small entries beside zipfile, and a listing of 300,000


async def against_zipfile(repeat: int, directory: str) -> list[tuple[str, ...]]:
    """10,000 x 10 KiB appended to (and read back from) an archive and, by
    the peer people would pick instead, a zip file (stored, the standard
    library's zipfile, its whole job in one worker thread)."""
    data = payloads()
    ours = os.path.join(directory, "beside-zip.gar")
    theirs = os.path.join(directory, "beside-gar.zip")

    def remover(path: str) -> Callable[[], None]:
        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        return remove

    def append(write_behind: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with Archive.open(
                ours, "rdwr_exclusive", write_behind=write_behind
            ) as archive:
                for n, payload in enumerate(data):
                    async with archive.append(f"entries/{n}.bin", timestamp=n) as out:
                        await out.write(payload)

        return run

    async def read_ours() -> None:
        async with Archive.open(ours) as archive:
            total = sum(
                [len(await archive.read_bytes(e)) for e in await archive.contents()]
            )
        assert total == ENTRIES * ENTRY_SIZE

    def zip_append() -> None:
        with zipfile.ZipFile(theirs, "a", zipfile.ZIP_STORED) as archive:
            for n, payload in enumerate(data):
                archive.writestr(f"entries/{n}.bin", payload)

    def zip_read() -> None:
        with zipfile.ZipFile(theirs) as archive:
            total = sum(len(archive.read(info)) for info in archive.infolist())
        assert total == ENTRIES * ENTRY_SIZE

    async def in_thread(job: Callable[[], None]) -> None:
        await asyncio.to_thread(job)

    rows = []
    for name, mine, peer, writes in (
        ("append 10,000 x 10 KiB, one hop each", append(False), zip_append, True),
        ("append 10,000 x 10 KiB, write_behind", append(True), zip_append, True),
        ("list and read back 10,000 x 10 KiB", read_ours, zip_read, False),
    ):
        mine_times, peer_times, stalls, peer_stalls = [], [], [], []
        for _ in range(repeat):
            elapsed, stall = await measure(
                functools.partial(in_thread, peer), remover(theirs) if writes else None
            )
            peer_times.append(elapsed)
            peer_stalls.append(stall)
            elapsed, stall = await measure(mine, remover(ours) if writes else None)
            mine_times.append(elapsed)
            stalls.append(stall)
        ratios = [p / m for p, m in zip(peer_times, mine_times, strict=True)]
        rows.append(
            (
                name,
                f"{ENTRIES / statistics.median(mine_times):,.0f}",
                f"{ENTRIES / statistics.median(peer_times):,.0f}",
                f"{statistics.median(ratios):.2f}x",
                f"{max(stalls) * 1000:.1f} / {max(peer_stalls) * 1000:.1f} ms",
            )
        )
    remover(ours)()
    remover(theirs)()
    return rows


LISTED = 300_000


async def big_listing(repeat: int, directory: str) -> list[tuple[str, ...]]:
    """An archive of 300,000 small entries (and a zip of the same): listed
    by a fresh object, and by ``aiorecords ls`` (a process of its own,
    output to a file), beside zipfile's listing of the zip."""
    ours = os.path.join(directory, "many.gar")
    theirs = os.path.join(directory, "many.zip")
    async with Archive.open(ours, "rdwr_exclusive", write_behind=True) as archive:
        for n in range(LISTED):
            async with archive.append(f"events/{n:07d}.json", timestamp=n) as out:
                await out.write(b'{"n": %d}' % n)

    def make_zip() -> None:
        with zipfile.ZipFile(theirs, "w", zipfile.ZIP_STORED) as archive:
            for n in range(LISTED):
                archive.writestr(f"events/{n:07d}.json", b'{"n": %d}' % n)

    await asyncio.to_thread(make_zip)

    async def list_ours() -> None:
        async with Archive.open(ours) as archive:
            assert len(await archive.contents()) == LISTED

    def list_zip() -> None:
        with zipfile.ZipFile(theirs) as archive:
            assert len(archive.infolist()) == LISTED

    def command(*words: str) -> Callable[[], None]:
        def run() -> None:
            with open(os.path.join(directory, "listing.txt"), "wb") as out:
                subprocess.run(words, stdout=out, check=True)

        return run

    async def in_thread(job: Callable[[], None]) -> None:
        await asyncio.to_thread(job)

    ls = command(sys.executable, "-m", "aiorecords", "ls", ours)
    zip_ls = command(sys.executable, "-m", "zipfile", "-l", theirs)
    rows = []
    for name, mine, peer in (
        (f"list {LISTED:,} entries (a fresh object)", list_ours, list_zip),
        (f"aiorecords ls of {LISTED:,} entries (python -m zipfile -l)", ls, zip_ls),
    ):
        mine_times, peer_times, stalls = [], [], []
        for _ in range(repeat):
            elapsed, _ = await measure(functools.partial(in_thread, peer))
            peer_times.append(elapsed)
            if asyncio.iscoroutinefunction(mine):
                elapsed, stall = await measure(mine)
            else:
                elapsed, stall = await measure(functools.partial(in_thread, mine))
            mine_times.append(elapsed)
            stalls.append(stall)
        rows.append(
            (
                name,
                f"{statistics.median(mine_times):.2f} s",
                f"{statistics.median(peer_times):.2f} s",
                f"{statistics.median(peer_times) / statistics.median(mine_times):.2f}x",
                f"{max(stalls) * 1000:.1f} ms",
            )
        )
    return rows


# ----------------------------------------------------------------------
# One entry of 1 GiB, streamed (each run in a process of its own)


async def stream_child(path: str, what: str, gib: int) -> dict[str, float]:
    """Run one streaming job in this (fresh) process and report on it."""
    baseline = memory_status()["VmRSS"]  # the interpreter, aiorecords imported
    size = gib * 1024 * MIB
    chunk = os.urandom(MIB)
    result: dict[str, float] = {}

    async def append() -> None:
        compression = "zstd" if what.endswith("zstd") else None
        async with (
            Archive.open(path, mode="rdwr_exclusive") as archive,
            archive.append("big.bin", compression=compression) as out,
        ):
            for _ in range(size // MIB):
                await out.write(chunk)

    async def read() -> None:
        total = 0
        async with (
            Archive.open(path) as archive,
            archive.read("big.bin") as stream,
        ):
            async for piece in stream:
                total += len(piece)
        assert total == size

    def raw_write_blocking() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(size // MIB):
                os.write(fd, chunk)
        finally:
            os.close(fd)

    def raw_read_blocking() -> None:
        fd = os.open(path, os.O_RDONLY)
        total = 0
        try:
            while piece := os.read(fd, MIB):
                total += len(piece)
        finally:
            os.close(fd)
        assert total == size

    # The peer runs whole in one worker thread: its stall is the machine's.
    async def raw_write() -> None:
        await asyncio.to_thread(raw_write_blocking)

    async def raw_read() -> None:
        await asyncio.to_thread(raw_read_blocking)

    job = {
        "append": append,
        "append-zstd": append,
        "read": read,
        "read-zstd": read,
        "raw-write": raw_write,
        "raw-read": raw_read,
    }[what]

    def remove() -> None:
        # Unlinking a big cached file takes the kernel a while: not timed.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    writes = what.startswith(("append", "raw-write"))
    elapsed, stall = await measure(job, remove if writes else None)
    result["seconds"] = elapsed
    result["stall"] = stall
    result["rss_above_baseline"] = memory_status()["VmHWM"] - baseline
    return result


def run_child(path: str, what: str, gib: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", what, "--gib", str(gib), "--path", path],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def big_entry(repeat: int, directory: str, gib: int) -> list[tuple[str, ...]]:
    ours = os.path.join(directory, "big.gar")
    raw = os.path.join(directory, "big.raw")
    rows = []
    for codec in ("", "-zstd"):
        for name, mine, theirs in (
            ("append", "append" + codec, "raw-write"),
            ("read", "read" + codec, "raw-read"),
        ):
            mine_runs, raw_runs = [], []
            for _ in range(repeat):
                raw_runs.append(run_child(raw, theirs, gib))
                mine_runs.append(run_child(ours, mine, gib))
            mine_times = [run["seconds"] for run in mine_runs]
            raw_times = [run["seconds"] for run in raw_runs]
            ratios = [r / m for r, m in zip(raw_times, mine_times, strict=True)]
            megabytes = gib * 1024 * MIB / 1e6
            rss = max(run["rss_above_baseline"] for run in mine_runs)
            label = f"{name} one {gib} GiB entry, streamed"
            label += ", zstd" if codec else ", stored as written"
            rows.append(
                (
                    label,
                    f"{megabytes / statistics.median(mine_times):,.0f}",
                    f"{megabytes / statistics.median(raw_times):,.0f}",
                    f"{statistics.median(ratios):.0%}",
                    f"peak RSS +{rss / MIB:.1f} MiB",
                    f"{max(run['stall'] for run in mine_runs) * 1000:.1f} / "
                    f"{max(run['stall'] for run in raw_runs) * 1000:.1f} ms",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gib", type=int, default=1, help="size of the big entry (0: none)"
    )
    parser.add_argument("--dir", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(stream_child(args.path, args.child, args.gib))))
        return
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        rows = asyncio.run(small_entries(args.repeat, directory))
        beside_zip = asyncio.run(against_zipfile(args.repeat, directory))
        listing = asyncio.run(big_listing(args.repeat, directory))
        if args.gib:
            rows += big_entry(args.repeat, directory, args.gib)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {args.repeat} runs of each, taking turns; "
        "page cache warm, no syncs"
    )
    columns = [
        "aiorecords MB/s",
        "raw MB/s",
        "of raw",
        "rate / memory",
        "worst loop stall: aiorecords / raw in a thread",
    ]
    print("| workload | " + " | ".join(columns) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(
        "| workload | aiorecords entries/s | zipfile entries/s | vs zipfile "
        "| worst loop stall: aiorecords / zipfile in a thread |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in beside_zip:
        print("| " + " | ".join(row) + " |")
    print()
    print("| workload | aiorecords | zipfile | vs zipfile | worst loop stall |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in listing:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
