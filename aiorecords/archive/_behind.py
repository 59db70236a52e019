"""Write-behind: small entries whose blocks have ended, written in batches.

With ``Archive.open(..., write_behind=True)`` an entry whose data never
left memory (under 1 MiB, and not ``data_gzip``) is queued when its block
exits, instead of being written in a worker-thread hop of its own. A batch
of them (a megabyte, or what is queued when someone waits) is then
compressed, framed and written in one hop, while more are queued: the
event loop never waits for it unless the queue is full, an entry is
durable, or someone asks (`flush()`, a listing, `sync()`, `close()`).

A queued entry is not in the file yet: it is **committed when a flush that
includes it returns** (or, if durable, when its block exits). A batch that
fails is cut off the file and its entries are lost; the archive then
refuses further appends, and the error is raised to whoever waits next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .. import _io
from ..errors import WriterFailedError
from ._files import end_append
from ._format import ArchiveEntry, Codec, ElementLayout, frame_element
from ._stream import CHUNK, EntryEncoder

if TYPE_CHECKING:
    from ._entries import NewEntry
    from ._opened import OpenArchive

__all__ = ["Queued", "WriteBehind"]

#: Queued bytes at which a batch is started in the background.
BATCH: Final = CHUNK
#: Queued bytes at which an append waits for the queue to be written: what
#: write-behind holds in memory is bounded by this and one entry.
LIMIT: Final = 8 * CHUNK
# What an element costs besides its data and strings (header and trailer),
# counted towards the bounds above.
_OVERHEAD: Final = 128

#: How a batch's blocking step is run: the archive's run() (counted, refused
#: once closing) or, by the close itself, a plain worker-thread hop.
Runner = Callable[
    ..., Awaitable[tuple[_io.Outcome[Any], asyncio.CancelledError | None]]
]


@dataclass(slots=True)
class Queued:
    """An entry whose block has ended, not yet written."""

    new: NewEntry
    data: bytes
    written: Callable[[ArchiveEntry], None]
    """Told the entry once it is in the file."""

    @property
    def cost(self) -> int:
        """What the entry counts towards the queue's bounds."""
        return len(self.data) + len(self.new.name) + len(self.new.comment) + _OVERHEAD


class WriteBehind:
    """The queue of one archive object, and the batches that empty it."""

    def __init__(self, archive: OpenArchive) -> None:
        self._archive = archive
        self._queued: list[Queued] = []
        self._queued_bytes = 0
        # One batch at a time: each is written where the one before ended.
        self._writing = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self.lost = 0
        """Entries queued and then lost with a batch that failed."""

    @property
    def queued(self) -> int:
        """How many entries wait to be written."""
        return len(self._queued)

    async def add(self, item: Queued) -> None:
        """Queue ``item`` (an entry whose block ended cleanly); start a
        batch if a megabyte waits, and wait for the queue to be written if
        it is full.

        Cancellation: the entry stays queued.
        """
        self._queued.append(item)
        self._queued_bytes += item.cost
        if self._queued_bytes >= LIMIT:
            await self.flush()
        else:
            if self._queued_bytes >= BATCH and (
                self._background is None or self._background.done()
            ):
                self._background = asyncio.create_task(self._write_in_background())
            await self._archive.cooperate()

    async def flush(self) -> None:
        """Write every entry queued so far.

        Raises what a failed batch raised (its entries are lost).
        Cancellation: the batch being written is written all the same (and
        noted); entries not yet in a batch stay queued.
        """
        async with self._writing:
            while self._queued:
                await self._write_batch(self._archive.run, self._writable())

    def _writable(self) -> _io.FileIO:
        try:
            return self._archive.writable("append")
        except WriterFailedError:
            self._drop()  # an earlier batch failed: these cannot follow it
            raise

    async def _write_in_background(self) -> None:
        # Errors are kept by the archive (poisoned) and raised to the next
        # caller; nothing is left for the task's result.
        with contextlib.suppress(Exception):
            async with self._writing:
                while self._queued_bytes >= BATCH:
                    await self._write_batch(self._archive.run, self._writable())

    async def close(self, io: _io.FileIO) -> BaseException | None:
        """Write what is queued to ``io``, in plain worker-thread hops (the
        archive is closing: nothing else reaches its file now), and wait
        for the background batch; what failed, if anything did."""
        failure: BaseException | None = None
        async with self._writing:
            if self._archive.failed is not None:
                self._drop()
            while self._queued and failure is None:
                try:
                    await self._write_batch(_io.run_to_completion, io)
                except Exception as error:
                    self._drop()
                    failure = error
        if self._background is not None:
            await self._background
        if failure is None and self.lost:
            failure = WriterFailedError(
                f"{self.lost} entries queued by write-behind were lost with "
                "a batch that failed"
            )
        return failure

    async def _write_batch(self, run: Runner, io: _io.FileIO) -> None:
        """Write the queued entries in one hop (two with ``"rdwr"``'s locks)."""
        archive = self._archive
        start, share_owner = await archive.begin_append(io, run)
        # Those queued while the locks were taken go too.
        batch, self._queued, self._queued_bytes = self._queued, [], 0
        try:
            outcome, cancelled = await run(
                _write_entries, io, start, batch, archive.listing.layout, share_owner
            )
        except BaseException:
            # Refused before it ran (closing): the entries wait for the close.
            self._queued[:0] = batch
            self._queued_bytes += sum(item.cost for item in batch)
            raise
        if outcome.error is not None:
            self.lost += len(batch)
            archive.poison(outcome.error)
        else:
            entries: list[ArchiveEntry] = outcome.value or []
            for item, entry in zip(batch, entries, strict=True):
                archive.appended(entry)
                item.written(entry)
        if cancelled is not None:
            raise cancelled
        outcome.unwrap()
        await archive.publish_settled()

    def _drop(self) -> None:
        self.lost += len(self._queued)
        self._queued, self._queued_bytes = [], 0


# In a worker thread.


def _write_entries(
    io: _io.FileIO,
    start: int,
    batch: list[Queued],
    layout: ElementLayout,
    share_owner: bool | None,
) -> list[ArchiveEntry]:
    """Encode and write ``batch`` at ``start``; on failure cut it off again.
    Releases the append locks either way."""
    try:
        try:
            return _encode_and_write(io, start, batch, layout)
        except BaseException:
            io.truncate(start)
            raise
    finally:
        if share_owner is not None:
            end_append(io, share_owner)


def _encode_and_write(
    io: _io.FileIO, start: int, batch: list[Queued], layout: ElementLayout
) -> list[ArchiveEntry]:
    pieces: list[bytes] = []
    entries: list[ArchiveEntry] = []
    position = start
    # A durable entry's payload reaches the disk before the trailer that
    # vouches for it: everything before the last durable trailer is
    # written and synced first.
    synced_to = -1
    for item in batch:
        entry, element = _element(layout, position, item)
        entries.append(entry)
        pieces.extend(element[:-1])
        if item.new.durable:
            synced_to = len(pieces)  # up to its trailer
        pieces.append(element[-1])
        position = entry.end
    if synced_to >= 0:
        first = b"".join(pieces[:synced_to])
        io.pwrite(start, first)
        io.datasync()
        io.pwrite(start + len(first), b"".join(pieces[synced_to:]))
        io.datasync()
    else:
        io.pwrite(start, b"".join(pieces))
    return entries


def _element(
    layout: ElementLayout, start: int, item: Queued
) -> tuple[ArchiveEntry, list[bytes]]:
    """The entry of ``item`` placed at ``start``, and its element's bytes in
    pieces, the trailer last (joined once, with the whole batch's)."""
    new = item.new
    encoder = EntryEncoder(new.codec, False, layout.stuffed)
    pieces = list(encoder.feed(item.data))
    pieces.append(encoder.finish())
    header, _, trailer = frame_element(
        layout,
        start,
        new.name,
        new.timestamp,
        new.comment,
        new.codec,
        encoder.stored_size,
        encoder.data_size,
        encoder.crc,
    )
    end = start + len(header) + encoder.stored_size + layout.trailer_size
    entry = ArchiveEntry(
        new.name,
        new.timestamp,
        Codec.NAMES[new.codec],
        new.comment,
        start,
        start + len(header),
        encoder.stored_size,
        encoder.data_size,
        encoder.crc,
        end,
    )
    return entry, [header, *pieces, trailer]
