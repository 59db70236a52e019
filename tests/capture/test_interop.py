"""Interoperability with the real CaptureFile 1.2.0 package, both directions."""

from __future__ import annotations

import os
import random

import CaptureFile as capturefile_module
import pytest
from CaptureFile import CaptureFile as PeerCaptureFile

from aiorecords import CaptureFile

assert capturefile_module.__name__ == "CaptureFile"


def event(n: int, rng: random.Random) -> str:
    return (
        f'{{"id":{n},"user":"u{rng.randrange(10**5):05d}",'
        f'"action":"{rng.choice(["view", "buy", "click"])}","v":{rng.random():.6f}}}'
    )


def big_records() -> list[bytes]:
    rng = random.Random(3)
    return [
        rng.randbytes(1024 * 1024 + 17),  # incompressible, over 1 MiB
        b"z" * (2 * 1024 * 1024),  # compressible, over 1 MiB
        b"small",
    ]


# -- CaptureFile 1.2.0 reads what aiorecords writes ------------------------------


async def test_capturefile_reads_our_zlib_file(path: str) -> None:
    rng = random.Random(1)
    records = [event(n, rng) for n in range(120_000)]
    async with CaptureFile(
        path, to_write=True, compression="zlib", initial_metadata=b"created"
    ) as cf:
        for n, record in enumerate(records, 1):
            await cf.add_record(record)
            if n % 7919 == 0:
                await cf.set_metadata(f"upto={n}".encode())
                await cf.commit()
        await cf.commit()
    peer = PeerCaptureFile(path)
    try:
        assert peer.record_count() == len(records)
        assert peer.get_metadata() == f"upto={len(records) // 7919 * 7919}".encode()
        assert list(peer) == records
        for n in rng.sample(range(1, len(records) + 1), 500):
            assert peer.record_at(n) == records[n - 1]
    finally:
        peer.close()


async def test_capturefile_reads_our_large_records(path: str) -> None:
    records = big_records()
    async with CaptureFile(
        path, to_write=True, compression="zlib", encoding=None
    ) as cf:
        for record in records:
            await cf.add_record(record)
            await cf.commit()
    peer = PeerCaptureFile(path, encoding=None)
    try:
        assert list(peer) == records
        assert peer.record_at(2) == records[1]
    finally:
        peer.close()


async def test_capturefile_refuses_our_zstd_file(path: str) -> None:
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("zstd record")
        await cf.commit()
    with pytest.raises(capturefile_module.InvalidCaptureFile):
        PeerCaptureFile(path)
    with pytest.raises(capturefile_module.InvalidCaptureFile):
        PeerCaptureFile(path, to_write=True)


# -- aiorecords reads what CaptureFile 1.2.0 writes ------------------------------


async def test_we_read_capturefile_files(path: str) -> None:
    rng = random.Random(2)
    records = [event(n, rng) for n in range(110_000)]
    peer = PeerCaptureFile(
        path, to_write=True, force_new_empty_file=True, initial_metadata=b"m0"
    )
    for n, record in enumerate(records, 1):
        peer.add_record(record)
        if n % 5000 == 0:
            peer.set_metadata(str(n).encode())
            peer.commit()
    peer.commit()
    peer.close()
    cf = await CaptureFile(path)
    assert cf.record_count() == len(records)
    assert await cf.get_metadata() == b"110000"
    assert [r async for r in cf] == records
    for n in rng.sample(range(1, len(records) + 1), 500):
        assert await cf.record_at(n) == records[n - 1]
    assert await cf[54_321:54_400] == records[54_320:54_399]
    await cf.close()


async def test_we_read_capturefile_large_records(path: str) -> None:
    records = big_records()
    peer = PeerCaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None
    )
    for record in records:
        peer.add_record(record)
    peer.commit()
    peer.close()
    cf = await CaptureFile(path, encoding=None)
    assert [r async for r in cf] == records
    assert await cf.record_at(1) == records[0]
    await cf.close()


async def test_both_libraries_append_to_one_file(path: str) -> None:
    peer = PeerCaptureFile(path, to_write=True, force_new_empty_file=True)
    peer.add_record("peer 1")
    peer.commit()
    peer.close()
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("aiorecords 2")
        await cf.commit()
    peer = PeerCaptureFile(path, to_write=True)
    peer.add_record("peer 3")
    peer.commit()
    peer.close()
    cf = await CaptureFile(path)
    assert [r async for r in cf] == ["peer 1", "aiorecords 2", "peer 3"]
    await cf.close()


# -- the same calls give the same bytes -----------------------------------------


def operations(seed: int) -> list[tuple]:
    rng = random.Random(seed)
    ops: list[tuple] = []
    for _ in range(rng.randint(50, 4000)):
        roll = rng.random()
        if roll < 0.95:
            size = rng.choice(
                [0, 1, 7, 100, 300, rng.randint(0, 3000), 32768, 40000, 200_000]
                if rng.random() < 0.05
                else [rng.randint(0, 250)]
            )
            kind = rng.random()
            if kind < 0.4:
                data = rng.randbytes(size)  # incompressible: the file grows
            elif kind < 0.8:
                data = bytes([rng.randrange(256)]) * size
            else:
                data = (f"{rng.random()}," * (size // 18 + 1)).encode()[:size]
            ops.append(("add", data))
        elif roll < 0.975:
            ops.append(
                (
                    "meta",
                    None
                    if rng.random() < 0.3
                    else rng.randbytes(rng.randint(0, 70_000)),
                )
            )
        else:
            ops.append(("commit",))
    ops.append(("commit",))
    return ops


@pytest.mark.parametrize("seed", range(24))
async def test_same_calls_give_the_same_bytes(tmp_path, seed: int) -> None:
    ops = operations(seed)
    block_size = [32768, 4096, 8192, 65536][seed % 4]
    initial = None if seed % 3 == 0 else os.urandom(seed * 1000)
    theirs, ours = str(tmp_path / "peer.capture"), str(tmp_path / "ours.capture")
    peer = PeerCaptureFile(
        theirs,
        to_write=True,
        force_new_empty_file=True,
        initial_metadata=initial,
        compression_block_size=block_size,
    )
    for op in ops:
        if op[0] == "add":
            peer.add_record(op[1])
        elif op[0] == "meta":
            peer.set_metadata(op[1])
        else:
            peer.commit()
    peer.close()
    async with CaptureFile(
        ours,
        to_write=True,
        force_new_empty_file=True,
        initial_metadata=initial,
        compression_block_size=block_size,
        compression="zlib",
    ) as cf:
        for op in ops:
            if op[0] == "add":
                await cf.add_record(op[1])
            elif op[0] == "meta":
                await cf.set_metadata(op[1])
            else:
                await cf.commit()
    with open(theirs, "rb") as a, open(ours, "rb") as b:
        expected, got = a.read(), b.read()
    assert len(got) == len(expected)
    assert got == expected
