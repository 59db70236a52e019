"""Group commit and back-pressure for a capture file open for writing.

Callers of ``commit()`` that come while a commit is being written and synced
all join the next one, which starts when it ends: many callers, one pair of
syncs. ``append()`` and ``append_batch()`` add records and wait for such a
commit; once ``max_pending_appends`` of their records wait, further calls
wait for room first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from ..errors import ConflictError
from ._writer import LARGE_RECORD
from ._writing import Writes

__all__ = ["Commits"]


class _Ticket:
    """A caller's place in the next group commit."""

    __slots__ = ("abandoned", "batch", "done")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        # Once its commit has begun (it will run to its end): that commit's
        # own future, done when it has ended.
        self.batch: asyncio.Future[None] | None = None
        self.abandoned = False  # its caller was cancelled before that


class Commits:
    """The commits and appends of one file open for writing."""

    def __init__(self, writes: Writes, max_pending: int, file_name: str) -> None:
        self._writes = writes
        self._max_pending = max_pending
        self._file_name = file_name
        # Callers waiting for the next commit, and the task that runs commits
        # one after another while any wait.
        self._next: list[_Ticket] = []
        self._committer: asyncio.Task[None] | None = None
        # Back-pressure: records of append()/append_batch() not yet committed.
        self.waiting = 0
        self._room: list[asyncio.Future[None]] = []

    async def commit(self) -> None:
        """Wait for a commit that covers everything added before this call."""
        self._writes.check("commit")
        ticket = _Ticket(asyncio.get_running_loop().create_future())
        self._next.append(ticket)
        if self._committer is None:
            # Started as a task, so that every caller that comes in this
            # turn of the event loop joins the commit (natural batching).
            self._committer = asyncio.ensure_future(self._run())
        await self._await_turn(ticket)

    async def _await_turn(self, ticket: _Ticket) -> None:
        """Wait for the commit that covers ``ticket``."""
        try:
            # The ticket's future is this caller's alone: awaiting it directly
            # (a cancellation cancels it, and the committer then skips it).
            await ticket.done
        except asyncio.CancelledError:
            batch = ticket.batch
            if batch is None:
                ticket.abandoned = True
                raise
            # The commit is under way: it ends (committed or failed) first.
            while not batch.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(batch)
            raise

    async def _run(self) -> None:
        """Run commits back to back while callers wait for one: each covers
        every caller waiting when it starts."""
        writes = self._writes
        try:
            idle = False
            while True:
                batch = [t for t in self._next if not t.abandoned]
                self._next = []
                if not batch:
                    if idle:
                        return
                    # Callers woken by the last commit may come back at once
                    # (a producer appending again): one more turn of the
                    # loop lets them join the next commit here.
                    idle = True
                    await asyncio.sleep(0)
                    continue
                idle = False
                running: asyncio.Future[None] = (
                    asyncio.get_running_loop().create_future()
                )
                for ticket in batch:
                    ticket.batch = running
                try:
                    async with writes.lock:
                        writes.check("commit")
                        await writes.flush(commit=True)
                except asyncio.CancelledError:
                    for ticket in batch:  # the loop is shutting down
                        ticket.done.cancel()
                    running.cancel()
                    raise
                except BaseException as error:
                    for ticket in batch:
                        if not ticket.done.done():
                            ticket.done.set_exception(error)
                else:
                    for ticket in batch:
                        if not ticket.done.done():
                            ticket.done.set_result(None)
                running.set_result(None)
        finally:
            self._committer = None
            for ticket in self._next:
                ticket.done.cancel()

    def _conflict(self, count: int, expected_count: int | None) -> None:
        if expected_count is not None and count != expected_count:
            raise ConflictError(
                f"{self._file_name!r} holds {count} records, "
                f"not the {expected_count} expected",
                expected=expected_count,
                actual=count,
            )

    async def append(
        self, record: str | bytes | bytearray | memoryview, expected_count: int | None
    ) -> int:
        """Add one record and wait for its commit; its number."""
        kind = type(record)
        if (
            (kind is not str and kind is not bytes)
            or self.waiting >= self._max_pending
            or (kind is str and len(record) >= LARGE_RECORD)
        ):
            # Another type, no room, or a large text: the general path
            # converts (off the loop if large), or waits.
            return await self.append_batch((record,), expected_count)
        data = self._writes.encode(record)
        writer = self._writes.writer
        count = writer.count
        self._conflict(count, expected_count)
        writer.add_record(data)
        self.waiting += 1
        try:
            await self.commit()
        finally:
            self._release(1)
        return count + 1

    async def append_batch(
        self,
        records: Iterable[str | bytes | bytearray | memoryview],
        expected_count: int | None,
    ) -> int:
        """Add ``records`` together, after waiting for room, and wait for
        their commit; the number of the last."""
        writes = self._writes
        writer = writes.check("append to")
        items = await writes.encoded_all(records)
        writer = writes.check("append to")
        for data in items:
            writer.check(data)  # all of them, before any is added
        await self._wait_for_room(len(items))
        writer = writes.check("append to")
        self._conflict(writer.count, expected_count)
        # All added before anything can await, so nothing interleaves. Blocks
        # that fill meanwhile are written by the commit.
        for data in items:
            writer.add_record(data)
        last = writer.count
        self.waiting += len(items)
        try:
            await self.commit()
        finally:
            self._release(len(items))
        return last

    async def _wait_for_room(self, count: int) -> None:
        """Wait until ``count`` more appended records may wait for a commit."""
        limit = self._max_pending
        while self.waiting and self.waiting + count > limit:
            room = asyncio.get_running_loop().create_future()
            self._room.append(room)
            try:
                await room
            finally:
                with contextlib.suppress(ValueError):
                    self._room.remove(room)

    def _release(self, count: int) -> None:
        self.waiting -= count
        if self._room:
            waiting, self._room = self._room, []
            for room in waiting:
                if not room.done():
                    room.set_result(None)
