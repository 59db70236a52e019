"""atheris fuzz harnesses, one per reader: arbitrary bytes must produce
records or a typed aiorecords error, never any other exception.

    python tests/reliability/fuzz_readers.py FORMAT [libFuzzer options]

FORMAT is ``records``, ``archive`` or ``capture``; e.g.
``-max_total_time=60``. The corpus starts from valid files of the format
(written to a temporary directory). ``nox -s fuzz`` runs all three; the
test suite also runs each harness over a few hundred mutated inputs without
atheris, so that the harnesses themselves are tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import tempfile
from collections.abc import Callable
from typing import Any


def _instrumenting() -> contextlib.AbstractContextManager[Any]:
    """Run as a fuzz harness, atheris instruments aiorecords' own modules
    as they are imported, and only those: instrumenting all that is loaded
    (the standard library, zstandard, ...) took about a minute a run."""
    if __name__ != "__main__":
        return contextlib.nullcontext()  # imported by the tests
    import atheris  # only the fuzz session installs it

    return atheris.instrument_imports(include=["aiorecords"])


with _instrumenting():
    from aiorecords import (
        AiorecordsError,
        Archive,
        CaptureFile,
        RecordsReader,
        RecordsWriter,
    )
    from aiorecords.records._log import LogDecoder

# A capture file is read from a path: each input is written here first.
_CAPTURE_PATH = os.path.join(
    "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
    f"aiorecords-fuzz-{os.getpid()}.capture",
)


class _MemoryFile:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.at + n
        out = self.data[self.at : end]
        self.at += len(out)
        return out

    async def seek(self, offset: int, whence: int = 0) -> int:
        self.at = offset
        return offset

    async def tell(self) -> int:
        return self.at


async def _read_records(data: bytes) -> None:
    for strict in (False, True):
        try:
            reader = RecordsReader(
                _MemoryFile(data), strict=strict, max_record_size=1 << 20
            )
            async for _ in reader:
                pass
        except AiorecordsError:
            pass


def records_input(data: bytes) -> None:
    """One input for the LevelDB log reader (the core, then the API)."""
    decoder = LogDecoder(max_record_size=1 << 20)
    decoder.feed(data)
    decoder.feed_eof()
    while decoder.read() is not None:
        pass
    asyncio.run(_read_records(data))


async def _read_archive(data: bytes) -> None:
    try:
        archive = Archive.from_bytes(data)
    except AiorecordsError:
        return
    async with archive:
        for recover in (False, True):
            try:
                entries = await archive.contents(recover=recover)
            except AiorecordsError:
                continue
            for entry in entries[:20]:
                with contextlib.suppress(AiorecordsError):
                    await archive.read_bytes(entry)


def archive_input(data: bytes) -> None:
    """One input for the archive reader."""
    asyncio.run(_read_archive(data))


async def _read_capture(path: str) -> None:
    try:
        cf = await CaptureFile(path, encoding=None, max_record_size=1 << 20)
    except AiorecordsError:
        return
    try:
        await cf.get_metadata()
        n = 0
        async for _ in cf:
            n += 1
            if n > 1000:
                break
    except AiorecordsError:
        pass
    finally:
        await cf.close()


def capture_input(data: bytes) -> None:
    """One input for the capture file reader."""
    with open(_CAPTURE_PATH, "wb") as f:
        f.write(data)
    asyncio.run(_read_capture(_CAPTURE_PATH))


HARNESSES: dict[str, Callable[[bytes], None]] = {
    "records": records_input,
    "archive": archive_input,
    "capture": capture_input,
}


async def _write_seeds(directory: str) -> None:
    rng = random.Random(0)
    async with RecordsWriter(os.path.join(directory, "seed.log")) as writer:
        for size in (0, 5, 300, 40_000):
            await writer.write(rng.randbytes(size))
    async with Archive.open(
        os.path.join(directory, "seed.gar"), mode="rdwr"
    ) as archive:
        for n, compression in enumerate((None, "gzip", "zstd")):
            async with archive.append(f"e{n}", compression=compression) as out:
                await out.write(rng.randbytes(100) * 20)
    for compression in ("zstd", "zlib"):
        cf = CaptureFile(
            os.path.join(directory, f"seed-{compression}.capture"),
            to_write=True,
            force_new_empty_file=True,
            encoding=None,
            compression=compression,  # type: ignore[arg-type]
            compression_block_size=4096,
        )
        await cf.open(to_write=True)
        for size in (1, 50, 700, 3000):
            await cf.add_record(rng.randbytes(size))
        await cf.set_metadata(b"seed")
        await cf.commit()
        await cf.close()


def seeds(fmt: str, directory: str) -> list[bytes]:
    """Valid files of ``fmt``, written to ``directory``."""
    asyncio.run(_write_seeds(directory))
    suffix = {"records": ".log", "archive": ".gar", "capture": ".capture"}[fmt]
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(suffix):
            with open(path, "rb") as f:
                out.append(f.read())
        else:
            os.unlink(path)
    return out


def main() -> None:
    import atheris  # only the fuzz session installs it

    fmt = sys.argv[1]
    corpus = tempfile.mkdtemp(prefix=f"aiorecords-fuzz-{fmt}-")
    seeds(fmt, corpus)
    harness = HARNESSES[fmt]
    atheris.Setup([sys.argv[0], *sys.argv[2:], corpus], harness)
    try:
        atheris.Fuzz()
    finally:
        if os.path.exists(_CAPTURE_PATH):
            os.unlink(_CAPTURE_PATH)


if __name__ == "__main__":
    main()
