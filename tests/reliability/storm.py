"""Many tasks on one object: random work, random cancellations, a close()
at a random moment, and a ledger of every acknowledgement.

A storm starts ``tasks`` workers that loop over a format's operations on one
object. A conductor cancels a random worker now and then (starting a fresh
one in its place) and, at a random moment, calls ``close()``, itself
cancelled at times. The moments are counted in turns of the event loop, not
in time, so a seed gives the same storm on every run as far as the loop
alone decides it.

What the storm checks while it runs:

* no worker sees an error other than the ones its format documents for a
  closed or cancelled object (an untyped error fails the storm);
* once ``close()`` has returned, no system call is made on the file (an I/O
  observer), and files opened right after it, which get the descriptor
  numbers it freed, are never touched (canaries: their bytes and locks are
  checked at the end).

What is acknowledged is the worker's business: it writes it in the ledger,
which the caller checks against the file after reopening it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiorecords import _io
from aiorecords.errors import ClosedError

#: Errors a worker may meet on an object closed under it.
EXPECTED = (ClosedError,)


@dataclass
class Storm:
    """One storm's state, shared by its workers."""

    rng: random.Random
    path: str
    closed: bool = False  # close() has returned
    closing: bool = False  # close() has been called
    late: list[str] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def __call__(self, operation: str, path: str, offset: int, length: int) -> None:
        # An I/O observer: nothing reaches the file once close() returned.
        if self.closed and path == self.path:
            self.late.append(f"{operation} {offset} {length}")

    async def turns(self, most: int) -> None:
        """Let the loop go round a random number of times, up to ``most``."""
        for _ in range(self.rng.randint(0, most)):
            await asyncio.sleep(0)


Worker = Callable[[Storm, int], Awaitable[None]]


async def run_storm(
    storm: Storm,
    worker: Worker,
    close: Callable[[], Awaitable[None]],
    *,
    tasks: int = 8,
    cancellations: int = 40,
    close_after: int | None = None,
    expected: tuple[type[BaseException], ...] = EXPECTED,
    acknowledged: Callable[[], int] | None = None,
) -> None:
    """Run ``tasks`` workers until the object is closed; see the module.

    Given ``acknowledged`` (how many acknowledgements the ledger holds), the
    close also waits until a random number of them, 0 to 40, have come (or
    10 s have passed), so that storms do real work before it."""
    rng = storm.rng
    canaries: list[tuple[str, int, bytes]] = []
    next_id = 0

    async def guarded(worker_id: int) -> None:
        try:
            await worker(storm, worker_id)
        except asyncio.CancelledError:
            storm.note("worker cancelled")
            raise
        except expected:
            storm.note("worker saw the object closed")
        except BaseException as error:
            storm.unexpected.append(error)

    def start() -> asyncio.Task[None]:
        nonlocal next_id
        next_id += 1
        return asyncio.ensure_future(guarded(next_id))

    _io.add_observer(storm)
    try:
        running = [start() for _ in range(tasks)]
        when_to_close = rng.randint(50, 3000) if close_after is None else close_after
        target = rng.randint(0, 40) if acknowledged is not None else 0
        deadline = time.monotonic() + 10
        step = 0
        while step < cancellations or (
            acknowledged is not None
            and acknowledged() < target
            and time.monotonic() < deadline
        ):
            await storm.turns(when_to_close // (cancellations + 1) + 1)
            if acknowledged is not None and step >= cancellations:
                await asyncio.sleep(0.001)  # worker threads take real time
            step += 1
            if step > cancellations and rng.random() < 0.9:
                continue  # past the planned cancellations: mostly let them work
            victim = rng.randrange(len(running))
            running[victim].cancel()
            running[victim] = start()
        # Close, sometimes from a task that is itself cancelled mid-way.
        storm.closing = True
        closer = asyncio.ensure_future(close())
        if rng.random() < 0.3:
            await storm.turns(3)
            closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closer
        if closer.cancelled():
            storm.note("close cancelled")
            await close()  # the first close went on: this one waits for it
        storm.closed = True
        # New files take the descriptor numbers the close freed.
        directory = os.path.dirname(storm.path)
        for n in range(4):
            name = os.path.join(directory, f"canary-{n}")
            data = os.urandom(14_000)
            with open(name, "wb") as f:
                f.write(data)
            fd = os.open(name, os.O_RDWR)
            canaries.append((name, fd, data))
        # The workers end: each meets the closed object at its next call.
        for _ in range(3):
            await storm.turns(20)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    finally:
        _io.remove_observer(storm)
        for name, fd, data in canaries:
            size = os.fstat(fd).st_size
            # No lock was taken on it through a stale descriptor number.
            probe = _io.open_file(name, writable=True)
            unlocked = probe.lock(0, 0, exclusive=True, wait=False)
            probe.close()
            os.close(fd)
            with open(name, "rb") as f:
                assert f.read() == data, f"{name} changed: {size} bytes now"
            assert unlocked, f"{name} was locked through a stale descriptor"
            os.unlink(name)
    assert storm.late == [], f"I/O on the file after close() returned: {storm.late}"
    assert not storm.unexpected, f"untyped or unexpected errors: {storm.unexpected!r}"
