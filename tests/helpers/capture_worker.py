"""A process that uses a capture file, for the multi-process tests.

    python capture_worker.py MODE PATH [ARGS...]

It prints ``ready`` once it holds what it was asked to hold, and results on
stdout; it exits non-zero when a check fails.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from CaptureFile import CaptureFile as PeerCaptureFile

from aiorecords import CaptureFile, CaptureFileAlreadyOpen


def record(n: int) -> str:
    """The content of record number ``n`` in every multi-process test."""
    return f"record {n} " + "x" * (n % 37)


def wait_for_stdin_to_close() -> None:
    sys.stdin.read()


async def hold_writer(path: str, locking: bool) -> None:
    cf = await CaptureFile(path, to_write=True, use_os_file_locking=locking)
    print("ready", flush=True)
    await asyncio.to_thread(wait_for_stdin_to_close)
    await cf.close()


def hold_peer_writer(path: str) -> None:
    cf = PeerCaptureFile(path, to_write=True, use_os_file_locking=True)
    print("ready", flush=True)
    wait_for_stdin_to_close()
    cf.close()


def try_peer_writer(path: str) -> None:
    try:
        cf = PeerCaptureFile(path, to_write=True, use_os_file_locking=True)
    except Exception as error:  # CaptureFile's own CaptureFileAlreadyOpen
        print(f"refused {type(error).__name__}", flush=True)
        return
    cf.close()
    print("opened", flush=True)


async def try_writer(path: str, locking: bool) -> None:
    try:
        cf = await CaptureFile(path, to_write=True, use_os_file_locking=locking)
    except CaptureFileAlreadyOpen:
        print("refused", flush=True)
        return
    await cf.close()
    print("opened", flush=True)


async def writer(
    path: str, commits: int, per_commit: int, locking: bool, compression: str
) -> None:
    async with CaptureFile(
        path, to_write=True, use_os_file_locking=locking, compression=compression
    ) as cf:
        print("ready", flush=True)
        count = cf.record_count()
        for _ in range(commits):
            for _ in range(per_commit):
                count += 1
                await cf.add_record(record(count))
            await cf.set_metadata(str(count).encode())
            await cf.commit()
    print("done", count, flush=True)


async def reader(path: str, target: int, locking: bool) -> None:
    rng = random.Random()
    cf = await CaptureFile(path, use_os_file_locking=locking)
    last = 0
    observed = 0
    deadline = time.monotonic() + 120
    while last < target:
        if time.monotonic() > deadline:
            sys.exit(f"timed out at {last} of {target}")
        await cf.refresh()
        count = cf.record_count()
        if count < last:
            sys.exit(f"count went back from {last} to {count}")
        metadata = await cf.get_metadata()
        expected = str(count).encode() if count else None
        if metadata != expected:
            sys.exit(f"metadata {metadata!r} with {count} records: a torn commit")
        if count:
            for n in {count, rng.randint(1, count)}:
                got = await cf.record_at(n)
                if got != record(n):
                    sys.exit(f"record {n} is {got!r}")
        if count != last:
            observed += 1
        last = count
    records = [r async for r in cf]
    if records != [record(n) for n in range(1, target + 1)]:
        sys.exit("the records read in order are not the records written")
    await cf.close()
    print("observed", observed, flush=True)


def peer_reader(path: str, target: int) -> None:
    cf = PeerCaptureFile(path, use_os_file_locking=True)
    last = 0
    observed = 0
    deadline = time.monotonic() + 120
    while last < target:
        if time.monotonic() > deadline:
            sys.exit(f"timed out at {last} of {target}")
        cf.refresh()
        count = cf.record_count()
        if count < last:
            sys.exit(f"CaptureFile reader: count went back from {last} to {count}")
        # CaptureFile 1.2.0 keeps the metadata it read first across refresh(),
        # so only the records can be checked here.
        if count and cf.record_at(count) != record(count):
            sys.exit(f"CaptureFile reader: record {count} differs")
        if count != last:
            observed += 1
        last = count
    cf.close()
    print("observed", observed, flush=True)


def main() -> None:
    mode, path, *args = sys.argv[1:]
    if mode == "hold-writer":
        asyncio.run(hold_writer(path, args[0] == "1"))
    elif mode == "hold-peer-writer":
        hold_peer_writer(path)
    elif mode == "try-peer-writer":
        try_peer_writer(path)
    elif mode == "try-writer":
        asyncio.run(try_writer(path, args[0] == "1"))
    elif mode == "writer":
        asyncio.run(writer(path, int(args[0]), int(args[1]), args[2] == "1", args[3]))
    elif mode == "reader":
        asyncio.run(reader(path, int(args[0]), args[1] == "1"))
    elif mode == "peer-reader":
        peer_reader(path, int(args[0]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
