"""Streaming one archive entry in (`EntryWriter`) or out
(`EntryReader`), and the ``async with`` blocks that hand them out.

Bytes go to and from the file a megabyte at a time, each megabyte in one
worker-thread hop that also compresses or decompresses it; a small entry is
written whole, header to trailer, in one hop when its block ends.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from .. import _io, _ranges
from .._codecs import DecodeError
from .._wants import answer_reads
from ..errors import ClosedError, CorruptArchiveError, StorageError, WriterFailedError
from ._behind import Queued, WriteBehind
from ._files import MemoryArchive, RemoteArchive, end_append
from ._format import ArchiveEntry, Codec
from ._stream import CHUNK, EntryDecoder, EntryEncoder

if TYPE_CHECKING:
    from ._opened import OpenArchive

__all__ = [
    "Appending",
    "EntryReader",
    "EntryWriter",
    "NewEntry",
    "Reading",
    "read_held",
]

#: Bytes written to an entry that are gathered before a worker thread
#: compresses and writes them.
_WRITE_BUFFER: Final = CHUNK
# An entry on object storage is read in ranges this large, two ahead.
_REMOTE_RANGE: Final = 8 * 1024 * 1024
# Entries of an in-memory archive at most this large (as stored) are read on
# the event loop: decompressing them takes well under a millisecond. So are
# those of a file, as large stored and as data, whose bytes the page cache
# holds (read without waiting for the disk, or else in a worker thread).
_INLINE_READ: Final = 64 * 1024


# ----------------------------------------------------------------------
# Reading


class EntryReader:
    """The data of one entry, streamed: ``async for chunk in stream``, or
    ``await stream.read(size)``. Made by [`Archive.read()`][aiorecords.Archive.read]."""

    def __init__(self, archive: OpenArchive, entry: ArchiveEntry) -> None:
        self.entry = entry
        """The entry being read."""
        self._archive = archive
        self._decoder = EntryDecoder(
            entry.payload_offset,
            entry.stored_size,
            Codec.BY_NAME[entry.compression],
            entry.size,
            entry.payload_crc,
            archive.listing.layout.stuffed,
        )
        self._closed = False
        self._ranges: _ranges.RangeCache | None = None  # on object storage
        # A small entry's stored bytes, read from the page cache on the loop.
        self._held: _HeldPayload | None = None
        self._tried_cache = False

    def __repr__(self) -> str:
        return f"<EntryReader {self.entry.name!r} of {self._archive!r}>"

    def __aiter__(self) -> EntryReader:
        """The stream itself: ``async for chunk in stream``."""
        return self

    async def __anext__(self) -> bytes:
        """The next chunk (at most 1 MiB) of the data.

        Cancellation: the chunk is lost to the stream, which should not be
        read further.
        """
        chunk = await self.read1()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def _step(
        self, storage: _io.FileIO | MemoryArchive | _HeldPayload, limit: int
    ) -> bytes:
        # In a worker thread (or, for bytes in memory, on the loop): read
        # and decode the next piece.
        try:
            return answer_reads(self._decoder.read1(limit), storage.pread)
        except DecodeError as error:
            raise self._damaged(error) from None

    async def _remote_step(self, storage: RemoteArchive, limit: int) -> bytes:
        # Decoded in worker-thread hops over the ranges held; the others
        # are awaited on the loop, read ahead while the stream goes on.
        if self._ranges is None:
            # Ranges of this payload only: none of the neighbours' bytes.
            start = self.entry.payload_offset
            self._ranges = _ranges.RangeCache(
                storage.remote,
                _REMOTE_RANGE,
                keep=2,
                forward=True,
                origin=start,
                end=start + self.entry.stored_size,
            )
            await self._ranges.range(0)  # and the next two, ahead
        try:
            return await _ranges.answer_reads_held(
                self._decoder.read1(limit), self._ranges, self._archive.offload
            )
        except DecodeError as error:
            raise self._damaged(error) from None

    def _damaged(self, error: DecodeError) -> CorruptArchiveError:
        return CorruptArchiveError(
            f"entry {self.entry.name!r} is damaged: {error}",
            path=self._archive.path,
            offset=self.entry.offset,
        )

    async def _close_ranges(self) -> None:
        ranges, self._ranges = self._ranges, None
        if ranges is not None:
            await ranges.close()

    async def read1(self, size: int = CHUNK) -> bytes:
        """At most ``size`` bytes (and at most 1 MiB) of the data, read with
        one worker-thread hop; b"" at the end, once the checksum is checked.
        A small entry (up to 64 KiB, stored and as data) whose bytes the page
        cache holds is read on the event loop instead, without waiting for
        the disk.

        Cancellation: the chunk is lost to the stream, which should not be
        read further.
        """
        if self._closed:
            raise ClosedError(f"the stream of {self.entry.name!r} is closed")
        if size <= 0 or self._decoder.done:
            return b""
        storage = self._archive.live("read an entry")
        if (
            isinstance(storage, MemoryArchive)
            and self.entry.stored_size <= _INLINE_READ
        ):
            # Bytes already in memory, and little to inflate: a worker
            # thread would cost more than the work (~90 us a hop).
            return self._step(storage, size)
        if isinstance(storage, RemoteArchive):
            return await self._remote_step(storage, size)
        if self._held is not None or self._cached(storage):
            assert self._held is not None
            return self._step(self._held, size)
        return await self._archive.offload(self._step, storage, size)

    def _cached(self, storage: _io.FileIO | MemoryArchive | RemoteArchive) -> bool:
        """Whether a small entry's stored bytes were found in the page
        cache (tried once, before anything is read): then it is read on the
        loop, with no worker-thread hop."""
        if self._tried_cache:
            return False
        self._tried_cache = True
        entry = self.entry
        if not isinstance(storage, _io.FileIO):
            return False
        if entry.stored_size > _INLINE_READ or entry.size > _INLINE_READ:
            return False
        data = storage.read_cached(entry.payload_offset, entry.stored_size)
        if data is None or len(data) != entry.stored_size:
            return False  # not all cached, or cut short: read it in a thread
        self._held = _HeldPayload(entry.payload_offset, bytes(data))
        return True

    async def read(self, size: int = -1) -> bytes:
        """``size`` bytes (fewer only at the end), or with ``size < 0`` all
        that is left; b"" at the end.

        Cancellation: the bytes gathered are lost to the stream, which
        should not be read further.
        """
        parts: list[bytes] = []
        got = 0
        while size < 0 or got < size:
            chunk = await self.read1(CHUNK if size < 0 else min(size - got, CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


def read_held(archive: OpenArchive, entry: ArchiveEntry) -> bytes | None:
    """The whole data of ``entry``, checked, if it is small and the page
    cache holds its bytes: read on the loop, with no worker-thread hop and
    nothing to wait for (so no other task's append or read is either);
    None otherwise."""
    reader = EntryReader(archive, entry)
    if not reader._cached(archive.live("read an entry")):
        return None
    assert reader._held is not None
    parts = []
    while chunk := reader._step(reader._held, CHUNK):
        parts.append(chunk)
    return b"".join(parts)


class _HeldPayload:
    """An entry's stored bytes, held: its decoder reads only those."""

    __slots__ = ("_data", "_offset")

    def __init__(self, offset: int, data: bytes) -> None:
        self._offset = offset
        self._data = data

    def pread(self, offset: int, size: int) -> bytes:
        at = offset - self._offset
        if at < 0 or at + size > len(self._data):
            raise AssertionError(
                f"a read of {size} bytes at {offset} outside the entry"
            )
        return self._data[at : at + size]


class Reading:
    """What `Archive.read()` returns: ``async with`` gives the stream."""

    __slots__ = ("_archive", "_context", "_entry", "_stream")

    def __init__(self, archive: OpenArchive, entry: ArchiveEntry | str) -> None:
        self._archive = archive
        self._entry = entry
        self._stream: EntryReader | None = None
        self._context: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> EntryReader:
        entry = self._entry
        if isinstance(entry, str):
            found = await self._archive.find(entry)
            if found is None:
                raise KeyError(entry)
            entry = found
        context = self._archive.one_entry_at_a_time()
        await context.__aenter__()
        try:
            self._stream = EntryReader(self._archive, entry)
        except BaseException:
            await context.__aexit__(None, None, None)
            raise
        self._context = context
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream._closed = True
            await self._stream._close_ranges()
        if self._context is not None:
            await self._context.__aexit__(exc_type, exc, tb)


# ----------------------------------------------------------------------
# Appending


@dataclass(frozen=True, slots=True)
class NewEntry:
    """What an append knows of its entry before any of it is written."""

    name: str
    timestamp: int
    comment: str
    codec: int
    data_gzip: bool
    durable: bool


class EntryWriter:
    """Where an entry's data goes: ``await out.write(data)``. Made by
    [`Archive.append()`][aiorecords.Archive.append]; the entry exists once its
    block exits cleanly."""

    def __init__(self, archive: OpenArchive, io: _io.FileIO, new: NewEntry) -> None:
        self.entry: ArchiveEntry | None = None
        """The entry, once the block has exited cleanly (None before; with
        write-behind, None until the entry is written)."""
        self._archive = archive
        self._io = io
        self._new = new
        self._layout = layout = archive.listing.layout
        self._encoder = EntryEncoder(new.codec, new.data_gzip, layout.stuffed)
        # Where the element goes, once known (begin()): with write-behind a
        # small entry never learns it here.
        self._start = -1
        self._share_owner: bool | None = None  # the append locks held (None: none)
        self._header = b""
        self._header_crc = 0
        self._position = -1  # where the next stored byte goes
        self._buffer = bytearray()
        self._done = False
        self._broken: BaseException | None = None  # a failed write
        self._touched = False  # whether any of the entry went to the file
        self._cut_failed = False

    def __repr__(self) -> str:
        return f"<EntryWriter {self._new.name!r} of {self._archive!r}>"

    def begin(self, start: int, share_owner: bool | None) -> None:
        """The element goes at ``start``, with these append locks held."""
        new = self._new
        self._start = self._position = start
        self._share_owner = share_owner
        self._header, self._header_crc = self._layout.encode_header(
            start, new.name, new.timestamp, new.comment, new.codec
        )

    async def _begin_behind(self) -> None:
        # Write-behind: an entry that must be written the usual way (it
        # outgrew memory, or is data_gzip) goes after the queued ones.
        archive = self._archive
        assert archive.behind is not None
        await archive.behind.flush()
        io = archive.writable("append")
        self.begin(*(await archive.begin_append(io)))

    async def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Add ``data`` (bytes, or str as UTF-8) to the entry.

        Data is gathered in memory and handed to a worker thread (to be
        compressed and written) a megabyte at a time. Raises
        `ValueError` if data written with ``data_gzip=True`` is not
        gzip; after any error the entry can no longer be completed.

        Cancellation: the append is abandoned when the cancellation leaves
        the ``async with`` block; no entry appears.
        """
        if self._done:
            raise ClosedError("the entry's block has ended: it takes no more data")
        if self._broken is not None:
            raise WriterFailedError(
                f"an earlier write to {self._new.name!r} failed"
            ) from self._broken
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"entry data is bytes or str, not {type(data).__name__}")
        self._buffer += data
        if len(self._buffer) < _WRITE_BUFFER:
            return
        self._archive.writable("append")
        if self._start < 0:
            await self._begin_behind()
        data = bytes(self._buffer)
        self._buffer.clear()
        outcome, cancelled = await self._archive.run(self._store, data, False)
        if outcome.error is None:
            assert outcome.value is not None
            self._position = outcome.value
        else:
            self._broken = outcome.error
        if cancelled is not None:
            self._broken = self._broken or cancelled
            raise cancelled
        outcome.unwrap()

    # The steps below run in a worker thread.

    def _store(self, data: bytes, final: bool) -> int:
        """Compress and write ``data`` (and, if ``final``, the rest and the
        trailer); the position after what was written."""
        self._touched = True
        try:
            return self._store_unchecked(data, final)
        except DecodeError as error:
            raise ValueError(
                f"the data written to {self._new.name!r} with data_gzip=True "
                f"is not gzip ({error})"
            ) from None

    def _store_unchecked(self, data: bytes, final: bool) -> int:
        io = self._io
        encoder = self._encoder
        position = self._position
        pending: list[bytes] = []
        pending_size = 0

        def write_pending() -> None:
            nonlocal position, pending, pending_size
            if pending:
                io.pwrite(position, b"".join(pending))
                position += pending_size
                pending, pending_size = [], 0

        if position == self._start:
            pending.append(self._header)
            pending_size = len(self._header)
        for piece in encoder.feed(data):
            pending.append(piece)
            pending_size += len(piece)
            if pending_size >= _WRITE_BUFFER:
                write_pending()
        if not final:
            write_pending()
            return position
        last = encoder.finish()
        pending.append(last)
        pending_size += len(last)
        if encoder.data_size >= 1 << 63:
            raise ValueError("an entry holds less than 2**63 bytes")
        if self._new.durable:
            # The payload reaches the disk before the trailer that vouches
            # for it is written.
            write_pending()
            io.datasync()
        trailer_size = self._layout.trailer_size
        pending.append(
            self._layout.encode_trailer(
                self._start,
                position + pending_size + trailer_size - self._start,
                encoder.stored_size,
                encoder.data_size,
                encoder.crc,
                self._header_crc,
            )
        )
        pending_size += trailer_size
        write_pending()
        if self._new.durable:
            io.datasync()
        return position

    def _complete(self, data: bytes) -> int:
        """Write the rest of the entry and its trailer; on failure, cut off
        what was written. Releases the append locks either way."""
        try:
            try:
                return self._store(data, True)
            except BaseException:
                self._cut()
                raise
        finally:
            self._release()

    def _abandon(self) -> None:
        """Cut off what was written of an entry that will not be finished,
        and release the append locks."""
        try:
            if self._touched:
                self._cut()
        finally:
            self._release()

    def _cut(self) -> None:
        try:
            self._io.truncate(self._start)
        except BaseException:
            self._cut_failed = True
            raise

    def _release(self) -> None:
        if self._share_owner is not None:
            end_append(self._io, self._share_owner)

    # Back on the event loop.

    def _made(self) -> ArchiveEntry:
        encoder = self._encoder
        self.entry = ArchiveEntry(
            name=self._new.name,
            timestamp=self._new.timestamp,
            compression=Codec.NAMES[self._new.codec],
            comment=self._new.comment,
            offset=self._start,
            payload_offset=self._start + len(self._header),
            stored_size=encoder.stored_size,
            size=encoder.data_size,
            payload_crc=encoder.crc,
            end=self._start
            + len(self._header)
            + encoder.stored_size
            + self._layout.trailer_size,
        )
        return self.entry

    async def _end(self, clean: bool) -> None:
        """Finish the entry (``clean``) or abandon it."""
        self._done = True
        archive = self._archive
        if archive.closed:
            # Closed under the append: the descriptor and its locks are gone,
            # and what was written of the entry is a torn tail that the next
            # writer cuts off. No entry exists, and a clean exit must say so.
            if clean:
                raise ClosedError(
                    f"{archive!r} was closed before the entry {self._new.name!r} "
                    "was complete: it was not added"
                )
            return
        failure: BaseException | None = None
        if clean and self._broken is not None:
            clean = False
            failure = WriterFailedError(
                f"a write to {self._new.name!r} failed, so it was not added"
            )
            failure.__cause__ = self._broken
        outcome: _io.Outcome[Any]
        if clean and self._start < 0:
            behind = archive.behind
            assert behind is not None
            if not self._new.data_gzip:  # whose data may prove not gzip
                await self._queue(behind)
                return
            await self._begin_behind()
        if clean:
            data = bytes(self._buffer)
            self._buffer.clear()
            outcome, cancelled = await archive.run(self._complete, data)
        elif self._touched or self._share_owner is not None:
            outcome, cancelled = await archive.run(self._abandon)
        else:
            return  # nothing reached the file and no lock is held
        error = outcome.error
        if clean and error is None:
            archive.appended(self._made())
        if self._cut_failed or (
            isinstance(error, StorageError) and "sync" in error.operation
        ):
            # The file may hold bytes no one can vouch for, or have lost
            # some the kernel could not write back.
            archive.poison(error or StorageError(OSError(), "truncate", None))
        if cancelled is not None:
            raise cancelled
        if clean:
            outcome.unwrap()
        elif error is not None:
            archive.warn(f"could not cut off an abandoned append: {error}")
        if failure is not None:
            raise failure

    async def _queue(self, behind: WriteBehind) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        await behind.add(Queued(self._new, data, self._written))
        if self._new.durable:
            await behind.flush()

    def _written(self, entry: ArchiveEntry) -> None:
        self.entry = entry


class Appending:
    """What `Archive.append()` returns: ``async with`` gives the writer."""

    __slots__ = ("_archive", "_context", "_new", "_writer")

    def __init__(self, archive: OpenArchive, new: NewEntry) -> None:
        self._archive = archive
        self._new = new
        self._writer: EntryWriter | None = None
        self._context: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> EntryWriter:
        archive = self._archive
        archive.writable("append")
        context = archive.one_entry_at_a_time()
        await context.__aenter__()
        try:
            io = archive.writable("append")
            writer = EntryWriter(archive, io, self._new)
            if archive.behind is None:
                writer.begin(*(await archive.begin_append(io)))
            self._writer = writer
        except BaseException:
            await context.__aexit__(None, None, None)
            raise
        self._context = context
        return self._writer

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer = self._writer
        context = self._context
        assert writer is not None
        assert context is not None
        try:
            await writer._end(exc is None)
            if exc is None:
                await self._archive.publish_settled()
        finally:
            await context.__aexit__(exc_type, exc, tb)
