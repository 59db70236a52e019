"""In-process wake-ups for followers: a writer says a file changed.

A follower (``CaptureFile.follow``, ``RecordsReader.follow``) waits for new
data with `Watch.wait()`, which returns when a writer in this process
calls `notify()` for the file, or when its timeout passes (for writers
in other processes, which can only be seen by looking at the file). Files
are named by their canonical path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

__all__ = [
    "FOLLOW_FIRST_WAIT",
    "FOLLOW_LAST_WAIT",
    "Backoff",
    "Watch",
    "notify",
    "watching",
]

# A follower looks at the file for changes by other processes at intervals
# doubling from the first to the last while nothing comes (changes made in
# this process wake it at once).
FOLLOW_FIRST_WAIT = 0.001
FOLLOW_LAST_WAIT = 0.1

_watches: dict[str, set[Watch]] = {}


class Backoff:
    """Intervals doubling from a first to a last: how long a follower waits
    between looks at a file, or a writer between tries at a lock that
    another process holds (polling, because a thread blocked in a waiting
    lock call could not be woken if its task were cancelled)."""

    __slots__ = ("_first", "_last", "delay")

    def __init__(self, first: float | None = None, last: float | None = None) -> None:
        # Read when made, so that a test may change the module's values.
        self._first = FOLLOW_FIRST_WAIT if first is None else first
        self._last = FOLLOW_LAST_WAIT if last is None else last
        self.delay = self._first
        """The next interval, in seconds."""

    def reset(self) -> None:
        """Something came: the next interval is the first again."""
        self.delay = self._first

    def longer(self) -> None:
        """Nothing came: double the next interval (up to the last)."""
        self.delay = min(self.delay * 2, self._last)

    async def sleep(self) -> None:
        """Sleep for the next interval, then make it longer."""
        await asyncio.sleep(self.delay)
        self.longer()


class Watch:
    """One follower's wait for a file to change."""

    __slots__ = ("_future", "_loop", "_woken")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[bool] | None = None
        self._woken = False

    def _wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(True)
        else:
            self._woken = True  # a change while the follower was busy

    def wake(self) -> None:
        """Wake the follower (from any thread)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake()
        else:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                self._loop.call_soon_threadsafe(self._wake)

    async def wait(self, timeout: float) -> bool:
        """Wait until woken (True) or ``timeout`` seconds pass (False).

        A change notified since the last wait returns at once.
        """
        if self._woken:
            self._woken = False
            return True
        future: asyncio.Future[bool] = self._loop.create_future()
        self._future = future
        timer = self._loop.call_later(timeout, _settle, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._future = None
            self._woken = False


def _settle(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


@contextlib.contextmanager
def watching(path: str) -> Iterator[Watch]:
    """A `Watch` on ``path`` (canonical), registered while in use."""
    watch = Watch()
    _watches.setdefault(path, set()).add(watch)
    try:
        yield watch
    finally:
        found = _watches.get(path)
        if found is not None:
            found.discard(watch)
            if not found:
                del _watches[path]


def notify(path: str) -> None:
    """Wake every follower of ``path`` (canonical) in this process."""
    for watch in tuple(_watches.get(path, ())):
        watch.wake()
