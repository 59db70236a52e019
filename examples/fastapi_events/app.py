"""A FastAPI service that persists events with aiorecords.

    python3 -m pip install -e ".[web]"
    EVENTS_FILE=events.capture uvicorn app:app --app-dir examples/fastapi_events

* ``POST /events`` stores the JSON body as one event and answers only once
  it is durable (on disk, synced), with its number: ``{"number": 7}``. With
  ``?expected_count=N`` the event is stored only if exactly N events came
  before it, else the answer is ``409 Conflict`` (optimistic concurrency).
* ``GET /events?from=N&limit=M`` gives a page of committed events.
* ``GET /events/stream?from=N`` streams every event from number N on as
  newline-delimited JSON, then each new one as it is committed, forever.

Every request handler appends concurrently: aiorecords coalesces their
commits (one pair of fdatasyncs for all the events that arrived while the
previous commit was being written), so durability costs little per event.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from aiorecords import CaptureFile, ConflictError

EVENTS_FILE = os.environ.get("EVENTS_FILE", "events.capture")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One writer per file: this process owns the log while it runs.
    log = CaptureFile(EVENTS_FILE, to_write=True)
    await log.open(to_write=True)
    app.state.log = log
    try:
        yield
    finally:
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
    log: CaptureFile = request.app.state.log

    async def lines() -> AsyncIterator[str]:
        number = start
        async for record in log.follow(start):
            yield event_line(number, record) + "\n"
            number += 1

    return StreamingResponse(lines(), media_type="application/x-ndjson")
