"""Streaming an entry's payload in and out: codecs, gzip input, bounds."""

from __future__ import annotations

import gzip
import os

import pytest
import zstandard
from crc32c import crc32c

from aiorecords._codecs import DecodeError
from aiorecords._wants import answer_reads
from aiorecords.archive._format import Codec, unstuff
from aiorecords.archive._stream import (
    CHUNK,
    EntryDecoder,
    EntryEncoder,
    GzipInflater,
)

from .build import Decoding

DATA = [b"", b"x", b"hello world " * 1000, os.urandom(3 * CHUNK + 17)]
CODECS = [Codec.NONE, Codec.GZIP, Codec.ZSTD]


def encode(
    codec: int, data_gzip: bool, pieces: list[bytes], stuffed: bool = True
) -> tuple[bytes, EntryEncoder]:
    encoder = EntryEncoder(codec, data_gzip, stuffed)
    stored = b"".join(b"".join(encoder.feed(piece)) for piece in pieces)
    stored += encoder.finish()
    return stored, encoder


def decode(
    codec: int, stored: bytes, encoder: EntryEncoder, limit: int = CHUNK
) -> bytes:
    decoder = Decoding(
        lambda offset, size: stored[offset : offset + size],
        0,
        len(stored),
        codec,
        encoder.data_size,
        encoder.crc,
        encoder.stuffed,
    )
    parts = []
    while chunk := decoder.read(limit):
        assert len(chunk) <= limit
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("stuffed", [True, False], ids=["v2", "v1"])
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("data", DATA, ids=len)
def test_round_trip_fed_whole(codec: int, data: bytes, stuffed: bool) -> None:
    stored, encoder = encode(codec, False, [data], stuffed)
    assert encoder.data_size == len(data)
    assert encoder.stored_size == len(stored)
    assert decode(codec, stored, encoder) == data


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_fed_and_read_one_byte_at_a_time(codec: int) -> None:
    data = b"one byte at a time, " * 50
    stored, encoder = encode(codec, False, [data[i : i + 1] for i in range(len(data))])
    assert decode(codec, stored, encoder, limit=1) == data
    whole, _ = encode(codec, False, [data])
    if codec == Codec.NONE:
        assert stored == whole


def test_gzip_payload_is_a_real_gzip_member() -> None:
    data = b"index.html contents " * 500
    stored, _ = encode(Codec.GZIP, False, [data])
    assert stored[:2] == b"\x1f\x8b"
    assert gzip.decompress(stored) == data


def test_zstd_payload_is_a_zstandard_frame() -> None:
    data = b"zstd contents " * 500
    stored, _ = encode(Codec.ZSTD, False, [data])
    # A streamed frame does not record its size: decompress it as a stream.
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stored) == data


def test_gzip_input_stored_as_gzip_is_kept_byte_for_byte() -> None:
    data = os.urandom(1000) + b"text " * 10_000
    written = gzip.compress(data, compresslevel=9, mtime=12345)
    stored, encoder = encode(Codec.GZIP, True, [written[:100], written[100:]])
    assert unstuff(stored) == written  # stored stuffed, otherwise as written
    assert encoder.data_size == len(data)
    assert decode(Codec.GZIP, stored, encoder) == data


@pytest.mark.parametrize("codec", [Codec.NONE, Codec.ZSTD])
def test_gzip_input_is_inflated_as_it_streams(codec: int) -> None:
    data = b"already compressed " * 100_000
    written = gzip.compress(data)
    pieces = [written[i : i + 997] for i in range(0, len(written), 997)]
    stored, encoder = encode(codec, True, pieces)
    assert encoder.data_size == len(data)
    assert decode(codec, stored, encoder) == data
    if codec == Codec.NONE:
        assert stored == data


def test_gzip_input_of_several_members_is_their_concatenation() -> None:
    written = gzip.compress(b"first ") + gzip.compress(b"second")
    stored, _ = encode(Codec.NONE, True, [written])
    assert stored == b"first second"
    one_byte = [written[i : i + 1] for i in range(len(written))]
    assert encode(Codec.NONE, True, one_byte)[0] == b"first second"


@pytest.mark.parametrize(
    "written",
    [
        b"not gzip at all",
        gzip.compress(b"cut short" * 100)[:-5],
        gzip.compress(b"then garbage") + b"garbage",
    ],
    ids=["not-gzip", "truncated", "trailing-garbage"],
)
def test_gzip_input_that_is_not_gzip_is_refused(written: bytes) -> None:
    with pytest.raises(DecodeError):
        encode(Codec.NONE, True, [written])


def test_a_gzip_bomb_inflates_a_bounded_piece_at_a_time() -> None:
    bomb = gzip.compress(bytes(200 * CHUNK))  # 200 MiB of zeros, ~200 KiB
    inflater = GzipInflater()
    total = 0
    for piece in inflater.feed(bomb, limit=CHUNK):
        assert len(piece) <= CHUNK
        total += len(piece)
    inflater.finish()
    assert total == 200 * CHUNK


def test_a_zstd_bomb_decodes_a_bounded_piece_at_a_time() -> None:
    size = 64 * CHUNK
    stored = zstandard.ZstdCompressor().compress(bytes(size))
    decoder = Decoding(
        lambda offset, n: stored[offset : offset + n],
        0,
        len(stored),
        Codec.ZSTD,
        size,
        crc32c(stored),
        False,
    )
    total = 0
    while chunk := decoder.read(CHUNK):
        assert len(chunk) <= CHUNK
        total += len(chunk)
    assert total == size


@pytest.mark.parametrize("codec", CODECS)
def test_damage_is_found_by_the_end_of_the_read(codec: int) -> None:
    data = b"checked " * 5000
    stored, encoder = encode(codec, False, [data])
    for at in range(0, len(stored), max(1, len(stored) // 40)):
        damaged = bytearray(stored)
        damaged[at] ^= 0x10
        with pytest.raises(DecodeError):
            decode(codec, bytes(damaged), encoder)


@pytest.mark.parametrize("codec", CODECS)
def test_sizes_that_disagree_with_the_trailer_are_refused(codec: int) -> None:
    data = b"size " * 1000
    stored, encoder = encode(codec, False, [data])
    for claimed in (len(data) - 1, len(data) + 1, 0):
        decoder = Decoding(
            lambda offset, n: stored[offset : offset + n],
            0,
            len(stored),
            codec,
            claimed,
            encoder.crc,
            True,
        )
        with pytest.raises(DecodeError, match="data than its trailer says"):
            read_to_the_end(decoder)


def read_to_the_end(decoder: EntryDecoder) -> None:
    while decoder.read():
        pass


def test_stored_bytes_missing_from_the_file_are_refused() -> None:
    stored, encoder = encode(Codec.NONE, False, [b"x" * 100])
    decoder = Decoding(
        lambda offset, n: stored[offset : offset + n][:50],
        0,
        len(stored),
        Codec.NONE,
        100,
        encoder.crc,
        True,
    )
    with pytest.raises(DecodeError, match="ends inside an entry"):
        decoder.read()


@pytest.mark.parametrize("codec", CODECS)
def test_reads_of_changing_sizes_get_exactly_what_they_ask(codec: int) -> None:
    data = os.urandom(100_000) + b"tail " * 300_000
    stored, encoder = encode(codec, False, [data])
    decoder = Decoding(
        lambda offset, n: stored[offset : offset + n],
        0,
        len(stored),
        codec,
        encoder.data_size,
        encoder.crc,
        True,
    )
    got = []
    sizes = [10, CHUNK, 1, 77_777, 3]
    step = 0
    while not decoder.done:
        want = sizes[step % len(sizes)]
        piece = decoder.read(want)
        assert len(piece) == want or decoder.done
        got.append(piece)
        step += 1
    assert b"".join(got) == data
    assert decoder.read() == b""


def test_the_read_that_reaches_the_end_checks_it() -> None:
    stored, encoder = encode(Codec.NONE, False, [b"small"])
    decoder = Decoding(
        lambda offset, n: stored[offset : offset + n],
        0,
        len(stored),
        Codec.NONE,
        encoder.data_size,
        encoder.crc ^ 1,
        True,
    )
    with pytest.raises(DecodeError, match="checksum"):
        decoder.read()


@pytest.mark.parametrize("stuffed", [False, True], ids=["v1", "v2"])
def test_a_stream_step_of_incompressible_zstd_is_a_whole_chunk(stuffed: bool) -> None:
    # What a worker-thread hop does: one read1() step. Each should make a
    # whole chunk from about one chunk of stored bytes, in one piece (the
    # zstd blocks are fed whole, so no step is left a block's remainder).
    data = os.urandom(9 * CHUNK + 1234)
    stored, encoder = encode(
        Codec.ZSTD,
        False,
        [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)],
        stuffed,
    )
    decoder = EntryDecoder(
        0, len(stored), Codec.ZSTD, encoder.data_size, encoder.crc, stuffed
    )
    read_sizes: list[int] = []

    def pread(offset: int, size: int) -> bytes:
        read_sizes.append(size)
        return stored[offset : offset + size]

    chunks = []
    while chunk := answer_reads(decoder.read1(CHUNK), pread):
        chunks.append(chunk)
    assert b"".join(chunks) == data
    assert decoder.done
    assert [len(chunk) for chunk in chunks[:-1]] == [CHUNK] * 9
    # Stored bytes read: the payload, and at most a block again per chunk.
    assert sum(read_sizes) <= len(stored) + 10 * (128 * 1024 + 3)
    assert len(read_sizes) <= 2 * len(chunks)


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.ZSTD])
@pytest.mark.parametrize("spacing", [40_000, 97_001, 400_000])
def test_stuffed_runs_inside_compressed_payloads(codec: int, spacing: int) -> None:
    # Incompressible data is stored verbatim inside zstd raw blocks and
    # deflate stored blocks, so the trailer magic's run planted in it
    # reaches the stored payload (where no earlier copy is matched) and must be
    # stuffed and undone, however the decoder's reads and held bytes fall
    # around it. The first straddles the end of the decoder's first read.
    run = b"\xe5\x01GAR trailer v"
    data = bytearray(os.urandom(4 * CHUNK + 333))
    for at in range(CHUNK - 7, len(data) - len(run), spacing):
        data[at : at + len(run)] = run
    data = bytes(data)
    stored, encoder = encode(
        codec, False, [data[i : i + 65536] for i in range(0, len(data), 65536)]
    )
    assert run + b"\0" in stored  # (a deflate block's header may split one)
    for limit in (CHUNK, 70_000):
        assert decode(codec, stored, encoder, limit) == data
    decoder = EntryDecoder(0, len(stored), codec, encoder.data_size, encoder.crc, True)
    chunks = []
    while chunk := answer_reads(decoder.read1(CHUNK), lambda o, n: stored[o : o + n]):
        chunks.append(chunk)
    assert b"".join(chunks) == data
    # A byte changed anywhere is found, by the codec or by the checksum.
    for at in (len(stored) // 3, len(stored) - 9):
        damaged = bytearray(stored)
        damaged[at] ^= 0x40
        with pytest.raises(DecodeError):
            read_all(codec, bytes(damaged), encoder)


def read_all(codec: int, stored: bytes, encoder: EntryEncoder) -> None:
    """Step a stuffed entry's decoder through ``stored`` to its end."""
    decoder = EntryDecoder(0, len(stored), codec, encoder.data_size, encoder.crc, True)
    while answer_reads(decoder.read1(CHUNK), lambda o, n: stored[o : o + n]):
        pass
