"""A process that forks writer processes for the kill tests.

    python kill_zygote.py FORMAT PATH

It imports everything once, then for each line ``go SEED [HINT...]`` on
stdin (HINT: for a log, a count of records and the offset they end at) forks a
writer that continues the file (commits, durable appends or synced batches)
and prints ``ack N`` after each one returns; the zygote prints ``pid P``
first, and ``dead`` once the writer has exited (the test kills it with
SIGKILL). Forking saves the half second a fresh interpreter needs, so the
tests can kill hundreds of writers.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from aiorecords import Archive, CaptureFile, RecordsReader, RecordsWriter


def capture_record(commit: int, n: int) -> bytes:
    size = 1 + (commit * 7919 + n * 104729) % 6000
    return (f"{commit}:{n};".encode() * size)[:size]


def records_in(commit: int) -> int:
    return 1 + commit % 7


def entry_data(n: int) -> bytes:
    size = (n * 7919) % 20_000
    return (f"entry {n} ".encode() * (size // 8 + 1))[:size]


def log_record(n: int) -> bytes:
    # Mostly small (the log is read whole after every kill), one in ten
    # spanning blocks.
    size = (n * 104729) % (50_000 if n % 10 == 0 else 3000)
    return (f"<{n}>".encode() * (size // 3 + 1))[:size]


def ack(n: int) -> None:
    os.write(1, f"ack {n}\n".encode())


def ready() -> None:
    """Opened (and, for a log, recovered): the writing starts."""
    os.write(1, b"ready\n")


async def capture_writer(path: str, rng: random.Random, hint: list[str]) -> None:
    # A writer restarting after its predecessor was killed: a commit torn
    # by the kill was never acknowledged, so it may be written over.
    cf = await CaptureFile(
        path, to_write=True, encoding=None, discard_damaged_commit=True
    )
    metadata = await cf.get_metadata()
    commit = 0 if metadata is None else int(metadata)
    ready()
    while True:
        commit += 1
        for n in range(records_in(commit)):
            await cf.add_record(capture_record(commit, n))
        await cf.set_metadata(str(commit).encode())
        await cf.commit()
        ack(commit)


async def archive_writer(path: str, rng: random.Random, hint: list[str]) -> None:
    async with Archive.open(path, mode="rdwr", durable=True) as archive:
        n = len(await archive.contents())
        ready()
        while True:
            n += 1
            async with archive.append(
                f"e{n}", timestamp=n, compression=(None, "gzip", "zstd")[n % 3]
            ) as out:
                data = entry_data(n)
                for at in range(0, len(data), 4096):
                    await out.write(data[at : at + 4096])
            ack(n)


async def records_writer(path: str, rng: random.Random, hint: list[str]) -> None:
    # The test tells how many records lie before which offset (checked and
    # acknowledged); only the rest of the log needs counting.
    n, start = (int(hint[0]), int(hint[1])) if hint else (0, 0)
    async with RecordsReader(path, start=start) as reader:
        n += len([r async for r in reader])
    async with RecordsWriter(path, append=True, pad_last_block=False) as writer:
        await writer.flush()  # opens the log, cutting off a torn record
        ready()
        while True:
            for _ in range(rng.randint(1, 4)):
                await writer.write(log_record(n))
                n += 1
            await writer.sync()
            ack(n)


WRITERS = {
    "capture": capture_writer,
    "archive": archive_writer,
    "records": records_writer,
}


def main() -> None:
    fmt, path = sys.argv[1], sys.argv[2]
    writer = WRITERS[fmt]
    for line in sys.stdin:
        _, seed_text, *hint = line.split()
        seed = int(seed_text)
        pid = os.fork()
        if pid == 0:  # the writer
            try:
                asyncio.run(writer(path, random.Random(seed), hint))
            finally:
                os._exit(1)
        os.write(1, f"pid {pid}\n".encode())
        os.waitpid(pid, 0)
        os.write(1, b"dead\n")


if __name__ == "__main__":
    main()
