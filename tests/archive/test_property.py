"""Archives against a model: a list of (name, data) pairs, newest last.

Random appends (names that repeat, sizes that cross buffers, every codec,
gzip input), appends that fail half way (an exception, a cancellation, a
process that died leaving raw torn bytes), reopenings in every mode; after
each step the archive must list, find and read exactly what the model holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorecords import Archive
from aiorecords.archive._format import FILE_HEADER_SIZE

from .build import Element, element_bytes

names = st.sampled_from(["a", "b", "index.html", "ü/ñ", "x" * 300])
sizes = st.one_of(
    st.integers(0, 200), st.sampled_from([(1 << 20) - 1, 1 << 20, 1_500_000])
)
compressions = st.sampled_from([None, "gzip", "zstd"])

append = st.tuples(
    st.just("append"), names, sizes, compressions, st.booleans(), st.integers(-5, 5)
)
fail = st.tuples(st.just("fail"), names, sizes, st.sampled_from(["raise", "cancel"]))
torn = st.tuples(st.just("torn"), names, st.integers(0, 2000), st.integers(1, 300))
reopen = st.tuples(st.just("reopen"), st.sampled_from(["rdwr", "rdwr_exclusive"]))
operations = st.lists(
    st.one_of(append, append, append, fail, torn, reopen), min_size=1, max_size=12
)


def data_for(step: int, size: int) -> bytes:
    # Compressible, distinct per step.
    return (f"step {step} ".encode() * (size // 8 + 1))[:size]


async def check(ar: Archive, model: list[tuple[str, bytes]], gar: str) -> None:
    entries = await ar.contents()
    assert [e.name for e in entries] == [name for name, _ in reversed(model)]
    for entry, (_, data) in zip(entries, reversed(model), strict=True):
        assert entry.size == len(data)
    latest = await ar.latest()
    expected_latest = {}
    for name, data in model:
        expected_latest[name] = data
    assert set(latest) == set(expected_latest)
    for name, data in expected_latest.items():
        assert await ar.read_bytes(name) == data
        assert (await ar.find(name)) == latest[name]
    # Every view agrees: another object, and the bytes held in memory.
    async with Archive.open(gar) as reader:
        assert await reader.contents() == entries
    with open(gar, "rb") as f:
        blob = f.read()
    memory = Archive.from_bytes(blob)
    assert [e.name for e in await memory.contents()] == [e.name for e in entries]


async def doomed(
    ar: Archive, name: str, data: bytes, how: str, inside: asyncio.Event
) -> None:
    """An append that never finishes: its block raises, or is cancelled."""
    async with ar.append(name) as out:
        await out.write(data)
        if how == "raise":
            raise LookupError("the block failed")
        inside.set()
        await asyncio.Event().wait()  # cancelled here


async def play(ops: list[tuple], gar: str) -> None:
    model: list[tuple[str, bytes]] = []
    ar = await Archive.open(gar, mode="rdwr")
    try:
        for step, op in enumerate(ops):
            kind = op[0]
            if kind == "append":
                _, name, size, compression, as_gzip, timestamp = op
                data = data_for(step, size)
                async with ar.append(
                    name,
                    compression=compression,
                    data_gzip=as_gzip,
                    timestamp=timestamp,
                ) as out:
                    written = gzip.compress(data) if as_gzip else data
                    for at in range(0, len(written), 300_000):
                        await out.write(written[at : at + 300_000])
                    if not written:
                        await out.write(b"")
                model.append((name, data))
            elif kind == "fail":
                _, name, size, how = op
                inside = asyncio.Event()
                task = asyncio.ensure_future(
                    doomed(ar, name, data_for(step, size), how, inside)
                )
                if how == "cancel":
                    await inside.wait()
                    task.cancel()
                with contextlib.suppress(LookupError, asyncio.CancelledError):
                    await task
            elif kind == "torn":
                # A process died in its append: raw bytes of an element that
                # never got its trailer, written behind this object's back.
                _, name, size, cut = op
                await ar.close()
                end = os.path.getsize(gar)
                whole = element_bytes(end, Element(name, data_for(step, size)))
                with open(gar, "ab") as f:
                    f.write(whole[: max(1, len(whole) - cut)])
                ar = await Archive.open(gar, mode="rdwr")
            else:
                await ar.close()
                ar = await Archive.open(gar, mode=op[1])
            await check(ar, model, gar)
    finally:
        await ar.close()
    size = os.path.getsize(gar)
    assert size >= FILE_HEADER_SIZE


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(operations)
def test_the_archive_matches_the_model(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(play(ops, os.path.join(directory, "model.gar")))
