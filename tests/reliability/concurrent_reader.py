"""A reader process for the concurrency suite.

    python concurrent_reader.py PATH FINAL_COUNT LOCKING SEED

It refreshes its view of a capture file that another process is committing
to, as fast as it can, until it sees FINAL_COUNT records. Each view must be
a whole commit: the metadata (written in the same commit) equals the record
count, the count never goes backwards, and every record read (the newest,
and a random older one) is the one its number stands for, so a record that
changed later would be seen. It prints ``views N`` and exits 0, or prints
what went wrong and exits 1.
"""

from __future__ import annotations

import asyncio
import random
import sys

from aiorecords import CaptureFile


def record(number: int) -> bytes:
    """The content of record ``number`` (from 1)."""
    return f"record {number} ".encode() * (1 + number % 23)


async def main(path: str, final: int, locking: bool, seed: int) -> int:
    rng = random.Random(seed)
    cf = await CaptureFile(path, encoding=None, use_os_file_locking=locking)
    seen = 0
    views = 0
    try:
        while seen < final:
            await cf.refresh()
            count = cf.record_count()
            metadata = await cf.get_metadata()
            if count < seen:
                print(f"count went back from {seen} to {count}", flush=True)
                return 1
            if metadata is not None and int(metadata) != count:
                print(f"partial commit: {count} records, metadata {metadata!r}")
                return 1
            if count:
                for number in (count, rng.randint(1, count)):
                    got = await cf.record_at(number)
                    if got != record(number):
                        print(f"record {number} is {got[:40]!r}", flush=True)
                        return 1
            seen = count
            views += 1
    finally:
        await cf.close()
    print(f"views {views}", flush=True)
    return 0


if __name__ == "__main__":
    path, final, locking, seed = sys.argv[1:]
    sys.exit(asyncio.run(main(path, int(final), locking == "1", int(seed))))
