"""The command line on TFRecord files: detected (stored as they are and
compressed), described, printed, verified, converted and followed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiorecords import TFRecordReader, TFRecordWriter

from ..test_cli import aiorecords, make_capture


async def make_tfrecord(path: Path, n: int = 25, **options) -> None:
    async with TFRecordWriter(path, **options) as writer:
        await writer.write_many(f"event {i}" for i in range(n))


@pytest.mark.parametrize("compression", [None, "gzip", "zlib"])
async def test_info_cat_and_verify(tmp_path: Path, compression: str | None) -> None:
    await make_tfrecord(tmp_path / "t", compression=compression, index=not compression)
    info = json.loads(aiorecords("info", "t", "--json", cwd=tmp_path).stdout)
    assert info["format"] == "tfrecord"
    assert info["records"] == 25
    assert info["compression"] == compression
    assert info["index"] == (None if compression else "t.tfindex")
    cat = aiorecords("cat", "t", "--from", "24", cwd=tmp_path).stdout
    assert cat.splitlines() == [b"event 23", b"event 24"]
    verified = aiorecords("verify", "t", cwd=tmp_path).stdout.decode()
    assert "ok: 25 records, 0 damaged regions" in verified


async def test_verify_reports_damage_with_its_offset(tmp_path: Path) -> None:
    await make_tfrecord(tmp_path / "d.tfrecord")
    raw = bytearray((tmp_path / "d.tfrecord").read_bytes())
    raw[100] ^= 1
    (tmp_path / "d.tfrecord").write_bytes(bytes(raw))
    done = aiorecords("verify", "d.tfrecord", cwd=tmp_path, check_status=1)
    lines = done.stdout.decode().splitlines()
    # Records 0 to 3 are whole (23 bytes each); byte 100 is in the header of
    # record 4, at 92: the rest of the file is lost.
    assert lines[0] == "d.tfrecord: damaged: offset 92, 498 bytes: bad length checksum"


@pytest.mark.parametrize("compression", [None, "gzip", "zlib"])
async def test_convert_to_and_from_tfrecord(
    tmp_path: Path, compression: str | None
) -> None:
    await make_capture(tmp_path / "c.capture")
    options = ["--compression", compression] if compression else []
    aiorecords(
        "convert", "c.capture", "t.tfrecord", "--to", "tfrecord", *options, cwd=tmp_path
    )
    async with TFRecordReader(tmp_path / "t.tfrecord", compression=compression) as r:
        assert [x async for x in r] == [f"event {i}".encode() for i in range(25)]
    aiorecords("convert", "t.tfrecord", "back.log", "--to", "records", cwd=tmp_path)
    cat = aiorecords("cat", "back.log", cwd=tmp_path).stdout.splitlines()
    assert cat == [f"event {i}".encode() for i in range(25)]


async def test_compression_zstd_is_not_a_tfrecord_one(tmp_path: Path) -> None:
    await make_capture(tmp_path / "c.capture")
    done = aiorecords(
        "convert",
        "c.capture",
        "t.tfrecord",
        "--to",
        "tfrecord",
        "--compression",
        "zstd",
        cwd=tmp_path,
        check_status=2,
    )
    assert b"takes gzip or zlib" in done.stderr


async def test_tail_of_a_tfrecord_file(tmp_path: Path) -> None:
    await make_tfrecord(tmp_path / "t.tfrecord")
    tail = aiorecords("tail", "-n", "2", "t.tfrecord", cwd=tmp_path).stdout
    assert tail.splitlines() == [b"event 23", b"event 24"]
    await make_tfrecord(tmp_path / "c.gz", compression="gzip")
    done = aiorecords("tail", "-f", "c.gz", cwd=tmp_path, check_status=2)
    assert b"cannot be followed" in done.stderr
