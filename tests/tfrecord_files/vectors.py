"""TFRecord framing worked out without the library: a bitwise CRC-32C (the
Castagnoli polynomial, reflected) and TensorFlow's mask, from their
definitions, so that the vectors do not come from the code they check."""

from __future__ import annotations

import struct


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> bytes:
    # tensorflow/core/lib/hash/crc32c.h: rotate right by 15 bits, add a
    # constant.
    crc = crc32c_bitwise(data)
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return struct.pack("<I", (rotated + 0xA282EAD8) & 0xFFFFFFFF)


def framed(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + masked(length) + record + masked(record)
