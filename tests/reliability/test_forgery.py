"""Forgery: structures that are wrong but whose checksums pass, and damage
to the newest commit, through every read path (random access, streaming,
metadata, ``verify``, ``info`` and ``cat`` on the command line).

A capture file's master node is re-encoded with coordinates that point past
their block (an offset of 0xFFFFFFFF, an offset just past the end, a
position that is another block) and its checksum recomputed: every path
must raise ``InvalidCaptureFile`` naming the file, never ``struct.error``,
``UnicodeDecodeError`` or a traceback from the command line.

A newest master node with bytes flipped (checksum failing) makes the file
open at the commit before; ``verify`` must say so (exit 1, naming the commit
and the unreachable bytes), and a writer must refuse to overwrite it unless
told to (``discard_damaged_commit=True``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiorecords import CaptureFile, InvalidCaptureFile, RecordNotText
from aiorecords.capture._layout import (
    COORD,
    decode_header,
    decode_master,
    encode_master,
)

from .conftest import count

SCRIPT = shutil.which("aiorecords", path=os.path.dirname(sys.executable))


async def make(path: str, compression: str, commits: int = 3, per: int = 400) -> None:
    cf = CaptureFile(
        path, to_write=True, force_new_empty_file=True, compression=compression
    )
    await cf.open(to_write=True)
    for c in range(commits):
        for n in range(per):
            await cf.add_record(f"commit {c} record {n} " + "x" * (n % 50))
        await cf.set_metadata(f"after commit {c}".encode())
        await cf.commit()
    await cf.close()


def current_slot(path: str):
    with open(path, "rb") as f:
        data = f.read()
    layout = decode_header(data[:4096])
    nodes = []
    for index, start in enumerate(layout.slots):
        node = decode_master(layout, data[start : start + layout.master_size])
        if node is not None:
            nodes.append((node.serial, index, node))
    _, index, node = max(nodes)
    return layout, index, node


def rewrite(path: str, layout, index: int, node) -> None:
    with open(path, "r+b") as f:
        f.seek(layout.slots[index])
        f.write(encode_master(layout, node))


def forge_leaf(node, number: int, position: int | None, offset: int):
    """``node`` with the coordinate of record ``number`` (of those held in
    the rightmost leaf level) replaced."""
    level = bytearray(node.levels[0])
    old_position, _ = COORD.unpack_from(level, number * COORD.size)
    COORD.pack_into(
        level,
        number * COORD.size,
        old_position if position is None else position,
        offset,
    )
    return dataclasses.replace(node, levels=(bytes(level), *node.levels[1:]))


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert SCRIPT is not None
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, timeout=120, check=False
    )


async def every_read_path(path: str, encoding: str | None = "utf_8") -> list[str]:
    """Read the file every way; the typed errors' reasons (other errors fail
    the test)."""
    errors: list[InvalidCaptureFile] = []
    cf = await CaptureFile(path, encoding=encoding)
    try:
        for number in range(1, cf.record_count() + 1):
            try:
                await cf.record_at(number)
            except InvalidCaptureFile as error:
                errors.append(error)
        for start in (1, cf.record_count() // 2 + 1):
            try:
                async for _ in cf.record_generator(start):
                    pass
            except InvalidCaptureFile as error:
                errors.append(error)
        await cf.get_metadata()
    finally:
        await cf.close()
    assert all(error.path == path for error in errors)
    reasons = [error.reason for error in errors]
    for command in (("verify", path), ("info", path), ("cat", path)):
        done = cli(*command)
        assert b"Traceback" not in done.stderr, done.stderr.decode()
        assert done.returncode in (0, 1, 2), (command, done.returncode)
        if command[0] == "verify" and reasons and encoding is None:
            assert done.returncode in (1, 2), "verify missed the damage"
    return reasons


FORGERIES = {
    "offset 0xFFFFFFFF": lambda node, layout: forge_leaf(node, 3, None, 0xFFFFFFFF),
    "offset past the block": lambda node, layout: forge_leaf(
        node, 3, None, layout.block_size * 4
    ),
    "offset inside a record": lambda node, layout: forge_leaf(node, 3, None, 7),
    "position of the first page": lambda node, layout: forge_leaf(
        node, 3, layout.data_start, 0
    ),
}


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_master_node_coordinates(
    tmp_path: Path, compression: str, forgery: str
) -> None:
    """Issue 13, item 11: streaming unpacked before it checked bounds."""
    path = str(tmp_path / "f.capture")
    # Small commits: the rightmost leaf level holds coordinates into blocks.
    await make(path, compression, commits=3, per=70)
    layout, index, node = current_slot(path)
    forged = FORGERIES[forgery](node, layout)
    rewrite(path, layout, index, forged)
    try:
        reasons = await every_read_path(path)
    except InvalidCaptureFile as error:
        # The master node itself is refused on opening: also a typed error.
        refused: InvalidCaptureFile | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.path == path
        count("forged capture master nodes: refused on opening")
        return
    if forgery in ("offset 0xFFFFFFFF", "offset past the block"):
        assert reasons, "the forged coordinate went unnoticed"
        assert cli("verify", path).returncode in (1, 2)
    count("forged capture master nodes: read paths checked")


async def test_records_that_are_not_text_give_a_typed_error(tmp_path: Path) -> None:
    path = str(tmp_path / "b.capture")
    cf = CaptureFile(path, to_write=True, force_new_empty_file=True, encoding=None)
    await cf.open(to_write=True)
    await cf.add_record(b"ok")
    await cf.add_record(b"\xff\xfe not utf-8")
    await cf.commit()
    await cf.close()
    reasons = await every_read_path(path)
    assert any("encoding=None" in reason for reason in reasons)
    cf = await CaptureFile(path)
    try:
        with pytest.raises(RecordNotText) as caught:
            await cf.record_at(2)
        assert isinstance(caught.value, UnicodeDecodeError)
        assert caught.value.path == path
    finally:
        await cf.close()
    assert await every_read_path(path, encoding=None) == []


def flip_newest_master(path: str, at: int = 100, length: int = 16) -> int:
    layout, index, node = current_slot(path)
    with open(path, "r+b") as f:
        f.seek(layout.slots[index] + at)
        data = f.read(length)
        f.seek(layout.slots[index] + at)
        f.write(bytes(b ^ 0xFF for b in data))
    return node.serial


@pytest.mark.parametrize("who", ["aiorecords zstd", "aiorecords zlib", "CaptureFile"])
async def test_damaged_newest_master_node(tmp_path: Path, who: str) -> None:
    """Issue 13, item 6: verify said "ok" while the file opened at the
    commit before, and a writer then overwrote the damaged newest commit."""
    path = str(tmp_path / "d.capture")
    if who == "CaptureFile":
        from CaptureFile import CaptureFile as PeerCaptureFile

        peer = PeerCaptureFile(path, to_write=True, force_new_empty_file=True)
        for c in range(2):
            for n in range(1000):
                peer.add_record(f"commit {c} record {n}")
            peer.commit()
        peer.close()
    else:
        await make(path, who.split()[1], commits=2, per=1000)
    newest = flip_newest_master(path)
    cf = await CaptureFile(path)
    try:
        assert cf.damaged_commit is not None
        assert f"commit {newest}" in cf.damaged_commit
        assert cf.record_count() == 1000  # the commit before
    finally:
        await cf.close()
    done = cli("verify", path)
    assert done.returncode == 1, done.stdout
    out = done.stdout.decode()
    assert f"commit {newest}" in out
    assert "unreachable" in out
    before = Path(path).read_bytes()
    with pytest.raises(InvalidCaptureFile, match="discard_damaged_commit"):
        await CaptureFile(path, to_write=True)
    assert Path(path).read_bytes() == before  # nothing was overwritten
    cf = await CaptureFile(path, to_write=True, discard_damaged_commit=True)
    await cf.add_record("on from the commit before")
    await cf.commit()
    await cf.close()
    cf = await CaptureFile(path)
    try:
        assert cf.damaged_commit is None
        assert cf.record_count() == 1001
    finally:
        await cf.close()
    assert cli("verify", path).returncode == 0


async def test_damaged_older_master_node_loses_nothing(tmp_path: Path) -> None:
    """The slot that holds the commit before the newest one is damaged: the
    file is whole, and a writer may go on (its commit overwrites that slot)."""
    path = str(tmp_path / "o.capture")
    await make(path, "zstd", commits=2, per=100)
    layout, index, _ = current_slot(path)
    with open(path, "r+b") as f:
        f.seek(layout.slots[1 - index] + 200)
        f.write(b"\xff" * 16)
    cf = await CaptureFile(path, to_write=True)
    try:
        assert cf.damaged_commit is None
        assert cf.record_count() == 200
    finally:
        await cf.close()
