"""Work that must run to its end even when the task awaiting it is cancelled.

``close()`` is the main user: once it has begun, the descriptor must be
closed, and only after every worker-thread call that uses it has returned
(a descriptor number closed under a running call may already belong to
another file when that call reaches the kernel). A cancellation that
interrupts the waiting would leave the object half closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from . import _io
from ._scheduling import running_loop

__all__ = ["CloseOnce", "InFlight", "finish", "open_owned"]

T = TypeVar("T")


async def finish(work: asyncio.Future[T] | Coroutine[Any, Any, T]) -> T:
    """Await ``work`` to its end, through any number of cancellations.

    ``work`` runs as a task of its own. If the awaiting task is cancelled
    (once, or again and again, as an anyio cancel scope does), it goes on
    waiting; once the work has ended, the cancellation is raised (its error,
    if it failed, is chained to it). Awaiting the same future from several
    callers is fine: each waits for the one piece of work.
    """
    try:
        running_loop()
    except BaseException:
        if isinstance(work, Coroutine):
            work.close()  # never started: not a coroutine left unawaited
        raise
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as error:
            cancelled = error
    if cancelled is not None:
        if not task.cancelled() and task.exception() is not None:
            raise cancelled from task.exception()
        raise cancelled
    return task.result()


class CloseOnce:
    """The close of one object: begun once, run as a task of its own that no
    cancellation interrupts, and waited for by every ``close()`` call made
    while it runs (a second caller must not return before the descriptor is
    closed)."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: asyncio.Future[None] | None = None

    @property
    def begun(self) -> bool:
        """True once `begin()` has been called (until `reset()`)."""
        return self._task is not None

    async def begin(self, work: Coroutine[Any, Any, None]) -> None:
        """Start the close and wait for it (see `finish()`)."""
        try:
            running_loop()
        except BaseException:
            work.close()
            raise
        self._task = asyncio.ensure_future(work)
        await finish(self._task)

    async def wait(self) -> None:
        """Wait for a close under way; nothing if none is, or it has ended."""
        if self._task is not None and not self._task.done():
            await finish(self._task)

    def reset(self) -> None:
        """Forget an ended close, for an object that can be opened again."""
        self._task = None


class InFlight:
    """Counts the calls that use a descriptor, so that ``close()`` can wait
    until none is running before it closes it. ``with in_flight:`` marks
    one (a plain context manager: it is entered on every thread hop)."""

    __slots__ = ("_busy", "_idle")

    def __init__(self) -> None:
        self._busy = 0
        self._idle: asyncio.Event | None = None

    def held(self) -> InFlight:
        """The guard itself, to mark work that uses the descriptor for as
        long as it runs: ``with in_flight.held():``."""
        return self

    def __enter__(self) -> None:
        self._busy += 1

    def __exit__(self, *exc_info: object) -> None:
        self._busy -= 1
        if not self._busy and self._idle is not None:
            self._idle.set()

    async def offload(self, function: Callable[..., T], /, *args: Any) -> T:
        """Run ``function`` in a worker thread, marked as in flight."""
        with self.held():
            return await _io.offload(function, *args)

    async def idle(self) -> None:
        """Wait until no marked work runs."""
        while self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
            self._idle = None


async def open_owned(
    function: Callable[..., T], close: Callable[[T], Callable[[], None]], /, *args: Any
) -> T:
    """Run ``function`` (which opens something) in a worker thread to its end.

    If the caller is cancelled meanwhile, what it opened is closed (with the
    call ``close(result)`` gives) before the cancellation goes on: nobody
    else will ever close it.
    """
    outcome, cancelled = await _io.run_to_completion(function, *args)
    if cancelled is not None:
        if outcome.error is None:
            await _io.run_to_completion(close(outcome.unwrap()))
        raise cancelled
    return outcome.unwrap()
