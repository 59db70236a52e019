"""Bit flips: 1 to 8 random bits flipped anywhere a file holds data.

Each trial damages a pristine file and reads everything back through the
public API. The outcome is one of:

- *identical*: every record, entry and metadata byte is the original;
- *typed error*: the format's corruption error (or ``StorageError``) is
  raised, naming an offset;
- *reported*: in the tolerant modes (LevelDB records, archive ``recover``),
  what was lost is reported as a :class:`~aiorecords.SkippedRegion`, and
  everything returned is original;
- and two outcomes the formats define: a capture file whose newest master
  node is damaged opens at the previous commit (the two-phase commit cannot
  tell that from a torn master write), which must then be exactly that
  commit; a LevelDB log whose final record is damaged so as to look torn ends
  there, as LevelDB's reader does, and what comes before is original.

Anything else is a silent mismatch, and fails the test. Each trial must take
under a second, and the process must not grow by 64 MiB over the suite.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import time
from collections import Counter

import pytest

from aiorecords import (
    Archive,
    CaptureFile,
    CorruptionError,
    RecordsReader,
    RecordsWriter,
    SkippedRegion,
    StorageError,
)

from .conftest import count, trials

# Each trial's drops would be logged: keep the log (and its memory) quiet.
pytestmark = pytest.mark.usefixtures("quiet_log")


@pytest.fixture
def quiet_log():
    logger = logging.getLogger("aiorecords")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


TRIALS = trials(10_000, 50_000)
MAX_TRIAL_SECONDS = 1.0
MAX_GROWTH = 64 * 1024 * 1024


def flip(data: bytes, rng: random.Random, end: int) -> tuple[bytes, list[int]]:
    """``data`` with 1 to 8 random bits flipped in ``[0, end)``; the byte
    offsets flipped."""
    damaged = bytearray(data)
    offsets = []
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(end)
        damaged[at] ^= 1 << rng.randrange(8)
        offsets.append(at)
    return bytes(damaged), offsets


def used_end(data: bytes) -> int:
    """One past the last non-zero byte: flips in preallocated zeros beyond
    it are harmless by construction, so trials aim at the bytes in use."""
    return len(data.rstrip(b"\0"))


def located(error: Exception) -> None:
    """A corruption error names where the damage is."""
    if isinstance(error, CorruptionError):
        assert error.offset is not None, error
    else:
        assert isinstance(error, StorageError), error


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Trials:
    """Runs and tallies the trials of one format."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0
        self.rss_before = peak_rss()

    def timed(self, started: float) -> None:
        self.slowest = max(self.slowest, time.perf_counter() - started)

    def finish(self, trials: int = TRIALS) -> None:
        total = sum(self.outcomes.values())
        assert total == trials
        assert self.slowest < MAX_TRIAL_SECONDS, f"a trial took {self.slowest:.3f} s"
        assert peak_rss() - self.rss_before < MAX_GROWTH
        count(f"bit-flip trials, {self.fmt}", total)
        for outcome, n in sorted(self.outcomes.items()):
            count(f"bit-flip outcome, {self.fmt}: {outcome}", n)
        count(f"bit-flip silent mismatches, {self.fmt}", 0)


# ----------------------------------------------------------------------
# Capture files


async def build_capture(path: str, compression: str) -> list[tuple[bytes, list[bytes]]]:
    """A capture file of three commits; each commit's metadata and records."""
    rng = random.Random(7)
    commits = []
    records: list[bytes] = []
    cf = CaptureFile(
        path,
        to_write=True,
        force_new_empty_file=True,
        encoding=None,
        compression=compression,  # type: ignore[arg-type]
        compression_block_size=4096,
    )
    await cf.open(to_write=True)
    for commit in range(3):
        for _ in range(150):
            size = rng.choice((0, 1, 20, 300, 5000))
            record = rng.randbytes(size // 2) + bytes(size - size // 2)
            records.append(record)
            await cf.add_record(record)
        metadata = f"commit {commit}".encode()
        await cf.set_metadata(metadata)
        await cf.commit()
        commits.append((metadata, list(records)))
    await cf.close()
    return commits


async def read_capture(path: str) -> tuple[bytes | None, list[bytes]]:
    cf = await CaptureFile(path, encoding=None)
    try:
        records = [record async for record in cf]
        assert len(records) == cf.record_count()
        return await cf.get_metadata(), records
    finally:
        await cf.close()


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
async def test_capture_bit_flips(compression: str, tmp_path) -> None:
    pristine_path = str(tmp_path / "pristine.capture")
    commits = await build_capture(pristine_path, compression)
    with open(pristine_path, "rb") as f:
        pristine = f.read()
    end = used_end(pristine)
    path = str(tmp_path / "damaged.capture")
    with open(path, "wb") as f:
        f.write(pristine)
    trials = Trials(f"capture ({compression})")
    rng = random.Random(compression)
    # The two compressions share one format's trials.
    share = TRIALS // 2 if compression == "zstd" else TRIALS - TRIALS // 2
    fd = os.open(path, os.O_RDWR)
    try:
        for _ in range(share):
            damaged, offsets = flip(pristine, rng, end)
            for at in offsets:
                os.pwrite(fd, damaged[at : at + 1], at)
            started = time.perf_counter()
            try:
                got = await read_capture(path)
            except (CorruptionError, StorageError) as error:
                located(error)
                trials.outcomes["typed error"] += 1
            else:
                if got == commits[-1]:
                    trials.outcomes["identical"] += 1
                else:
                    assert got == commits[-2], (
                        f"silent mismatch after flipping bytes {offsets}"
                    )
                    trials.outcomes["previous commit (newest master damaged)"] += 1
            trials.timed(started)
            for at in offsets:
                os.pwrite(fd, pristine[at : at + 1], at)
    finally:
        os.close(fd)
    trials.finish(share)


# ----------------------------------------------------------------------
# LevelDB log records


class MemoryFile:
    """An async file object over bytes (what ``RecordsReader`` accepts)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.at + n
        out = self.data[self.at : end]
        self.at += len(out)
        return out

    async def seek(self, offset: int, whence: int = 0) -> int:
        self.at = offset if whence == 0 else len(self.data) + offset
        return self.at

    async def tell(self) -> int:
        return self.at


async def test_records_bit_flips(tmp_path) -> None:
    rng = random.Random("records")
    written = [
        rng.randbytes(rng.choice((0, 1, 50, 1000, 40_000, 100_000))) for _ in range(30)
    ]
    path = str(tmp_path / "app.log")
    async with RecordsWriter(path, pad_last_block=False) as writer:
        for record in written:
            await writer.write(record)
    with open(path, "rb") as f:
        pristine = f.read()
    trials = Trials("records")
    for _ in range(TRIALS):
        damaged, offsets = flip(pristine, rng, len(pristine))
        dropped: list[SkippedRegion] = []
        started = time.perf_counter()
        got: list[bytes] = []
        reader = RecordsReader(MemoryFile(damaged), on_corruption=dropped.append)
        async for record in reader:
            got.append(record)
        trials.timed(started)
        # Whatever is returned is original, in order, none twice.
        rest = iter(written)
        assert all(any(r == w for w in rest) for r in got), (
            f"silent mismatch after flipping bytes {offsets}"
        )
        if got == written:
            trials.outcomes["identical"] += 1
        elif dropped:
            trials.outcomes["reported"] += 1
        else:
            # Unreported loss is only ever a tail that looks torn, from the
            # damaged record on.
            assert got == written[: len(got)], f"unreported loss at {offsets}"
            lost_from = sum(len(w) for w in written[: len(got)])
            assert max(offsets) >= lost_from
            trials.outcomes["torn-looking tail"] += 1
    trials.finish()


async def test_records_bit_flips_strict_raise(tmp_path) -> None:
    """In strict mode, any reported damage is the typed error instead."""
    rng = random.Random("strict")
    written = [rng.randbytes(rng.choice((10, 5000, 50_000))) for _ in range(20)]
    path = str(tmp_path / "app.log")
    async with RecordsWriter(path) as writer:
        for record in written:
            await writer.write(record)
    with open(path, "rb") as f:
        pristine = f.read()
    raised = 0
    for _ in range(300):
        damaged, _ = flip(pristine, rng, len(pristine))
        try:
            got = [r async for r in RecordsReader(MemoryFile(damaged), strict=True)]
        except CorruptionError as error:
            located(error)
            raised += 1
        else:
            assert got == written[: len(got)]
    assert raised > 200
    count("bit-flip trials, records strict mode", 300)


# ----------------------------------------------------------------------
# Archives


async def test_archive_bit_flips(tmp_path) -> None:
    rng = random.Random("archive")
    path = str(tmp_path / "a.gar")
    originals: dict[tuple[str, int], bytes] = {}
    async with Archive.open(path, mode="rdwr") as archive:
        for n in range(40):
            data = rng.randbytes(rng.choice((0, 10, 300, 3000, 40_000)))
            data += bytes(len(data))  # compressible
            name = f"entry/{n % 13}"
            originals[(name, n)] = data
            compression = (None, "gzip", "zstd")[n % 3]
            async with archive.append(
                name, timestamp=n, comment=f"c{n}", compression=compression
            ) as out:
                await out.write(data)
    with open(path, "rb") as f:
        pristine = f.read()
    async with Archive.open(path) as archive:
        starts = sorted(entry.offset for entry in await archive.contents())
    trials = Trials("archive")

    async def trial() -> None:
        damaged, offsets = flip(pristine, rng, len(pristine))
        started = time.perf_counter()
        outcome = await read_archive(damaged, originals, offsets, starts)
        trials.timed(started)
        trials.outcomes[outcome] += 1

    for _ in range(TRIALS):
        await trial()
    trials.finish()


async def read_archive(
    damaged: bytes,
    originals: dict[tuple[str, int], bytes],
    offsets: list[int],
    starts: list[int],
) -> str:
    try:
        archive = Archive.from_bytes(damaged)
    except CorruptionError as error:
        located(error)
        return "typed error"
    async with archive:
        try:
            strict = await archive.contents()
        except CorruptionError as error:
            located(error)
            strict = None
        regions: list[SkippedRegion] = []
        entries = await archive.contents(recover=True, on_corruption=regions.append)
        if strict is not None:
            assert not regions
            assert strict == entries
        intact = 0
        failed = 0
        for entry in entries:
            key = (entry.name, entry.timestamp)
            assert key in originals, f"an entry no one wrote: {key}"
            assert entry.comment == f"c{entry.timestamp}"
            try:
                data = await archive.read_bytes(entry)
            except CorruptionError as error:
                located(error)
                failed += 1
                continue
            assert data == originals[key], f"silent mismatch in {key}"
            intact += 1
        if intact == len(originals) and strict is not None:
            return "identical"
        if strict is None or failed:
            return "typed error"
        if regions:
            return "reported"
        # Unreported loss is only ever the newest entries, lost as a torn
        # tail (an append that never finished) is: from the damaged one on.
        kept = len(entries)
        assert [e.timestamp for e in entries] == list(range(kept))[::-1]
        assert max(offsets) >= starts[kept], f"unreported loss at {offsets}"
        return "torn-looking tail"
