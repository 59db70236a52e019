"""The capture file facade: `CaptureFile`.

The class holds what it was asked for and its state (`capture._state`), and
delegates each concern to a part with one job (`capture._session`): opening
and closing (`capture._opened`), reading with its caches
(`capture._reading`), the write path (`capture._writing`), group commit
with back-pressure (`capture._committing`) and following
(`capture._following`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Generator, Iterable
from typing import Any, Final, Literal, overload

from .._lifetime import CloseOnce
from .._limits import DEFAULT_MAX_RECORD_SIZE
from ..errors import (
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    RecordIndexError,
)
from ._committing import Commits
from ._layout import Layout
from ._opened import (
    Settings,
    check_arguments,
    open_capture,
    storage_of,
)
from ._reading import Record
from ._session import Session
from ._state import FileState, State
from ._writer import LARGE_RECORD
from ._writing import Writes

__all__ = ["CaptureFile", "Record"]

#: Records that append() and append_batch() may have waiting for their
#: commit before further calls wait (back-pressure).
DEFAULT_MAX_PENDING_APPENDS: Final = 10_000


class CaptureFile:
    """A capture file: a transactional, compressed log of records.

    The constructor only records its arguments; the file is opened by
    ``await CaptureFile(...)``, by ``async with CaptureFile(...)``, or by
    [`open()`][aiorecords.CaptureFile.open]. Arguments keep the names,
    defaults and meaning of the CaptureFile API:

    * ``to_write``: open for writing (one writer per file, any number of
      readers in any process);
    * ``initial_metadata``: metadata of a file this object creates;
    * ``force_new_empty_file``: replace any existing file with a new empty one
      (a writer holding the old file makes this fail with
      [`CaptureFileAlreadyOpen`][aiorecords.errors.CaptureFileAlreadyOpen]);
    * ``encoding``: records are returned as ``str`` decoded with it, or as
      ``bytes`` when it is ``None``; ``str`` records are stored encoded with it
      (UTF-8 when it is ``None``);
    * ``use_os_file_locking``: require OS locks (a file system that cannot
      lock is then an error, not tolerated), and lock the master nodes the way
      CaptureFile 1.2.0 does, so that both libraries can share a file
      (aiorecords writers always exclude each other);
    * ``compression_block_size``: bytes gathered before a block is compressed
      (a multiple of 4096).

    aiorecords adds, keyword-only:

    * ``compression``: ``"zstd"`` (default) creates aiorecords' own layout,
      with checksums on every block; ``"zlib"`` creates version 2 files that
      CaptureFile 1.2.0 reads, byte for byte as it writes them. An existing
      file keeps its own layout whatever is asked here.
    * ``durable``: when true (default) [`commit()`][aiorecords.CaptureFile.commit]
      returns only once the commit is on stable storage (``fdatasync`` of the
      data, then of the master node); when false it writes without syncing,
      as CaptureFile 1.2.0 does.
    * ``max_record_size``: the largest record
      [`add_record()`][aiorecords.CaptureFile.add_record] accepts; for
      version 2 files also what bounds the decompression of a block (so a
      damaged or hostile file cannot make the reader allocate more).
    * ``max_pending_appends``: back-pressure for
      [`append()`][aiorecords.CaptureFile.append] and
      [`append_batch()`][aiorecords.CaptureFile.append_batch]: once this many of
      their records wait for a commit, further calls wait until commits make room.
    * ``fs``, ``storage_options``: a file on an fsspec file system (a URL,
      or a path on ``fs``), read-only: see the storage guide.
    * ``discard_damaged_commit``: open for writing a file whose newest
      commit cannot be read (its master node fails its checksum: torn by a
      crash while it was written, or damaged since), which the writer's
      next commit overwrites. Without it such a file opens for reading only
      (at the commit before, see
      [`damaged_commit`][aiorecords.CaptureFile.damaged_commit]), and opening it for
      writing raises [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile]: a
      commit that was acknowledged and later damaged is never destroyed unasked.

    Every method but [`open()`][aiorecords.CaptureFile.open] raises
    [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] on a closed
    object, and every method that writes raises
    [`CaptureFileNotOpenForWrite`][aiorecords.errors.CaptureFileNotOpenForWrite]
    on one open for reading, and
    [`WriterFailedError`][aiorecords.errors.WriterFailedError] once an I/O error
    has failed a flush or commit (close and reopen the file).
    """

    def __init__(
        self,
        file_name: str,
        to_write: bool = False,
        initial_metadata: bytes | None = None,
        force_new_empty_file: bool = False,
        encoding: str | None = "utf_8",
        use_os_file_locking: bool = False,
        compression_block_size: int = 32768,
        *,
        compression: Literal["zstd", "zlib"] = "zstd",
        durable: bool = True,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        max_pending_appends: int = DEFAULT_MAX_PENDING_APPENDS,
        discard_damaged_commit: bool = False,
        fs: Any = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        check_arguments(compression, max_record_size, max_pending_appends)
        file_name, self._storage = storage_of(
            file_name, fs, storage_options, to_write or force_new_empty_file
        )
        # The arguments are kept as attributes of these names, as the
        # CaptureFile API keeps them.
        self.file_name = str(file_name)
        self.to_write = to_write
        self.encoding = encoding
        self.use_os_file_locking = use_os_file_locking
        self.compression = compression
        self.durable = durable
        self.max_record_size = max_record_size
        self.max_pending_appends = max_pending_appends
        self.discard_damaged_commit = discard_damaged_commit
        self._new_layout = Layout(
            compression == "zstd", block_size=compression_block_size
        )
        self._initial_metadata = initial_metadata
        self._create_on_open = force_new_empty_file
        self._state = FileState()
        self._close = CloseOnce()
        self._session: Session | None = None  # the parts, while open
        # What record_count() and damaged_commit say once closed.
        self._when_closed: tuple[int, str | None] = (0, None)

    def __repr__(self) -> str:
        state, count = self._state.state.value, self.record_count()
        return f"<CaptureFile {self.file_name!r} {state}, {count} records>"

    # -- Opening and closing -----------------------------------------

    def __await__(self) -> Generator[Any, None, CaptureFile]:
        """``await CaptureFile(...)`` opens the file and gives the object."""
        return self.__aenter__().__await__()

    async def __aenter__(self) -> CaptureFile:
        """Open the file (unless already open) for the ``async with`` block."""
        if self._state.state is State.CLOSED:
            await self.open(self.to_write)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the file; uncommitted records are discarded."""
        await self.close()

    async def open(self, to_write: bool = False) -> None:
        """Open this object for reading, or for writing if ``to_write``.

        ``to_write`` is this call's, not the constructor's (as in the
        CaptureFile API). The first open creates the file when the
        constructor asked for a new one, or when opening for write a file
        that does not exist. Raises
        [`CaptureFileAlreadyOpen`][aiorecords.errors.CaptureFileAlreadyOpen] if this
        object is open, or if another writer (in this process, or another process) has
        the file open for writing; `FileNotFoundError` if there is no file to read;
        [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile] if the file is
        not a valid capture file.

        Cancellation: the object stays closed and no file is left half made
        (a new file that was already renamed into place stays: it is a valid,
        empty capture file).
        """
        await self._close.wait()  # a close under way ends first
        self._close.reset()
        if self._state.state is not State.CLOSED:
            raise CaptureFileAlreadyOpen(
                f"capture file {self.file_name!r} is already open"
            )
        self._state.move(State.OPENING)
        try:
            opened = await open_capture(
                _settings(self), self, to_write, self._create_on_open
            )
        except BaseException:
            self._state.move(State.CLOSED)
            raise
        self._create_on_open = False
        self.to_write = to_write
        self._session = Session(opened, self._state, to_write, self.max_pending_appends)
        self._state.move(State.WRITING if to_write else State.READING)

    async def close(self) -> None:
        """Close the file. Uncommitted records and metadata are discarded.

        Closing a closed file does nothing; a second ``close()`` while the
        first runs waits for it. Work already in a worker thread is waited
        for before the descriptor is closed: none touches it after.

        Cancellation: the file is closed all the same, and the cancellation
        is raised once it is.
        """
        session = self._session
        if session is None:
            await self._close.wait()
            return
        # From now on no call reaches the descriptor.
        self._when_closed = (session.committed_count(), session.opened.damage)
        self._state.move(State.CLOSING)
        session.opened.live = False
        self._session = None
        await self._close.begin(session.close(self))

    # -- State -------------------------------------------------------

    def _open(self, action: str) -> Session:
        session = self._session
        if session is None:
            raise CaptureFileNotOpen(
                f"cannot {action} {self.file_name!r} because it is not open"
            )
        return session

    def _writing(self, action: str) -> tuple[Writes, Commits]:
        session = self._open(action)
        if session.writes is None or session.commits is None:
            raise CaptureFileNotOpenForWrite(
                f"cannot {action} {self.file_name!r} because it is not open for writing"
            )
        session.writes.check(action)
        return session.writes, session.commits

    @property
    def damaged_commit(self) -> str | None:
        """What is known of a commit newer than the one this file was opened
        (or last refreshed) at that could not be read: its master node fails
        its checksum (torn by a crash while written, or damaged since), or
        the file was cut short of its data. None when the newest commit is
        the one in use. ``aiorecords verify`` reports it."""
        session = self._session
        return self._when_closed[1] if session is None else session.opened.damage

    def record_count(self) -> int:
        """Records available: as of the last open or refresh for a reader;
        including uncommitted ones for a writer."""
        session = self._session
        return self._when_closed[0] if session is None else session.record_count()

    def committed_count(self) -> int:
        """Records committed: for a writer, without those added since its
        last commit; for a reader,
        [`record_count()`][aiorecords.CaptureFile.record_count]."""
        session = self._session
        return self._when_closed[0] if session is None else session.committed_count()

    # -- Reading -----------------------------------------------------

    async def refresh(self) -> None:
        """Catch up with the commits made since the file was opened or
        refreshed (a writer is always current: for it this does nothing).

        Cancellation: the object keeps the state it had before the call.
        """
        session = self._open("refresh")
        if session.writes is None:
            await session.opened.refresh()

    async def record_at(self, record_number: int) -> Record:
        """The record numbered ``record_number`` (the first record is 1):
        ``str`` decoded with the file's encoding, or ``bytes`` when the
        encoding is ``None``. Raises `IndexError` (as
        [`RecordIndexError`][aiorecords.errors.RecordIndexError]) for a number before
        the first or after the last record.

        Blocks in memory or in the block cache are used on the event loop;
        others are read and decompressed in one worker-thread hop.

        Cancellation: nothing changes; a read already in a worker thread
        finishes there (and its blocks are not cached).
        """
        return await self._open("get a record from").record_at(record_number)

    def record_generator(
        self, starting_record_number: int = 1
    ) -> AsyncIterator[Record]:
        """An async iterator over the records from ``starting_record_number``
        to the last that existed when it was created (see
        [`refresh()`][aiorecords.CaptureFile.refresh]), read in batches, one
        worker-thread hop per batch. Raises `IndexError` if the start is
        below 1.

        Cancellation: cancelling the iterating task ends the iteration; a
        batch read already in a worker thread finishes there first.
        """
        session = self._open("iterate over the records of")
        return session.records_from(starting_record_number)

    def __aiter__(self) -> AsyncIterator[Record]:
        """``async for record in capture_file``: every record, from the first."""
        return self.record_generator()

    @overload
    def __getitem__(self, key: int) -> Awaitable[Record]: ...

    @overload
    def __getitem__(self, key: slice) -> Awaitable[list[Record]]: ...

    def __getitem__(
        self, key: int | slice
    ) -> Awaitable[Record] | Awaitable[list[Record]]:
        """``await cf[n]`` is [`record_at()`][aiorecords.CaptureFile.record_at];
        ``await cf[a:b]`` a list.

        Slices count record numbers (from 1): ``cf[2:4]`` is records 2 and 3;
        a missing start means 1, a missing or too large stop the end. A
        contiguous slice is streamed, any other step reads record by record.
        """
        if isinstance(key, slice):
            return self._slice(key)
        return self.record_at(key)

    async def _slice(self, key: slice) -> list[Record]:
        return await self._open("get records from").slice(key)

    async def get_metadata(self) -> bytes | None:
        """The file's metadata, or None if it has none (a writer sees what it
        set since the last commit).

        Cancellation: nothing changes.
        """
        return await self._open("get the metadata of").reads.metadata()

    # -- Writing -----------------------------------------------------

    async def add_record(self, record: str | bytes | bytearray | memoryview) -> int:
        """Add ``record`` (not yet committed) and return the new record count.

        A ``str`` is stored encoded with the file's encoding. This is
        in-memory work, except when enough full blocks wait: they are then
        compressed and written in one worker-thread hop (another task adding
        meanwhile waits for it once 4,096 records or 4 MiB are held). A task
        that keeps adding lets others run every 500 records. Raises
        `ValueError` for a record over ``max_record_size``. A record of
        1 MiB or more is never copied on the event loop (a `str`,
        `bytearray` or `memoryview` one is converted in a worker thread).

        Cancellation: the record is added once the call starts (a large one
        to convert, once converted) and the next commit includes it; a
        flush already in a worker thread is finished first.
        """
        session = self._session
        writes = None if session is None else session.writes
        writer = None if writes is None else writes.fast
        if writer is not None:
            kind = type(record)
            if kind is str and len(record) < LARGE_RECORD:
                count = writer.add_record(record.encode(self.encoding or "utf_8"))  # type: ignore[union-attr]
            elif kind is bytes:
                count = writer.add_record(record)  # type: ignore[arg-type]
            else:
                return await self._writing("add a record to")[0].add_slowly(record)
            if count and count < writes.next_turn:  # type: ignore[union-attr]
                return count
            return await writes.added(count)  # type: ignore[union-attr]
        return await self._writing("add a record to")[0].add_slowly(record)

    async def add_records(
        self, records: Iterable[str | bytes | bytearray | memoryview]
    ) -> int:
        """Add ``records`` in order, as that many
        [`add_record()`][aiorecords.CaptureFile.add_record] calls would, with
        less work per record; return the new record count.

        Cancellation: the records taken from the iterable so far are added;
        the rest are not taken. A flush already in a worker thread finishes.
        """
        return await self._writing("add records to")[0].add_records(records)

    async def set_metadata(self, new_metadata: bytes | None) -> None:
        """Set the file's metadata (``None`` clears it), committed with the
        next [`commit()`][aiorecords.CaptureFile.commit]: atomically with the
        records added before it, so it can record where processing stopped.

        Cancellation: the metadata is set as soon as the call starts.
        """
        writes, _ = self._writing("set the metadata of")
        await writes.set_metadata(None if new_metadata is None else bytes(new_metadata))

    async def commit(self) -> None:
        """Commit the records and metadata added since the last commit.

        Until then they are invisible to other readers and are lost on close.
        Either all of them are committed or none is. With ``durable=True``
        the data pages are synced, then the alternate master node is written
        and synced, so once this returns the commit survives a power cut.
        Raises [`StorageError`][aiorecords.errors.StorageError] if the OS fails a
        write or sync (the object then refuses further writes with
        [`WriterFailedError`][aiorecords.errors.WriterFailedError]).

        Commits by concurrent tasks coalesce (group commit): a caller that
        finds no commit under way starts one at once; callers that come while
        one is being written all join the next, which covers everything added
        before any of them called: many callers, one pair of syncs.

        Cancellation: a caller cancelled while waiting for its turn stops
        waiting, and if no other caller waits, that commit does not happen
        (the records stay pending). Once its commit has started, it runs to
        its end (committed, or failed as above) and the cancellation is
        raised afterwards.
        """
        await self._writing("commit")[1].commit()

    async def append(
        self,
        record: str | bytes | bytearray | memoryview,
        *,
        expected_count: int | None = None,
    ) -> int:
        """Add ``record`` and wait until it is committed; return its number.

        The commit is shared with every other task appending or committing
        meanwhile (see [`commit()`][aiorecords.CaptureFile.commit]), so many
        concurrent appends cost one commit, and with ``durable=True`` (the
        default) this returns only once the record survives a power cut. With
        ``expected_count=n`` the record is added only if the file held exactly
        ``n`` records just before it (committed or not); otherwise
        [`ConflictError`][aiorecords.errors.ConflictError] is raised and nothing
        is added: optimistic concurrency, as event stores use. Once
        ``max_pending_appends`` records wait for a commit, this waits for room
        first.

        Cancellation: while converting a large record or waiting for room,
        nothing is added. Once added, the record stays added (the next
        commit includes it): the cancellation stops the wait for its commit.
        """
        return await self._writing("append to")[1].append(record, expected_count)

    async def append_batch(
        self,
        records: Iterable[str | bytes | bytearray | memoryview],
        *,
        expected_count: int | None = None,
    ) -> int:
        """Add ``records`` together and wait until they are committed; return
        the number of the last one (the record count just after them).

        They become visible together or not at all, and no other task's
        records land between them. ``expected_count`` and back-pressure are
        as for [`append()`][aiorecords.CaptureFile.append]; a batch larger than
        ``max_pending_appends`` waits until no other appended record is waiting,
        then goes alone.

        Cancellation: as for [`append()`][aiorecords.CaptureFile.append]: before the
        records are added, nothing is; after, they all stay added.
        """
        commits = self._writing("append to")[1]
        return await commits.append_batch(records, expected_count)

    # -- Following ---------------------------------------------------

    def follow(self, start: int = 1) -> AsyncIterator[Record]:
        """Every committed record from number ``start`` on, then each new one
        as it is committed (by this object, another in this process, or
        another process), even for a writer; it never ends by itself.

        Records already there are read in batches; at the end it waits:
        commits in this process wake it at once, and the file is looked at
        for other processes' commits at intervals doubling from 1 ms to
        100 ms. Raises `IndexError` if ``start`` is below 1, and (for a
        reader) [`FileChangedError`][aiorecords.errors.FileChangedError] once
        another file takes the name or the file is cut short of its commits.
        ``close()`` ends the iteration cleanly, at once.

        Cancellation: cancelling the iterating task ends the iteration
        cleanly; a batch read already in a worker thread finishes first.
        """
        session = self._open("follow the records of")
        if start < 1:
            raise RecordIndexError(f"record numbers start at 1, not {start}")
        return session.follow(start - 1)


def _settings(file: CaptureFile) -> Settings:
    """What the parts of ``file`` need of its arguments, as they are now."""
    return Settings(
        file.file_name,
        file.encoding,
        file.use_os_file_locking,
        file.durable,
        file.max_record_size,
        file.discard_damaged_commit,
        file._new_layout,
        file._initial_metadata,
        file._storage,
    )
