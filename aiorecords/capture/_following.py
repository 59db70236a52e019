"""Following a capture file: its committed records, then each new commit.

A follower reads what is committed, then waits: a commit in this process
wakes it at once (`_watch`), and for other processes' commits it looks at
the file at intervals doubling from 1 ms to 100 ms (`_watch.Backoff`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from .. import _io, _watch
from ..errors import CaptureFileNotOpen, FileChangedError
from ._opened import OpenFile
from ._reading import Reads, Record

__all__ = ["follow"]


async def follow(
    opened: OpenFile,
    reads: Reads,
    committed_count: Callable[[], int],
    writing: bool,
    position: int,
) -> AsyncIterator[Record]:
    """The committed records from 0-based ``position`` on, forever; it ends
    when the file is closed."""
    backoff = _watch.Backoff()
    known = 0  # the most records a commit of this file has been seen to hold
    with _watch.watching(opened.path_key) as watch:
        opened.followers.add(watch)
        try:
            while opened.live:
                committed = committed_count()
                known = max(known, committed)
                if position < committed:
                    async for record in reads.generate(position, committed):
                        position += 1
                        yield record
                    backoff.reset()
                    continue
                woken = await watch.wait(backoff.delay)
                if not opened.live:
                    break
                if not writing:
                    # A reader looks at the file again.
                    if not woken:
                        await _check_followed_file(opened)
                    opened.check("follow the records of")
                    await opened.refresh()
                    if committed_count() < known:
                        raise FileChangedError(
                            f"holds {committed_count()} records, fewer than "
                            f"the {known} it held before",
                            path=opened.settings.file_name,
                            change="truncated",
                        )
                if not (woken or committed_count() > position):
                    backoff.longer()
        except CaptureFileNotOpen:
            if opened.live:
                raise
            # close() came in the middle of a step: the end, as below.
        finally:
            opened.followers.discard(watch)
        # Closed: the follow ends cleanly.


async def _check_followed_file(opened: OpenFile) -> None:
    """Raise FileChangedError if the followed path now names another file,
    or the file no longer holds the data of the commit in use."""
    opened.check("follow the records of")
    io = opened.io
    assert isinstance(io, _io.FileIO), "follow() is refused on object storage"
    path = opened.settings.file_name
    named, size = await opened.in_flight.offload(
        lambda: (_io.still_named(io, path), io.size())
    )
    if not named:
        raise FileChangedError(
            "another file took its name while it was followed",
            path=path,
            change="replaced",
        )
    if size < opened.master.data_end:
        raise FileChangedError(
            f"cut to {size} bytes while followed",
            path=path,
            change="truncated",
        )
