"""Synchronous calls into the async library, for code with no event loop of
its own to lend (a Dask worker's task, a script).

The coroutines run on one event loop per process, in a daemon thread of
its own: the caller's thread needs no loop, and a loop already running in
it (a distributed worker's) is neither used nor disturbed. One loop for all
such calls means one set of object-store sessions, reused. Results cross
the threads in batches, so a record costs no thread hop of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Final, TypeVar

from .errors import EventLoopError

__all__ = ["iterate", "run"]

T = TypeVar("T")

#: Records handed across at a time, at most, and the bytes they may hold.
BATCH_RECORDS: Final = 1000
BATCH_BYTES: Final = 4 * 1024 * 1024


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run, name="aiorecords-sync-calls", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self) -> None:
        """Let go of what the loop's async generators hold (the object-store
        sessions), then stop it."""
        if not self.thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(
            self.loop.shutdown_asyncgens(), self.loop
        )
        try:
            future.result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


_current: _LoopThread | None = None
# Guards only the making of the loop thread (two threads' first calls at
# once must not make two); never held while anything runs.
_making = threading.Lock()


def _loop_thread() -> _LoopThread:
    global _current
    with _making:
        # Not alive after a fork: the child makes its own.
        if _current is None or not _current.thread.is_alive():
            _current = _LoopThread()
        return _current


@atexit.register
def _stop_at_exit() -> None:
    if _current is not None:
        _current.stop()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the library's loop thread and return its result
    (or raise its error). An interruption of the waiting thread (Ctrl-C)
    cancels it."""
    current = _loop_thread()
    if threading.current_thread() is current.thread:
        coroutine.close()
        raise EventLoopError("a synchronous aiorecords call was made from async code")
    future = asyncio.run_coroutine_threadsafe(coroutine, current.loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def iterate(items: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The items of an async iterator, for a synchronous caller: taken on
    the loop thread in batches (up to `BATCH_RECORDS` items or `BATCH_BYTES`
    bytes). Closing the iterator early closes ``items`` on the loop."""

    async def next_batch() -> tuple[list[bytes], bool]:
        batch: list[bytes] = []
        size = 0
        while len(batch) < BATCH_RECORDS and size < BATCH_BYTES:
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                return batch, True
            batch.append(item)
            size += len(item)
        return batch, False

    finished = False
    try:
        while not finished:
            batch, finished = run(next_batch())
            yield from batch
    finally:
        close = getattr(items, "aclose", None)
        if close is not None and not finished:
            run(close())
