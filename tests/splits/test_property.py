"""For every format, the records of all the splits of a file, in order, are
those of one full read by the format's own reader: random records, random
split sizes, and (where the format reads past it) random damage."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorecords import (
    Archive,
    CaptureFile,
    RecordsReader,
    TFRecordReader,
    aplan_splits,
    aread_split,
)

from .build import build

records = st.lists(
    st.one_of(
        st.binary(max_size=30),
        st.integers(0, 90_000).map(lambda n: bytes([n % 256]) * n),
    ),
    max_size=25,
).map(lambda rs: [r + b"#%d" % n for n, r in enumerate(rs)])
targets = st.sampled_from([1, 700, 4096, 32_768, 100_000, 1 << 30])
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


async def full_read(path: str, fmt: str) -> list[bytes]:
    """The records as the format's own reader gives them, whole file."""
    if fmt == "records":
        async with RecordsReader(path) as reader:
            return [r async for r in reader]
    if fmt == "tfrecord":
        async with TFRecordReader(path) as reader:
            return [r async for r in reader]
    if fmt == "capture":
        async with CaptureFile(path, encoding=None) as capture:
            return [r async for r in capture]  # type: ignore[misc]
    async with Archive.open(path) as archive:
        entries = await archive.contents(recover=True)
        found = []
        for entry in reversed(entries):
            try:
                found.append(await archive.read_bytes(entry))
            except Exception:
                continue
        return found


async def by_splits(path: str, fmt: str, target: int) -> list[bytes]:
    # The format named: an empty or damaged file's first bytes may not tell.
    splits = await aplan_splits(path, target_bytes=target, format=fmt)  # type: ignore[arg-type]
    return [r for split in splits async for r in aread_split(split)]


def check(
    fmt: str,
    data: list[bytes],
    target: int,
    flip: tuple[float, int] | None,
    *,
    resyncs: bool = True,
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = asyncio.run(build(Path(directory) / f"f.{fmt}", fmt, data))
        if flip is not None:
            raw = bytearray(Path(path).read_bytes())
            where = int(flip[0] * (len(raw) - 1))
            if fmt == "archive":
                where = max(where, 64)  # past the signature: still an archive
            raw[where] ^= flip[1]
            Path(path).write_bytes(bytes(raw))
        whole = asyncio.run(full_read(path, fmt))
        got = asyncio.run(by_splits(path, fmt, target))
        if resyncs:
            assert got == whole
        else:
            # A TFRecord file ends at damage for a full read; its splits,
            # cut at records the index names, go on after it.
            assert got[: len(whole)] == whole
            assert all(record in data for record in got)
        if flip is None:
            assert got == whole == data


damage = st.one_of(st.none(), st.tuples(st.floats(0, 1), st.integers(1, 255)))


@SETTINGS
@given(records, targets, damage)
def test_logs(data: list[bytes], target: int, flip: tuple[float, int] | None) -> None:
    if flip is not None and not data:
        flip = None
    check("records", data, target, flip)


@SETTINGS
@given(records, targets, damage)
def test_tfrecord_files(
    data: list[bytes], target: int, flip: tuple[float, int] | None
) -> None:
    if flip is not None and not data:
        flip = None
    check("tfrecord", data, target, flip, resyncs=False)


@SETTINGS
@given(records, targets)
def test_capture_files(data: list[bytes], target: int) -> None:
    check("capture", data, target, None)


@SETTINGS
@given(records.filter(bool), targets, damage)
def test_archives(
    data: list[bytes], target: int, flip: tuple[float, int] | None
) -> None:
    check("archive", data, target, flip)
