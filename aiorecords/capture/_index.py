"""The index tree of a capture file: finding and walking records.

Records are the leaves of a tree of fan-out ``f``. Full nodes live in data
blocks and never change; the master node keeps the *rightmost path*, for each
height the one node that is not yet full (``levels``). Record number ``n``
(1-based) is found by writing ``n - 1`` in base ``f``, one digit per height,
and walking down from the top: along the rightmost path while the digit equals
that node's child count, then through full nodes.

Blocks are reached through a ``block_at(position)`` callable that returns a
block's uncompressed bytes, so this module stays free of I/O: callers pass a
function over a cache, a file, or bytes in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from functools import lru_cache

from ..errors import InvalidCaptureFile
from ._layout import COORD, U32

__all__ = [
    "BlockAt",
    "NodeAt",
    "iter_coordinates",
    "node_from_block",
    "node_struct",
    "read_item",
    "record_coordinate",
]

#: Returns the uncompressed bytes of the data block at a file position.
BlockAt = Callable[[int], bytes]

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


#: Returns the bytes of the full index node at ``(position, offset)`` whose
#: children have height ``height - 1``; see `record_coordinate()`.
NodeAt = Callable[[int, int, int], bytes]


def record_coordinate(
    levels: tuple[bytes, ...] | list[bytearray],
    fan_out: int,
    index: int,
    block_at: BlockAt,
    node_at: NodeAt | None = None,
) -> tuple[int, int]:
    """The data coordinate of the record at 0-based ``index``.

    Full index nodes are read through ``node_at`` if given (so a caller can
    keep the few upper nodes every lookup passes through in a small cache),
    otherwise straight from their blocks. The caller has checked that
    ``index`` is below the record count.
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
        if node_at is not None:
            node = node_at(position, offset, height)
            at = 0
        else:
            node = block_at(position)
            at = offset
        height -= 1
        at += path[height] * COORD.size
        if at + COORD.size > len(node):
            raise InvalidCaptureFile(
                "index node runs past the end of its block", offset=position
            )
        coordinate = _unpack_coord(node, at)
    return coordinate


def node_from_block(block: bytes, offset: int, fan_out: int, position: int) -> bytes:
    """The bytes of the full node at ``offset`` in a block."""
    end = offset + fan_out * COORD.size
    if end > len(block):
        raise InvalidCaptureFile(
            "index node runs past the end of its block", offset=position
        )
    return block[offset:end]


def iter_coordinates(
    levels: tuple[bytes, ...] | list[bytearray],
    fan_out: int,
    start: int,
    block_at: BlockAt,
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Coordinates of the records from 0-based ``start`` to the end, in order.

    They come in runs, ``(positions, offsets)``: one full leaf node, or the
    rightmost leaf level, at a time, so that a caller reading thousands of
    records does little work per record.
    """
    path = digits(start, len(levels), fan_out)
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
                block_at,
            )
        if first < count:
            # Later rightmost levels start from their beginning.
            path[: height - 1] = [0] * (height - 1)


def _walk_full(
    coordinate: tuple[int, int],
    height: int,
    path: list[int] | None,
    node: struct.Struct,
    block_at: BlockAt,
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Runs of coordinates in the full subtree of ``height`` at ``coordinate``.

    ``path`` (lowest digit first) gives where to start inside it; None means
    from its first record.
    """
    position, offset = coordinate
    block = block_at(position)
    if offset + node.size > len(block):
        raise InvalidCaptureFile(
            "index node runs past the end of its block", offset=position
        )
    flat = node.unpack_from(block, offset)
    first = path[height - 1] if path is not None else 0
    if height == 1:
        yield flat[2 * first :: 2], flat[2 * first + 1 :: 2]
        return
    for child in range(first, len(flat) // 2):
        lower = path[: height - 1] if (path is not None and child == first) else None
        yield from _walk_full(
            (flat[2 * child], flat[2 * child + 1]), height - 1, lower, node, block_at
        )


def read_item(block: bytes, offset: int, position: int) -> bytes:
    """The sized item (record or metadata) at ``offset`` in a block."""
    if offset + 4 > len(block):
        raise InvalidCaptureFile("item lies past the end of its block", offset=position)
    (size,) = _unpack_u32(block, offset)
    end = offset + 4 + size
    if end > len(block):
        raise InvalidCaptureFile(
            f"item of {size} bytes runs past the end of its block", offset=position
        )
    return block[offset + 4 : end]
