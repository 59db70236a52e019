"""An async generator that streams records to a slow consumer, with
back-pressure, while a producer keeps committing.

    python examples/stream_generator.py [PATH]

A producer task commits 2,000 events to a capture file in batches. An async
generator, ``stream_events``, yields committed events from number 1 on and
then live ones as they are committed (``CaptureFile.follow``). The consumer
(think: a server-sent-events response) handles one event at a time and
sometimes stalls; the generator only reads when the consumer asks, a batch
per worker-thread hop, so a slow consumer never makes anything pile up in
memory. It stops after the last event and prints what it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator

from aiorecords import CaptureFile

EVENTS = 2000
BATCH = 100


async def produce(path: str) -> None:
    """Commit EVENTS events, BATCH at a time (each commit durable)."""
    log = await CaptureFile(path, to_write=True, encoding="utf_8")
    try:
        for first in range(1, EVENTS + 1, BATCH):
            batch = [
                json.dumps({"n": n, "kind": "click" if n % 3 else "view"})
                for n in range(first, first + BATCH)
            ]
            await log.append_batch(batch)
            await asyncio.sleep(0.002)  # events arrive over time
    finally:
        await log.close()


async def stream_events(path: str, start: int = 1) -> AsyncIterator[dict[str, object]]:
    """Every committed event from number ``start``, then new ones as they
    are committed. The reader is closed however the consumer stops
    (``break``, an exception, or cancellation), since ``async with`` and
    ``aclose()`` run the ``finally`` below."""
    log = await CaptureFile(path, encoding="utf_8")
    try:
        async for record in log.follow(start):
            yield json.loads(record)
    finally:
        await log.close()


async def consume(path: str) -> tuple[int, int, float]:
    """Take events one at a time, stalling now and then; stop at the last."""
    seen = clicks = 0
    slowest = 0.0
    events = stream_events(path)
    try:
        async for event in events:
            started = time.perf_counter()
            seen += 1
            if event["n"] != seen:
                raise RuntimeError(f"event {event['n']} came as number {seen}")
            clicks += event["kind"] == "click"
            if seen % 500 == 0:
                await asyncio.sleep(0.05)  # a client that is slow to read
            slowest = max(slowest, time.perf_counter() - started)
            if event["n"] == EVENTS:
                break
    finally:
        await events.aclose()  # close the reader now, not when collected
    return seen, clicks, slowest


async def main(path: str) -> None:
    created = await CaptureFile(path, to_write=True, force_new_empty_file=True)
    await created.close()
    consumer = asyncio.create_task(consume(path))
    await produce(path)
    seen, clicks, slowest = await consumer
    print(f"produced {EVENTS} events in batches of {BATCH}")
    print(f"consumed {seen} events in order ({clicks} clicks)")
    print(f"longest stall of the consumer: {slowest * 1000:.0f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(os.path.join(directory, "events.capture")))
