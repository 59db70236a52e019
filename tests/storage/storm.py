"""Many tasks on one writer, cancelled at random, closed from another task:
the driver the storage storms share (their ledgers are their own)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable


async def storm(
    work: Callable[[int], Awaitable[None]],
    *,
    workers: int,
    enough: Callable[[], bool],
    close: Callable[[], Awaitable[None]],
    rng: random.Random,
    cancel_rate: float,
) -> int:
    """Run ``workers`` tasks of ``work(number)`` until ``enough()``: each
    turn, with chance ``cancel_rate``, one running task is cancelled and a
    new one started in its place. Then ``close()`` runs in a task of its
    own while the rest are cancelled. Every task must end by returning or
    by a cancellation this driver made; return how many tasks there were."""
    tasks: list[asyncio.Task[None]] = []

    def spawn() -> None:
        tasks.append(asyncio.create_task(work(len(tasks))))

    for _ in range(workers):
        spawn()
    while not enough():
        await asyncio.sleep(0)  # a turn for the workers, not a wait for them
        if rng.random() < cancel_rate:
            rng.choice([t for t in tasks if not t.done()]).cancel()
            spawn()
    closing = asyncio.create_task(close())
    for task in tasks:
        task.cancel()
    await closing
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    return len(tasks)
