"""Hostile input: truncation at every byte, forged length fields, and
decompression bombs, through the public API.

- Truncation: a file cut at every byte of its last 100 KiB opens to a clean
  prefix: the records or entries wholly before the cut, or for a capture
  file one of its last two commits (the two master nodes); a cut that
  reaches further back raises ``InvalidCaptureFile`` naming the offset.
- Forged lengths: every length and size field set to 0, 1, max-1, 2**32-1
  and 2**64-1 (those that fit its width), with the checksums that protect it
  recomputed so that the value itself is what the reader must survive: a
  typed error or a normal read, within 100 ms, allocating no more than the
  configured maximum (measured with tracemalloc).
- Bombs: zstd frames declaring or holding 32 KiB to 1 GiB, gzip streams
  inflating 1 MiB to 1 GiB, where the format expects far less: refused at
  the format's cap, allocating under twice the cap.
"""

from __future__ import annotations

import logging
import os
import random
import struct
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import zstandard
from crc32c import crc32c

from aiorecords import (
    AiorecordsError,
    Archive,
    CaptureFile,
    CorruptionError,
    InvalidCaptureFile,
    RecordsReader,
    RecordsWriter,
)
from aiorecords._codecs import DecodeError
from aiorecords.archive import _format as gar
from aiorecords.capture._layout import (
    _NATIVE_MASTER_HEAD,
    _V2_MASTER_HEAD,
    U32,
    decode_block,
    decode_header,
    decode_master,
)
from aiorecords.records._log import LogDecoder

from .conftest import count, scale, trials

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
CUT_SPAN = trials(100 * KIB, 100 * KIB)
# An archive's cut walks back over every entry: half the span (still some
# 50,000 cuts, across a dozen entries of every codec) keeps CI's time.
ARCHIVE_CUT_SPAN = trials(48 * KIB, 48 * KIB)


@pytest.fixture(autouse=True)
def quiet_log():
    logger = logging.getLogger("aiorecords")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


# ----------------------------------------------------------------------
# Truncation sweep


async def test_records_cut_at_every_byte(tmp_path) -> None:
    rng = random.Random("cut")
    written = [rng.randbytes(rng.choice((0, 7, 300, 5000, 40_000))) for _ in range(50)]
    path = str(tmp_path / "r.log")
    async with RecordsWriter(path, pad_last_block=False) as writer:
        for record in written:
            await writer.write(record)
    with open(path, "rb") as f:
        whole = f.read()
    assert len(whole) > CUT_SPAN
    ends = []  # where each record's last fragment ends
    decoder = LogDecoder()
    decoder.feed(whole)
    decoder.feed_eof()
    while (record := decoder.read()) is not None:
        ends.append(record[2])
    cuts = range(len(whole) - CUT_SPAN, len(whole) + 1)
    for cut in cuts:
        decoder = LogDecoder()
        decoder.feed(whole[:cut])
        decoder.feed_eof()
        got = decoder.read_many(1 << 30)
        whole_records = sum(1 for end in ends if end <= cut)
        assert [r[0] for r in got] == written[:whole_records], cut  # type: ignore[index]
    # And through the public reader, on real files, at a stride.
    cut_path = str(tmp_path / "cut.log")
    for cut in cuts[::997]:
        with open(cut_path, "wb") as f:
            f.write(whole[:cut])
        async with RecordsReader(cut_path, strict=True) as reader:
            got_records = [r async for r in reader]
        assert got_records == written[: sum(1 for end in ends if end <= cut)]
    count("truncation cuts, records", len(cuts))


async def test_archive_cut_at_every_byte(tmp_path) -> None:
    rng = random.Random("cut")
    path = str(tmp_path / "a.gar")
    datas = []
    async with Archive.open(path, mode="rdwr") as archive:
        for n in range(30):
            data = rng.randbytes(rng.choice((0, 10, 3000, 20_000)))
            datas.append(data)
            async with archive.append(
                f"e{n}", timestamp=n, compression=(None, "gzip", "zstd")[n % 3]
            ) as out:
                await out.write(data)
    with open(path, "rb") as f:
        whole = f.read()
    assert len(whole) > ARCHIVE_CUT_SPAN
    async with Archive.open(path) as archive:
        ends = sorted(e.end for e in await archive.contents())
    cuts = range(len(whole) - ARCHIVE_CUT_SPAN, len(whole) + 1)
    for cut in cuts:
        async with Archive.from_bytes(whole[:cut]) as archive:
            entries = await archive.contents()  # strict: a cut is no damage
            kept = sum(1 for end in ends if end <= cut)
            assert [e.timestamp for e in entries] == list(range(kept))[::-1], cut
            if cut % 101 == 0:
                for entry in entries:
                    assert await archive.read_bytes(entry) == datas[entry.timestamp]
    count("truncation cuts, archive", len(cuts))


async def test_capture_cut_at_every_byte(tmp_path) -> None:
    rng = random.Random("cut")
    path = str(tmp_path / "c.capture")
    states = {}
    cf = CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None,
        compression_block_size=4096,
    )  # fmt: skip
    await cf.open(to_write=True)
    records: list[bytes] = []
    # Incompressible records, so that the file outgrows its preallocated
    # 400 KiB and its last 100 KiB hold many commits.
    for commit in range(60):
        for _ in range(3):
            record = rng.randbytes(rng.choice((100, 2000, 6000)))
            records.append(record)
            await cf.add_record(record)
        await cf.set_metadata(str(commit).encode())
        await cf.commit()
        states[commit] = list(records)
    await cf.close()
    with open(path, "rb") as f:
        whole = f.read()
    layout = decode_header(whole[:64])
    slots = [
        decode_master(layout, whole[at : at + layout.master_size])
        for at in layout.slots
    ]
    newest, previous = sorted(
        (node for node in slots if node is not None), key=lambda n: n.serial
    )[::-1]
    # The file is preallocated past its data (doubling as it grows), so its
    # last 100 KiB are zeros: the cuts that matter are around the data's end.
    data_end = newest.data_end
    assert data_end - CUT_SPAN < previous.data_end < data_end <= len(whole)
    stride = scale(29, 1)
    cuts = [*range(data_end + 4 * KIB, data_end - CUT_SPAN - 1, -stride)]
    cuts = [len(whole), *range(len(whole) - 1, data_end + 4 * KIB, -4099), *cuts]
    cut_path = str(tmp_path / "cut.capture")
    outcomes: Counter[str] = Counter()
    with open(cut_path, "wb") as f:
        f.write(whole)
    for cut in cuts:
        os.truncate(cut_path, cut)
        try:
            cf = await CaptureFile(cut_path, encoding=None)
        except InvalidCaptureFile as error:
            refused_at(error, cut, previous.data_end)
            outcomes["refused (both commits cut)"] += 1
            continue
        try:
            commit = int((await cf.get_metadata()) or b"-1")
            assert [r async for r in cf] == states[commit]
        finally:
            await cf.close()
        if cut >= newest.data_end:
            assert commit == 59
            outcomes["last commit"] += 1
        else:
            assert cut >= previous.data_end
            assert commit == 58
            outcomes["previous commit"] += 1
    for outcome, n in outcomes.items():
        count(f"truncation cuts, capture: {outcome}", n)


# ----------------------------------------------------------------------
# Forged length fields


def refused_at(error: InvalidCaptureFile, cut: int, previous_end: int) -> None:
    """A capture file cut before its previous commit's data is refused, and
    the error names where the file now ends."""
    assert cut < previous_end
    assert error.offset == cut


def located(error: CorruptionError, what: str) -> None:
    assert error.offset is not None, (what, error)


def forged_values(width: int) -> list[int]:
    """0, 1, max-1, 2**32-1 and 2**64-1: those that fit ``width`` bytes."""
    top = (1 << (8 * width)) - 1
    candidates = (0, 1, top - 1, (1 << 32) - 1, (1 << 64) - 1)
    return sorted({value for value in candidates if value <= top})


async def survives(read: Callable[[], Awaitable[object]], limit: int, what: str) -> str:
    """Run ``read``: a typed error or a normal result, fast, within
    ``limit`` bytes of allocation."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        await read()
        outcome = "read normally"
    except CorruptionError as error:
        located(error, what)
        outcome = "typed error"
    except AiorecordsError:
        outcome = "typed error"
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 0.1, f"{what}: {elapsed:.3f} s"
    assert peak < limit, f"{what}: allocated {peak} bytes"
    return outcome


async def test_forged_record_lengths(tmp_path) -> None:
    rng = random.Random("forge")
    written = [rng.randbytes(n) for n in (10, 40_000, 5, 70_000, 1)]
    path = str(tmp_path / "r.log")
    async with RecordsWriter(path) as writer:
        for record in written:
            await writer.write(record)
    with open(path, "rb") as f:
        whole = f.read()
    decoder = LogDecoder()
    decoder.feed(whole)
    decoder.feed_eof()
    headers = [start for _, start, _ in iter(decoder.read, None)]
    outcomes: Counter[str] = Counter()
    for header in headers:
        for value in forged_values(2):
            forged = bytearray(whole)
            struct.pack_into("<H", forged, header + 4, value)
            kind = forged[header + 6]
            end = header + 7 + value
            if end <= len(forged):  # make the checksum agree
                crc = crc32c(bytes(forged[header + 6 : end]))
                struct.pack_into("<I", forged, header, _mask(crc))
            cut_path = str(tmp_path / "forged.log")
            with open(cut_path, "wb") as f:
                f.write(forged)
            for strict in (False, True):

                async def read(strict: bool = strict, path: str = cut_path) -> object:
                    async with RecordsReader(
                        path, strict=strict, max_record_size=MIB
                    ) as reader:
                        return [r async for r in reader]

                outcome = await survives(
                    read, 4 * MIB, f"length {value} at {header} (type {kind})"
                )
                outcomes[outcome] += 1
    for outcome, n in outcomes.items():
        count(f"forged length fields, records: {outcome}", n)


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


async def test_forged_capture_lengths(tmp_path) -> None:
    rng = random.Random("forge")
    outcomes: Counter[str] = Counter()
    for compression in ("zstd", "zlib"):
        path = str(tmp_path / f"{compression}.capture")
        cf = CaptureFile(
            path, to_write=True, force_new_empty_file=True, encoding=None,
            compression=compression, compression_block_size=4096,  # type: ignore[arg-type]
        )  # fmt: skip
        await cf.open(to_write=True)
        for _ in range(100):
            await cf.add_record(rng.randbytes(rng.choice((5, 300, 3000))))
        await cf.set_metadata(b"meta")
        await cf.commit()
        await cf.close()
        with open(path, "rb") as f:
            whole = f.read()
        layout = decode_header(whole[:64])
        head = _NATIVE_MASTER_HEAD if layout.native else _V2_MASTER_HEAD
        # (offset, width) of each length or size field: the first page's
        # page size, block size and fan-out; each master node's fields; the
        # length prefix of the first data block.
        fields = [(15, 4), (19, 4), (23, 4)]
        widths = [int(c == "Q") * 4 + 4 for c in head.format[1:]]
        for slot in layout.slots:
            at = slot + 4
            for width in widths:
                fields.append((at, width))
                at += width
        fields.append((layout.data_start, 4))
        for offset, width in fields:
            for value in forged_values(width):
                forged = bytearray(whole)
                forged[offset : offset + width] = value.to_bytes(width, "big")
                refresh_capture_checksums(forged, layout)
                forged_path = str(tmp_path / "forged.capture")
                with open(forged_path, "wb") as f:
                    f.write(forged)

                async def read(path: str = forged_path) -> object:
                    cf = await CaptureFile(path, encoding=None, max_record_size=MIB)
                    try:
                        return ([r async for r in cf], await cf.get_metadata())
                    finally:
                        await cf.close()

                outcome = await survives(
                    read, 8 * MIB, f"{compression}: {value} at {offset}"
                )
                outcomes[outcome] += 1
    for outcome, n in outcomes.items():
        count(f"forged length fields, capture: {outcome}", n)


def refresh_capture_checksums(data: bytearray, layout) -> None:
    """Recompute the checksums that cover forged fields: the first page's
    (native layout) and both master nodes'."""
    if layout.native:
        U32.pack_into(data, 28, crc32c(bytes(data[:28])))
    for slot in layout.slots:
        node = data[slot : slot + layout.master_size]
        if layout.native:
            (block_len,) = U32.unpack_from(node, 16)
            end = min(2 * layout.page_size + block_len, len(node))
        else:
            end = layout.master_size
        U32.pack_into(data, slot, layout.master_crc(bytes(node[4:end])))


def septets(value: int, width: int) -> bytes:
    return bytes((value >> (7 * i)) & 0x7F for i in range(width))


def from_septets(data: bytes) -> int:
    return sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(data))


# Per format version: the length fields forged, as (offset, bytes, bits of
# value), in the header and in the trailer; how an integer is written; and
# where the header's lengths and checksum and the trailer's checksum lie.
ARCHIVE_FIELDS = {
    1: {
        "header": [(16, 8, 64), (24, 4, 32), (28, 4, 32)],
        "trailer": [(8 * k, 8, 64) for k in range(4)],
        "encode": lambda value, width: value.to_bytes(width, "little"),
        "decode": lambda data: int.from_bytes(data, "little"),
        "lengths": ((24, 4), (28, 4)),
        "crc": (32, 4),
        "trailer crc": (44, 4),
    },
    2: {
        "header": [(16, 10, 64), (26, 3, 21), (29, 3, 21)],
        "trailer": [(1 + 10 * k, 10, 64) for k in range(4)],
        "encode": septets,
        "decode": from_septets,
        "lengths": ((26, 3), (29, 3)),
        "crc": (32, 5),
        "trailer crc": (67, 5),
    },
}


def forged_value_bits(bits: int) -> list[int]:
    """0, 1, max-1, 2**32-1 and 2**64-1: those that fit ``bits`` bits."""
    top = (1 << bits) - 1
    candidates = (0, 1, top - 1, (1 << 32) - 1, (1 << 64) - 1)
    return sorted({value for value in candidates if value <= top})


@pytest.mark.parametrize("version", [1, 2])
async def test_forged_archive_lengths(tmp_path, version: int) -> None:
    rng = random.Random("forge")
    layout = gar.LAYOUTS[version]
    fields = ARCHIVE_FIELDS[version]
    encode = fields["encode"]
    path = tmp_path / "a.gar"
    path.write_bytes(layout.file_header)
    async with Archive.open(str(path), mode="rdwr") as archive:
        for n in range(4):
            async with archive.append(
                f"e{n}", timestamp=n, comment="c" * n, compression=(None, "gzip")[n % 2]
            ) as out:
                await out.write(rng.randbytes(5000))
    whole = path.read_bytes()
    async with Archive.open(str(path)) as archive:
        entries = await archive.contents()
    outcomes: Counter[str] = Counter()
    for entry in entries:
        start = entry.offset
        trailer = entry.end - layout.trailer_size
        # Header: element start, name and comment lengths. Trailer: start,
        # length, stored, data.
        forgeable = [
            (start + at, width, bits, "header") for at, width, bits in fields["header"]
        ]
        forgeable += [
            (trailer + at, width, bits, "trailer")
            for at, width, bits in fields["trailer"]
        ]
        for offset, width, bits, part in forgeable:
            for value in forged_value_bits(bits):
                forged = bytearray(whole)
                forged[offset : offset + width] = encode(value, width)
                if part == "header":
                    fix_header_crc(forged, start, layout, fields)
                else:
                    at, crc_width = fields["trailer crc"]
                    body = bytes(forged[trailer : trailer + at])
                    forged[trailer + at : trailer + at + crc_width] = encode(
                        crc32c(body), crc_width
                    )

                async def read(blob: bytes = bytes(forged)) -> object:
                    async with Archive.from_bytes(blob) as archive:
                        listed = await archive.contents()
                        return [await archive.read_bytes(e) for e in listed]

                outcome = await survives(read, 4 * MIB, f"{value} at {offset}")
                outcomes[outcome] += 1
    for outcome, n in outcomes.items():
        count(f"forged length fields, archive v{version}: {outcome}", n)


def fix_header_crc(data: bytearray, start: int, layout, fields) -> None:
    """The header checksum covers its fixed part, then the name and comment
    (whose lengths may now be forged: cover what they claim, within reach)."""
    crc_at, crc_width = fields["crc"]
    fixed = bytes(data[start : start + crc_at])
    (name_at, name_width), (comment_at, comment_width) = fields["lengths"]
    name_len = fields["decode"](fixed[name_at : name_at + name_width])
    comment_len = fields["decode"](fixed[comment_at : comment_at + comment_width])
    strings_at = start + layout.header_size
    name = bytes(data[strings_at : strings_at + min(name_len, 1 << 20)])
    comment_at = strings_at + len(name)
    comment = bytes(data[comment_at : comment_at + min(comment_len, 1 << 20)])
    crc = crc32c(comment, crc32c(name, crc32c(fixed)))
    data[start + crc_at : start + crc_at + crc_width] = fields["encode"](crc, crc_width)


# ----------------------------------------------------------------------
# Decompression bombs


def zstd_bomb(size: int) -> bytes:
    """A real zstd frame of ``size`` zero bytes (built a MiB at a time)."""
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
    chunker = compressor.chunker(size=size, chunk_size=1 << 20)
    zero = bytes(min(size, 1 << 20))
    out = []
    left = size
    while left:
        piece = zero[: min(left, len(zero))]
        out.extend(chunker.compress(piece))
        left -= len(piece)
    out.extend(chunker.finish())
    return b"".join(out)


def forged_zstd_frame(size: int) -> bytes:
    """A 16-byte frame that declares ``size`` bytes of content and holds none."""
    magic = struct.pack("<L", 0xFD2FB528)
    descriptor = bytes([0xE0])  # 8-byte content size, single segment
    empty_last_raw_block = bytes([1, 0, 0])
    return magic + descriptor + struct.pack("<Q", size) + empty_last_raw_block


def deflate_bomb(size: int, wbits: int) -> bytes:
    """A gzip (``wbits`` 31) or zlib (15) stream of ``size`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zero = bytes(1 << 20)
    out = []
    left = size
    while left:
        piece = zero[: min(left, len(zero))]
        out.append(compressor.compress(piece))
        left -= len(piece)
    out.append(compressor.flush())
    return b"".join(out)


ZSTD_SIZES = [32 * KIB, MIB, 32 * MIB, scale(256 * MIB, GIB)]
GZIP_SIZES = [MIB, 32 * MIB, scale(256 * MIB, GIB)]


@pytest.fixture(scope="module")
def bombs() -> dict[tuple[str, int], bytes]:
    made = {("zstd", size): zstd_bomb(size) for size in ZSTD_SIZES}
    made.update({("forged zstd", size): forged_zstd_frame(size) for size in ZSTD_SIZES})
    made.update({("gzip", size): deflate_bomb(size, 31) for size in GZIP_SIZES})
    made.update({("zlib", size): deflate_bomb(size, 15) for size in GZIP_SIZES})
    return made


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
async def test_capture_refuses_bombs(compression: str, tmp_path, bombs) -> None:
    """A data block replaced by a bomb (its length and checksum made to
    agree) is refused at the most a block of the file may decompress to:
    the largest block written (aiorecords' own layout records it), or for
    version 2 files the block size plus the reader's ``max_record_size``."""
    rng = random.Random("bomb")
    path = str(tmp_path / "c.capture")
    cf = CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None,
        compression_block_size=8 * KIB, compression=compression,  # type: ignore[arg-type]
    )  # fmt: skip
    await cf.open(to_write=True)
    for _ in range(40):
        await cf.add_record(rng.randbytes(3000))  # incompressible: big blocks
    await cf.commit()
    await cf.close()
    with open(path, "rb") as f:
        whole = f.read()
    layout = decode_header(whole[:64])
    first = layout.data_start
    max_record_size = 16 * KIB
    if compression == "zstd":
        cap = 8 * KIB + 3000  # the largest block written (a block's records)
        kinds = ("zstd", "forged zstd")
    else:
        cap = 8 * KIB + 4 + max_record_size
        kinds = ("zlib",)
    stored = U32.unpack_from(whole, first)[0]
    refused = 0
    for (kind, size), bomb in bombs.items():
        if kind not in kinds:
            continue
        if len(bomb) > stored:
            # Too big to put in the block's place; the core is checked below.
            with pytest.raises(DecodeError, match="limit"):
                decode_block(layout, crc32c(bomb), bomb, cap)
            refused += 1
            continue
        forged = bytearray(whole)
        U32.pack_into(forged, first, len(bomb))
        if layout.native:
            U32.pack_into(forged, first + 4, crc32c(bomb))
        at = first + layout.block_header_size
        forged[at : at + len(bomb)] = bomb
        forged_path = str(tmp_path / "bomb.capture")
        with open(forged_path, "wb") as f:
            f.write(forged)

        async def read(path: str = forged_path) -> None:
            cf = await CaptureFile(path, encoding=None, max_record_size=max_record_size)
            try:
                [r async for r in cf]
            finally:
                await cf.close()

        tracemalloc.start()
        with pytest.raises(InvalidCaptureFile, match="limit"):
            await read()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 2 * cap + len(forged), (kind, size, peak)
        refused += 1
    count(f"decompression bombs refused, capture ({compression})", refused)


async def test_archive_refuses_bombs(bombs) -> None:
    """An entry whose trailer says 8 MiB but whose payload inflates further
    is refused there (its declared size), inflating a MiB at a time."""
    cap = 8 * MIB
    refused = 0
    for (kind, size), bomb in bombs.items():
        if size <= cap or kind not in ("zstd", "gzip"):
            continue
        codec = gar.Codec.GZIP if kind == "gzip" else gar.Codec.ZSTD
        start = gar.FILE_HEADER_SIZE
        layout = gar.CURRENT
        header, header_crc = layout.encode_header(start, "bomb", 0, "", codec)
        stored = gar.stuff(bomb)
        length = len(header) + len(stored) + layout.trailer_size
        trailer = layout.encode_trailer(
            start, length, len(stored), cap, crc32c(stored), header_crc
        )
        blob = layout.file_header + header + stored + trailer
        async with Archive.from_bytes(blob) as archive:
            (entry,) = await archive.contents()
            tracemalloc.start()
            got = 0
            with pytest.raises(CorruptionError, match="more data"):  # noqa: PT012
                async with archive.read(entry) as stream:
                    async for chunk in stream:
                        got += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert got <= cap
        assert peak < 2 * cap + 2 * len(bomb), (kind, size, peak)
        refused += 1
    count("decompression bombs refused, archive (gzip, zstd)", refused)
