"""Cancelling a call at random moments until it gets to run to its end."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_at_random_until_done(
    start: Callable[[], Coroutine[Any, Any, T]], rng: random.Random, most_steps: int
) -> T:
    """Start the call in a task, cancel it after 0 to ``most_steps - 1``
    turns of the event loop, and start it again, until one start finishes
    before its cancellation; that one's result. (A cancellation before
    its first step makes no progress, so the steps are random.)"""
    while True:
        task = asyncio.create_task(start())
        for _ in range(rng.randrange(most_steps)):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not task.cancelled():
            return task.result()
