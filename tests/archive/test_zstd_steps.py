"""The push-style zstd decompression of archive payloads (ZstdInflater).

It walks the frame's block headers itself so that no step makes more than a
chunk, whatever the frame holds: these tests feed it real frames of every
shape python-zstandard writes, whole, byte by byte and with bytes after
the frame, and forged ones.
"""

from __future__ import annotations

import os

import pytest
import zstandard

from aiorecords._codecs import DecodeError
from aiorecords.archive._stream import CHUNK, ZstdInflater

DATA = [
    b"",
    b"x",
    b"hello world " * 1000,
    os.urandom(300_000),  # raw blocks
    bytes(5 * CHUNK),  # RLE blocks: a few bytes each, 128 KiB out
    os.urandom(50_000) + b"ab" * 400_000,
]


def frames(data: bytes) -> list[bytes]:
    """``data`` as frames of the shapes python-zstandard writes."""
    out = []
    for checksum in (False, True):
        for content_size in (False, True):
            compressor = zstandard.ZstdCompressor(
                level=3, write_checksum=checksum, write_content_size=content_size
            )
            out.append(compressor.compress(data))
            streamed = compressor.compressobj()
            out.append(streamed.compress(data) + streamed.flush())
    return out


def inflate(inflater: ZstdInflater, pieces: list[bytes]) -> bytes:
    """Drive ``inflater`` as a driver does: bytes it leaves unused are kept
    and given again, with the next piece after them."""
    out = []
    held = b""
    for piece in pieces:
        held += piece
        while True:
            used, chunk = inflater.step(held)
            assert len(chunk) <= CHUNK
            out.append(chunk)
            held = held[used:]
            if not used:
                break
    inflater.finish()  # refuses a frame cut short
    assert not held, "a whole frame left bytes unused"
    return b"".join(out)


@pytest.mark.parametrize("data", DATA, ids=lambda d: f"{len(d)} bytes")
def test_every_frame_fed_whole_and_in_pieces(data: bytes) -> None:
    for frame in frames(data):
        assert inflate(ZstdInflater(), [frame]) == data
        cut = len(frame) // 3
        assert inflate(ZstdInflater(), [frame[:cut], frame[cut:]]) == data


def test_fed_byte_by_byte() -> None:
    data = b"byte by byte " * 20_000
    for frame in frames(data):
        assert (
            inflate(ZstdInflater(), [frame[i : i + 1] for i in range(len(frame))])
            == data
        )


@pytest.mark.parametrize("data", DATA[1:3], ids=lambda d: f"{len(d)} bytes")
def test_bytes_after_the_frame_are_refused(data: bytes) -> None:
    for frame in frames(data):
        inflater = ZstdInflater()
        with pytest.raises(DecodeError, match="bytes follow the end"):
            inflate(inflater, [frame + b"\0"])


def test_a_frame_cut_short_is_refused() -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(b"z" * 100_000)
    for cut in (1, 4, 5, len(frame) // 2, len(frame) - 1):
        with pytest.raises(DecodeError, match="ends before its frame"):
            inflate(ZstdInflater(), [frame[:cut]])


def test_no_step_makes_more_than_a_chunk_of_a_bomb() -> None:
    # RLE blocks by hand: each 3-byte header and 1 byte regenerates 128 KiB.
    header = b"\x28\xb5\x2f\xfd" + bytes([0x00, 0x58])  # no size, 2 MiB window
    block = (128 * 1024) << 3 | 1 << 1  # RLE, not last
    last = block | 1
    frame = (
        header
        + (block.to_bytes(3, "little") + b"\0") * 2000
        + last.to_bytes(3, "little")
        + b"\0"
    )
    inflater = ZstdInflater()
    total = 0
    view = memoryview(frame)
    while view:
        used, chunk = inflater.step(view)
        assert used
        assert len(chunk) <= CHUNK
        total += len(chunk)
        view = view[used:]
    inflater.finish()
    assert total == 2001 * 128 * 1024


@pytest.mark.parametrize(
    ("forged", "message"),
    [
        (b"\x28\xb5\x2f\xfe\x00\x58", "not a zstd frame"),
        (b"\x28\xb5\x2f\xfd\x08\x58", "reserved frame header bit"),
        (
            b"\x28\xb5\x2f\xfd\x00\x58" + (3 << 1 | 1).to_bytes(3, "little"),
            "reserved block",
        ),
        (
            b"\x28\xb5\x2f\xfd\x00\x58" + ((1 << 20) << 3 | 1).to_bytes(3, "little"),
            "block too large",
        ),
    ],
)
def test_forged_headers_are_refused(forged: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        inflate(ZstdInflater(), [forged])
