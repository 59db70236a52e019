"""One process-wide cache of uncompressed data blocks, bounded in bytes.

Data blocks of a capture file never change once written, so a block read for
one lookup serves every later lookup that lands in it. The cache is shared by
every open file in the process (as LevelDB's block cache is shared by its
tables), so memory stays bounded however many files are open.

Each open file gets its own namespace, dropped when it closes: a block
position is only meaningful for one open file, and never reused across
opens, so a new writer that overwrites uncommitted space can never be served
a stale block.

Only the event loop thread changes the cache. Worker threads may call
`BlockCache.peek()` (a single dictionary read, which the GIL makes
atomic); what they load is handed back to the loop, which inserts it.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Final

__all__ = ["BlockCache", "block_cache", "set_block_cache_size"]

DEFAULT_CAPACITY: Final = 128 * 1024 * 1024

Key = tuple[int, int]


class BlockCache:
    """Least-recently-used blocks, at most ``capacity`` bytes in all."""

    __slots__ = ("_blocks", "_namespaces", "_next_namespace", "capacity", "size")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.size = 0
        self._blocks: OrderedDict[Key, bytes] = OrderedDict()
        self._namespaces: dict[int, set[int]] = {}
        self._next_namespace = itertools.count(1)

    def namespace(self) -> int:
        """A new namespace for one open file."""
        namespace = next(self._next_namespace)
        self._namespaces[namespace] = set()
        return namespace

    def drop(self, namespace: int) -> None:
        """Forget every block of ``namespace`` (the file was closed)."""
        for position in self._namespaces.pop(namespace, ()):
            block = self._blocks.pop((namespace, position), None)
            if block is not None:
                self.size -= len(block)

    def peek(self, namespace: int, position: int) -> bytes | None:
        """The block if cached, without touching the LRU order (any thread)."""
        return self._blocks.get((namespace, position))

    def get(self, namespace: int, position: int) -> bytes | None:
        """The block if cached, marking it recently used (event loop only)."""
        key = (namespace, position)
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, namespace: int, position: int, block: bytes) -> None:
        """Add a block, evicting the least recently used ones over capacity."""
        positions = self._namespaces.get(namespace)
        if positions is None or len(block) > self.capacity:
            return
        key = (namespace, position)
        old = self._blocks.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._blocks[key] = block
        positions.add(position)
        self.size += len(block)
        while self.size > self.capacity:
            (evicted_namespace, evicted_position), evicted = self._blocks.popitem(
                last=False
            )
            self.size -= len(evicted)
            self._namespaces[evicted_namespace].discard(evicted_position)

    def resize(self, capacity: int) -> None:
        """Change the capacity, evicting at once if it shrank."""
        self.capacity = capacity
        while self.size > self.capacity and self._blocks:
            (namespace, position), evicted = self._blocks.popitem(last=False)
            self.size -= len(evicted)
            self._namespaces[namespace].discard(position)


block_cache: Final = BlockCache()


def set_block_cache_size(capacity: int) -> None:
    """Set how many bytes of uncompressed blocks the process may cache.

    The default is 128 MiB, shared by every open capture file. Only random
    lookups fill it (a stream keeps just the block it is in, a writer just
    the last block it wrote), so it grows only as random reads need it. 0
    disables it: each lookup then reads and decompresses its blocks again.
    """
    if capacity < 0:
        raise ValueError("the cache size cannot be negative")
    block_cache.resize(capacity)
