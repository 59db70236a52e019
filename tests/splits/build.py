"""Files of every format holding given records, for the split tests."""

from __future__ import annotations

from pathlib import Path

from aiorecords import Archive, CaptureFile, RecordsWriter, TFRecordWriter

FORMATS = ("records", "capture", "archive", "tfrecord")


async def build(path: Path | str, fmt: str, records: list[bytes], **options) -> str:
    """A new file of ``fmt`` at ``path`` holding ``records`` (an archive's
    entries named ``n<number % names>``); its path."""
    path = str(path)
    if fmt == "records":
        async with RecordsWriter(path, pad_last_block=False) as writer:
            await writer.write_many(records)
    elif fmt == "tfrecord":
        async with TFRecordWriter(path, index=options.get("index", True)) as writer:
            await writer.write_many(records)
    elif fmt == "capture":
        async with CaptureFile(
            path, to_write=True, encoding=None, compression_block_size=4096
        ) as capture:
            for number, record in enumerate(records):
                await capture.add_record(record)
                if number % 97 == 96:
                    await capture.commit()
            await capture.commit()
    else:
        names = options.get("names", 1 << 30)
        async with await Archive.open(path, "rdwr") as archive:
            for number, record in enumerate(records):
                async with archive.append(f"n{number % names}") as entry:
                    await entry.write(record)
    return path


def sample(count: int, seed: int = 0) -> list[bytes]:
    """Records of many sizes, each telling its number."""
    import random

    rng = random.Random(seed)
    return [
        rng.randbytes(rng.choice([0, 3, 100, 2_000, 40_000])) + b"#%d" % n
        for n in range(count)
    ]
