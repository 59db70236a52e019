"""A process that uses an archive, for the multi-process tests.

    python archive_worker.py MODE PATH [ARGS...]

Modes:

``hold PATH``
    open ``rdwr_exclusive``, print ``ready``, hold it until stdin closes.
``append PATH WORKER COUNT``
    open ``rdwr`` and append COUNT entries named ``WORKER/n``.
``die PATH COUNT``
    append COUNT entries, then start one more, write 3 MiB of it and die
    (SIGKILL) in the middle.
``forever PATH``
    append entries ``k`` (``entry(k)`` written ``forever_repeats(k)`` times)
    until killed, printing each k once its block has exited.
``try PATH``
    try to append with ``rdwr`` while another holds the archive; print the
    error's name.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from aiorecords import Archive, ArchiveLocked


def entry(n: int) -> bytes:
    """The data of entry ``n`` in every multi-process test."""
    return f"entry {n} ".encode() * (1 + (n * 7919) % 3000)


def forever_repeats(k: int) -> int:
    """How many times ``forever`` writes ``entry(k)`` into entry ``k``: up to
    some megabytes, so that a kill often lands inside an entry."""
    return 1 + k % 5 * 40


async def hold(path: str) -> None:
    async with Archive.open(path, mode="rdwr_exclusive"):
        # A second descriptor of the same file, opened and closed: with
        # POSIX record locks this would drop the lock; OFD locks stay.
        os.close(os.open(path, os.O_RDONLY))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def append(path: str, worker: str, count: int) -> None:
    async with Archive.open(path, mode="rdwr", wait=True) as ar:
        for n in range(count):
            async with ar.append(f"{worker}/{n}", gzip=n % 2 == 0) as out:
                await out.write(entry(n))


async def die(path: str, count: int) -> None:
    ar = await Archive.open(path, mode="rdwr")
    for n in range(count):
        async with ar.append(f"whole/{n}") as out:
            await out.write(entry(n))
    async with ar.append("torn") as out:
        await out.write(os.urandom(3 << 20))  # reaches the file
        os.kill(os.getpid(), signal.SIGKILL)


async def forever(path: str) -> None:
    async with Archive.open(path, mode="rdwr") as ar:
        k = 0
        while True:
            async with ar.append(str(k), compression="zstd" if k % 3 else None) as out:
                for _ in range(forever_repeats(k)):
                    await out.write(entry(k))
            print(k, flush=True)
            k += 1


async def attempt(path: str) -> None:
    async with Archive.open(path, mode="rdwr") as ar:
        try:
            async with ar.append("intruder") as out:
                await out.write(b"x")
        except ArchiveLocked as error:
            print(type(error).__name__, flush=True)
            return
        print("appended", flush=True)


if __name__ == "__main__":
    mode, path, *args = sys.argv[1:]
    if mode == "hold":
        asyncio.run(hold(path))
    elif mode == "append":
        asyncio.run(append(path, args[0], int(args[1])))
    elif mode == "die":
        asyncio.run(die(path, int(args[0])))
    elif mode == "forever":
        asyncio.run(forever(path))
    elif mode == "try":
        asyncio.run(attempt(path))
    else:
        raise SystemExit(f"unknown mode {mode}")
