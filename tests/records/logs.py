"""Logs built in memory for the LevelDB format tests: written, damaged on
purpose, read back."""

from __future__ import annotations

import struct

from crc32c import crc32c

from aiorecords.records._log import (
    BLOCK_SIZE,
    HEADER_SIZE,
    LogDecoder,
    LogEncoder,
    mask_crc,
)


def physical(kind: int, data: bytes) -> bytes:
    """One physical record, written out from the format description."""
    checksum = mask_crc(crc32c(bytes([kind]) + data))
    return struct.pack("<IHB", checksum, len(data), kind) + data


class Log:
    """A log written in memory, damaged on purpose, then read back."""

    def __init__(self) -> None:
        self.encoder = LogEncoder()
        self.data = bytearray()

    def write(self, record: bytes) -> None:
        self.encoder.encode(record, self.data)

    def reopen_for_append(self) -> None:
        self.encoder = LogEncoder(len(self.data) % BLOCK_SIZE)

    def fix_checksum(self, header_offset: int, length: int) -> None:
        crc = crc32c(bytes(self.data[header_offset + 6 : header_offset + 7 + length]))
        struct.pack_into("<I", self.data, header_offset, mask_crc(crc))

    def read(
        self, start: int = 0, stop: int | None = None
    ) -> tuple[list[bytes], LogDecoder]:
        decoder = LogDecoder(start, stop)
        decoder.feed(bytes(self.data[decoder.wanted :]))
        decoder.feed_eof()
        records = []
        while (record := decoder.read()) is not None:
            records.append(record[0])
        return records, decoder


def dropped(decoder: LogDecoder) -> int:
    return sum(region.length for region in decoder.dropped)


def reasons(decoder: LogDecoder) -> str:
    return "; ".join(region.reason for region in decoder.dropped)


def big(part: bytes, n: int) -> bytes:
    return (part * (n // len(part) + 1))[:n]


def number(n: int) -> bytes:
    return f"{n}.".encode()


# The initial-offset log of log_test.cc (and two more records): sizes, and
# where each record starts.
SIZES = [10000, 10000, 2 * BLOCK_SIZE - 1000, 1, 13716, BLOCK_SIZE - HEADER_SIZE]
STARTS = [
    0,
    HEADER_SIZE + 10000,
    2 * (HEADER_SIZE + 10000),
    2 * (HEADER_SIZE + 10000) + (2 * BLOCK_SIZE - 1000) + 3 * HEADER_SIZE,
    2 * (HEADER_SIZE + 10000)
    + (2 * BLOCK_SIZE - 1000)
    + 3 * HEADER_SIZE
    + HEADER_SIZE
    + 1,
    3 * BLOCK_SIZE,
]


def offset_log() -> Log:
    log = Log()
    for index, size in enumerate(SIZES):
        log.write(bytes([ord("a") + index]) * size)
    return log


def extents(data: bytes) -> list[tuple[int, int]]:
    """Where each record of a whole, undamaged log lies: (first byte, just
    past its last)."""
    decoder = LogDecoder()
    decoder.feed(data)
    decoder.feed_eof()
    found = []
    while (record := decoder.read()) is not None:
        found.append((record[1], record[2]))
    assert decoder.dropped == []
    assert decoder.torn_tail is None
    return found
