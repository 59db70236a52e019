"""A FastAPI service that persists events with aiorecords.

    python3 -m pip install -e ".[web]"
    EVENTS_FILE=events.capture uvicorn app:app --app-dir examples/fastapi_events

* ``POST /events`` stores the JSON body as one event and answers only once
  it is durable (on disk, synced), with its number: ``{"number": 7}``. With
  ``?expected_count=N`` the event is stored only if exactly N events came
  before it, else the answer is ``409 Conflict`` (optimistic concurrency).
* ``GET /events?from=N&limit=M`` gives a page of committed events.
* ``GET /events/stream?from=N`` streams every event from number N on as
  newline-delimited JSON, then each new one as it is committed, until the
  client goes away or the server shuts down.

Shutting down (SIGTERM or Ctrl-C) ends every stream at once, cleanly: the
server would otherwise wait for streaming clients to hang up before it
stops. Each stream follows the log through a reader of its own, which the
shutdown closes (a closed reader ends its follow); appends under way
finish, then the writer is closed.

Every request handler appends concurrently: aiorecords coalesces their
commits (one pair of fdatasyncs for all the events that arrived while the
previous commit was being written), so durability costs little per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from aiorecords import CaptureFile, ConflictError

EVENTS_FILE = os.environ.get("EVENTS_FILE", "events.capture")


class Streams:
    """The readers the open streams follow the log with, and whether the
    server is stopping (then they are all closed, which ends each follow)."""

    def __init__(self) -> None:
        self.readers: set[CaptureFile] = set()
        self.closing: set[asyncio.Task[None]] = set()
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        for reader in list(self.readers):
            task = asyncio.ensure_future(reader.close())
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)

    async def stopped(self) -> None:
        """Wait for the readers' closes begun by `stop()`."""
        await asyncio.gather(*self.closing)


@contextlib.contextmanager
def on_shutdown_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on the event loop as soon as SIGTERM or SIGINT
    arrives, then let the server's own handler (uvicorn's) have the signal.

    The server stops accepting, then waits for open connections to finish
    before it runs the lifespan's shutdown: streams must end first, so they
    are ended here, at the signal.
    """
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(number: int, frame: Any) -> None:
        loop.call_soon_threadsafe(callback)
        chained = previous.get(number)
        if callable(chained):
            chained(number, frame)

    try:
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread (a test client, say): no signals
        pass
    try:
        yield
    finally:
        for number, chained in previous.items():
            signal.signal(number, chained)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One writer per file: this process owns the log while it runs.
    log = CaptureFile(EVENTS_FILE, to_write=True)
    await log.open(to_write=True)
    app.state.log = log
    app.state.streams = streams = Streams()
    try:
        with on_shutdown_signals(streams.stop):
            yield
    finally:
        streams.stop()  # without a signal (a test client): now
        await streams.stopped()
        await log.close()


app = FastAPI(title="events", lifespan=lifespan)


def event_line(number: int, record: str | bytes) -> str:
    text = record if isinstance(record, str) else record.decode()
    return f'{{"number":{number},"event":{text}}}'


@app.post("/events", status_code=201)
async def post_event(
    request: Request, expected_count: int | None = Query(None, ge=0)
) -> dict[str, int]:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, detail="the body must be JSON") from None
    record = json.dumps(body, separators=(",", ":"))
    log: CaptureFile = request.app.state.log
    try:
        number = await log.append(record, expected_count=expected_count)
    except ConflictError as conflict:
        raise HTTPException(
            409,
            detail={"expected_count": conflict.expected, "count": conflict.actual},
        ) from None
    return {"number": number}


@app.get("/events")
async def get_events(
    request: Request,
    start: int = Query(1, alias="from", ge=1),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    log: CaptureFile = request.app.state.log
    stop = min(start + limit, log.committed_count() + 1)
    records = await log[start:stop] if start < stop else []
    events = [
        {"number": start + offset, "event": json.loads(record)}
        for offset, record in enumerate(records)
    ]
    return {"events": events, "next": start + len(events)}


@app.get("/events/stream")
async def stream_events(
    request: Request, start: int = Query(1, alias="from", ge=1)
) -> StreamingResponse:
    streams: Streams = request.app.state.streams
    if streams.stopping:
        raise HTTPException(503, detail="the server is shutting down")
    # A reader of its own: closing it (at shutdown) ends this stream alone.
    reader = await CaptureFile(EVENTS_FILE)
    streams.readers.add(reader)

    async def lines() -> AsyncIterator[str]:
        number = start
        try:
            async for record in reader.follow(start):
                yield event_line(number, record) + "\n"
                number += 1
        finally:
            streams.readers.discard(reader)
            await reader.close()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
