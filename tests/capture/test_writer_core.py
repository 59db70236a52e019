"""The sans-IO capture writer and index, driven over a file held in memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memory_image import MemoryImage, iter_coordinates

from aiorecords._wants import answer_all
from aiorecords.capture import _writer as capture_writer
from aiorecords.capture._index import digits, record_coordinate
from aiorecords.capture._layout import COORD, Layout, decode_master
from aiorecords.capture._writer import PLACEHOLDER, ReadView, placeholder

SMALL = [
    pytest.param(Layout(False, page_size=256, block_size=512, fan_out=2), id="v2-f2"),
    pytest.param(
        Layout(True, page_size=256, block_size=512, fan_out=3), id="native-f3"
    ),
    pytest.param(
        Layout(True, page_size=256, block_size=768, fan_out=5), id="native-f5"
    ),
]


def records(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 5, 17, 40, 90, 300])) for _ in range(count)]


def levels_have_placeholders(levels: tuple[bytes, ...]) -> bool:
    return any(
        COORD.unpack_from(level, i)[0] >= PLACEHOLDER
        for level in levels
        for i in range(0, len(level), COORD.size)
    )


def test_digits_are_lowest_first() -> None:
    assert digits(0, 3, 32) == [0, 0, 0]
    assert digits(32 * 32 + 5, 3, 32) == [5, 0, 1]


@pytest.mark.parametrize("layout", SMALL)
def test_every_record_is_found_by_number_and_by_walk(layout: Layout) -> None:
    image = MemoryImage(layout)
    expected: list[bytes] = []
    for count in range(1, 160):
        record = records(1, seed=count)[0]
        image.add(record)
        expected.append(record)
        image.commit()
        view = image.committed_view()
        assert view.count == count
        # Every start position of a walk, and every lookup by number.
        block_at = image.block_at(view)
        for start in range(count + 1):
            walked = [
                offset
                for _, offsets in iter_coordinates(
                    view.levels, layout.fan_out, start, block_at
                )
                for offset in offsets
            ]
            assert len(walked) == count - start
        assert [image.record(i, view) for i in range(count)] == expected
    assert image.records() == expected


@pytest.mark.parametrize("layout", SMALL)
def test_walk_past_the_end_is_an_error(layout: Layout) -> None:
    image = MemoryImage(layout)
    for record in records(10):
        image.add(record)
    image.commit()
    view = image.committed_view()
    with pytest.raises(IndexError):
        list(iter_coordinates(view.levels, layout.fan_out, 11, image.block_at(view)))
    with pytest.raises(IndexError):
        answer_all(
            record_coordinate(view.levels, layout.fan_out, 10), image.block_at(view)
        )


@pytest.mark.parametrize("layout", SMALL)
def test_blocks_are_deferred_and_placed_in_one_flush(
    layout: Layout, monkeypatch
) -> None:
    monkeypatch.setattr(capture_writer, "FLUSH_BLOCKS", 1000)
    image = MemoryImage(layout)
    data = records(300, seed=1)
    for record in data:
        assert image.writer.add_record(record)  # never asks for a flush
    # Many full blocks wait, their positions unknown; reads still work.
    view = image.writer.read_view()
    assert len(view.memory) > 3
    assert levels_have_placeholders(view.levels)
    assert image.records(view) == data
    image.commit()
    master = image.master()
    assert not levels_have_placeholders(master.levels)
    assert image.records() == data
    assert [image.record(i) for i in range(0, 300, 7)] == data[::7]


@pytest.mark.parametrize("layout", SMALL)
def test_a_flush_is_asked_for_when_enough_blocks_wait(layout: Layout) -> None:
    image = MemoryImage(layout)
    writer = image.writer
    asked = 0
    for record in records(2000, seed=2):
        if not writer.add_record(record):
            asked += 1
            assert writer.flush_due
            image.apply(writer.begin_flush())
            assert not writer.flush_due
    assert asked > 2
    image.commit()
    assert len(image.records()) == 2000


def test_large_records_close_blocks_by_size() -> None:
    layout = Layout(True, page_size=256, block_size=512, fan_out=3)
    image = MemoryImage(layout)
    big = bytes(range(256)) * 20000  # 5 MiB: over the byte threshold at once
    assert image.writer.add_record(big) == 0
    image.apply(image.writer.begin_flush())
    image.add(b"after")
    image.commit()
    assert image.records() == [big, b"after"]


@pytest.mark.parametrize("layout", SMALL)
def test_metadata_is_committed_with_records(layout: Layout) -> None:
    image = MemoryImage(layout, initial_metadata=b"initial")
    assert image.metadata() == b"initial"
    for n, record in enumerate(records(100, seed=3)):
        image.add(record)
        if n % 9 == 0:
            image.set_metadata(f"offset={n}".encode())
    image.set_metadata(b"")
    image.commit()
    assert image.metadata() == b""
    image.set_metadata(None)
    image.commit()
    assert image.metadata() is None


@pytest.mark.parametrize("layout", SMALL)
def test_uncommitted_records_are_invisible_to_readers(layout: Layout) -> None:
    image = MemoryImage(layout)
    committed = records(50, seed=4)
    for record in committed:
        image.add(record)
    image.commit()
    for record in records(400, seed=5):
        image.add(record)  # some flushes happen: data pages reach the "file"
    assert image.flushes > 3
    assert image.records() == committed


@pytest.mark.parametrize("layout", SMALL)
def test_master_nodes_alternate_slots_and_serials(layout: Layout) -> None:
    image = MemoryImage(layout)
    size = layout.master_size
    for serial in range(3, 9):
        image.add(b"x")
        image.commit()
        slot = layout.slots[serial % 2]
        node = decode_master(layout, bytes(image.data[slot : slot + size]))
        assert node is not None
        assert node.serial == serial
        assert image.master().serial == serial


def test_reopened_writer_continues_the_file() -> None:
    layout = Layout(True, page_size=256, block_size=512, fan_out=3)
    image = MemoryImage(layout)
    data = records(77, seed=6)
    for record in data[:40]:
        image.add(record)
    image.commit()
    # A new writer from the committed state, as after reopening the file.
    image.writer = capture_writer.CaptureWriter(layout, image.master(), len(image.data))
    for record in data[40:]:
        image.add(record)
    image.commit()
    assert image.records() == data


def test_read_view_of_a_master_node() -> None:
    layout = Layout(True, page_size=256, block_size=512, fan_out=3)
    image = MemoryImage(layout)
    image.add(b"one")
    image.commit()
    master = image.master()
    view = ReadView.of(master, layout.fan_out)
    assert view.count == 1
    assert view.memory == {master.file_limit: master.block}


def test_records_over_the_limit_are_refused_before_anything_changes() -> None:
    layout = Layout(True)
    image = MemoryImage(layout)
    image.writer.max_record_size = 10
    with pytest.raises(ValueError, match="over the largest allowed"):
        image.writer.add_record(b"x" * 11)
    assert image.writer.count == 0
    assert image.writer.add_record(b"x" * 10) == 1


def test_placeholders_have_only_high_bytes() -> None:
    seen = set()
    for sequence in [0, 1, 191, 192, 193, 12345, 192**7 - 1]:
        value = placeholder(sequence)
        assert value >= PLACEHOLDER
        assert all(byte >= 0x40 for byte in value.to_bytes(8, "big"))
        seen.add(value)
    assert len(seen) == 7
    with pytest.raises(OverflowError):
        placeholder(192**7)


positions = st.integers(0, (1 << 62) - 1)
offsets = st.integers(0, (1 << 30) - 1)


@given(
    st.lists(
        st.one_of(
            st.tuples(positions, offsets),
            st.tuples(st.integers(0, 5).map(placeholder), offsets),
        ),
        max_size=40,
    ),
    st.lists(positions, min_size=6, max_size=6),
)
def test_resolving_placeholders_changes_only_placeholders(
    coordinates: list[tuple[int, int]], real: list[int]
) -> None:
    """Byte replacement finds placeholders only where positions start."""
    packed = b"".join(COORD.pack(p, o) for p, o in coordinates)
    swaps = [
        (placeholder(i).to_bytes(8, "big"), real[i].to_bytes(8, "big"))
        for i in range(6)
    ]
    expected = b"".join(
        COORD.pack(real[p - placeholder(0)] if p >= PLACEHOLDER else p, o)
        for p, o in coordinates
    )
    assert capture_writer._resolve_coordinates(packed, swaps) == expected


def add_all(image: MemoryImage, data: list, many: bool, rng: random.Random) -> int:
    """Every record added, flushing as the writer asks; with ``many``
    through add_many in random runs (what it leaves, add_record adds)."""
    writer = image.writer
    flushes = index = 0
    while index < len(data):
        due = False
        if many:
            stop = index + rng.randrange(1, 40)
            reached, due = writer.add_many(data, index, stop, True)
            if reached == index:
                record = data[index]
                due = not writer.add_record(
                    record.encode() if isinstance(record, str) else bytes(record)
                )
                reached += 1
            index = reached
        else:
            record = data[index]
            due = not writer.add_record(
                record.encode() if isinstance(record, str) else bytes(record)
            )
            index += 1
        if due:
            flushes += 1
            image.apply(writer.begin_flush())
    return flushes


@pytest.mark.parametrize("layout", SMALL)
@pytest.mark.parametrize("seed", range(3))
def test_add_many_adds_as_add_record_does(layout: Layout, seed: int) -> None:
    """The compiled run (where built) against the reference, add_record:
    the same file, index, flushes and records, with records it leaves to
    Python (bytearray) among the rest."""
    if capture_writer.fast_capture_add is None:
        pytest.skip("aiorecords._speedups is not built")
    rng = random.Random(seed)
    data: list = []
    for n, record in enumerate(records(1500, seed=seed)):
        data.append([record, bytearray(record), record.hex(), "é" * (n % 7)][n % 4])
    ours, theirs = MemoryImage(layout), MemoryImage(layout)
    assert add_all(ours, data, True, rng) == add_all(theirs, data, False, rng)
    assert ours.writer.count == theirs.writer.count == len(data)
    ours.commit()
    theirs.commit()
    assert ours.data == theirs.data
    expected = [r.encode() if isinstance(r, str) else bytes(r) for r in data]
    assert ours.records() == expected
