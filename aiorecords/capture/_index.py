"""The index tree of a capture file: finding and walking records.

Records are the leaves of a tree of fan-out ``f``. Full nodes live in data
blocks and never change; the master node keeps the *rightmost path*, for each
height the one node that is not yet full (``levels``). Record number ``n``
(1-based) is found by writing ``n - 1`` in base ``f``, one digit per height,
and walking down from the top: along the rightmost path while the digit equals
that node's child count, then through full nodes.

The walks are push-style: each is a generator that yields the file position
of a data block it needs (an ``int``) and is sent that block's uncompressed
bytes. The driver answers from memory, from the block cache, or by reading
the block (in a worker thread, or from any storage); nothing here reads.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Mapping, MutableMapping
from functools import lru_cache
from typing import Any, TypeAlias, TypeVar

from .._kernels import compiled
from ..errors import InvalidCaptureFile
from ._layout import COORD, U32

__all__ = [
    "Blocks",
    "Nodes",
    "Run",
    "RunWalk",
    "digits",
    "find_item",
    "frame_items",
    "item_at",
    "node_from_block",
    "node_struct",
    "read_item",
    "record_coordinate",
    "walk_runs",
]

R = TypeVar("R")

#: A walk at work: yields a data block's position, is sent the block's
#: uncompressed bytes, and returns ``R``.
Blocks: TypeAlias = Generator[int, bytes, R]

#: Full index nodes by ``(position, offset)``: a cache a walk reads, or the
#: dict it notes the upper nodes it decoded in.
Nodes: TypeAlias = Mapping[tuple[int, int], bytes]

#: A run of record coordinates: ``(positions, offsets)``.
Run: TypeAlias = tuple[tuple[int, ...], tuple[int, ...]]

_unpack_coord = COORD.unpack_from
_unpack_u32 = U32.unpack_from


@lru_cache(maxsize=64)
def node_struct(fan_out: int) -> struct.Struct:
    return struct.Struct(">" + "QL" * fan_out)


def digits(index: int, height: int, fan_out: int) -> list[int]:
    """``index`` in base ``fan_out``, lowest digit first, ``height`` digits."""
    out = []
    for _ in range(height):
        index, digit = divmod(index, fan_out)
        out.append(digit)
    return out


def record_coordinate(
    levels: tuple[bytes, ...] | list[bytearray],
    fan_out: int,
    index: int,
    nodes: Nodes | None = None,
    found: MutableMapping[tuple[int, int], bytes] | None = None,
    placeholder: int | None = None,
) -> Blocks[tuple[int, int]]:
    """The data coordinate of the record at 0-based ``index``.

    Full index nodes above the leaves are taken from ``nodes`` when it holds
    them (every lookup passes through the same few); those decoded from
    blocks instead are noted in ``found``, unless they lie in a block at
    ``placeholder`` or beyond (a writer's unplaced blocks, which move). The
    caller has checked that ``index`` is below the record count.
    """
    path = digits(index, len(levels), fan_out)
    height = len(levels) - 1
    while True:
        level = levels[height]
        digit = path[height]
        if digit * COORD.size < len(level):
            coordinate: tuple[int, int] = _unpack_coord(level, digit * COORD.size)
            break
        if height == 0:
            raise IndexError(index)
        height -= 1
    # ``coordinate`` is a child of the rightmost node at height ``height + 1``:
    # a record if that is height 1, otherwise a full node of height ``height``.
    while height > 0:
        position, offset = coordinate
        key = coordinate
        node = nodes.get(key) if nodes is not None and height > 1 else None
        if node is None:
            node = node_from_block((yield position), offset, fan_out, position)
            if (
                found is not None
                and height > 1
                and (placeholder is None or position < placeholder)
            ):
                found[key] = node
        height -= 1
        coordinate = _unpack_coord(node, path[height] * COORD.size)
    return coordinate


def find_item(
    levels: tuple[bytes, ...] | list[bytearray],
    fan_out: int,
    index: int,
    nodes: Nodes | None = None,
    found: MutableMapping[tuple[int, int], bytes] | None = None,
    placeholder: int | None = None,
) -> Blocks[bytes]:
    """The bytes of the record at 0-based ``index`` (see
    `record_coordinate()`)."""
    position, offset = yield from record_coordinate(
        levels, fan_out, index, nodes, found, placeholder
    )
    return read_item((yield position), offset, position)


def item_at(position: int, offset: int) -> Blocks[bytes]:
    """The sized item (record or metadata) at a coordinate."""
    return read_item((yield position), offset, position)


def node_from_block(block: bytes, offset: int, fan_out: int, position: int) -> bytes:
    """The bytes of the full node at ``offset`` in a block."""
    end = offset + fan_out * COORD.size
    if end > len(block):
        raise InvalidCaptureFile(
            "index node runs past the end of its block", offset=position
        )
    return block[offset:end]


#: A walk over runs: yields a block position (and is sent the block) or a
#: run of coordinates (and is sent None).
RunWalk: TypeAlias = Generator["int | Run", "bytes | None", None]


def walk_runs(
    levels: tuple[bytes, ...] | list[bytearray], fan_out: int, start: int
) -> RunWalk:
    """Coordinates of the records from 0-based ``start`` to the end, in order.

    Between the blocks it wants (positions) it yields runs of coordinates,
    ``(positions, offsets)``: one full leaf node, or the rightmost leaf level,
    at a time, so that a caller reading thousands of records does little
    work per record. It keeps the last block it was sent: consecutive
    nodes usually lie in one block, which is then wanted once.
    """
    path = digits(start, len(levels), fan_out)
    last: list[Any] = [-1, b""]  # the last block sent: position, bytes
    # Walk the rightmost path from the top. At height h (1-based) its node has
    # children that are full subtrees of height h - 1 (records when h == 1).
    for height in range(len(levels), 0, -1):
        level = levels[height - 1]
        first = path[height - 1]
        count = len(level) // COORD.size
        if first > count:
            # ``start`` is past the end of the records.
            raise IndexError(start)
        if height == 1:
            if first < count:
                flat = node_struct(count).unpack_from(level)
                yield flat[2 * first :: 2], flat[2 * first + 1 :: 2]
            return
        for child in range(first, count):
            lower = path[: height - 1] if child == first else None
            yield from _walk_full(
                _unpack_coord(level, child * COORD.size),
                height - 1,
                lower,
                node_struct(fan_out),
                last,
            )
        if first < count:
            # Later rightmost levels start from their beginning.
            path[: height - 1] = [0] * (height - 1)


def _walk_full(
    coordinate: tuple[int, int],
    height: int,
    path: list[int] | None,
    node: struct.Struct,
    last: list[Any],
) -> RunWalk:
    """Runs of coordinates in the full subtree of ``height`` at ``coordinate``.

    ``path`` (lowest digit first) gives where to start inside it; None means
    from its first record. The leaf nodes under a node of height 2 are
    walked here, not by a generator each (one per 32 records would cost
    more than the records).
    """
    flat = yield from _full_node(coordinate, node, last)
    first = path[height - 1] if path is not None else 0
    if height == 1:
        yield flat[2 * first :: 2], flat[2 * first + 1 :: 2]
        return
    for child in range(first, len(flat) // 2):
        lower = path[: height - 1] if (path is not None and child == first) else None
        below = (flat[2 * child], flat[2 * child + 1])
        if height == 2:
            leaf = yield from _full_node(below, node, last)
            at = 0 if lower is None else 2 * lower[0]
            yield leaf[at::2], leaf[at + 1 :: 2]
        else:
            yield from _walk_full(below, height - 1, lower, node, last)


def _full_node(
    coordinate: tuple[int, int], node: struct.Struct, last: list[Any]
) -> Generator[int, bytes | None, tuple[int, ...]]:
    """The coordinates in the full node at ``coordinate``, wanting its block
    unless it is the last one sent."""
    position, offset = coordinate
    if last[0] == position:
        block = last[1]
    else:
        block = yield position
        last[0], last[1] = position, block
    if offset + node.size > len(block):
        raise InvalidCaptureFile(
            "index node runs past the end of its block", offset=position
        )
    flat: tuple[int, ...] = node.unpack_from(block, offset)
    return flat


def read_item(block: bytes, offset: int, position: int) -> bytes:
    """The sized item (record or metadata) at ``offset`` in a block."""
    item: bytes = frame_items(block, (offset,), position)[0]
    return item


def frame_items(
    block: bytes,
    offsets: tuple[int, ...],
    position: int,
    text: str | None = None,
    out: list[Any] | None = None,
    *,
    utf8: bool = False,
) -> list[Any]:
    """The sized items at ``offsets`` in a block: the one framing reader of
    capture files, for one record or thousands.

    With ``text`` (the block decoded as Latin-1, whose characters stand one
    for one for its bytes) items come out as UTF-8 ``str``: ASCII ones are
    sliced from it, without a decode each, others decoded from the block;
    with ``utf8`` instead, each is decoded from the block. The compiled
    ``capture_items`` kernel, where built, does this work (the loops here
    are its reference) up to an item outside the block.
    They are added to ``out`` if given (a stream's batch), which is returned.
    An item that does not lie wholly inside the block raises
    [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile]: the index
    (or a master node forged with a valid checksum) points outside the data.
    """
    if out is None:
        out = []
    if fast_capture_items is not None and type(offsets) is tuple:
        done = fast_capture_items(block, offsets, 0, utf8 or text is not None, out)
        if done == len(offsets):
            return out
        # It stopped at an item outside the block: the loops below raise
        # the error for it.
        offsets = offsets[done:]
    size = len(block)
    unpack = _unpack_u32
    append = out.append
    # Offsets are unsigned (the index stores them so); one past the end of
    # the block makes unpack_from raise, caught once outside the loops.
    try:
        if text is None and not utf8:
            for offset in offsets:
                (length,) = unpack(block, offset)
                end = offset + 4 + length
                if end > size:
                    raise _overrun(length, position)
                append(block[offset + 4 : end])
        else:
            if text is None:
                text = block.decode("latin-1")
            for offset in offsets:
                (length,) = unpack(block, offset)
                end = offset + 4 + length
                if end > size:
                    raise _overrun(length, position)
                item = text[offset + 4 : end]
                append(item if item.isascii() else block[offset + 4 : end].decode())
    except struct.error:
        raise InvalidCaptureFile(
            "a record's coordinate points past the end of its block",
            offset=position,
        ) from None
    return out


fast_capture_items = compiled.capture_items if compiled else None


def _overrun(length: int, position: int) -> InvalidCaptureFile:
    return InvalidCaptureFile(
        f"record of {length} bytes runs past the end of its block", offset=position
    )
