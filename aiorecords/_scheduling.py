"""Cooperation with the event loop for work that never has to wait."""

from __future__ import annotations

import asyncio

__all__ = ["let_others_run"]


async def let_others_run() -> None:
    """Let every task that is ready, or whose timer is due, run once.

    A coroutine that does a long run of in-memory work (framing thousands of
    records, decoding a buffered chunk) calls this between slices, so that no
    other task waits long for the loop. One ``sleep(0)`` is not enough: in
    the loop iteration it gives, a due timer only resolves its future, and
    the task waiting on it runs an iteration later, after this coroutine's
    next slice. Two iterations let it run first.
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)
