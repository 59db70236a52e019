"""The byte layout of capture files: first page, master nodes, data blocks.

Two layouts share one structure (see ``docs/formats/capture.md``):

* **version 2**, as CaptureFile 1.2.0 writes it: ``MioCapture\\0``, zlib data
  blocks, master nodes protected by zlib's CRC-32;
* **aiorecords native**, version 1: ``AioCapture\\0``, zstd data blocks each
  with a CRC-32C, master nodes protected by CRC-32C and written only as far as
  they are used, and the codec recorded in the first page.

Integers are big-endian and unsigned throughout.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c

from .._codecs import (
    ZLIB_MAX_RATIO,
    DecodeError,
    LimitExceeded,
    zlib_compress,
    zlib_decompress,
    zstd_compress,
    zstd_decompress,
)
from .._wants import Read
from ..errors import InvalidCaptureFile

__all__ = [
    "COORD",
    "Layout",
    "MasterNode",
    "U32",
    "capture_version",
    "is_capture",
    "commit_damage",
    "compress_block",
    "compress_block_parts",
    "decode_block",
    "decode_header",
    "decode_master",
    "encode_header",
    "encode_master",
    "fetch_block",
    "parse_block_header",
    "written_end",
]

V2_MAGIC: Final = b"MioCapture\0"
V2_OLD_MAGIC: Final = b"WebCapture\0"  # an older writer's name; readers accept it
NATIVE_MAGIC: Final = b"AioCapture\0"
V2_VERSION: Final = 2
NATIVE_VERSION: Final = 1
CODEC_ZSTD: Final = 1

DEFAULT_PAGE_SIZE: Final = 4096
DEFAULT_BLOCK_SIZE: Final = 32768
DEFAULT_FAN_OUT: Final = 32

#: A new file is pre-sized to this many pages to limit fragmentation.
INITIAL_PAGES: Final = 100
#: The file grows by at most this much at a time (and never more than doubles).
GROWTH_LIMIT: Final = 5 * 1024 * 1024

#: One byte far past any data: holding it exclusively means "open for write".
WRITER_LOCK_OFFSET: Final = 0x7FFFFFFFFFFFFFFE

_HEADER: Final = struct.Struct(">11s4L")
_NATIVE_HEADER: Final = struct.Struct(">11s4LB")  # ... then a CRC-32C of these bytes
_V2_MASTER_HEAD: Final = struct.Struct(">LQLQLL")  # serial .. N, after the CRC
_NATIVE_MASTER_HEAD: Final = struct.Struct(">LQLQLQL")  # adds the largest block
U32: Final = struct.Struct(">L")
#: A data coordinate: the file position of a block, and an offset inside it.
COORD: Final = struct.Struct(">QL")
_CHILD: Final = struct.Struct(">BQL")

# Bounds on the first page's numbers, so a damaged header cannot make a reader
# allocate or loop without end.
_MAX_PAGE_SIZE: Final = 1 << 20
_MAX_BLOCK_SIZE: Final = 1 << 30
_MAX_FAN_OUT: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class Layout:
    """The numbers fixed in a file's first page, and what follows from them."""

    native: bool
    """True for aiorecords' own zstd layout, False for version 2 (zlib)."""
    page_size: int = DEFAULT_PAGE_SIZE
    block_size: int = DEFAULT_BLOCK_SIZE
    fan_out: int = DEFAULT_FAN_OUT

    def __post_init__(self) -> None:
        if not 64 <= self.page_size <= _MAX_PAGE_SIZE:
            raise ValueError(f"page size {self.page_size} is out of range")
        if not 0 < self.block_size <= _MAX_BLOCK_SIZE:
            raise ValueError(
                f"compression block size {self.block_size} is out of range"
            )
        if self.block_size % self.page_size:
            raise ValueError(
                f"compression block size {self.block_size} is not a multiple "
                f"of the page size {self.page_size}"
            )
        if not 2 <= self.fan_out <= _MAX_FAN_OUT:
            raise ValueError(f"fan-out {self.fan_out} is out of range")

    @property
    def codec(self) -> str:
        """``"zstd"`` or ``"zlib"``."""
        return "zstd" if self.native else "zlib"

    @property
    def master_size(self) -> int:
        """Bytes reserved for each master node slot."""
        return 2 * self.page_size + self.block_size

    @property
    def slots(self) -> tuple[int, int]:
        """File offsets of the two master node slots."""
        return (self.page_size, self.page_size + self.master_size)

    @property
    def data_start(self) -> int:
        """Where the data area begins: just after the second slot."""
        return self.page_size + 2 * self.master_size

    @property
    def node_size(self) -> int:
        """Bytes of one full index node: ``fan_out`` coordinates."""
        return self.fan_out * COORD.size

    @property
    def block_header_size(self) -> int:
        """Bytes before a data block's compressed payload."""
        return 8 if self.native else 4

    @property
    def initial_file_size(self) -> int:
        """The size a new file is given when it is created."""
        return max(self.data_start, INITIAL_PAGES * self.page_size)

    @property
    def max_children(self) -> int:
        """How many rightmost-path children fit in a master node's first page."""
        head = _NATIVE_MASTER_HEAD.size if self.native else _V2_MASTER_HEAD.size
        return (self.page_size - 4 - head) // _CHILD.size

    def master_crc(self, data: bytes | bytearray | memoryview) -> int:
        """The checksum that protects a master node."""
        return crc32c(data) if self.native else zlib.crc32(data)


# --------------------------------------------------------------------------
# The first page


def encode_header(layout: Layout) -> bytes:
    """The whole first page of a new file."""
    page = bytearray(layout.page_size)
    if layout.native:
        _NATIVE_HEADER.pack_into(
            page,
            0,
            NATIVE_MAGIC,
            NATIVE_VERSION,
            layout.page_size,
            layout.block_size,
            layout.fan_out,
            CODEC_ZSTD,
        )
        end = _NATIVE_HEADER.size
        U32.pack_into(page, end, crc32c(page[:end]))
    else:
        _HEADER.pack_into(
            page,
            0,
            V2_MAGIC,
            V2_VERSION,
            layout.page_size,
            layout.block_size,
            layout.fan_out,
        )
    return bytes(page)


#: How many bytes `decode_header()` needs.
HEADER_SIZE: Final = _NATIVE_HEADER.size + 4


def decode_header(data: bytes) -> Layout:
    """The layout described by a file's first bytes (at least 27 of them).

    Raises [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile] for anything
    that is not a capture file this code can read.
    """
    if len(data) < _HEADER.size:
        raise InvalidCaptureFile(
            f"file is {len(data)} bytes long, too short for a capture file", offset=0
        )
    magic, version, page_size, block_size, fan_out = _HEADER.unpack_from(data)
    if magic in (V2_MAGIC, V2_OLD_MAGIC):
        if version > V2_VERSION:
            raise InvalidCaptureFile(
                f"capture file version {version} is newer than the "
                f"supported version {V2_VERSION}",
                offset=11,
            )
        native = False
    elif magic == NATIVE_MAGIC:
        if len(data) < HEADER_SIZE:
            raise InvalidCaptureFile("first page is cut short", offset=0)
        (stored_crc,) = U32.unpack_from(data, _NATIVE_HEADER.size)
        if crc32c(data[: _NATIVE_HEADER.size]) != stored_crc:
            raise InvalidCaptureFile("first page checksum does not match", offset=0)
        if version > NATIVE_VERSION:
            raise InvalidCaptureFile(
                f"aiorecords capture format version {version} is newer than the "
                f"supported version {NATIVE_VERSION}",
                offset=11,
            )
        codec = data[_NATIVE_HEADER.size - 1]
        if codec != CODEC_ZSTD:
            raise InvalidCaptureFile(f"unknown codec {codec}", offset=27)
        native = True
    else:
        raise InvalidCaptureFile("not a capture file (unknown signature)", offset=0)
    try:
        return Layout(native, page_size, block_size, fan_out)
    except ValueError as error:
        raise InvalidCaptureFile(f"first page is damaged: {error}", offset=15) from None


def is_capture(head: bytes) -> bool:
    """Whether a file's first bytes begin with a capture file's signature
    (of either layout)."""
    return head[:11] in (V2_MAGIC, V2_OLD_MAGIC, NATIVE_MAGIC)


def capture_version(head: bytes) -> int | None:
    """The format version a capture file's first bytes name; None if they
    are too few (under 15) or not a capture file's."""
    if len(head) < 15 or not is_capture(head):
        return None
    version: int = U32.unpack_from(head, 11)[0]
    return version


# --------------------------------------------------------------------------
# Master nodes


@dataclass(frozen=True, slots=True)
class MasterNode:
    """One committed state of a capture file.

    ``levels[h - 1]`` holds, packed as 12-byte coordinates, the children of the
    rightmost index node at height ``h`` (height 1 holds records).
    """

    serial: int
    """Commit serial number; wraps at 2**32."""
    file_limit: int
    """The logical end of the data area."""
    metadata: tuple[int, int] | None
    """Coordinate of the metadata item, or None for no metadata."""
    levels: tuple[bytes, ...]
    """Children of the rightmost node of each height, lowest first."""
    tail: bytes
    """Data-area bytes from the last page boundary up to ``file_limit``."""
    block: bytes
    """The compression block still held uncompressed, at ``file_limit``."""
    max_block: int = 0
    """Largest uncompressed data block written so far (native layout only)."""

    @property
    def data_end(self) -> int:
        """Where the bytes this commit needs from the file end (the tail
        after that is held in the master node itself)."""
        return self.file_limit - len(self.tail)

    def record_count(self, fan_out: int) -> int:
        """Records reachable from this node."""
        count = 0
        weight = 1
        for level in self.levels:
            count += len(level) // COORD.size * weight
            weight *= fan_out
        return count


def encode_master(layout: Layout, node: MasterNode) -> bytes:
    """The bytes to write at the node's slot (``slots[serial % 2]``)."""
    page = layout.page_size
    block_len = len(node.block)
    if block_len > layout.block_size or len(node.tail) != node.file_limit % page:
        raise ValueError("master node contents do not fit their slot")
    size = layout.master_size if not layout.native else 2 * page + block_len
    buffer = bytearray(size)
    children = sum(len(level) for level in node.levels) // COORD.size
    if children > layout.max_children:
        raise ValueError("index tree too deep for the master node")
    meta_pos, meta_off = node.metadata if node.metadata is not None else (0, 0)
    if layout.native:
        _NATIVE_MASTER_HEAD.pack_into(
            buffer,
            4,
            node.serial,
            node.file_limit,
            block_len,
            meta_pos,
            meta_off,
            node.max_block,
            children,
        )
        at = 4 + _NATIVE_MASTER_HEAD.size
    else:
        _V2_MASTER_HEAD.pack_into(
            buffer,
            4,
            node.serial,
            node.file_limit,
            block_len,
            meta_pos,
            meta_off,
            children,
        )
        at = 4 + _V2_MASTER_HEAD.size
    for height, level in enumerate(node.levels, start=1):
        for start in range(0, len(level), COORD.size):
            buffer[at] = height
            buffer[at + 1 : at + _CHILD.size] = level[start : start + COORD.size]
            at += _CHILD.size
    buffer[page : page + len(node.tail)] = node.tail
    buffer[2 * page : 2 * page + block_len] = node.block
    U32.pack_into(buffer, 0, layout.master_crc(memoryview(buffer)[4:]))
    return bytes(buffer)


def decode_master(layout: Layout, data: bytes) -> MasterNode | None:
    """Decode one slot; None if its checksum fails (a torn or unwritten slot).

    A slot whose checksum matches but whose contents are impossible raises
    [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile] with the offset inside
    the slot.
    """
    page = layout.page_size
    if len(data) < 2 * page:
        return None
    (stored_crc,) = U32.unpack_from(data, 0)
    if layout.native:
        (
            serial,
            file_limit,
            block_len,
            meta_pos,
            meta_off,
            max_block,
            children,
        ) = _NATIVE_MASTER_HEAD.unpack_from(data, 4)
        at = 4 + _NATIVE_MASTER_HEAD.size
        if block_len > layout.block_size or 2 * page + block_len > len(data):
            return None
        covered = memoryview(data)[4 : 2 * page + block_len]
    else:
        (
            serial,
            file_limit,
            block_len,
            meta_pos,
            meta_off,
            children,
        ) = _V2_MASTER_HEAD.unpack_from(data, 4)
        max_block = 0
        at = 4 + _V2_MASTER_HEAD.size
        if len(data) < layout.master_size:
            return None
        covered = memoryview(data)[4 : layout.master_size]
    if layout.master_crc(covered) != stored_crc:
        return None

    def invalid(reason: str, offset: int) -> InvalidCaptureFile:
        return InvalidCaptureFile(f"master node {serial}: {reason}", offset=offset)

    if block_len > layout.block_size:
        raise invalid(f"compression block length {block_len} is too large", 16)
    if not layout.data_start <= file_limit < 1 << 62:
        raise invalid(f"file limit {file_limit} is impossible", 8)
    if children > layout.max_children:
        raise invalid(f"{children} index children cannot fit", at - 4)
    levels: list[bytearray] = []
    for _ in range(children):
        height, position, offset = _CHILD.unpack_from(data, at)
        if height < len(levels) or height == 0:
            raise invalid("index children are out of order", at)
        if not _coordinate_ok(layout, position, offset, file_limit, block_len):
            raise invalid("index child points outside the data", at)
        while len(levels) < height:
            levels.append(bytearray())
        levels[height - 1] += data[at + 1 : at + _CHILD.size]
        at += _CHILD.size
    for height, level in enumerate(levels, start=1):
        if len(level) >= layout.node_size:
            raise invalid(f"rightmost node at height {height} is over-full", 36)
    if (meta_pos, meta_off) == (0, 0):
        metadata = None
    elif _coordinate_ok(layout, meta_pos, meta_off, file_limit, block_len):
        metadata = (meta_pos, meta_off)
    else:
        raise invalid("metadata points outside the data", 20)
    tail_len = file_limit % page
    return MasterNode(
        serial=serial,
        file_limit=file_limit,
        metadata=metadata,
        levels=tuple(bytes(level) for level in levels),
        tail=bytes(data[page : page + tail_len]),
        block=bytes(data[2 * page : 2 * page + block_len]),
        max_block=max_block,
    )


def _coordinate_ok(
    layout: Layout, position: int, offset: int, file_limit: int, block_len: int
) -> bool:
    if position == file_limit:
        return offset < block_len
    return layout.data_start <= position < file_limit


class MasterNodesInconsistent(InvalidCaptureFile):
    """Both slots are unusable or do not follow each other.

    While a writer is committing this can be a passing state seen by a reader,
    which therefore reads again before believing it.
    """

    #: What the reader saw (a fingerprint of both slots), set by the reader.
    observed: int | None = None


def choose_master(
    layout: Layout,
    first: bytes,
    second: bytes,
    *,
    slot_offsets: bool = True,
    file_size: int | None = None,
) -> MasterNode:
    """The current master node of a file, given the bytes of both slots.

    The current node is the valid one with the higher serial number; two valid
    nodes must be consecutive (modulo 2**32). Given ``file_size``, a newest
    node whose data the file no longer holds all of (the file was cut short)
    gives way to the previous one if that one's data is whole.
    """
    nodes = (decode_master(layout, first), decode_master(layout, second))
    a, b = nodes
    if a is None and b is None:
        raise MasterNodesInconsistent(
            "both master nodes are damaged", offset=layout.slots[0]
        )
    if a is None or b is None:
        node = a if a is not None else b
        assert node is not None
        return node
    delta = (a.serial - b.serial) & 0xFFFFFFFF
    if delta in (1, 0xFFFFFFFF):
        newest, previous = (a, b) if delta == 1 else (b, a)
        if file_size is not None and newest.data_end > file_size >= previous.data_end:
            return previous
        return newest
    raise MasterNodesInconsistent(
        f"master nodes hold serial numbers {a.serial} and {b.serial}, "
        "which do not follow each other",
        offset=layout.slots[0],
    )


def commit_damage(
    layout: Layout,
    first: bytes,
    second: bytes,
    chosen: MasterNode,
    *,
    file_size: int | None = None,
) -> str | None:
    """What is known of a commit newer than ``chosen`` (the node
    `choose_master()` gave for these slots) that could not be used, or
    None if ``chosen`` is the newest commit the file holds.

    The slot ``chosen`` is not in holds either the commit before it (a
    harmless older one, None here) or a newer one: torn by a crash while it
    was written, or damaged after it was committed. The two cannot be told
    apart from the bytes, so a writer must not overwrite it unasked.
    """
    slots = (first, second)
    other = slots[(chosen.serial + 1) % 2]
    node = decode_master(layout, other)
    if node is not None:
        if node.serial == (chosen.serial + 1) & 0xFFFFFFFF:
            # Whole, but its data is not: the file was cut short.
            size = "?" if file_size is None else file_size
            return (
                f"commit {node.serial} (the newest) needs {node.data_end} bytes "
                f"of data but the file holds {size}"
            )
        return None
    if (
        len(other) >= 8
        and (chosen.serial - 1) & 0xFFFFFFFF == U32.unpack_from(other, 4)[0]
    ):
        return None  # the previous commit's slot is damaged: nothing is lost
    slot = layout.slots[(chosen.serial + 1) % 2]
    return (
        f"the master node at offset {slot} fails its checksum: it held commit "
        f"{(chosen.serial + 1) & 0xFFFFFFFF} (torn by a crash, or damaged since)"
    )


# --------------------------------------------------------------------------
# Data blocks


def compress_block(layout: Layout, raw: bytes | bytearray) -> bytes:
    """A whole data block, header included, holding ``raw`` compressed."""
    header, payload = compress_block_parts(layout, raw)
    return header + payload


def compress_block_parts(layout: Layout, raw: bytes | bytearray) -> tuple[bytes, bytes]:
    """`compress_block()` as its header and its payload, not joined (a large
    block's payload is written without a copy)."""
    if layout.native:
        payload = zstd_compress(raw)
        return U32.pack(len(payload)) + U32.pack(crc32c(payload)), payload
    payload = zlib_compress(raw)
    return U32.pack(len(payload)), payload


def parse_block_header(layout: Layout, header: bytes) -> tuple[int, int]:
    """``(payload length, checksum)`` from a block's first bytes (checksum 0 in v2)."""
    (length,) = U32.unpack_from(header, 0)
    crc = U32.unpack_from(header, 4)[0] if layout.native else 0
    return length, crc


def decode_block(layout: Layout, crc: int, payload: bytes, limit: int) -> bytes:
    """The uncompressed bytes of a block, at most ``limit`` of them.

    Raises `DecodeError` if the block is
    damaged or would exceed ``limit``.
    """
    if layout.native:
        if crc32c(payload) != crc:
            raise DecodeError("data block checksum does not match")
        return zstd_decompress(payload, limit)
    return zlib_decompress(payload, min(limit, ZLIB_MAX_RATIO * len(payload) + 64))


def fetch_block(
    layout: Layout, position: int, data_end: int, limit: int
) -> Generator[Read, bytes, bytes]:
    """Read and decode the data block at ``position`` (push-style: it yields
    the byte ranges it wants and is sent them): its uncompressed bytes, at
    most ``limit`` of them.

    ``data_end`` is where the committed data ends; a block reaching past it,
    or bytes missing before it, raise
    [`InvalidCaptureFile`][aiorecords.errors.InvalidCaptureFile].
    """
    header = layout.block_header_size
    available = data_end - position - header
    if position < layout.data_start or available < 0:
        raise InvalidCaptureFile("data block lies outside the data", offset=position)
    # One read usually covers header and payload: payloads are compressed
    # blocks, rarely larger than the block size.
    size = header + min(available, layout.block_size)
    first = yield Read(position, size)
    _check_read(first, position, size)
    length, crc = parse_block_header(layout, first)
    if length > available:
        raise InvalidCaptureFile(
            f"data block length {length} runs past the end of the data",
            offset=position,
        )
    end = header + length
    payload = first[header:end]
    if len(payload) < length:
        more = yield Read(position + len(first), end - len(first))
        _check_read(more, position + len(first), end - len(first))
        payload += more
    try:
        return decode_block(layout, crc, payload, limit)
    except LimitExceeded as error:
        hint = "" if layout.native else " (a larger max_record_size may read it)"
        raise InvalidCaptureFile(f"{error}{hint}", offset=position) from None
    except DecodeError as error:
        raise InvalidCaptureFile(str(error), offset=position) from None


def _check_read(data: bytes, offset: int, size: int) -> None:
    if len(data) < size:
        raise InvalidCaptureFile(
            "file ends before its committed data does", offset=offset + len(data)
        )


#: Bytes looked at per read when finding where data written ends.
_DATA_END_STEP: Final = 1 << 20


def written_end(start: int, end: int) -> Generator[Read, bytes, int]:
    """The end of the last non-zero byte in ``[start, end)`` of the file
    (``start`` if none), push-style: what lies after it is space grown ahead
    of need, not data."""
    while end > start:
        at = max(start, end - _DATA_END_STEP)
        chunk = (yield Read(at, end - at)).rstrip(b"\0")
        if chunk:
            return at + len(chunk)
        end = at
    return start
