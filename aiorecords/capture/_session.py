"""The parts of one open capture file, made together when it opens."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import RecordIndexError
from ._committing import Commits
from ._following import follow
from ._opened import OpenFile, refuse_follow_on_storage, release
from ._reading import Reads, Record
from ._state import FileState, State
from ._writer import CaptureWriter
from ._writing import Writes

__all__ = ["Session"]


class Session:
    """What a `CaptureFile` delegates to while it is open: the open file,
    its reads, and for a writer its write path and commits."""

    __slots__ = ("commits", "opened", "reads", "state", "writes")

    def __init__(
        self, opened: OpenFile, state: FileState, to_write: bool, max_pending: int
    ) -> None:
        self.opened = opened
        self.state = state
        self.writes: Writes | None = None
        self.commits: Commits | None = None
        if to_write:
            settings = opened.settings
            writer = CaptureWriter(
                opened.layout, opened.master, opened.size, settings.max_record_size
            )
            self.writes = Writes(opened, state, writer)
            self.commits = Commits(self.writes, max_pending, settings.file_name)
        self.reads = Reads(opened, self.writes)

    def record_count(self) -> int:
        """Records a reader sees at its commit; a writer, all it added."""
        if self.writes is not None:
            return self.writes.writer.count
        return self.opened.view.count

    def committed_count(self) -> int:
        """Records in the last commit seen (or, for a writer, made)."""
        if self.writes is not None:
            return self.opened.master.record_count(self.opened.layout.fan_out)
        return self.opened.view.count

    async def record_at(self, number: int) -> Record:
        """Record ``number`` (from 1), checked to be there."""
        count = self.record_count()
        if not isinstance(number, int) or not 1 <= number <= count:
            raise RecordIndexError(
                f"record {number} is out of range 1..{count} "
                f"of {self.opened.settings.file_name!r}"
            )
        return await self.reads.record_at(number)

    def records_from(self, number: int) -> AsyncIterator[Record]:
        """The records from ``number`` (from 1) to the current count."""
        if number < 1:
            raise RecordIndexError(f"record numbers start at 1, not {number}")
        return self.reads.generate(number - 1, self.record_count())

    async def slice(self, key: slice) -> list[Record]:
        """Records by a slice of record numbers (see ``CaptureFile[a:b]``)."""
        count = self.record_count()
        start = 1 if key.start is None else key.start
        stop = count + 1 if key.stop is None else min(key.stop, count + 1)
        step = 1 if key.step is None else key.step
        if start < 1:
            raise RecordIndexError(f"record numbers start at 1, not {start}")
        if step == 1:
            return [record async for record in self.reads.generate(start - 1, stop - 1)]
        return [await self.record_at(number) for number in range(start, stop, step)]

    def follow(self, position: int) -> AsyncIterator[Record]:
        """The committed records from 0-based ``position`` on, forever."""
        refuse_follow_on_storage(self.opened)
        return follow(
            self.opened,
            self.reads,
            self.committed_count,
            self.writes is not None,
            position,
        )

    async def close(self, owner: object) -> None:
        """Close the open file, then free ``owner``'s place as its writer (a
        task of its own, awaited through cancellations by
        ``CaptureFile.close()``)."""
        try:
            await self.opened.close()
        finally:
            release(self.opened.path_key, owner)
            self.state.move(State.CLOSED)
