"""An archive written to object storage: built in a local file, streamed to a
new object as its entries complete, published by the close.

An object cannot be appended to, truncated or synced, and an archive's
writer needs all three (a failed entry is cut off; listing and reading
back an entry read the file). So the archive is built, with every local
guarantee, in a file in the temporary directory, and what can no longer
change goes to the object store as it accumulates: the bytes before the
end of the newest complete entry (an append writes past it and cuts back
no further). They are sent in parts of a multipart upload as soon as a
part's worth has gathered; the close sends the rest and completes the
upload, and only then does the object exist.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable

from .._upload import PART_SIZE, Upload
from ..errors import StorageError

#: Reads ``size`` bytes at ``offset`` of the local file.
Read = Callable[[int, int], Awaitable[bytes]]

__all__ = ["Publisher"]

logger = logging.getLogger("aiorecords")


class Publisher:
    """Sends the settled bytes of a local archive file to an upload, one
    caller at a time (an append's exit, or the close)."""

    __slots__ = ("_lock", "sent", "temp", "upload")

    def __repr__(self) -> str:
        return f"<Publisher {self.upload.url}>"

    def __init__(self, upload: Upload, temp: str) -> None:
        self.upload = upload
        self.temp = temp
        """The local file the archive is built in (removed at the close)."""
        self.sent = 0
        """Bytes of the file sent so far."""
        self._lock = asyncio.Lock()

    async def advance(self, read: Read, settled: int) -> None:
        """Send the whole parts of ``[sent, settled)`` gathered so far.

        Cancellation: a part read or sent is finished first; what was sent
        is counted, and the rest goes at the next call.
        """
        async with self._lock:
            await self._send(read, settled, PART_SIZE)

    async def _send(self, read: Read, settled: int, at_least: int) -> None:
        while settled - self.sent >= at_least:
            size = min(PART_SIZE, settled - self.sent)
            chunk = await read(self.sent, size)
            if len(chunk) != size:
                raise StorageError(
                    OSError(
                        errno.EIO,
                        f"the archive being built holds {self.sent + len(chunk)}"
                        f" bytes, not {settled}",
                    ),
                    "pread",
                    self.temp,
                )
            try:
                await self.upload.write(chunk)
            except asyncio.CancelledError:
                self.sent += size  # taken all the same: never sent twice
                raise
            self.sent += size

    async def close(self, read: Read, end: int, *, publish: bool) -> None:
        """Send the rest up to ``end`` and complete the upload (the object
        appears) if ``publish``; otherwise, or on failure, publish nothing.

        Cancellation: the close that calls this runs to its end.
        """
        async with self._lock:
            if not publish:
                try:
                    await self.upload.discard()
                except StorageError as error:
                    # The failure that poisoned the archive was raised
                    # already; the parts sent are the store's to reap.
                    logger.warning("%s: could not abort the upload: %s", self, error)
                return
            try:
                await self._send(read, end, 1)
            except BaseException:
                await self.upload.discard()
                raise
            await self.upload.commit()
