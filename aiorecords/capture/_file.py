"""The capture file facade: `CaptureFile`."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar, overload

from .. import _io, _watch
from .._cache import block_cache
from .._lifetime import CloseOnce
from .._scheduling import RECORDS_PER_TURN, let_others_run
from ..errors import (
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    ConflictError,
    CorruptionError,
    FileChangedError,
    InvalidCaptureFile,
    RecordIndexError,
    RecordNotText,
    WriterFailedError,
)
from ._index import node_from_block, read_item, record_coordinate
from ._layout import Layout, MasterNode, MasterNodesInconsistent
from ._threads import (
    BlockReader,
    MasterSlots,
    Stream,
    create_file,
    item_in_thread,
    open_existing,
    read_state,
    record_in_thread,
    run_flush,
)
from ._writer import PLACEHOLDER, CaptureWriter, ReadView

__all__ = ["CaptureFile", "Record"]

Record: TypeAlias = str | bytes
"""A record as a capture file returns it, ``str | bytes``: ``str`` when the
file has an encoding, else ``bytes``."""

T = TypeVar("T")

#: Largest record accepted by default (the format allows up to 4 GiB - 1).
DEFAULT_MAX_RECORD_SIZE: Final = 256 * 1024 * 1024
_FORMAT_MAX_RECORD: Final = 0xFFFFFFFF

# Delays between reads of the master nodes when they look inconsistent, which
# a reader can see while a writer is committing.
_MASTER_RETRY_DELAYS: Final = (0.0, 0.001, 0.01, 0.1, 1.0)

# Records fetched per worker-thread hop while streaming: few at first, so the
# first record comes quickly, then more, but few enough that the worker never
# holds the GIL for long (the event loop waits for it meanwhile).
_FIRST_BATCH: Final = 128
_MAX_BATCH: Final = 4096

#: Records that append() and append_batch() may have waiting for their
#: commit before further calls wait (back-pressure).
DEFAULT_MAX_PENDING_APPENDS: Final = 10_000
#: Records another task adds while a flush is in its worker thread are held
#: in memory; past this many (or bytes) it waits for the flush to end.
_HELD_RECORDS: Final = 4096
_HELD_BYTES: Final = 4 * 1024 * 1024

# follow() looks at the file for commits by other processes at intervals
# doubling from the first to the last while nothing comes (commits by this
# process wake it at once).
_FOLLOW_FIRST_WAIT: Final = 0.001
_FOLLOW_LAST_WAIT: Final = 0.1

# Upper index nodes (those above the leaves) kept per open file. Every lookup
# passes through one node per level, and there are few of them: 1,000,000
# records at fan-out 32 have 1,057.
_MAX_UPPER_NODES: Final = 8192

# Files open for writing in this process, by canonical path. Weak, so that an
# object dropped without close() does not keep its path reserved.
_writers: weakref.WeakValueDictionary[str, CaptureFile] = weakref.WeakValueDictionary()


class _Miss(Exception):
    """A block is not in memory; the lookup must go to a worker thread."""


class CaptureFile:
    """A capture file: a transactional, compressed log of records.

    The constructor only records its arguments; the file is opened by
    ``await CaptureFile(...)``, by ``async with CaptureFile(...)``, or by
    [`open()`][aiorecords.CaptureFile.open]. Arguments keep the names,
    defaults and meaning of the
    CaptureFile API:

    * ``to_write``: open for writing (one writer per file, any number of
      readers in any process);
    * ``initial_metadata``: metadata of a file this object creates;
    * ``force_new_empty_file``: replace any existing file with a new empty one
      (a writer holding the old file makes this fail with
      [`CaptureFileAlreadyOpen`][aiorecords.errors.CaptureFileAlreadyOpen]);
    * ``encoding``: records are returned as ``str`` decoded with it, or as
      ``bytes`` when it is ``None``; ``str`` records are stored encoded with it
      (UTF-8 when it is ``None``);
    * ``use_os_file_locking``: require OS locks, and lock the master nodes the
      way CaptureFile 1.2.0 does, so that both libraries can share a file.
      aiorecords always *tries* to take the writer lock, so two aiorecords
      writers exclude each other even without it; with it, a file system that
      cannot lock is an error instead of being tolerated;
    * ``compression_block_size``: bytes gathered before a block is compressed
      (a multiple of 4096).

    aiorecords adds, keyword-only:

    * ``compression``: ``"zstd"`` (default) creates aiorecords' own layout,
      with checksums on every block; ``"zlib"`` creates version 2 files that
      CaptureFile 1.2.0 reads, byte for byte as it writes them. An existing
      file keeps its own layout whatever is asked here.
    * ``durable``: when true (default) [`commit()`][aiorecords.CaptureFile.commit]
      returns only once the
      commit is on stable storage (``fdatasync`` of the data, then of the
      master node); when false it writes without syncing, as CaptureFile
      1.2.0 does.
    * ``max_record_size``: the largest record
      [`add_record()`][aiorecords.CaptureFile.add_record] accepts; for
      version 2 files also what bounds the decompression of a block (so a
      damaged or hostile file cannot make the reader allocate more).
    * ``max_pending_appends``: back-pressure for
      [`append()`][aiorecords.CaptureFile.append] and
      [`append_batch()`][aiorecords.CaptureFile.append_batch]: once this many of their
      records wait for a commit, further calls wait until commits make room.
    * ``discard_damaged_commit``: open for writing a file whose newest
      commit cannot be read (its master node fails its checksum: torn by a
      crash while it was written, or damaged since), which the writer's
      next commit overwrites. Without it such a file opens for reading only
      (at the commit before, see
      [`damaged_commit`][aiorecords.CaptureFile.damaged_commit]), and opening it for
      writing raises [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile]: a
      commit that was acknowledged and later damaged is never destroyed unasked.
    """

    file_name: str
    """The path given to the constructor."""
    to_write: bool
    """True when open (or to be opened) for writing."""
    encoding: str | None
    """The encoding records are decoded with, or None for bytes."""
    use_os_file_locking: bool
    """Whether OS locks are required and master nodes locked."""
    compression: Literal["zstd", "zlib"]
    """The layout a new file gets: aiorecords' zstd one, or version 2 (zlib)."""
    durable: bool
    """Whether a commit waits for the disk (``fdatasync``)."""
    max_record_size: int
    """The largest record accepted, in bytes."""
    max_pending_appends: int
    """How many records [`append()`][aiorecords.CaptureFile.append] and
    [`append_batch()`][aiorecords.CaptureFile.append_batch] may have waiting for their
    commit before further calls wait."""
    discard_damaged_commit: bool
    """Whether a writer may open a file whose newest commit is unreadable
    (and overwrite it)."""

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
    ) -> None:
        if compression not in ("zstd", "zlib"):
            raise ValueError(
                f"compression must be 'zstd' or 'zlib', not {compression!r}"
            )
        if not 0 < max_record_size <= _FORMAT_MAX_RECORD:
            raise ValueError(f"max_record_size must be in 1..{_FORMAT_MAX_RECORD}")
        if max_pending_appends < 1:
            raise ValueError("max_pending_appends must be at least 1")
        self.file_name = str(file_name)
        self.to_write = to_write
        self.encoding = encoding
        self.use_os_file_locking = use_os_file_locking
        self.compression = compression
        self.durable = durable
        self.max_record_size = max_record_size
        self.max_pending_appends = max_pending_appends
        self.discard_damaged_commit = discard_damaged_commit
        self._damage: str | None = None
        self._new_layout = Layout(
            compression == "zstd", block_size=compression_block_size
        )
        self._initial_metadata = initial_metadata
        self._create_on_open = force_new_empty_file
        self._store_encoding = encoding or "utf_8"

        self._io: _io.FileIO | None = None
        self._layout = self._new_layout
        self._master: MasterNode | None = None  # the last commit seen or made
        self._view: ReadView | None = None  # what a reader reads
        self._writer: CaptureWriter | None = None
        # The writer while a record may be added in memory at once: open for
        # write, not failed, no flush under way. The fast path of
        # add_record() checks only this.
        self._fast: CaptureWriter | None = None
        # The record count at which add_record() next lets others run.
        self._next_turn = 0
        self._failed: BaseException | None = None
        self._namespace = 0
        self._metadata_cache: tuple[tuple[int, int], bytes] | None = None
        self._upper_nodes: dict[tuple[int, int], bytes] = {}
        self._opening = False
        self._close = CloseOnce()
        self._busy = 0
        self._idle: asyncio.Event | None = None
        # The waits of this object's followers: close() wakes them to end.
        self._followers: set[_watch.Watch] = set()
        self._append_lock = asyncio.Lock()
        self._path_key = ""  # the canonical path, set when opened
        # Group commit: callers of commit() waiting for the next commit, and
        # the task that runs commits one after another while any wait.
        self._next_commit: list[_CommitTicket] = []
        self._committer: asyncio.Task[None] | None = None
        # Back-pressure: records of append()/append_batch() not yet committed.
        self._appends_waiting = 0
        self._room: list[asyncio.Future[None]] = []
        # While a flush is in its worker thread the writer takes no adds:
        # records added meanwhile wait here, and join it when it is done.
        self._flushing = False
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._slots = MasterSlots()  # what this writer wrote to each slot

    def __repr__(self) -> str:
        if self._io is None:
            state = "closed"
        else:
            state = "open for writing" if self._writer else "open for reading"
        return (
            f"<CaptureFile {self.file_name!r} {state}, {self.record_count()} records>"
        )

    # ------------------------------------------------------------------
    # Opening and closing

    def __await__(self) -> Generator[Any, None, CaptureFile]:
        """``await CaptureFile(...)`` opens the file and gives the object."""
        return self._open_if_closed().__await__()

    async def _open_if_closed(self) -> CaptureFile:
        if self._io is None:
            await self.open(self.to_write)
        return self

    async def __aenter__(self) -> CaptureFile:
        """Open the file (unless already open) for the ``async with`` block."""
        return await self._open_if_closed()

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the file; uncommitted records are discarded."""
        await self.close()

    async def open(self, to_write: bool = False) -> None:
        """Open this object for reading, or for writing if ``to_write``.

        ``to_write`` is this call's, not the constructor's (as in the
        CaptureFile API): a writer closed and opened again needs
        ``open(to_write=True)``.

        The first open creates the file when the constructor asked for a new
        one, or when opening for write a file that does not exist. Raises
        [`CaptureFileAlreadyOpen`][aiorecords.errors.CaptureFileAlreadyOpen] if this
        object is open, or if another writer (in this process, or another process) has
        the file open for writing; `FileNotFoundError` if there is no
        file to read; [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile] if
        the file is not a valid capture file.

        Cancellation: the object stays closed and no file is left half made
        (a new file that was already renamed into place stays: it is a valid,
        empty capture file).
        """
        await self._close.wait()  # a close under way ends first
        self._close.reset()
        if self._io is not None or self._opening:
            raise CaptureFileAlreadyOpen(
                f"capture file {self.file_name!r} is already open"
            )
        path = _io.canonical_path(self.file_name)
        if (to_write or self._create_on_open) and _writers.get(path) is not None:
            raise CaptureFileAlreadyOpen(
                f"capture file {self.file_name!r} is already open for write"
            )
        if to_write:
            _writers[path] = self
        self._opening = True
        try:
            if self._create_on_open or (to_write and not _io.is_file(path)):
                io, layout, master, size = await _offload_owning(
                    create_file,
                    path,
                    self._new_layout,
                    self._initial_metadata,
                    self.durable,
                    self.use_os_file_locking,
                    to_write,
                    self.max_record_size,
                )
                damage = None
                self._create_on_open = False
            else:
                io = await _offload_owning(
                    open_existing, path, to_write, self.use_os_file_locking
                )
                try:
                    layout, master, size, damage = await self._load(io, None, to_write)
                except BaseException:
                    await _io.run_to_completion(io.close)
                    raise
        except BaseException:
            if to_write and _writers.get(path) is self:
                del _writers[path]
            raise
        finally:
            self._opening = False
        self.to_write = to_write
        self._path_key = path
        self._damage = damage
        self._io = io
        self._layout = layout
        self._master = master
        self._view = ReadView.of(master, layout.fan_out)
        self._failed = None
        self._metadata_cache = None
        self._upper_nodes = {}
        self._namespace = block_cache.namespace()
        self._slots = MasterSlots()
        self._writer = self._fast = (
            CaptureWriter(layout, master, size, self.max_record_size)
            if to_write
            else None
        )
        self._next_turn = (
            self._writer.count + RECORDS_PER_TURN if self._writer is not None else 0
        )

    async def close(self) -> None:
        """Close the file. Uncommitted records and metadata are discarded.

        Closing a closed file does nothing. Work already in a worker thread (a
        commit, a flush, a read) is waited for before the descriptor is
        closed, so no thread touches the file after this returns.

        A second ``close()`` while the first runs waits for it.

        Cancellation: the file is closed all the same, and the cancellation
        is raised once it is.
        """
        io = self._io
        if io is None:
            await self._close.wait()
            return
        # From now on no call reaches the descriptor.
        self._io = None
        for watch in self._followers:  # they end now, cleanly
            watch.wake()
        self._writer = self._fast = None
        self._held = []
        self._held_bytes = 0
        await self._close.begin(self._close_now(io))

    async def _close_now(self, io: _io.FileIO) -> None:
        # A task of its own, awaited through cancellations by close().
        while self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
            self._idle = None
        block_cache.drop(self._namespace)
        outcome, _ = await _io.run_to_completion(io.close)
        path = _io.canonical_path(self.file_name)
        if _writers.get(path) is self:
            del _writers[path]
        outcome.unwrap()

    def __del__(self) -> None:
        io = getattr(self, "_io", None)
        if io is not None and not io.closed:
            # Dropped without close(): release the descriptor and its locks.
            with contextlib.suppress(OSError):
                io.close()

    # ------------------------------------------------------------------
    # State

    def _open_io(self, action: str) -> _io.FileIO:
        io = self._io
        if io is None:
            raise CaptureFileNotOpen(
                f"cannot {action} {self.file_name!r} because it is not open"
            )
        return io

    def _open_writer(self, action: str) -> CaptureWriter:
        self._open_io(action)
        writer = self._writer
        if writer is None:
            raise CaptureFileNotOpenForWrite(
                f"cannot {action} {self.file_name!r} because it is not open for writing"
            )
        if self._failed is not None:
            raise WriterFailedError(
                f"cannot {action} {self.file_name!r}: an earlier I/O error "
                f"({self._failed}) left the file's state unknown; close and reopen it"
            ) from self._failed
        return writer

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Mark work that uses the descriptor: close() waits for it to end."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy and self._idle is not None:
                self._idle.set()

    async def _offload(self, function: Callable[..., T], /, *args: Any) -> T:
        """Run a read in a worker thread; close() waits for it."""
        with self._in_flight():
            return await _io.offload(function, *args)

    def _corrupt(self, error: CorruptionError) -> CorruptionError:
        """The same error, naming this file."""
        if isinstance(error, RecordNotText):
            return RecordNotText(
                error.reason, error, path=self.file_name, offset=error.offset
            )
        return type(error)(error.reason, path=self.file_name, offset=error.offset)

    @property
    def damaged_commit(self) -> str | None:
        """What is known of a commit newer than the one this file was opened
        (or last refreshed) at that could not be read: its master node fails
        its checksum (torn by a crash while written, or damaged since), or
        the file was cut short of its data. None when the newest commit is
        the one in use. ``aiorecords verify`` reports it."""
        return self._damage

    def record_count(self) -> int:
        """Records available: as of the last open or refresh for a reader;
        including uncommitted ones for a writer."""
        if self._writer is not None:
            return self._writer.count + len(self._held)
        return 0 if self._view is None else self._view.count

    # ------------------------------------------------------------------
    # Reading

    async def _load(
        self, io: _io.FileIO, layout: Layout | None, for_write: bool
    ) -> tuple[Layout, MasterNode, int, str | None]:
        """Read the first page (unless known) and the current master node.
        A writer refuses a file whose newest commit is unreadable unless
        ``discard_damaged_commit`` (its first commit would overwrite it).

        Both master nodes can look inconsistent to a reader while a writer
        commits, so that is read again (after a pause) before it is believed;
        but once two reads in a row see the same bytes, nothing is changing
        them, and the damage is real.
        """
        last: MasterNodesInconsistent | None = None
        for delay in _MASTER_RETRY_DELAYS:
            if delay:
                await asyncio.sleep(delay)
            try:
                state = await _io.offload(
                    read_state, io, layout, self.use_os_file_locking, not for_write
                )
            except MasterNodesInconsistent as error:
                if last is not None and error.observed == last.observed:
                    break
                last = error
                continue
            except CorruptionError as error:
                raise self._corrupt(error) from None
            damage = state[3]
            if for_write and damage is not None and not self.discard_damaged_commit:
                raise InvalidCaptureFile(
                    f"the newest commit cannot be read ({damage}); opening for "
                    "write would overwrite it. Read it at the commit before, or "
                    "pass discard_damaged_commit=True to write on from there",
                    path=self.file_name,
                    offset=state[1].file_limit,
                )
            return state
        assert last is not None
        raise self._corrupt(last)

    async def refresh(self) -> None:
        """Catch up with the commits made since the file was opened or refreshed.

        A writer is always current, so for it this does nothing. Raises
        [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed.

        Cancellation: the object keeps the state it had before the call.
        """
        io = self._open_io("refresh")
        if self._writer is not None:
            return
        with self._in_flight():
            _, master, _, damage = await self._load(io, self._layout, False)
        if self._io is io:
            self._damage = damage
            self._master = master
            self._view = ReadView.of(master, self._layout.fan_out)

    async def _current_view(self) -> ReadView:
        """What reads see now: the last commit for a reader; everything added
        for a writer (waiting for a flush under way, whose blocks are in
        flight)."""
        writer = self._writer
        if writer is None:
            assert self._view is not None
            return self._view
        if self._append_lock.locked():
            async with self._append_lock:
                writer = self._open_writer("read")
                return writer.read_view()
        return writer.read_view()

    def _limit(self, view: ReadView) -> int:
        """The most a data block of this file may decompress to."""
        layout = self._layout
        if layout.native and view.max_block:
            return view.max_block
        return layout.block_size + 4 + max(self.max_record_size, layout.node_size)

    def _cached_block(self, view: ReadView) -> Callable[[int], bytes]:
        """Blocks from memory or the shared cache, else `_Miss`."""
        namespace = self._namespace
        get = block_cache.get
        memory = view.memory

        def block_at(position: int) -> bytes:
            block = memory.get(position)
            if block is None:
                block = get(namespace, position)
                if block is None:
                    raise _Miss
            return block

        return block_at

    def _reader(
        self, io: _io.FileIO, view: ReadView, keep: int | None = None
    ) -> BlockReader:
        return BlockReader(
            io, self._layout, view, self._namespace, self._limit(view), keep
        )

    def _node_reader(
        self, block_at: Callable[[int], bytes], nodes: _NodeStore
    ) -> Callable[[int, int, int], bytes]:
        """Read index nodes from ``block_at``, keeping upper ones in ``nodes``."""
        fan_out = self._layout.fan_out

        def node_at(position: int, offset: int, height: int) -> bytes:
            key = (position, offset)
            if height > 1:
                node = nodes.get(key)
                if node is not None:
                    return node
            node = node_from_block(block_at(position), offset, fan_out, position)
            if height > 1 and position < PLACEHOLDER:
                nodes[key] = node
            return node

        return node_at

    def _keep_nodes(self, found: dict[tuple[int, int], bytes]) -> None:
        nodes = self._upper_nodes
        nodes.update(found)
        while len(nodes) > _MAX_UPPER_NODES:
            del nodes[next(iter(nodes))]

    def _keep(self, blocks: dict[int, bytes]) -> None:
        for position, block in blocks.items():
            block_cache.put(self._namespace, position, block)

    async def record_at(self, record_number: int) -> Record:
        """The record numbered ``record_number`` (the first record is 1).

        Returns ``str`` decoded with the file's encoding, or ``bytes`` when the
        encoding is ``None``. Raises `IndexError` (as
        [`RecordIndexError`][aiorecords.errors.RecordIndexError]) for a number before
        the first or after the last record, and
        [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed.

        Blocks in memory or in the process-wide block cache are used without
        leaving the event loop; others are read and decompressed in one
        worker-thread hop.

        Cancellation: nothing changes; a read already in a worker thread
        finishes there (and its blocks are not cached).
        """
        io = self._open_io("get a record from")
        count = self.record_count()
        if not isinstance(record_number, int) or not 1 <= record_number <= count:
            raise RecordIndexError(
                f"record {record_number} is out of range 1..{count} "
                f"of {self.file_name!r}"
            )
        view = await self._current_view()
        fan_out = self._layout.fan_out
        try:
            try:
                block_at = self._cached_block(view)
                position, offset = record_coordinate(
                    view.levels,
                    fan_out,
                    record_number - 1,
                    block_at,
                    self._node_reader(block_at, self._upper_nodes),
                )
                data = read_item(block_at(position), offset, position)
            except _Miss:
                reader = self._reader(io, view)
                found: dict[tuple[int, int], bytes] = {}
                data = await self._offload(
                    record_in_thread,
                    reader,
                    fan_out,
                    record_number - 1,
                    self._node_reader(reader, _ReadThrough(self._upper_nodes, found)),
                )
                self._keep(reader.loaded)
                self._keep_nodes(found)
        except CorruptionError as error:
            raise self._corrupt(error) from None
        if not self.encoding:
            return data
        try:
            return data.decode(self.encoding)
        except UnicodeDecodeError as error:
            raise RecordNotText(
                f"record {record_number} is not {self.encoding} text "
                f"({error.reason}); open the file with encoding=None to read "
                "its bytes",
                error,
                path=self.file_name,
            ) from None

    def record_generator(
        self, starting_record_number: int = 1
    ) -> AsyncIterator[Record]:
        """An async iterator over the records from ``starting_record_number``.

        It ends at the last record that existed when it was created; later
        records are not included (see [`refresh()`][aiorecords.CaptureFile.refresh]).
        Records are read in batches, one worker-thread hop per batch. Raises
        [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] at once if closed,
        and `IndexError` if the start is below 1.

        Cancellation: cancelling the iterating task ends the iteration; a
        batch read already in a worker thread finishes there first.
        """
        self._open_io("iterate over the records of")
        if starting_record_number < 1:
            raise RecordIndexError(
                f"record numbers start at 1, not {starting_record_number}"
            )
        return self._generate(starting_record_number - 1, self.record_count())

    async def _generate(self, start: int, end: int) -> AsyncIterator[Record]:
        view = await self._current_view()
        stream: Stream | None = None
        batch_size = _FIRST_BATCH
        while start < end:
            io = self._open_io("iterate over the records of")
            if stream is None:
                stream = Stream(
                    self._reader(io, view, keep=4),
                    self._layout.fan_out,
                    start,
                    self.encoding,
                )
            try:
                batch = await self._offload(stream.take, min(batch_size, end - start))
            except CorruptionError as error:
                raise self._corrupt(error) from None
            if not batch:  # pragma: no cover - the count said there was more
                raise self._corrupt(InvalidCaptureFile("index ends before its records"))
            start += len(batch)
            batch_size = min(batch_size * 4, _MAX_BATCH)
            for record in batch:
                yield record

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
        """``await cf[n]`` is [`record_at()`][aiorecords.CaptureFile.record_at]; ``await
        cf[a:b]`` a list.

        Slices count record numbers (from 1): ``cf[2:4]`` is records 2 and 3.
        A missing start means 1, a missing stop the end; a stop past the end
        is cut to it, as with lists. A contiguous slice is streamed, any other
        step reads record by record.
        """
        if isinstance(key, slice):
            return self._slice(key)
        return self.record_at(key)

    async def _slice(self, key: slice) -> list[Record]:
        self._open_io("get records from")
        count = self.record_count()
        start = 1 if key.start is None else key.start
        stop = count + 1 if key.stop is None else min(key.stop, count + 1)
        step = 1 if key.step is None else key.step
        if start < 1:
            raise RecordIndexError(f"record numbers start at 1, not {start}")
        if step == 1:
            return [record async for record in self._generate(start - 1, stop - 1)]
        return [await self.record_at(number) for number in range(start, stop, step)]

    async def get_metadata(self) -> bytes | None:
        """The file's metadata, or None if it has none.

        A writer sees metadata set since the last commit. Raises
        [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed.

        Cancellation: nothing changes.
        """
        io = self._open_io("get the metadata of")
        view = await self._current_view()
        coordinate = view.metadata
        if coordinate is None:
            return None
        cached = self._metadata_cache
        if cached is not None and cached[0] == coordinate:
            return cached[1]
        try:
            position, offset = coordinate
            try:
                data = read_item(self._cached_block(view)(position), offset, position)
            except _Miss:
                reader = self._reader(io, view)
                data = await self._offload(item_in_thread, reader, coordinate)
                self._keep(reader.loaded)
        except CorruptionError as error:
            raise self._corrupt(error) from None
        self._metadata_cache = (coordinate, data)
        return data

    # ------------------------------------------------------------------
    # Writing

    async def add_record(self, record: str | bytes | bytearray | memoryview) -> int:
        """Add ``record`` (not yet committed) and return the new record count.

        A ``str`` is stored encoded with the file's encoding. This is
        in-memory work, except when enough full compression blocks are
        waiting: they are then compressed and written in one worker-thread
        hop. A task that keeps adding without waiting lets other tasks run
        every 500 records; one adding while another task's flush is out
        waits for that flush once 4,096 records (or 4 MiB) are held for it.
        Raises [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed,
        [`CaptureFileNotOpenForWrite`][aiorecords.errors.CaptureFileNotOpenForWrite] if
        open for reading, `ValueError` for a record over ``max_record_size``.

        Cancellation: the record is added as soon as the call starts (it
        counts, and the next commit includes it); a flush already in a worker
        thread is finished first.
        """
        writer = self._fast
        if writer is not None:
            kind = type(record)
            if kind is str:
                count = writer.add_record(record.encode(self._store_encoding))  # type: ignore[union-attr]
            elif kind is bytes:
                count = writer.add_record(record)  # type: ignore[arg-type]
            else:
                return await self._add_record_slowly(record)
            if count:
                if count < self._next_turn:
                    return count
                return await self._let_others_run(count)
            count = writer.count
            async with self._append_lock:
                await self._flush(writer, commit=False)
            return count
        return await self._add_record_slowly(record)

    async def _let_others_run(self, count: int) -> int:
        """Pause a task that keeps adding records without waiting (small
        records fill a flush only every few thousand), so that other tasks,
        and the end of a flush in a worker thread, get the loop."""
        self._next_turn = count + RECORDS_PER_TURN
        await let_others_run()
        return count

    async def _add_record_slowly(
        self, record: str | bytes | bytearray | memoryview
    ) -> int:
        writer = self._open_writer("add a record to")
        count = self._add_in_memory(writer, self._encode(record))
        if count:
            if self._flushing and (
                len(self._held) >= _HELD_RECORDS or self._held_bytes >= _HELD_BYTES
            ):
                # A task adding faster than the flush writes waits for it
                # (memory stays bounded; the worker gets the GIL it needs).
                async with self._append_lock:
                    pass
                self._next_turn = count + RECORDS_PER_TURN
                return count
            if count < self._next_turn:
                return count
            return await self._let_others_run(count)
        count = writer.count
        async with self._append_lock:
            await self._flush(writer, commit=False)
        return count

    def _add_in_memory(self, writer: CaptureWriter, data: bytes) -> int:
        """Add a record without waiting; the new count, or 0 if the writer now
        wants a flush (the count is then ``writer.count``)."""
        if not self._flushing:
            return writer.add_record(data)
        if len(data) > self.max_record_size:
            raise ValueError(
                f"record of {len(data)} bytes is over the largest allowed, "
                f"{self.max_record_size}"
            )
        self._held.append(data)
        self._held_bytes += len(data)
        return writer.count + len(self._held)

    async def set_metadata(self, new_metadata: bytes | None) -> None:
        """Set the file's metadata, committed with the next
        [`commit()`][aiorecords.CaptureFile.commit].

        ``None`` clears it. Metadata commits atomically with the records
        added before the commit, so it can record where processing stopped.
        Raises [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed,
        [`CaptureFileNotOpenForWrite`][aiorecords.errors.CaptureFileNotOpenForWrite] if
        open for reading.

        Cancellation: the metadata is set as soon as the call starts.
        """
        self._open_writer("set the metadata of")
        data = None if new_metadata is None else bytes(new_metadata)
        async with self._append_lock:
            writer = self._open_writer("set the metadata of")
            if writer.set_metadata(data):
                await self._flush(writer, commit=False)

    async def commit(self) -> None:
        """Commit the records and metadata added since the last commit.

        Until then they are invisible to other readers and are lost on close.
        Either all of them are committed or none is. With ``durable=True``
        the data pages are synced, then the alternate master node is written
        and synced, so once this returns the commit survives a power cut.
        Raises [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed,
        [`CaptureFileNotOpenForWrite`][aiorecords.errors.CaptureFileNotOpenForWrite] if
        open for reading, [`StorageError`][aiorecords.errors.StorageError] if the OS
        fails a write or sync (the object then refuses further writes with
        [`WriterFailedError`][aiorecords.errors.WriterFailedError]: reopen the file).

        Commits by concurrent tasks coalesce (group commit): a caller that
        finds no commit under way starts one at once; callers that come while
        one is being written and synced all join the next, which starts when
        it ends and covers everything added before any of them called. Many
        callers, one commit: one pair of syncs.

        Cancellation: a caller cancelled while waiting for its turn stops
        waiting, and if no other caller waits, that commit does not happen
        (the records stay pending). Once its commit has started, it runs to
        its end (committed, or failed as above) and the cancellation is
        raised afterwards.
        """
        self._open_writer("commit")
        ticket = _CommitTicket(asyncio.get_running_loop().create_future())
        self._next_commit.append(ticket)
        if self._committer is None:
            # Started as a task, so that every caller that comes in this
            # turn of the event loop joins the commit (natural batching).
            self._committer = asyncio.ensure_future(self._run_commits())
        await self._await_turn(ticket)

    async def _await_turn(self, ticket: _CommitTicket) -> None:
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

    async def _run_commits(self) -> None:
        """Run commits back to back while callers wait for one: each covers
        every caller waiting when it starts."""
        try:
            idle = False
            while True:
                batch = [t for t in self._next_commit if not t.abandoned]
                self._next_commit = []
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
                    async with self._append_lock:
                        writer = self._open_writer("commit")
                        await self._flush(writer, commit=True)
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
            for ticket in self._next_commit:
                ticket.done.cancel()

    # ------------------------------------------------------------------
    # Durable appends

    async def append(
        self,
        record: str | bytes | bytearray | memoryview,
        *,
        expected_count: int | None = None,
    ) -> int:
        """Add ``record`` and wait until it is committed; return its number.

        The commit is shared with every other task appending or committing
        meanwhile (see [`commit()`][aiorecords.CaptureFile.commit]), so many concurrent
        appends cost one commit, and with ``durable=True`` (the default) this returns
        only once the record survives a power cut. With ``expected_count=n`` the
        record is added only if the file held exactly ``n`` records just
        before it (those committed and those added but not yet committed);
        otherwise [`ConflictError`][aiorecords.errors.ConflictError] is raised and
        nothing is added: optimistic concurrency, as event stores use.

        Once ``max_pending_appends`` records wait for a commit, this waits
        for room first. Raises as [`add_record()`][aiorecords.CaptureFile.add_record]
        and [`commit()`][aiorecords.CaptureFile.commit] do.

        Cancellation: while waiting for room, nothing is added. Once the
        record is added it stays added (the next commit includes it), and
        the cancellation only stops the wait for its commit.
        """
        writer = self._writer
        kind = type(record)
        if (
            writer is None
            or self._failed is not None
            or (kind is not str and kind is not bytes)
            or self._appends_waiting >= self.max_pending_appends
        ):
            # Closed, failed, another type, or no room: the general path
            # raises, converts, or waits.
            return await self.append_batch((record,), expected_count=expected_count)
        if isinstance(record, str):
            data = record.encode(self._store_encoding)
        else:
            data = bytes(record)  # bytes already: no copy
        count = writer.count + len(self._held)
        if expected_count is not None and count != expected_count:
            raise ConflictError(
                f"{self.file_name!r} holds {count} records, "
                f"not the {expected_count} expected",
                expected=expected_count,
                actual=count,
            )
        self._add_in_memory(writer, data)
        self._appends_waiting += 1
        try:
            await self.commit()
        finally:
            self._release_room(1)
        return count + 1

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
        ``max_pending_appends`` waits until no other appended record is waiting, then
        goes alone.

        Cancellation: as for [`append()`][aiorecords.CaptureFile.append]: before the
        records are added, nothing is; after, they all stay added.
        """
        writer = self._open_writer("append to")
        items = [self._encode(record) for record in records]
        for data in items:
            if len(data) > self.max_record_size:
                raise ValueError(
                    f"record of {len(data)} bytes is over the largest allowed, "
                    f"{self.max_record_size}"
                )
        await self._wait_for_room(len(items))
        writer = self._open_writer("append to")
        count = writer.count + len(self._held)
        if expected_count is not None and count != expected_count:
            raise ConflictError(
                f"{self.file_name!r} holds {count} records, "
                f"not the {expected_count} expected",
                expected=expected_count,
                actual=count,
            )
        # All added before anything can await, so nothing interleaves. Blocks
        # that fill meanwhile are written by the commit.
        for data in items:
            self._add_in_memory(writer, data)
        last = writer.count + len(self._held)
        self._appends_waiting += len(items)
        try:
            await self.commit()
        finally:
            self._release_room(len(items))
        return last

    def _encode(self, record: str | bytes | bytearray | memoryview) -> bytes:
        if isinstance(record, str):
            return record.encode(self._store_encoding)
        if isinstance(record, (bytes, bytearray, memoryview)):
            return bytes(record)
        raise TypeError(f"a record is str or bytes, not {type(record).__name__}")

    async def _wait_for_room(self, count: int) -> None:
        """Wait until ``count`` more appended records may wait for a commit."""
        limit = self.max_pending_appends
        while self._appends_waiting and self._appends_waiting + count > limit:
            room = asyncio.get_running_loop().create_future()
            self._room.append(room)
            try:
                await room
            finally:
                with contextlib.suppress(ValueError):
                    self._room.remove(room)

    def _release_room(self, count: int) -> None:
        self._appends_waiting -= count
        if self._room:
            waiting, self._room = self._room, []
            for room in waiting:
                if not room.done():
                    room.set_result(None)

    # ------------------------------------------------------------------
    # Following

    def follow(self, start: int = 1) -> AsyncIterator[Record]:
        """Every committed record from number ``start`` on, then each new one
        as it is committed, by this object, another in this process, or
        another process; it never ends by itself.

        Only committed records are given, even by a writer. Records already
        there are read in batches (one worker-thread hop per batch); at the
        end it waits: commits in this process wake it at once, and the file
        is looked at for other processes' commits at intervals doubling from
        1 ms to 100 ms while nothing comes. Raises
        [`CaptureFileNotOpen`][aiorecords.errors.CaptureFileNotOpen] if closed,
        `IndexError` if ``start`` is below 1, and (for a reader)
        [`FileChangedError`][aiorecords.errors.FileChangedError] once another file takes
        the name (a writer that used ``force_new_empty_file``, a move) or the
        file is cut short of its commits.

        ``close()`` ends the iteration cleanly, at once: a follower waiting
        for a commit is woken, one reading a batch stops after it.

        Cancellation: cancelling the iterating task ends the iteration
        cleanly; a batch read already in a worker thread finishes first.
        """
        self._open_io("follow the records of")
        if start < 1:
            raise RecordIndexError(f"record numbers start at 1, not {start}")
        return self._follow(start - 1)

    def committed_count(self) -> int:
        """Records committed: for a writer, without those added since its
        last commit; for a reader,
        [`record_count()`][aiorecords.CaptureFile.record_count]."""
        if self._writer is not None:
            assert self._master is not None
            return self._master.record_count(self._layout.fan_out)
        return self.record_count()

    async def _follow(self, position: int) -> AsyncIterator[Record]:
        io = self._open_io("follow the records of")
        wait = _FOLLOW_FIRST_WAIT
        known = 0  # the most records a commit of this file has been seen to hold
        with _watch.watching(self._path_key) as watch:
            self._followers.add(watch)
            try:
                while self._io is io:
                    committed = self.committed_count()
                    known = max(known, committed)
                    if position < committed:
                        async for record in self._generate(position, committed):
                            position += 1
                            yield record
                        wait = _FOLLOW_FIRST_WAIT
                        continue
                    woken = await watch.wait(wait)
                    if self._io is not io:
                        break
                    if not await self._follow_step(woken, known, position):
                        wait = min(wait * 2, _FOLLOW_LAST_WAIT)
            except CaptureFileNotOpen:
                if self._io is io:
                    raise
                # close() came in the middle of a step: the end, as below.
            finally:
                self._followers.discard(watch)
            # Closed (or closed and opened again): the follow ends cleanly.

    async def _follow_step(self, woken: bool, known: int, position: int) -> bool:
        """After a wait: a reader looks at the file again. Whether anything
        came."""
        if self._writer is None:
            if not woken:
                await self._check_followed_file()
            await self.refresh()
            if self.committed_count() < known:
                raise FileChangedError(
                    f"holds {self.committed_count()} records, fewer than "
                    f"the {known} it held before",
                    path=self.file_name,
                    change="truncated",
                )
        return woken or self.committed_count() > position

    async def _check_followed_file(self) -> None:
        """Raise FileChangedError if the followed path now names another
        file, or the file no longer holds the data of the commit in use."""
        io = self._open_io("follow the records of")
        path = self.file_name
        with self._in_flight():
            named, size = await _io.offload(
                lambda: (_io.still_named(io, path), io.size())
            )
        if not named:
            raise FileChangedError(
                "another file took its name while it was followed",
                path=path,
                change="replaced",
            )
        if self._master is not None and size < self._master.data_end:
            raise FileChangedError(
                f"cut to {size} bytes while followed",
                path=path,
                change="truncated",
            )

    async def _flush(self, writer: CaptureWriter, *, commit: bool) -> None:
        """Place waiting blocks (and, for a commit, write the master node) in
        one worker-thread hop.

        Call with the append lock held. A cancellation that arrives while the
        worker runs is raised once its outcome is recorded.
        """
        if not commit and not writer.flush_due:
            return  # another task flushed while this one waited
        self._fast = None
        self._flushing = True
        try:
            io = self._open_io("write")
            job = writer.begin_flush(commit=commit)
            with self._in_flight():
                outcome, cancelled = await _io.run_to_completion(
                    run_flush,
                    io,
                    job,
                    self.durable,
                    writer.data_dirty,
                    self.use_os_file_locking,
                    self._slots,
                )
            if outcome.error is not None:
                writer.abandon_flush()
                self._failed = outcome.error
                raise outcome.error
            result = outcome.unwrap()
            writer.finish_flush(result)
            if result.placed:
                # Keep only the newest block: the one a writer reading back
                # what it just wrote needs, without filling the cache.
                newest = max(result.placed)
                self._keep({newest: result.placed[newest]})
        finally:
            self._flushing = False
            held, self._held = self._held, []
            self._held_bytes = 0
            if self._writer is writer and self._failed is None:
                for data in held:  # added while the flush was out
                    writer.add_record(data)
                self._fast = writer
        if result.master is not None:
            self._master = result.master
            _watch.notify(self._path_key)
        if cancelled is not None:
            raise cancelled


class _CommitTicket:
    """A caller's place in the next group commit."""

    __slots__ = ("abandoned", "batch", "done")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        # Once its commit has begun (it will run to its end): that commit's
        # own future, done when it has ended.
        self.batch: asyncio.Future[None] | None = None
        self.abandoned = False  # its caller was cancelled before that


class _NodeStore(Protocol):
    """What `CaptureFile._node_reader()` needs of a node cache."""

    def get(self, key: tuple[int, int], /) -> bytes | None: ...

    def __setitem__(self, key: tuple[int, int], node: bytes, /) -> None: ...


class _ReadThrough:
    """Reads the event loop's node cache, writes to a separate dict (for a
    worker thread, which must not change what the loop owns)."""

    __slots__ = ("_found", "_shared")

    def __init__(
        self, shared: dict[tuple[int, int], bytes], found: dict[tuple[int, int], bytes]
    ) -> None:
        self._shared = shared
        self._found = found

    def get(self, key: tuple[int, int]) -> bytes | None:
        return self._shared.get(key) or self._found.get(key)

    def __setitem__(self, key: tuple[int, int], node: bytes) -> None:
        self._found[key] = node


async def _offload_owning(function: Callable[..., T], /, *args: Any) -> T:
    """Offload a call that opens a file; if the caller is cancelled meanwhile,
    the file is closed before the cancellation goes on."""
    outcome, cancelled = await _io.run_to_completion(function, *args)
    if cancelled is not None:
        if outcome.error is None:
            value = outcome.value
            io = value[0] if isinstance(value, tuple) else value
            if isinstance(io, _io.FileIO):
                await _io.run_to_completion(io.close)
        raise cancelled
    return outcome.unwrap()
