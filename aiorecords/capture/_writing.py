"""The write path of an open capture file: adding records, flushing blocks.

Records go into the sans-IO writer (`capture._writer`) in memory. When
enough full blocks wait, or at a commit, the writer hands out a flush job,
which runs in one worker-thread hop (`capture._threads.run_flush`):
compression, the page writes, and for a commit the two-phase master node
swap. The states this moves through (WRITING, FLUSHING, FAILED) are those of
`capture._state`.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Iterable, Sequence
from typing import Any, Final

from .. import _io, _watch
from .._scheduling import RECORDS_PER_TURN, let_others_run
from ..errors import WriterFailedError
from ._opened import OpenFile
from ._state import FileState, State
from ._threads import MasterSlots, run_flush
from ._writer import LARGE_RECORD, CaptureWriter, ReadView, fast_capture_add

__all__ = ["Writes"]

#: Records (or their bytes) another task may add while a flush is in its
#: worker thread before it waits for the flush to end.
_HELD_RECORDS: Final = 4096
_HELD_BYTES: Final = 4 * 1024 * 1024


class Writes:
    """The write path of one file open for writing."""

    def __init__(
        self, opened: OpenFile, state: FileState, writer: CaptureWriter
    ) -> None:
        self._opened = opened
        self._settings = opened.settings
        self._state = state
        self.writer = writer
        """The sans-IO writer."""
        self.fast: CaptureWriter | None = writer
        """The writer while a record may be added in memory at once (state
        WRITING); None otherwise. The fast path of add_record() checks only
        this."""
        self.next_turn = writer.count + RECORDS_PER_TURN
        """The record count at which add_record() next lets others run."""
        self.lock = asyncio.Lock()
        """Held by whoever flushes, sets the metadata, or commits."""
        self._slots = MasterSlots()  # what this writer wrote to each slot

    def check(self, action: str) -> CaptureWriter:
        """The writer, unless the file is closing or an I/O error failed it."""
        self._opened.check(action)
        if self._state.state is State.FAILED:
            failure = self._state.failure
            raise WriterFailedError(
                f"cannot {action} {self._settings.file_name!r}: an earlier I/O "
                f"error ({failure}) left the file's state unknown; close and "
                "reopen it"
            ) from failure
        return self.writer

    def encode(self, record: str | bytes | bytearray | memoryview) -> bytes:
        """The bytes stored for ``record``."""
        if isinstance(record, str):
            return record.encode(self._settings.store_encoding)
        if isinstance(record, (bytes, bytearray, memoryview)):
            return bytes(record)
        raise TypeError(f"a record is str or bytes, not {type(record).__name__}")

    async def encoded(self, record: str | bytes | bytearray | memoryview) -> bytes:
        """`encode()`, in a worker thread for a large record (encoding or
        copying a megabyte or more on the event loop would stall it)."""
        if is_large(record):
            return await _io.offload(self.encode_large, record)
        return self.encode(record)

    async def encoded_all(
        self, records: Iterable[str | bytes | bytearray | memoryview]
    ) -> list[bytes]:
        """`encode()` of each, in one worker-thread hop if any is large."""
        taken = list(records)
        if any(is_large(record) for record in taken):
            return await _io.offload(lambda: [self.encode_large(r) for r in taken])
        return [self.encode(record) for record in taken]

    def encode_large(self, record: str | bytes | bytearray | memoryview) -> bytes:
        """`encode()`, for a worker thread: a large text in pieces of about
        a megabyte and a large buffer in one copy without the GIL (with the
        extension), so that the thread never holds the interpreter for long
        (the event loop waits for it meanwhile)."""
        if not is_large(record):
            return self.encode(record)
        if isinstance(record, str):
            encoder = codecs.getincrementalencoder(self._settings.store_encoding)()
            step = max(LARGE_RECORD, -(-len(record) // 63))
            pieces = [
                encoder.encode(record[at : at + step])
                for at in range(0, len(record), step)
            ]
            pieces.append(encoder.encode("", True))
            return b"".join(pieces)
        if isinstance(record, memoryview) and not record.c_contiguous:
            return bytes(record)
        return b"".join((record,))

    async def added(self, count: int) -> int:
        """After the fast path added a record: let others run, or flush."""
        if count:
            return await self._let_others_run(count)
        count = self.writer.count
        async with self.lock:
            await self.flush(commit=False)
        return count

    async def add_slowly(self, record: str | bytes | bytearray | memoryview) -> int:
        """Add a record outside the fast path (another type, or a flush out)."""
        self.check("add a record to")
        data = await self.encoded(record)
        writer = self.check("add a record to")
        count = writer.add_record(data)
        if not count:
            return await self.added(0)
        held, held_bytes = writer.held
        if held >= _HELD_RECORDS or held_bytes >= _HELD_BYTES:
            # A task adding faster than the flush writes waits for it
            # (memory stays bounded; the worker gets the GIL it needs).
            async with self.lock:
                pass
            self.next_turn = count + RECORDS_PER_TURN
            return count
        if count < self.next_turn:
            return count
        return await self._let_others_run(count)

    async def add_records(
        self, records: Iterable[str | bytes | bytearray | memoryview]
    ) -> int:
        """Add ``records`` in order, as add_record() would each; the record
        count after them. One call for all: the checks add_record() makes on
        every call are made here only after a wait. A list or tuple goes in
        runs through the compiled kernel where it is built."""
        count = self.check("add records to").count
        if isinstance(records, (list, tuple)) and fast_capture_add is not None:
            return await self._add_runs(records, count)
        encoding = self._settings.store_encoding
        opened = self._opened
        for record in records:
            writer = self.fast
            kind = type(record)
            if (
                writer is None
                or not opened.live
                or (kind is not bytes and kind is not str)
                or (kind is str and len(record) >= LARGE_RECORD)
            ):
                # A flush is out, the file is closing or failed, or another
                # type: the general path (which raises where it must).
                count = await self.add_slowly(record)
                continue
            if kind is str:
                record = record.encode(encoding)  # type: ignore[union-attr]
            count = writer.add_record(record)  # type: ignore[arg-type]
            if not count or count >= self.next_turn:
                count = await self.added(count)
        return count

    async def _add_runs(self, records: Sequence[Any], count: int) -> int:
        """A sequence, through the kernel: a run up to the next turn (or
        the next flush) per call."""
        text = codecs.lookup(self._settings.store_encoding).name == "utf-8"
        index = 0
        while index < len(records):
            writer = self.fast
            if writer is not None and self._opened.live:
                stop = index + max(1, self.next_turn - writer.count)
                reached, due = writer.add_many(records, index, stop, text, LARGE_RECORD)
                if reached > index:
                    index = reached
                    count = writer.count
                    if due or count >= self.next_turn:
                        count = await self.added(0 if due else count)
                    continue
            # A flush is out, the file is closing or failed, or a record
            # the kernel leaves to Python: the general path.
            count = await self.add_slowly(records[index])
            index += 1
        return count

    async def _let_others_run(self, count: int) -> int:
        """Pause a task that keeps adding records without waiting (small
        records fill a flush only every few thousand), so that other tasks,
        and the end of a flush in a worker thread, get the loop."""
        self.next_turn = count + RECORDS_PER_TURN
        await let_others_run()
        return count

    async def set_metadata(self, data: bytes | None) -> None:
        """Set the metadata the next commit commits."""
        async with self.lock:
            writer = self.check("set the metadata of")
            if writer.set_metadata(data):
                await self.flush(commit=False)

    async def current_view(self) -> ReadView:
        """Everything added, for reading back (waiting for a flush under
        way, whose blocks are in flight)."""
        if self.lock.locked():
            async with self.lock:
                return self.check("read").read_view()
        return self.writer.read_view()

    async def flush(self, *, commit: bool) -> None:
        """Place waiting blocks (and, for a commit, write the master node) in
        one worker-thread hop.

        Call with the lock held. A cancellation that arrives while the
        worker runs is raised once its outcome is recorded.
        """
        writer = self.writer
        if not commit and not writer.flush_due:
            return  # another task flushed while this one waited
        opened = self._opened
        opened.check("write")
        job = writer.begin_flush(commit=commit)
        self._state.move(State.FLUSHING)
        self.fast = None
        try:
            with opened.in_flight.held():
                outcome, cancelled = await _io.run_to_completion(
                    run_flush,
                    opened.io,
                    job,
                    self._settings.durable,
                    writer.data_dirty,
                    self._settings.use_os_file_locking,
                    self._slots,
                )
            result = outcome.unwrap()
            writer.finish_flush(result)
        except BaseException as error:
            # What reached the file is unknown (Rule 3 of capture._state).
            writer.abandon_flush()
            if self._state.state is State.FLUSHING:
                self._state.move(State.FAILED, error)
            raise
        if self._state.state is State.FLUSHING:  # not closed meanwhile
            self._state.move(State.WRITING)
            self.fast = writer
        if result.placed:
            # Keep only the newest block: the one a writer reading back
            # what it just wrote needs, without filling the cache.
            newest = max(result.placed)
            opened.keep({newest: result.placed[newest]})
        if result.master is not None:
            opened.master = result.master
            _watch.notify(opened.path_key)
        if cancelled is not None:
            raise cancelled


def is_large(record: object) -> bool:
    """True for a record that is not `bytes` and whose conversion would copy
    a megabyte or more (a `bytes` record is stored without a copy)."""
    kind = type(record)
    if kind is bytes:
        return False
    if isinstance(record, memoryview):
        return record.nbytes >= LARGE_RECORD
    if isinstance(record, (str, bytearray)):
        return len(record) >= LARGE_RECORD
    return False
