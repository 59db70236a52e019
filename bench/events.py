"""Durable event appends: aiorecords' group commit beside SQLite and CaptureFile.

For 1, 10, 100 and 1,000 concurrent producer tasks, each appending 100-byte
JSON events as fast as acknowledgements come, for a few seconds:

* **aiorecords**: ``await capture_file.append(event)`` (durable: the
  commit that covers the event is synced before the call returns);
* **(a) aiosqlite, WAL, synchronous=FULL**, one transaction (INSERT then
  COMMIT) per event: durable;
* **(b) aiosqlite, WAL, synchronous=NORMAL**, one transaction per event:
  not durable (WAL commits are synced only at checkpoints);
* **(c) CaptureFile 1.2.0**, ``add_record`` then ``commit`` per event: not
  durable (it never syncs), and synchronous: it runs on the event loop;
* **(d) PostgreSQL through asyncpg**, the peer async backends use: a real
  server started by this benchmark in a temporary directory (loopback,
  ``fsync=on``, ``synchronous_commit=on``), a pool of connections, one
  INSERT transaction per event: durable (its WAL is flushed before the
  commit returns; concurrent commits share a flush). Skipped, with a
  line saying so, where no PostgreSQL server binaries are found.

It prints events acknowledged per second and the p50/p99 acknowledgement
latency, and the cost of two ``fdatasync`` calls on this machine (what one
durable commit needs at least), measured in the same run.

    python bench/events.py [--seconds S] [--producers 1,10,100,1000] [--dir DIR]
                           [--no-postgres] [--pool N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import platform
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from aiorecords import CaptureFile

EVENT = json.dumps(
    {"user": 12345, "action": "page_view", "path": "/articles/42", "pad": "x" * 34},
    separators=(",", ":"),
)
assert len(EVENT) == 100, len(EVENT)

Append = Callable[[str], Awaitable[object]]


async def run_producers(
    append: Append, producers: int, seconds: float
) -> tuple[float, list[float]]:
    """Events acknowledged per second, and every acknowledgement latency."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def producer() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await append(EVENT)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return len(latencies) / (time.perf_counter() - start), latencies


@contextlib.asynccontextmanager
async def aiorecords_log(directory: str):  # type: ignore[no-untyped-def]
    path = os.path.join(directory, "events.capture")
    async with CaptureFile(path, to_write=True, force_new_empty_file=True) as log:
        yield log.append


@contextlib.asynccontextmanager
async def sqlite_log(directory: str, synchronous: str):  # type: ignore[no-untyped-def]
    import aiosqlite

    path = os.path.join(directory, f"events-{synchronous}.db")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={synchronous}")
        await db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
        await db.commit()
        # One connection, one transaction per event: tasks take turns.
        turn = asyncio.Lock()

        async def append(event: str) -> None:
            async with turn:
                await db.execute("INSERT INTO events (body) VALUES (?)", (event,))
                await db.commit()

        yield append


@contextlib.asynccontextmanager
async def capturefile_log(directory: str):  # type: ignore[no-untyped-def]
    from CaptureFile import CaptureFile as PeerCaptureFile

    path = os.path.join(directory, "events-peer.capture")
    log = PeerCaptureFile(path, to_write=True, force_new_empty_file=True)

    async def append(event: str) -> None:
        log.add_record(event)
        log.commit()  # synchronous, on the event loop
        await asyncio.sleep(0)  # let the other producers have a turn

    try:
        yield append
    finally:
        log.close()


def postgres_bindir() -> str | None:
    """Where the server's programs are (Debian keeps them off PATH)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "postgres")):
            return candidate
    found = shutil.which("postgres")
    return os.path.dirname(found) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def postgres_server(directory: str):  # type: ignore[no-untyped-def]
    """A real PostgreSQL server on loopback, its data in ``directory``.

    The server refuses to run as root, so under root it runs as the
    ``postgres`` account."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries found")
    data = os.path.join(directory, "pgdata")
    os.mkdir(data)
    prefix: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
        os.chown(data, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(
        [*prefix, f"{bindir}/initdb", "-D", data, "-U", "bench", "--auth=trust"],
        check=True,
        **quiet,  # type: ignore[arg-type]
    )
    options = (
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 "
        "-c fsync=on -c synchronous_commit=on -c max_connections=200"
    )
    subprocess.run(
        [*prefix, f"{bindir}/pg_ctl", "-D", data, "-o", options, "-w", "start"],
        check=True,
        **quiet,  # type: ignore[arg-type]
    )
    try:
        yield port
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
            check=False,
            **quiet,  # type: ignore[arg-type]
        )


@contextlib.asynccontextmanager
async def postgres_log(port: int, pool_size: int):  # type: ignore[no-untyped-def]
    import asyncpg

    dsn = f"postgresql://bench@127.0.0.1:{port}/postgres"
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute("DROP TABLE IF EXISTS events")
        await setup.execute("CREATE TABLE events (id BIGSERIAL PRIMARY KEY, body TEXT)")
        setting = await setup.fetchval("SHOW synchronous_commit")
        assert setting == "on", setting
    finally:
        await setup.close()
    async with asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size) as pool:

        async def append(event: str) -> None:
            # Outside a transaction block each statement is its own
            # transaction: committed (WAL flushed) before execute returns.
            await pool.execute("INSERT INTO events (body) VALUES ($1)", event)

        yield append


def two_fdatasyncs(directory: str, rounds: int = 200) -> float:
    """Median seconds of a small write + fdatasync, twice (a durable commit's
    minimum: data, then master node)."""
    path = os.path.join(directory, "sync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    times = []
    try:
        for n in range(rounds):
            start = time.perf_counter()
            os.pwrite(fd, EVENT.encode(), 8192 + n * 128)
            os.fdatasync(fd)
            os.pwrite(fd, b"m" * 64, 0)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.median(times)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def bench(
    seconds: float,
    producer_counts: list[int],
    directory: str,
    postgres_port: int | None,
    pool_size: int,
) -> list[tuple[str, ...]]:
    systems = [
        ("aiorecords append (durable)", lambda: aiorecords_log(directory)),
        ("(a) aiosqlite WAL FULL (durable)", lambda: sqlite_log(directory, "FULL")),
        ("(b) aiosqlite WAL NORMAL", lambda: sqlite_log(directory, "NORMAL")),
        ("(c) CaptureFile 1.2.0, commit per event", lambda: capturefile_log(directory)),
    ]
    if postgres_port is not None:
        port = postgres_port
        systems.append(
            (
                f"(d) PostgreSQL via asyncpg, pool of {pool_size} (durable)",
                lambda: postgres_log(port, pool_size),
            )
        )
    rows = []
    for producers in producer_counts:
        measured = []
        for name, make in systems:
            async with make() as append:
                rate, latencies = await run_producers(append, producers, seconds)
            measured.append((name, rate, latencies))
        sqlite_full = measured[1][1]
        postgres = measured[4][1] if len(measured) > 4 else None
        for name, rate, latencies in measured:
            rows.append(
                (
                    str(producers),
                    name,
                    f"{rate:,.0f}",
                    f"{percentile(latencies, 0.5) * 1000:.2f} ms",
                    f"{percentile(latencies, 0.99) * 1000:.2f} ms",
                    "" if name.startswith("(a)") else f"{rate / sqlite_full:.1f}x",
                    ""
                    if postgres is None or name.startswith("(d)")
                    else f"{rate / postgres:.1f}x",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--producers", default="1,10,100,1000")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pool", type=int, default=20, help="asyncpg pool size")
    args = parser.parse_args()
    counts = [int(n) for n in args.producers.split(",")]
    directory = tempfile.mkdtemp(prefix="aiorecords-bench-", dir=args.dir)
    try:
        sync_cost = two_fdatasyncs(directory)
        with contextlib.ExitStack() as servers:
            port = None
            if not args.no_postgres and postgres_bindir() is not None:
                # Its own directory: the server's account must reach it.
                pg_dir = tempfile.mkdtemp(prefix="aiorecords-bench-pg-", dir=args.dir)
                servers.callback(shutil.rmtree, pg_dir, ignore_errors=True)
                port = servers.enter_context(postgres_server(pg_dir))
            elif not args.no_postgres:
                print("(d) skipped: no PostgreSQL server binaries found")
            rows = asyncio.run(bench(args.seconds, counts, directory, port, args.pool))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {args.seconds:g} s per run; 100-byte JSON events; "
        f"two fdatasyncs (write + sync, twice) take {sync_cost * 1000:.3f} ms here"
    )
    print("| producers | system | events/s | p50 | p99 | vs (a) | vs (d) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    lone = [row for row in rows if row[0] == "1" and row[1].startswith("aiorecords")]
    if lone:
        per_event = 1 / float(lone[0][2].replace(",", ""))
        print(
            f"lone producer: {per_event * 1000:.3f} ms per durable event, "
            f"{per_event / sync_cost:.2f}x the cost of two fdatasyncs"
        )


if __name__ == "__main__":
    sys.exit(main())
