"""What a push-style core asks for, and the loops that answer it.

A core that needs bytes it has not been given is written as a generator: it
yields a [`Read`][aiorecords._wants.Read] naming the byte range it wants, is
sent those bytes, and finally returns its result. It never calls a read
function, so the same core runs over a file in a worker thread, over bytes
in memory, or over an object store awaited on the event loop; only the
driver, which answers the reads, knows which.

The capture index walks want whole data blocks rather than byte ranges: they
yield a block's file position (an ``int``) and are sent its uncompressed
bytes, which the driver takes from its caches or fetches with
[`fetch_block()`][aiorecords.capture._layout.fetch_block], itself a
`Read` machine.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import NamedTuple, TypeVar

__all__ = ["Read", "Steps", "answer_all", "answer_reads"]

R = TypeVar("R")
W = TypeVar("W")


class Read(NamedTuple):
    """A core wants bytes ``[offset, offset + size)`` of the file (it is sent
    fewer only where the file ends). A tuple: cores make one per read."""

    offset: int
    size: int


#: A push-style core at work: yields what it wants, is sent it, returns R.
Steps = Generator[W, bytes, R]


def answer_all(steps: Steps[W, R], answer: Callable[[W], bytes]) -> R:
    """Run ``steps`` to its end, answering each want with ``answer`` (a
    driver's blocking read: call it in a worker thread, or over memory)."""
    try:
        want = next(steps)
        while True:
            want = steps.send(answer(want))
    except StopIteration as done:
        result: R = done.value
        return result


def answer_reads(steps: Steps[Read, R], pread: Callable[[int, int], bytes]) -> R:
    """Run ``steps`` to its end, answering each `Read` with
    ``pread(offset, size)``."""
    try:
        want = next(steps)
        while True:
            want = steps.send(pread(want.offset, want.size))
    except StopIteration as done:
        result: R = done.value
        return result
