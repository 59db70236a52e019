"""aiorecords quickstart: write a capture file, commit, and read it back.

    python examples/quickstart.py [PATH]

A capture file is a transactional, compressed log of records. This program
appends a thousand JSON events in batches, commits each batch together with
metadata saying where it stopped, then reads the events back by number, by
slice and as an async stream, the way a service that consumes them would.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

from aiorecords import CaptureFile


async def produce(path: str) -> None:
    """Append events in batches of 250, one commit per batch."""
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as log:
        for number in range(1, 1001):
            event = {
                "id": number,
                "kind": "page_view",
                "path": f"/articles/{number % 17}",
            }
            await log.add_record(json.dumps(event))
            if number % 250 == 0:
                # Metadata commits atomically with the records: a restarted
                # producer reads it to know where to carry on.
                await log.set_metadata(f"produced={number}".encode())
                await log.commit()
                print(f"committed {log.record_count()} events")


async def consume(path: str) -> None:
    """Read the events back, as any number of other processes could."""
    log = await CaptureFile(path)
    try:
        print(f"{log.record_count()} events, metadata {await log.get_metadata()!r}")
        print("event 1:", await log.record_at(1))
        print("event 1000:", await log[1000])
        window = await log[500:503]
        print("events 500-502:", [json.loads(e)["id"] for e in window])
        paths: dict[str, int] = {}
        async for event in log.record_generator(1):
            key = json.loads(event)["path"]
            paths[key] = paths.get(key, 0) + 1
        busiest = max(paths, key=paths.__getitem__)
        views = paths[busiest]
        print(f"streamed all events: {len(paths)} paths, busiest {busiest}", end=" ")
        print(f"({views} views)")
    finally:
        await log.close()


async def main() -> None:
    directory = None
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        directory = tempfile.mkdtemp(prefix="aiorecords-quickstart-")
        path = os.path.join(directory, "events.capture")
    await produce(path)
    await consume(path)
    print(f"file: {path} ({os.path.getsize(path):,} bytes on disk)")
    if directory is not None:
        os.remove(path)
        os.rmdir(directory)


if __name__ == "__main__":
    asyncio.run(main())
