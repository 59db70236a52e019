"""Workers consuming an archive while a producer appends to it (anyio).

    python examples/archive_consumers.py [PATH]

A producer appends 60 report entries to an archive (some gzip-compressed,
one a few megabytes, streamed in pieces) and hands each finished entry to a
channel. Three workers in the same anyio task group take entries from the
channel and read them concurrently, each through its own read-only
``Archive`` object, streaming the data a chunk at a time. At the end each
worker prints what it processed, and the archive is listed once more.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zlib

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from aiorecords import Archive, ArchiveEntry

ENTRIES = 60
WORKERS = 3


def report(number: int) -> bytes:
    """The content of report ``number``: a few lines, one report much bigger."""
    lines = 200_000 if number == 42 else 20 + number
    return b"".join(
        f"report {number} line {line}: ok\n".encode() for line in range(lines)
    )


async def produce(archive: Archive, entries: ObjectSendStream[ArchiveEntry]) -> None:
    """Append the reports, handing each to the workers once it exists."""
    async with entries:
        for number in range(ENTRIES):
            data = report(number)
            async with archive.append(
                f"reports/{number:03}.txt",
                gzip=number % 2 == 0,
                comment=f"batch {number // 10}",
            ) as out:
                # Written in pieces, as a download or a pipe would deliver it.
                for start in range(0, len(data), 64 * 1024):
                    await out.write(data[start : start + 64 * 1024])
            assert out.entry is not None  # the block exited: the entry exists
            await entries.send(out.entry)


async def work(
    worker: int,
    path: str,
    entries: ObjectReceiveStream[ArchiveEntry],
    done: dict[int, list[str]],
) -> None:
    """Read each entry handed over, with this worker's own reader."""
    async with entries, Archive.open(path) as archive:
        async for entry in entries:
            checksum = 0
            lines = 0
            async with archive.read(entry) as stream:
                async for chunk in stream:  # at most 1 MiB at a time
                    checksum = zlib.crc32(chunk, checksum)
                    lines += chunk.count(b"\n")
            expected = report(int(entry.name[8:11]))
            assert checksum == zlib.crc32(expected), entry.name
            done[worker].append(f"{entry.name} ({lines} lines)")


async def main(path: str) -> None:
    done: dict[int, list[str]] = {worker: [] for worker in range(WORKERS)}
    send, receive = anyio.create_memory_object_stream[ArchiveEntry](4)
    # Creating the archive first lets the workers open it at once.
    async with (
        Archive.open(path, mode="rdwr") as archive,
        anyio.create_task_group() as group,
    ):
        group.start_soon(produce, archive, send)
        for worker in range(WORKERS):
            group.start_soon(work, worker, path, receive.clone(), done)
        receive.close()
    for worker, names in done.items():
        first = ", ".join(names[:2])
        print(f"worker {worker} processed {len(names)} entries: {first}, ...")
    print(f"processed {sum(map(len, done.values()))} of {ENTRIES} entries")
    async with Archive.open(path) as archive:
        entries = await archive.contents()
        newest = archive.info(entries[0])
        print(
            f"archive {path}: {len(entries)} entries, newest {newest.entry_name!r} "
            f"({newest.entry_comment}, gzip={newest.entry_gzip})"
        )
        biggest = max(entries, key=lambda entry: entry.size)
        print(f"biggest entry {biggest.name!r}: {biggest.size} bytes")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as directory:
            anyio.run(main, os.path.join(directory, "reports.gar"))
