"""The FastAPI example under uvicorn: concurrent durable appends, pages,
live streams, conflicts, and a server killed and restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

APP_DIR = Path(__file__).parent.parent / "examples" / "fastapi_events"


class Server:
    """uvicorn serving the example on a socket this test owns, so that a
    restarted server listens at the same address."""

    def __init__(self, sock: socket.socket, events_file: str) -> None:
        self.sock = sock
        self.events_file = events_file
        self.process: subprocess.Popen[str] | None = None
        self.drainer: threading.Thread | None = None
        self.log: list[str] = []
        self.extra_args: list[str] = []

    async def start(self) -> None:
        fd = self.sock.fileno()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--app-dir",
                str(APP_DIR),
                "--fd",
                str(fd),
                "--no-access-log",
                *self.extra_args,
            ],
            pass_fds=(fd,),
            env={**os.environ, "EVENTS_FILE": self.events_file},
            stderr=subprocess.PIPE,
            text=True,
        )
        started = threading.Event()

        def drain(stream) -> None:  # keep the pipe from filling up
            for line in stream:
                self.log.append(line)
                if "Application startup complete" in line:
                    started.set()
            started.set()

        self.drainer = threading.Thread(
            target=drain, args=(self.process.stderr,), daemon=True
        )
        self.drainer.start()
        assert await asyncio.to_thread(started.wait, 60)
        assert self.process.poll() is None, "".join(self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self._reap()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            self._reap()

    def _reap(self) -> None:
        assert self.process is not None
        self.process.wait(30)
        if self.drainer is not None:
            self.drainer.join(30)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    running = Server(sock, str(tmp_path / "events.capture"))
    await running.start()
    try:
        yield running
    finally:
        running.stop()
        sock.close()


def client_for(server: Server) -> httpx.AsyncClient:
    host, port = server.sock.getsockname()
    return httpx.AsyncClient(
        base_url=f"http://{host}:{port}",
        timeout=60,
        limits=httpx.Limits(max_connections=64),
    )


async def post_all(client, events: list[dict]) -> dict[str, int]:
    """POST each event concurrently; the number each acknowledged one got."""

    async def post(event: dict) -> tuple[str, int]:
        response = await client.post("/events", json=event)
        assert response.status_code == 201, response.text
        return event["id"], response.json()["number"]

    return dict(await asyncio.gather(*(post(e) for e in events)))


async def all_events(client) -> list[dict]:
    found: list[dict] = []
    start = 1
    while True:
        page = (await client.get("/events", params={"from": start, "limit": 97})).json()
        found += page["events"]
        if not page["events"]:
            return found
        start = page["next"]


async def test_concurrent_appends_are_durable_numbered_and_streamed(
    server: Server,
) -> None:
    events = [
        {"id": f"c{c}-{i}", "client": c, "seq": i} for c in range(20) for i in range(25)
    ]
    async with client_for(server) as client:
        streamed: list[dict] = []
        async with client.stream("GET", "/events/stream", params={"from": 1}) as stream:
            assert stream.status_code == 200  # the stream is open before any write

            async def read_stream() -> None:
                async for line in stream.aiter_lines():
                    if line:
                        streamed.append(json.loads(line))
                        if len(streamed) == len(events):
                            return

            reading = asyncio.ensure_future(read_stream())
            numbers = await post_all(client, events)
            await asyncio.wait_for(reading, 60)
        assert sorted(numbers.values()) == list(range(1, len(events) + 1))
        # The stream saw every event, in order, with the numbers the writers got.
        assert [s["number"] for s in streamed] == list(range(1, len(events) + 1))
        assert all(numbers[s["event"]["id"]] == s["number"] for s in streamed)
        # Each client's events are numbered in the order it... may have sent
        # them concurrently; but pages agree with the stream exactly.
        assert await all_events(client) == streamed
        # Optimistic concurrency.
        conflict = await client.post("/events?expected_count=3", json={"id": "late"})
        assert conflict.status_code == 409
        assert conflict.json()["detail"] == {"expected_count": 3, "count": 500}
        ok = await client.post("/events?expected_count=500", json={"id": "next"})
        assert ok.json() == {"number": 501}
        page = (await client.get("/events", params={"from": 499, "limit": 10})).json()
        assert [e["number"] for e in page["events"]] == [499, 500, 501]
        bad = await client.post("/events", content=b"not json")
        assert bad.status_code == 400


async def test_a_killed_server_loses_no_acknowledged_event(server: Server) -> None:
    acknowledged: dict[str, int] = {}
    async with client_for(server) as client:
        first = [{"id": f"a{i}"} for i in range(100)]
        acknowledged.update(await post_all(client, first))

        # Now kill it while posts are in flight, once some have answers.
        answered = asyncio.Event()

        async def post(event: dict) -> None:
            try:
                response = await client.post("/events", json=event)
            except httpx.TransportError:
                return  # not acknowledged: may or may not be stored
            if response.status_code == 201:
                acknowledged[event["id"]] = response.json()["number"]
                if len(acknowledged) >= 120:
                    answered.set()

        in_flight = [asyncio.ensure_future(post({"id": f"b{i}"})) for i in range(300)]
        await asyncio.wait_for(answered.wait(), 60)
        server.kill()
        # Requests that reach the listening socket from now on wait in its
        # backlog and are served by the restarted server.
        await server.start()
        await asyncio.gather(*in_flight)
    async with client_for(server) as client:
        stored = await all_events(client)
        ids = [e["event"]["id"] for e in stored]
        assert len(ids) == len(set(ids))  # nothing twice
        assert [e["number"] for e in stored] == list(range(1, len(stored) + 1))
        by_id = {e["event"]["id"]: e["number"] for e in stored}
        for event_id, number in acknowledged.items():
            assert by_id.get(event_id) == number, event_id
        # And it goes on numbering after what survived.
        response = await client.post("/events", json={"id": "after restart"})
        assert response.json() == {"number": len(stored) + 1}


@pytest.mark.parametrize("graceful_timeout", [None, "5"])
async def test_sigterm_ends_live_streams_promptly_and_cleanly(
    tmp_path: Path, graceful_timeout: str | None
) -> None:
    """Issue 14: with a client reading /events/stream, SIGTERM left uvicorn
    "waiting for connections to close" until the client gave up, or (with
    --timeout-graceful-shutdown) logged a CancelledError traceback. Now the
    streams end at the signal, the server exits 0, and its log is clean."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = Server(sock, str(tmp_path / "events.capture"))
    if graceful_timeout is not None:
        server.extra_args = ["--timeout-graceful-shutdown", graceful_timeout]
    await server.start()
    try:
        async with client_for(server) as client:
            await post_all(client, [{"id": "first"}])
            streams = []
            for _ in range(3):
                context = client.stream("GET", "/events/stream", params={"from": 1})
                response = await context.__aenter__()
                lines = response.aiter_lines()
                first = json.loads(await lines.__anext__())
                assert first["event"] == {"id": "first"}
                streams.append((context, lines))
            assert server.process is not None
            server.process.terminate()  # SIGTERM
            loop = asyncio.get_running_loop()
            started = loop.time()
            for context, lines in streams:
                # Each stream ends: no more lines, a clean end of the body.
                rest = [line async for line in lines]
                assert rest == []
                await context.__aexit__(None, None, None)
            ended = loop.time() - started
            code = await asyncio.to_thread(server.process.wait, 30)
    finally:
        server.stop()
        sock.close()
    log = "".join(server.log)
    # uvicorn, its shutdown done, re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
    assert "Waiting for connections to close" not in log
    assert "Traceback" not in log
    assert "CancelledError" not in log
    assert "timeout graceful shutdown exceeded" not in log
    # Well inside any client's patience (the issue saw 30 s); not a timing
    # test of the library, only that nothing waits for the client.
    assert ended < 10, (ended, log)
