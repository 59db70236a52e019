"""Cooperation with the event loop for work that never has to wait."""

from __future__ import annotations

import asyncio
import sys
from typing import Final

from .errors import EventLoopError

__all__ = ["RECORDS_PER_TURN", "let_others_run", "running_loop"]

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


def running_loop() -> asyncio.AbstractEventLoop:
    """The asyncio event loop running this call.

    Raises `EventLoopError` when there is none, so
    that aiorecords called from trio (or anyio's trio backend) says at its
    first call what it runs on, rather than failing somewhere inside with
    asyncio's "no running event loop".
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    running = " (trio is running)" if _trio_running() else ""
    raise EventLoopError(
        f"aiorecords runs on asyncio, or on anyio's asyncio backend; it was "
        f"called with no asyncio event loop running{running}"
    )


def _trio_running() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
