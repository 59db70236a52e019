"""Cooperation with the event loop for work that never has to wait."""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ["RECORDS_PER_TURN", "let_others_run"]

#: A task handing records to or from memory without waiting lets other tasks
#: run at least this often (records): well under a millisecond of work, even
#: for records of a few bytes, where byte counts alone let thousands through.
RECORDS_PER_TURN: Final = 500


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
