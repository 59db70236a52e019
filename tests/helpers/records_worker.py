"""A process that appends LevelDB log records, for the follow() tests.

    python records_worker.py PATH COUNT

Writes COUNT records, flushing each one, pausing a little between them like
a live producer; record ``n`` is ``record(n)``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiorecords import RecordsWriter


def record(n: int) -> bytes:
    """The content of record ``n``: sizes cross block boundaries often."""
    return f"record {n} ".encode() * (1 + (n * 7919) % 9000)


async def main(path: str, count: int) -> None:
    async with RecordsWriter(path, pad_last_block=False, append=True) as writer:
        for n in range(count):
            await writer.write(record(n))
            await writer.flush()
            if n % 10 == 0:
                time.sleep(0.002)  # a producer that writes in bursts


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
