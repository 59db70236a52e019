"""close() ends a follower cleanly and at once (issue 14: a follower ended
by close() raised "cannot refresh ...", naming a call the user never made,
and a follower of a log waited out its poll)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aiorecords import (
    CaptureFile,
    CaptureFileNotOpen,
    ClosedError,
    RecordsReader,
    RecordsWriter,
)


async def follow_into(stream, seen: list, started: asyncio.Event) -> str:
    async for record in stream:
        seen.append(record)
        started.set()
    return "ended"


@pytest.mark.parametrize("who", ["reader", "writer"])
async def test_close_ends_a_waiting_capture_follower(tmp_path: Path, who: str) -> None:
    path = str(tmp_path / "f.capture")
    async with CaptureFile(path, to_write=True) as cf:
        await cf.add_record("one")
        await cf.commit()
    log = await CaptureFile(path, to_write=(who == "writer"))
    seen: list = []
    started = asyncio.Event()
    task = asyncio.ensure_future(follow_into(log.follow(), seen, started))
    await started.wait()
    await asyncio.sleep(0)  # the follower is now waiting for a commit
    await log.close()
    # Woken by close(): ends well before its next poll would.
    assert await asyncio.wait_for(task, 5) == "ended"
    assert seen == ["one"]
    with pytest.raises(CaptureFileNotOpen):
        log.follow()


async def test_close_in_the_middle_of_a_batch_ends_the_follower(tmp_path: Path) -> None:
    path = str(tmp_path / "f.capture")
    async with CaptureFile(path, to_write=True) as cf:
        for n in range(20_000):
            await cf.add_record(f"record {n}")
        await cf.commit()
    log = await CaptureFile(path)
    seen: list = []
    started = asyncio.Event()
    task = asyncio.ensure_future(follow_into(log.follow(), seen, started))
    await started.wait()
    await log.close()
    assert await asyncio.wait_for(task, 10) == "ended"
    assert seen == [f"record {n}" for n in range(len(seen))]


async def test_close_ends_a_log_follower(tmp_path: Path) -> None:
    path = str(tmp_path / "f.log")
    async with RecordsWriter(path) as writer:
        await writer.write(b"one")
    reader = RecordsReader(path)
    seen: list = []
    started = asyncio.Event()
    task = asyncio.ensure_future(follow_into(reader.follow(), seen, started))
    await started.wait()
    await asyncio.sleep(0)
    await reader.close()
    assert await asyncio.wait_for(task, 5) == "ended"
    assert seen == [b"one"]
    with pytest.raises(ClosedError):
        async for _ in reader.follow():
            pass
