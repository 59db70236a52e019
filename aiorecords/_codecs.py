"""Compression with a bound: every decompression states how much it may make.

python-zstandard's ``decompress()`` allocates whatever content size a frame
header claims, and zlib inflates about 1,000:1, so a small forged input can
demand gigabytes. Here the caller always passes ``limit``, the most the format
allows at that place, and input that would exceed it is refused before the
memory is asked for.
"""

from __future__ import annotations

import zlib

import zstandard

__all__ = [
    "DecodeError",
    "LimitExceeded",
    "ZLIB_MAX_RATIO",
    "zlib_compress",
    "zlib_decompress",
    "zstd_compress",
    "zstd_decompress",
]

#: zlib's deflate cannot expand data by more than about 1032:1.
ZLIB_MAX_RATIO = 1032

#: zstd level for aiorecords' own capture format. On blocks of tens of KiB of
#: record data, level 1 compresses about as well as level 3 and, with its
#: smaller tables, runs twice as fast when the CPU caches are cold (as they
#: are between blocks); see docs/performance.md.
ZSTD_LEVEL = 1


class DecodeError(ValueError):
    """Compressed bytes are damaged, or would decompress past their limit.

    Format layers turn this into their own typed error, adding the file and
    offset.
    """


class LimitExceeded(DecodeError):
    """The data would decompress to more than the caller allows."""


def zlib_compress(data: bytes | bytearray | memoryview) -> bytes:
    """zlib-format data at zlib's default level, as CaptureFile 1.2.0 writes it."""
    return zlib.compress(data, -1)


def zlib_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Inflate one complete zlib stream that must not exceed ``limit`` bytes."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as error:
        raise DecodeError(f"zlib data is damaged ({error})") from None
    if inflater.unconsumed_tail:
        raise LimitExceeded(f"zlib data inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise DecodeError("zlib data ends before its stream does")
    if inflater.unused_data:
        raise DecodeError("bytes follow the end of the zlib stream")
    return out


# Compression and decompression contexts are not safe to share between
# threads, and making one costs more than compressing a small block. Each
# call takes one from a pool and gives it back: a list's pop() and append()
# are atomic, so no two threads ever hold the same context, and the core
# needs no thread-local state (nor the threading module).
_compressors: list[zstandard.ZstdCompressor] = []
_decompressors: list[zstandard.ZstdDecompressor] = []


def _new_compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=True
    )


def zstd_compress(data: bytes | bytearray | memoryview) -> bytes:
    """One zstd frame holding ``data``, with its content size and a checksum."""
    try:
        compressor = _compressors.pop()
    except IndexError:
        compressor = _new_compressor()
    try:
        return compressor.compress(data)
    finally:
        _compressors.append(compressor)


def zstd_decompress(frame: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Decompress one zstd frame whose declared content size is at most ``limit``.

    The frame must declare its content size (aiorecords always writes it), so
    the output is checked against it and against the frame's checksum.
    """
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        raise DecodeError("zstd frame header is damaged") from None
    if size < 0:
        raise DecodeError("zstd frame does not declare its content size")
    if size > limit:
        raise LimitExceeded(
            f"zstd frame declares {size} bytes, over the limit of {limit} bytes"
        )
    try:
        decompressor = _decompressors.pop()
    except IndexError:
        decompressor = zstandard.ZstdDecompressor()
    try:
        out = decompressor.decompress(
            frame, max_output_size=size, allow_extra_data=False
        )
    except zstandard.ZstdError as error:
        raise DecodeError(f"zstd frame is damaged ({error})") from None
    finally:
        _decompressors.append(decompressor)
    if len(out) != size:
        raise DecodeError("zstd frame content is shorter than declared")
    return out
