"""The capture file work that runs in worker threads.

Each function here is one thread hop of `aiorecords.capture`: it answers
the wants of the sans-IO cores with reads through `aiorecords._io.FileIO`,
and touches nothing the event loop changes.
"""

from __future__ import annotations

import dataclasses
from typing import Final, TypeVar

from .. import _io
from .._cache import block_cache
from .._ranges import HeldFile, NotHeld
from .._wants import answer_reads
from ..errors import CaptureFileAlreadyOpen, InvalidCaptureFile, StorageError
from ._index import Blocks
from ._layout import (
    HEADER_SIZE,
    WRITER_LOCK_OFFSET,
    Layout,
    MasterNode,
    MasterNodesInconsistent,
    choose_master,
    commit_damage,
    decode_header,
    encode_header,
    fetch_block,
    written_end,
)
from ._writer import LARGE_RECORD, CaptureWriter, FlushJob, FlushResult, ReadView

__all__ = [
    "BlockReader",
    "MasterSlots",
    "create_file",
    "finish_walk",
    "open_existing",
    "read_state",
    "run_flush",
]

T = TypeVar("T")

#: A streaming reader reads the data area this much at a time: blocks lie
#: back to back, so one read serves several of them.
READ_AHEAD: Final = 256 * 1024
#: A block a writer flushed is kept in the block cache for reading it back
#: only if smaller than this (a large one is read again if asked for).
KEEP_BELOW: Final = LARGE_RECORD


class BlockReader:
    """Reads and decompresses the data blocks of one view.

    Blocks it loads are kept in `loaded`, for the event loop to put in
    the shared cache. A streaming reader passes ``keep`` to remember only its
    few most recent blocks instead: a long scan must not flush the cache.
    """

    __slots__ = (
        "_keep",
        "_layout",
        "_limit",
        "_namespace",
        "_window",
        "_window_start",
        "io",
        "loaded",
        "view",
    )

    def __init__(
        self,
        io: _io.FileIO | HeldFile,
        layout: Layout,
        view: ReadView,
        namespace: int,
        limit: int,
        keep: int | None = None,
    ) -> None:
        self.io = io
        self._layout = layout
        self.view = view
        self._namespace = namespace
        self._limit = limit
        self._keep = keep
        self.loaded: dict[int, bytes] = {}
        self._window = b""
        self._window_start = 0

    def __call__(self, position: int) -> bytes:
        """The uncompressed block at ``position``."""
        block = self.view.memory.get(position)
        if block is not None:
            return block
        loaded = self.loaded
        block = loaded.get(position)
        if block is None:
            block = block_cache.peek(self._namespace, position)
            if block is None:
                block = self._load(position)
            if self._keep is not None and len(loaded) >= self._keep:
                del loaded[next(iter(loaded))]  # the least recently used
            loaded[position] = block
        elif self._keep is not None:
            loaded[position] = loaded.pop(position)  # now the most recent
        return block

    def _load(self, position: int) -> bytes:
        return answer_reads(
            fetch_block(self._layout, position, self.view.data_end, self._limit),
            self._read,
        )

    def _read(self, position: int, size: int) -> bytes:
        """Data-area bytes, taking the last partial page from the master node."""
        view = self.view
        written = view.data_end - len(view.tail)
        if position >= written:
            start = position - written
            return view.tail[start : start + size]
        from_file = min(size, written - position)
        start = position - self._window_start
        if start >= 0 and start + from_file <= len(self._window):
            data = self._window[start : start + from_file]
        elif self._keep is not None and from_file < READ_AHEAD:
            # Streaming: read ahead, the next blocks follow this one.
            self._window = self.io.pread(position, min(READ_AHEAD, written - position))
            self._window_start = position
            data = self._window[:from_file]
        else:
            data = self.io.pread(position, from_file)
        if len(data) < from_file:
            return data  # cut short: the core says where
        if from_file < size:
            data += view.tail[: size - from_file]
        return data


def finish_walk(steps: Blocks[T], position: int | None, reader: BlockReader) -> T:
    """Run a walk that wants the block at ``position`` (None: one not yet
    started) to its end.

    Over an object on storage, a block whose bytes are not held yet stops
    the walk with `NotHeld`, which says where to resume it once they are.
    """
    try:
        if position is None:
            position = next(steps)
        while True:
            try:
                block = reader(position)
            except NotHeld as missing:
                missing.resume = position
                raise
            position = steps.send(block)
    except StopIteration as done:
        result: T = done.value
        return result


def read_state(
    io: _io.FileIO | HeldFile, layout: Layout | None, lock_master: bool, shared: bool
) -> tuple[Layout, MasterNode, int, str | None]:
    """The file's layout (read unless given), current master node, size, and
    what is known of a newer commit that could not be used (see
    `commit_damage()`)."""
    if layout is None:
        layout = decode_header(io.pread(0, HEADER_SIZE))
    size = 2 * layout.master_size
    start = layout.slots[0]
    # Never ask for more than the file holds: a damaged first page could
    # claim slots of a gigabyte.
    file_size = io.size()
    if lock_master:
        assert isinstance(io, _io.FileIO)
        io.lock(start, size, exclusive=not shared, wait=True)
    try:
        both = io.pread(start, max(0, min(size, file_size - start)))
    finally:
        if lock_master:
            assert isinstance(io, _io.FileIO)
            io.unlock(start, size)
    # Sized after the master nodes are read: a writer grows the file before
    # it writes a master node that needs the new bytes.
    file_size = max(file_size, io.size())
    try:
        node = choose_master(
            layout,
            both[: layout.master_size],
            both[layout.master_size :],
            file_size=file_size,
        )
    except MasterNodesInconsistent as error:
        error.observed = hash(both)  # the caller re-reads until this settles
        raise
    written = node.data_end
    if written > file_size:
        raise InvalidCaptureFile(
            f"file is {file_size} bytes but its last commit needs {written}",
            offset=file_size,
        )
    damage = commit_damage(
        layout,
        both[: layout.master_size],
        both[layout.master_size :],
        node,
        file_size=file_size,
    )
    if damage is not None:
        unreachable = (
            answer_reads(written_end(node.data_end, file_size), io.pread)
            - node.data_end
        )
        damage += (
            f"; the file opens at commit {node.serial}, and {unreachable} bytes "
            "of data written after it are unreachable"
        )
    return layout, node, file_size, damage


def open_existing(path: str, to_write: bool, require_lock: bool) -> _io.FileIO:
    """Open a capture file; for writing, take the writer lock."""
    io = _io.open_file(path, writable=to_write)
    if to_write:
        try:
            take_writer_lock(io, path, require_lock)
        except BaseException:
            io.close()
            raise
    return io


def take_writer_lock(io: _io.FileIO, path: str, require_lock: bool) -> None:
    """Hold the writer byte, or raise CaptureFileAlreadyOpen.

    A file system that cannot lock is tolerated unless ``require_lock``.
    """
    try:
        held = io.lock(WRITER_LOCK_OFFSET, 1, exclusive=True, wait=False)
    except StorageError:
        if require_lock:
            raise
        return
    if not held:
        raise CaptureFileAlreadyOpen(
            f"capture file {path!r} is already open for write by another process"
        )


class MasterSlots:
    """What a writer last wrote to each master node slot.

    A commit rewrites a whole slot in memory, but most of it is what the
    slot held two commits ago: the current block grows by a few records at
    a time. Writing only the pages that changed makes a small commit write
    two or three pages instead of a whole slot, which is what its
    ``fdatasync`` pays for. The bytes on disk are the same either way.
    Used only by the thread that runs flushes (one at a time).
    """

    __slots__ = ("_written",)

    def __init__(self) -> None:
        self._written: list[bytes | None] = [None, None]

    def write(self, io: _io.FileIO, layout: Layout, index: int, data: bytes) -> None:
        """Make slot ``index`` hold ``data``, writing the pages that differ."""
        start = layout.slots[index]
        old = self._written[index]
        self._written[index] = None  # unknown until the writes succeed
        if old is None:
            io.pwrite(start, data)
        else:
            page = layout.page_size
            run_start = -1
            for at in range(0, len(data), page):
                # (bytes compare with memcmp; memoryviews item by item)
                changed = data[at : at + page] != old[at : at + page]
                if changed and run_start < 0:
                    run_start = at
                elif not changed and run_start >= 0:
                    io.pwrite(start + run_start, data[run_start:at])
                    run_start = -1
            if run_start >= 0:
                io.pwrite(start + run_start, data[run_start:])
        self._written[index] = data


def run_flush(
    io: _io.FileIO,
    job: FlushJob,
    durable: bool,
    data_dirty: bool,
    lock_master: bool,
    slots: MasterSlots | None = None,
) -> FlushResult:
    """Run a flush job and make its writes; for a commit, in two phases.

    Phase 1 writes the data pages and (if durable) syncs them; phase 2 writes
    the alternate master node and (if durable) syncs it. A reader therefore
    never finds a master node pointing at data that is not on the disk.
    With ``slots``, only the pages of the master node that changed since
    that slot was last written are written.
    """
    layout = job.layout
    result = job.run()
    if result.grow_to is not None:
        io.truncate(result.grow_to)
    for position, data in result.writes:
        io.pwrite(position, data)
    master = result.master
    if master is not None:
        if durable and (data_dirty or result.writes or result.grow_to is not None):
            io.datasync()
        start, size = layout.slots[0], 2 * layout.master_size
        if lock_master:
            io.lock(start, size, exclusive=True, wait=True)
        try:
            if slots is None:
                io.pwrite(layout.slots[master.serial % 2], result.master_bytes)
            else:
                slots.write(io, layout, master.serial % 2, result.master_bytes)
        finally:
            if lock_master:
                io.unlock(start, size)
        if durable:
            io.datasync()
    # The bytes written, and any large block, are let go of here: freeing
    # tens of megabytes takes milliseconds, which the worker thread can
    # spend and the event loop should not.
    if result.writes or any(len(b) >= KEEP_BELOW for b in result.placed.values()):
        placed = {p: b for p, b in result.placed.items() if len(b) < KEEP_BELOW}
        result = dataclasses.replace(result, writes=(), placed=placed)
    return result


def create_file(
    path: str,
    layout: Layout,
    initial_metadata: bytes | None,
    durable: bool,
    require_lock: bool,
    to_write: bool,
    max_record_size: int,
) -> tuple[_io.FileIO, Layout, MasterNode, int]:
    """Build a new capture file beside ``path`` and move it into place.

    The file is complete and synced before it takes the name, so no reader
    ever sees a half-made file; the directory is synced after the rename so
    the name survives a power cut. Replacing a file that another process has
    open for writing is refused.
    """
    previous: _io.FileIO | None = None
    if _io.is_file(path):
        try:
            previous = open_existing(path, True, False)
        except PermissionError:
            previous = None
    temp = _io.create_temp_beside(path)
    try:
        # Locked before it has its name: no other writer can slip in between.
        take_writer_lock(temp, path, require_lock)
        temp.pwrite(0, encode_header(layout))
        temp.truncate(layout.data_start)
        empty = MasterNode(0, layout.data_start, None, (), b"", b"")
        writer = CaptureWriter(layout, empty, layout.data_start, max_record_size)
        writer.set_metadata(initial_metadata)
        # Two commits, so that both master node slots are valid from the start.
        master = empty
        for _ in range(2):
            result = run_flush(
                temp, writer.begin_flush(commit=True), False, False, False
            )
            writer.finish_flush(result)
            assert result.master is not None
            master = result.master
        if writer.file_size < layout.initial_file_size:
            temp.truncate(layout.initial_file_size)
            writer.file_size = layout.initial_file_size
        if durable:
            temp.sync()
        _io.replace(temp.path, path)
        if durable:
            _io.sync_directory(path)
    except BaseException:
        temp.close()
        _io.unlink_quietly(temp.path)
        raise
    finally:
        if previous is not None:
            previous.close()
    temp.path = path
    if not to_write:
        temp.close()
        temp = _io.open_file(path, writable=False)
    return temp, layout, master, writer.file_size
