"""An open archive: its storage, its listing and the locks that order it.

[`OpenArchive`][aiorecords.archive._opened.OpenArchive] is what the
`Archive` facade and the entry streams (`archive._entries`) share: the one
holder of the descriptor (every thread hop that uses it is counted, and
closing waits for them), the cached listing, and the steps of an append.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

from .. import _io, _ranges
from .._lifetime import InFlight
from .._scheduling import let_others_run
from .._skipped import SkippedRegion
from .._wants import Read, Steps, answer_reads
from .._watch import Backoff
from ..errors import (
    ArchiveLocked,
    ArchiveReadOnly,
    ClosedError,
    CorruptArchiveError,
    StorageError,
    WriterFailedError,
)
from . import _files as files
from ._behind import Runner, WriteBehind
from ._format import CURRENT, FILE_HEADER_SIZE, ArchiveEntry, ElementLayout
from ._publish import Publisher
from ._walk import Listing, extend_listing, find_back

__all__ = ["Mode", "OpenArchive"]

logger = logging.getLogger("aiorecords")

T = TypeVar("T")

Mode = Literal["rdonly", "rdwr", "rdwr_exclusive"]

#: Entries a task may append or read without waiting before it lets others
#: run: each costs tens of microseconds, so this is about a millisecond.
ENTRIES_PER_TURN: Final = 32

# Waiting for another process's lock: the first and the longest pause.
_FIRST_WAIT: Final = 0.001
_LAST_WAIT: Final = 0.05


class OpenArchive:
    """The state of one open archive, and its blocking steps' drivers."""

    def __init__(
        self,
        storage: files.Storage,
        *,
        path: str | None,
        mode: Mode,
        wait: bool,
    ) -> None:
        self.path = path
        self.mode: Mode = mode
        self.wait = wait
        self.storage: files.Storage | None = storage
        """None from the moment close() begins: no new call may start."""
        # A file's layout is known once its header is read (prepare()).
        self.listing = Listing(
            storage.layout if isinstance(storage, files.MemoryArchive) else CURRENT
        )
        # True once the listing covers every byte and nothing but this object
        # can add any (an archive in memory, or one open rdwr_exclusive).
        self._settled = False
        # Appends this object has made: a listing read while one completed
        # may lack it, and must not be taken as settled.
        self._appends = 0
        self._end = FILE_HEADER_SIZE  # where a rdwr_exclusive append writes
        self._listing_lock = asyncio.Lock()
        self._entry_lock = asyncio.Lock()
        self._entry_owner: asyncio.Task[Any] | None = None
        self._reported: set[SkippedRegion] = set()
        self._failed: BaseException | None = None
        self._in_flight = InFlight()
        self.publisher: Publisher | None = None
        """For an archive written to object storage: what streams the
        local file it is built in to the new object."""
        self._without_a_turn = 0  # entries handled since others last ran
        self.behind: WriteBehind | None = None
        """The queue of small entries, with write-behind (else None)."""

    def __repr__(self) -> str:
        where = repr(self.path) if self.path is not None else "in memory"
        state = "closed" if self.storage is None else self.mode
        return f"<Archive {where} {state}>"

    @property
    def closed(self) -> bool:
        """True once close() has begun."""
        return self.storage is None

    @property
    def name(self) -> str:
        """The path, or a description of an archive in memory."""
        return self.path if self.path is not None else "archive in memory"

    async def prepare(self) -> None:
        """Check (or, for an empty file, write) the header; take the owner
        lock and find the end for ``rdwr_exclusive``."""
        storage = self.live("open")
        if isinstance(storage, files.RemoteArchive):
            try:
                self.listing = Listing(await storage.layout())
            except CorruptArchiveError as error:
                raise self.named(error) from None
            return
        assert isinstance(storage, _io.FileIO)
        backoff = Backoff(_FIRST_WAIT, _LAST_WAIT)
        if self.mode == "rdwr_exclusive":
            while not await self.offload(files.take_owner_lock, storage):
                if not self.wait:
                    raise ArchiveLocked(f"{self.name} is open in another writer")
                await backoff.sleep()
        while (
            layout := await self.offload(self.checked(self.layout_of), storage)
        ) is None:
            await backoff.sleep()  # another writer is giving it its header
        self.listing = Listing(layout)
        if self.mode == "rdwr_exclusive":
            # No one else appends while this object is open: find the end
            # now (cutting off a torn tail) and keep it.
            while True:
                end = await self.offload(
                    self.checked(files.begin_append),
                    storage,
                    FILE_HEADER_SIZE,
                    False,
                    layout,
                )
                if isinstance(end, int):
                    break
                await backoff.sleep()
            await self.offload(files.end_append, storage, False)
            self._end = end

    def layout_of(self, io: _io.FileIO) -> ElementLayout | None:
        # In a worker thread: a file someone left empty gets its header.
        # None: another writer is giving it one.
        layout = files.check_header(io)
        if layout is not None:
            return layout
        if self.mode == "rdonly":
            raise CorruptArchiveError("the file is empty", offset=0)
        return files.check_header(io) if files.initialize(io) else None

    def live(self, action: str) -> files.Storage:
        """The storage, unless close() has begun (then `ClosedError`)."""
        storage = self.storage
        if storage is None:
            raise ClosedError(f"cannot {action}: {self!r} is closed")
        return storage

    def writable(self, action: str) -> _io.FileIO:
        """The file, if this archive may append (not read-only, not failed)."""
        storage = self.live(action)
        if not isinstance(storage, _io.FileIO) or self.mode == "rdonly":
            raise ArchiveReadOnly(f"cannot {action}: {self!r} is read-only")
        if self._failed is not None:
            raise WriterFailedError(
                f"cannot {action}: an earlier I/O error ({self._failed}) left "
                f"{self.path!r} in an unknown state; close and reopen it"
            ) from self._failed
        return storage

    async def offload(self, function: Callable[..., T], /, *args: Any) -> T:
        """Run a blocking step in a worker thread; close() waits for it."""
        outcome, cancelled = await self.run(function, *args)
        if cancelled is not None:
            raise cancelled
        return outcome.unwrap()

    def checked(self, function: Callable[..., T]) -> Callable[..., T]:
        """``function``, its format errors naming this archive's file."""

        @functools.wraps(function)
        def checked(*args: Any) -> T:
            try:
                return function(*args)
            except CorruptArchiveError as error:
                raise self.named(error) from None

        return checked

    async def answer(self, walk: Callable[[int], Steps[Read, T]]) -> T:
        """Run ``walk(size)``, a walk of the core over this archive's
        ``size`` bytes: in a worker thread over a file (the size taken
        there too: after close() begins no call reaches the descriptor);
        over a remote object in hops while the ranges held serve it, the
        others fetched on the loop. Its format errors name this archive's
        file."""
        storage = self.live("read")
        if isinstance(storage, files.RemoteArchive):
            try:
                return await _ranges.answer_reads_held(
                    walk(storage.size()), storage.ranges, self.offload
                )
            except CorruptArchiveError as error:
                raise self.named(error) from None
        return await self.offload(self.checked(_walk_file), walk, storage)

    def named(self, error: CorruptArchiveError) -> CorruptArchiveError:
        """``error``, naming this archive's file if it does not yet."""
        if error.path is not None or self.path is None:
            return error
        return CorruptArchiveError(error.reason, path=self.path, offset=error.offset)

    def one_entry_at_a_time(self) -> contextlib.AbstractAsyncContextManager[None]:
        """An ``async with`` block in which this task alone appends or
        reads an entry of this object."""
        return _OneEntry(self)

    async def take_entry_lock(self) -> None:
        """Wait for the entry lock (see `one_entry_at_a_time()`)."""
        task = asyncio.current_task()
        if task is not None and self._entry_owner is task:
            raise RuntimeError(
                "this task is already appending or reading an entry of this "
                "archive: finish that block first (one entry at a time)"
            )
        await self._entry_lock.acquire()
        self._entry_owner = task

    def release_entry_lock(self) -> None:
        """Undo `take_entry_lock()`."""
        self._entry_owner = None
        self._entry_lock.release()

    async def current_listing(self) -> Listing:
        """The listing of the archive as it is now (read from where the
        cached one ends, unless settled); damage is logged once."""
        storage = self.live("list the entries")
        await self.flush_behind()
        if self._settled:
            return self.listing
        async with self._listing_lock:
            appends = self._appends
            known = self.listing
            listing = await self.answer(lambda size: extend_listing(size, known))
            self.listing = listing
            self._settled = appends == self._appends and (
                isinstance(storage, (files.MemoryArchive, files.RemoteArchive))
                or self.mode == "rdwr_exclusive"
            )
        for damage in listing.damage:
            if damage.region not in self._reported:
                self._reported.add(damage.region)
                region = damage.region
                logger.warning(
                    "%s: damaged archive bytes %d to %d: %s",
                    self.name,
                    region.start,
                    region.end,
                    region.reason,
                )
        return listing

    def raise_damage(self, listing: Listing) -> None:
        """Raise `CorruptArchiveError` for the newest damage of ``listing``."""
        if listing.damage:
            newest = listing.damage[0]
            raise CorruptArchiveError(
                f"{newest.region.reason} (older entries can be listed with "
                f"contents(recover=True))",
                path=self.path,
                offset=newest.offset,
            )

    async def begin_append(
        self, io: _io.FileIO, run: Runner | None = None
    ) -> tuple[int, bool | None]:
        """Where the new element goes, and which append locks were taken
        (for `end_append()`; None: none). ``run`` runs the blocking steps
        (by default `run()`; the close passes a plain hop)."""
        if self.mode == "rdwr_exclusive":
            return self._end, None
        run = self.run if run is None else run
        backoff = Backoff(_FIRST_WAIT, _LAST_WAIT)
        while True:
            outcome, cancelled = await run(
                self.checked(files.begin_append),
                io,
                self.listing.end,
                True,
                self.listing.layout,
            )
            where = outcome.unwrap() if cancelled is None else outcome.value
            if cancelled is not None:
                if isinstance(where, int):  # the locks were taken: give them back
                    await run(files.end_append, io, True)
                raise cancelled
            assert where is not None
            if isinstance(where, int):
                return where, True
            # Another rdwr append is brief: wait for it. A rdwr_exclusive
            # writer may keep the archive for a long time.
            if where == "owner" and not self.wait:
                raise ArchiveLocked(f"{self.name} is open in a rdwr_exclusive writer")
            await backoff.sleep()

    def appended(self, entry: ArchiveEntry) -> None:
        """Note an element this object has just appended."""
        if self.mode == "rdwr_exclusive":
            self._end = entry.end
        self._appends += 1
        listing = self.listing
        # If the listing was current up to where the element went, it still
        # is with the element noted; unless a worker thread is reading it.
        # Otherwise the next listing reads the file from where it stopped.
        if listing.end == entry.offset and not self._listing_lock.locked():
            listing.add(entry)
        else:
            self._settled = False

    async def publish_settled(self) -> None:
        """Send to object storage the parts that the newest entry settled
        (an archive being written there; else nothing)."""
        publisher = self.publisher
        storage = self.storage
        if publisher is None or self._failed is not None:
            return
        if not isinstance(storage, _io.FileIO):
            return  # closing: the close sends the entry with the rest
        try:
            await publisher.advance(
                functools.partial(self.offload, storage.pread), self._end
            )
        except ClosedError:
            return  # as above: closed while a part was sent
        except StorageError as error:
            self.poison(error)
            raise

    async def cooperate(self) -> None:
        """Count one entry handled without waiting (queued, or read from
        the page cache); let other tasks run after every few dozen, so that
        a task appending or reading many never holds the loop long."""
        self._without_a_turn += 1
        if self._without_a_turn >= ENTRIES_PER_TURN:
            self._without_a_turn = 0
            await let_others_run()

    @property
    def failed(self) -> BaseException | None:
        """The I/O error that left the file in an unknown state, if any."""
        return self._failed

    async def flush_behind(self) -> None:
        """Write the entries write-behind has queued (if any): what this
        object lists and finds includes every entry it has appended."""
        if self.behind is not None and self.behind.queued:
            await self.behind.flush()

    def poison(self, error: BaseException) -> None:
        """Refuse further appends: the file's state after ``error`` is unknown."""
        self._failed = error

    def warn(self, message: str) -> None:
        """Log a warning naming this archive."""
        logger.warning("%s: %s", self.name, message)

    async def run(
        self, function: Callable[..., T], /, *args: Any
    ) -> tuple[_io.Outcome[T], asyncio.CancelledError | None]:
        """Run a step in a worker thread to its end; close() waits for it.

        Refused once close() has begun: the step would reach the descriptor
        while, or after, it is closed (and its number may be reused)."""
        self.live("use the file")
        with self._in_flight.held():
            return await _io.run_to_completion(function, *args)

    async def finish_close(self, storage: files.Storage) -> None:
        """Wait for the work in flight, then close the file (a task of its
        own, awaited through cancellations by ``Archive.close()``)."""
        await self._in_flight.idle()
        if isinstance(storage, _io.FileIO):
            lost = None if self.behind is None else await self.behind.close(storage)
            if lost is not None:
                self.poison(lost)  # nothing is published then
            try:
                if self.publisher is not None:
                    # Nothing else reaches the file now: read it directly.
                    await self.publisher.close(
                        functools.partial(_io.offload, storage.pread),
                        self._end,
                        publish=self._failed is None,
                    )
            finally:
                (await _io.run_to_completion(storage.close))[0].unwrap()
                if self.publisher is not None:
                    await _io.run_to_completion(_io.unlink_quietly, storage.path)
            if lost is not None:
                raise lost
        elif isinstance(storage, files.RemoteArchive):
            await storage.ranges.close()
            await storage.remote.close()

    async def find(self, name: str) -> ArchiveEntry | None:
        """The newest entry named ``name``, or None (see `Archive.find()`)."""
        self.live("find an entry")  # closed: ClosedError
        await self.flush_behind()
        if self._settled:
            listing = self.listing
            # Settled: the listing covers every byte, so this reads nothing.
            found, _ = self.checked(answer_reads)(
                find_back(listing.size, listing, name), _reads_nothing
            )  # type: (ArchiveEntry | None, Listing | None)
        else:
            async with self._listing_lock:
                known = self.listing
                found, grown = await self.answer(
                    lambda size: find_back(size, known, name)
                )
                if grown is not None:
                    self.listing = grown
        return found

    async def refresh(self) -> bool:
        """Look at the object again (an archive on object storage): if it
        changed, forget what was read of it. True if it changed."""
        storage = self.live("refresh")
        if not isinstance(storage, files.RemoteArchive):
            return False
        async with self._listing_lock:
            if not await storage.remote.refresh():
                return False
            storage.ranges.forget()
            self.listing = Listing(self.listing.layout)
            self._settled = False
            self._reported.clear()
        return True


class _OneEntry:
    # A class, not a generator-based context manager: one of these is
    # entered and left for every entry appended or read.
    __slots__ = ("_archive",)

    def __init__(self, archive: OpenArchive) -> None:
        self._archive = archive

    async def __aenter__(self) -> None:
        await self._archive.take_entry_lock()

    async def __aexit__(self, *exc_info: object) -> None:
        self._archive.release_entry_lock()


def _reads_nothing(offset: int, size: int) -> bytes:
    raise AssertionError(f"a settled listing read {size} bytes at {offset}")


def _walk_file(
    walk: Callable[[int], Steps[Read, T]], storage: _io.FileIO | files.MemoryArchive
) -> T:
    # In a worker thread: the file's size, then the walk over its bytes.
    return answer_reads(walk(storage.size()), storage.pread)
