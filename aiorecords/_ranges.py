"""Reading an object on storage in aligned ranges held in memory.

A [`RangeCache`][aiorecords._ranges.RangeCache] fetches the ranges of one
`RemoteFile` on the event loop, reading ahead along a run of misses, and
lets worker threads look at what it holds. Cores run over it in two ways,
both with one thread hop per range missed and no thread ever waiting for
the network:

* a `Read` machine, by [`answer_reads_held()`][aiorecords._ranges.answer_reads_held]:
  it is suspended at the read that misses and resumed with its bytes;
* code written for a file (the capture driver's block readers), through
  a [`HeldFile`][aiorecords._ranges.HeldFile], whose ``pread`` raises
  [`NotHeld`][aiorecords._ranges.NotHeld] for what is not held: the hop
  ends, the loop fetches it and the step runs again (see
  [`until_held()`][aiorecords._ranges.until_held]).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from ._remote import RemoteFile, retrieve
from ._wants import Read, Steps

__all__ = ["HeldFile", "NotHeld", "RangeCache", "answer_reads_held", "until_held"]

R = TypeVar("R")


class RangeCache:
    """An object read in aligned ranges of ``size`` bytes, the last
    ``keep`` of them held in memory: ranges of the whole object, or of the
    part from ``origin`` to ``end`` (one archive entry's payload, say, so
    that reading it reads nothing of its neighbours).

    A miss that continues a run (the range after, or before, the one missed
    last) also requests the next ``depth`` ranges that way, so that the
    store works while the caller decodes: reading forward streams, and so
    does walking an archive back from its end; a jump requests one range.
    Memory: at most ``keep + 2 * (depth + 1)`` ranges.

    `held()` may be called from a worker thread (it only looks); the rest
    runs on the event loop.
    """

    __slots__ = (
        "_ahead",
        "_extra",
        "_forward",
        "_held",
        "_run",
        "_waited",
        "depth",
        "end",
        "keep",
        "origin",
        "remote",
        "size",
    )

    def __init__(
        self,
        remote: RemoteFile,
        size: int,
        *,
        depth: int = 2,
        keep: int = 1,
        forward: bool = False,
        origin: int = 0,
        end: int | None = None,
    ) -> None:
        if size <= 0 or keep < 1 or depth < 0:
            raise ValueError("a range cache needs size > 0, keep >= 1, depth >= 0")
        self.remote = remote
        self.size = size
        self.origin = origin
        self.end = end
        """Where the part read ends; None: where the object does."""
        self.depth = depth
        self.keep = keep
        self._held: dict[int, bytes] = {}  # by range index, oldest first
        self._extra: tuple[int, bytes] = (0, b"")  # see hold()
        self._ahead: dict[int, asyncio.Task[bytes]] = {}
        self._waited: dict[asyncio.Task[bytes], int] = {}  # by how many
        # Where the run of misses is: a reader that streams forward says so
        # (``forward``), so that its first miss reads ahead too.
        self._forward = forward
        self._run: tuple[int, int] | None = None  # the ranges missed last

    def _limit(self) -> int:
        size = self.remote.size
        return size if self.end is None else min(self.end, size)

    def _index(self, offset: int) -> int:
        return (offset - self.origin) // self.size

    def held(self, offset: int, size: int) -> bytes | None:
        """Bytes ``[offset, offset + size)`` (fewer where the part ends) if
        the ranges held cover them, else None."""
        end = min(offset + size, self._limit())
        if offset >= end:
            return b""
        extra_at, extra = self._extra
        if extra_at <= offset and end <= extra_at + len(extra):
            return extra[offset - extra_at : end - extra_at]
        if offset < self.origin:
            return None
        first, last = self._index(offset), self._index(end - 1)
        at = offset - self.origin - first * self.size
        if first == last:
            data = self._held.get(first)
            if data is None:
                return None
            return data[at : at + end - offset]
        parts = []
        for index in range(first, last + 1):
            data = self._held.get(index)
            if data is None:
                return None
            parts.append(data)
        return b"".join(parts)[at : at + end - offset]

    async def read(self, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)``, fewer only where the object
        ends.

        Cancellation: requests go on and serve the next call.
        """
        end = min(offset + size, self._limit())
        if offset >= end:
            return b""
        if offset < self.origin:  # not of the part: read as asked
            return await self.remote.read(offset, end - offset)
        first, last = self._index(offset), self._index(end - 1)
        self._ask(first, last)
        for index in range(first, last + 1):
            await self._take(index)
        found = self.held(offset, size)
        if found is None:  # more ranges than are kept: read it whole
            return await self.remote.read(offset, size)
        return found

    async def hold(self, offset: int, size: int) -> None:
        """Make `held()` give bytes ``[offset, offset + size)`` (a read
        spanning more ranges than are kept is held whole, beside them,
        until the next such read).

        Cancellation: requests go on and serve the next call.
        """
        data = await self.read(offset, size)
        if self.held(offset, size) is None:
            self._extra = (offset, data)

    async def piece(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes at ``offset``, from one range (fewer at its
        end or the object's; b"" at the object's end), without a copy of
        the range when the piece is all of it.

        Cancellation: requests go on and serve the next call.
        """
        if offset >= self._limit():
            return b""
        index, at = divmod(offset - self.origin, self.size)
        data = await self.range(index)
        if at == 0 and limit >= len(data):
            return data
        return data[at : at + limit]

    async def range(self, index: int) -> bytes:
        """The range ``index``: bytes ``[origin + index * size, origin +
        (index + 1) * size)``, fewer where the part ends.

        Cancellation: its request goes on and serves the next call.
        """
        self._ask(index, index)
        return await self._take(index)

    def _ask(self, first: int, last: int) -> None:
        # Request the ranges first to last not held; and if they continue
        # the run of misses (forward or back), the next depth ranges too.
        missing = [
            i
            for i in range(first, last + 1)
            if i not in self._held and i not in self._ahead
        ]
        if not missing:
            return
        for index in missing:
            self._ahead[index] = self._start(index)
        low, high = missing[0], missing[-1]
        run, self._run = self._run, (low, high)
        if run is None and self._forward:
            run = (low - 1, low - 1)
        if run is None:
            return
        if low == run[1] + 1:
            later = range(high + 1, high + 1 + self.depth)
        elif high == run[0] - 1:
            later = range(low - 1, low - 1 - self.depth, -1)
        else:
            return  # a jump
        count = -(-(self._limit() - self.origin) // self.size)
        for index in later:
            if 0 <= index < count and index not in self._ahead | self._held.keys():
                self._ahead[index] = self._start(index)

    async def _take(self, index: int) -> bytes:
        data = self._held.get(index)
        if data is not None:
            self._held[index] = self._held.pop(index)  # now the newest
            return data
        task = self._ahead.get(index)
        if task is None:  # dropped meanwhile (a jump elsewhere): again
            task = self._ahead[index] = self._start(index)
        # A request someone awaits is never cancelled by the cache (only
        # dropped from it): a cancellation reaches only those cancelled.
        self._waited[task] = self._waited.get(task, 0) + 1
        try:
            data = await asyncio.shield(task)  # cancelled: it stays for next time
        finally:
            left = self._waited.pop(task) - 1
            if left:
                self._waited[task] = left
            if task.done() and self._ahead.get(index) is task:
                del self._ahead[index]
        self._held[index] = data
        while len(self._held) > self.keep:
            del self._held[next(iter(self._held))]
        self._drop_stale(index)
        return data

    def forget(self) -> None:
        """Let go of every range held or asked for (the object changed)."""
        self._drop(list(self._ahead))
        self._held.clear()
        self._extra = (0, b"")
        self._run = None

    def _drop_stale(self, index: int) -> None:
        # A reader that jumps away and back (a capture stream to an index
        # node and on) still wants what was read ahead; but no more than
        # two runs' worth is kept asked for: the farthest go first.
        most = 2 * (self.depth + 1)
        if len(self._ahead) > most:
            far = sorted(self._ahead, key=lambda i: abs(i - index))[most:]
            self._drop(far)

    def _drop(self, indexes: list[int]) -> None:
        # Requests nobody awaits are cancelled; awaited ones go on for
        # their waiters.
        for i in indexes:
            task = self._ahead.pop(i)
            if task not in self._waited:
                task.cancel()

    def _start(self, index: int) -> asyncio.Task[bytes]:
        start = self.origin + index * self.size
        size = min(self.size, self._limit() - start)
        task = asyncio.ensure_future(self.remote.read(start, size))
        task.add_done_callback(retrieve)
        return task

    async def close(self) -> None:
        """Cancel the requests in flight that nobody awaits, and wait for
        all to end (the awaited ones give their waiters what they asked
        for; what those do next is refused by the closed facade).

        Cancellation: the requests nobody awaits are cancelled all the same.
        """
        tasks = {*self._ahead.values(), *self._waited}
        self.forget()
        if tasks:
            await asyncio.wait(tasks)  # their outcomes are retrieved, not raised


async def answer_reads_held(
    steps: Steps[Read, R],
    ranges: RangeCache,
    offload: Callable[..., Awaitable[Any]],
) -> R:
    """Run a push-style core over an object: in worker-thread hops (made by
    ``offload(function, *args)``) while ``ranges`` holds what it wants, and
    on the event loop, awaiting the store, for each read it does not.

    One hop per range missed, plus one: a walk over what is held never
    holds the loop, and no thread ever waits for the network.

    Cancellation: ``steps`` is left part-way and must not be resumed.
    """
    data: bytes | None = None  # sending None first starts the generator
    while True:
        want, done, result = await offload(_run_while_held, steps, ranges, data)
        if done:
            return cast(R, result)
        data = await ranges.read(want.offset, want.size)


def _run_while_held(
    steps: Steps[Read, Any], ranges: RangeCache, data: bytes | None
) -> tuple[Read | None, bool, Any]:
    # In a worker thread: run the core until it wants what is not held.
    try:
        want = steps.send(data)  # type: ignore[arg-type]
        while (held := ranges.held(want.offset, want.size)) is not None:
            want = steps.send(held)
    except StopIteration as finished:
        return None, True, finished.value
    return want, False, None


class NotHeld(Exception):
    """A worker thread wanted bytes ``[offset, offset + size)`` of an
    object that its ranges do not hold yet (fetch them and run it again)."""

    def __init__(self, offset: int, size: int) -> None:
        super().__init__(offset, size)
        self.offset = offset
        self.size = size
        self.resume: Any = None
        """Where the step that raised it goes on from, if it says."""


class HeldFile:
    """An object as code written for a file reads it, in a worker thread:
    ``pread`` gives what ``ranges`` hold and raises `NotHeld` for the rest."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: RangeCache) -> None:
        self.ranges = ranges

    @property
    def url(self) -> str:
        """The object's URL."""
        return self.ranges.remote.url

    def pread(self, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)``, fewer where the object ends."""
        data = self.ranges.held(offset, size)
        if data is None:
            raise NotHeld(offset, size)
        return data

    def size(self) -> int:
        """The object's size when last looked at."""
        return self.ranges.remote.size

    async def close(self) -> None:
        """Cancel the requests in flight.

        Cancellation: they are cancelled all the same.
        """
        await self.ranges.close()


async def until_held(
    step: Callable[[Any], Awaitable[R]], file: HeldFile, start: Any = None
) -> R:
    """``await step(start)``; each time it raises `NotHeld`, fetch what it
    wanted on the loop and run it again, from where it says (its
    ``resume``), or from ``start``.

    Cancellation: the step is left where it was stopped.
    """
    where = start
    while True:
        try:
            return await step(where)
        except NotHeld as missing:
            await file.ranges.hold(missing.offset, missing.size)
            where = start if missing.resume is None else missing.resume
