"""A capture file built in memory through the sans-IO core alone.

The core tests use it to write and read capture files without the async
layer or the file system: it applies flush results to a bytearray exactly as
the async layer applies them to a file.
"""

from __future__ import annotations

from aiorecords._wants import answer_all
from aiorecords.capture._index import (
    find_item,
    item_at,
    walk_runs,
)
from aiorecords.capture._layout import (
    Layout,
    MasterNode,
    choose_master,
    decode_block,
    encode_header,
    parse_block_header,
)
from aiorecords.capture._writer import CaptureWriter, FlushJob, ReadView


def iter_coordinates(levels, fan_out: int, start: int, block_at):
    """The runs of coordinates from ``start``, answering the walk's block
    wants with ``block_at`` (a driver of `walk_runs()`)."""
    walk = walk_runs(levels, fan_out, start)
    reply = None
    while True:
        try:
            item = walk.send(reply)
        except StopIteration:
            return
        if isinstance(item, int):
            reply = block_at(item)
        else:
            reply = None
            yield item


class MemoryImage:
    """The bytes of one capture file, and its writer."""

    def __init__(self, layout: Layout, initial_metadata: bytes | None = None) -> None:
        self.layout = layout
        self.flushes = 0
        self.data = bytearray(encode_header(layout))
        self.resize(layout.data_start)
        empty = MasterNode(0, layout.data_start, None, (), b"", b"")
        self.writer = CaptureWriter(layout, empty, layout.data_start)
        self.writer.set_metadata(initial_metadata)
        self.commit()
        self.commit()
        if len(self.data) < layout.initial_file_size:
            self.resize(layout.initial_file_size)
            self.writer.file_size = layout.initial_file_size

    def resize(self, size: int) -> None:
        if size > len(self.data):
            self.data.extend(bytes(size - len(self.data)))
        else:
            del self.data[size:]

    def write(self, position: int, data: bytes) -> None:
        end = position + len(data)
        if end > len(self.data):
            self.resize(end)
        self.data[position:end] = data

    def apply(self, job: FlushJob) -> None:
        result = job.run()
        if result.grow_to is not None:
            self.resize(result.grow_to)
        for position, data in result.writes:
            self.write(position, data)
        if result.master is not None:
            self.write(self.layout.slots[result.master.serial % 2], result.master_bytes)
        self.writer.finish_flush(result)
        self.flushes += 1

    def add(self, record: bytes) -> None:
        if not self.writer.add_record(record):
            self.apply(self.writer.begin_flush())

    def set_metadata(self, data: bytes | None) -> None:
        if self.writer.set_metadata(data):
            self.apply(self.writer.begin_flush())

    def commit(self) -> None:
        self.apply(self.writer.begin_flush(commit=True))

    # -- reading, as a reader of the file would ------------------------------

    def master(self) -> MasterNode:
        size = self.layout.master_size
        start = self.layout.slots[0]
        return choose_master(
            self.layout,
            bytes(self.data[start : start + size]),
            bytes(self.data[start + size : start + 2 * size]),
        )

    def committed_view(self) -> ReadView:
        return ReadView.of(self.master(), self.layout.fan_out)

    def block_at(self, view: ReadView):
        layout = self.layout
        header = layout.block_header_size

        def read(position: int, size: int) -> bytes:
            written = view.data_end - len(view.tail)
            out = bytes(self.data[position : min(position + size, written)])
            if position + size > written:
                start = max(position, written) - written
                out += view.tail[start : start + size - len(out)]
            return out

        def block_at(position: int) -> bytes:
            if position in view.memory:
                return view.memory[position]
            length, crc = parse_block_header(layout, read(position, header))
            payload = read(position + header, length)
            return decode_block(layout, crc, payload, 1 << 30)

        return block_at

    def records(self, view: ReadView | None = None) -> list[bytes]:
        view = view or self.committed_view()
        block_at = self.block_at(view)
        out = []
        for positions, offsets in iter_coordinates(
            view.levels, self.layout.fan_out, 0, block_at
        ):
            for position, offset in zip(positions, offsets, strict=True):
                out.append(answer_all(item_at(position, offset), block_at))
        return out

    def record(self, index: int, view: ReadView | None = None) -> bytes:
        view = view or self.committed_view()
        block_at = self.block_at(view)
        return answer_all(find_item(view.levels, self.layout.fan_out, index), block_at)

    def metadata(self, view: ReadView | None = None) -> bytes | None:
        view = view or self.committed_view()
        if view.metadata is None:
            return None
        return answer_all(item_at(*view.metadata), self.block_at(view))
