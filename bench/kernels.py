"""The compiled kernels beside their pure-Python references, in one run.

Each kernel and its reference (the code that runs without the extension)
do the same work on the same bytes, taking turns, several times; the table
gives the median time per record (or per call, for the CRC) of each and the
median ratio of neighbouring runs. The CRC row compares the extension's
CRC-32C (the SSE 4.2 instruction below 16 KiB) with the ``crc32c``
package's, per call, by piece size: the package is what the Python code
calls per record.

This measures the per-record CPU cost only (no I/O, no event loop);
``bench/records.py`` measures the readers and writers around them.

    python bench/kernels.py [--records N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import crc32c

from aiorecords import _kernels
from aiorecords.records import _log
from aiorecords.tfrecord import _frame

compiled = _kernels.compiled


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def pair(
    ours: Callable[[], object], reference: Callable[[], object], repeat: int
) -> tuple[float, float, float]:
    """Median seconds of each, and the median ratio reference / ours."""
    mine, theirs = [], []
    for _ in range(repeat):
        theirs.append(timed(reference))
        mine.append(timed(ours))
    ratios = [t / m for t, m in zip(theirs, mine, strict=True)]
    return statistics.median(mine), statistics.median(theirs), statistics.median(ratios)


def crc_rows(repeat: int) -> list[tuple[str, ...]]:
    rows = []
    ours_crc = compiled.crc32c
    package_crc = crc32c.crc32c
    for size in (16, 100, 1024, 4096, 16384, 262_144):
        data = os.urandom(size)
        calls = max(200, 20_000_000 // (size + 200))
        assert ours_crc(data) == package_crc(data)

        def ours(data: bytes = data, calls: int = calls) -> None:
            for _ in range(calls):
                ours_crc(data)

        def theirs(data: bytes = data, calls: int = calls) -> None:
            for _ in range(calls):
                package_crc(data)

        mine, reference, ratio = pair(ours, theirs, repeat)
        rows.append(
            (
                f"CRC-32C of a {size:,}-byte piece (per call)",
                f"{mine / calls * 1e9:,.0f} ns",
                f"{reference / calls * 1e9:,.0f} ns",
                f"{ratio:.1f}x",
                f"{calls * size / mine / 1e9:.1f} GB/s",
            )
        )
    return rows


LIMIT = 1 << 62
#: As the writers do: frame into a buffer until it holds 1 MiB, hand it
#: out, reuse it.
BUFFER = 1 << 20
#: As the readers do: decode a step's records, hand them on, start again
#: (a list of every record of a run would make the garbage collector, not
#: the kernel, the cost).
STEP = 500


def encode_log(kernel: Callable[..., Any], records: list[bytes]) -> None:
    out = bytearray()
    index, offset = 0, 0
    while index < len(records):
        offset, index = kernel(records, index, len(records), offset, out, BUFFER)
        del out[:]


def frame_tf(kernel: Callable[..., Any], records: list[bytes]) -> None:
    out = bytearray()
    index = 0
    while index < len(records):
        index = kernel(records, index, len(records), out, BUFFER)
        del out[:]


def decode_log(kernel: Callable[..., Any], data: bytes, count: int) -> None:
    out: list[object] = []
    block, pos, total = 0, 0, 0
    while total < count:
        block, pos, taken = kernel(data, 0, block, pos, 0, LIMIT, STEP, out)
        total += taken
        out.clear()


def decode_tf(kernel: Callable[..., Any], data: bytes, count: int) -> None:
    out: list[object] = []
    at, total = 0, 0
    while total < count:
        at = kernel(data, at, 0, LIMIT, LIMIT, STEP, out)
        total += len(out)
        out.clear()


def take(kernel: Callable[..., Any], decoded: list[object]) -> None:
    out: list[bytes] = []
    index = 0
    while index < len(decoded):
        index, _ = kernel(decoded, index, STEP * 100, out)
        out.clear()


def kernel_rows(count: int, repeat: int) -> list[tuple[str, ...]]:
    rows = []
    # 7 bytes of header: 121 + 7 = 128 and 1,017 + 7 = 1,024 fill the 32 KiB
    # blocks of a log exactly, so every record is a whole (FULL) one, the
    # case the log kernel handles (a record across two blocks goes to the
    # Python decoder on either path).
    for size in (121, 1017):
        records = [os.urandom(size) for _ in range(count)]
        log = bytearray()
        _log.encode_records(records, 0, count, 0, log, LIMIT)
        tf = bytearray()
        _frame.frame_records(records, 0, count, tf, LIMIT)
        decoded: list[object] = []
        _frame.good_records(bytes(tf), 0, 0, LIMIT, LIMIT, LIMIT, decoded)
        work: list[tuple[str, Callable[..., object], Any, Any, tuple[Any, ...]]] = [
            ("LevelDB log: frame", encode_log, compiled.log_encode,
             _log.encode_records, (records,)),
            ("LevelDB log: check and slice", decode_log, compiled.log_full_records,
             _log.full_records, (bytes(log), count)),
            ("TFRecord: frame", frame_tf, compiled.tf_frame,
             _frame.frame_records, (records,)),
            ("TFRecord: check and slice", decode_tf, compiled.tf_good_records,
             _frame.good_records, (bytes(tf), count)),
            ("batches(): into a list", take, compiled.take_records,
             _kernels.take_records, (decoded,)),
        ]  # fmt: skip
        for name, job, ours, reference, arguments in work:
            mine, theirs, ratio = pair(
                partial(job, ours, *arguments),
                partial(job, reference, *arguments),
                repeat,
            )
            rows.append(
                (
                    f"{name}, {size}-byte records (per record)",
                    f"{mine / count * 1e9:,.0f} ns",
                    f"{theirs / count * 1e9:,.0f} ns",
                    f"{ratio:.1f}x",
                    f"{count * size / mine / 1e9:.2f} GB/s",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if compiled is None:
        sys.exit(
            "aiorecords._speedups is not built (or AIORECORDS_NO_EXTENSIONS is set)"
        )
    instruction = "with" if compiled.crc_instruction else "without"
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {instruction} the CRC-32C instruction; "
        f"{args.records:,} records per run; {args.repeat} runs of each, taking turns"
    )
    columns = ["compiled", "pure Python", "speed-up", "compiled throughput"]
    print("| kernel | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for row in crc_rows(args.repeat) + kernel_rows(args.records, args.repeat):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
