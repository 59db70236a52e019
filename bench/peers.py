"""aiorecords beside the peers people would pick instead, in one run.

* **Writing TFRecord files**: aiorecords' ``TFRecordWriter`` (``await
  write()`` per record, and ``write_many`` over a list) beside TensorFlow's
  ``tf.io.TFRecordWriter`` (``write`` per record), the same records; the
  files are compared byte for byte once, so both wrote the same thing.
* **Reading records**: aiorecords' ``RecordsReader`` and ``TFRecordReader``
  (``async for`` and ``batches()``) beside what a user writes by hand: a
  plain Python loop over a file of length-prefixed records (a 4-byte
  little-endian length, then the bytes, read with a buffered file's
  ``read(4)`` and ``read(n)``), the same records; and beside
  ``tf.data.TFRecordDataset`` iterated eagerly over the TFRecord file (a
  record at a time beside ``async for``, over its first 20,000 records
  only, so slow is it; batched by 4,096 beside ``batches()``).

Every file is in the page cache and no write is synced (TensorFlow's writer
never syncs): the costs compared are the CPU's. Each pair runs several
times, taking turns; the table gives median rates and the median ratio of
neighbouring runs. Without TensorFlow (``tensorflow-cpu``, which
``pip install tensorflow-cpu`` brings, about 600 MB) its rows are left out
and a line says so.

    python bench/peers.py [--mib N] [--repeat N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import os
import platform
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiorecords import (
    RecordsReader,
    RecordsWriter,
    TFRecordReader,
    TFRecordWriter,
    _kernels,
)

Run = Callable[[], Awaitable[object]]

#: tf.data, eager and a record at a time, reads only this many per run.
TF_EAGER_RECORDS = 20_000


def load_tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf  # type: ignore[import-not-found]
    except ImportError:
        return None
    return tf


def plain_write(path: str, records: list[bytes]) -> None:
    """The same records, each after its 4-byte length."""
    pack = struct.Struct("<I").pack
    with open(path, "wb") as out:
        for record in records:
            out.write(pack(len(record)))
            out.write(record)


def plain_read(path: str) -> int:
    """What a user writes by hand: read a length, then that many bytes."""
    seen = 0
    unpack = struct.Struct("<I").unpack
    with open(path, "rb", buffering=1024 * 1024) as source:
        read = source.read
        while head := read(4):
            (length,) = unpack(head)
            if len(read(length)) != length:
                raise ValueError("cut record")
            seen += 1
    return seen


async def rate(run: Run, count: int) -> float:
    """Records a second: ``count``, or as many as ``run`` says it read."""
    start = time.perf_counter()
    done = await run()
    return (done if isinstance(done, int) else count) / (time.perf_counter() - start)


async def pair(
    ours: Run, theirs: Run, repeat: int, count: int
) -> tuple[float, float, float]:
    """Median rates of each, and the median of their neighbouring ratios."""
    mine, peer = [], []
    for _ in range(repeat):
        peer.append(await rate(theirs, count))
        mine.append(await rate(ours, count))
    ratios = [m / p for p, m in zip(peer, mine, strict=True)]
    return statistics.median(mine), statistics.median(peer), statistics.median(ratios)


async def bench_size(
    size: int, mib: int, repeat: int, directory: str, tf: Any
) -> list[tuple[str, ...]]:
    count = mib * 1024 * 1024 // size
    payload = bytes(range(256)) * (size // 256 + 1)
    distinct = [payload[n % 256 : n % 256 + size] for n in range(256)]
    records = [distinct[n & 255] for n in range(count)]
    log = os.path.join(directory, f"records-{size}.log")
    tfrecord = os.path.join(directory, f"records-{size}.tfrecord")
    theirs_tf = os.path.join(directory, f"theirs-{size}.tfrecord")
    plain = os.path.join(directory, f"plain-{size}.bin")

    async def write_each() -> None:
        async with TFRecordWriter(tfrecord, replace=True) as writer:
            for record in records:
                await writer.write(record)

    async def write_list() -> None:
        async with TFRecordWriter(tfrecord, replace=True) as writer:
            await writer.write_many(records)

    async def write_tf() -> None:
        with tf.io.TFRecordWriter(theirs_tf) as writer:
            for record in records:
                writer.write(record)

    def reader_of(kind: Any, path: str, batched: bool, read_size: int = 0) -> Run:
        options = {"read_size": read_size} if read_size else {}

        async def run() -> None:
            seen = 0
            async with kind(path, **options) as reader:
                if batched:
                    async for batch in reader.batches():
                        seen += len(batch)
                else:
                    async for _ in reader:
                        seen += 1
            assert seen == count, (seen, count)

        return run

    async def read_plain() -> None:
        assert plain_read(plain) == count

    async def read_tf() -> int:
        # A record at a time, tf.data runs some 5,000 a second here: the
        # first TF_EAGER_RECORDS only, or a run would take minutes.
        seen = 0
        dataset = tf.data.TFRecordDataset(tfrecord).take(TF_EAGER_RECORDS)
        for _ in dataset.as_numpy_iterator():
            seen += 1
        assert seen == min(count, TF_EAGER_RECORDS)
        return seen

    async def read_tf_batched() -> None:
        seen = 0
        dataset = tf.data.TFRecordDataset(tfrecord).batch(4096)
        for batch in dataset.as_numpy_iterator():
            seen += len(batch)
        assert seen == count

    # The files the readers read, written once.
    async with RecordsWriter(log, pad_last_block=False, replace=True) as writer:
        await writer.write_many(records)
    await write_list()
    plain_write(plain, records)

    work: list[tuple[str, Run, str, Run]] = []
    if tf is not None:
        await write_tf()
        assert filecmp.cmp(tfrecord, theirs_tf, shallow=False), "different bytes"
        work += [
            (
                "write TFRecord, write() each",
                write_each,
                "tf.io.TFRecordWriter",
                write_tf,
            ),
            (
                "write TFRecord, write_many(list)",
                write_list,
                "tf.io.TFRecordWriter",
                write_tf,
            ),
        ]
    for name, kind, path in (
        ("LevelDB log", RecordsReader, log),
        ("TFRecord", TFRecordReader, tfrecord),
    ):
        for how, batched, read_size in (
            ("async for", False, 0),
            ("batches()", True, 0),
            ("batches(), read_size=128 KiB", True, 128 * 1024),
        ):
            work.append(
                (
                    f"read {name}, {how}",
                    reader_of(kind, path, batched, read_size),
                    "plain length-prefixed read",
                    read_plain,
                )
            )
    if tf is not None:
        for how, batched, peer_name, peer_run in (
            ("async for", False, "tf.data.TFRecordDataset", read_tf),
            ("batches()", True, "tf.data.TFRecordDataset.batch(4096)", read_tf_batched),
        ):
            work.append(
                (
                    f"read TFRecord, {how}",
                    reader_of(TFRecordReader, tfrecord, batched),
                    peer_name,
                    peer_run,
                )
            )

    rows = []
    for name, ours, peer_name, theirs in work:
        mine, peer, ratio = await pair(ours, theirs, repeat, count)
        rows.append(
            (
                f"{name}, {size}-byte records",
                f"{mine:,.0f}",
                peer_name,
                f"{peer:,.0f}",
                f"{ratio:.2f}x",
            )
        )
    return rows


async def bench(
    mib: int, repeat: int, directory: str, tf: Any
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for size in (1024, 100):
        rows += await bench_size(size, mib, repeat, directory, tf)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="MiB of records per file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    tf = load_tensorflow()
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        rows = asyncio.run(bench(args.mib, args.repeat, directory, tf))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    kernels = "compiled" if _kernels.compiled is not None else "pure Python"
    peer = f"TensorFlow {tf.__version__}" if tf is not None else "no TensorFlow"
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {kernels} kernels; {peer}; "
        f"{args.mib} MiB of records per file; {args.repeat} runs of each, taking turns"
    )
    if tf is None:
        print("(TensorFlow is not installed: its rows are left out)")
    columns = ["aiorecords records/s", "peer", "peer records/s", "aiorecords / peer"]
    print("| workload | " + " | ".join(columns) + " |")
    print("| --- | ---: | --- | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
