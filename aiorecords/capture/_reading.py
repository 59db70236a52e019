"""Reading an open capture file: records by number, streams, metadata.

Each read runs an index walk of the sans-IO core (`capture._index`,
`capture._stream`). Blocks in memory or in the process-wide block cache are
used on the event loop; from the first block that is not, the walk goes on
in one worker-thread hop. A stream takes its records a batch at a time, one
hop per batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, TypeAlias, TypeVar

from .._cache import block_cache
from ..errors import CorruptionError, InvalidCaptureFile, RecordNotText
from ._index import Blocks, find_item, item_at
from ._opened import OpenFile
from ._stream import RecordStream
from ._threads import BlockReader
from ._writer import PLACEHOLDER, ReadView
from ._writing import Writes

__all__ = ["Reads", "Record"]

Record: TypeAlias = str | bytes
"""A record as a capture file returns it, ``str | bytes``: ``str`` when the
file has an encoding, else ``bytes``."""

T = TypeVar("T")

# Records fetched per worker-thread hop while streaming: few at first, so the
# first record comes quickly, then more, but few enough that the worker never
# holds the GIL for long (the event loop waits for it meanwhile).
_FIRST_BATCH: Final = 128
_MAX_BATCH: Final = 4096

# Upper index nodes (those above the leaves) kept per open file. Every lookup
# passes through one node per level, and there are few of them: 1,000,000
# records at fan-out 32 have 1,057.
_MAX_UPPER_NODES: Final = 8192


class Reads:
    """The reads of one open file, and the caches they keep."""

    def __init__(self, opened: OpenFile, writes: Writes | None) -> None:
        self._opened = opened
        self._settings = opened.settings
        self._writes = writes
        self._upper_nodes: dict[tuple[int, int], bytes] = {}
        self._metadata: tuple[tuple[int, int], bytes] | None = None

    async def _current_view(self) -> ReadView:
        """What reads see now: the last commit for a reader; everything
        added for a writer."""
        if self._writes is None:
            return self._opened.view
        return await self._writes.current_view()

    async def record_at(self, record_number: int) -> Record:
        """The record numbered ``record_number`` (checked to be in range)."""
        opened = self._opened
        view = await self._current_view()
        found: dict[tuple[int, int], bytes] = {}
        steps = find_item(
            view.levels,
            opened.layout.fan_out,
            record_number - 1,
            self._upper_nodes,
            found,
            PLACEHOLDER,
        )
        try:
            data = await self._walk(view, steps)
        except CorruptionError as error:
            raise self._settings.corrupt(error) from None
        if found:
            self._keep_nodes(found)
        encoding = self._settings.encoding
        if not encoding:
            return data
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            raise RecordNotText(
                f"record {record_number} is not {encoding} text "
                f"({error.reason}); open the file with encoding=None to read "
                "its bytes",
                error,
                path=self._settings.file_name,
            ) from None

    async def metadata(self) -> bytes | None:
        """The metadata of the current view, or None."""
        view = await self._current_view()
        coordinate = view.metadata
        if coordinate is None:
            return None
        cached = self._metadata
        if cached is not None and cached[0] == coordinate:
            return cached[1]
        try:
            data = await self._walk(view, item_at(*coordinate))
        except CorruptionError as error:
            raise self._settings.corrupt(error) from None
        self._metadata = (coordinate, data)
        return data

    async def generate(self, start: int, end: int) -> AsyncIterator[Record]:
        """Records from 0-based ``start`` to ``end``, a batch per hop."""
        opened = self._opened
        view = await self._current_view()
        stream: RecordStream | None = None
        reader: BlockReader | None = None
        batch_size = _FIRST_BATCH
        try:
            while start < end:
                opened.check("iterate over the records of")
                if stream is None or reader is None:
                    stream = RecordStream(
                        view.levels,
                        opened.layout.fan_out,
                        start,
                        self._settings.encoding,
                    )
                    reader = opened.reader(view, keep=4)
                take = stream.take(min(batch_size, end - start))
                try:
                    batch: list[Record] = await opened.walk(take, None, reader)
                except CorruptionError as error:
                    raise self._settings.corrupt(error) from None
                if not batch:  # pragma: no cover - the count said there was more
                    raise self._settings.corrupt(
                        InvalidCaptureFile("index ends before its records")
                    )
                start += len(batch)
                batch_size = min(batch_size * 4, _MAX_BATCH)
                for record in batch:
                    yield record
        finally:
            if reader is not None:
                await opened.end_stream(reader)

    async def _walk(self, view: ReadView, steps: Blocks[T]) -> T:
        """Run an index walk: on the event loop while the blocks it wants are
        in memory or in the block cache, then (from the first that is not)
        in one worker-thread hop."""
        opened = self._opened
        memory = view.memory
        get = block_cache.get
        namespace = opened.namespace
        try:
            position = next(steps)
            while True:
                block = memory.get(position)
                if block is None:
                    block = get(namespace, position)
                    if block is None:
                        break
                position = steps.send(block)
        except StopIteration as done:
            result: T = done.value
            return result
        opened.check("read")  # (a writer's view may have been awaited)
        reader = opened.reader(view)
        walked: T = await opened.walk(steps, position, reader)
        opened.keep(reader.loaded)
        return walked

    def _keep_nodes(self, found: dict[tuple[int, int], bytes]) -> None:
        nodes = self._upper_nodes
        nodes.update(found)
        while len(nodes) > _MAX_UPPER_NODES:
            del nodes[next(iter(nodes))]
