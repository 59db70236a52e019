"""Forgery from inside: an archive entry whose payload imitates elements.

An uploader who can choose an entry's bytes and knows where they will land
writes, inside its payload, a trailer that closes its own element early and
then a whole element named after someone else's entry, every checksum
right. If the payload were stored as written, a reader walking back
through a torn append (the writer stopped before the real trailer) would
take the forgery for the newest elements, and the next append, cutting the
torn tail after the last element it believed whole, would make it
permanent.

Version 2 archives store payloads stuffed (docs/formats/archive.md), so
the trailer magic never occurs in payload bytes. Every read path must show
only the genuine entries: listings, lookups, reads, recovery, the command
line; torn, after the next append, and completed. The same attack on a
version 1 archive is run as a control: it works there, which shows the
forgery is well made and the version 2 results mean something.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from crc32c import crc32c

from aiorecords import Archive
from aiorecords.archive._format import V1, V2, Codec, ElementLayout

SCRIPT = shutil.which("aiorecords", path=os.path.dirname(sys.executable))
STAMP = 1_700_000_000
GENUINE = b"the genuine report"


def forged_payload(layout: ElementLayout, start: int, padding: bytes = b"") -> bytes:
    """The payload of an entry ``upload`` appended at ``start``, laid out so
    that, stored as written, it would end ``upload`` early (after
    ``padding``) and hold a whole element ``report`` after it."""
    size = layout.trailer_size
    header, header_crc = layout.encode_header(start, "upload", STAMP, "", Codec.NONE)
    prefix = padding + b"an innocent upload "
    closing = layout.encode_trailer(
        start,
        len(header) + len(prefix) + size,
        len(prefix),
        len(prefix),
        crc32c(prefix),
        header_crc,
    )
    at = start + len(header) + len(prefix) + size
    fake_header, fake_crc = layout.encode_header(at, "report", STAMP, "", Codec.NONE)
    body = b"FORGED"
    fake_trailer = layout.encode_trailer(
        at,
        len(fake_header) + len(body) + size,
        len(body),
        len(body),
        crc32c(body),
        fake_crc,
    )
    return prefix + closing + fake_header + body + fake_trailer


async def make(path: Path, layout: ElementLayout) -> None:
    """An archive holding the genuine ``report``, then the forged upload,
    torn: its real trailer never written."""
    path.write_bytes(layout.file_header)
    async with Archive.open(str(path), "rdwr") as ar:
        async with ar.append("report", timestamp=STAMP) as out:
            await out.write(GENUINE)
        start = (await ar.contents())[0].end
        async with ar.append("upload", timestamp=STAMP) as out:
            await out.write(forged_payload(layout, start))
    with open(path, "r+b") as f:  # the writer stopped before the trailer
        f.truncate(path.stat().st_size - layout.trailer_size)


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert SCRIPT is not None
    return subprocess.run([SCRIPT, *args], capture_output=True, timeout=60)


async def what_readers_see(path: Path, tmp_path: Path) -> dict[str, object]:
    async with Archive.open(str(path)) as ar:
        names = [e.name for e in await ar.contents()]
        recovered = [e.name for e in await ar.contents(recover=True)]
        latest = sorted(await ar.latest())
        found = await ar.find("report")
        report = await ar.read_bytes("report")
        async with ar.read(found) as stream:
            streamed = await stream.read()
    listed = json.loads(cli("ls", "--all", "--json", str(path)).stdout)
    out = tmp_path / f"out-{len(os.listdir(tmp_path))}"
    extracted = cli("extract", str(path), "report", "-C", str(out))
    verified = cli("verify", str(path))
    return {
        "contents": names,
        "recovered": recovered,
        "latest": latest,
        "report": report,
        "streamed": streamed,
        "cli ls": [entry["name"] for entry in listed],
        "cli extract": (extracted.returncode, (out / "report").read_bytes()),
        "cli verify": verified.returncode,
    }


def genuine(names: list[str]) -> dict[str, object]:
    return {
        "contents": names,
        "recovered": names,
        "latest": sorted(set(names)),
        "report": GENUINE,
        "streamed": GENUINE,
        "cli ls": names,
        "cli extract": (0, GENUINE),
        "cli verify": 0,
    }


async def test_a_payload_cannot_forge_elements(tmp_path: Path) -> None:
    path = tmp_path / "uploads.gar"
    await make(path, V2)
    # Torn: the upload does not exist, and nothing inside it does either.
    assert await what_readers_see(path, tmp_path) == genuine(["report"])
    # The next append cuts the torn upload off whole.
    async with (
        Archive.open(str(path), "rdwr") as ar,
        ar.append("later", timestamp=STAMP) as out,
    ):
        await out.write(b"after")
    assert await what_readers_see(path, tmp_path) == genuine(["later", "report"])
    assert b"FORGED" not in path.read_bytes()


async def test_a_whole_forging_upload_is_just_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "uploads.gar"
    async with Archive.open(str(path), "rdwr") as ar:
        async with ar.append("report", timestamp=STAMP) as out:
            await out.write(GENUINE)
        start = (await ar.contents())[0].end
        payload = forged_payload(V2, start)
        async with ar.append("upload", timestamp=STAMP) as out:
            await out.write(payload)
    seen = await what_readers_see(path, tmp_path)
    assert seen == genuine(["upload", "report"])
    async with Archive.open(str(path)) as ar:
        assert await ar.read_bytes("upload") == payload


async def test_control_the_same_attack_works_on_version_1(tmp_path: Path) -> None:
    """Version 1 stores payloads as written: the forgery is taken for two
    elements. (Convert such archives: ``aiorecords convert old.gar new.gar``.)"""
    path = tmp_path / "old.gar"
    await make(path, V1)
    async with Archive.open(str(path)) as ar:
        assert [e.name for e in await ar.contents()] == ["report", "upload", "report"]
        assert await ar.read_bytes("report") == b"FORGED"


@pytest.mark.parametrize("extra", [0, 1, 5, 1 << 20])
@pytest.mark.parametrize("layout", [V1, V2], ids=["v1 control", "v2"])
async def test_forgeries_anywhere_in_a_large_payload(
    tmp_path: Path, extra: int, layout: ElementLayout
) -> None:
    """The forged structure after ``extra`` bytes of padding (across the
    1 MiB write and read boundaries), padding made of the trailer magic."""
    path = tmp_path / "big.gar"
    path.write_bytes(layout.file_header)
    magic = layout.trailer_magic
    padding = (magic * (extra // len(magic) + 1))[:extra]
    async with Archive.open(str(path), "rdwr") as ar:
        async with ar.append("report", timestamp=STAMP) as out:
            await out.write(GENUINE)
        start = (await ar.contents())[0].end
        async with ar.append("upload", timestamp=STAMP) as out:
            await out.write(forged_payload(layout, start, padding))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - layout.trailer_size)
    async with Archive.open(str(path)) as ar:
        names = [e.name for e in await ar.contents()]
        report = await ar.read_bytes("report")
    if layout is V1:
        assert (names, report) == (["report", "upload", "report"], b"FORGED")
    else:
        assert (names, report) == (["report"], GENUINE)
