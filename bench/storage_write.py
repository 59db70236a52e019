"""Writing to object storage: a LevelDB log streamed to a real S3 protocol
server on loopback, and a capture file uploaded whole, aiorecords beside
s3fs's own file objects writing the same bytes, in one run.

A moto S3 server runs in a process of its own on 127.0.0.1. Taking turns:

* aiorecords: ``RecordsWriter("s3://...")`` given ``--mib`` MiB of 10 KiB
  records in batches of 1,000, closed (the close completes the multipart
  upload), under a 1 ms heartbeat that records the worst event-loop stall;
* s3fs: ``fs.open(path, "wb", block_size=8 MiB)`` given the same log's bytes
  in 1 MiB writes, closed, in a worker thread; the heartbeat runs too.

Then the same for an archive of 10 MiB entries (``--mib`` MiB):
``Archive.open("s3://...", "rdwr")`` appended to and closed (built in a
local file, streamed as entries complete) beside s3fs's writer given the
same archive's bytes; and for a capture file of ``--records`` records:
``aiorecords.upload()`` beside s3fs's ``put_file`` in a worker thread.
Every object is checked against the local bytes.

    python bench/storage_write.py [--mib N] [--records N] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
from collections.abc import Awaitable, Callable

import s3fs
from storage import RECORD, make_capture, measure, moto_server, options, s3_client

from aiorecords import Archive, RecordsWriter, upload

MIB = 1024 * 1024
BUCKET = "bench-write"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    record = os.urandom(RECORD)
    count = args.mib * MIB // RECORD // 1000 * 1000

    with tempfile.TemporaryDirectory() as directory, moto_server() as endpoint:
        storage_options = options(endpoint)
        client = s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        log = os.path.join(directory, "events.log")

        async def write_local() -> None:
            async with RecordsWriter(log, replace=True) as writer:
                for _ in range(count // 1000):
                    await writer.write_many([record] * 1000)

        asyncio.run(write_local())
        archive = os.path.join(directory, "assets.archive")
        payloads = [os.urandom(MIB) for _ in range(10)]

        async def build_archive(where: str, **options: object) -> None:
            async with Archive.open(where, "rdwr", **options) as built:  # type: ignore[arg-type]
                for n in range(args.mib // 10):
                    async with built.append(f"entry-{n}", timestamp=n) as out:
                        for payload in payloads:
                            await out.write(payload)

        asyncio.run(build_archive(archive))
        capture = os.path.join(directory, "events.capture")
        asyncio.run(make_capture(capture, args.records))
        local = {"log": log, "archive": archive, "capture": capture}
        expected = {}
        for kind, path in local.items():
            with open(path, "rb") as file:
                expected[kind] = file.read()
        turn = iter(range(10**6))

        def key_of(kind: str) -> str:
            return f"{BUCKET}/{kind}-{next(turn)}"

        async def write_log(key: str) -> int:
            async with RecordsWriter(
                f"s3://{key}", storage_options=storage_options
            ) as writer:
                for _ in range(count // 1000):
                    await writer.write_many([record] * 1000)
            return len(expected["log"])

        async def log_streaming(key: str) -> tuple[float, int, float]:
            # The stall while writing only: the writer is opened (its client
            # made, which loads botocore's service model) first.
            async with RecordsWriter(
                f"s3://{key}", storage_options=storage_options
            ) as writer:

                async def stream() -> int:
                    for _ in range(count // 1000):
                        await writer.write_many([record] * 1000)
                    await writer.close()
                    return len(expected["log"])

                return await measure(stream)

        async def write_archive(key: str) -> int:
            await build_archive(f"s3://{key}", storage_options=storage_options)
            return len(expected["archive"])

        async def upload_capture(key: str) -> int:
            return await upload(capture, f"s3://{key}", storage_options=storage_options)

        def theirs_blocking(kind: str, key: str) -> int:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **storage_options)
            if kind == "capture":
                fs.put_file(capture, key)
            else:
                with (
                    open(local[kind], "rb") as source,
                    fs.open(key, "wb", block_size=8 * MIB) as out,
                ):
                    while piece := source.read(MIB):
                        out.write(piece)
            return len(expected[kind])

        ours: dict[str, Callable[[str], Awaitable[int]]] = {
            "log": write_log,
            "archive": write_archive,
            "capture": upload_capture,
        }
        rows: dict[str, dict[str, list[tuple[float, float]]]] = {
            kind: {"ours": [], "theirs": []} for kind in ours
        }
        for _ in range(args.repeat):
            for kind, run_ours in ours.items():

                async def theirs(key: str, kind: str = kind) -> int:
                    return await asyncio.to_thread(theirs_blocking, kind, key)

                for name, run in (("ours", run_ours), ("theirs", theirs)):
                    key = key_of(kind)
                    elapsed, amount, stall = asyncio.run(
                        measure(lambda run=run, key=key: run(key))  # type: ignore[misc]
                    )
                    bucket, name_in = key.split("/", 1)
                    body = client.get_object(Bucket=bucket, Key=name_in)["Body"].read()
                    assert body == expected[kind], (kind, name)
                    client.delete_object(Bucket=bucket, Key=name_in)
                    rows[kind][name].append((amount / elapsed / 1e6, stall * 1000))

        streaming = [
            asyncio.run(log_streaming(key_of("log"))) for _ in range(args.repeat)
        ]

    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; moto S3 server on loopback; {args.repeat} runs "
        "of each, taking turns; MB/s are of the object's bytes"
    )
    print(
        "| workload | aiorecords MB/s | s3fs MB/s | of s3fs "
        "| worst loop stall: aiorecords / s3fs in a thread |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {
        "log": f"write a {len(expected['log']) / MIB:.0f} MiB log of {count:,} "
        "records (RecordsWriter; s3fs: fs.open('wb'))",
        "archive": f"write a {len(expected['archive']) / MIB:.0f} MiB archive of "
        "10 MiB entries (Archive.open(url, 'rdwr'); s3fs: fs.open('wb'))",
        "capture": f"upload a {len(expected['capture']) / MIB:.0f} MiB capture "
        f"file of {args.records:,} records (upload(); s3fs: put_file)",
    }
    for kind, label in labels.items():
        our_rates = [rate for rate, _ in rows[kind]["ours"]]
        their_rates = [rate for rate, _ in rows[kind]["theirs"]]
        ratios = [a / b for a, b in zip(our_rates, their_rates, strict=True)]
        print(
            f"| {label} | {statistics.median(our_rates):,.0f} | "
            f"{statistics.median(their_rates):,.0f} | "
            f"{statistics.median(ratios):.0%} | "
            f"{max(s for _, s in rows[kind]['ours']):.1f} / "
            f"{max(s for _, s in rows[kind]['theirs']):.1f} ms |"
        )

    print(
        "| the log again, the writer opened first (its client made) | "
        f"{statistics.median(amount / e / 1e6 for e, amount, _ in streaming):,.0f}"
        f" | | | {max(stall for _, _, stall in streaming) * 1000:.1f} ms |"
    )


if __name__ == "__main__":
    main()
