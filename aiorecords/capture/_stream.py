"""Streaming records out of a capture file, a batch at a time (push-style).

A [`RecordStream`][aiorecords.capture._stream.RecordStream] walks the index
from a starting record and frames the records out of their blocks; each
`take()` is a generator that yields the blocks it needs and returns the
records it gathered. The walk is kept between batches, so the index nodes
above the records are read once per stream, not once per batch.
"""

from __future__ import annotations

import codecs
from typing import Any, Final

from ..errors import RecordNotText
from ._index import Blocks, RunWalk, fast_capture_items, frame_items, walk_runs

__all__ = ["MAX_BATCH_BYTES", "RecordStream"]

#: The most record bytes one batch gathers (block bytes looked at).
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024


class RecordStream:
    """A sequential read of records from 0-based ``start`` to the end."""

    __slots__ = (
        "_block",
        "_block_position",
        "_encoding",
        "_offsets",
        "_positions",
        "_runs",
        "_text",
        "_text_position",
        "_utf8",
    )

    def __init__(
        self,
        levels: tuple[bytes, ...] | list[bytearray],
        fan_out: int,
        start: int,
        encoding: str | None,
    ) -> None:
        self._runs: RunWalk = walk_runs(levels, fan_out, start)
        self._positions: tuple[int, ...] = ()
        self._offsets: tuple[int, ...] = ()
        self._encoding = encoding
        self._utf8 = encoding is not None and codecs.lookup(encoding).name == "utf-8"
        self._text = ""
        self._text_position = -1
        self._block_position = -1  # of the block being read (and for errors)
        self._block = b""  # its bytes: the next run is usually in it too

    def take(self, count: int) -> Blocks[list[Any]]:
        """Up to ``count`` records: fewer at the end, or once the blocks read
        pass `MAX_BATCH_BYTES` (so huge records come a few at a time).

        A record that lies outside its block raises
        [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile], one that
        is not text in the stream's encoding
        [`RecordNotText`][aiorecords.errors.RecordNotText].
        """
        try:
            return (yield from self._take(count))
        except UnicodeDecodeError as error:
            raise RecordNotText(
                f"a record is not {self._encoding} text ({error.reason}); "
                "open the file with encoding=None to read its bytes",
                error,
                offset=self._block_position,
            ) from None

    def _take(self, count: int) -> Blocks[list[Any]]:
        out: list[Any] = []
        budget = MAX_BATCH_BYTES
        positions, offsets = self._positions, self._offsets
        while len(out) < count and budget > 0:
            if not offsets:
                # The next run of coordinates, answering the walk's block
                # wants (inline: a generator per run would cost more).
                runs = self._runs
                try:
                    item = runs.send(None)
                    while isinstance(item, int):
                        item = runs.send((yield item))
                except StopIteration:
                    break
                positions, offsets = item
            room = count - len(out)
            if room < len(offsets):
                positions, rest_positions = positions[:room], positions[room:]
                offsets, rest_offsets = offsets[:room], offsets[room:]
            else:
                rest_positions = rest_offsets = ()
            # Positions never decrease along the records: the run is cut into
            # the stretches that lie in one block (usually just one).
            at = 0
            while at < len(positions):
                position = positions[at]
                if at == 0 and positions[-1] == position:
                    stop, stretch = len(positions), offsets  # the usual case
                else:
                    stop = at + 1
                    while stop < len(positions) and positions[stop] == position:
                        stop += 1
                    stretch = offsets[at:stop]
                if position == self._block_position:
                    block = self._block
                else:
                    self._block_position = position
                    block = self._block = yield position
                budget -= len(block)
                self._frame(block, position, stretch, out)
                at = stop
            positions, offsets = rest_positions, rest_offsets
        self._positions, self._offsets = positions, offsets
        return out

    def _frame(
        self, block: bytes, position: int, offsets: tuple[int, ...], out: list[Any]
    ) -> None:
        """Add the records at ``offsets`` in one block to ``out``, as the
        stream gives them."""
        encoding = self._encoding
        if not encoding:
            frame_items(block, offsets, position, None, out)
        elif self._utf8 and fast_capture_items is not None:
            # The compiled kernel decodes each record (ASCII at memory speed).
            frame_items(block, offsets, position, None, out, utf8=True)
        elif self._utf8:
            # Most text records are ASCII: decode the block once as Latin-1
            # (one byte, one character) and slice it; a slice that is not all
            # ASCII is decoded properly instead.
            if self._text_position != position:
                self._text = block.decode("latin-1")
                self._text_position = position
            frame_items(block, offsets, position, self._text, out)
        else:
            out += [
                item.decode(encoding) for item in frame_items(block, offsets, position)
            ]
