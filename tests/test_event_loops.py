"""aiorecords runs on asyncio, and on anyio's asyncio backend; under trio
(directly, or through anyio's trio backend) its first call says so with
EventLoopError, whichever object and call it is."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from aiorecords import (
    Archive,
    CaptureFile,
    EventLoopError,
    RecordsReader,
    RecordsWriter,
    records,
)

trio = pytest.importorskip("trio")


async def make_files(tmp_path: Path) -> dict[str, str]:
    paths = {
        "capture": str(tmp_path / "c.capture"),
        "log": str(tmp_path / "r.log"),
        "archive": str(tmp_path / "a.gar"),
    }
    async with CaptureFile(paths["capture"], to_write=True) as cf:
        await cf.add_record("one")
        await cf.commit()
    async with RecordsWriter(paths["log"]) as writer:
        await writer.write(b"one")
    async with Archive.open(paths["archive"], "rdwr") as ar, ar.append("e") as out:
        await out.write(b"one")
    return paths


Call = Callable[[], Awaitable[object]]


def first_calls(paths: dict[str, str], tmp_path: Path) -> dict[str, Call]:
    """The first call a user makes on each kind of object."""

    async def read_log() -> object:
        # The log is in the page cache: reading it needs no thread hop.
        reader = RecordsReader(paths["log"])
        _ = [record async for record in reader]
        return reader

    async def archive_in_memory() -> object:
        with open(paths["archive"], "rb") as f:
            data = f.read()
        return await Archive.from_bytes(data).contents()

    async def write_log() -> object:
        writer = RecordsWriter(str(tmp_path / "new.log"))
        await writer.write(b"x")
        return writer

    async def opened(cf: CaptureFile, to_write: bool = False) -> object:
        await cf.open(to_write=to_write)
        return cf  # for the caller to close

    return {
        "open a capture file to write": lambda: opened(
            CaptureFile(str(tmp_path / "new.capture"), to_write=True), True
        ),
        "open a capture file to read": lambda: opened(CaptureFile(paths["capture"])),
        "await a capture file": lambda: _awaited(CaptureFile(paths["capture"])),
        "write a log": write_log,
        "read a log": read_log,
        "split a log": lambda: records.split(paths["log"], 2),
        "open an archive": lambda: Archive.open(paths["archive"]),
        "open an archive to write": lambda: Archive.open(paths["archive"], "rdwr"),
        "list an archive in memory": archive_in_memory,
    }


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


@pytest.mark.parametrize("runner", ["trio", "anyio trio backend"])
def test_every_first_call_under_trio_says_aiorecords_runs_on_asyncio(
    tmp_path: Path, runner: str
) -> None:
    paths = asyncio.run(make_files(tmp_path))
    calls = first_calls(paths, tmp_path)
    outcomes: dict[str, str] = {}

    async def main() -> None:
        for what, call in calls.items():
            try:
                await call()
            except EventLoopError as error:
                message = str(error)
                refused = "runs on asyncio" in message and "trio is running" in message
                outcomes[what] = "refused" if refused else message
            else:
                outcomes[what] = "ran"

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no coroutine left unawaited, say
        if runner == "trio":
            trio.run(main)
        else:
            anyio.run(main, backend="trio")
        gc.collect()
    assert outcomes == dict.fromkeys(calls, "refused")


def test_anyio_asyncio_backend_runs_everything(tmp_path: Path) -> None:
    async def main() -> dict[str, str]:
        paths = await make_files(tmp_path)
        outcomes = {}
        for what, call in first_calls(paths, tmp_path).items():
            result = await call()
            if hasattr(result, "close"):
                await result.close()  # type: ignore[union-attr]
            outcomes[what] = "ran"
        return outcomes

    outcomes = anyio.run(main, backend="asyncio")
    assert set(outcomes.values()) == {"ran"}


def test_without_any_loop_the_error_says_asyncio(tmp_path: Path) -> None:
    coroutine = RecordsWriter(str(tmp_path / "x.log")).write(b"x")
    with pytest.raises(EventLoopError, match="runs on asyncio"):
        coroutine.send(None)  # driven by hand: no loop at all
