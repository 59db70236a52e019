"""The capture file writer as a state machine over bytes.

`CaptureWriter` holds everything added since the last flush: the
compression block being filled, full blocks not yet compressed, and the
rightmost path of the index. Adding a record is in-memory work only. From
time to time (when enough full blocks wait, and at every commit) the async
layer takes a `FlushJob` with `CaptureWriter.begin_flush()`, runs
`FlushJob.run()` in a worker thread (pure work: compression and planning
the page writes), performs the writes, and hands the `FlushResult`
back with `CaptureWriter.finish_flush()`. One thread hop thus serves many
blocks.

Every step follows CaptureFile 1.2.0's order, so that with the version 2
layout the same calls give the same bytes: an item is appended, the block is
closed if full, and only then are full index nodes written, lowest height
first, each followed by the same check.

Deferring compression has one consequence: the file position of a block is
known only once every block before it is compressed. A coordinate that must
point into such a block is written with a *placeholder* position (see
`placeholder()`); flushing resolves placeholders into real positions (in
full nodes inside the blocks, in the rightmost path, in the metadata pointer)
before anything reaches the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._kernels import compiled
from .._limits import check_size
from ._layout import (
    COORD,
    GROWTH_LIMIT,
    U32,
    Layout,
    MasterNode,
    compress_block_parts,
    encode_master,
)

__all__ = [
    "PLACEHOLDER",
    "CaptureWriter",
    "FlushJob",
    "FlushResult",
    "ReadView",
    "placeholder",
]

#: Positions at or above this are placeholders for blocks not yet placed.
#: Real positions are below 2**62 (the master node decoder enforces it).
PLACEHOLDER = 0xC0 << 56


def placeholder(sequence: int) -> int:
    """The placeholder position of the ``sequence``-th block not yet placed.

    Every one of its eight bytes is 0x40 or more. In packed coordinates (an
    8-byte position, then a 4-byte offset below 2**30) the first byte of
    every position and of every offset is below 0x40, and any eight
    consecutive bytes that do not start a coordinate cover one of those. So
    a placeholder's bytes can only be found where a position starts, and
    resolving one is a plain ``bytes.replace`` on a run of coordinates.
    """
    digits = bytearray(7)
    for index in range(6, -1, -1):
        sequence, digit = divmod(sequence, 192)
        digits[index] = 0x40 + digit
    if sequence:
        raise OverflowError("too many blocks waiting to be placed")
    return int.from_bytes(b"\xc0" + digits, "big")


#: A record this large closes its block without being copied into it on
#: the event loop (the flush joins them in its worker thread); it is more
#: than any block size, so the block would close after it anyway.
LARGE_RECORD = 1024 * 1024

#: A flush is due when this many full blocks wait ...
FLUSH_BLOCKS = 8
#: ... or when they hold this many bytes (large records make large blocks).
FLUSH_BYTES = 4 * 1024 * 1024

_pack_coord = COORD.pack
_pack_u32 = U32.pack
fast_capture_add = compiled.capture_add if compiled else None


@dataclass(frozen=True, slots=True)
class ReadView:
    """What a reader needs to find records in one state of a file.

    Blocks still held in memory (the compression block of a commit, and a
    writer's blocks not yet flushed) are in ``memory``, by position or
    placeholder; every other block is read from the data area, whose bytes
    from ``data_end - len(tail)`` to ``data_end`` are ``tail``.
    """

    levels: tuple[bytes, ...]
    metadata: tuple[int, int] | None
    count: int
    data_end: int
    tail: bytes
    memory: Mapping[int, bytes]
    max_block: int

    @classmethod
    def of(cls, node: MasterNode, fan_out: int) -> ReadView:
        """The view of a committed master node."""
        return cls(
            levels=node.levels,
            metadata=node.metadata,
            count=node.record_count(fan_out),
            data_end=node.file_limit,
            tail=node.tail,
            memory={node.file_limit: node.block},
            max_block=node.max_block,
        )


@dataclass(frozen=True, slots=True)
class _Pending:
    """A block not yet in the file: where it will be, its bytes, its nodes.

    A block closed by a large record keeps that record apart (``body``)
    rather than copied after the bytes before it (``head``, where all its
    nodes are): the copy is made by the flush, in its worker thread.
    """

    position: int
    head: bytes
    nodes: tuple[int, ...]
    body: bytes = b""

    @property
    def data(self) -> bytes:
        """The block's bytes (a copy when it has a body)."""
        return self.head + self.body if self.body else self.head

    @property
    def size(self) -> int:
        return len(self.head) + len(self.body)


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What a flush did: the writes to make, and the writer's state after."""

    writes: tuple[tuple[int, bytes | memoryview], ...]
    """``(file position, bytes)`` to write, whole pages only, in order."""
    grow_to: int | None
    """If set, first extend the file to this size (zeros)."""
    file_limit: int
    tail: bytes
    file_size: int
    max_block: int
    placed: dict[int, bytes]
    """Uncompressed bytes of each block written, by real position."""
    block: bytes
    """The compression block, its placeholders resolved."""
    levels: tuple[bytes, ...]
    metadata: tuple[int, int] | None
    master: MasterNode | None
    """The new master node, for a commit."""
    master_bytes: bytes
    """The bytes of the new master node's slot, for a commit."""


@dataclass(frozen=True, slots=True)
class FlushJob:
    """Blocks to compress and place, and (for a commit) a master node to build.

    `run()` is pure computation, fine in any thread.
    """

    layout: Layout
    file_limit: int
    tail: bytes
    file_size: int
    max_block: int
    pending: tuple[_Pending, ...]
    block_position: int
    block: bytes
    block_nodes: tuple[int, ...]
    levels: tuple[bytes, ...]
    metadata: tuple[int, int] | None
    commit_serial: int | None

    def run(self) -> FlushResult:
        """Compress each pending block in turn, then build the master node."""
        layout = self.layout
        page = layout.page_size
        file_limit = self.file_limit
        tail = self.tail
        file_size = self.file_size
        max_block = self.max_block
        grow_to = None
        writes: list[tuple[int, Piece]] = []
        placed: dict[int, bytes] = {}
        resolved: dict[int, int] = {}
        swaps: list[tuple[bytes, bytes]] = []
        for pending in self.pending:
            if pending.position != file_limit:
                resolved[pending.position] = file_limit
                swaps.append(
                    (_pack_position(pending.position), _pack_position(file_limit))
                )
            raw = _resolve_nodes(layout, pending.head, pending.nodes, swaps)
            if pending.body:
                raw = b"".join((raw, pending.body))  # without the GIL, unlike +
            header, payload = compress_block_parts(layout, raw)
            framed_size = len(header) + len(payload)
            placed[file_limit] = raw
            max_block = max(max_block, len(raw))
            if file_limit + framed_size > file_size:
                # Grow by the data size so far, at most GROWTH_LIMIT, in pages.
                growth = -(-min(GROWTH_LIMIT, file_limit) // page) * page
                file_size += growth
                grow_to = file_size
            # Only whole pages are written; the rest waits in the master node.
            written_from = file_limit - len(tail)
            pages, tail = whole_pages(written_from, tail + header, payload, page)
            if pages:
                writes += pages
                end = pages[-1][0] + len(pages[-1][1])
                file_size = max(file_size, end)
            file_limit += framed_size
        if self.block_position != file_limit:
            resolved[self.block_position] = file_limit
            swaps.append(
                (_pack_position(self.block_position), _pack_position(file_limit))
            )
        block = _resolve_nodes(layout, self.block, self.block_nodes, swaps)
        levels = tuple(_resolve_coordinates(level, swaps) for level in self.levels)
        metadata = self.metadata
        if metadata is not None and metadata[0] in resolved:
            metadata = (resolved[metadata[0]], metadata[1])
        master = None
        master_bytes = b""
        if self.commit_serial is not None:
            master = MasterNode(
                serial=self.commit_serial,
                file_limit=file_limit,
                metadata=metadata,
                levels=levels,
                tail=tail,
                block=block,
                max_block=max_block,
            )
            master_bytes = encode_master(layout, master)
        return FlushResult(
            writes=_merge(writes),
            grow_to=grow_to,
            file_limit=file_limit,
            tail=tail,
            file_size=file_size,
            max_block=max_block,
            placed=placed,
            block=block,
            levels=levels,
            metadata=metadata,
            master=master,
            master_bytes=master_bytes,
        )


Piece = bytes | memoryview


def whole_pages(
    start: int, small: bytes, big: bytes, page: int
) -> tuple[list[tuple[int, Piece]], bytes]:
    """The writes of the whole pages of ``small + big`` placed at ``start``
    (a page boundary), and the bytes after the last whole page.

    Only ``small`` and the bytes of ``big`` up to the first page boundary
    are copied; the rest of ``big`` is written from where it is (a worker
    thread copying tens of megabytes holds the interpreter that long).
    """
    cut = min(len(big), -len(small) % page)
    first = small + big[:cut]
    rest = memoryview(big)[cut:]
    if not rest:
        whole = len(first) // page * page
        return ([(start, first[:whole])] if whole else []), first[whole:]
    whole = len(rest) // page * page
    writes: list[tuple[int, Piece]] = [(start, first)]
    if whole:
        writes.append((start + len(first), rest[:whole]))
    return writes, bytes(rest[whole:])


#: Writes that follow each other are joined (fewer system calls) unless one
#: is this large: a large one is written from where it is.
JOIN_BELOW = 1024 * 1024


def _merge(writes: list[tuple[int, Piece]]) -> tuple[tuple[int, Piece], ...]:
    """Join small writes that follow each other into one."""
    merged: list[tuple[int, Piece]] = []
    for position, data in writes:
        if (
            merged
            and merged[-1][0] + len(merged[-1][1]) == position
            and len(data) < JOIN_BELOW
            and len(merged[-1][1]) < JOIN_BELOW
        ):
            merged[-1] = (merged[-1][0], bytes(merged[-1][1]) + data)
        else:
            merged.append((position, data))
    return tuple(merged)


def _pack_position(position: int) -> bytes:
    return position.to_bytes(8, "big")


def _resolve_coordinates(
    packed: bytes | bytearray, swaps: Sequence[tuple[bytes, bytes]]
) -> bytes:
    """``packed`` coordinates with placeholders replaced by real positions.

    Safe as a byte replacement: see `placeholder()`.
    """
    out = bytes(packed)
    for old, new in swaps:
        out = out.replace(old, new)
    return out


def _resolve_nodes(
    layout: Layout,
    data: bytes | bytearray,
    nodes: Sequence[int],
    swaps: Sequence[tuple[bytes, bytes]],
) -> bytes:
    """A block's bytes with the placeholders in its full nodes resolved."""
    if not nodes or not swaps:
        return bytes(data)
    out = bytearray(data)
    size = layout.node_size
    for offset in nodes:
        out[offset : offset + size] = _resolve_coordinates(
            data[offset : offset + size], swaps
        )
    return bytes(out)


class CaptureWriter:
    """Appends records and metadata; hands out flush jobs and master nodes."""

    __slots__ = (
        "_block",
        "_block_nodes",
        "_block_position",
        "_block_size",
        "_flushing",
        "_held",
        "_held_bytes",
        "_leaf",
        "_levels",
        "_next_sequence",
        "_node_size",
        "_pending",
        "_pending_bytes",
        "_synced_pages",
        "count",
        "file_limit",
        "file_size",
        "layout",
        "max_block",
        "max_record_size",
        "metadata",
        "serial",
        "tail",
    )

    def __init__(
        self,
        layout: Layout,
        master: MasterNode,
        file_size: int,
        max_record_size: int = 0xFFFFFFFF,
    ) -> None:
        self.layout = layout
        self.max_record_size = max_record_size
        self.serial = master.serial
        self.count = master.record_count(layout.fan_out)
        self.metadata = master.metadata
        self.max_block = master.max_block
        # The data area as placed in the file (or about to be):
        self.file_limit = master.file_limit
        self.tail = master.tail
        self.file_size = file_size
        # What is only in memory:
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._block = bytearray(master.block)
        self._block_position = master.file_limit
        self._block_nodes: list[int] = []
        self._levels = [bytearray(level) for level in master.levels] or [bytearray()]
        # The leaf level changes on every add; it is cleared in place when
        # full, so this alias stays valid.
        self._leaf = self._levels[0]
        # Placeholders are never reused while this writer lives, so a reader
        # may key what it caches by coordinate.
        self._next_sequence = 0
        self._block_size = layout.block_size
        self._node_size = layout.node_size
        self._flushing = False
        # Records added while a flush job is out: they join the blocks once
        # it is done (the job owns what it was given).
        self._held: list[bytes | bytearray] = []
        self._held_bytes = 0
        self._synced_pages = self.pages_written

    # -- adding ------------------------------------------------------------

    def check(self, data: bytes | bytearray) -> None:
        """Raise `ValueError` if ``data`` is over the largest record allowed."""
        if len(data) > self.max_record_size:
            check_size(len(data), self.max_record_size)

    def add_record(self, data: bytes | bytearray) -> int:
        """Append a record and return the new record count (`count`), or 0 if
        a flush is now due.

        While a flush job is out the record is held, and placed when the job
        is finished (`finish_flush()`); the count includes it at once.
        """
        if len(data) > self.max_record_size:
            check_size(len(data), self.max_record_size)
        if self._flushing:
            self._held.append(data)
            self._held_bytes += len(data)
            self.count += 1
            return self.count
        block = self._block
        leaf = self._leaf
        leaf += _pack_coord(self._block_position, len(block))
        block += _pack_u32(len(data))
        self.count += 1
        if len(data) >= LARGE_RECORD and len(data) >= self._block_size:
            self._close_block(bytes(data))
            return 0 if self._settle() else self.count
        block += data
        if (
            len(block) >= self._block_size or len(leaf) == self._node_size
        ) and self._settle():
            return 0
        return self.count

    def add_many(
        self,
        records: Sequence[Any],
        start: int,
        stop: int,
        text: bool,
        below: int = 1 << 62,
    ) -> tuple[int, bool]:
        """Add ``records[start:stop]`` with the compiled kernel, as
        `add_record()` would add each; ``(index reached, flush due)``.

        It stops after a record that makes a flush due, and before one that
        is not bytes (nor, with ``text``, a str, stored as UTF-8) or is over
        ``max_record_size`` or ``below`` bytes, which the caller adds the
        general way; it adds nothing while a flush is out or without the
        kernel.
        """
        if self._flushing or fast_capture_add is None:
            return start, False
        index = start
        limit = min(self.max_record_size, below - 1)
        while index < stop:
            reached = fast_capture_add(
                records, index, stop, self._block, self._leaf, self._block_position,
                self._block_size, self._node_size, limit, text,
            )  # fmt: skip
            self.count += reached - index
            if reached == index:
                break
            index = reached
            if (
                len(self._block) >= self._block_size
                or len(self._leaf) == self._node_size
            ) and self._settle():
                return index, True
        return index, False

    def set_metadata(self, data: bytes | None) -> bool:
        """Replace the metadata (None clears it); True once a flush is due."""
        if data is None:
            self.metadata = None
            return False
        check_size(len(data), self.max_record_size, "metadata")
        if self._flushing:
            raise RuntimeError("metadata cannot be set while a flush is out")
        block = self._block
        self.metadata = (self._block_position, len(block))
        block += _pack_u32(len(data))
        block += data
        return self._settle()

    def _settle(self) -> bool:
        """Close a full block and write out full index nodes, in CaptureFile's
        order; True if a flush is due."""
        if len(self._block) >= self._block_size:
            self._close_block()
        levels = self._levels
        height = 0
        while height < len(levels):
            level = levels[height]
            if len(level) == self._node_size:
                coordinate = _pack_coord(self._block_position, len(self._block))
                self._block_nodes.append(len(self._block))
                self._block += level
                del level[:]
                if height + 1 == len(levels):
                    levels.append(bytearray())
                levels[height + 1] += coordinate
                if len(self._block) >= self._block_size:
                    self._close_block()
            height += 1
        return self.flush_due

    def _close_block(self, body: bytes = b"") -> None:
        self._pending.append(
            _Pending(
                self._block_position,
                bytes(self._block),
                tuple(self._block_nodes),
                body,
            )
        )
        self._pending_bytes += len(self._block) + len(body)
        self._block = bytearray()
        self._block_nodes = []
        self._block_position = placeholder(self._next_sequence)
        self._next_sequence += 1

    @property
    def held(self) -> tuple[int, int]:
        """Records held while a flush is out, and their bytes."""
        return len(self._held), self._held_bytes

    @property
    def flush_due(self) -> bool:
        """True when enough full blocks wait in memory to be flushed."""
        return len(self._pending) >= FLUSH_BLOCKS or self._pending_bytes >= FLUSH_BYTES

    # -- flushing and committing -------------------------------------------

    def begin_flush(self, commit: bool = False) -> FlushJob:
        """A job placing every full block; with ``commit``, also the next
        master node. Records added until `finish_flush()` are held."""
        if self._flushing:
            raise RuntimeError("a flush is already under way")
        self._flushing = True
        return FlushJob(
            layout=self.layout,
            file_limit=self.file_limit,
            tail=self.tail,
            file_size=self.file_size,
            max_block=self.max_block,
            pending=tuple(self._pending),
            block_position=self._block_position,
            block=bytes(self._block),
            block_nodes=tuple(self._block_nodes),
            levels=tuple(bytes(level) for level in self._levels),
            metadata=self.metadata,
            commit_serial=(self.serial + 1) & 0xFFFFFFFF if commit else None,
        )

    def finish_flush(self, result: FlushResult) -> None:
        """Take the state after a job's writes were made."""
        self.file_limit = result.file_limit
        self.tail = result.tail
        self.file_size = result.file_size
        self.max_block = result.max_block
        self._pending = []
        self._pending_bytes = 0
        self._block = bytearray(result.block)
        self._block_position = result.file_limit
        self._levels = [bytearray(level) for level in result.levels]
        self._leaf = self._levels[0]
        self.metadata = result.metadata
        if result.master is not None:
            self.serial = result.master.serial
            self._synced_pages = self.pages_written
        self._flushing = False
        held, self._held = self._held, []
        self._held_bytes = 0
        self.count -= len(held)
        for data in held:  # in the order they came
            self.add_record(data)

    def abandon_flush(self) -> None:
        """The job failed; the writer may not be used again (its file is in an
        unknown state), but reads of what it holds still work. Records held
        meanwhile are dropped."""
        self._flushing = False
        self.count -= len(self._held)
        self._held = []
        self._held_bytes = 0

    @property
    def pages_written(self) -> int:
        """End of the whole pages of the data area written so far."""
        return self.file_limit - len(self.tail)

    @property
    def data_dirty(self) -> bool:
        """True if data pages were written since the last commit."""
        return self.pages_written != self._synced_pages

    # -- reading back --------------------------------------------------------

    def read_view(self) -> ReadView:
        """A snapshot of everything added so far, for reading it back (not
        while a flush is out: records held then are not in it)."""
        memory = {block.position: block.data for block in self._pending}
        memory[self._block_position] = bytes(self._block)
        return ReadView(
            levels=tuple(bytes(level) for level in self._levels),
            metadata=self.metadata,
            count=self.count,
            data_end=self.file_limit,
            tail=self.tail,
            memory=memory,
            max_block=max(
                [self.max_block, len(self._block)]
                + [block.size for block in self._pending]
            ),
        )
