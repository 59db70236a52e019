"""A directory of event logs through a Dask cluster of two worker processes.

    python examples/dask_events.py [DIRECTORY]

Writes 40 LevelDB event logs (a service's day of events, one log per hour
and shard) into DIRECTORY (a temporary one by default), then, on a
``distributed.LocalCluster`` of two worker processes: reads them all into a
dataframe (one partition per split), counts the events of each kind, finds
the slowest requests, and writes the errors back as TFRecord files, one per
partition, each appearing whole. Needs the ``dask`` extra.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

import pandas as pd
from distributed import Client, LocalCluster

import aiorecords
import aiorecords.dask

LOGS = 40
EVENTS_PER_LOG = 2_000
KINDS = ("page_view", "click", "purchase", "error")


def event(log: int, number: int) -> dict[str, object]:
    """Event ``number`` of log ``log``: the same every run."""
    return {
        "log": log,
        "n": number,
        "kind": KINDS[(log * 7 + number * 13) % 23 % 4],
        "ms": (log * 31 + number * 17) % 997,
    }


async def write_logs(directory: str) -> None:
    for log in range(LOGS):
        path = os.path.join(directory, f"events-{log:02d}.log")
        async with aiorecords.RecordsWriter(path, replace=True) as writer:
            await writer.write_many(
                json.dumps(event(log, number)) for number in range(EVENTS_PER_LOG)
            )


def decode(record: bytes) -> dict[str, object]:
    return json.loads(record)  # type: ignore[no-any-return]


def is_error(record: bytes) -> bool:
    return json.loads(record)["kind"] == "error"


def main(directory: str) -> None:
    asyncio.run(write_logs(directory))
    pattern = os.path.join(directory, "events-*.log")
    meta = pd.DataFrame(
        {
            "log": pd.Series(dtype="int64"),
            "n": pd.Series(dtype="int64"),
            "kind": pd.Series(dtype="object"),
            "ms": pd.Series(dtype="int64"),
        }
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        events = aiorecords.dask.read_dataframe(
            pattern, decode=decode, meta=meta, target_bytes=64 * 1024
        )
        print(f"{LOGS} logs, {events.npartitions} partitions")
        counts = events.groupby("kind").n.count(split_out=1).compute()
        for kind in KINDS:
            print(f"{kind}: {counts[kind]} events")
        slowest = events.nlargest(3, "ms").compute()
        print(
            "slowest:",
            ", ".join(f"{r.log}/{r.n} {r.ms} ms" for r in slowest.itertuples()),
        )
        errors = aiorecords.dask.read(pattern, target_bytes=64 * 1024).filter(is_error)
        out = os.path.join(directory, "errors")
        os.makedirs(out, exist_ok=True)
        parts = os.path.join(out, "part-*.tfrecord")
        written = aiorecords.dask.write(errors.repartition(4), parts, format="tfrecord")
        again = aiorecords.dask.read(parts).count()
        print(f"wrote {again.compute()} errors into {len(written)} TFRecord files")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as scratch:
            main(scratch)
