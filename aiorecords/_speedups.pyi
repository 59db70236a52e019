# The compiled kernels (aiorecords/_speedups.c); each one's Python twin is
# in the format's core.
from collections.abc import Sequence
from typing import Any

_Record = bytes | bytearray | memoryview | str
_Buffer = bytes | bytearray | memoryview

crc_instruction: int

def crc32c(data: _Buffer, value: int = 0, /) -> int: ...
def log_encode(
    records: Sequence[_Record],
    start: int,
    stop: int,
    block_offset: int,
    out: bytearray,
    max_bytes: int,
    /,
) -> tuple[int, int]: ...
def log_full_records(
    buffer: _Buffer,
    buffer_start: int,
    block_start: int,
    pos: int,
    start: int,
    stop: int,
    limit: int,
    out: list[Any],
    /,
) -> tuple[int, int, int]: ...
def tf_frame(
    records: Sequence[_Record],
    start: int,
    stop: int,
    out: bytearray,
    max_bytes: int,
    /,
) -> int: ...
def tf_good_records(
    buffer: _Buffer,
    at: int,
    base: int,
    stop: int,
    max_record_size: int,
    limit: int,
    out: list[Any],
    /,
) -> int: ...
def archive_elements(
    data: _Buffer,
    base: int,
    end: int,
    floor: int,
    codec_names: tuple[str | None, ...],
    entry_type: type,
    slots: tuple[Any, ...],
    most: int,
    out: list[Any],
    /,
) -> int: ...
def archive_frame(
    start: int,
    name: _Buffer,
    comment: _Buffer,
    timestamp: int,
    codec: int,
    stored: int,
    data_size: int,
    payload_crc: int,
    /,
) -> tuple[bytes, int, bytes]: ...
def take_records(
    pending: list[Any], index: int, max_bytes: int, out: list[bytes], /
) -> tuple[int, int]: ...
def capture_items(
    block: _Buffer, offsets: tuple[int, ...], start: int, text: bool, out: list[Any], /
) -> int: ...
def capture_add(
    records: Sequence[Any],
    start: int,
    stop: int,
    block: bytearray,
    leaf: bytearray,
    block_position: int,
    block_size: int,
    node_size: int,
    max_record_size: int,
    text: bool,
    /,
) -> int: ...
