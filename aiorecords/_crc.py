"""The masked CRC-32C that LevelDB logs and TFRecord files store (one
definition for both formats)."""

from __future__ import annotations

from typing import Final

__all__ = ["MASK_DELTA", "mask_crc", "unmask_crc"]

#: Added after the rotation (inlined by the hot loops that mask).
MASK_DELTA: Final = 0xA282EAD8


def mask_crc(crc: int) -> int:
    """LevelDB's stored form of a CRC: rotated right by 15 bits, plus a delta.

    A CRC computed over data that holds embedded CRCs is then not itself a
    CRC of those bytes, which would weaken it. TensorFlow's TFRecord framing
    stores its CRCs the same way.
    """
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """The CRC a masked value stands for."""
    rotated = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
