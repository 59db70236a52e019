"""The capture file byte layout: first page, master nodes, data blocks."""

from __future__ import annotations

import struct
import zlib

import pytest
from crc32c import crc32c

from aiorecords._codecs import DecodeError
from aiorecords.capture._layout import (
    COORD,
    HEADER_SIZE,
    Layout,
    MasterNode,
    MasterNodesInconsistent,
    choose_master,
    compress_block,
    decode_block,
    decode_header,
    decode_master,
    encode_header,
    encode_master,
    parse_block_header,
)
from aiorecords.errors import InvalidCaptureFile

V2 = Layout(native=False)
NATIVE = Layout(native=True)
LAYOUTS = [pytest.param(V2, id="v2"), pytest.param(NATIVE, id="native")]


def coords(*pairs: tuple[int, int]) -> bytes:
    return b"".join(COORD.pack(p, o) for p, o in pairs)


def sample_node(layout: Layout, serial: int = 7) -> MasterNode:
    start = layout.data_start
    return MasterNode(
        serial=serial,
        file_limit=start + 5000,
        metadata=(start, 10),
        levels=(coords((start, 0), (start + 5000, 4)), b"", coords((start, 400))),
        tail=(bytes(range(256)) * 4)[: 5000 % layout.page_size],
        block=b"x" * 100,
        max_block=40000 if layout.native else 0,
    )


# -- the first page ----------------------------------------------------------


def test_v2_header_is_capturefile_layout() -> None:
    page = encode_header(V2)
    assert len(page) == 4096
    assert page[:27] == struct.pack(">11s4L", b"MioCapture\0", 2, 4096, 32768, 32)
    assert page[27:] == bytes(4096 - 27)


def test_native_header_records_codec_and_checksum() -> None:
    page = encode_header(NATIVE)
    assert page[:11] == b"AioCapture\0"
    assert page[27] == 1  # zstd
    assert struct.unpack(">L", page[28:32])[0] == crc32c(page[:28])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_header_round_trip_whole_prefixes_and_trailing_garbage(layout: Layout) -> None:
    page = encode_header(layout)
    assert decode_header(page) == layout
    assert decode_header(page[:HEADER_SIZE] + b"\xff" * 100) == layout
    needed = 27 if not layout.native else HEADER_SIZE
    for cut in range(needed):  # fed one byte at a time: too short until complete
        with pytest.raises(InvalidCaptureFile):
            decode_header(page[:cut])
    assert decode_header(page[:needed]) == layout


def test_old_signature_is_read() -> None:
    page = bytearray(encode_header(V2))
    page[:11] = b"WebCapture\0"
    assert decode_header(bytes(page)) == V2


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (0, b"NotCapture\0", "unknown signature"),
        (11, struct.pack(">L", 3), "newer than the supported version 2"),
        (15, struct.pack(">L", 0), "page size"),
        (15, struct.pack(">L", 0xFFFFFFFF), "page size"),
        (19, struct.pack(">L", 4097), "not a multiple"),
        (23, struct.pack(">L", 1), "fan-out"),
        (23, struct.pack(">L", 0xFFFFFFFF), "fan-out"),
    ],
)
def test_bad_v2_headers_are_refused(offset: int, value: bytes, reason: str) -> None:
    page = bytearray(encode_header(V2))
    page[offset : offset + len(value)] = value
    with pytest.raises(InvalidCaptureFile, match=reason) as caught:
        decode_header(bytes(page))
    assert caught.value.offset is not None


def test_native_header_checksum_and_codec_are_checked() -> None:
    page = bytearray(encode_header(NATIVE))
    page[20] ^= 1
    with pytest.raises(InvalidCaptureFile, match="checksum"):
        decode_header(bytes(page))
    page = bytearray(encode_header(NATIVE))
    page[27] = 9
    struct.pack_into(">L", page, 28, crc32c(page[:28]))
    with pytest.raises(InvalidCaptureFile, match="unknown codec 9"):
        decode_header(bytes(page))
    page = bytearray(encode_header(NATIVE))
    struct.pack_into(">L", page, 11, 2)
    struct.pack_into(">L", page, 28, crc32c(page[:28]))
    with pytest.raises(InvalidCaptureFile, match="newer"):
        decode_header(bytes(page))


def test_layout_numbers_follow_the_format_note() -> None:
    assert V2.master_size == 40960
    assert V2.slots == (4096, 45056)
    assert V2.data_start == 86016
    assert V2.initial_file_size == 409600
    assert (
        Layout(False, block_size=1 << 20).initial_file_size
        == Layout(False, block_size=1 << 20).data_start
    )
    with pytest.raises(ValueError, match="multiple"):
        Layout(False, block_size=5000)


# -- master nodes ------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_master_round_trip(layout: Layout) -> None:
    node = sample_node(layout)
    data = encode_master(layout, node)
    assert decode_master(layout, data) == node
    assert decode_master(layout, data + b"\xee" * 1000) == node  # trailing garbage


def test_v2_master_is_the_full_slot_with_zlib_crc() -> None:
    node = sample_node(V2)
    data = encode_master(V2, node)
    assert len(data) == V2.master_size
    assert struct.unpack(">L", data[:4])[0] == zlib.crc32(data[4:])
    serial, limit, block_len, meta_pos, meta_off, children = struct.unpack(
        ">LQLQLL", data[4:36]
    )
    assert (serial, limit, block_len) == (7, node.file_limit, 100)
    assert (meta_pos, meta_off, children) == (V2.data_start, 10, 3)
    # Children come level by level, each with its height.
    heights = [data[36 + 13 * i] for i in range(3)]
    assert heights == [1, 1, 3]
    assert data[4096 : 4096 + len(node.tail)] == node.tail
    assert data[8192 : 8192 + 100] == b"x" * 100
    assert data[8292:] == bytes(V2.master_size - 8292)


def test_native_master_is_written_only_as_far_as_used() -> None:
    node = sample_node(NATIVE)
    data = encode_master(NATIVE, node)
    assert len(data) == 2 * 4096 + 100
    assert struct.unpack(">L", data[:4])[0] == crc32c(data[4:])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_master_fed_a_byte_at_a_time_is_rejected_until_whole(layout: Layout) -> None:
    data = encode_master(layout, sample_node(layout))
    for cut in range(len(data)):
        assert decode_master(layout, data[:cut]) is None
    assert decode_master(layout, data) is not None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_any_flipped_bit_fails_the_checksum(layout: Layout) -> None:
    data = encode_master(layout, sample_node(layout))
    for position in [0, 3, 4, 8, 20, 36, 50, 4095, 4096, 5000, 8192, len(data) - 1]:
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        assert decode_master(layout, bytes(damaged)) is None


def reseal(layout: Layout, data: bytearray) -> bytes:
    """Recompute a master node's checksum after editing it."""
    struct.pack_into(">L", data, 0, layout.master_crc(memoryview(data)[4:]))
    return bytes(data)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("field_offset", "fmt", "value", "reason"),
    [
        (8, ">Q", 0, "file limit"),
        (8, ">Q", (1 << 64) - 1, "file limit"),
        (32, ">L", 0xFFFFFFFF, "cannot fit"),  # v2 child count
    ],
)
def test_impossible_master_contents_are_invalid(
    layout: Layout, field_offset: int, fmt: str, value: int, reason: str
) -> None:
    if layout.native and field_offset == 32:
        field_offset = 40  # the native child count follows the largest block
    data = bytearray(encode_master(layout, sample_node(layout)))
    struct.pack_into(fmt, data, field_offset, value)
    with pytest.raises(InvalidCaptureFile, match=reason):
        decode_master(layout, reseal(layout, data))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_master_children_must_point_into_the_data(layout: Layout) -> None:
    node = sample_node(layout)
    bad = MasterNode(
        node.serial,
        node.file_limit,
        None,
        (coords((node.file_limit + 1, 0)),),
        node.tail,
        node.block,
    )
    with pytest.raises(InvalidCaptureFile, match="outside the data"):
        decode_master(layout, encode_master(layout, bad))
    bad = MasterNode(node.serial, node.file_limit, (5, 5), (), node.tail, node.block)
    with pytest.raises(InvalidCaptureFile, match="metadata"):
        decode_master(layout, encode_master(layout, bad))
    bad = MasterNode(
        node.serial, node.file_limit, (node.file_limit, 100), (), node.tail, node.block
    )
    with pytest.raises(InvalidCaptureFile, match="metadata"):
        decode_master(layout, encode_master(layout, bad))


def test_master_children_must_be_in_height_order() -> None:
    data = bytearray(encode_master(V2, sample_node(V2)))
    data[36] = 3  # first child claims height 3, the next ones 1
    with pytest.raises(InvalidCaptureFile, match="out of order"):
        decode_master(V2, reseal(V2, data))


def test_full_rightmost_node_is_invalid() -> None:
    start = V2.data_start
    node = MasterNode(
        1, start + 10, None, (coords(*[(start, 0)] * 32),), bytes(10), b""
    )
    with pytest.raises(InvalidCaptureFile, match="over-full"):
        decode_master(V2, encode_master(V2, node))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_choose_master_takes_the_newer_of_consecutive_nodes(layout: Layout) -> None:
    old = encode_master(layout, sample_node(layout, serial=4))
    new = encode_master(layout, sample_node(layout, serial=5))
    assert choose_master(layout, old, new).serial == 5
    assert choose_master(layout, new, old).serial == 5
    wrap_old = encode_master(layout, sample_node(layout, serial=0xFFFFFFFF))
    wrap_new = encode_master(layout, sample_node(layout, serial=0))
    assert choose_master(layout, wrap_new, wrap_old).serial == 0
    torn = b"\0" * len(old)
    assert choose_master(layout, torn, old).serial == 4
    assert choose_master(layout, new, torn).serial == 5


@pytest.mark.parametrize("layout", LAYOUTS)
def test_choose_master_refuses_gaps_and_two_damaged_nodes(layout: Layout) -> None:
    a = encode_master(layout, sample_node(layout, serial=4))
    b = encode_master(layout, sample_node(layout, serial=7))
    with pytest.raises(MasterNodesInconsistent, match="do not follow"):
        choose_master(layout, a, b)
    with pytest.raises(MasterNodesInconsistent, match="both master nodes"):
        choose_master(layout, b"", b"\x01" * len(a))


# -- data blocks ---------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("raw", [b"", b"a", bytes(range(256)) * 200])
def test_block_round_trip(layout: Layout, raw: bytes) -> None:
    framed = compress_block(layout, raw)
    length, crc = parse_block_header(layout, framed)
    payload = framed[layout.block_header_size :]
    assert length == len(payload)
    assert decode_block(layout, crc, payload, len(raw)) == raw


def test_v2_block_is_length_and_zlib_stream() -> None:
    raw = b"record data " * 100
    framed = compress_block(V2, raw)
    assert framed == struct.pack(">L", len(framed) - 4) + zlib.compress(raw)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_block_over_its_limit_is_refused(layout: Layout) -> None:
    raw = bytes(100_000)
    framed = compress_block(layout, raw)
    _, crc = parse_block_header(layout, framed)
    with pytest.raises(DecodeError, match="limit"):
        decode_block(layout, crc, framed[layout.block_header_size :], 99_999)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_damaged_or_truncated_block_is_refused(layout: Layout) -> None:
    raw = bytes(range(256)) * 50
    framed = compress_block(layout, raw)
    _, crc = parse_block_header(layout, framed)
    payload = framed[layout.block_header_size :]
    for cut in range(0, len(payload), max(1, len(payload) // 40)):
        with pytest.raises(DecodeError):
            decode_block(layout, crc, payload[:cut], len(raw))
    damaged = bytearray(payload)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(DecodeError):
        decode_block(layout, crc, bytes(damaged), len(raw))


def test_bytes_after_the_compressed_stream_are_damage() -> None:
    raw = b"record " * 100
    for layout in (V2, NATIVE):
        framed = compress_block(layout, raw)
        payload = framed[layout.block_header_size :] + b"\x00garbage"
        crc = crc32c(payload)  # a matching checksum: only the codec can tell
        with pytest.raises(DecodeError):
            decode_block(layout, crc, payload, len(raw))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_block_fed_a_byte_at_a_time(layout: Layout) -> None:
    raw = bytes(range(256)) * 8
    framed = compress_block(layout, raw)
    header = layout.block_header_size
    for cut in range(header, len(framed)):
        payload = framed[header:cut]
        with pytest.raises(DecodeError):
            decode_block(layout, crc32c(payload), payload, len(raw))
    _, crc = parse_block_header(layout, framed)
    assert decode_block(layout, crc, framed[header:], len(raw)) == raw
