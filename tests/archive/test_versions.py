"""Archives of format version 1 (written before version 2 existed) stay
readable and writable, in their own layout; new archives are version 2."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from aiorecords import Archive
from aiorecords.archive._format import V1, V2, check_file_header

from .build import Element, archive_bytes

OLD = [
    Element("a", b"first a", comment="old"),
    Element("b", b"\xe5\x01Gt" * 50, compression="gzip"),
    Element("a", b"second a", compression="zstd", timestamp=-3),
]


async def read_all(path: str) -> dict[str, bytes]:
    async with Archive.open(path) as ar:
        return {name: await ar.read_bytes(name) for name in await ar.latest()}


@pytest.mark.parametrize("mode", ["rdwr", "rdwr_exclusive"])
async def test_a_version_1_archive_is_read_and_appended_in_version_1(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "old.gar"
    path.write_bytes(archive_bytes(*OLD, layout=V1))
    assert await read_all(str(path)) == {"a": b"second a", "b": b"\xe5\x01Gt" * 50}
    async with Archive.open(str(path), mode) as ar:  # type: ignore[arg-type]
        async with ar.append("c", comment="new") as out:
            await out.write(b"\xe5 appended")
        entries = await ar.contents()
    data = path.read_bytes()
    assert check_file_header(data) is V1
    # The new element is laid out as version 1: its payload as written.
    assert data.endswith(b"\xe5 appended" + data[-V1.trailer_size :])
    assert [e.name for e in entries] == ["c", "a", "b", "a"]
    assert entries[0].end == len(data)
    assert (await read_all(str(path)))["c"] == b"\xe5 appended"


async def test_new_archives_are_version_2(tmp_path: Path) -> None:
    path = tmp_path / "new.gar"
    async with Archive.open(str(path), "rdwr") as ar, ar.append("c") as out:
        await out.write(V2.trailer_magic)
    data = path.read_bytes()
    assert struct.unpack_from("<L", data, 8) == (2,)
    assert check_file_header(data) is V2
    assert V2.trailer_magic[:-1] + b"\x00" + V2.trailer_magic[-1:] in data  # stuffed
    assert data.count(V2.trailer_magic) == 1  # the trailer's own


async def test_in_memory_archives_of_both_versions(tmp_path: Path) -> None:
    for layout in (V1, V2):
        ar = Archive.from_bytes(archive_bytes(*OLD, layout=layout))
        assert [e.name for e in await ar.contents()] == ["a", "b", "a"]
        assert await ar.read_bytes("b") == b"\xe5\x01Gt" * 50
