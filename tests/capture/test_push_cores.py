"""The capture file cores are push-style: they say what they want and are
fed it. These drive them directly over files built in memory (no async
layer, no file), the way the drivers do, and feed them damage."""

from __future__ import annotations

import random

import pytest
from memory_image import MemoryImage

from aiorecords._wants import Read, answer_all, answer_reads
from aiorecords.capture._index import find_item, frame_items, item_at
from aiorecords.capture._layout import (
    COORD,
    Layout,
    fetch_block,
    parse_block_header,
    written_end,
)
from aiorecords.capture._stream import RecordStream
from aiorecords.errors import InvalidCaptureFile, RecordNotText

LAYOUTS = [
    pytest.param(Layout(False, page_size=256, block_size=512, fan_out=2), id="v2-f2"),
    pytest.param(Layout(True, page_size=256, block_size=768, fan_out=5), id="f5"),
    pytest.param(Layout(True), id="native-default"),
]


def texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice("abcé€😀 ") for _ in range(rng.choice([0, 1, 7, 60, 300])))
        for _ in range(count)
    ]


def image_of(layout: Layout, records: list[bytes]) -> MemoryImage:
    image = MemoryImage(layout)
    for record in records:
        image.add(record)
    image.commit()
    return image


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("encoding", [None, "utf-8", "utf_16"])
def test_a_stream_in_batches_of_any_size_gives_every_record(
    layout: Layout, encoding: str | None
) -> None:
    records = texts(700)
    stored = [r.encode(encoding or "utf-8") for r in records]
    image = image_of(layout, stored)
    view = image.committed_view()
    block_at = image.block_at(view)
    expected = stored if encoding is None else records
    for batch in (1, 7, 4096):
        for start in (0, 1, 350, 699):
            stream = RecordStream(view.levels, layout.fan_out, start, encoding)
            got: list = []
            while taken := answer_all(stream.take(batch), block_at):
                assert len(taken) <= batch
                got += taken
            assert got == expected[start:]
    for index in (0, 31, 699):
        steps = find_item(view.levels, layout.fan_out, index)
        assert answer_all(steps, block_at) == stored[index]


def test_a_walk_wants_blocks_one_at_a_time_and_may_move_between_drivers() -> None:
    layout = Layout(True, page_size=256, block_size=768, fan_out=5)
    stored = [b"record %d" % n for n in range(500)]
    image = image_of(layout, stored)
    view = image.committed_view()
    block_at = image.block_at(view)
    steps = find_item(view.levels, layout.fan_out, 321)
    wants = [next(steps)]
    # The walk is resumable anywhere: what started on one driver (the event
    # loop, from a cache) ends on another (a worker thread).
    wants.append(steps.send(block_at(wants[-1])))
    result = answer_all(_resumed(steps, wants), block_at)
    assert result == stored[321]
    assert all(isinstance(want, int) for want in wants)


def _resumed(steps, wants):
    """A walk already under way, as a generator a driver can start again."""
    want = wants[-1]
    while True:
        block = yield want
        try:
            want = steps.send(block)
        except StopIteration as done:
            return done.value
        wants.append(want)


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_an_item_whose_size_field_runs_past_its_block_is_refused(cut: int) -> None:
    block = (3).to_bytes(4, "big") + b"abc" + b"\0\0\0\x05xy"
    at = len(block) - cut  # a coordinate pointing into the block's last bytes
    with pytest.raises(InvalidCaptureFile, match="past the end of its block") as err:
        frame_items(block, (at,), 8192)
    assert err.value.offset == 8192
    with pytest.raises(InvalidCaptureFile):
        frame_items(block, (-1,), 8192)
    assert frame_items(block, (0,), 8192) == [b"abc"]


def test_a_stream_refuses_a_record_that_is_not_text() -> None:
    layout = Layout(True)
    image = image_of(layout, [b"fine", b"\xff\xfe not utf-8"])
    view = image.committed_view()
    stream = RecordStream(view.levels, layout.fan_out, 0, "utf-8")
    with pytest.raises(RecordNotText):
        answer_all(stream.take(10), image.block_at(view))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fetch_block_reads_what_it_says_and_refuses_what_is_cut(
    layout: Layout,
) -> None:
    stored = [bytes([n % 251]) * 200 for n in range(400)]
    image = image_of(layout, stored)
    view = image.committed_view()
    # The data area as a reader sees it: the file's whole pages, then the
    # last partial page, which only the master node holds.
    written = view.data_end - len(view.tail)
    data = bytes(image.data[:written]) + view.tail
    position = layout.data_start
    wants: list[Read] = []

    def pread(offset: int, size: int) -> bytes:
        wants.append(Read(offset, size))
        return data[offset : offset + size]

    block = answer_reads(fetch_block(layout, position, view.data_end, 1 << 20), pread)
    assert block == image.block_at(view)(position)
    assert wants[0].offset == position  # header and payload in one read, mostly
    length, _ = parse_block_header(layout, data[position:])
    assert sum(want.size for want in wants) >= layout.block_header_size + length
    for keep in (0, 3, layout.block_header_size + 1):

        def short(offset: int, size: int, keep: int = keep) -> bytes:
            return data[offset : offset + size][:keep]

        with pytest.raises(InvalidCaptureFile, match="ends before") as err:
            answer_reads(fetch_block(layout, position, view.data_end, 1 << 20), short)
        assert err.value.offset == position + keep
    with pytest.raises(InvalidCaptureFile, match="outside the data"):
        answer_reads(fetch_block(layout, 0, view.data_end, 1 << 20), pread)


def test_written_end_finds_the_last_data_byte() -> None:
    data = b"\0" * 100 + b"x" * 50 + b"\0" * (3 << 20)

    def pread(offset: int, size: int) -> bytes:
        return data[offset : offset + size]

    assert answer_reads(written_end(0, len(data)), pread) == 150
    assert answer_reads(written_end(150, len(data)), pread) == 150
    assert answer_reads(written_end(0, 100), pread) == 0


def test_an_item_walk_is_one_want() -> None:
    block = (2).to_bytes(4, "big") + b"hi"
    steps = item_at(4096, 0)
    assert next(steps) == 4096
    with pytest.raises(StopIteration) as done:
        steps.send(block)
    assert done.value.value == b"hi"
    assert COORD.size == 12
